package pganalyze_test

import (
	"maps"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

// usageCatalog is the test catalog with other.mask added (a function
// shadowing public.mask) and what the catalog knows of schema USAGE
// replaced: usage nil is a catalog without the field. Both masks fix
// their own search_path, so that calling them under a path the session
// set shows resolution alone (TestUnpinnedFunctionUnderSetPath has those
// that do not).
func usageCatalog(t *testing.T, usage map[string]bool, login string, shared bool) *pganalyze.Analyzer {
	t.Helper()
	c := *testCatalog(t) // a shallow copy: the shared maps are not written
	c.Functions = maps.Clone(c.Functions)
	pub := c.Function("public", "mask")
	require.NotNil(t, pub)
	pinned := *pub
	pinned.SetsSearchPath = true
	c.Functions["public"] = maps.Clone(c.Functions["public"])
	c.Functions["public"]["mask"] = &pinned
	m := pinned
	m.Schema = "other"
	c.Functions["other"] = map[string]*catalog.Function{"mask": &m}
	c.SchemaUsage, c.Login, c.SessionsShareLogin = usage, login, shared
	return pganalyze.New(&c, pganalyze.Options{})
}

// pathSession is a session whose SET search_path (outside a transaction
// block) certainly took effect.
func pathSession(value string) *pganalyze.Session {
	s := &pganalyze.Session{}
	s.Apply(&sqlpolicy.Access{Statements: []sqlpolicy.Statement{{Verb: sqlpolicy.VerbSet, Command: "SET",
		Settings: []sqlpolicy.Setting{{Name: "search_path", Value: value}}}}})
	return s
}

// TestSearchPathSkipsUnusableSchemas: Postgres skips a search_path entry
// naming a schema the current user lacks USAGE on or that does not exist,
// and "$user" unless it names a usable schema. A session-set path is
// resolved the same way where the catalog knows (sessions log in as the
// catalog's login), and under every combination where it does not, so a
// statement is allowed only if allowed however Postgres resolves it.
func TestSearchPathSkipsUnusableSchemas(t *testing.T) {
	t.Parallel()
	all := map[string]bool{"public": true, "other": true, "pg_catalog": true}
	noOther := map[string]bool{"public": true, "other": false, "pg_catalog": true}
	tests := []struct {
		name     string
		usage    map[string]bool
		login    string
		shared   bool
		path     string
		sql      string
		tables   []string
		funcs    []string
		problems []string
	}{
		{name: "no USAGE: skipped", usage: noOther, shared: true, path: "other,public",
			sql: "SELECT id FROM customers", tables: []string{"public.customers"}},
		{name: "USAGE: searched", usage: all, shared: true, path: "other,public",
			sql: "SELECT id FROM customers", tables: []string{"other.customers"}},
		{name: "not existing: skipped", usage: map[string]bool{"public": true}, shared: true, path: "other,public",
			sql: "SELECT id FROM customers", tables: []string{"public.customers"}},
		{name: "sessions log in otherwise: both", usage: all, path: "other,public",
			sql: "SELECT id FROM customers", tables: []string{"other.customers", "public.customers"}},
		{name: "sessions log in otherwise, no USAGE for the catalog: both", usage: noOther, path: "other,public",
			sql: "SELECT id FROM customers", tables: []string{"other.customers", "public.customers"}},
		{name: "catalog without usage: both", usage: nil, shared: true, path: "other,public",
			sql: "SELECT id FROM customers", tables: []string{"other.customers", "public.customers"}},
		// public, other, both uncertain: if public is skipped, customers
		// is other's. Every schema that holds the name is a candidate.
		{name: "several uncertain", usage: nil, path: "public,other",
			sql: "SELECT id FROM customers", tables: []string{"other.customers", "public.customers"}},
		{name: "function, no USAGE", usage: noOther, shared: true, path: "other,public",
			sql: "SELECT mask(name) FROM public.customers", funcs: []string{"public.mask"}},
		{name: "function, USAGE", usage: all, shared: true, path: "other,public",
			sql: "SELECT mask(name) FROM public.customers", funcs: []string{"other.mask"}},
		{name: "function, unknown", usage: all, path: "other,public",
			sql: "SELECT mask(name) FROM public.customers", funcs: []string{"other.mask", "public.mask"}},
		{name: "$user is the login's schema", usage: all, login: "other", shared: true, path: "$user,public",
			sql: "SELECT id FROM customers", tables: []string{"other.customers"}},
		{name: "$user without USAGE", usage: noOther, login: "other", shared: true, path: "$user,public",
			sql: "SELECT id FROM customers", tables: []string{"public.customers"}},
		{name: "$user of no schema", usage: all, login: "nobody", shared: true, path: "$user,public",
			sql: "SELECT id FROM customers", tables: []string{"public.customers"}},
		{name: "$user of an unknown login", usage: all, login: "other", path: "$user,public",
			sql: "SELECT id FROM customers", problems: []string{"session_change", "unknown_table"}},
		{name: "$user, qualified", usage: all, path: "$user,public",
			sql: "SELECT id FROM public.customers", tables: []string{"public.customers"}},
		// Unqualified DDL creates in the first schema Postgres searches.
		{name: "DDL skips the unusable schema", usage: noOther, shared: true, path: "other,public",
			sql: "CREATE TABLE scratch (a int)", tables: []string{"public.scratch:w"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := usageCatalog(t, tc.usage, tc.login, tc.shared)
			acc := a.Analyze(tc.sql, pathSession(tc.path))
			require.Len(t, acc.Statements, 1)
			st := acc.Statements[0]
			assert.Equal(t, join(tc.problems), problemCodes(st.Problems), "problems: %v", st.Problems)
			if tc.tables != nil {
				assert.Equal(t, join(tc.tables), dedup(tableStrings(st.Tables)), "tables")
			}
			if tc.funcs != nil {
				assert.Equal(t, join(tc.funcs), dedup(funcStrings(st.Functions)), "functions")
			}
		})
	}
}

// TestSearchPathCandidatesSkipUnusable: a search path that may be in
// effect (set in a transaction block, with the login's as the other
// candidate) is resolved as Postgres would too.
func TestSearchPathCandidatesSkipUnusable(t *testing.T) {
	t.Parallel()
	a := usageCatalog(t, map[string]bool{"public": true, "other": false, "pg_catalog": true}, "", true)
	st := a.Analyze("SELECT id FROM customers", candidateSession(t)).Statements[0]
	assert.Empty(t, st.Problems)
	assert.Equal(t, []string{"public.customers"}, dedup(tableStrings(st.Tables)))
	// In the same text as the SET.
	st = a.Analyze("SET search_path = other, public; SELECT id FROM customers", nil).Statements[1]
	assert.Equal(t, []string{"public.customers"}, dedup(tableStrings(st.Tables)))
	// An unknown "$user" in a path set earlier in the text.
	b := usageCatalog(t, map[string]bool{"public": true, "other": true, "pg_catalog": true}, "other", false)
	st = b.Analyze(`SET search_path = "$user", public; SELECT id FROM customers`, nil).Statements[1]
	assert.Contains(t, problemCodes(st.Problems), "session_change")
}

// TestSearchPathVerbatimNames: each SET argument, and each quoted name in
// set_config's list, is one schema name taken verbatim, so ' other' is no
// schema other (Postgres skips it as not existing). Such names cannot be
// carried by the session's rendering of the path: they are refused, not
// trimmed into a schema Postgres does not search.
func TestSearchPathVerbatimNames(t *testing.T) {
	t.Parallel()
	a := analyzer(t)
	for _, set := range []string{
		`SET search_path = ' other', public`,
		`SET search_path = 'other ', public`,
		`SET search_path = 'other,public'`,
		`SELECT set_config('search_path', '" other", public', false)`,
		`SELECT set_config('search_path', '"other,x", public', false)`,
	} {
		acc := a.Analyze(set+"; SELECT id FROM customers", nil)
		require.Len(t, acc.Statements, 2)
		assert.Contains(t, problemCodes(acc.Statements[0].Problems), "session_change", set)
		assert.Contains(t, problemCodes(acc.Statements[1].Problems), "session_change", "%s: customers must not resolve", set)
	}
	// Plain names still resolve.
	acc := a.Analyze(`SET search_path = other, public; SELECT id FROM customers`, nil)
	assert.NotContains(t, problemCodes(acc.Statements[1].Problems), "session_change")
}

// TestSearchPathAfterSetRole: after SET ROLE (which a policy may allow)
// the current user is not the login, so the catalog's USAGE and "$user"
// are no longer the session's: a path is resolved as for an unknown login.
func TestSearchPathAfterSetRole(t *testing.T) {
	t.Parallel()
	a := usageCatalog(t, map[string]bool{"public": true, "other": false, "pg_catalog": true}, "other", true)
	setRole := &sqlpolicy.Access{Statements: []sqlpolicy.Statement{{Verb: sqlpolicy.VerbSet, Command: "SET",
		Settings: []sqlpolicy.Setting{{Name: "role", Value: "admin"}}}}}

	s := pathSession("other,public")
	assert.Equal(t, []string{"public.customers"}, dedup(tableStrings(a.Analyze("SELECT id FROM customers", s).Statements[0].Tables)))
	gen := s.Generation()
	s.Apply(setRole)
	assert.NotEqual(t, gen, s.Generation(), "resolution changed: cached decisions must not be reused")
	st := a.Analyze("SELECT id FROM customers", s).Statements[0]
	assert.Equal(t, []string{"other.customers", "public.customers"}, dedup(tableStrings(st.Tables)), "the role may have USAGE on other")

	// Noted before it runs (a text that fails later), and in the same text.
	s = pathSession("other,public")
	s.Note(setRole)
	st = a.Analyze("SELECT id FROM customers", s).Statements[0]
	assert.Equal(t, []string{"other.customers", "public.customers"}, dedup(tableStrings(st.Tables)))
	st = a.Analyze("SET ROLE admin; SET search_path = other, public; SELECT id FROM customers", nil).Statements[2]
	assert.Equal(t, []string{"other.customers", "public.customers"}, dedup(tableStrings(st.Tables)))
	st = a.Analyze(`SET ROLE admin; SET search_path = "$user", public; SELECT id FROM customers`, nil).Statements[2]
	assert.Contains(t, problemCodes(st.Problems), "session_change", "$user is the role's name now")
}

// TestSetRoleAfterSearchPath: a path set before SET ROLE in the same text
// was resolved for the login; unqualified names after it are refused.
func TestSetRoleAfterSearchPath(t *testing.T) {
	t.Parallel()
	a := usageCatalog(t, map[string]bool{"public": true, "other": false, "pg_catalog": true}, "other", true)
	st := a.Analyze("SET ROLE admin; SELECT id FROM customers", pathSession("other,public")).Statements[1]
	assert.Contains(t, problemCodes(st.Problems), "session_change")
	st = a.Analyze("SET search_path = other, public; SET ROLE admin; SELECT id FROM customers", nil).Statements[2]
	assert.Contains(t, problemCodes(st.Problems), "session_change")
	// The login's path alone is not affected.
	st = a.Analyze("SET ROLE admin; SELECT id FROM customers", nil).Statements[1]
	assert.NotContains(t, problemCodes(st.Problems), "session_change")
}
