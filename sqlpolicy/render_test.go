package sqlpolicy_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	sp "github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

func problem(code sp.ProblemCode, p sp.Problem) sp.Statement {
	p.Code = code
	return sp.Statement{Verb: sp.VerbSelect, Command: "SELECT", Problems: []sp.Problem{p}}
}

func settingChange(name string, kind sp.SettingKind) sp.Statement {
	return sp.Statement{Verb: sp.VerbSet, Command: "SET",
		Settings: []sp.Setting{{Name: name, Value: "x", Kind: kind, Guarded: kind != sp.SettingUnknown && kind != sp.SettingBehavior}},
		Problems: []sp.Problem{{Code: sp.ProblemSessionChange, Setting: name, Detail: name + " is not harmless"}}}
}

// TestDenialTexts decides one statement per reason code, problem code
// and kind of setting, and checks the SQLSTATE and that the hint talks
// about what was refused (and not about something else).
func TestDenialTexts(t *testing.T) {
	t.Parallel()
	cat := testCatalog()
	p := mustPolicy(t, decidePolicy, cat)
	helpdesk := sp.Principal{Agent: "helpdesk"}
	scoped := sp.Principal{Agent: "sales-summarizer", Scope: []sp.Grant{{Verb: sp.VerbSelect, Tables: []string{"public.customers"}}}}
	ordersSel := sel("public.orders", "id")
	withFunc := func(st sp.Statement, f sp.FuncRef) sp.Statement {
		st.Functions = append(st.Functions, f)
		return st
	}
	cases := []struct {
		name     string
		pr       sp.Principal
		st       sp.Statement
		code     sp.ReasonCode
		problem  sp.ProblemCode
		sqlstate string
		has      []string // substrings of the hint
		not      []string // substrings the hint must not have
	}{
		{name: "unknown agent", pr: sp.Principal{Agent: "nobody"}, st: ordersSel, code: sp.ReasonUnknownAgent,
			sqlstate: "42501", has: []string{"not in the keyhole policy", "do not retry"}},
		{name: "labelled column", pr: analyst, st: sel("public.customers", "id", "email"), code: sp.ReasonLabelDenied,
			sqlstate: "42501", has: []string{"id, name, created_at", "Remove email"}},
		{name: "labelled table", pr: analyst, st: sel("public.secrets"), code: sp.ReasonLabelDenied,
			sqlstate: "42501", has: []string{"public.secrets at all", "labelled secret", "public.orders, public.customers"}},
		{name: "invalid label", pr: sp.Principal{Agent: "auditor-bot"}, st: sel("public.legacy", "blob"), code: sp.ReasonLabelDenied,
			sqlstate: "42501", has: []string{"public.legacy.blob a malformed keyhole label"}},
		{name: "column not allowed", pr: helpdesk, st: sel("public.customers", "created_at"), code: sp.ReasonColumnNotAllowed,
			sqlstate: "42501", has: []string{"id, name, email", "Remove created_at"}},
		{name: "no grant", pr: analyst, st: sel("public.order_items", "sku"), code: sp.ReasonNoRule,
			sqlstate: "42501", has: []string{"Role analyst may select from: public.orders, public.customers."}},
		{name: "explain off", pr: analyst, st: sp.Statement{Verb: sp.VerbExplain, Explained: &ordersSel}, code: sp.ReasonNoRule,
			sqlstate: "42501", has: []string{"without EXPLAIN"}},
		{name: "do block", pr: analyst, st: sp.Statement{Verb: sp.VerbDo, Command: "DO"}, code: sp.ReasonNoRule,
			sqlstate: "42501", has: []string{"DO block one by one"}},
		{name: "call", pr: analyst, st: withFunc(sp.Statement{Verb: sp.VerbCall, Command: "CALL"}, sp.FuncRef{Schema: "public", Name: "refund"}),
			code: sp.ReasonFunctionDenied, sqlstate: "42501", has: []string{"public.refund"}},
		{name: "ddl naming no relation", pr: analyst, st: sp.Statement{Verb: sp.VerbDDL, Command: "CREATE SCHEMA"}, code: sp.ReasonNoRule,
			sqlstate: "42501", has: []string{"DDL that names no relation never is"}},
		{name: "function", pr: analyst, st: withFunc(ordersSel, sp.FuncRef{Schema: "public", Name: "other_fn"}), code: sp.ReasonFunctionDenied,
			sqlstate: "42501", has: []string{"built-in functions only", "public.other_fn"}},
		{name: "search_path", pr: analyst, st: settingChange("search_path", sp.SettingResolution), code: sp.ReasonSettingDenied, problem: sp.ProblemSessionChange,
			sqlstate: "42501", has: []string{"Leave search_path", "schema-qualify", "public.orders"}},
		{name: "role", pr: analyst, st: settingChange("role", sp.SettingIdentity), code: sp.ReasonSettingDenied, problem: sp.ProblemSessionChange,
			sqlstate: "42501", has: []string{"role cannot change who the session is"}, not: []string{"schema-qualify"}},
		{name: "lexing", pr: analyst, st: settingChange("standard_conforming_strings", sp.SettingLexing), code: sp.ReasonSettingDenied, problem: sp.ProblemSessionChange,
			sqlstate: "42501", has: []string{"standard_conforming_strings at the value the session started with"}, not: []string{"schema-qualify"}},
		{name: "behavior", pr: analyst, st: settingChange("session_replication_role", sp.SettingBehavior), code: sp.ReasonSettingDenied, problem: sp.ProblemSessionChange,
			sqlstate: "42501", has: []string{"session_replication_role changes what statements do"}, not: []string{"schema-qualify"}},
		{name: "recording", pr: analyst, st: settingChange("sql_log_bin", sp.SettingRecording), code: sp.ReasonSettingDenied, problem: sp.ProblemSessionChange,
			sqlstate: "42501", has: []string{"sql_log_bin changes what the server logs or replicates"}, not: []string{"schema-qualify"}},
		{name: "unknown setting", pr: analyst, st: settingChange("myapp.flag", sp.SettingUnknown), code: sp.ReasonSettingDenied, problem: sp.ProblemSessionChange,
			sqlstate: "42501", has: []string{"myapp.flag is not one of them"}, not: []string{"schema-qualify"}},
		{name: "setting, role with settings", pr: helpdesk, st: settingChange("role", sp.SettingIdentity), code: sp.ReasonSettingDenied, problem: sp.ProblemSessionChange,
			sqlstate: "42501", has: []string{"Role support may also change: search_path."}},
		{name: "limit", pr: analyst, st: setting("work_mem", sp.LimitWorkMem, 1<<40), code: sp.ReasonLimitExceeded,
			sqlstate: "42501", has: []string{"work_mem to at most 4MB"}, not: []string{"schema-qualify"}},
		{name: "scope", pr: scoped, st: ordersSel, code: sp.ReasonScopeDenied, sqlstate: "42501",
			has: []string{"select on public.orders is outside it"}},
		{name: "unparseable", pr: analyst, st: problem(sp.ProblemUnparseable, sp.Problem{Detail: `syntax error at or near "SELEC"`}),
			code: sp.ReasonProblem, problem: sp.ProblemUnparseable, sqlstate: "42601", has: []string{"syntax error"}},
		{name: "too complex", pr: analyst, st: problem(sp.ProblemTooComplex, sp.Problem{}), code: sp.ReasonProblem,
			problem: sp.ProblemTooComplex, sqlstate: "54001", has: []string{"Split the statement"}},
		{name: "unsupported", pr: analyst, st: problem(sp.ProblemUnsupported, sp.Problem{Detail: "LISTEN"}), code: sp.ReasonProblem,
			problem: sp.ProblemUnsupported, sqlstate: "42501", has: []string{"plain SELECT"}},
		{name: "unknown table", pr: analyst, st: problem(sp.ProblemUnknownTable, sp.Problem{Rel: rel("public.ordrs")}), code: sp.ReasonProblem,
			problem: sp.ProblemUnknownTable, sqlstate: "42P01", has: []string{"Relation public.ordrs does not exist", "public.orders, public.customers"}},
		{name: "unknown column", pr: analyst, st: problem(sp.ProblemUnknownColumn, sp.Problem{Column: "totl"}), code: sp.ReasonProblem,
			problem: sp.ProblemUnknownColumn, sqlstate: "42703", has: []string{"information_schema.columns"}},
		{name: "unknown column, no catalog", pr: sp.Principal{Agent: "auditor-bot"}, st: problem(sp.ProblemUnknownColumn, sp.Problem{Column: "totl"}),
			code: sp.ReasonProblem, problem: sp.ProblemUnknownColumn, sqlstate: "42703", not: []string{"information_schema"}},
		{name: "unknown function", pr: analyst, st: withFunc(ordersSel, sp.FuncRef{Name: "nope"}), code: sp.ReasonProblem,
			problem: sp.ProblemUnknownFunction, sqlstate: "42883", has: []string{"Function nope does not exist"}},
		{name: "dangerous function", pr: analyst, st: problem(sp.ProblemDangerousFunc, sp.Problem{Func: "pg_sleep"}), code: sp.ReasonProblem,
			problem: sp.ProblemDangerousFunc, sqlstate: "42501", has: []string{"pg_sleep is refused for every role"}},
		{name: "restricted setting", pr: analyst, st: problem(sp.ProblemDangerousFunc, sp.Problem{Func: "SHOW", Setting: "data_directory"}),
			code: sp.ReasonProblem, problem: sp.ProblemDangerousFunc, sqlstate: "42501", has: []string{"Setting data_directory"}},
		{name: "dynamic sql", pr: analyst, st: problem(sp.ProblemDynamicSQL, sp.Problem{Func: "query_to_xml"}), code: sp.ReasonProblem,
			problem: sp.ProblemDynamicSQL, sqlstate: "42501", has: []string{"passed to query_to_xml"}},
		{name: "data catalog", pr: analyst, st: problem(sp.ProblemDataCatalog, sp.Problem{Rel: rel("pg_catalog.pg_authid")}), code: sp.ReasonProblem,
			problem: sp.ProblemDataCatalog, sqlstate: "42501", has: []string{"Reading pg_catalog.pg_authid this way is refused"}},
		{name: "data catalog column", pr: analyst, st: problem(sp.ProblemDataCatalog, sp.Problem{Rel: rel("pg_catalog.pg_roles"), Column: "rolconfig"}),
			code: sp.ReasonProblem, problem: sp.ProblemDataCatalog, sqlstate: "42501", has: []string{"Leave out pg_catalog.pg_roles.rolconfig"}},
		{name: "custom setting read", pr: analyst, st: problem(sp.ProblemDataCatalog, sp.Problem{Setting: "app.jwt_secret", Func: "SHOW"}),
			code: sp.ReasonProblem, problem: sp.ProblemDataCatalog, sqlstate: "42501", has: []string{"custom settings"}},
		{name: "file access", pr: analyst, st: problem(sp.ProblemFileAccess, sp.Problem{Func: "pg_read_file"}), code: sp.ReasonProblem,
			problem: sp.ProblemFileAccess, sqlstate: "42501", has: []string{"FROM STDIN / TO STDOUT"}},
		{name: "unknown prepared", pr: analyst, st: problem(sp.ProblemUnknownPrepared, sp.Problem{}), code: sp.ReasonProblem,
			problem: sp.ProblemUnknownPrepared, sqlstate: "26000", has: []string{"PREPARE it first"}},
		{name: "locking", pr: analyst, st: problem(sp.ProblemLocking, sp.Problem{Rel: rel("public.orders")}), code: sp.ReasonProblem,
			problem: sp.ProblemLocking, sqlstate: "42501", has: []string{"on public.orders", "may not lock anything"}},
		{name: "advisory lock", pr: analyst, st: problem(sp.ProblemLocking, sp.Problem{Func: "pg_advisory_lock"}), code: sp.ReasonProblem,
			problem: sp.ProblemLocking, sqlstate: "42501", has: []string{"pg_advisory_lock takes a lock"}},
		{name: "set_config with a computed name", pr: analyst, st: problem(sp.ProblemSessionChange, sp.Problem{Func: "set_config"}),
			code: sp.ReasonProblem, problem: sp.ProblemSessionChange, sqlstate: "42501", has: []string{"Pass set_config the setting's name as a literal"}},
		{name: "search path lost", pr: analyst, st: problem(sp.ProblemSessionChange, sp.Problem{}), code: sp.ReasonProblem,
			problem: sp.ProblemSessionChange, sqlstate: "42501", has: []string{"schema-qualify", "public.orders"}},
	}
	seen := map[string]bool{}
	for _, tc := range cases {
		seen[string(tc.code)] = true
		seen[string(tc.problem)] = true
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := p.Decide(tc.pr, access(tc.st), cat)
			require.Equal(t, sp.Deny, d.Effect)
			require.NotEmpty(t, d.Reasons)
			assert.Equal(t, tc.code, d.Reasons[0].Code, "%+v", d.Reasons)
			assert.Equal(t, tc.problem, d.Reasons[0].Problem, "%+v", d.Reasons)
			assert.Equal(t, tc.sqlstate, d.SQLState)
			assert.NotEmpty(t, d.Message)
			assert.NotEmpty(t, d.Hint)
			for _, s := range tc.has {
				assert.Contains(t, d.Hint, s)
			}
			for _, s := range tc.not {
				assert.NotContains(t, d.Hint, s)
			}
		})
	}
	// Every code has a case.
	for _, c := range []sp.ReasonCode{sp.ReasonNoRule, sp.ReasonColumnNotAllowed, sp.ReasonLabelDenied, sp.ReasonFunctionDenied,
		sp.ReasonSettingDenied, sp.ReasonLimitExceeded, sp.ReasonScopeDenied, sp.ReasonUnknownAgent, sp.ReasonProblem} {
		assert.True(t, seen[string(c)], "no case for reason %s", c)
	}
	for _, c := range []sp.ProblemCode{sp.ProblemUnparseable, sp.ProblemTooComplex, sp.ProblemUnsupported, sp.ProblemUnknownTable,
		sp.ProblemUnknownColumn, sp.ProblemUnknownFunction, sp.ProblemDangerousFunc, sp.ProblemDynamicSQL, sp.ProblemDataCatalog,
		sp.ProblemFileAccess, sp.ProblemUnknownPrepared, sp.ProblemLocking, sp.ProblemSessionChange} {
		assert.True(t, seen[string(c)], "no case for problem %s", c)
	}
}

// TestMySQLHints: hints over a MySQL upstream name MySQL's ways, and a
// generated column computed from a denied column is not offered as
// readable (reading it reveals its source).
func TestMySQLHints(t *testing.T) {
	t.Parallel()
	customers := &catalog.Relation{Schema: "shop", Name: "customers", Kind: catalog.KindTable, Columns: []*catalog.Column{
		{Name: "id", Type: "int"},
		{Name: "name", Type: "varchar"},
		{Name: "email", Type: "varchar"},
		{Name: "email_domain", Type: "varchar", Generated: "substring_index(`email`,'@',-1)"},
		{Name: "domain_upper", Type: "varchar", Generated: "upper(`email_domain`)"},
	}}
	cat := &catalog.Catalog{Dialect: "mysql", Database: "shop", SearchPath: []string{"shop"},
		Relations: map[string]map[string]*catalog.Relation{"shop": {"customers": customers}}}
	p := mustPolicy(t, `
labels:
  shop.customers.email: [pii.email]
roles:
  analyst:
    allow:
      - select: [shop.customers]
    deny_labels: [pii.*]
agents:
  bot: {role: analyst}
`, cat)
	bot := sp.Principal{Agent: "bot"}

	d := p.Decide(bot, access(sel("shop.customers", "id", "email")), cat)
	require.Equal(t, sp.Deny, d.Effect)
	assert.Contains(t, d.Hint, "columns: id, name.", "email_domain and domain_upper are computed from email")

	d = p.Decide(bot, access(problem(sp.ProblemFileAccess, sp.Problem{Func: "load_file", Detail: "LOAD_FILE reads a file on the database server"})), cat)
	require.Equal(t, sp.Deny, d.Effect)
	assert.Contains(t, d.Hint, "INSERT ... VALUES")
	assert.NotContains(t, d.Hint, "COPY")
}

// TestNotFoundIsNoOracle: a relation the role may not use answers the
// same (SQLSTATE, message, detail, hint) whether the column a statement
// names exists or not; a relation it may read answers 42703 for a
// column that does not exist.
func TestNotFoundIsNoOracle(t *testing.T) {
	t.Parallel()
	cat := testCatalog()
	p := mustPolicy(t, decidePolicy, cat)
	e := sp.NewEngine(p, cat, pganalyze.New(cat, pganalyze.Options{}), sp.EngineOptions{CacheBytes: -1})
	pairs := [][2]string{
		{"SELECT value FROM public.secrets", "SELECT nosuch FROM public.secrets"},
		{"SELECT s.value FROM public.secrets s", "SELECT s.nosuch FROM public.secrets s"},
		{"SELECT id FROM public.orders o, public.secrets s WHERE s.value = 'x'", "SELECT id FROM public.orders o, public.secrets s WHERE s.nosuch = 'x'"},
		{"SELECT sku FROM public.order_items", "SELECT nosuch FROM public.order_items"},
		{"SELECT count(*) FROM public.order_items WHERE qty > 1", "SELECT count(*) FROM public.order_items WHERE nosuch > 1"},
		{"SELECT lower(value) FROM public.secrets", "SELECT public.nosuch_fn(value) FROM public.secrets"},
	}
	for _, pair := range pairs {
		exists, _ := e.Check(analyst, pair[0], nil)
		missing, _ := e.Check(analyst, pair[1], nil)
		require.Equal(t, sp.Deny, exists.Effect, pair[0])
		require.Equal(t, sp.Deny, missing.Effect, pair[1])
		assert.Equal(t, "42501", missing.SQLState, pair[1])
		assert.Equal(t, exists.SQLState, missing.SQLState, pair[1])
		assert.Equal(t, exists.Message, missing.Message, pair[1])
		assert.Equal(t, exists.Detail, missing.Detail, pair[1])
		assert.Equal(t, exists.Hint, missing.Hint, pair[1])
	}
	for sql, want := range map[string]string{
		"SELECT nosuch FROM public.orders":               "42703",
		"SELECT id FROM public.nosuch":                   "42P01",
		"SELECT public.nosuch_fn(id) FROM public.orders": "42883",
		"SELEC id FROM public.orders":                    "42601",
		"EXECUTE never_prepared":                         "26000",
	} {
		d, _ := e.Check(analyst, sql, nil)
		require.Equal(t, sp.Deny, d.Effect, sql)
		assert.Equal(t, want, d.SQLState, sql)
	}
}

// TestMaxRowsCatalogOnly: max_rows caps statements that read data, not
// those that read only system catalogs.
func TestMaxRowsCatalogOnly(t *testing.T) {
	t.Parallel()
	cat := testCatalog()
	p := mustPolicy(t, decidePolicy, cat)
	builtin := func(st sp.Statement, name string) sp.Statement {
		st.Functions = append(st.Functions, sp.FuncRef{Schema: "pg_catalog", Name: name, Builtin: true})
		return st
	}
	catalogSel := system(sel("pg_catalog.pg_class", "relname"))
	mixed := catalogSel
	mixed.Tables = append(mixed.Tables, sp.TableRef{Rel: rel("public.orders"), Mode: sp.Read})
	userFn := catalogSel
	userFn.Functions = []sp.FuncRef{{Schema: "public", Name: "my_fn"}}
	for _, tc := range []struct {
		name string
		pr   sp.Principal
		a    *sp.Access
		want int
	}{
		{"catalog only", analyst, access(catalogSel), 0},
		{"catalog with built-in functions", analyst, access(builtin(catalogSel, "pg_get_userbyid")), 0},
		{"several catalog statements", analyst, access(catalogSel, catalogSel), 0},
		{"data", analyst, access(sel("public.orders", "id")), 1000},
		{"catalog joined with data", analyst, access(mixed), 1000},
		{"catalog and a data statement", analyst, access(catalogSel, sel("public.orders", "id")), 1000},
		{"no relation at all (FETCH, SELECT 1)", analyst, access(sp.Statement{Verb: sp.VerbSelect, Command: "FETCH"}), 1000},
	} {
		d := p.Decide(tc.pr, tc.a, cat)
		require.Equal(t, sp.Allow, d.Effect, "%s: %+v", tc.name, d.Reasons)
		assert.Equal(t, tc.want, d.MaxRows, tc.name)
	}
	// A user function in a catalog read keeps the cap: it can return
	// data rows.
	analystFn := mustPolicy(t, `roles:
  a:
    functions: [public.my_fn]
    max_rows: 10
agents:
  x: {role: a}
`, cat)
	d := analystFn.Decide(sp.Principal{Agent: "x"}, access(userFn), cat)
	require.Equal(t, sp.Allow, d.Effect, "%+v", d.Reasons)
	assert.Equal(t, 10, d.MaxRows)
	d = analystFn.Decide(sp.Principal{Agent: "x"}, access(catalogSel), cat)
	assert.Equal(t, 0, d.MaxRows)
}
