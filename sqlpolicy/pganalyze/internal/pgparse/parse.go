package pgparse

//go:generate go run ./gen -o decode_gen.go
//go:generate sh gen/jsonout.sh

import (
	"strings"
	"sync"
	"unicode/utf8"
	"unsafe"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// maxDepth bounds the nesting of JSON objects and arrays the decoder
// follows (its recursion). pg_query_go's protobuf decoder refuses trees
// nested deeper than 10 000 messages, about as deep; anything deeper is
// handed to pg.Parse, which then answers as it always does.
const maxDepth = 10000

// Parse parses sql into the tree pg.Parse returns for it: the same
// protobuf structs, equal by proto.Equal, and the same error when sql does
// not parse. It asks libpg_query for its JSON output, which costs a
// fraction of its protobuf output, and decodes that with generated code
// straight from libpg_query's buffer (parseJSON).
// JSON it does not fully understand (a node type or field it was not
// generated for, a string that is not UTF-8, nesting past maxDepth) is
// never guessed at: Parse then returns what pg.Parse returns.
func Parse(sql string) (*pg.ParseResult, error) {
	t, _, err := parse(sql, false)
	return t, err
}

// Scratch is the node memory of a tree from ParseScratch.
type Scratch struct{ d *decoder }

// ParseScratch is Parse for a tree that is dropped, with every pointer
// into it, before Release is called: an analysis that keeps only strings
// (which are never reused) and values it built. Release lets the next
// ParseScratch reuse the tree's nodes and lists, which are then zeroed, so
// a parse of a statement like an earlier one allocates only its strings.
// A node still referenced after Release would be silently overwritten:
// use Parse for any tree that may be kept, even in part.
func ParseScratch(sql string) (*pg.ParseResult, Scratch, error) {
	return parse(sql, true)
}

// Release hands the tree's memory back for reuse (see ParseScratch).
func (s Scratch) Release() {
	if s.d != nil {
		s.d.reset(true)
		decoders.Put(s.d)
	}
}

func parse(sql string, scratch bool) (*pg.ParseResult, Scratch, error) {
	t, d, err := parseJSON(sql, scratch)
	if err != nil {
		return nil, Scratch{}, err
	}
	if t != nil {
		return t, Scratch{d}, nil
	}
	t, err = pg.Parse(sql)
	return t, Scratch{}, err
}

// decode decodes libpg_query's JSON parse tree, or returns nil.
func decode(js string) *pg.ParseResult {
	r, _ := decodeWith(js, false)
	return r
}

// decodeWith decodes js, or returns nil. With scratch, it also returns
// the decoder, which holds the tree's memory until its reset(true); a
// decoder so reset hands that memory out again.
func decodeWith(js string, scratch bool) (*pg.ParseResult, *decoder) {
	d := decoders.Get().(*decoder)
	d.s = js
	d.countNodes()
	return d.decode(js, scratch)
}

// decode is decodeWith for a pooled decoder whose count is already js's
// (see countNodes).
func (d *decoder) decode(js string, scratch bool) (*pg.ParseResult, *decoder) {
	d.s = js
	r := &pg.ParseResult{}
	if d.open() {
		d.decParseResult(r)
	}
	ok := !d.bad && d.i == len(d.s) && d.depth == 0
	d.s = ""
	if !ok || !scratch {
		// A tree that failed to decode is dropped, but the fallback
		// (pg.Parse) does not say that nothing kept part of it.
		d.reset(false)
		decoders.Put(d)
		if !ok {
			return nil, nil
		}
		return r, nil
	}
	return r, d
}

var decoders = sync.Pool{New: func() any { return new(decoder) }}

// decoder reads one JSON document. The first error sets bad and moves i to
// the end, so every loop of the generated code ends at its next step.
//
// Nodes, lists and strings are carved out of slabs allocated per parse:
// a tree of a few dozen nodes costs a dozen allocations, not hundreds. A
// slab is reused for another parse only after ParseScratch's Release, and
// strings never are, so a tree that is kept (a cached column default)
// holds only its own parse's memory.
type decoder struct {
	s     string
	i     int
	depth int
	bad   bool

	// stack collects list elements until the list's length is known.
	stack []*pg.Node
	// lists is the free part of the current slab of list elements.
	lists     []*pg.Node
	listChunk int
	// listBuf is the slab lists is part of; listSpare a zeroed one of an
	// earlier parse whose tree is dead (see ParseScratch).
	listBuf, listSpare []*pg.Node
	// text is the free part of the current slab of string bytes.
	text      []byte
	textChunk int
	// empty holds Nodes with no value ({} in a list).
	empty slab[pg.Node]
	// used lists the slabs this parse allocated from (see clearSlab).
	used []uint16
	// count is the number of nodes of each type in the document, by the
	// hash of the type's name (a collision only overcounts), counted before
	// decoding so that each type's slab is allocated once.
	count [len(nodeTable)]int32
	slabs
}

// countNodes counts the nodes of each type in d.s: each is an object whose
// first key, a node type name, starts with an upper-case letter (field
// names do not). Inside a JSON string `{"` can only be followed by the
// end of that string, so string contents are never counted. The counts
// only size slabs; a wrong count costs allocations, not correctness.
func (d *decoder) countNodes() {
	s := d.s
	for {
		i := strings.IndexByte(s, '{')
		if i < 0 || i+2 >= len(s) {
			return
		}
		s = s[i+1:]
		if s[0] != '"' || s[1] < 'A' || s[1] > 'Z' {
			continue
		}
		h := uint32(2166136261) // FNV-1a, as gen's hash
		j := 1
		for ; j < len(s) && s[j] != '"'; j++ {
			h ^= uint32(s[j])
			h *= 16777619
		}
		d.count[int(h)&(len(nodeTable)-1)]++
		s = s[j:]
	}
}

// nodeType reads the one key of a Node object, its type's name, and the
// ':' after it, right after the object's '{', and returns the type's id;
// or consumes the '}' of an empty Node and reports empty. It is field and
// a lookup of nodeTable in one pass over the name. Like token, it takes a backslash as
// part of the name, which then matches no type. An unknown type fails.
func (d *decoder) nodeType() (id int, empty bool) {
	s, i := d.s, d.i
	if i < len(s) && s[i] == '}' {
		d.i++
		d.depth--
		return -1, true
	}
	if i >= len(s) || s[i] != '"' {
		d.fail()
		return -1, false
	}
	h := uint32(2166136261) // FNV-1a, as gen's hash
	j := i + 1
	for ; j < len(s) && s[j] != '"'; j++ {
		h ^= uint32(s[j])
		h *= 16777619
	}
	if j+1 >= len(s) || s[j+1] != ':' {
		d.fail()
		return -1, false
	}
	name := s[i+1 : j]
	d.i = j + 2
	for k := int(h) & (len(nodeTable) - 1); ; k = (k + 1) & (len(nodeTable) - 1) {
		id := int(nodeTable[k]) - 1
		if id < 0 {
			d.fail()
			return -1, false
		}
		if nodeNames[id] == name {
			return id, false
		}
	}
}

// close consumes the '}' that ends an object whose fields were all read.
func (d *decoder) close() {
	if d.i < len(d.s) && d.s[d.i] == '}' {
		d.i++
		d.depth--
		return
	}
	d.fail()
}

// reset drops everything that belongs to the parse. Only the slabs it
// used are cleared: clearing all of them (several kB of pointers) costs a
// write barrier per pointer while the GC marks. With spare (the tree is
// dead, see ParseScratch) the slabs' memory is zeroed and kept for the
// next parse.
func (d *decoder) reset(spare bool) {
	for _, id := range d.used {
		d.clearSlab(id, spare)
	}
	clear(d.stack)
	if spare && len(d.listBuf) > len(d.listSpare) && len(d.listBuf) <= 4*maxSpare {
		clear(d.listBuf)
		d.listSpare = d.listBuf
	}
	d.listBuf = nil
	d.s, d.i, d.depth, d.bad = "", 0, 0, false
	d.stack, d.used = d.stack[:0], d.used[:0]
	d.lists, d.listChunk, d.text, d.textChunk = nil, 0, nil, 0
	d.empty = slab[pg.Node]{}
	d.count = [len(nodeTable)]int32{}
}

// slab hands out elements of T from chunks that double per parse, up to
// maxChunk elements.
type slab[T any] struct {
	free []T
	next int
	// chunk is the chunk free is part of.
	chunk []T
	// spare is a zeroed chunk of an earlier parse whose tree is dead (see
	// ParseScratch), handed out before a new one is allocated.
	spare []T
}

const maxChunk = 256

func (s *slab[T]) new(first int, used *[]uint16, id uint16) *T {
	if len(s.free) == 0 {
		n := s.next
		if n == 0 {
			n = max(first, 1)
			*used = append(*used, id)
		}
		s.next = min(2*n, maxChunk)
		if len(s.spare) >= n {
			s.free, s.spare = s.spare, nil
		} else {
			s.free = make([]T, n)
		}
		s.chunk = s.free
	}
	p := &s.free[0]
	s.free = s.free[1:]
	return p
}

// maxSpare bounds the chunks a pooled decoder keeps (per node type), so
// that one huge statement does not leave its memory in the pool.
const maxSpare = 64

// drop ends the parse's use of the slab. With spare, the tree is dead:
// its last chunk is zeroed and kept, if larger than the spare kept already
// (and not past maxSpare). Otherwise the tree keeps its chunks and the
// slab forgets them.
func (s *slab[T]) drop(spare bool) {
	if spare && len(s.chunk) > len(s.spare) && len(s.chunk) <= maxSpare {
		clear(s.chunk)
		s.spare = s.chunk
	}
	s.free, s.next, s.chunk = nil, 0, nil
}

func (d *decoder) fail() {
	d.bad = true
	d.i = len(d.s)
}

// open consumes the '{' that starts an object.
func (d *decoder) open() bool {
	if d.i >= len(d.s) || d.s[d.i] != '{' {
		d.fail()
		return false
	}
	d.i++
	d.depth++
	if d.depth > maxDepth {
		d.fail()
		return false
	}
	return true
}

// field reads the next key of the object being decoded and its ':', or
// consumes the object's closing '}' and reports false. It is called right
// after the '{' or right after a value, which never ends in '{'.
func (d *decoder) field() (string, bool) {
	if d.i >= len(d.s) {
		d.fail()
		return "", false
	}
	c := d.s[d.i]
	if c == '}' {
		d.i++
		d.depth--
		return "", false
	}
	if d.s[d.i-1] != '{' {
		if c != ',' {
			d.fail()
			return "", false
		}
		d.i++
	}
	k := d.token()
	if d.i >= len(d.s) || d.s[d.i] != ':' {
		d.fail()
		return "", false
	}
	d.i++
	return k, !d.bad
}

// key consumes the next key of the object being decoded, and its ':' (the
// literal `"name":`), if it is that one. Like field, it is called right
// after the '{' or right after a value.
func (d *decoder) key(lit string) bool {
	j := d.i
	if d.s[j-1] != '{' {
		if j >= len(d.s) || d.s[j] != ',' {
			return false
		}
		j++
	}
	if len(d.s)-j < len(lit) || d.s[j+1] != lit[1] || d.s[j:j+len(lit)] != lit {
		return false
	}
	d.i = j + len(lit)
	return true
}

// token reads a key or an enum name and returns it without copying. These
// never have escapes: a backslash ends up inside the token (the quote after
// it taken for the end), which then matches no key or name.
func (d *decoder) token() string {
	if d.i >= len(d.s) || d.s[d.i] != '"' {
		d.fail()
		return ""
	}
	j := strings.IndexByte(d.s[d.i+1:], '"')
	if j < 0 {
		d.fail()
		return ""
	}
	t := d.s[d.i+1 : d.i+1+j]
	d.i += j + 2
	return t
}

// literal consumes lit (null, true, false).
func (d *decoder) literal(lit string) bool {
	if strings.HasPrefix(d.s[d.i:], lit) {
		d.i += len(lit)
		return true
	}
	return false
}

func (d *decoder) bool() bool {
	switch {
	case d.literal("true"):
		return true
	case d.literal("false"):
		return false
	}
	d.fail()
	return false
}

// str decodes a string value into the parse's text slab. libpg_query
// escapes only \b \f \n \r \t \" \\ and, as \u00XX, other control
// characters and < >; other bytes pass through as they are. Strings that
// are not UTF-8 fail: pg.Parse's protobuf decoder refuses them.
func (d *decoder) str() string {
	if d.literal("null") {
		return ""
	}
	if d.i >= len(d.s) || d.s[d.i] != '"' {
		d.fail()
		return ""
	}
	start := d.i + 1
	ascii := true
	for j := start; j < len(d.s); j++ {
		switch c := d.s[j]; {
		case c == '"':
			d.i = j + 1
			raw := d.s[start:j]
			if !ascii && !utf8.ValidString(raw) {
				d.fail()
				return ""
			}
			return d.save(raw)
		case c == '\\':
			return d.escaped(start)
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	d.fail()
	return ""
}

// escaped decodes a string that has escapes, from start (after the quote).
func (d *decoder) escaped(start int) string {
	buf := make([]byte, 0, 64)
	for j := start; j < len(d.s); j++ {
		c := d.s[j]
		switch c {
		case '"':
			d.i = j + 1
			if !utf8.Valid(buf) {
				d.fail()
				return ""
			}
			return d.save(unsafe.String(unsafe.SliceData(buf), len(buf)))
		case '\\':
			j++
			if j >= len(d.s) {
				d.fail()
				return ""
			}
			switch d.s[j] {
			case 'b':
				c = '\b'
			case 'f':
				c = '\f'
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			case '"', '\\', '/':
				c = d.s[j]
			case 'u':
				// libpg_query writes \u00XX for single bytes below 0x80.
				if j+4 >= len(d.s) || d.s[j+1] != '0' || d.s[j+2] != '0' {
					d.fail()
					return ""
				}
				hi, lo := unhex(d.s[j+3]), unhex(d.s[j+4])
				if hi > 7 || lo > 15 {
					d.fail()
					return ""
				}
				c = hi<<4 | lo
				j += 4
			default:
				d.fail()
				return ""
			}
		}
		buf = append(buf, c)
	}
	d.fail()
	return ""
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10
	}
	return 255
}

// save copies s into the parse's text slab. The tree keeps its strings,
// not the JSON document they came from.
func (d *decoder) save(s string) string {
	if s == "" {
		return ""
	}
	if len(d.text) < len(s) {
		if d.textChunk == 0 {
			d.textChunk = max(64, len(d.s)/16)
		}
		n := max(len(s), d.textChunk)
		d.textChunk = min(2*d.textChunk, 64<<10)
		d.text = make([]byte, n)
	}
	n := copy(d.text, s)
	out := unsafe.String(unsafe.SliceData(d.text), n)
	d.text = d.text[n:]
	return out
}

// int reads a decimal integer in [lo, hi].
func (d *decoder) int(lo, hi int64) int64 {
	neg := d.i < len(d.s) && d.s[d.i] == '-'
	if neg {
		d.i++
	}
	limit := uint64(hi)
	if neg {
		limit = uint64(-(lo + 1)) + 1
	}
	v, ok := d.digits(limit)
	if !ok {
		return 0
	}
	if neg {
		return int64(-v)
	}
	return int64(v)
}

// uint reads a decimal integer in [0, hi].
func (d *decoder) uint(hi uint64) uint64 {
	v, _ := d.digits(hi)
	return v
}

func (d *decoder) digits(limit uint64) (uint64, bool) {
	start := d.i
	var v uint64
	for d.i < len(d.s) {
		c := d.s[d.i] - '0'
		if c > 9 {
			break
		}
		if v > (limit-uint64(c))/10 {
			d.fail()
			return 0, false
		}
		v = v*10 + uint64(c)
		d.i++
	}
	// JSON numbers have no leading zeros; libpg_query writes none.
	if d.i == start || (d.s[start] == '0' && d.i-start > 1) {
		d.fail()
		return 0, false
	}
	return v, true
}

// double reads a %f-formatted float. Only zero is exact in that format:
// anything else is left to pg.Parse. No raw parse tree has a float field
// (they belong to planner nodes), so this never costs a fallback.
func (d *decoder) double() float64 {
	if !d.literal("0.000000") {
		d.fail()
	}
	return 0
}

// nodeList decodes a JSON array of Nodes.
func (d *decoder) nodeList() []*pg.Node {
	if d.i >= len(d.s) || d.s[d.i] != '[' {
		d.fail()
		return nil
	}
	d.i++
	if d.depth++; d.depth > maxDepth {
		d.fail()
		return nil
	}
	if d.i < len(d.s) && d.s[d.i] == ']' {
		d.i++
		d.depth--
		return nil
	}
	base := len(d.stack)
	for {
		d.stack = append(d.stack, d.node())
		if d.i >= len(d.s) {
			d.fail()
			break
		}
		c := d.s[d.i]
		d.i++
		if c == ']' {
			d.depth--
			break
		}
		if c != ',' {
			d.fail()
			break
		}
	}
	n := len(d.stack) - base
	if len(d.lists) < n {
		if d.listChunk == 0 {
			d.listChunk = 32
		}
		if m := max(n, d.listChunk); len(d.listSpare) >= m {
			d.lists, d.listSpare = d.listSpare, nil
		} else {
			d.lists = make([]*pg.Node, m)
		}
		d.listBuf = d.lists
		d.listChunk = min(2*d.listChunk, 4096)
	}
	out := d.lists[:n:n]
	d.lists = d.lists[n:]
	copy(out, d.stack[base:])
	clear(d.stack[base:])
	d.stack = d.stack[:base]
	return out
}

func (d *decoder) emptyNode() *pg.Node {
	if len(d.empty.free) == 0 {
		d.empty.free = make([]pg.Node, 2)
	}
	n := &d.empty.free[0]
	d.empty.free = d.empty.free[1:]
	return n
}

// rawStmts decodes ParseResult.stmts.
func (d *decoder) rawStmts() []*pg.RawStmt {
	if d.i >= len(d.s) || d.s[d.i] != '[' {
		d.fail()
		return nil
	}
	d.i++
	if d.i < len(d.s) && d.s[d.i] == ']' {
		d.i++
		return nil
	}
	var out []*pg.RawStmt
	for {
		s := &pg.RawStmt{}
		if d.open() {
			d.decRawStmt(s)
		}
		out = append(out, s)
		if d.i >= len(d.s) {
			d.fail()
			return nil
		}
		c := d.s[d.i]
		d.i++
		if c == ']' {
			return out
		}
		if c != ',' {
			d.fail()
			return nil
		}
	}
}
