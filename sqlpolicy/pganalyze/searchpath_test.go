package pganalyze_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

// candidateSession is a session in a transaction block that set
// search_path = other, public: the login's path and other, public may
// both be in effect (a ROLLBACK would restore the login's).
func candidateSession(t *testing.T) *pganalyze.Session {
	t.Helper()
	s := &pganalyze.Session{}
	s.Apply(&sqlpolicy.Access{Statements: []sqlpolicy.Statement{{Verb: sqlpolicy.VerbTransaction, Command: "BEGIN", Tx: sqlpolicy.TxBegin}}})
	s.Apply(&sqlpolicy.Access{Statements: []sqlpolicy.Statement{{Verb: sqlpolicy.VerbSet, Command: "SET",
		Settings: []sqlpolicy.Setting{{Name: "search_path", Value: "other,public"}}}}})
	paths, ok := s.SearchPaths()
	require.True(t, ok)
	require.Len(t, paths, 2)
	return s
}

// TestSearchPathCandidates: with more than one search path possibly in
// effect, an unqualified name is resolved under each, and every relation
// it may name is reported.
func TestSearchPathCandidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		sql      string
		tables   []string
		columns  []string
		problems []string
	}{
		{name: "both resolve", sql: "SELECT id FROM customers",
			tables: []string{"other.customers", "public.customers"}, columns: []string{"other.customers.id", "public.customers.id"}},
		{name: "column of one candidate", sql: "SELECT note FROM customers",
			tables: []string{"other.customers", "public.customers"}, columns: []string{"other.customers.note"}},
		{name: "star over both", sql: "SELECT * FROM customers c",
			tables: []string{"other.customers", "public.customers"},
			columns: []string{"other.customers.id", "other.customers.note", "public.customers.created_at", "public.customers.email",
				"public.customers.id", "public.customers.name", "public.customers.ssn"}},
		{name: "only one resolves", sql: "SELECT total FROM orders", tables: []string{"public.orders"}, columns: []string{"public.orders.total"}},
		{name: "qualified", sql: "SELECT id FROM public.customers", tables: []string{"public.customers"}, columns: []string{"public.customers.id"}},
		// Under other, public the UPDATE would fail (other.customers has no
		// name), but the target is still reported: over-reporting is safe.
		{name: "write target", sql: "UPDATE customers SET name = 'x'",
			tables: []string{"other.customers:w", "public.customers:w"}, columns: []string{"public.customers.name:w"}},
		// Deleting public.customers looks for orders referencing them.
		{name: "write of a shared column", sql: "DELETE FROM customers WHERE id = 1",
			tables:  []string{"other.customers:w", "public.customers:w", "public.orders@public.customers"},
			columns: []string{"other.customers.id", "public.customers.id", "public.orders.customer_id@public.customers"}},
		{name: "unqualified DDL", sql: "CREATE TABLE scratch (a int)", tables: []string{"other.scratch:w"}, problems: []string{"session_change"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			acc := analyzer(t).Analyze(tc.sql, candidateSession(t))
			require.Len(t, acc.Statements, 1)
			st := acc.Statements[0]
			assert.Equal(t, join(tc.problems), problemCodes(st.Problems), "problems")
			if tc.tables != nil {
				assert.Equal(t, join(tc.tables), dedup(tableStrings(st.Tables)), "tables")
			}
			if tc.columns != nil {
				assert.Equal(t, join(tc.columns), dedup(colStrings(st.Columns)), "columns")
			}
		})
	}
}

func dedup(ss []string) []string {
	var out []string
	for _, s := range ss {
		if len(out) == 0 || out[len(out)-1] != s {
			out = append(out, s)
		}
	}
	return out
}

// TestSearchPathLost: when the session lost track of its search path,
// unqualified names are refused; qualified ones still resolve.
func TestSearchPathLost(t *testing.T) {
	t.Parallel()
	s := &pganalyze.Session{}
	s.Apply(&sqlpolicy.Access{Statements: []sqlpolicy.Statement{{Verb: sqlpolicy.VerbSet,
		Settings: []sqlpolicy.Setting{{Name: "search_path", Unknown: true}}}}})
	a := analyzer(t)
	st := a.Analyze("SELECT id FROM customers", s).Statements[0]
	assert.Contains(t, problemCodes(st.Problems), "session_change")
	st = a.Analyze("SELECT lower(name) FROM public.customers", s).Statements[0]
	assert.Contains(t, problemCodes(st.Problems), "session_change", "unqualified function")
	st = a.Analyze("SELECT pg_catalog.lower(name) FROM public.customers", s).Statements[0]
	assert.Empty(t, st.Problems)
}

// TestUnpinnedFunctionUnderSetPath: a user function that does not fix its
// own search_path resolves the names in its body under the session's, so
// it is refused (session_change) wherever the path in effect may be
// another than the login's: after a SET that changed it, while a change
// may still be rolled back, after a change earlier in the text, and for
// the functions a table's defaults run. A path equal to the login's, as
// Postgres searches it, changes nothing; qualified calls are no exception
// (the body is what resolves), built-in functions are.
func TestUnpinnedFunctionUnderSetPath(t *testing.T) {
	t.Parallel()
	a := analyzer(t)
	for _, tc := range []struct {
		name string
		sess *pganalyze.Session
		sql  string
		want bool // session_change
	}{
		{"login's path", nil, "SELECT mask(name) FROM public.customers", false},
		{"the same path set again", pathSession("public"), "SELECT mask(name) FROM public.customers", false},
		{"pg_catalog placed as Postgres places it", pathSession("pg_catalog,public"), "SELECT public.mask(name) FROM public.customers", false},
		{"another path", pathSession("other,public"), "SELECT public.mask(name) FROM public.customers", true},
		{"another path, unqualified", pathSession("public,other"), "SELECT mask(name) FROM public.customers", true},
		{"a change that may be rolled back", candidateSession(t), "SELECT public.mask(name) FROM public.customers", true},
		{"a default's function", pathSession("other,public"), "INSERT INTO public.stamped (ticket) VALUES (1)", true},
		{"built-in", pathSession("other,public"), "SELECT pg_catalog.lower(name) FROM public.customers", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := a.Analyze(tc.sql, tc.sess).Statements[0]
			assert.Equal(t, tc.want, slicesContains(problemCodes(st.Problems), "session_change"), "%v", st.Problems)
		})
	}
	acc := a.Analyze("SET search_path = other, public; SELECT public.mask(name) FROM public.customers", nil)
	require.Len(t, acc.Statements, 2)
	assert.Contains(t, problemCodes(acc.Statements[1].Problems), "session_change", "a change earlier in the text")
}

func slicesContains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
