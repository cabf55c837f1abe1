package myanalyze_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/myanalyze"
)

// TestLexerRefuses checks the texts MariaDB and TiDB's lexer would split
// differently, and their harmless neighbours.
func TestLexerRefuses(t *testing.T) {
	t.Parallel()
	an := myanalyze.New(nil, myanalyze.Options{})
	cases := []struct {
		sql  string
		want sqlpolicy.ProblemCode // "" = lexes fine
	}{
		{"SELECT 1 /*! , 2 */", sqlpolicy.ProblemUnsupported},
		{"SELECT 1 /*!50000 , 2 */", sqlpolicy.ProblemUnsupported},
		{"SELECT 1 /*M! , 2 */", sqlpolicy.ProblemUnsupported},
		{"SELECT 1 /*M!100000 , 2 */", sqlpolicy.ProblemUnsupported},
		{"SELECT 1 /*T![x] , 2 */", sqlpolicy.ProblemUnsupported},
		{"SELECT /*+ SET_VAR(sql_mode='') */ 1", sqlpolicy.ProblemSessionChange},
		{"SELECT /*+ MAX_EXECUTION_TIME(10) */ 1", ""},
		{"SELECT 1 /* plain */", ""},
		{"SELECT '/*!' AS x", ""},
		{"SELECT `/*!` FROM t", ""},
		{"SELECT 1 -- /*!\n", ""},
		{"SELECT 1 # /*!\n", ""},
		{"SELECT 1 --\x01 x\n", sqlpolicy.ProblemUnparseable},
		{"SELECT 1 --\xa0x\n", sqlpolicy.ProblemUnparseable},
		{"SELECT 1\x85", sqlpolicy.ProblemUnparseable},
		{"SELECT 1 \x00", sqlpolicy.ProblemUnparseable},
		{"SELECT 'é'", ""},
		{"SELECT `é`", ""},
		{"SELECT é", sqlpolicy.ProblemUnparseable},
		{"SELECT 1 /* unterminated", sqlpolicy.ProblemUnparseable},
		{"SELECT 'unterminated", sqlpolicy.ProblemUnparseable},
		{"SELECT 'it''s', \"say \\\"hi\\\"\"", ""},
		{"SET STATEMENT max_statement_time=1 FOR SELECT 1", ""},
		{"SET STATEMENT sql_mode='ANSI_QUOTES' FOR SELECT 1", sqlpolicy.ProblemSessionChange},
		{"SET STATEMENT max_statement_time=1FOR SELECT 1", sqlpolicy.ProblemSessionChange},
		{"SET STATEMENT max_statement_time=(1) FOR SELECT 1", sqlpolicy.ProblemSessionChange},
		{"SET STATEMENT max_statement_time=1 FOR SET STATEMENT max_statement_time=0 FOR SELECT 1", sqlpolicy.ProblemSessionChange},
		{"SELECT 1; SET STATEMENT max_statement_time=1 FOR SELECT 1", sqlpolicy.ProblemSessionChange},
	}
	for _, c := range cases {
		a := an.Analyze(c.sql, nil)
		var got sqlpolicy.ProblemCode
		for _, st := range a.Statements {
			for _, p := range st.Problems {
				if p.Code == sqlpolicy.ProblemUnsupported || p.Code == sqlpolicy.ProblemUnparseable || p.Code == sqlpolicy.ProblemSessionChange {
					if got == "" {
						got = p.Code
					}
				}
			}
		}
		if c.want == "" {
			// Harmless texts may still be refused later (unknown table t),
			// but not by the lexer.
			for _, st := range a.Statements {
				for _, p := range st.Problems {
					assert.NotContains(t, p.Detail, "could read it differently", c.sql)
					assert.NotContains(t, p.Detail, "executable comment", c.sql)
				}
			}
			continue
		}
		assert.Equal(t, c.want, got, "%q: %+v", c.sql, a.Statements)
	}
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	an := myanalyze.New(nil, myanalyze.Options{})
	n1, err := an.Normalize("SELECT id FROM orders WHERE id = 12 AND status = 'new' LIMIT 5")
	assert.NoError(t, err)
	n2, err := an.Normalize("SELECT id FROM orders WHERE id = 7 AND status = 'shipped' LIMIT 50")
	assert.NoError(t, err)
	assert.Equal(t, n1, n2)
	assert.Equal(t, "SELECT id FROM orders WHERE id = ? AND status = '?' LIMIT ?", n1)
	n3, err := an.Normalize("SELECT t1.a, x1 FROM t1 WHERE b = 0x1F AND c = X'1F' AND d = _utf8mb4'x' AND e = 1e5")
	assert.NoError(t, err)
	assert.Equal(t, "SELECT t1.a, x1 FROM t1 WHERE b = 0x1F AND c = X'1F' AND d = _utf8mb4'x' AND e = ?", n3)
	// A string that may be a name (an alias: after AS, after an
	// expression) is kept: it decides what outer references bind to.
	for q, want := range map[string]string{
		"SELECT (SELECT email FROM (SELECT 1 AS 'email') d) FROM customers": "SELECT (SELECT email FROM (SELECT ? AS 'email') d) FROM customers",
		"SELECT name 'n', COUNT(*) 'c' FROM t GROUP BY 'n'":                 "SELECT name 'n', COUNT(*) 'c' FROM t GROUP BY 'n'",
		"SELECT 'a' 'b', x FROM t WHERE y LIKE 'z' OR y IN ('p', 'q')":      "SELECT '?' '?', x FROM t WHERE y LIKE '?' OR y IN ('?', '?')",
		"SELECT CASE WHEN a = 'x' THEN 'y' ELSE 'z' END 'alias' FROM t":     "SELECT CASE WHEN a = '?' THEN '?' ELSE '?' END 'alias' FROM t",
		"SELECT @'v' := 'x', N'x', _latin1'x', X'00', DATE '2020-01-01'":    "SELECT @'v' := '?', N'x', _latin1'x', X'00', DATE '?'",
	} {
		got, err := an.Normalize(q)
		assert.NoError(t, err, q)
		assert.Equal(t, want, got, q)
	}
	// Token boundaries that depend on the sql_mode are not normalized.
	for _, q := range []string{`SELECT 'a\'b'`, `SELECT "x"`, "SELECT 1 /*! 2 */", "SELECT 'open"} {
		_, err := an.Normalize(q)
		assert.Error(t, err, q)
	}
}

// TestNormalizeIn: under the session's sql_mode, escaped and
// double-quoted strings normalize too; a double-quoted identifier under
// ANSI_QUOTES is kept.
func TestNormalizeIn(t *testing.T) {
	t.Parallel()
	an := myanalyze.New(nil, myanalyze.Options{})
	plain := an.NewSession()
	ansi := an.NewSession().(*myanalyze.Session)
	require.NoError(t, ansi.SetSQLMode("ANSI_QUOTES"))
	nbe := an.NewSession().(*myanalyze.Session)
	require.NoError(t, nbe.SetSQLMode("NO_BACKSLASH_ESCAPES"))
	cases := []struct {
		s         sqlpolicy.Session
		sql, want string
	}{
		{plain, `SELECT id FROM t WHERE a = 'it\'s' AND b = "x"`, `SELECT id FROM t WHERE a = '?' AND b = '?'`},
		{nil, `SELECT "x" AS "y"`, `SELECT '?' AS "y"`},
		{ansi, `SELECT "email" FROM t WHERE a = 'x'`, `SELECT "email" FROM t WHERE a = '?'`},
		{nbe, `SELECT 'a\', b FROM t WHERE c = 'd'`, `SELECT '?', b FROM t WHERE c = '?'`},
		{plain, `SELECT 'a\', b' FROM t WHERE c = 'd'`, `SELECT '?' FROM t WHERE c = '?'`},
	}
	for _, tc := range cases {
		got, err := an.NormalizeIn(tc.sql, tc.s)
		assert.NoError(t, err, tc.sql)
		assert.Equal(t, tc.want, got, tc.sql)
	}
	bad := an.NewSession().(*myanalyze.Session)
	require.Error(t, bad.SetClientCharset("sjis"))
	_, err := an.NormalizeIn("SELECT 1", bad)
	assert.Error(t, err, "a session whose texts are all refused normalizes nothing")
}

// TestBounds checks that deep nesting and long operator chains are refused
// before they reach the parser's recursive tree walks, and that long flat
// lists are not.
func TestBounds(t *testing.T) {
	t.Parallel()
	an := myanalyze.New(fuzzCatalog(), myanalyze.Options{})
	tooComplex := func(q string) bool {
		for _, st := range an.Analyze(q, nil).Statements {
			for _, p := range st.Problems {
				if p.Code == sqlpolicy.ProblemTooComplex {
					return true
				}
			}
		}
		return false
	}
	assert.True(t, tooComplex("SELECT 1"+strings.Repeat("+1", 3000)))
	assert.True(t, tooComplex("SELECT "+strings.Repeat("(", 300)+"1"+strings.Repeat(")", 300)))
	assert.True(t, tooComplex("SELECT 1 FROM customers WHERE "+strings.Repeat("id = 1 OR ", 1500)+"id = 2"))
	assert.True(t, tooComplex("SELECT 1 FROM customers"+strings.Repeat(" JOIN orders USING (id)", 2500)))
	assert.True(t, tooComplex("SELECT 1 FROM customers c"+strings.Repeat(", orders", 100000)))
	assert.False(t, tooComplex("SELECT id FROM orders WHERE id IN ("+strings.Repeat("-1, ", 5000)+"1)"))
	assert.False(t, tooComplex("SELECT 1"+strings.Repeat("+1", 500)+", '"+strings.Repeat("+", 5000)+"'"))
}
