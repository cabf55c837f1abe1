package pganalyze_test

import (
	"hash/fnv"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/internal/corpus"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

// checkFast checks FastNormal on sql against Postgres's lexer
// (pg.Scan): where FastNormal takes the text, the fast lexer's tokens
// must be Postgres's tokens, each of a kind that fits, and every literal
// it replaced must be a Postgres constant token of the class it names
// (with the '-' token before it for a negative class). These are what
// the decision cache's fast lookup rests on (sqlpolicy.FastNormalizer):
// texts with equal fast forms and classes are then the same Postgres
// token sequence but for the values of the literals replaced. It returns
// FastNormal's form, Literals and literals, ok false when it declines sql.
func checkFast(t testing.TB, sql string) (form, sig string, lits []pganalyze.FastLiteral, ok bool) {
	t.Helper()
	form, sig, lits, ok = pganalyze.FastLiterals(sql)
	toks, lexOK := pganalyze.FastTokens(sql)
	if !ok {
		return "", "", nil, false
	}
	require.True(t, lexOK, "%q: FastNormal took a text its lexer declines", sql)
	scan, err := pg.Scan(sql)
	require.NoError(t, err, "%q: FastNormal took a text Postgres's lexer refuses", sql)
	pgToks := scan.GetTokens()
	require.Len(t, toks, len(pgToks), "%q: token count; fast %v, Postgres %v", sql, toks, pgToks)
	at := map[int]*pg.ScanToken{}
	for i, ft := range toks {
		pt := pgToks[i]
		require.Equal(t, [2]int{int(pt.Start), int(pt.End)}, [2]int{ft.Start, ft.End},
			"%q: token %d (%q) is %q to Postgres (%v)", sql, i, sql[ft.Start:ft.End], sql[pt.Start:pt.End], pt.Token)
		require.True(t, kindFits(ft.Kind, pt), "%q: token %q of fast kind %d is a %v (keyword kind %v) to Postgres",
			sql, sql[ft.Start:ft.End], ft.Kind, pt.Token, pt.KeywordKind)
		at[ft.Start] = pt
	}
	replaced := map[int]bool{}
	for _, l := range lits {
		tok := at[l.Start]
		require.NotNil(t, tok, "%q: literal %q does not start a token", sql, sql[l.Start:l.End])
		if l.Class == pganalyze.LitNegInt || l.Class == pganalyze.LitNegNum {
			require.Equal(t, pg.Token_ASCII_45, tok.Token, "%q: a negative literal starts at a '-'", sql)
			num := strings.TrimLeft(sql[l.Start+1:l.End], " \t\r\n")
			tok = at[l.End-len(num)]
			require.NotNil(t, tok, "%q: %q after a '-' is not a token", sql, num)
		}
		require.Equal(t, l.End, int(tok.End), "%q: literal %q is not one token", sql, sql[l.Start:l.End])
		replaced[int(tok.Start)] = true
		want := map[byte]pg.Token{
			pganalyze.LitInt: pg.Token_ICONST, pganalyze.LitNegInt: pg.Token_ICONST,
			pganalyze.LitNum: pg.Token_FCONST, pganalyze.LitNegNum: pg.Token_FCONST,
			pganalyze.LitStr: pg.Token_SCONST, pganalyze.LitTrue: pg.Token_TRUE_P,
			pganalyze.LitFalse: pg.Token_FALSE_P, pganalyze.LitNull: pg.Token_NULL_P,
		}[l.Class]
		require.Equal(t, want, tok.Token, "%q: literal %q of class %c", sql, sql[l.Start:l.End], l.Class)
	}
	for _, pt := range pgToks {
		switch pt.Token {
		case pg.Token_ICONST, pg.Token_FCONST, pg.Token_SCONST:
			assert.True(t, replaced[int(pt.Start)], "%q: constant %q not replaced", sql, sql[pt.Start:pt.End])
		}
	}
	return form, sig, lits, true
}

// kindFits reports whether Postgres's token pt can be the fast lexer's
// token kind k.
func kindFits(k int, pt *pg.ScanToken) bool {
	switch pt.Token {
	case pg.Token_ICONST:
		return k == pganalyze.FastInt
	case pg.Token_FCONST:
		return k == pganalyze.FastInt || k == pganalyze.FastNum
	case pg.Token_SCONST:
		return k == pganalyze.FastStr
	case pg.Token_PARAM:
		return k == pganalyze.FastParam
	case pg.Token_IDENT:
		return k == pganalyze.FastWord || k == pganalyze.FastQuote
	case pg.Token_TYPECAST, pg.Token_COLON_EQUALS, pg.Token_ASCII_40, pg.Token_ASCII_41, pg.Token_ASCII_44,
		pg.Token_ASCII_46, pg.Token_ASCII_58, pg.Token_ASCII_59, pg.Token_ASCII_91, pg.Token_ASCII_93:
		return k == pganalyze.FastPunct
	case pg.Token_Op, pg.Token_EQUALS_GREATER, pg.Token_LESS_EQUALS, pg.Token_GREATER_EQUALS, pg.Token_NOT_EQUALS,
		pg.Token_ASCII_37, pg.Token_ASCII_42, pg.Token_ASCII_43, pg.Token_ASCII_45, pg.Token_ASCII_47,
		pg.Token_ASCII_60, pg.Token_ASCII_61, pg.Token_ASCII_62, pg.Token_ASCII_63, pg.Token_ASCII_94:
		return k == pganalyze.FastOp
	}
	return k == pganalyze.FastWord && pt.KeywordKind != pg.KeywordKind_NO_KEYWORD
}

// checkVariant checks the property the fast lookup serves: for a text
// sql whose fast form equals pg.Normalize's, a variant with other values
// of the same classes in its literals, with the same fast form and
// Literals, normalizes (pg.Normalize) to that same form. rng picks the
// values.
func checkVariant(t testing.TB, sql, form, sig string, lits []pganalyze.FastLiteral, rng *rand.Rand) {
	t.Helper()
	norm, err := pg.Normalize(sql)
	if err != nil || norm != form || len(lits) == 0 {
		return
	}
	var b strings.Builder
	last := 0
	for _, l := range lits {
		b.WriteString(sql[last:l.Start])
		b.WriteString(literalOf(l.Class, rng))
		last = l.End
	}
	b.WriteString(sql[last:])
	v := b.String()
	vform, vsig, _, ok := checkFast(t, v)
	if !ok || vform != form || vsig != sig {
		return
	}
	vnorm, err := pg.Normalize(v)
	require.NoError(t, err, "%q (a variant of %q) does not normalize", v, sql)
	require.Equal(t, form, vnorm, "%q and its variant %q have the fast form %q", sql, v, form)
	// The engine answers a variant from the text's entry without calling
	// Shape: Shape must refuse both or neither, within the byte limit
	// FastNormal itself enforces. Tight limits make the corpus reach them.
	if len(sql) <= tightLimits.MaxBytes && len(v) <= tightLimits.MaxBytes {
		_, ok := tightAnalyzer.Shape(sql)
		_, vok := tightAnalyzer.Shape(v)
		require.Equal(t, ok, vok, "Shape accepts %q: %v, its variant %q: %v", sql, ok, v, vok)
	}
}

// checkDigits checks FastNormal's Digits for sql (sqlpolicy.FastForm),
// which lets the engine answer a digit variant of sql from a session's
// memo without lexing it: each pair bounds an integer literal it
// replaced (class i or I, the digits alone), every such literal is named,
// and texts that hold other runs of one to nine digits there, no longer
// than sql, have sql's form and Literals and the same verdict from Shape.
// form, sig and lits are FastNormal's for sql.
func checkDigits(t testing.TB, sql, form, sig string, lits []pganalyze.FastLiteral, rng *rand.Rand) {
	t.Helper()
	digits, ok := pganalyze.FastDigits(sql)
	require.True(t, ok)
	require.Zero(t, len(digits)%2, "%q: Digits %v", sql, digits)
	var want []int32
	for _, l := range lits {
		if l.Class != pganalyze.LitInt && l.Class != pganalyze.LitNegInt {
			continue
		}
		start := l.End
		for start > l.Start && sql[start-1] >= '0' && sql[start-1] <= '9' {
			start--
		}
		want = append(want, int32(start), int32(l.End))
	}
	require.Equal(t, want, digits, "%q: Digits do not name its integer literals %v", sql, lits)
	if len(digits) == 0 {
		return
	}
	_, shapeOK := tightAnalyzer.Shape(sql)
	for range 4 {
		var b strings.Builder
		last := 0
		for k := 0; k < len(digits); k += 2 {
			b.WriteString(sql[last:digits[k]])
			n := 1 + rng.IntN(9)
			for i := range n {
				if i == 0 && rng.IntN(4) == 0 {
					b.WriteByte('0') // leading zeros are digits like any
					continue
				}
				b.WriteByte(byte('0' + rng.IntN(10)))
			}
			last = int(digits[k+1])
		}
		b.WriteString(sql[last:])
		v := b.String()
		if len(v) > len(sql) {
			continue
		}
		vform, vsig, _, ok := checkFast(t, v)
		require.True(t, ok, "%q, a digit variant of %q, is declined", v, sql)
		require.Equal(t, form, vform, "%q, a digit variant of %q", v, sql)
		require.Equal(t, sig, vsig, "%q, a digit variant of %q: Literals", v, sql)
		if len(sql) <= tightLimits.MaxBytes {
			_, vok := tightAnalyzer.Shape(v)
			require.Equal(t, shapeOK, vok, "Shape accepts %q: %v, its digit variant %q: %v", sql, shapeOK, v, vok)
		}
	}
}

// tightAnalyzer scans with small limits (see checkVariant).
var (
	tightLimits   = pganalyze.Options{MaxBytes: 400, MaxDepth: 3, MaxTerms: 4}
	tightAnalyzer = pganalyze.New(nil, tightLimits)
)

// literalOf returns a literal of class cls.
func literalOf(cls byte, rng *rand.Rand) string {
	ints := []string{"0", "7", "2147483647", "0002147483647", "42"}
	nums := []string{"2147483648", "99999999999999999999", "1.5", ".5", "5.", "1.e5", "2E-3", "0.0e+0", "3000000000"}
	strs := []string{"''", "'x'", "''''", "'a''b'", "'--'", "'/*'", "'\"'", "';'", "'$1'", "' \n '", "'select'"}
	pick := func(l []string) string { return l[rng.IntN(len(l))] }
	minus := func() string { return pick([]string{"-", "- ", "-\n"}) }
	switch cls {
	case pganalyze.LitInt:
		if rng.IntN(2) == 0 {
			return strconv.Itoa(rng.IntN(1 << 31))
		}
		return pick(ints)
	case pganalyze.LitNegInt:
		return minus() + pick(ints)
	case pganalyze.LitNum:
		return pick(nums)
	case pganalyze.LitNegNum:
		return minus() + pick(nums)
	case pganalyze.LitStr:
		return pick(strs)
	case pganalyze.LitTrue:
		return pick([]string{"true", "TRUE", "True"})
	case pganalyze.LitFalse:
		return pick([]string{"false", "FALSE"})
	case pganalyze.LitNull:
		return pick([]string{"null", "NULL"})
	}
	panic("unknown class " + string(cls))
}

// TestFastNormalLexing checks FastNormal on the lexing corners it must get
// right or decline: want is the fast form, "" for a declined text. Every
// text taken is also checked against Postgres's lexer (checkFast), and
// same says whether the form is pg.Normalize's.
func TestFastNormalLexing(t *testing.T) {
	for _, tc := range []struct {
		sql, want string
		classes   string
		same      bool
	}{
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 12345;", "SELECT abalance FROM pgbench_accounts WHERE aid = $1;", "i", true},
		{"select a from t where b='x''y' and c=''", "select a from t where b=$1 and c=$2", "ss", true},
		// standard_conforming_strings: a backslash is a plain character in
		// '...', an escape in E'...' and where the session turns it off;
		// texts with one are declined, whatever the session.
		{`SELECT 'a\'`, "", "", false},
		{`SELECT 'a\\b'`, "", "", false},
		{`SELECT E'a'`, "", "", false},
		{`SELECT e'a'`, "", "", false},
		{`SELECT B'101', X'ff', N'n'`, "", "", false},
		{`SELECT U&'d\0061t'`, "", "", false},
		{`SELECT U&"d" FROM t`, "", "", false},
		{"SELECT $$a$$", "", "", false},
		{"SELECT $x$a$x$", "", "", false},
		{"SELECT a FROM t WHERE b = 'a'\n'b'", "", "", false},
		{"SELECT a FROM t WHERE b = 'a' 'b'", "", "", false},
		{"SELECT 1 -- c", "", "", false},
		{"SELECT /* a /* b */ c */ 1", "", "", false},
		{"SELECT 1 +-- c\n2", "", "", false},
		{"SELECT 1 */* c */ 2", "", "", false},
		// Comment starts inside strings and quoted identifiers are text.
		{`SELECT '--', '/*', "a--b" FROM t`, `SELECT $1, $2, "a--b" FROM t`, "ss", true},
		{`SELECT "it's" FROM "a""b" WHERE x = 'y'`, `SELECT "it's" FROM "a""b" WHERE x = $1`, "s", true},
		{`SELECT "" FROM t`, "", "", false},
		{`SELECT "a FROM t`, "", "", false},
		{`SELECT 'a FROM t`, "", "", false},
		// Parameters: literals are numbered after the highest.
		{"SELECT a FROM t WHERE b = $2 AND c = 5", "SELECT a FROM t WHERE b = $2 AND c = $3", "i", true},
		{"SELECT a FROM t WHERE b = $1x", "", "", false},
		{"SELECT a FROM t WHERE b = $", "", "", false},
		{"SELECT a FROM t WHERE b = $12345678", "", "", false},
		{"SELECT a$1, b$ FROM t$x WHERE c = 1", "SELECT a$1, b$ FROM t$x WHERE c = $1", "i", true},
		// ::, :=, and operators cut the way scan.l cuts them.
		{"SELECT a::int FROM t WHERE b=-1 AND c<>-2 AND d>=+3", "SELECT a::int FROM t WHERE b=$1 AND c<>$2 AND d>=+$3", "IIi", true},
		{"SELECT a FROM t WHERE b @-1", "SELECT a FROM t WHERE b @-$1", "i", true},
		{"SELECT a FROM t WHERE b - 1 > 0 AND c-1 < d", "SELECT a FROM t WHERE b - $1 > $2 AND c-$3 < d", "iii", true},
		{"SELECT -1, - 2.5, -.5e3", "SELECT $1, $2, $3", "INN", true},
		{"SELECT a FROM t WHERE x IN (-1, -2)", "SELECT a FROM t WHERE x IN ($1, $2)", "II", true},
		// Numbers: decimal integers (ICONST up to 2147483647, FCONST
		// beyond), decimals and exponents; hex, octal, binary, '_' and
		// trailing junk are declined.
		{"SELECT 2147483647, 2147483648, 0000000000002147483647", "SELECT $1, $2, $3", "ini", true},
		{"SELECT 1.e5, .5, 5., 1e-3, 1E+3", "SELECT $1, $2, $3, $4, $5", "nnnnn", true},
		{"SELECT 0x1F", "", "", false},
		{"SELECT 0o17", "", "", false},
		{"SELECT 0b101", "", "", false},
		{"SELECT 1_000", "", "", false},
		{"SELECT 1abc", "", "", false},
		{"SELECT 1e", "", "", false},
		{"SELECT 1e+", "", "", false},
		{"SELECT 1..2", "", "", false},
		{"SELECT 1.2.3", "", "", false},
		{"SELECT a[1:2] FROM t", "SELECT a[$1:$2] FROM t", "ii", true},
		// TRUE, FALSE and NULL are constants, but not after IS or NOT.
		{"SELECT a FROM t WHERE b = TRUE AND c = false AND d = NULL", "SELECT a FROM t WHERE b = $1 AND c = $2 AND d = $3", "tf0", true},
		{"SELECT a FROM t WHERE b IS NULL AND c IS NOT TRUE", "SELECT a FROM t WHERE b IS NULL AND c IS NOT TRUE", "", true},
		// What Normalize keeps, FastNormal replaces: the forms differ, so
		// the engine marks no entry for them.
		{"SELECT a FROM t ORDER BY 1", "SELECT a FROM t ORDER BY $1", "i", false},
		{"SELECT a::varchar(10) FROM t", "SELECT a::varchar($1) FROM t", "i", false},
		{"SELECT a FROM t LIMIT 5 OFFSET 6", "SELECT a FROM t LIMIT $1 OFFSET $2", "ii", false},
		// One DML statement only.
		{"SELECT 1; SELECT 2", "", "", false},
		{"SELECT 1;", "SELECT $1;", "i", true},
		{"SET x = 1", "", "", false},
		{"EXPLAIN SELECT 1", "", "", false},
		{"(SELECT 1)", "", "", false},
		{"", "", "", false},
		{"INSERT INTO t (a, b) VALUES (1, 'x') RETURNING a", "INSERT INTO t (a, b) VALUES ($1, $2) RETURNING a", "is", true},
		{"UPDATE t SET a = a + 1 WHERE b = 'x'", "UPDATE t SET a = a + $1 WHERE b = $2", "is", true},
		{"DELETE FROM t WHERE a < -3", "DELETE FROM t WHERE a < $1", "I", true},
		{"WITH x AS (SELECT 1) SELECT * FROM x", "WITH x AS (SELECT $1) SELECT * FROM x", "i", true},
		// Bytes outside printable ASCII.
		{"SELECT 'é'", "", "", false},
		{"SELECT é FROM t", "", "", false},
		{"SELECT\f1", "", "", false},
		{"SELECT 'a\x01'", "", "", false},
		{"SELECT a FROM t WHERE b = ?", "SELECT a FROM t WHERE b = ?", "", false},
	} {
		t.Run(tc.sql, func(t *testing.T) {
			form, _, lits, ok := checkFast(t, tc.sql)
			if tc.want == "" {
				assert.False(t, ok, "%q must be declined, got %q", tc.sql, form)
				return
			}
			require.True(t, ok, "%q declined", tc.sql)
			assert.Equal(t, tc.want, form)
			var classes []byte
			for _, l := range lits {
				classes = append(classes, l.Class)
			}
			assert.Equal(t, tc.classes, string(classes))
			if norm, err := pg.Normalize(tc.sql); err == nil {
				assert.Equal(t, tc.same, norm == form, "pg.Normalize gives %q", norm)
			} else {
				assert.False(t, tc.same, "pg.Normalize: %v", err)
			}
		})
	}
}

// TestFastNormalCorpus runs checkFast and checkVariant over the policy
// corpus, and checks that most of its DML texts are taken and agree with
// pg.Normalize.
func TestFastNormalCorpus(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	taken, same := 0, 0
	for _, sql := range corpusTexts(t) {
		form, sig, lits, ok := checkFast(t, sql)
		if !ok {
			continue
		}
		taken++
		if norm, err := pg.Normalize(sql); err == nil && norm == form {
			same++
		}
		for range 4 {
			checkVariant(t, sql, form, sig, lits, rng)
		}
		checkDigits(t, sql, form, sig, lits, rng)
	}
	t.Logf("%d texts taken, %d of them with pg.Normalize's form", taken, same)
	assert.Greater(t, taken, 150)
	assert.Greater(t, same, 100)
}

// FuzzFastNormal checks FastNormal against Postgres's lexer (checkFast)
// and the fast lookup's property (checkVariant) on the corpus and its
// mutations.
func FuzzFastNormal(f *testing.F) {
	for _, s := range corpusTexts(f) {
		f.Add(s)
	}
	for _, s := range []string{
		"SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
		"SELECT a FROM t WHERE b=-1 AND c<>-2 AND d>=+3 AND e @-4 AND f = 'x''y' AND g IS NOT NULL",
		"SELECT 2147483648, 1.e5, .5, 5., TRUE, false, NULL, $2 ORDER BY 1 LIMIT 3",
		`UPDATE "t""x" SET a$ = a$ - 1 WHERE b = '--' RETURNING "it's"`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		if len(sql) > 2000 || strings.IndexByte(sql, 0) >= 0 {
			return
		}
		form, sig, lits, ok := checkFast(t, sql)
		if !ok {
			return
		}
		h := fnv.New64a()
		h.Write([]byte(sql))
		rng := rand.New(rand.NewPCG(h.Sum64(), 0))
		for range 3 {
			checkVariant(t, sql, form, sig, lits, rng)
		}
		checkDigits(t, sql, form, sig, lits, rng)
	})
}

// corpusTexts returns the texts of the policy corpus (testdata/pg).
func corpusTexts(t testing.TB) []string {
	t.Helper()
	var texts []string
	for _, dir := range []string{"cases", "cases-writer"} {
		cases, err := corpus.LoadCases(filepath.Join("../../testdata/pg", dir))
		require.NoError(t, err)
		for _, c := range cases {
			texts = append(texts, c.SQL...)
		}
	}
	return texts
}
