package pganalyze_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

// startSession is a session that learned, by the session probe, that it
// started as user on path (current_schemas(true) as JSON).
func startSession(t *testing.T, user, path string) *pganalyze.Session {
	t.Helper()
	s := &pganalyze.Session{}
	require.NoError(t, s.LearnProbe([][]byte{[]byte(user), []byte(path)}))
	return s
}

func tablesOf(t *testing.T, a *pganalyze.Analyzer, sql string, s *pganalyze.Session, i int) ([]string, []string) {
	t.Helper()
	acc := a.Analyze(sql, s)
	require.Greater(t, len(acc.Statements), i)
	st := acc.Statements[i]
	return dedup(tableStrings(st.Tables)), problemCodes(st.Problems)
}

// TestSessionProbe: the probe is asked for only where sessions do not log
// in as the catalog's login.
func TestSessionProbe(t *testing.T) {
	t.Parallel()
	all := map[string]bool{"public": true, "other": true, "pg_catalog": true}
	assert.Empty(t, usageCatalog(t, all, "cat", true).SessionProbe(), "static logins: no extra round trip")
	q := usageCatalog(t, all, "cat", false).SessionProbe()
	assert.Contains(t, q, "current_schemas(true)")
	assert.Contains(t, q, "CURRENT_USER")
}

// TestSessionStartingPath: a session that learned its own starting path
// resolves unqualified names along it, not along the catalog's, at login
// and after RESET search_path, RESET ALL-style resets and DISCARD ALL
// (Reset), which return to it; a path it sets replaces it.
func TestSessionStartingPath(t *testing.T) {
	t.Parallel()
	all := map[string]bool{"public": true, "other": true, "pg_catalog": true}
	a := usageCatalog(t, all, "cat", false) // the catalog's path: pg_catalog, public

	// Without a probe: the catalog's path.
	tables, problems := tablesOf(t, a, "SELECT id FROM customers", &pganalyze.Session{}, 0)
	assert.Equal(t, []string{"public.customers"}, tables)
	assert.Empty(t, problems)

	s := startSession(t, "v-agent-1", `["pg_catalog","other","public"]`)
	tables, problems = tablesOf(t, a, "SELECT id FROM customers", s, 0)
	assert.Equal(t, []string{"other.customers"}, tables, "the session's own path")
	assert.Empty(t, problems)
	// In a text that sets and resets the path.
	tables, _ = tablesOf(t, a, "SET search_path = public; RESET search_path; SELECT id FROM customers", s, 2)
	// (The SET may be rolled back by a later error in the text: both
	// paths are candidates.)
	assert.Contains(t, tables, "other.customers", "RESET in the same text returns to the session's path")

	s.Apply(&sqlpolicy.Access{Statements: []sqlpolicy.Statement{setPath("public")}})
	tables, _ = tablesOf(t, a, "SELECT id FROM customers", s, 0)
	assert.Contains(t, tables, "public.customers")
	assert.NotContains(t, tables, "other.customers")

	s.Apply(&sqlpolicy.Access{Statements: []sqlpolicy.Statement{resetPath()}})
	tables, _ = tablesOf(t, a, "SELECT id FROM customers", s, 0)
	assert.Equal(t, []string{"other.customers"}, tables, "RESET search_path returns to the session's path")

	// DISCARD ALL as the analyzer reports it.
	s.Apply(&sqlpolicy.Access{Statements: []sqlpolicy.Statement{setPath("public")}})
	s.Apply(a.Analyze("DISCARD ALL", s))
	tables, _ = tablesOf(t, a, "SELECT id FROM customers", s, 0)
	assert.Equal(t, []string{"other.customers"}, tables, "DISCARD ALL returns to the session's path")

	s.Apply(&sqlpolicy.Access{Statements: []sqlpolicy.Statement{setPath("public")}})
	s.Reset()
	tables, _ = tablesOf(t, a, "SELECT id FROM customers", s, 0)
	assert.Equal(t, []string{"other.customers"}, tables, "Reset keeps what the session learned of its login")

	// Temporary schemas are left out; pg_catalog is placed.
	s = startSession(t, "v-agent-1", `["pg_temp_3","other"]`)
	tables, _ = tablesOf(t, a, "SELECT id FROM customers", s, 0)
	assert.Equal(t, []string{"other.customers"}, tables)
	tables, _ = tablesOf(t, a, "SELECT count(*) FROM pg_class", s, 0)
	assert.Equal(t, []string{"pg_catalog.pg_class"}, tables)

	// A session whose path lists no schema holding the name.
	s = startSession(t, "v-agent-1", `["pg_catalog"]`)
	_, problems = tablesOf(t, a, "SELECT id FROM customers", s, 0)
	assert.Contains(t, problems, "unknown_table")
}

// TestSessionStartingUser: "$user" in a path the session sets names the
// session's own login user (learned by the probe), not the catalog's.
func TestSessionStartingUser(t *testing.T) {
	t.Parallel()
	all := map[string]bool{"public": true, "other": true, "pg_catalog": true}
	a := usageCatalog(t, all, "cat", false)

	s := startSession(t, "other", `["pg_catalog","public"]`)
	s.Apply(&sqlpolicy.Access{Statements: []sqlpolicy.Statement{setPath("$user,public")}})
	tables, problems := tablesOf(t, a, "SELECT id FROM customers", s, 0)
	assert.Empty(t, problems)
	// Schema other exists; whether the session may use it is unknown.
	assert.Equal(t, []string{"other.customers", "public.customers"}, tables)

	s = startSession(t, "v-agent-1", `["pg_catalog","public"]`)
	s.Apply(&sqlpolicy.Access{Statements: []sqlpolicy.Statement{setPath("$user,public")}})
	tables, problems = tablesOf(t, a, "SELECT id FROM customers", s, 0)
	assert.Empty(t, problems)
	assert.Equal(t, []string{"public.customers"}, tables, "no schema of the user's name: skipped")

	// After SET ROLE the starting path and the user are the login's, not
	// the current user's: unqualified names are refused.
	s = startSession(t, "v-agent-1", `["pg_catalog","public"]`)
	s.Apply(&sqlpolicy.Access{Statements: []sqlpolicy.Statement{{Verb: sqlpolicy.VerbSet, Command: "SET",
		Settings: []sqlpolicy.Setting{{Name: "role", Value: "admin"}}}}})
	_, problems = tablesOf(t, a, "SELECT id FROM customers", s, 0)
	assert.Contains(t, problems, "session_change")
	// A reset does not clear the note (a SET ROLE may be in flight
	// behind it): refused for the rest of the session.
	s.Apply(a.Analyze("DISCARD ALL", s))
	_, problems = tablesOf(t, a, "SELECT id FROM customers", s, 0)
	assert.Contains(t, problems, "session_change")
	_, problems = tablesOf(t, a, "SET ROLE admin; SELECT id FROM customers", startSession(t, "u", `["pg_catalog","public"]`), 1)
	assert.Contains(t, problems, "session_change")

	// Resets alone do not change who the session is: the login's path
	// stays known.
	for _, reset := range []string{"DISCARD ALL", "RESET SESSION AUTHORIZATION", "RESET ROLE"} {
		s = startSession(t, "v-agent-1", `["pg_catalog","other","public"]`)
		s.Note(a.Analyze(reset, s))
		s.Apply(a.Analyze(reset, s))
		tables, problems = tablesOf(t, a, "SELECT id FROM customers", s, 0)
		assert.Empty(t, problems, reset)
		assert.Equal(t, []string{"other.customers"}, tables, reset)
		_, problems = tablesOf(t, a, reset+"; SELECT id FROM customers", startSession(t, "u", `["pg_catalog","public"]`), 1)
		assert.Empty(t, problems, "%s in the same text", reset)
	}
}

// TestSessionStartingGeneration: sessions on a starting path they learned
// never share cached decisions with sessions on the catalog's path
// (generation 0) or on another path; sessions on the same path do, and
// return to that generation when their state returns to the login's.
func TestSessionStartingGeneration(t *testing.T) {
	t.Parallel()
	a := startSession(t, "v-a", `["pg_catalog","analytics_gen_test","public"]`)
	b := startSession(t, "v-b", `["pg_catalog","analytics_gen_test","public"]`)
	c := startSession(t, "v-a", `["pg_catalog","public","analytics_gen_test"]`)
	assert.NotZero(t, a.Generation())
	assert.Equal(t, a.Generation(), b.Generation(), "same starting path: shared")
	assert.NotEqual(t, a.Generation(), c.Generation(), "another path")
	// A path equal to the catalog's still gets its own: the catalog (and
	// its path) can change on reload while the session lives on.
	d := startSession(t, "v-d", `["pg_catalog","public"]`)
	assert.NotZero(t, d.Generation())

	start := a.Generation()
	a.Apply(&sqlpolicy.Access{Statements: []sqlpolicy.Statement{setPath("public")}})
	assert.NotEqual(t, start, a.Generation())
	assert.NotZero(t, a.Generation())
	a.Apply(&sqlpolicy.Access{Statements: []sqlpolicy.Statement{resetPath()}})
	assert.Equal(t, start, a.Generation(), "back on the login's path")
	a.Apply(&sqlpolicy.Access{Statements: []sqlpolicy.Statement{setPath("public")}})
	a.Reset()
	assert.Equal(t, start, a.Generation(), "Reset: back on the login's path")
}

// TestSessionProbeMalformed: a row the probe does not give is refused and
// leaves the session as it was.
func TestSessionProbeMalformed(t *testing.T) {
	t.Parallel()
	for _, row := range [][][]byte{
		nil,
		{[]byte("u")},
		{[]byte("u"), []byte(`["public"]`), []byte("x")},
		{nil, []byte(`["public"]`)},
		{[]byte(""), []byte(`["public"]`)},
		{[]byte("u"), nil},
		{[]byte("u"), []byte(`{public}`)},
		{[]byte("u"), []byte(`null`)},
		{[]byte("u"), []byte(`[1]`)},
		{[]byte("u"), []byte(`["public",""]`)},
	} {
		s := &pganalyze.Session{}
		assert.Error(t, s.LearnProbe(row), "%q", row)
		assert.Zero(t, s.Generation())
	}
}
