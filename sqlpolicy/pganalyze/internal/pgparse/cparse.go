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
*/
import "C"

import (
	"unsafe"

	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/pganalyze/pg_query_go/v6/parser"
)

// parseJSON does what parser.ParseToJSON does and decodes the JSON while
// it is still libpg_query's: the document (about as many bytes as a
// statement's tree has nodes times 50) is never copied into the Go heap.
// The decoder copies every string it keeps (see save), so nothing in the
// tree points into C memory once it is freed. t is nil when the JSON did
// not decode (pg.Parse then decides); d is decodeWith's.
func parseJSON(sql string, scratch bool) (t *pg.ParseResult, d *decoder, err error) {
	in := C.CString(sql)
	defer C.free(unsafe.Pointer(in))
	r := C.pg_query_parse(in)
	defer C.pg_query_free_parse_result(r)
	if r.error != nil {
		return nil, nil, pgError(r.error)
	}
	js := unsafe.String((*byte)(unsafe.Pointer(r.parse_tree)), C.strlen(r.parse_tree))
	t, d = decodeWith(js, scratch)
	return t, d, nil
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
