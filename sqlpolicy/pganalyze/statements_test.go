package pganalyze_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

// TestStatements checks verbs, commands, tables, functions and problems.
func TestStatements(t *testing.T) {
	t.Parallel()
	analyzer(t)
	cases := []struct {
		name     string
		sql      string
		verb     sqlpolicy.Verb
		command  string
		tables   []string // nil: not checked
		funcs    []string // nil: not checked
		problems []string // exact codes, sorted
		rows     bool
		literal  bool
	}{
		{name: "select", sql: "SELECT name FROM customers", verb: sqlpolicy.VerbSelect, command: "SELECT",
			tables: []string{"public.customers"}, rows: true},
		{name: "cte shadows table", sql: "WITH customers AS (SELECT 1 AS id) SELECT id FROM customers", verb: sqlpolicy.VerbSelect, command: "SELECT",
			tables: []string{}, rows: true},
		{name: "view tables", sql: "SELECT total FROM order_summary", verb: sqlpolicy.VerbSelect, command: "SELECT",
			tables: []string{"public.order_summary", "public.orders@public.order_summary", "public.customers@public.order_summary"}, rows: true},
		// The omitted id's serial default advances its sequence; the
		// foreign key check of customer_id reads customers.
		{name: "insert", sql: "INSERT INTO orders (total) VALUES (1)", verb: sqlpolicy.VerbInsert, command: "INSERT",
			tables: []string{"public.customers@public.orders", "public.orders:w", "public.orders_id_seq:w"}},
		{name: "insert returning", sql: "INSERT INTO orders (total) VALUES (1) RETURNING id", verb: sqlpolicy.VerbInsert, command: "INSERT",
			tables: []string{"public.customers@public.orders", "public.orders:w", "public.orders_id_seq:w"}, rows: true},
		{name: "insert id", sql: "INSERT INTO orders (id, total) VALUES (1, 1)", verb: sqlpolicy.VerbInsert, command: "INSERT",
			tables: []string{"public.customers@public.orders", "public.orders:w"}},
		{name: "upsert", sql: "INSERT INTO products (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET name = 'x'", verb: sqlpolicy.VerbInsert,
			command: "INSERT ... ON CONFLICT DO UPDATE", tables: []string{"public.products:w", "public.products:w"}}, // insert and update
		{name: "insert on conflict do nothing", sql: "INSERT INTO products (id) VALUES (1) ON CONFLICT DO NOTHING", verb: sqlpolicy.VerbInsert,
			command: "INSERT", tables: []string{"public.products:w"}},
		{name: "current_setting", sql: "SELECT current_setting('search_path')", verb: sqlpolicy.VerbSelect, command: "SELECT", rows: true, literal: true},
		{name: "current_setting restricted", sql: "SELECT pg_catalog.current_setting('data_directory')", verb: sqlpolicy.VerbSelect, command: "SELECT",
			problems: []string{"dangerous_function"}, rows: true, literal: true},
		{name: "show restricted", sql: "SHOW hba_file", verb: sqlpolicy.VerbSet, command: "SHOW", problems: []string{"dangerous_function"}, rows: true},
		{name: "pg_config", sql: "SELECT * FROM pg_config", verb: sqlpolicy.VerbSelect, command: "SELECT", problems: []string{"data_catalog"}, rows: true},
		{name: "update", sql: "UPDATE orders SET total = 1", verb: sqlpolicy.VerbUpdate, command: "UPDATE", tables: []string{"public.orders:w"}},
		{name: "delete", sql: "DELETE FROM orders", verb: sqlpolicy.VerbDelete, command: "DELETE", tables: []string{"public.orders:w"}},
		{name: "writable cte under select", sql: "WITH d AS (DELETE FROM orders RETURNING id) SELECT id FROM d",
			verb: sqlpolicy.VerbSelect, command: "SELECT", tables: []string{"public.orders:w"}, rows: true},
		{name: "writable cte of another kind", sql: "WITH d AS (DELETE FROM orders RETURNING id) INSERT INTO products (id) SELECT id FROM d",
			verb: sqlpolicy.VerbInsert, command: "INSERT", tables: []string{"public.orders:w", "public.products:w"}, problems: []string{"unsupported"}},
		{name: "merge", sql: "MERGE INTO products p USING secrets s ON p.id = s.id WHEN MATCHED THEN DELETE",
			verb: sqlpolicy.VerbMerge, command: "MERGE", tables: []string{"public.products:w", "public.products:w", "public.secrets"}}, // merge and its delete action
		{name: "copy from stdin", sql: "COPY orders FROM STDIN", verb: sqlpolicy.VerbCopy, command: "COPY", tables: []string{"public.customers@public.orders", "public.orders:w"}},
		{name: "copy to stdout", sql: "COPY orders TO STDOUT", verb: sqlpolicy.VerbCopy, command: "COPY", tables: []string{"public.orders"}, rows: true},
		// A write under COPY would be decided by the copy grant whatever
		// its row action.
		{name: "copy delete returning", sql: "COPY (DELETE FROM orders RETURNING id) TO STDOUT", verb: sqlpolicy.VerbCopy, command: "COPY",
			problems: []string{"unsupported"}, rows: true},
		{name: "copy with update", sql: "COPY (WITH u AS (UPDATE orders SET status = 'x' RETURNING id) SELECT id FROM u) TO STDOUT", verb: sqlpolicy.VerbCopy, command: "COPY",
			problems: []string{"unsupported"}, rows: true},
		{name: "copy from file", sql: "COPY orders FROM '/etc/passwd'", verb: sqlpolicy.VerbCopy, command: "COPY", problems: []string{"file_access"}},
		{name: "copy to program", sql: "COPY orders TO PROGRAM 'rm -rf /'", verb: sqlpolicy.VerbCopy, command: "COPY", problems: []string{"file_access"}, rows: true},
		{name: "select into", sql: "SELECT * INTO newt FROM orders", verb: sqlpolicy.VerbDDL, command: "SELECT INTO",
			tables: []string{"public.newt:w", "public.orders"}},
		{name: "create table as", sql: "CREATE TABLE newt AS SELECT * FROM orders", verb: sqlpolicy.VerbDDL, command: "CREATE TABLE AS",
			tables: []string{"public.newt:w", "public.orders"}},
		{name: "unknown table", sql: "SELECT * FROM nope", verb: sqlpolicy.VerbSelect, command: "SELECT", problems: []string{"unknown_table"}, rows: true},
		{name: "unknown column", sql: "SELECT nope FROM customers", verb: sqlpolicy.VerbSelect, command: "SELECT", problems: []string{"unknown_column"}, rows: true},
		{name: "unknown qualified column", sql: "SELECT c.nope FROM customers c", verb: sqlpolicy.VerbSelect, command: "SELECT", problems: []string{"unknown_column"}, rows: true},
		{name: "missing from entry", sql: "SELECT x.id FROM customers c", verb: sqlpolicy.VerbSelect, command: "SELECT", problems: []string{"unknown_column"}, rows: true},
		{name: "unknown function", sql: "SELECT nope(1)", verb: sqlpolicy.VerbSelect, command: "SELECT", funcs: []string{"nope"},
			problems: []string{"unknown_function"}, rows: true},
		{name: "builtin function", sql: "SELECT lower('A')", verb: sqlpolicy.VerbSelect, command: "SELECT", funcs: []string{"pg_catalog.lower"}, rows: true},
		{name: "user function", sql: "SELECT mask(ssn) FROM customers", verb: sqlpolicy.VerbSelect, command: "SELECT", funcs: []string{"public.mask"}, rows: true},
		{name: "function in from", sql: "SELECT * FROM customer_rows()", verb: sqlpolicy.VerbSelect, command: "SELECT", funcs: []string{"public.customer_rows"}, rows: true},
		{name: "pg_read_file", sql: "SELECT pg_read_file('/etc/passwd')", verb: sqlpolicy.VerbSelect, command: "SELECT", problems: []string{"file_access"}, rows: true},
		{name: "pg_ls_dir", sql: "SELECT pg_ls_dir('.')", verb: sqlpolicy.VerbSelect, command: "SELECT", problems: []string{"file_access"}, rows: true},
		{name: "query_to_xml", sql: "SELECT query_to_xml('select ssn from customers', true, true, '')", verb: sqlpolicy.VerbSelect, command: "SELECT",
			problems: []string{"dynamic_sql"}, rows: true, literal: true},
		{name: "table_to_xml", sql: "SELECT table_to_xml('customers', true, true, '')", verb: sqlpolicy.VerbSelect, command: "SELECT",
			problems: []string{"dynamic_sql"}, rows: true, literal: true},
		// Extension functions that run a query built from their text
		// arguments (tablefunc, xml2, pgrowlocks; not installed here).
		{name: "crosstab", sql: "SELECT * FROM crosstab('select ssn, email, name from customers') AS t(a text, b text)", verb: sqlpolicy.VerbSelect, command: "SELECT",
			problems: []string{"dynamic_sql", "unknown_function"}, rows: true},
		{name: "connectby", sql: "SELECT * FROM connectby('customers', 'ssn', 'email', 'x', 0) AS t(k text, p text, l int)", verb: sqlpolicy.VerbSelect, command: "SELECT",
			problems: []string{"dynamic_sql", "unknown_function"}, rows: true},
		{name: "xpath_table", sql: "SELECT * FROM xpath_table('id', 'ssn', 'customers', '/x', 'true') AS t(id int, x text)", verb: sqlpolicy.VerbSelect, command: "SELECT",
			problems: []string{"dynamic_sql", "unknown_function"}, rows: true},
		{name: "dblink", sql: "SELECT * FROM dblink('host=x', 'select 1') AS t(a int)", verb: sqlpolicy.VerbSelect, command: "SELECT",
			problems: []string{"dangerous_function", "unknown_function"}, rows: true},
		{name: "pg_sleep", sql: "SELECT pg_sleep(10)", verb: sqlpolicy.VerbSelect, command: "SELECT", problems: []string{"dangerous_function"}, rows: true},
		{name: "terminate backend", sql: "SELECT pg_terminate_backend(1)", verb: sqlpolicy.VerbSelect, command: "SELECT", problems: []string{"dangerous_function"}, rows: true},
		{name: "large object", sql: "SELECT lo_get(1)", verb: sqlpolicy.VerbSelect, command: "SELECT", problems: []string{"dangerous_function"}, rows: true},
		{name: "advisory lock", sql: "SELECT pg_advisory_lock(1)", verb: sqlpolicy.VerbSelect, command: "SELECT", problems: []string{"locking"}, rows: true},
		{name: "advisory unlock", sql: "SELECT pg_advisory_unlock_all()", verb: sqlpolicy.VerbSelect, command: "SELECT", rows: true},
		{name: "pg_authid", sql: "SELECT rolpassword FROM pg_authid", verb: sqlpolicy.VerbSelect, command: "SELECT",
			tables: []string{"pg_catalog.pg_authid"}, problems: []string{"data_catalog"}, rows: true},
		{name: "pg_stats", sql: "SELECT most_common_vals FROM pg_catalog.pg_stats", verb: sqlpolicy.VerbSelect, command: "SELECT",
			problems: []string{"data_catalog"}, rows: true},
		{name: "pg_stat_activity", sql: "SELECT query FROM pg_stat_activity", verb: sqlpolicy.VerbSelect, command: "SELECT",
			problems: []string{"data_catalog"}, rows: true},
		{name: "plain catalog", sql: "SELECT relname FROM pg_class", verb: sqlpolicy.VerbSelect, command: "SELECT",
			tables: []string{"pg_catalog.pg_class"}, rows: true},
		{name: "information_schema", sql: "SELECT column_name FROM information_schema.columns", verb: sqlpolicy.VerbSelect, command: "SELECT",
			tables: []string{"information_schema.columns"}, rows: true},
		{name: "nextval", sql: "SELECT nextval('order_seq')", verb: sqlpolicy.VerbSelect, command: "SELECT",
			tables: []string{"public.order_seq:w"}, rows: true, literal: true},
		{name: "nextval not literal", sql: "SELECT nextval(name) FROM customers", verb: sqlpolicy.VerbSelect, command: "SELECT",
			problems: []string{"dangerous_function"}, rows: true, literal: true},
		{name: "regclass literal", sql: "SELECT 'customers'::regclass", verb: sqlpolicy.VerbSelect, command: "SELECT", rows: true, literal: true},
		{name: "user operator", sql: "SELECT 1 OPERATOR(public.+) 2", verb: sqlpolicy.VerbSelect, command: "SELECT", problems: []string{"unsupported"}, rows: true},
		{name: "catalog operator", sql: "SELECT 1 OPERATOR(pg_catalog.+) 2", verb: sqlpolicy.VerbSelect, command: "SELECT", rows: true},
		{name: "for update", sql: "SELECT id FROM orders FOR UPDATE", verb: sqlpolicy.VerbSelect, command: "SELECT", problems: []string{"locking"}, rows: true},
		{name: "for share of", sql: "SELECT 1 FROM orders o JOIN customers c ON true FOR SHARE OF c", verb: sqlpolicy.VerbSelect, command: "SELECT",
			problems: []string{"locking"}, rows: true},
		{name: "lock table", sql: "LOCK TABLE orders", verb: sqlpolicy.VerbLock, command: "LOCK TABLE", problems: []string{"locking"}},
		{name: "begin", sql: "BEGIN", verb: sqlpolicy.VerbTransaction, command: "BEGIN"},
		{name: "begin isolation", sql: "BEGIN ISOLATION LEVEL SERIALIZABLE", verb: sqlpolicy.VerbTransaction, command: "BEGIN"},
		{name: "commit", sql: "COMMIT", verb: sqlpolicy.VerbTransaction, command: "COMMIT"},
		{name: "rollback to", sql: "ROLLBACK TO SAVEPOINT a", verb: sqlpolicy.VerbTransaction, command: "ROLLBACK"},
		{name: "savepoint", sql: "SAVEPOINT a", verb: sqlpolicy.VerbTransaction, command: "SAVEPOINT"},
		{name: "prepare transaction", sql: "PREPARE TRANSACTION 'x'", verb: sqlpolicy.VerbTransaction, command: "PREPARE TRANSACTION", problems: []string{"unsupported"}},
		{name: "do", sql: "DO $$ BEGIN PERFORM 1; END $$", verb: sqlpolicy.VerbDo, command: "DO", problems: []string{"unsupported"}},
		{name: "call", sql: "CALL touch(1)", verb: sqlpolicy.VerbCall, command: "CALL", funcs: []string{"public.touch"}, rows: true},
		{name: "listen", sql: "LISTEN ch", verb: sqlpolicy.VerbUtility, command: "LISTEN", problems: []string{"unsupported"}},
		{name: "nul byte", sql: "SELECT id FROM orders\x00; SELECT email FROM customers", command: "UNKNOWN", problems: []string{"unparseable"}},
		{name: "cross database", sql: "SELECT id FROM other_db.public.orders", verb: sqlpolicy.VerbSelect, command: "SELECT",
			problems: []string{"unknown_table"}, rows: true},
		{name: "show all", sql: "SHOW ALL", verb: sqlpolicy.VerbSet, command: "SHOW", problems: []string{"data_catalog"}, rows: true},
		{name: "show custom setting", sql: "SHOW app.jwt_secret", verb: sqlpolicy.VerbSet, command: "SHOW", problems: []string{"data_catalog"}, rows: true},
		{name: "current_setting custom", sql: "SELECT current_setting('app.jwt_secret', true)", verb: sqlpolicy.VerbSelect, command: "SELECT",
			problems: []string{"data_catalog"}, rows: true, literal: true},
		{name: "role settings", sql: "SELECT rolname, rolconfig FROM pg_roles", verb: sqlpolicy.VerbSelect, command: "SELECT",
			problems: []string{"data_catalog"}, rows: true},
		{name: "role names", sql: "SELECT rolname FROM pg_roles", verb: sqlpolicy.VerbSelect, command: "SELECT", rows: true},
		{name: "function settings", sql: "SELECT proname, proconfig FROM pg_proc", verb: sqlpolicy.VerbSelect, command: "SELECT",
			problems: []string{"data_catalog"}, rows: true},
		{name: "pg_settings", sql: "SELECT name, setting FROM pg_settings", verb: sqlpolicy.VerbSelect, command: "SELECT",
			problems: []string{"data_catalog"}, rows: true},
		{name: "notify", sql: "NOTIFY ch, 'x'", verb: sqlpolicy.VerbUtility, command: "NOTIFY", problems: []string{"unsupported"}},
		{name: "pg_notify", sql: "SELECT pg_notify('ch', 'x')", verb: sqlpolicy.VerbSelect, command: "SELECT", problems: []string{"dangerous_function"}, rows: true},
		{name: "fetch", sql: "FETCH 10 FROM c", verb: sqlpolicy.VerbUtility, command: "FETCH", rows: true},
		{name: "close", sql: "CLOSE c", verb: sqlpolicy.VerbUtility, command: "CLOSE CURSOR"},
		{name: "vacuum", sql: "VACUUM orders", verb: sqlpolicy.VerbUtility, command: "VACUUM", tables: []string{"public.orders:w"}},
		{name: "create table", sql: "CREATE TABLE t2 (a int)", verb: sqlpolicy.VerbDDL, command: "CREATE TABLE", tables: []string{"public.t2:w"}},
		{name: "drop table", sql: "DROP TABLE orders", verb: sqlpolicy.VerbDDL, command: "DROP TABLE", tables: []string{"public.orders:w"}},
		{name: "truncate", sql: "TRUNCATE orders, other.customers", verb: sqlpolicy.VerbDDL, command: "TRUNCATE TABLE",
			tables: []string{"other.customers:w", "public.orders:w"}},
		{name: "alter table", sql: "ALTER TABLE orders ADD COLUMN x int", verb: sqlpolicy.VerbDDL, command: "ALTER TABLE", tables: []string{"public.orders:w"}},
		{name: "grant", sql: "GRANT SELECT ON orders TO public", verb: sqlpolicy.VerbDDL, command: "GRANT", tables: []string{"public.orders:w"}},
		{name: "comment on column", sql: "COMMENT ON COLUMN customers.ssn IS 'keyhole: none'", verb: sqlpolicy.VerbDDL, command: "COMMENT",
			tables: []string{"public.customers:w"}},
		{name: "load", sql: "LOAD 'evil'", verb: sqlpolicy.VerbDDL, command: "LOAD", problems: []string{"unsupported"}},
		{name: "alter system", sql: "ALTER SYSTEM SET work_mem = '1GB'", verb: sqlpolicy.VerbDDL, command: "ALTER SYSTEM", problems: []string{"unsupported"}},
		{name: "create extension", sql: "CREATE EXTENSION dblink", verb: sqlpolicy.VerbDDL, command: "CREATE EXTENSION", problems: []string{"unsupported"}},
		{name: "create role", sql: "CREATE ROLE x SUPERUSER", verb: sqlpolicy.VerbDDL, command: "CREATE ROLE", problems: []string{"unsupported"}},
		{name: "untrusted function", sql: "CREATE FUNCTION f() RETURNS int LANGUAGE plpython3u AS 'return 1'", verb: sqlpolicy.VerbDDL,
			command: "CREATE FUNCTION", problems: []string{"unsupported"}},
		{name: "sql function", sql: "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'", verb: sqlpolicy.VerbDDL, command: "CREATE FUNCTION"},
		{name: "checkpoint", sql: "CHECKPOINT", verb: sqlpolicy.VerbUtility, command: "CHECKPOINT", problems: []string{"unsupported"}},
		{name: "unparseable", sql: "SELEC 1", command: "UNKNOWN", problems: []string{"unparseable"}},
		{name: "deallocate", sql: "DEALLOCATE p", verb: sqlpolicy.VerbDeallocate, command: "DEALLOCATE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := one(t, tc.sql)
			assert.Equal(t, tc.verb, st.Verb, "verb")
			assert.Equal(t, tc.command, st.Command, "command")
			if tc.tables != nil {
				assert.Equal(t, join(tc.tables), tableStrings(st.Tables), "tables")
			}
			if tc.funcs != nil {
				assert.Equal(t, join(tc.funcs), funcStrings(st.Functions), "functions")
			}
			assert.Equal(t, join(tc.problems), problemCodes(st.Problems), "problems: %+v", st.Problems)
			assert.Equal(t, tc.rows, st.ReturnsRows, "returns rows")
			assert.Equal(t, tc.literal, st.LiteralSensitive, "literal sensitive")
		})
	}
}

// TestSettings checks SET/RESET/SHOW/set_config.
func TestSettings(t *testing.T) {
	t.Parallel()
	analyzer(t)
	cases := []struct {
		name    string
		sql     string
		verb    sqlpolicy.Verb
		want    []sqlpolicy.Setting
		problem bool // a session_change problem
	}{
		{"application_name", "SET application_name = 'agent'", sqlpolicy.VerbSet,
			[]sqlpolicy.Setting{{Name: "application_name", Value: "agent"}}, false},
		{"time zone", "SET TIME ZONE 'UTC'", sqlpolicy.VerbSet, []sqlpolicy.Setting{{Name: "timezone", Value: "UTC"}}, false},
		{"names utf8", "SET NAMES 'UTF8'", sqlpolicy.VerbSet, []sqlpolicy.Setting{{Name: "client_encoding", Value: "UTF8"}}, false},
		{"client encoding latin1", "SET client_encoding = 'LATIN1'", sqlpolicy.VerbSet, []sqlpolicy.Setting{{Name: "client_encoding", Value: "LATIN1", Guarded: true, Kind: sqlpolicy.SettingLexing}}, true},
		{"search_path", `SET search_path TO other, "My Schema"`, sqlpolicy.VerbSet,
			[]sqlpolicy.Setting{{Name: "search_path", Value: "other,My Schema", Guarded: true, Kind: sqlpolicy.SettingResolution}}, true},
		// One schema named "a, b": the session's comma-separated path
		// cannot carry it, so the value is not followed.
		{"search_path string is one name", `SET search_path = 'a, b'`, sqlpolicy.VerbSet,
			[]sqlpolicy.Setting{{Name: "search_path", Unknown: true, Guarded: true, Kind: sqlpolicy.SettingResolution}}, true},
		{"reset search_path", "RESET search_path", sqlpolicy.VerbSet, []sqlpolicy.Setting{{Name: "search_path", Reset: true}}, false},
		{"scs off", "SET standard_conforming_strings = off", sqlpolicy.VerbSet,
			[]sqlpolicy.Setting{{Name: "standard_conforming_strings", Value: "off", Guarded: true, Kind: sqlpolicy.SettingLexing}}, true},
		{"scs on", "SET standard_conforming_strings = on", sqlpolicy.VerbSet,
			[]sqlpolicy.Setting{{Name: "standard_conforming_strings", Value: "on"}}, false},
		{"set role", "SET ROLE admin", sqlpolicy.VerbSet, []sqlpolicy.Setting{{Name: "role", Value: "admin", Guarded: true, Kind: sqlpolicy.SettingIdentity}}, true},
		{"session authorization", "SET SESSION AUTHORIZATION admin", sqlpolicy.VerbSet,
			[]sqlpolicy.Setting{{Name: "session_authorization", Value: "admin", Guarded: true, Kind: sqlpolicy.SettingIdentity}}, true},
		{"unknown setting", "SET my.custom = 'x'", sqlpolicy.VerbSet, []sqlpolicy.Setting{{Name: "my.custom", Value: "x", Kind: sqlpolicy.SettingUnknown}}, true},
		{"set local", "SET LOCAL statement_timeout = 5000", sqlpolicy.VerbSet,
			[]sqlpolicy.Setting{{Name: "statement_timeout", Value: "5000", Local: true,
				Limit: sqlpolicy.LimitStatementTimeout, Amount: int64(5 * time.Second)}}, false},
		{"set to default", "SET work_mem TO DEFAULT", sqlpolicy.VerbSet, []sqlpolicy.Setting{{Name: "work_mem", Reset: true}}, false},
		{"reset all", "RESET ALL", sqlpolicy.VerbSet,
			[]sqlpolicy.Setting{{Name: "search_path", Reset: true}, {Name: "all", Reset: true}}, false},
		{"show", "SHOW search_path", sqlpolicy.VerbSet, []sqlpolicy.Setting{{Name: "search_path", Show: true}}, false},
		{"set transaction", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", sqlpolicy.VerbTransaction,
			[]sqlpolicy.Setting{{Name: "transaction_isolation", Value: "serializable", Local: true}}, false},
		{"session characteristics", "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", sqlpolicy.VerbSet,
			[]sqlpolicy.Setting{{Name: "default_transaction_read_only", Value: "1"}}, false},
		{"set_config harmless", "SELECT set_config('application_name', 'x', false)", sqlpolicy.VerbSelect,
			[]sqlpolicy.Setting{{Name: "application_name", Value: "x"}}, false},
		{"set_config search_path", `SELECT set_config('search_path', 'other, "B"', true)`, sqlpolicy.VerbSelect,
			[]sqlpolicy.Setting{{Name: "search_path", Value: "other,B", Local: true, Guarded: true, Kind: sqlpolicy.SettingResolution}}, true},
		{"set_config search_path that does not parse", `SELECT set_config('search_path', 'other, "B', false)`, sqlpolicy.VerbSelect,
			[]sqlpolicy.Setting{{Name: "search_path", Value: `other, "B`, Unknown: true, Guarded: true, Kind: sqlpolicy.SettingResolution}}, true},
		{"set_config parameter value", "SELECT set_config('TimeZone', $1, false)", sqlpolicy.VerbSelect,
			[]sqlpolicy.Setting{{Name: "timezone", Unknown: true}}, false},
		{"set_config not literal", "SELECT set_config(name, 'x', false) FROM customers", sqlpolicy.VerbSelect, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := one(t, tc.sql)
			assert.Equal(t, tc.verb, st.Verb)
			assert.Equal(t, tc.want, st.Settings)
			hasProblem := false
			for _, p := range st.Problems {
				require.Equal(t, sqlpolicy.ProblemSessionChange, p.Code, "unexpected problem %+v", p)
				hasProblem = true
			}
			assert.Equal(t, tc.problem, hasProblem, "session_change problem: %+v", st.Problems)
			if len(tc.want) > 0 && !tc.want[0].Show {
				assert.True(t, st.LiteralSensitive, "literal sensitive")
			}
		})
	}
}

// TestPrepareExecuteExplain checks the statements that carry another.
func TestPrepareExecuteExplain(t *testing.T) {
	t.Parallel()
	a := analyzer(t)

	acc := a.Analyze("PREPARE p (int) AS SELECT ssn FROM customers WHERE id = $1", nil)
	require.Len(t, acc.Statements, 1)
	prep := acc.Statements[0]
	assert.Equal(t, sqlpolicy.VerbPrepare, prep.Verb)
	assert.Equal(t, "p", prep.PrepareName)
	require.NotNil(t, prep.Prepared)
	assert.Equal(t, cols("customers", "id", "ssn"), colStrings(prep.Prepared.Columns))

	sess := &pganalyze.Session{}
	sess.Apply(acc)
	exec := a.Analyze("EXECUTE p (1)", sess).Statements[0]
	assert.Equal(t, sqlpolicy.VerbExecute, exec.Verb)
	assert.Equal(t, "p", exec.ExecuteName)
	require.NotNil(t, exec.Prepared)
	assert.Equal(t, prep.Prepared, exec.Prepared)
	assert.True(t, exec.ReturnsRows)
	assert.Empty(t, exec.Problems)

	missing := a.Analyze("EXECUTE nope", sess).Statements[0]
	assert.Nil(t, missing.Prepared)
	assert.Equal(t, []string{"unknown_prepared"}, problemCodes(missing.Problems))

	dealloc := a.Analyze("DEALLOCATE ALL; DISCARD ALL", nil).Statements
	require.Len(t, dealloc, 2)
	assert.True(t, dealloc[0].DeallocateAll)
	assert.True(t, dealloc[1].DeallocateAll)

	ex := a.Analyze("EXPLAIN ANALYZE SELECT ssn FROM customers", nil).Statements[0]
	assert.Equal(t, sqlpolicy.VerbExplain, ex.Verb)
	assert.True(t, ex.ExplainAnalyze)
	assert.True(t, ex.ReturnsRows)
	require.NotNil(t, ex.Explained)
	assert.Equal(t, sqlpolicy.VerbSelect, ex.Explained.Verb)
	assert.Equal(t, cols("customers", "ssn"), colStrings(ex.Explained.Columns))

	plain := a.Analyze("EXPLAIN (COSTS off) DELETE FROM orders", nil).Statements[0]
	assert.False(t, plain.ExplainAnalyze)
	require.NotNil(t, plain.Explained)
	assert.Equal(t, sqlpolicy.VerbDelete, plain.Explained.Verb)

	off := a.Analyze("EXPLAIN (ANALYZE false) SELECT 1", nil).Statements[0]
	assert.False(t, off.ExplainAnalyze)

	bad := a.Analyze("EXPLAIN SELECT pg_read_file('x')", nil).Statements[0]
	assert.Equal(t, []string{"file_access"}, problemCodes(bad.Problems), "problems of the explained statement are the EXPLAIN's too")
}

// TestMultiStatement checks that every statement of a text is analyzed, in
// order.
func TestMultiStatement(t *testing.T) {
	t.Parallel()
	acc := analyzer(t).Analyze("BEGIN; SELECT ssn FROM customers; UPDATE orders SET total = 0; COMMIT", nil)
	require.Len(t, acc.Statements, 4)
	var cmds []string
	for _, st := range acc.Statements {
		cmds = append(cmds, st.Command)
	}
	assert.Equal(t, []string{"BEGIN", "SELECT", "UPDATE", "COMMIT"}, cmds)
	assert.Equal(t, cols("customers", "ssn"), colStrings(acc.Statements[1].Columns))
}

// TestSearchPath checks that the session's search path resolves names.
func TestSearchPath(t *testing.T) {
	t.Parallel()
	a := analyzer(t)
	st := a.Analyze("SELECT note FROM customers", &pganalyze.Session{SearchPath: []string{"other", "public"}}).Statements[0]
	assert.Empty(t, st.Problems)
	assert.Equal(t, []string{"other.customers.note"}, colStrings(st.Columns))

	st = a.Analyze("SELECT note FROM customers", nil).Statements[0]
	assert.Equal(t, []string{"unknown_column"}, problemCodes(st.Problems))
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	a := analyzer(t)
	n1, err := a.Normalize("SELECT name FROM customers WHERE id = 1")
	require.NoError(t, err)
	n2, err := a.Normalize("SELECT name FROM customers WHERE id = 42")
	require.NoError(t, err)
	assert.Equal(t, n1, n2)
	_, err = a.Normalize("SELEC 1")
	assert.Error(t, err)
}

// DECLARE and CLOSE name the cursor, so a proxy can let the client use it
// as a protocol portal and knows when it ends.
func TestCursorNames(t *testing.T) {
	t.Parallel()
	a := analyzer(t)
	cases := []struct {
		sql  string
		name string
		hold bool
	}{
		{"DECLARE c1 CURSOR FOR SELECT name FROM customers", "c1", false},
		{`DECLARE "My Cur" NO SCROLL CURSOR WITHOUT HOLD FOR SELECT 1`, "My Cur", false},
		{"DECLARE c2 BINARY INSENSITIVE SCROLL CURSOR WITH HOLD FOR SELECT name FROM customers", "c2", true},
		{"CLOSE c1", "c1", false},
		{"CLOSE ALL", "", false},
		{"FETCH 10 FROM c1", "c1", false},
		{`MOVE ABSOLUTE 3 IN "My Cur"`, "My Cur", false},
		{"SELECT 1", "", false},
	}
	for _, tc := range cases {
		acc := a.Analyze(tc.sql, nil)
		require.Len(t, acc.Statements, 1, tc.sql)
		assert.Equal(t, tc.name, acc.Statements[0].CursorName, tc.sql)
		assert.Equal(t, tc.hold, acc.Statements[0].CursorHold, tc.sql)
	}
}

// TestSavepointNames: SAVEPOINT, RELEASE and ROLLBACK TO name their
// savepoint as the server does (folded to lower case unless quoted), for
// the proxy's record of which portals a ROLLBACK TO drops.
func TestSavepointNames(t *testing.T) {
	t.Parallel()
	for sql, want := range map[string]string{
		"SAVEPOINT PGJDBC_AUTOSAVE":             "pgjdbc_autosave",
		`SAVEPOINT "Mixed"`:                     "Mixed",
		"RELEASE SAVEPOINT a":                   "a",
		"RELEASE b":                             "b",
		"ROLLBACK TO SAVEPOINT PGJDBC_AUTOSAVE": "pgjdbc_autosave",
		"ROLLBACK TO c":                         "c",
		"ROLLBACK":                              "",
	} {
		assert.Equal(t, want, one(t, sql).Savepoint, sql)
	}
}
