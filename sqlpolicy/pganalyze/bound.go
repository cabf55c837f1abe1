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
func (a *Analyzer) precheck(sql string) *sqlpolicy.Problem {
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
	op := func() *sqlpolicy.Problem {
		chain[depth]++
		sum++
		if sum > a.opts.MaxTerms {
			return tooComplex(fmt.Sprintf("expression chains more than %d operators", a.opts.MaxTerms))
		}
		return nil
	}
	reset := func() {
		sum -= chain[depth]
		chain[depth] = 0
	}
	n := len(sql)
	for i := 0; i < n; {
		c := sql[i]
		switch {
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
		case c == '"':
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
		case c == '(' || c == '[':
			depth++
			if depth > a.opts.MaxDepth {
				return tooComplex(fmt.Sprintf("nesting is deeper than %d levels", a.opts.MaxDepth))
			}
			chain = append(chain, 0)
			i++
		case c == ')' || c == ']':
			if depth > 0 {
				sum -= chain[depth]
				chain = chain[:depth]
				depth--
			}
			i++
		case c == ',' || c == ';':
			reset()
			if c == ';' && depth == 0 {
				joins = 0
			}
			i++
		case isOpByte(c):
			// A run of operator characters is one operator (`::`, `<=`,
			// `||`, `->>`).
			for i < n && isOpByte(sql[i]) && !(sql[i] == '-' && i+1 < n && sql[i+1] == '-') &&
				!(sql[i] == '/' && i+1 < n && sql[i+1] == '*') {
				i++
			}
			if p := op(); p != nil {
				return p
			}
		case isIdentStart(c):
			start := i
			for i < n && isIdentByte(sql[i]) {
				i++
			}
			switch keyword(sql[start:i]) {
			case kwReset:
				reset()
			case kwOperator:
				if p := op(); p != nil {
					return p
				}
			case kwNest:
				joins++
				if joins > a.opts.MaxTerms {
					return tooComplex(fmt.Sprintf("statement has more than %d joins and set operations", a.opts.MaxTerms))
				}
			}
		default:
			i++
		}
	}
	return nil
}

func tooComplex(detail string) *sqlpolicy.Problem {
	return &sqlpolicy.Problem{Code: sqlpolicy.ProblemTooComplex, Detail: detail}
}

func isOpByte(c byte) bool {
	switch c {
	case '+', '-', '*', '/', '<', '>', '=', '~', '!', '@', '#', '%', '^', '&', '|', '`', '?', ':':
		return true
	}
	return false
}

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80
}

func isIdentByte(c byte) bool {
	return isIdentStart(c) || (c >= '0' && c <= '9') || c == '$'
}

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
