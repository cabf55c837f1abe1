package pganalyze_test

import (
	"strings"
	"testing"

	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

// FuzzAnalyze checks that any text yields statements that each have a
// verb or a problem, and that the walker never panics (a recovered panic
// shows up as an "internal error" problem).
func FuzzAnalyze(f *testing.F) {
	a := analyzer(f)
	for _, s := range []string{
		"SELECT * FROM customers c JOIN orders o USING (id) WHERE c.ssn = $1 ORDER BY 1",
		"WITH RECURSIVE r(a) AS (SELECT 1 UNION ALL SELECT a + 1 FROM r) SELECT * FROM r",
		"INSERT INTO products VALUES (1, 'a', 2) ON CONFLICT (id) DO UPDATE SET name = excluded.name RETURNING *",
		"SET search_path = public; SHOW ALL; RESET ALL",
		"SELECT (c).*, ssn(c), row_to_json(c) FROM customers c, LATERAL unnest(ARRAY[1]) u",
		"COPY (SELECT 1) TO STDOUT; EXPLAIN ANALYZE SELECT 1; PREPARE p AS SELECT $1",
		"SELECT $x$ ( $x$, E'\\'(', \"((\" FROM t -- (",
		"SELECT set_config(s.name, '1', false) FROM pg_settings s WHERE s.name IN ('work_mem', 'a.b'); SET statement_timeout = ' 0x1.8p1min '",
		"LOCK TABLE customers, pg_class IN ACCESS SHARE MODE; SELECT tableoid, xmin FROM pg_class",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		var sess pganalyze.Session
		acc := a.Analyze(sql, &sess)
		check(t, acc.Statements)
		sess.Apply(acc)
		_, _ = a.Normalize(sql)
	})
}

func check(t *testing.T, sts []sqlpolicy.Statement) {
	t.Helper()
	for i := range sts {
		st := &sts[i]
		if st.Verb == "" && len(st.Problems) == 0 {
			t.Fatalf("statement %d has neither a verb nor a problem: %+v", i, st)
		}
		for _, p := range st.Problems {
			if strings.HasPrefix(p.Detail, "internal error") {
				t.Fatalf("walker panicked: %s", p.Detail)
			}
		}
		if st.Explained != nil {
			check(t, []sqlpolicy.Statement{*st.Explained})
		}
		if st.Prepared != nil {
			check(t, []sqlpolicy.Statement{*st.Prepared})
		}
	}
}
