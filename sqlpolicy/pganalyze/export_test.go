package pganalyze

import "github.com/keyholedb/keyhole/sqlpolicy"

// FastToken is a token of the fast lexer, for tests.
type FastToken struct {
	Kind       int
	Start, End int
}

// Fast lexer token kinds, for tests.
const (
	FastWord  = ftWord
	FastQuote = ftQuote
	FastParam = ftParam
	FastOp    = ftOp
	FastPunct = ftPunct
	FastInt   = ftInt
	FastNum   = ftNum
	FastStr   = ftStr
)

// FastTokens returns the fast lexer's tokens of sql, false when it
// declines the text.
func FastTokens(sql string) ([]FastToken, bool) {
	l := fastLexer{s: sql}
	var out []FastToken
	for {
		k, start, end := l.next()
		if k == ftEOF {
			break
		}
		out = append(out, FastToken{k, start, end})
	}
	return out, !l.bad
}

// FastLiteral is a literal FastNormal replaced, for tests.
type FastLiteral struct {
	Start, End int
	Class      byte
}

// Literal classes, for tests.
const (
	LitInt    = litInt
	LitNum    = litNum
	LitNegInt = litNegInt
	LitNegNum = litNegNum
	LitStr    = litStr
	LitTrue   = litTrue
	LitFalse  = litFalse
	LitNull   = litNull
)

// FastLiterals returns FastNormal's form of sql, its Literals, and the
// literals it replaced, false when it declines the text.
func FastLiterals(sql string) (form, sig string, lits []FastLiteral, ok bool) {
	var f sqlpolicy.FastForm
	var spans []litSpan
	if !fastNormal(sql, &f, &spans) {
		return "", "", nil, false
	}
	lits = make([]FastLiteral, len(spans))
	for i, s := range spans {
		lits[i] = FastLiteral{s.start, s.end, s.cls}
	}
	return string(f.Text), string(f.Literals), lits, true
}

// FastDigits returns FastNormal's Digits for sql, false when it declines
// the text.
func FastDigits(sql string) ([]int32, bool) {
	var f sqlpolicy.FastForm
	if !fastNormal(sql, &f, nil) {
		return nil, false
	}
	return f.Digits, true
}
