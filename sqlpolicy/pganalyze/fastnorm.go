package pganalyze

import (
	"encoding/binary"
	"math"
	"strconv"
	"strings"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// Literal classes. FastNormal describes each literal it replaces in
// sqlpolicy.FastForm.Literals by its class, which names the token
// Postgres's lexer returns for it (and, for a number, whether the '-'
// before it was replaced with it), followed by the offset of its
// placeholder in the fast form (uvarint). Texts with equal fast forms and
// equal Literals are then the same text but in the literals replaced, and
// as every literal is a token of its own in both (FastNormal takes only
// texts it lexes as Postgres does), the same token sequence but for the
// values of those literals, each of the same token class.
const (
	litInt    = 'i' // ICONST: decimal digits whose value fits in int32
	litNum    = 'n' // FCONST: a decimal point, an exponent, or an integer beyond int32
	litNegInt = 'I' // '-' ICONST
	litNegNum = 'N' // '-' FCONST
	litStr    = 's' // SCONST: '...'
	litTrue   = 't' // TRUE
	litFalse  = 'f' // FALSE
	litNull   = '0' // NULL
)

// Token kinds of the fast lexer.
const (
	ftEOF   = iota
	ftWord  // identifier or keyword
	ftQuote // "quoted identifier"
	ftParam // $n
	ftOp    // an operator as the lexer cuts it ("=", "<>", "-", "@-")
	ftPunct // , ( ) [ ] . ; : :: :=
	ftInt   // ICONST
	ftNum   // FCONST
	ftStr   // SCONST
)

// FastNormal implements sqlpolicy.FastNormalizer: Normalize's format
// (literals replaced by $n, numbered after the highest $n of the text,
// every other byte kept) computed by a lexer in Go, for a subset of texts
// it lexes exactly as Postgres's lexer (scan.l, as libpg_query builds it:
// standard_conforming_strings on) does. Every number, string and
// TRUE/FALSE/NULL literal is replaced, and a '-' before a number where
// it can only be a sign; pg.Normalize replaces fewer in places (ORDER BY
// 1, type modifiers, LIMIT ALL, a GROUP BY item that matches the target
// list): there the forms differ, which the engine finds out when it
// stores an entry (see sqlpolicy.FastNormalizer).
//
// It declines (false) all but one SELECT, INSERT, UPDATE, DELETE or WITH
// statement, with an optional ';' at the end, written in printable ASCII,
// spaces, tabs and line breaks, of words, "quoted identifiers", $n
// parameters, operators, punctuation, plain '...' strings without
// backslashes, and decimal numbers (digits, a point, an exponent). It
// declines comments, dollar quotes, E'..', B'..', X'..', N'..' and U&'..'
// strings, a string continued by another ('a' 'b'), hexadecimal, octal
// and binary numbers, '_' in numbers, a number or parameter with a
// letter right after it, and "..": whatever it does not lex exactly as
// Postgres does. A backslash is declined anywhere, so the fast form never
// depends on standard_conforming_strings (off, it would be an escape).
func (a *Analyzer) FastNormal(sql string, f *sqlpolicy.FastForm) bool {
	if len(sql) > a.opts.MaxBytes {
		return false
	}
	return fastNormal(sql, f, nil)
}

// litSpan is a literal fastNormal replaced: sql[start:end], of class cls.
type litSpan struct {
	start, end int
	cls        byte
}

// fastNormal is FastNormal; when spans is not nil it also appends there
// the literals it replaced (for tests).
func fastNormal(sql string, f *sqlpolicy.FastForm, spans *[]litSpan) bool {
	maxParam := 0
	if strings.IndexByte(sql, '$') >= 0 {
		// Placeholders are numbered after the highest parameter: one pass
		// to find it.
		l := fastLexer{s: sql}
		for {
			k, start, end := l.next()
			if k == ftEOF {
				break
			}
			if k == ftParam {
				n, _ := strconv.Atoi(sql[start+1 : end])
				maxParam = max(maxParam, n)
			}
		}
		if l.bad {
			return false
		}
	}
	l := fastLexer{s: sql}
	text := f.Text[:0]
	lits := f.Literals[:0]
	digits := f.Digits[:0]
	nlits := 0
	last := 0 // end of the last literal replaced
	// unary is whether a '-' after the previous token can only be a sign:
	// the previous token cannot end an operand.
	unary := false
	minusAt := -1 // start of the previous token when it is a '-' that can only be a sign
	isOrNot := false
	n := 0 // tokens
	for ; ; n++ {
		k, start, end := l.next()
		if k == ftEOF {
			break
		}
		var flags uint8
		cls := byte(0)
		if k == ftWord {
			flags, cls = wordClass(sql[start:end])
			if isOrNot {
				cls = 0
			}
		}
		if n == 0 && flags&wDML == 0 {
			return false
		}
		litStart := start
		switch k {
		case ftInt, ftNum:
			integer := k == ftInt && fitsInt32(sql[start:end])
			switch {
			case minusAt < 0 && integer:
				cls = litInt
			case minusAt < 0:
				cls = litNum
			case integer:
				cls = litNegInt
			default:
				cls = litNegNum
			}
			if minusAt >= 0 {
				// Postgres folds the sign into the constant (doNegate) and
				// libpg_query replaces from the '-'.
				litStart = minusAt
			}
			if integer && end <= math.MaxInt32 {
				// Any run of one to nine digits here is an ICONST too
				// (below 10^9, it fits in int32), ending where this one
				// ends: the byte after it is the same, and whether it
				// continues a number does not depend on the digits
				// before it. The sign, if any, is in the text before,
				// and a variant no longer than this text is within
				// MaxBytes. So such a variant has this text's fast form
				// (sqlpolicy.FastForm.Digits).
				digits = append(digits, int32(start), int32(end))
			}
		case ftStr:
			cls = litStr
		case ftPunct:
			if sql[start] == ';' {
				if k2, _, _ := l.next(); k2 != ftEOF {
					return false // more than one statement
				}
			}
		}
		if cls != 0 {
			text = append(text, sql[last:litStart]...)
			lits = append(lits, cls)
			lits = binary.AppendUvarint(lits, uint64(len(text)))
			nlits++
			text = append(text, '$')
			text = strconv.AppendInt(text, int64(maxParam+nlits), 10)
			last = end
			if spans != nil {
				*spans = append(*spans, litSpan{litStart, end, cls})
			}
		}
		minusAt = -1
		if k == ftOp && end-start == 1 && sql[start] == '-' && unary {
			minusAt = start
		}
		isOrNot = false
		switch k {
		case ftOp:
			unary = true
		case ftPunct:
			c := sql[start]
			unary = end-start == 1 && (c == '(' || c == ',' || c == '[')
		case ftWord:
			isOrNot = flags&wIsNot != 0
			unary = flags&wSign != 0
		default:
			unary = false
		}
	}
	if l.bad || n == 0 {
		return false
	}
	f.Text = append(text, sql[last:]...)
	f.Literals = lits
	f.Digits = digits
	return true
}

// fastLexer cuts a text into tokens the way Postgres's lexer does, for
// the subset FastNormal accepts; bad is set, and EOF returned, at the
// first byte outside it.
type fastLexer struct {
	s   string
	i   int
	bad bool
}

func (l *fastLexer) fail() (int, int, int) {
	l.bad = true
	return ftEOF, l.i, l.i
}

// next returns the next token's kind and bounds.
func (l *fastLexer) next() (kind, start, end int) {
	s := l.s
	i := l.i
	for i < len(s) && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r') {
		i++
	}
	l.i = i
	if i >= len(s) || l.bad {
		return ftEOF, i, i
	}
	start = i
	c := s[i]
	switch fastClass[c] {
	case fcWord:
		for i++; i < len(s) && fastClass[s[i]]&(fcWord|fcDigit|fcDollar) != 0; i++ {
		}
		if i < len(s) && i-start == 1 {
			// E'..', B'..', X'..', N'..' and U&'..' strings, U&".." names.
			switch c | 0x20 {
			case 'e', 'b', 'x', 'n':
				if s[i] == '\'' {
					return l.fail()
				}
			case 'u':
				if s[i] == '&' {
					return l.fail()
				}
			}
		}
		kind = ftWord
	case fcDigit:
		return l.number(start)
	case fcQuote:
		for i++; ; i++ {
			if i >= len(s) || s[i] == '\\' || !quotedByte(s[i]) {
				return l.fail() // unterminated, a backslash, a control or non-ASCII byte
			}
			if s[i] == '\'' {
				if i+1 < len(s) && s[i+1] == '\'' {
					i++
					continue
				}
				break
			}
		}
		i++
		// A string followed by another after white space is one token
		// (when a line break separates them) or an error.
		j := i
		for j < len(s) && (s[j] == ' ' || s[j] == '\n' || s[j] == '\t' || s[j] == '\r') {
			j++
		}
		if j < len(s) && s[j] == '\'' {
			return l.fail()
		}
		kind = ftStr
	case fcDQuote:
		for i++; ; i++ {
			if i >= len(s) || !quotedByte(s[i]) {
				return l.fail()
			}
			if s[i] == '"' {
				if i+1 < len(s) && s[i+1] == '"' {
					i++
					continue
				}
				break
			}
		}
		i++
		if i-start == 2 {
			return l.fail() // zero-length delimited identifier
		}
		kind = ftQuote
	case fcDollar:
		// $n; $$ and $tag$ quote strings.
		for i++; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		}
		if i == start+1 || i-start > 7 || i < len(s) && fastClass[s[i]]&(fcWord|fcDigit|fcDollar) != 0 {
			return l.fail()
		}
		kind = ftParam
	case fcPunct:
		i++
		switch {
		case c == '.' && i < len(s) && s[i] >= '0' && s[i] <= '9':
			return l.number(start)
		case c == '.' && i < len(s) && s[i] == '.':
			return l.fail()
		case c == ':' && i < len(s) && (s[i] == ':' || s[i] == '='):
			i++
		}
		kind = ftPunct
	case fcOp:
		// scan.l's {operator}: the longest run of operator characters,
		// cut at a comment start, and with trailing '+' and '-' dropped
		// unless it holds one of ~!@#^&|`?% (so "=-1" is "=" "-" "1").
		for i < len(s) && fastClass[s[i]] == fcOp {
			if (s[i] == '-' && i+1 < len(s) && s[i+1] == '-') || (s[i] == '/' && i+1 < len(s) && s[i+1] == '*') {
				return l.fail() // a comment
			}
			i++
		}
		if i-start > 1 && (s[i-1] == '+' || s[i-1] == '-') &&
			!strings.ContainsAny(s[start:i-1], "~!@#^&|`?%") {
			for i-start > 1 && (s[i-1] == '+' || s[i-1] == '-') {
				i--
			}
		}
		kind = ftOp
	default:
		return l.fail()
	}
	l.i = i
	return kind, start, i
}

// number lexes the number at start: decinteger, numeric or real in
// scan.l, without '_'. Whatever follows must start another token: a
// letter, digit, '_' or '$' right after it makes scan.l's "trailing
// junk" error or a hexadecimal, octal or binary integer, and a '.' makes
// "1.2.3" or "1..2", all declined.
func (l *fastLexer) number(start int) (int, int, int) {
	s := l.s
	i := start
	digits := func() {
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	digits()
	kind := ftInt
	if i < len(s) && s[i] == '.' {
		if i+1 < len(s) && s[i+1] == '.' {
			return l.fail() // 1..2
		}
		i++
		digits()
		kind = ftNum
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		j := i + 1
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		if j < len(s) && s[j] >= '0' && s[j] <= '9' {
			i = j
			digits()
			kind = ftNum
		}
	}
	if i < len(s) && (fastClass[s[i]]&(fcWord|fcDigit|fcDollar) != 0 || s[i] == '.') {
		return l.fail()
	}
	l.i = i
	return kind, start, i
}

// fastClass classifies bytes for the fast lexer; 0 is a byte it declines.
var fastClass = func() (t [256]uint8) {
	for c := 0; c < 128; c++ {
		switch {
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			t[c] = fcWord
		case c >= '0' && c <= '9':
			t[c] = fcDigit
		}
	}
	t['$'] = fcDollar
	t['\''] = fcQuote
	t['"'] = fcDQuote
	for _, c := range ",()[].;:" {
		t[c] = fcPunct
	}
	for _, c := range "~!@#^&|`?+-*/%<>=" {
		t[c] = fcOp
	}
	return t
}()

const (
	fcWord = 1 << iota
	fcDigit
	fcDollar
	fcQuote
	fcDQuote
	fcPunct
	fcOp
)

// quotedByte reports whether c may appear in a string or quoted
// identifier FastNormal accepts: printable ASCII, tab and line breaks.
func quotedByte(c byte) bool {
	return c >= ' ' && c < 0x7f || c == '\t' || c == '\n' || c == '\r'
}

// fitsInt32 reports whether the decimal digits d are at most
// 2147483647: scan.l's process_integer_literal returns ICONST for those
// and FCONST for larger ones.
func fitsInt32(d string) bool {
	d = strings.TrimLeft(d, "0")
	return len(d) < 10 || len(d) == 10 && d <= "2147483647"
}

// Properties of the keywords FastNormal cares about (wordClass).
const (
	wDML   = 1 << iota // SELECT, INSERT, UPDATE, DELETE, WITH: starts a statement FastNormal takes
	wSign              // a '-' after it can only be a sign: it cannot end an operand
	wIsNot             // IS, NOT: a TRUE, FALSE or NULL after it is not a constant
)

// wordClass returns the properties of the word w (matched
// case-insensitively, as the lexer matches keywords) and, for TRUE,
// FALSE and NULL (keywords the grammar makes constants of), its literal
// class. wSign is a guess: a wrong one only makes the fast form differ
// from Normalize's.
func wordClass(w string) (flags uint8, lit byte) {
	if len(w) < 2 || len(w) > 9 {
		return 0, 0
	}
	var b [9]byte
	for i := 0; i < len(w); i++ {
		c := w[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	switch string(b[:len(w)]) {
	case "select":
		return wDML | wSign, 0
	case "insert", "update", "delete", "with":
		return wDML, 0
	case "where", "and", "or", "then", "else", "when", "case", "limit", "offset", "having", "between",
		"returning", "distinct", "like", "ilike", "on":
		return wSign, 0
	case "not":
		return wIsNot | wSign, 0
	case "is":
		return wIsNot, 0
	case "true":
		return 0, litTrue
	case "false":
		return 0, litFalse
	case "null":
		return 0, litNull
	}
	return 0, 0
}
