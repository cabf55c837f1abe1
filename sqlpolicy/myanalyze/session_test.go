package myanalyze_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/internal/testmariadb"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/myanalyze"
)

// reads lists "table.column" for every column an Access reads.
func reads(a *sqlpolicy.Access) []string {
	var out []string
	for _, st := range a.Statements {
		for _, c := range st.Columns {
			if c.Mode == sqlpolicy.Read {
				out = append(out, c.Rel.Name+"."+c.Column)
			}
		}
	}
	return out
}

func problems(a *sqlpolicy.Access) []sqlpolicy.ProblemCode {
	var out []sqlpolicy.ProblemCode
	for _, st := range a.Statements {
		for _, p := range st.Problems {
			out = append(out, p.Code)
		}
	}
	return out
}

func TestSQLModeChangesLexing(t *testing.T) {
	t.Parallel()
	cat, name := loadShop(t)
	an := myanalyze.New(cat, myanalyze.Options{})
	q := testmariadb.Rename(`SELECT "email" FROM shop.customers`, name)

	plain := an.NewSession().(*myanalyze.Session)
	a := an.Analyze(q, plain)
	assert.Empty(t, problems(a))
	assert.NotContains(t, reads(a), "customers.email", "a double-quoted string is a literal by default")

	ansi := an.NewSession().(*myanalyze.Session)
	require.NoError(t, ansi.SetSQLMode("STRICT_TRANS_TABLES,ANSI_QUOTES"))
	assert.Contains(t, reads(an.Analyze(q, ansi)), "customers.email", "under ANSI_QUOTES \"email\" is the column")
	assert.NotEqual(t, plain.Generation(), ansi.Generation())

	// NO_BACKSLASH_ESCAPES: 'a\' ends at the second quote, so what follows
	// is SQL, not string.
	nbe := an.NewSession().(*myanalyze.Session)
	require.NoError(t, nbe.SetSQLMode("NO_BACKSLASH_ESCAPES"))
	q2 := testmariadb.Rename(`SELECT 'a\', email, ' ' FROM shop.customers`, name)
	assert.Contains(t, reads(an.Analyze(q2, nbe)), "customers.email")
	assert.NotContains(t, reads(an.Analyze(q2, plain)), "customers.email")

	other := an.NewSession().(*myanalyze.Session)
	require.Error(t, other.SetSQLMode("ORACLE"))
	assert.Contains(t, problems(an.Analyze("SELECT 1", other)), sqlpolicy.ProblemSessionChange, "an unmodelled sql_mode refuses everything")

	// Sessions in the same state share cache generations.
	again := an.NewSession().(*myanalyze.Session)
	require.NoError(t, again.SetSQLMode("ANSI_QUOTES,STRICT_TRANS_TABLES"))
	assert.Equal(t, ansi.Generation(), again.Generation())
	def := an.NewSession().(*myanalyze.Session)
	require.NoError(t, def.SetSQLMode("STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION"))
	assert.Zero(t, def.Generation(), "MariaDB's default mode lexes as the analyzer's default")
}

func TestClientCharset(t *testing.T) {
	t.Parallel()
	cat, _ := loadShop(t)
	an := myanalyze.New(cat, myanalyze.Options{})
	for _, cs := range []string{"utf8mb4", "UTF8", "latin1", "binary"} {
		s := an.NewSession().(*myanalyze.Session)
		assert.NoError(t, s.SetClientCharset(cs), cs)
		assert.Empty(t, problems(an.Analyze("SELECT 1", s)), cs)
	}
	for _, cs := range []string{"gbk", "big5", "sjis", "cp932", "gb18030", "ujis"} {
		s := an.NewSession().(*myanalyze.Session)
		assert.Error(t, s.SetClientCharset(cs), cs)
		assert.Contains(t, problems(an.Analyze("SELECT 1", s)), sqlpolicy.ProblemSessionChange, cs)
	}
}

func TestSessionDatabase(t *testing.T) {
	t.Parallel()
	cat, name := loadShop(t)
	an := myanalyze.New(cat, myanalyze.Options{})
	s := an.NewSession().(*myanalyze.Session)
	db, known := s.Database()
	assert.Equal(t, "", db)
	assert.True(t, known)

	// USE applied: unqualified names resolve in the new database.
	use := an.Analyze("USE `"+name+"_internal`", s)
	require.Empty(t, problems(use))
	s.Note(use)
	_, known = s.Database()
	assert.False(t, known, "a USE noted but not applied leaves the database unknown")
	assert.Contains(t, problems(an.Analyze("SELECT 1 FROM orders", s)), sqlpolicy.ProblemSessionChange)
	s.Apply(use)
	db, known = s.Database()
	assert.Equal(t, name+"_internal", db)
	assert.True(t, known)
	a := an.Analyze("SELECT owner FROM api_keys", s)
	require.Empty(t, problems(a))
	assert.Equal(t, name+"_internal", a.Statements[0].Tables[0].Rel.Schema)

	// COM_INIT_DB through SetDatabase, and Reset.
	s.SetDatabase(name)
	assert.Empty(t, problems(an.Analyze("SELECT id FROM orders", s)))
	// Applying what changes nothing keeps the generation; a USE back to
	// the same database too (sessions in one state share it).
	gen := s.Generation()
	for _, sql := range []string{"SELECT id FROM orders", "BEGIN", "COMMIT", "USE `" + name + "`"} {
		acc := an.Analyze(sql, s)
		s.Note(acc)
		s.Apply(acc)
		assert.Equal(t, gen, s.Generation(), sql)
	}
	s.Reset()
	assert.Zero(t, s.Generation())
}

func TestSessionPrepared(t *testing.T) {
	t.Parallel()
	cat, name := loadShop(t)
	an := myanalyze.New(cat, myanalyze.Options{})
	s := an.NewSession().(*myanalyze.Session)
	s.SetDatabase(name)
	prep := an.Analyze("PREPARE Q1 FROM 'SELECT email FROM customers'", s)
	require.Len(t, prep.Statements, 1)
	assert.Equal(t, "q1", prep.Statements[0].PrepareName, "prepared statement names are case-insensitive")
	assert.True(t, prep.Statements[0].LiteralSensitive)
	require.NotNil(t, prep.Statements[0].Prepared)
	assert.Contains(t, reads(&sqlpolicy.Access{Statements: []sqlpolicy.Statement{*prep.Statements[0].Prepared}}), "customers.email")

	assert.Contains(t, problems(an.Analyze("EXECUTE q1", s)), sqlpolicy.ProblemUnknownPrepared, "not applied yet")
	s.Apply(prep)
	ex := an.Analyze("EXECUTE q1", s)
	require.Empty(t, problems(ex))
	require.NotNil(t, ex.Statements[0].Prepared)
	assert.Equal(t, sqlpolicy.VerbSelect, ex.Statements[0].Prepared.Verb)

	// A text that re-prepares the name and may fail half-way forgets it.
	s.Note(an.Analyze("PREPARE q1 FROM 'SELECT id FROM orders'; SELECT 1", s))
	assert.Contains(t, problems(an.Analyze("EXECUTE q1", s)), sqlpolicy.ProblemUnknownPrepared)

	// PREPARE and EXECUTE in one text.
	one := an.Analyze("PREPARE q2 FROM 'SELECT id FROM orders'; EXECUTE q2; DEALLOCATE PREPARE q2; EXECUTE q2", s)
	require.Len(t, one.Statements, 4)
	assert.Empty(t, one.Statements[1].Problems)
	assert.Contains(t, problems(&sqlpolicy.Access{Statements: one.Statements[3:]}), sqlpolicy.ProblemUnknownPrepared)
}

// TestConcurrentAnalyze analyzes different texts from many goroutines:
// pooled parsers must not hand one goroutine's statements to another
// (TiDB's parser reuses its result buffer on the next parse).
func TestConcurrentAnalyze(t *testing.T) {
	t.Parallel()
	an := myanalyze.New(fuzzCatalog(), myanalyze.Options{})
	texts := map[string]string{
		"SELECT email FROM customers":      "customers.email",
		"SELECT total FROM orders":         "orders.total",
		"SELECT name FROM customers":       "customers.name",
		"SELECT customer_id FROM orders":   "orders.customer_id",
		"SELECT ssn FROM customers":        "customers.ssn",
		"SELECT e FROM v WHERE id > 1":     "customers.email",
		"SELECT id FROM orders LIMIT 1":    "orders.id",
		"SET NAMES gbk; SELECT 1":          "",
		"SELECT COUNT(*) FROM customers c": "",
	}
	done := make(chan error, 8)
	for g := 0; g < 8; g++ {
		go func() {
			for i := 0; i < 300; i++ {
				for q, want := range texts {
					got := reads(an.Analyze(q, nil))
					if want == "" && len(got) != 0 || want != "" && !contains(got, want) {
						done <- fmt.Errorf("%q read %v, want %q", q, got, want)
						return
					}
				}
			}
			done <- nil
		}()
	}
	for g := 0; g < 8; g++ {
		require.NoError(t, <-done)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestAllowedModeChange covers a role allowed to change sql_mode: the
// session must lex later texts under the new mode, and refuse what
// follows a change inside the same text.
func TestAllowedModeChange(t *testing.T) {
	t.Parallel()
	cat, name := loadShop(t)
	an := myanalyze.New(cat, myanalyze.Options{})
	s := an.NewSession().(*myanalyze.Session)
	s.SetDatabase(name)
	set := an.Analyze("SET sql_mode = 'ANSI_QUOTES'", s)
	require.Len(t, set.Statements, 1)
	assert.True(t, set.Statements[0].Settings[0].Guarded)
	s.Note(set)
	assert.Contains(t, problems(an.Analyze("SELECT 1", s)), sqlpolicy.ProblemSessionChange, "noted but not applied: unknown mode")
	s.Apply(set)
	assert.Contains(t, reads(an.Analyze(`SELECT "email" FROM customers`, s)), "customers.email", "lexed under the applied ANSI_QUOTES")

	mixed := an.Analyze(`SET sql_mode = ''; SELECT "email" FROM customers`, s)
	require.Len(t, mixed.Statements, 2)
	assert.Contains(t, problems(&sqlpolicy.Access{Statements: mixed.Statements[1:]}), sqlpolicy.ProblemSessionChange)

	appended := an.Analyze("SET sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')", s)
	require.True(t, appended.Statements[0].Settings[0].Guarded)
	s.Note(appended)
	s.Apply(appended)
	assert.Empty(t, problems(an.Analyze("SELECT 1", s)), "an appended mode is known")
	assert.Contains(t, reads(an.Analyze(`SELECT "email" FROM customers`, s)), "customers.email", "ANSI_QUOTES kept: the flag was added, not set alone")

	computed := an.Analyze("SET sql_mode = CONCAT(@m, ',NO_BACKSLASH_ESCAPES')", s)
	s.Apply(computed)
	assert.Contains(t, problems(an.Analyze("SELECT 1", s)), sqlpolicy.ProblemSessionChange, "a computed mode is not known")
}

// TestInertModeAddition covers MariaDB Connector/J's connect-time SET,
// which appends STRICT_TRANS_TABLES to the session's own sql_mode: it is
// not a guarded change, and the session lexes on as before.
func TestInertModeAddition(t *testing.T) {
	t.Parallel()
	cat, name := loadShop(t)
	an := myanalyze.New(cat, myanalyze.Options{})
	s := an.NewSession().(*myanalyze.Session)
	s.SetDatabase(name)
	require.NoError(t, s.SetSQLMode("STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION"))
	set := an.Analyze("set autocommit=1, session_track_system_variables='auto_increment_increment' , sql_mode = concat(@@sql_mode,',STRICT_TRANS_TABLES')", s)
	require.Len(t, set.Statements, 1)
	for _, st := range set.Statements[0].Settings {
		assert.False(t, st.Guarded, "%s", st.Name)
	}
	s.Note(set)
	s.Apply(set)
	assert.Empty(t, problems(an.Analyze("SELECT 1", s)))
	assert.NotContains(t, reads(an.Analyze(`SELECT "email" FROM customers`, s)), "customers.email", "still a string: no ANSI_QUOTES")

	for _, sql := range []string{
		"SET sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')",
		"SET sql_mode = CONCAT(@@global.sql_mode, ',STRICT_TRANS_TABLES')",
		"SET sql_mode = CONCAT(@@sql_mode, 'ANSI_QUOTES')",
		"SET sql_mode = CONCAT(@@sql_mode, CONCAT(',', 'ANSI'))",
		"SET sql_mode = '@@sql_mode,STRICT_TRANS_TABLES'",
	} {
		a := an.Analyze(sql, s)
		guarded := false
		for _, st := range a.Statements {
			for _, set := range st.Settings {
				guarded = guarded || set.Guarded
			}
		}
		assert.True(t, guarded, sql)
	}
}

func TestCommandTexts(t *testing.T) {
	t.Parallel()
	cat, name := loadShop(t)
	an := myanalyze.New(cat, myanalyze.Options{})
	s := an.NewSession().(*myanalyze.Session)
	use := an.Analyze(myanalyze.InitDBText(name), s)
	require.Empty(t, problems(use))
	s.Apply(use)
	db, _ := s.Database()
	assert.Equal(t, name, db)
	fl := an.Analyze(myanalyze.FieldListText("customers"), s)
	require.Empty(t, problems(fl))
	assert.Equal(t, "customers", fl.Statements[0].Tables[len(fl.Statements[0].Tables)-1].Rel.Name)
	assert.Equal(t, "`a``b`", myanalyze.QuoteIdent("a`b"))
	assert.Contains(t, problems(an.Analyze(myanalyze.InitDBText("no`such"), s)), sqlpolicy.ProblemUnknownTable)
}

// TestNormalizedCacheKeepsModesApart: the engine normalizes MySQL texts
// under the session's sql_mode (texts with double quotes and backslashes
// get a redacted form and share cache entries), and sessions that lex
// differently never share a normalized entry.
func TestNormalizedCacheKeepsModesApart(t *testing.T) {
	t.Parallel()
	cat, name := loadShop(t)
	pol, _, err := sqlpolicy.ParsePolicy([]byte(testmariadb.Rename(`
labels:
  shop.customers.email: [pii.email]
roles:
  r:
    upstream: shop
    allow:
      - select: [shop.customers]
    deny_labels: [pii.*]
agents:
  a: {role: r}
`, name)), "p.yaml", cat)
	require.NoError(t, err)
	an := myanalyze.New(cat, myanalyze.Options{})
	e := sqlpolicy.NewEngine(pol, cat, an, sqlpolicy.EngineOptions{})
	p := sqlpolicy.Principal{Agent: "a"}
	q := func(s string) string { return testmariadb.Rename(s, name) }

	plain := e.NewSession()
	d, _ := e.Check(p, q(`SELECT "email" FROM shop.customers`), plain)
	require.True(t, d.Allowed(), "a double-quoted string by default: %+v", d.Reasons)
	assert.Equal(t, q(`SELECT '?' FROM shop.customers`), d.Redacted)
	hits := e.CacheStats().Hits
	d, _ = e.Check(p, q(`SELECT "ssn" FROM shop.customers`), plain)
	assert.True(t, d.Allowed())
	assert.Greater(t, e.CacheStats().Hits, hits, "texts differing in a double-quoted literal share the normalized entry")

	ansi := e.NewSession().(*myanalyze.Session)
	require.NoError(t, ansi.SetSQLMode("ANSI_QUOTES"))
	d, _ = e.Check(p, q(`SELECT "email" FROM shop.customers`), ansi)
	assert.False(t, d.Allowed(), "under ANSI_QUOTES \"email\" is the column; the plain session's entry must not answer")
	d, _ = e.Check(p, q(`SELECT "name" FROM shop.customers`), ansi)
	assert.True(t, d.Allowed())
	assert.Equal(t, q(`SELECT "name" FROM shop.customers`), d.Redacted)

	nbe := e.NewSession().(*myanalyze.Session)
	require.NoError(t, nbe.SetSQLMode("NO_BACKSLASH_ESCAPES"))
	d, _ = e.Check(p, q(`SELECT 'a\', email, ' ' FROM shop.customers`), nbe)
	assert.False(t, d.Allowed())
	d, _ = e.Check(p, q(`SELECT 'a\', email, ' FROM shop.customers`), plain)
	assert.True(t, d.Allowed(), "one string by default: %+v", d.Reasons)
	assert.Equal(t, q(`SELECT '?' FROM shop.customers`), d.Redacted)
}

// TestKillTarget: KILL of a literal connection id is refused and reports
// its target for the proxy to map; forms MariaDB reads differently, or
// with a computed id, report none. Texts that differ only in the id never
// share a decision cache entry.
func TestKillTarget(t *testing.T) {
	t.Parallel()
	cat, _ := loadShop(t)
	an := myanalyze.New(cat, myanalyze.Options{})
	for _, tc := range []struct {
		sql  string
		want *sqlpolicy.Kill
	}{
		{"KILL QUERY 42", &sqlpolicy.Kill{ConnectionID: 42, Query: true}},
		{"kill query 42;", &sqlpolicy.Kill{ConnectionID: 42, Query: true}},
		{"KILL 7", &sqlpolicy.Kill{ConnectionID: 7}},
		{"KILL CONNECTION 7", &sqlpolicy.Kill{ConnectionID: 7}},
		{"KILL TIDB QUERY 7", nil},
		{"KILL CONNECTION_ID()", nil},
	} {
		t.Run(tc.sql, func(t *testing.T) {
			a := an.Analyze(tc.sql, an.NewSession())
			require.Len(t, a.Statements, 1)
			st := a.Statements[0]
			assert.Equal(t, tc.want, st.Kill)
			assert.NotEmpty(t, st.Problems, "KILL itself is never allowed")
			if tc.want != nil {
				assert.True(t, a.LiteralSensitive())
			}
		})
	}
	a := an.Analyze("SELECT 1; KILL QUERY 5", an.NewSession())
	require.Len(t, a.Statements, 2)
	assert.NotNil(t, a.Statements[1].Kill, "reported; the proxy maps only a KILL sent alone")
}

// MariaDB prepares USE, and each EXECUTE of it switches the database:
// names after it resolve in the new one, in the same text and in later
// ones, as after USE itself.
func TestExecutePreparedUse(t *testing.T) {
	t.Parallel()
	orders := func(db string) *catalog.Relation {
		return &catalog.Relation{Schema: db, Name: "orders", Kind: catalog.KindTable,
			Columns: []*catalog.Column{{Name: "id", Type: "int"}}}
	}
	cat := &catalog.Catalog{Dialect: "mysql", Database: "app", Relations: map[string]map[string]*catalog.Relation{
		"app": {"orders": orders("app")}, "other": {"orders": orders("other")}}}
	an := myanalyze.New(cat, myanalyze.Options{})
	lastTables := func(a *sqlpolicy.Access) []string {
		var out []string
		for _, tb := range a.Statements[len(a.Statements)-1].Tables {
			out = append(out, tb.Rel.String())
		}
		return out
	}

	a := an.Analyze("PREPARE u FROM 'USE other'; EXECUTE u; SELECT id FROM orders", an.NewSession())
	assert.Empty(t, problems(a))
	assert.Equal(t, []string{"other.orders"}, lastTables(a), "one text")

	s := an.NewSession()
	for _, q := range []string{"PREPARE u FROM 'USE other'", "EXECUTE u"} {
		a := an.Analyze(q, s)
		require.Empty(t, problems(a), q)
		s.Apply(a)
	}
	assert.Equal(t, []string{"other.orders"}, lastTables(an.Analyze("SELECT id FROM orders", s)), "later texts")
	db, known := s.(*myanalyze.Session).Database()
	assert.True(t, known)
	assert.Equal(t, "other", db)
}

// TestSameLexingMode: mysqldump setting @@SQL_MODE to the empty string
// (in an executable comment) keeps the lexing flags of a session in
// MariaDB's default mode: not guarded, and the session goes on lexing as
// before once it ran. A mode with other lexing flags stays guarded.
func TestSameLexingMode(t *testing.T) {
	t.Parallel()
	cat, name := loadShop(t)
	an := myanalyze.New(cat, myanalyze.Options{})
	s := an.NewSession().(*myanalyze.Session)
	s.SetDatabase(name)
	require.NoError(t, s.SetSQLMode("STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION"))
	set := an.Analyze("/*!40100 SET @@SQL_MODE='' */", s)
	require.Len(t, set.Statements, 1)
	require.Len(t, set.Statements[0].Settings, 1)
	assert.False(t, set.Statements[0].Settings[0].Guarded)
	s.Note(set)
	s.Apply(set)
	assert.Empty(t, problems(an.Analyze("SELECT 1", s)))
	assert.NotContains(t, reads(an.Analyze(`SELECT "email" FROM customers`, s)), "customers.email")

	for _, sql := range []string{"SET sql_mode = 'ANSI_QUOTES'", "SET sql_mode = 'NO_BACKSLASH_ESCAPES'", "SET sql_mode = 4", "SET sql_mode = DEFAULT"} {
		a := an.Analyze(sql, s)
		require.Len(t, a.Statements, 1, sql)
		guarded := false
		for _, set := range a.Statements[0].Settings {
			guarded = guarded || set.Guarded
		}
		assert.True(t, guarded, sql)
	}

	ansi := an.NewSession().(*myanalyze.Session)
	require.NoError(t, ansi.SetSQLMode("ANSI_QUOTES"))
	a := an.Analyze("SET sql_mode = ''", ansi)
	assert.True(t, a.Statements[0].Settings[0].Guarded, "dropping ANSI_QUOTES changes lexing")
}
