package catalog_test

import (
	"bytes"
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/internal/testpg"
)

const shopSQL = `
CREATE SCHEMA app;
CREATE SCHEMA "Sales";
CREATE TABLE app.customers (id int PRIMARY KEY, email text, ssn text, gone int, "FullName" varchar(80), note text);
ALTER TABLE app.customers DROP COLUMN gone;
COMMENT ON TABLE app.customers IS 'All customers';
COMMENT ON COLUMN app.customers.email IS 'Work address. keyhole: pii.email, pii.contact; shown in the CRM';
COMMENT ON COLUMN app.customers.ssn IS 'keyhole: pii.ssn PII.Bad';
COMMENT ON COLUMN app.customers.note IS 'free text, no labels';
CREATE TABLE app.secrets (k text, v text);
COMMENT ON TABLE app.secrets IS 'Do not read. keyhole: secret';
COMMENT ON COLUMN app.secrets.v IS 'keyhole: pii.other';
CREATE VIEW app.customer_emails AS SELECT id, email FROM app.customers;
COMMENT ON COLUMN app.customer_emails.email IS 'keyhole: pii.email';
CREATE MATERIALIZED VIEW app.email_counts AS SELECT count(*) AS n FROM app.customers;
CREATE TABLE app.events (id int, at date, payload jsonb) PARTITION BY RANGE (at);
CREATE TABLE app.events_2026 PARTITION OF app.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE SEQUENCE app.ticket_seq;
CREATE FOREIGN DATA WRAPPER kh_dummy;
CREATE SERVER kh_srv FOREIGN DATA WRAPPER kh_dummy;
CREATE FOREIGN TABLE app.remote (a int) SERVER kh_srv;
CREATE TABLE "Sales"."MixedCase" ("Amount" numeric(10,2), lower int);
CREATE FUNCTION app.lookup(i int) RETURNS text LANGUAGE sql STABLE SECURITY DEFINER
  AS $$ SELECT email FROM app.customers WHERE id = i $$;
CREATE FUNCTION app.lookup(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT t $$;
CREATE FUNCTION app.plain() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$;
CREATE PROCEDURE app.proc() LANGUAGE sql AS $$ SELECT 1 $$;
CREATE AGGREGATE app.mysum(int) (sfunc = int4pl, stype = int);
CREATE FUNCTION public.lower(i int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT i $$;
`

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func adminExec(t *testing.T, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testpg.AdminDSN())
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	require.NoError(t, err)
}

func withParam(t *testing.T, dsn, key, value string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func columnNames(r *catalog.Relation) []string {
	var out []string
	for _, c := range r.Columns {
		out = append(out, c.Name)
	}
	return out
}

func TestInspectPostgres(t *testing.T) {
	t.Parallel()
	db := testpg.New(t, shopSQL)
	conn := connect(t, db.DSN)
	ctx := ctxT(t)
	// A temp table of the loading session must not show up: temp schemas
	// are per session.
	_, err := conn.Exec(ctx, `CREATE TEMP TABLE scratch (a int); SET search_path = app, public`)
	require.NoError(t, err)

	l, err := catalog.InspectPostgres(ctx, conn)
	require.NoError(t, err)
	c := l.Catalog
	require.NoError(t, c.Validate())

	assert.Equal(t, "postgres", c.Dialect)
	assert.Equal(t, db.Name, c.Database)
	// The session's own path (no pg_temp even though a temp table exists).
	assert.Equal(t, []string{"pg_catalog", "app", "public"}, c.SearchPath)
	for schema := range c.Relations {
		assert.NotEqual(t, "pg_toast", schema)
		assert.NotRegexp(t, `^pg_(toast_)?temp_`, schema)
	}
	assert.Nil(t, c.ResolveRelation("scratch", nil))

	t.Run("the loader leaves the session alone", func(t *testing.T) {
		var path string
		require.NoError(t, conn.QueryRow(ctx, `SHOW search_path`).Scan(&path))
		assert.Equal(t, "app, public", path)
	})

	t.Run("relations", func(t *testing.T) {
		for _, tc := range []struct {
			schema, name string
			kind         catalog.RelKind
			columns      []string
			system       bool
		}{
			{"app", "customers", catalog.KindTable, []string{"id", "email", "ssn", "FullName", "note"}, false},
			{"app", "customer_emails", catalog.KindView, []string{"id", "email"}, false},
			{"app", "email_counts", catalog.KindMatView, []string{"n"}, false},
			{"app", "events", catalog.KindPartitioned, []string{"id", "at", "payload"}, false},
			{"app", "events_2026", catalog.KindTable, []string{"id", "at", "payload"}, false},
			{"app", "ticket_seq", catalog.KindSequence, []string{"last_value", "log_cnt", "is_called"}, false},
			{"app", "remote", catalog.KindForeignTable, []string{"a"}, false},
			{"Sales", "MixedCase", catalog.KindTable, []string{"Amount", "lower"}, false},
			{"pg_catalog", "pg_class", catalog.KindTable, nil, true},
			{"pg_catalog", "pg_stats", catalog.KindView, nil, true},
			{"information_schema", "tables", catalog.KindView, nil, true},
		} {
			t.Run(tc.schema+"."+tc.name, func(t *testing.T) {
				r := c.Relation(tc.schema, tc.name)
				require.NotNil(t, r)
				assert.Equal(t, tc.schema, r.Schema)
				assert.Equal(t, tc.name, r.Name)
				assert.Equal(t, tc.kind, r.Kind)
				assert.Equal(t, tc.system, r.System)
				if tc.columns != nil {
					assert.Equal(t, tc.columns, columnNames(r))
				} else {
					assert.NotEmpty(t, r.Columns)
				}
			})
		}
		assert.Nil(t, c.Relation("sales", "mixedcase"), "names are exact, not case-folded")
		assert.Nil(t, c.Relation("app", "customers_pkey"), "indexes are not relations")
	})

	t.Run("columns", func(t *testing.T) {
		cust := c.Relation("app", "customers")
		require.NotNil(t, cust)
		assert.Equal(t, "All customers", cust.Comment)
		assert.Nil(t, cust.Labels)
		assert.Equal(t, "character varying(80)", cust.Column("FullName").Type)
		assert.Equal(t, "integer", cust.Column("id").Type)
		assert.Equal(t, "numeric(10,2)", c.Relation("Sales", "MixedCase").Column("Amount").Type)
		assert.Equal(t, "free text, no labels", cust.Column("note").Comment)
		assert.Nil(t, cust.Column("gone"), "dropped column")
		assert.Nil(t, cust.Column("ctid"), "system column")
	})

	t.Run("labels", func(t *testing.T) {
		cust := c.Relation("app", "customers")
		secrets := c.Relation("app", "secrets")
		view := c.Relation("app", "customer_emails")
		require.NotNil(t, cust)
		require.NotNil(t, secrets)
		require.NotNil(t, view)
		assert.Equal(t, []string{"pii.contact", "pii.email"}, cust.Column("email").Labels)
		assert.Nil(t, cust.Column("note").Labels)
		// A bad token keeps the good labels and marks the column.
		assert.Equal(t, []string{catalog.InvalidLabel, "pii.ssn"}, cust.Column("ssn").Labels)
		assert.Equal(t, []string{"secret"}, secrets.Labels)
		assert.Equal(t, []string{"pii.other", "secret"}, c.ColumnLabels(secrets, "v"))
		assert.Equal(t, []string{"secret"}, c.ColumnLabels(secrets, "k"))
		assert.Equal(t, []string{"pii.email"}, view.Column("email").Labels)
		assert.Nil(t, c.ColumnLabels(view, "id"))

		require.Len(t, l.Warnings, 1)
		assert.Contains(t, l.Warnings[0], "app.customers.ssn")
		assert.Contains(t, l.Warnings[0], `"PII.Bad"`)
	})

	t.Run("view definitions are schema-qualified", func(t *testing.T) {
		// The session's path includes app, yet the definition names
		// app.customers: it must not depend on the path it is read under.
		assert.Contains(t, c.Relation("app", "customer_emails").Definition, "FROM app.customers")
		assert.Contains(t, c.Relation("app", "email_counts").Definition, "count(*)")
		assert.Empty(t, c.Relation("app", "customers").Definition)
		assert.NotEmpty(t, c.Relation("information_schema", "tables").Definition)
	})

	t.Run("functions", func(t *testing.T) {
		for _, tc := range []struct {
			schema, name string
			want         catalog.Function
		}{
			{"app", "lookup", catalog.Function{Kind: "function", Volatility: catalog.Stable, Language: "sql", SecurityDefiner: true}},
			{"app", "plain", catalog.Function{Kind: "function", Volatility: catalog.Volatile, Language: "plpgsql"}},
			{"app", "proc", catalog.Function{Kind: "procedure", Volatility: catalog.Volatile, Language: "sql"}},
			{"app", "mysum", catalog.Function{Kind: "aggregate", Volatility: catalog.Immutable, Language: "internal"}},
			{"public", "lower", catalog.Function{Kind: "function", Volatility: catalog.Immutable, Language: "sql"}},
			{"pg_catalog", "lower", catalog.Function{Kind: "function", Volatility: catalog.Immutable, Language: "internal", Builtin: true}},
			{"pg_catalog", "now", catalog.Function{Kind: "function", Volatility: catalog.Stable, Language: "internal", Builtin: true}},
			{"pg_catalog", "random", catalog.Function{Kind: "function", Volatility: catalog.Volatile, Language: "internal", Builtin: true}},
			{"pg_catalog", "count", catalog.Function{Kind: "aggregate", Volatility: catalog.Immutable, Language: "internal", Builtin: true}},
			{"pg_catalog", "row_number", catalog.Function{Kind: "window", Volatility: catalog.Immutable, Language: "internal", Builtin: true}},
			{"information_schema", "_pg_expandarray", catalog.Function{Kind: "function", Volatility: catalog.Immutable, Language: "sql", Builtin: true, ReturnsSet: true}},
			{"pg_catalog", "jsonb_path_query_tz", catalog.Function{Kind: "function", Volatility: catalog.Stable, Language: "internal", Builtin: true, ReturnsSet: true}},
		} {
			t.Run(tc.schema+"."+tc.name, func(t *testing.T) {
				f := c.Function(tc.schema, tc.name)
				require.NotNil(t, f)
				want := tc.want
				want.Schema, want.Name = tc.schema, tc.name
				got := *f
				assert.NotEmpty(t, got.Overloads)
				got.Overloads = nil
				assert.Equal(t, want, got)
			})
		}
		// pg_catalog comes first on the path, so the built-in wins.
		assert.True(t, c.ResolveFunction("lower", nil).Builtin)
		assert.Equal(t, "public", c.ResolveFunction("lower", []string{"public", "pg_catalog"}).Schema)
	})
}

func TestLoadPostgresSearchPath(t *testing.T) {
	t.Parallel()
	role := testpg.NewRole(t, "") // before New: the role is dropped after the database
	db := testpg.New(t, shopSQL+`
CREATE SCHEMA AUTHORIZATION `+role+`;
CREATE TABLE `+role+`.mine (a int);
GRANT USAGE ON SCHEMA "Sales" TO `+role+`;
`)
	adminExec(t, `ALTER DATABASE `+db.Name+` SET search_path = app, "$user", public`)
	adminExec(t, `ALTER ROLE `+role+` SET search_path = "$user", "Sales", app, pg_catalog, public`)
	roleDSN := testpg.WithUser(db.DSN, role, "")

	for _, tc := range []struct {
		name string
		dsn  string
		want []string
	}{
		// No schema "postgres", so "$user" drops out; pg_catalog goes first.
		{"database setting", db.DSN, []string{"pg_catalog", "app", "public"}},
		// The role setting wins over the database's; "$user" becomes the
		// role's schema; app is skipped for lack of USAGE, as Postgres does;
		// an explicit pg_catalog stays where it is listed.
		{"role setting", roleDSN, []string{role, "Sales", "pg_catalog", "public"}},
		// A startup parameter in the DSN wins over both.
		{"dsn parameter", withParam(t, roleDSN, "search_path", "public"), []string{"pg_catalog", "public"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := catalog.LoadPostgresDSN(ctxT(t), tc.dsn)
			require.NoError(t, err)
			assert.Equal(t, tc.want, c.SearchPath)
		})
	}

	t.Run("unprivileged login sees the whole schema", func(t *testing.T) {
		c, err := catalog.LoadPostgresDSN(ctxT(t), roleDSN)
		require.NoError(t, err)
		r := c.ResolveRelation("mine", nil)
		require.NotNil(t, r)
		assert.Equal(t, role, r.Schema)
		assert.Equal(t, []string{"pii.contact", "pii.email"}, c.Relation("app", "customers").Column("email").Labels)
		assert.Contains(t, c.Relation("app", "customer_emails").Definition, "FROM app.customers")
		assert.Equal(t, "MixedCase", c.ResolveRelation("MixedCase", nil).Name)
	})

	// What a session-set search_path skips: schemas the login lacks USAGE
	// on, and "$user" naming the login.
	t.Run("schema usage and login", func(t *testing.T) {
		c, err := catalog.LoadPostgresDSN(ctxT(t), roleDSN)
		require.NoError(t, err)
		assert.Equal(t, role, c.Login)
		assert.Equal(t, map[string]bool{"app": false, "Sales": true, role: true, "public": true}, map[string]bool{
			"app": c.SchemaUsage["app"], "Sales": c.SchemaUsage["Sales"], role: c.SchemaUsage[role], "public": c.SchemaUsage["public"]})
		assert.Contains(t, c.SchemaUsage, "app", "a schema without USAGE is listed (as false)")
		assert.NotContains(t, c.SchemaUsage, "pg_toast")
		searched, known := c.SchemaSearched("app")
		assert.False(t, known, "USAGE is the sessions' only when they share the login")
		c.SessionsShareLogin = true
		searched, known = c.SchemaSearched("app")
		assert.True(t, known)
		assert.False(t, searched)
		searched, known = c.SchemaSearched("no_such_schema")
		assert.True(t, known)
		assert.False(t, searched, "a schema that does not exist is skipped")
	})
}

// Objects on the login's path must not change what the loader's own queries
// mean: a path that lists public before pg_catalog would otherwise let
// public.format_type stand in for the built-in.
func TestLoadPostgresIgnoresShadowingFunctions(t *testing.T) {
	t.Parallel()
	db := testpg.New(t, `
CREATE TABLE public.t (a int);
CREATE FUNCTION public.format_type(oid, integer) RETURNS text LANGUAGE sql AS $$ SELECT 'shadowed' $$;
`)
	adminExec(t, `ALTER DATABASE `+db.Name+` SET search_path = public, pg_catalog`)
	conn := connect(t, db.DSN)
	ctx := ctxT(t)
	var shadowed string
	require.NoError(t, conn.QueryRow(ctx, `SELECT format_type('int4'::regtype, -1)`).Scan(&shadowed))
	require.Equal(t, "shadowed", shadowed, "the setup must really shadow the built-in")

	c, err := catalog.LoadPostgres(ctx, conn)
	require.NoError(t, err)
	assert.Equal(t, []string{"public", "pg_catalog"}, c.SearchPath)
	assert.Equal(t, "integer", c.Relation("public", "t").Column("a").Type)
}

func TestLoadPostgresRefusesOpenTransaction(t *testing.T) {
	t.Parallel()
	db := testpg.New(t, "CREATE TABLE t (a int)")
	conn := connect(t, db.DSN)
	ctx := ctxT(t)
	_, err := conn.Exec(ctx, "BEGIN; INSERT INTO t VALUES (1)")
	require.NoError(t, err)
	_, err = catalog.LoadPostgres(ctx, conn)
	assert.ErrorIs(t, err, catalog.ErrInTransaction)
	// The caller's transaction is untouched.
	_, err = conn.Exec(ctx, "COMMIT")
	require.NoError(t, err)
	var n int
	require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n))
	assert.Equal(t, 1, n)
}

func TestLoadPostgresDSNError(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-Passw0rd"
	dsn := testpg.WithUser(testpg.WithDatabase(testpg.AdminDSN(), "keyhole_no_such_db"), "keyhole_no_such_user", secret)
	_, err := catalog.LoadPostgresDSN(ctxT(t), dsn)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), secret)
}

// Column defaults: the expression (names qualified whatever the login's
// path) and the sequences it advances. Identity columns have no default:
// Postgres advances their sequence without a privilege check.
func TestLoadPostgresColumnDefaults(t *testing.T) {
	t.Parallel()
	db := testpg.New(t, `
CREATE SCHEMA app;
CREATE SEQUENCE app.ticket_seq;
CREATE FUNCTION app.stamp() RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$;
CREATE TABLE app.t (
    id     serial,
    ticket bigint DEFAULT nextval('app.ticket_seq'),
    ident  int GENERATED ALWAYS AS IDENTITY,
    stamp  text DEFAULT app.stamp(),
    at     timestamptz DEFAULT now(),
    gen    int GENERATED ALWAYS AS (id * 2) STORED,
    plain  text,
    gen2   text GENERATED ALWAYS AS (plain || stamp || id) STORED
);
`)
	adminExec(t, `ALTER DATABASE `+db.Name+` SET search_path = app, public`)
	conn := connect(t, db.DSN)
	c, err := catalog.LoadPostgres(ctxT(t), conn)
	require.NoError(t, err)
	r := c.Relation("app", "t")
	require.NotNil(t, r)
	tests := []struct {
		col, def string
		seqs     []string
	}{
		{col: "id", def: "nextval('app.t_id_seq'::regclass)", seqs: []string{"app.t_id_seq"}},
		{col: "ticket", def: "nextval('app.ticket_seq'::regclass)", seqs: []string{"app.ticket_seq"}},
		{col: "ident"},
		{col: "stamp", def: "app.stamp()"},
		{col: "at", def: "now()"},
		{col: "gen"},
		{col: "plain"},
	}
	for _, tc := range tests {
		col := r.Column(tc.col)
		require.NotNil(t, col, tc.col)
		assert.Equal(t, tc.def, col.Default, tc.col)
		assert.Equal(t, tc.seqs, col.Sequences, tc.col)
	}
	assert.Equal(t, []string{"id"}, r.Column("gen").GeneratedReads)
	assert.Equal(t, []string{"id", "stamp", "plain"}, r.Column("gen2").GeneratedReads, "in column order")
	assert.Empty(t, r.Column("plain").GeneratedReads)
}

// What runs when a statement writes a table: triggers (one entry per
// event, UPDATE OF columns, the functions of the trigger and its WHEN),
// rules, foreign key actions, and the user functions that constraints,
// generated columns, indexes, domains and row security policies call.
func TestLoadPostgresEffects(t *testing.T) {
	t.Parallel()
	db := testpg.New(t, `
CREATE FUNCTION f_trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE FUNCTION f_when(int) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT true $$;
CREATE FUNCTION f_check(int) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT true $$;
CREATE FUNCTION f_pol(int) RETURNS boolean LANGUAGE sql STABLE AS $$ SELECT true $$;
CREATE TABLE p (id int PRIMARY KEY, code int UNIQUE);
CREATE TABLE t (id int PRIMARY KEY, a int CHECK (f_check(a)) CHECK (a > 0), b int,
                pid int REFERENCES p (id) ON DELETE CASCADE,
                pcode int REFERENCES p (code) ON UPDATE SET NULL ON DELETE RESTRICT);
CREATE TRIGGER t_iu BEFORE INSERT OR UPDATE OF a, b ON t FOR EACH ROW WHEN (f_when(NEW.a)) EXECUTE FUNCTION f_trg();
CREATE TRIGGER t_off AFTER DELETE ON t FOR EACH STATEMENT EXECUTE FUNCTION f_trg();
ALTER TABLE t DISABLE TRIGGER t_off;
CREATE TRIGGER t_del AFTER DELETE ON t FOR EACH STATEMENT EXECUTE FUNCTION f_trg();
CREATE TABLE log (id int);
CREATE RULE r_ins AS ON INSERT TO t DO ALSO INSERT INTO log VALUES (NEW.id);
CREATE RULE r_del AS ON DELETE TO t DO INSTEAD NOTHING;
ALTER TABLE t ENABLE ROW LEVEL SECURITY;
CREATE POLICY pol ON t FOR UPDATE USING (f_pol(b));
CREATE FUNCTION f_op(int, text) RETURNS text LANGUAGE sql AS $$ SELECT $2 $$;
CREATE OPERATOR public.+ (LEFTARG = int, RIGHTARG = text, FUNCTION = f_op);
CREATE OPERATOR public.!! (RIGHTARG = int, FUNCTION = f_check);
CREATE DOMAIN dpos AS int CHECK (f_check(VALUE)) CHECK (VALUE > 0);
CREATE DOMAIN dpos2 AS dpos;
CREATE FUNCTION f_evt() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE EVENT TRIGGER e_on ON sql_drop EXECUTE FUNCTION f_evt();
CREATE EVENT TRIGGER e_off ON ddl_command_start EXECUTE FUNCTION f_evt();
ALTER EVENT TRIGGER e_off DISABLE;
CREATE TABLE parted (id int, region text) PARTITION BY LIST (region);
CREATE TABLE parted_eu PARTITION OF parted FOR VALUES IN ('eu') PARTITION BY LIST (id);
CREATE TABLE parted_eu_1 PARTITION OF parted_eu FOR VALUES IN (1);
CREATE TABLE inh_child () INHERITS (p);
CREATE FUNCTION pg_catalog.kh_added() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
`)
	conn := connect(t, db.DSN)
	c, err := catalog.LoadPostgres(ctxT(t), conn)
	require.NoError(t, err)
	rel := c.Relation("public", "t")
	require.NotNil(t, rel)
	assert.Equal(t, []catalog.Trigger{
		{Name: "t_del", Event: "DELETE", Timing: "AFTER", Level: "STATEMENT", Functions: []string{"public.f_trg"}},
		{Name: "t_iu", Event: "INSERT", Timing: "BEFORE", Level: "ROW", Functions: []string{"public.f_trg", "public.f_when"}},
		{Name: "t_iu", Event: "UPDATE", Timing: "BEFORE", Level: "ROW", Columns: []string{"a", "b"}, Functions: []string{"public.f_trg", "public.f_when"}},
	}, rel.Triggers)
	assert.Equal(t, []catalog.Rule{{Name: "r_del", Event: "DELETE", Instead: true}, {Name: "r_ins", Event: "INSERT"}}, rel.Rules)
	assert.Equal(t, []catalog.ForeignKey{
		{Name: "t_pcode_fkey", Columns: []string{"pcode"}, RefSchema: "public", RefTable: "p", RefColumns: []string{"code"}, OnUpdate: "SET NULL", OnDelete: "RESTRICT"},
		{Name: "t_pid_fkey", Columns: []string{"pid"}, RefSchema: "public", RefTable: "p", RefColumns: []string{"id"}, OnUpdate: "NO ACTION", OnDelete: "CASCADE"},
	}, rel.ForeignKeys)
	assert.Equal(t, []catalog.ImplicitCall{
		{Source: "check constraint t_a_check", Events: []string{"INSERT", "UPDATE"}, Function: "public.f_check"},
		{Source: "row security policy pol", Events: []string{"UPDATE"}, Function: "public.f_pol"},
	}, rel.Calls, "built-in functions (a > 0) are not listed")
	assert.Empty(t, c.Relation("public", "p").Triggers, "foreign keys' internal triggers are not listed")

	f := c.Function("public", "f_check")
	require.NotNil(t, f)
	assert.Equal(t, []catalog.Signature{{Args: []string{"integer"}}}, f.Overloads)
	assert.Contains(t, c.Function("pg_catalog", "length").Overloads, catalog.Signature{Args: []string{"text"}})
	assert.True(t, c.Function("pg_catalog", "length").Builtin)
	require.NotNil(t, c.Function("pg_catalog", "kh_added"))
	assert.False(t, c.Function("pg_catalog", "kh_added").Builtin,
		"a function installed into pg_catalog after initdb (an extension's, a DBA's) is not built in")

	assert.Equal(t, []catalog.Operator{{Left: "integer", Right: "text", Function: "public.f_op"}}, c.OperatorsNamed("public", "+"))
	assert.Equal(t, []catalog.Operator{{Right: "integer", Function: "public.f_check"}}, c.OperatorsNamed("public", "!!"))
	assert.Contains(t, c.OperatorsNamed("pg_catalog", "+"), catalog.Operator{Left: "integer", Right: "integer", Function: "pg_catalog.int4pl"})
	assert.Contains(t, c.ImplicitCasts["integer"], "bigint")
	assert.Contains(t, c.ImplicitCasts["character varying"], "text")
	assert.NotContains(t, c.ImplicitCasts["integer"], "text")

	assert.Equal(t, []string{"public.f_check"}, c.TypeFunctions["public.dpos"])
	assert.Equal(t, []string{"public.f_check"}, c.TypeFunctions["public.dpos2"], "a domain over a domain checks both")
	assert.NotContains(t, c.TypeFunctions, "pg_catalog.int4", "built-in input functions are not listed")

	assert.Equal(t, []catalog.Trigger{{Name: "e_on", Event: "sql_drop", Functions: []string{"public.f_evt"}}}, c.EventTriggers)

	assert.Equal(t, []string{"public.parted_eu"}, c.Relation("public", "parted").Children)
	assert.Equal(t, []string{"public.parted_eu_1"}, c.Relation("public", "parted_eu").Children)
	assert.Equal(t, []string{"public.inh_child"}, c.Relation("public", "p").Children)
	assert.Equal(t, []string{"public.parted_eu"}, c.Relation("public", "parted_eu_1").Parents)
	assert.Equal(t, []string{"public.p"}, c.Relation("public", "inh_child").Parents)
	family := func(schema, name string) []string {
		var out []string
		for _, m := range c.InheritanceFamily(c.Relation(schema, name)) {
			out = append(out, m.String())
		}
		return out
	}
	assert.Equal(t, []string{"public.parted_eu", "public.parted"}, family("public", "parted_eu_1"), "ancestors")
	assert.Equal(t, []string{"public.parted", "public.parted_eu_1"}, family("public", "parted_eu"), "ancestors and descendants")
	assert.Empty(t, family("public", "t"))

	var saved bytes.Buffer
	for _, rels := range c.Relations {
		for _, r := range rels {
			r.Parents = nil // a catalog saved before Parents existed
		}
	}
	require.NoError(t, c.Save(&saved))
	loaded, err := catalog.Load(&saved)
	require.NoError(t, err)
	assert.Equal(t, []string{"public.parted_eu"}, loaded.Relation("public", "parted_eu_1").Parents, "Load fills Parents from Children")
}

// What Postgres evaluates over whole rows a statement does not name: the
// columns of each CHECK constraint (a partition's inherited ones too),
// of each unique and exclusion index (expressions and predicates
// included), and of each partition key (expressions included).
func TestLoadPostgresConstraintColumns(t *testing.T) {
	t.Parallel()
	db := testpg.New(t, `
CREATE EXTENSION IF NOT EXISTS btree_gist;
CREATE TABLE staff (id int PRIMARY KEY, salary int, cap int, email text, tenant int, note text,
    CONSTRAINT cap_le_salary CHECK (cap <= salary), CHECK (note <> ''),
    UNIQUE (email, tenant));
CREATE UNIQUE INDEX staff_lower ON staff (lower(email)) WHERE tenant > 0;
ALTER TABLE staff ADD CONSTRAINT salary_cap CHECK (salary < 100) NOT VALID;
CREATE TABLE room (id int, during int4range, who text, EXCLUDE USING gist (id WITH =, during WITH &&));
CREATE TABLE pay (id int, name text, salary int, CHECK (salary > 0)) PARTITION BY RANGE (salary);
CREATE TABLE pay_high PARTITION OF pay FOR VALUES FROM (50000) TO (MAXVALUE) PARTITION BY LIST ((id % 2));
CREATE TABLE pay_high_even PARTITION OF pay_high FOR VALUES IN (0);
`)
	conn := connect(t, db.DSN)
	c, err := catalog.LoadPostgres(ctxT(t), conn)
	require.NoError(t, err)
	staff := c.Relation("public", "staff")
	require.NotNil(t, staff)
	assert.Equal(t, []catalog.Check{
		{Name: "cap_le_salary", Clause: "(cap <= salary)", Columns: []string{"cap", "salary"}},
		{Name: "salary_cap", Clause: "(salary < 100)", Columns: []string{"salary"}, NotValid: true},
		{Name: "staff_note_check", Clause: "(note <> ''::text)", Columns: []string{"note"}},
	}, staff.Checks)
	assert.Equal(t, []catalog.UniqueKey{
		{Name: "staff_email_tenant_key", Columns: []string{"email", "tenant"}},
		{Name: "staff_lower", Columns: []string{"email", "tenant"}},
		{Name: "staff_pkey", Columns: []string{"id"}},
	}, staff.UniqueKeys, "key columns, and the columns of expressions and predicates")
	assert.Equal(t, []catalog.UniqueKey{{Name: "room_id_during_excl", Columns: []string{"id", "during"}}},
		c.Relation("public", "room").UniqueKeys, "exclusion constraints compare rows too")
	assert.Equal(t, []string{"salary"}, c.Relation("public", "pay").Partitioning)
	assert.Equal(t, []string{"id"}, c.Relation("public", "pay_high").Partitioning, "a key expression's columns")
	assert.Empty(t, c.Relation("public", "pay_high_even").Partitioning)
	assert.Equal(t, []catalog.Check{{Name: "pay_salary_check", Clause: "(salary > 0)", Columns: []string{"salary"}}},
		c.Relation("public", "pay_high_even").Checks, "a partition's inherited check")
}

// Row security policies of tables with row security enabled, with the
// columns their expressions name, of the table and of other tables.
func TestLoadPostgresRowPolicies(t *testing.T) {
	t.Parallel()
	db := testpg.New(t, `
CREATE TABLE owners (id int PRIMARY KEY, email text);
CREATE TABLE pay (id int, owner_id int, salary int);
ALTER TABLE pay ENABLE ROW LEVEL SECURITY;
CREATE POLICY low ON pay FOR SELECT USING (salary < 5000);
CREATE POLICY own ON pay USING (true) WITH CHECK (owner_id IN (SELECT id FROM owners WHERE email = current_user));
CREATE TABLE off (id int, a int);
CREATE POLICY p ON off USING (a > 0);
`)
	conn := connect(t, db.DSN)
	c, err := catalog.LoadPostgres(ctxT(t), conn)
	require.NoError(t, err)
	assert.Equal(t, []catalog.RowPolicy{
		{Name: "low", Events: []string{"SELECT"}, Reads: []catalog.ColumnOf{{Schema: "public", Table: "pay", Column: "salary"}}},
		{Name: "own", Events: []string{"SELECT", "INSERT", "UPDATE", "DELETE"}, Reads: []catalog.ColumnOf{
			{Schema: "public", Table: "owners", Column: "id"}, {Schema: "public", Table: "owners", Column: "email"},
			{Schema: "public", Table: "pay", Column: "owner_id"}}},
	}, c.Relation("public", "pay").RowPolicies)
	assert.Empty(t, c.Relation("public", "off").RowPolicies, "row security not enabled")
}

// What comparing and converting values runs: a user operator class's
// functions (not an extension's C ones), an exclusion constraint's
// operators, a partition key's expressions, the domains inside array and
// composite types, and a function's parameter and result domains; and
// whether a function fixes its search_path.
func TestLoadPostgresComparisonAndConversionCode(t *testing.T) {
	t.Parallel()
	db := testpg.New(t, `
CREATE EXTENSION IF NOT EXISTS btree_gist;
CREATE FUNCTION f_eq(a int, b int) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT a = b $$;
CREATE FUNCTION f_cmp(a int, b int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT btint4cmp(a, b) $$;
CREATE FUNCTION f_part(v int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT v % 2 $$;
CREATE FUNCTION f_ok(v int) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT true $$;
CREATE OPERATOR =# (LEFTARG = int, RIGHTARG = int, FUNCTION = f_eq, COMMUTATOR = =#);
CREATE OPERATOR CLASS my_int_ops FOR TYPE int USING btree AS
    OPERATOR 1 <, OPERATOR 2 <=, OPERATOR 3 =#, OPERATOR 4 >=, OPERATOR 5 >, FUNCTION 1 f_cmp(int, int);
CREATE TABLE booked (id int, room int, EXCLUDE USING btree (room my_int_ops WITH =#));
CREATE TABLE room (id int, during int4range, EXCLUDE USING gist (id WITH =, during WITH &&));
CREATE TABLE slot (id int, v int) PARTITION BY LIST (f_part(v));
CREATE TABLE slot_0 PARTITION OF slot FOR VALUES IN (0);
CREATE DOMAIN dok AS int CHECK (f_ok(VALUE));
CREATE TYPE pair AS (a dok, b text);
CREATE TABLE stays (id int, rooms dok[], p pair);
CREATE FUNCTION takes(d dok) RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
CREATE FUNCTION gives() RETURNS dok LANGUAGE sql AS $$ SELECT 1 $$;
CREATE FUNCTION pinned() RETURNS int LANGUAGE sql SET search_path = public AS $$ SELECT 1 $$;
CREATE EXTENSION IF NOT EXISTS citext;
CREATE TABLE handles (id int, h citext);
CREATE FUNCTION takes_citext(c citext) RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
`)
	conn := connect(t, db.DSN)
	c, err := catalog.LoadPostgres(ctxT(t), conn)
	require.NoError(t, err)
	calls := func(rel string) []string {
		var out []string
		for _, k := range c.Relation("public", rel).Calls {
			out = append(out, k.Source+": "+k.Function)
		}
		return out
	}
	assert.ElementsMatch(t, []string{
		"exclusion constraint booked_room_excl: public.f_eq",
		"operator class my_int_ops of index booked_room_excl: public.f_cmp",
		"operator class my_int_ops of index booked_room_excl: public.f_eq",
	}, calls("booked"))
	assert.Empty(t, calls("room"), "btree_gist's C functions and built-in operators")
	assert.Equal(t, []string{"partition key of slot: public.f_part"}, calls("slot"))
	assert.Equal(t, []string{"partition key of slot: public.f_part"}, calls("slot_0"), "a partition's bounds run the key too")
	assert.ElementsMatch(t, []string{"type public.dok[] of column rooms: public.f_ok", "type public.pair of column p: public.f_ok"}, calls("stays"))
	assert.Equal(t, []string{"public.f_ok"}, c.TypeFunctions["public.pair"])
	assert.Equal(t, []string{"public.f_ok"}, c.TypeFunctions["public._dok"])
	assert.Equal(t, []string{"public.f_ok"}, c.Function("public", "takes").ArgCalls)
	assert.Equal(t, []string{"public.f_ok"}, c.Function("public", "gives").ArgCalls)
	assert.Empty(t, c.Function("public", "pinned").ArgCalls)
	assert.True(t, c.Function("public", "pinned").SetsSearchPath)
	assert.False(t, c.Function("public", "takes").SetsSearchPath)
	// An extension's C input function parses; it runs no query.
	assert.Empty(t, calls("handles"), "writing a citext column")
	assert.Empty(t, c.Function("public", "takes_citext").ArgCalls)
	assert.Contains(t, c.TypeFunctions["public.citext"], "public.citextin", "a cast the text names still counts")
}
