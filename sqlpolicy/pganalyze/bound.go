package pganalyze

import (
	"fmt"
	"strings"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// precheck bounds the text before it reaches libpg_query. The parser's
// grammar limits nesting (bison's stack), but a left-deep chain of binary
// operators (`1+1+1...`) builds a tree as deep as the chain, and the C code
// that serializes it recurses once per level: at about 25 000 levels it
// overflows the thread stack and kills the process, which recover cannot
// prevent. The scan skips string literals, quoted identifiers, dollar
// quotes and comments, so their contents never count.
func (a *Analyzer) precheck(sql string) *sqlpolicy.Problem { return a.scan(sql, nil) }

// scan is precheck; when sh is not nil it also hashes the tokens into sh
// (see textShape).
func (a *Analyzer) scan(sql string, sh *textShape) *sqlpolicy.Problem {
	if len(sql) > a.opts.MaxBytes {
		return tooComplex(fmt.Sprintf("statement text is %d bytes, more than the limit of %d", len(sql), a.opts.MaxBytes))
	}
	if strings.IndexByte(sql, 0) >= 0 {
		// The parser gets a C string: it would stop at the NUL and never
		// see the rest of the text.
		return &sqlpolicy.Problem{Code: sqlpolicy.ProblemUnparseable, Detail: "statement text contains a NUL byte"}
	}
	// chain[d] counts operators at nesting depth d since the last `,`,
	// `;`, AND or OR at that depth (AND/OR chains are flattened by the
	// parser, commas separate list elements).
	var chainBuf [64]int
	chain := chainBuf[:1]
	sum := 0 // sum of chain over the open nesting levels
	depth := 0
	// joins counts JOIN, UNION, INTERSECT and EXCEPT in the statement: the
	// parser nests each into the previous one (a left-deep tree) however
	// they are separated, so commas do not reset it.
	joins := 0
	maxTerms := a.opts.MaxTerms
	n := len(sql)
	for i := 0; i < n; {
		c := sql[i]
		switch {
		case c == ' ' || c == '\n' || c == '\t' || c == '\r':
			i++
		case c == '-' && i+1 < n && sql[i+1] == '-':
			// Postgres's lexer ends a -- comment at \n or \r.
			for i < n && sql[i] != '\n' && sql[i] != '\r' {
				i++
			}
		case c == '/' && i+1 < n && sql[i+1] == '*':
			// Block comments nest in Postgres.
			level := 0
			for i < n {
				if sql[i] == '/' && i+1 < n && sql[i+1] == '*' {
					level++
					i += 2
				} else if sql[i] == '*' && i+1 < n && sql[i+1] == '/' {
					level--
					i += 2
					if level == 0 {
						break
					}
				} else {
					i++
				}
			}
		case c == '\'':
			// E'...' strings take backslash escapes.
			escapes := i > 0 && (sql[i-1] == 'e' || sql[i-1] == 'E') && (i < 2 || !isIdentByte(sql[i-2]))
			i++
			for i < n {
				if escapes && sql[i] == '\\' {
					i += 2
					continue
				}
				if sql[i] == '\'' {
					if i+1 < n && sql[i+1] == '\'' {
						i += 2
						continue
					}
					break
				}
				i++
			}
			i++
			if sh != nil {
				sh.lit()
			}
		case c == '"':
			start := i
			i++
			for i < n {
				if sql[i] == '"' {
					if i+1 < n && sql[i+1] == '"' {
						i += 2
						continue
					}
					break
				}
				i++
			}
			i++
			if sh != nil {
				sh.tok(sql[start:min(i, n)])
			}
		case c == '$' && (i == 0 || !isIdentByte(sql[i-1])) && dollarTag(sql[i:]) > 0:
			tl := dollarTag(sql[i:])
			tag := sql[i : i+tl]
			i += tl
			for i < n {
				if sql[i] == '$' && len(sql)-i >= tl && sql[i:i+tl] == tag {
					i += tl
					break
				}
				i++
			}
			if i > n {
				i = n
			}
			if sh != nil {
				sh.lit()
			}
		case c == '(' || c == '[':
			depth++
			if depth > a.opts.MaxDepth {
				return tooComplex(fmt.Sprintf("nesting is deeper than %d levels", a.opts.MaxDepth))
			}
			chain = append(chain, 0)
			i++
			if sh != nil {
				sh.tok(sql[i-1 : i])
			}
		case c == ')' || c == ']':
			if depth > 0 {
				sum -= chain[depth]
				chain = chain[:depth]
				depth--
			}
			i++
			if sh != nil {
				sh.tok(sql[i-1 : i])
			}
		case c == ',' || c == ';':
			sum -= chain[depth]
			chain[depth] = 0
			if c == ';' && depth == 0 {
				joins = 0
			}
			i++
			if sh != nil {
				sh.tok(sql[i-1 : i])
			}
		case isOpByte(c):
			// A run of operator characters is one operator (`::`, `<=`,
			// `||`, `->>`).
			start := i
			for i < n && isOpByte(sql[i]) && !(sql[i] == '-' && i+1 < n && sql[i+1] == '-') &&
				!(sql[i] == '/' && i+1 < n && sql[i+1] == '*') {
				i++
			}
			chain[depth]++
			if sum++; sum > maxTerms {
				return tooComplex(fmt.Sprintf("expression chains more than %d operators", maxTerms))
			}
			if sh != nil {
				sh.op(sql, start, i)
			}
		case isIdentStart(c):
			start := i
			for i < n && isIdentByte(sql[i]) {
				i++
			}
			switch keyword(sql[start:i]) {
			case kwReset:
				sum -= chain[depth]
				chain[depth] = 0
			case kwOperator:
				chain[depth]++
				if sum++; sum > maxTerms {
					return tooComplex(fmt.Sprintf("expression chains more than %d operators", maxTerms))
				}
			case kwNest:
				joins++
				if joins > maxTerms {
					return tooComplex(fmt.Sprintf("statement has more than %d joins and set operations", maxTerms))
				}
			}
			if sh != nil {
				sh.word(sql, start, i)
			}
		case c >= '0' && c <= '9' || c == '.' && i+1 < n && sql[i+1] >= '0' && sql[i+1] <= '9':
			i = numberEnd(sql, i)
			if sh != nil {
				sh.lit()
			}
		case c == '$' && i+1 < n && sql[i+1] >= '0' && sql[i+1] <= '9':
			// A parameter: Normalize numbers literals after them.
			for i++; i < n && sql[i] >= '0' && sql[i] <= '9'; i++ {
			}
			if sh != nil {
				sh.lit()
			}
		default:
			i++
			if sh != nil && c > ' ' {
				sh.tok(sql[i-1 : i])
			}
		}
	}
	return nil
}

// numberEnd returns the end of the number at sql[i:]: digits, '_', '.'
// and an exponent. What follows (a hex number's letters) is left to the
// scan, as an identifier.
func numberEnd(sql string, i int) int {
	n := len(sql)
	for i < n && (sql[i] >= '0' && sql[i] <= '9' || sql[i] == '_' || sql[i] == '.' && !(i+1 < n && sql[i+1] == '.')) {
		i++
	}
	if i+1 < n && (sql[i] == 'e' || sql[i] == 'E') {
		j := i + 1
		if sql[j] == '+' || sql[j] == '-' {
			j++
		}
		if j < n && sql[j] >= '0' && sql[j] <= '9' {
			for i = j; i < n && (sql[i] >= '0' && sql[i] <= '9' || sql[i] == '_'); i++ {
			}
		}
	}
	return i
}

// textShape hashes (FNV-1a) the tokens of a text with every literal, and
// every $n parameter, as one marker, and without whitespace and comments.
// pg_query's Normalize replaces the literals it replaces by $n and keeps
// every other byte, so texts that normalize alike have equal shapes. The
// converse does not hold (ORDER BY 1 and ORDER BY 2 share a shape): a
// shape only says when a normalized form cannot have been seen.
type textShape struct{ h uint64 }

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
	shapeSep  = 0xff // ends a token
	shapeLit  = 0xfe // a literal
)

func (s *textShape) sum() uint64 { return s.h ^ fnvOffset }

func (s *textShape) tok(t string) {
	h := s.h ^ fnvOffset
	for i := 0; i < len(t); i++ {
		h = (h ^ uint64(t[i])) * fnvPrime
	}
	s.h = ((h ^ shapeSep) * fnvPrime) ^ fnvOffset
}

func (s *textShape) lit() {
	h := s.h ^ fnvOffset
	s.h = ((((h ^ shapeLit) * fnvPrime) ^ shapeSep) * fnvPrime) ^ fnvOffset
}

// word hashes an identifier or keyword. TRUE, FALSE, NULL and the ALL of
// LIMIT ALL are literals to Normalize (any ALL is hashed as one: a coarser
// shape costs lookups, not hits); the E, B, X, N of E'...' belong to the
// literal after them.
func (s *textShape) word(sql string, start, end int) {
	if end-start == 1 && end < len(sql) && sql[end] == '\'' {
		switch sql[start] {
		case 'e', 'E', 'b', 'B', 'x', 'X', 'n', 'N':
			return
		}
	}
	if w := sql[start:end]; (len(w) >= 3 && len(w) <= 5) &&
		(strings.EqualFold(w, "true") || strings.EqualFold(w, "false") || strings.EqualFold(w, "null") ||
			strings.EqualFold(w, "all")) {
		s.lit()
		return
	}
	s.tok(sql[start:end])
}

// op hashes the operator sql[start:end], less a '-' before a number
// (Normalize takes a negative number's sign with it).
func (s *textShape) op(sql string, start, end int) {
	if sql[end-1] == '-' {
		j := end
		for j < len(sql) && (sql[j] == ' ' || sql[j] == '\t' || sql[j] == '\n' || sql[j] == '\r') {
			j++
		}
		if j < len(sql) && (sql[j] >= '0' && sql[j] <= '9' || sql[j] == '.') {
			end--
		}
	}
	if end > start {
		s.tok(sql[start:end])
	}
}

func tooComplex(detail string) *sqlpolicy.Problem {
	return &sqlpolicy.Problem{Code: sqlpolicy.ProblemTooComplex, Detail: detail}
}

// byteClass classifies bytes for the scan: one table load per byte
// instead of a chain of comparisons.
var byteClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		switch {
		case c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80:
			t[c] = clIdentStart | clIdent
		case c >= '0' && c <= '9' || c == '$':
			t[c] = clIdent
		}
		switch c {
		case '+', '-', '*', '/', '<', '>', '=', '~', '!', '@', '#', '%', '^', '&', '|', '`', '?', ':':
			t[c] |= clOp
		}
	}
	return t
}()

const (
	clIdentStart = 1 << iota
	clIdent
	clOp
)

func isOpByte(c byte) bool { return byteClass[c]&clOp != 0 }

func isIdentStart(c byte) bool { return byteClass[c]&clIdentStart != 0 }

func isIdentByte(c byte) bool { return byteClass[c]&clIdent != 0 }

// dollarTag returns the length of a dollar-quote opening tag ($$ or $tag$)
// at the start of s, or 0. `$1` is a parameter, not a tag.
func dollarTag(s string) int {
	if len(s) < 2 {
		return 0
	}
	if s[1] == '$' {
		return 2
	}
	if !isIdentStart(s[1]) {
		return 0
	}
	for j := 2; j < len(s); j++ {
		c := s[j]
		if c == '$' {
			return j + 1
		}
		if !(isIdentStart(c) || (c >= '0' && c <= '9')) {
			return 0
		}
	}
	return 0
}

const (
	kwNone = iota
	kwReset
	kwOperator
	kwNest
)

// keyword classifies the words the scan cares about: AND/OR end an
// operator chain (the parser flattens them); IS, COLLATE, AT, NOT, LIKE ...
// extend one; JOIN and set operations nest the statement.
func keyword(s string) int {
	if len(s) < 2 || len(s) > 9 {
		return kwNone
	}
	switch s[0] | 0x20 {
	case 'a', 'o', 'i', 'c', 'n', 'l', 's', 'b', 'j', 'u', 'e':
	default:
		return kwNone
	}
	var b [9]byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	switch string(b[:len(s)]) {
	case "and", "or":
		return kwReset
	case "is", "collate", "at", "not", "like", "ilike", "similar", "between", "in", "isnull", "notnull", "overlaps":
		return kwOperator
	case "join", "union", "intersect", "except":
		return kwNest
	}
	return kwNone
}
