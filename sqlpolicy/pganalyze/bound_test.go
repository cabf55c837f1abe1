package pganalyze_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

// crashEnv makes the test binary, run as a subprocess, parse a long
// operator chain with no bound (raw) or through the analyzer (bounded).
const crashEnv = "PGANALYZE_CRASH_MODE"

// longChain is far past the point where libpg_query overflows an 8 MiB
// thread stack (about 25 000 operators).
var longChain = "SELECT 1" + strings.Repeat("+1", 100000)

// longJoin is a left-deep chain of joins, which crashes the same way.
var longJoin = "SELECT 1 FROM t" + strings.Repeat(" JOIN t ON true", 60000)

func TestMain(m *testing.M) {
	switch os.Getenv(crashEnv) {
	case "raw":
		_, _ = pg.Parse(longChain)
		os.Exit(0)
	case "rawjoin":
		_, _ = pg.Parse(longJoin)
		os.Exit(0)
	case "bounded":
		a := pganalyze.New(&catalog.Catalog{Dialect: "postgres"}, pganalyze.Options{})
		for _, sql := range []string{longChain, longJoin} {
			acc := a.Analyze(sql, nil)
			if len(acc.Statements) != 1 || len(acc.Statements[0].Problems) != 1 ||
				acc.Statements[0].Problems[0].Code != sqlpolicy.ProblemTooComplex {
				os.Exit(3)
			}
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runSelf(t *testing.T, mode string) error {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"="+mode)
	return cmd.Run()
}

// TestOperatorChainCrash shows why the pre-scan exists: the raw parser
// kills the process on a long operator chain, the analyzer refuses it and
// the process lives on.
func TestOperatorChainCrash(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"raw", "rawjoin"} {
		err := runSelf(t, mode)
		require.Error(t, err, "%s: the unbounded parser was expected to crash the process", mode)
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee)
		assert.NotEqual(t, 0, ee.ExitCode())
	}

	assert.NoError(t, runSelf(t, "bounded"), "the analyzer must refuse the chain without crashing")
}

func TestBounds(t *testing.T) {
	t.Parallel()
	a := pganalyze.New(&catalog.Catalog{Dialect: "postgres"}, pganalyze.Options{})
	small := pganalyze.New(&catalog.Catalog{Dialect: "postgres"}, pganalyze.Options{MaxBytes: 100, MaxDepth: 5, MaxTerms: 10})
	inList := "SELECT 1 WHERE 1 IN (" + strings.Repeat("1,", 5000) + "1)"
	orList := "SELECT 1 WHERE " + strings.Repeat("1 = 1 OR ", 5000) + "true"
	cases := []struct {
		name    string
		a       *pganalyze.Analyzer
		sql     string
		refused bool
	}{
		{"in list of 5000", a, inList, false},
		{"or chain of 5000 comparisons", a, orList, false},
		{"values rows", a, "VALUES " + strings.Repeat("(1, 'a', 2.5), ", 3000) + "(1, 'a', 2.5)", false},
		{"operator chain", a, "SELECT 1" + strings.Repeat("+1", 3000), true},
		{"concat chain", a, "SELECT 'a'" + strings.Repeat("||'a'", 3000), true},
		{"cast chain", a, "SELECT 1" + strings.Repeat("::int", 3000), true},
		{"collate chain", a, "SELECT 'a'" + strings.Repeat(` COLLATE "C"`, 3000), true},
		{"join chain", a, "SELECT 1 FROM t" + strings.Repeat(" JOIN t ON true", 2500), true},
		{"union chain with select lists", a, "SELECT 1, 2" + strings.Repeat(" UNION SELECT 1, 2", 2500), true},
		{"many statements with joins", a, strings.Repeat("SELECT 1 FROM t JOIN t ON true; ", 3000), false},
		{"deep parentheses", a, "SELECT " + strings.Repeat("(", 300) + "1" + strings.Repeat(")", 300), true},
		{"deep arrays", a, "SELECT ARRAY" + strings.Repeat("[", 300) + "1" + strings.Repeat("]", 300), true},
		{"deep subqueries", a, "SELECT " + strings.Repeat("(SELECT ", 300) + "1" + strings.Repeat(")", 300), true},
		{"chain split across parentheses", a, "SELECT " + strings.Repeat("(1+1+1+1+1+1+1+1+1+", 250) + "1" + strings.Repeat(")", 250), true},
		{"operators in a string do not count", a, "SELECT '" + strings.Repeat("+1", 5000) + "'", false},
		{"operators in a dollar quote do not count", a, "SELECT $x$" + strings.Repeat("+1", 5000) + "$x$", false},
		{"operators in a comment do not count", a, "SELECT 1 /* " + strings.Repeat("+1(", 5000) + " */", false},
		{"operators in a line comment do not count", a, "SELECT 1 -- " + strings.Repeat("+1(", 5000) + "\n", false},
		{"a line comment ends at \\r", a, "SELECT 1 -- x\r" + strings.Repeat("+1", 3000), true},
		{"a line comment ends at \\n", a, "SELECT 1 -- x\n" + strings.Repeat("+1", 3000), true},
		{"parentheses in an identifier do not count", a, `SELECT 1 AS "` + strings.Repeat("(", 500) + `"`, false},
		{"escape string", a, `SELECT E'\'` + strings.Repeat("(", 500) + `'`, false},
		{"max bytes", small, "SELECT 1 FROM customers WHERE " + strings.Repeat("x", 100), true},
		{"max depth", small, "SELECT ((((((1))))))", true},
		{"max terms", small, "SELECT 1+1+1+1+1+1+1+1+1+1+1+1", true},
		{"small ok", small, "SELECT (1+1), 2", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			acc := tc.a.Analyze(tc.sql, nil)
			require.NotEmpty(t, acc.Statements)
			refused := false
			for _, p := range acc.Statements[0].Problems {
				if p.Code == sqlpolicy.ProblemTooComplex {
					refused = true
				}
			}
			assert.Equal(t, tc.refused, refused, "problems: %+v", acc.Statements[0].Problems)
			if !tc.refused {
				for _, p := range acc.Statements[0].Problems {
					assert.NotEqual(t, sqlpolicy.ProblemUnparseable, p.Code, "%+v", p)
				}
			}
		})
	}
}
