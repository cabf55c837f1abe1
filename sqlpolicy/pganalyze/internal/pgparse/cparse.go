package pgparse

/*
#include <stdlib.h>
#include <string.h>

// The declarations of libpg_query's pg_query.h this package uses. The
// functions are compiled into pg_query_go's parser package, which this
// package imports, so the linker finds them there; pg_query.h itself lives
// in that module's directory, which cgo cannot name portably.
typedef struct {
	char* message;
	char* funcname;
	char* filename;
	int lineno;
	int cursorpos;
	char* context;
} PgQueryError;

typedef struct {
	char* parse_tree;
	char* stderr_buffer;
	PgQueryError* error;
} PgQueryParseResult;

PgQueryParseResult pg_query_parse(const char* input);
void pg_query_free_parse_result(PgQueryParseResult result);

// jsonout_gen.c's pg_query_parse with a faster JSON writer, which also
// counts the nodes of each type into counts (KH_COUNT_SLOTS int32s).
PgQueryParseResult keyhole_pg_query_parse(const char* input, int32_t* counts);
#define KH_COUNT_SLOTS 1024
*/
import "C"

import (
	"unsafe"

	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/pganalyze/pg_query_go/v6/parser"
)

// parseJSON does what parser.ParseToJSON does and decodes the JSON while
// it is still in C memory: the document (about as many bytes as a
// statement's tree has nodes times 50) is never copied into the Go heap.
// The decoder copies every string it keeps (see save), so nothing in the
// tree points into C memory once it is freed. t is nil when the JSON did
// not decode (pg.Parse then decides); d is decodeWith's.
//
// The JSON is jsonout_gen.c's: the same bytes libpg_query's writer makes
// (TestJSONOutCorpus, FuzzJSONOut), written at a fraction of its cost.
func parseJSON(sql string, scratch bool) (t *pg.ParseResult, d *decoder, err error) {
	in := C.CString(sql)
	defer C.free(unsafe.Pointer(in))
	// The writer counts the nodes the decoder sizes its slabs by, so the
	// decoder does not read the document twice (countNodes).
	d = decoders.Get().(*decoder)
	r := C.keyhole_pg_query_parse(in, (*C.int32_t)(unsafe.Pointer(&d.count[0])))
	defer C.pg_query_free_parse_result(r)
	if r.error != nil || r.parse_tree == nil {
		d.reset(false)
		decoders.Put(d)
		if r.error != nil {
			return nil, nil, pgError(r.error)
		}
		// The tree had a node the writer does not know: pg.Parse decides.
		return nil, nil, nil
	}
	js := unsafe.String((*byte)(unsafe.Pointer(r.parse_tree)), C.strlen(r.parse_tree))
	t, d = d.decode(js, scratch)
	return t, d, nil
}

// The C writer counts into KH_COUNT_SLOTS slots.
var _ [C.KH_COUNT_SLOTS]int32 = decoder{}.count

// parseToJSON returns the JSON of sql by libpg_query's writer (fast false)
// or jsonout_gen.c's (fast true) with the node counts it made, for the
// tests that compare the two.
func parseToJSON(sql string, fast bool) (string, *[len(nodeTable)]int32, error) {
	in := C.CString(sql)
	defer C.free(unsafe.Pointer(in))
	var r C.PgQueryParseResult
	var counts *[len(nodeTable)]int32
	if fast {
		counts = new([len(nodeTable)]int32)
		r = C.keyhole_pg_query_parse(in, (*C.int32_t)(unsafe.Pointer(&counts[0])))
	} else {
		r = C.pg_query_parse(in)
	}
	defer C.pg_query_free_parse_result(r)
	if r.error != nil {
		return "", nil, pgError(r.error)
	}
	if r.parse_tree == nil {
		return "", nil, nil
	}
	return C.GoString(r.parse_tree), counts, nil
}

// pgError is the error parser.ParseToJSON returns for e.
func pgError(e *C.PgQueryError) error {
	err := &parser.Error{
		Message:   C.GoString(e.message),
		Lineno:    int(e.lineno),
		Cursorpos: int(e.cursorpos),
	}
	if e.funcname != nil {
		err.Funcname = C.GoString(e.funcname)
	}
	if e.filename != nil {
		err.Filename = C.GoString(e.filename)
	}
	if e.context != nil {
		err.Context = C.GoString(e.context)
	}
	return err
}
