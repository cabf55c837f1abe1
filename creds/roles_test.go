package creds_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/internal/testpg"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

// designPolicy is the example of DESIGN.md, plus an auditor that may read
// every table of public except what is labelled secret.
const designPolicy = fixture.PolicyRoles + `  auditor:
    upstream: shop
    allow:
      - select: [public.*]
      - update: {public.orders: [total]}
      - delete: [public.orders]
    deny_labels: [secret]
` + fixture.PolicyAgents + `  books: {role: auditor}
`

// rolesSQL is the design's shop, with a label in a column comment too.
const rolesSQL = shopSQL + `
ALTER TABLE customers ADD COLUMN phone text;
COMMENT ON COLUMN customers.phone IS 'keyhole: pii.phone';
UPDATE customers SET phone = '555-0100';
`

func shopCatalog() *catalog.Catalog {
	cols := func(names ...string) []*catalog.Column {
		var out []*catalog.Column
		for _, n := range names {
			out = append(out, &catalog.Column{Name: n, Type: "text"})
		}
		return out
	}
	customers := &catalog.Relation{Schema: "public", Name: "customers", Kind: catalog.KindTable,
		Columns: cols("id", "name", "email", "ssn", "phone")}
	customers.Columns[4].Labels = []string{"pii.phone"}
	return &catalog.Catalog{
		Dialect: "postgres", Database: "shop", SearchPath: []string{"pg_catalog", "public"},
		Relations: map[string]map[string]*catalog.Relation{"public": {
			"customers": customers,
			"orders":    {Schema: "public", Name: "orders", Kind: catalog.KindTable, Columns: cols("id", "customer_id", "total")},
			"secrets":   {Schema: "public", Name: "secrets", Kind: catalog.KindTable, Columns: cols("id", "value")},
			"order_seq": {Schema: "public", Name: "order_seq", Kind: catalog.KindSequence},
		}},
	}
}

func TestRolesForPolicy(t *testing.T) {
	t.Parallel()
	cat := shopCatalog()
	p, _, err := sqlpolicy.ParsePolicy([]byte(designPolicy), "policy.yaml", cat)
	require.NoError(t, err)
	roles, err := creds.RolesForPolicy(p, cat, creds.RoleOptions{DefaultTTL: time.Minute, MaxTTL: time.Hour})
	require.NoError(t, err)
	require.Len(t, roles, 2)
	byName := map[string]creds.VaultRole{}
	for _, r := range roles {
		byName[r.Name] = r
		assert.Equal(t, "shop", r.DBName, "db_name defaults to the upstream")
		assert.Equal(t, time.Minute, r.DefaultTTL)
		assert.Equal(t, time.Hour, r.MaxTTL)
		assert.Equal(t, `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`, r.CreationStatements[0])
		assert.NotContains(t, strings.Join(r.CreationStatements, "\n"), "secrets")
	}
	tests := []struct {
		role   string
		grants []string
		revoke []string
		notes  []string
	}{
		{role: "analyst", grants: []string{
			`GRANT USAGE ON SCHEMA "public" TO "{{name}}";`,
			`GRANT SELECT ("id", "name") ON "public"."customers" TO "{{name}}";`,
			`GRANT SELECT ON "public"."orders" TO "{{name}}";`,
			`GRANT INSERT ON "public"."orders" TO "{{name}}";`,
		}, revoke: []string{
			`REVOKE ALL ON ALL TABLES IN SCHEMA "public" FROM "{{name}}";`,
			`REVOKE USAGE ON SCHEMA "public" FROM "{{name}}";`,
			`DROP ROLE IF EXISTS "{{name}}";`,
		}, notes: []string{
			"public.customers.email: labelled pii.email, left out",
			"public.customers.ssn: labelled pii.ssn, left out",
			"public.customers.phone: labelled pii.phone, left out",
			"max_rows is enforced by keyhole only",
		}},
		{role: "auditor", grants: []string{
			`GRANT USAGE ON SCHEMA "public" TO "{{name}}";`,
			`GRANT SELECT ON "public"."customers" TO "{{name}}";`,
			`GRANT SELECT ON "public"."orders" TO "{{name}}";`,
			`GRANT UPDATE ("total") ON "public"."orders" TO "{{name}}";`,
			`GRANT DELETE ON "public"."orders" TO "{{name}}";`,
			// select: [public.*] reads the sequence too (currval, SELECT).
			`GRANT SELECT ON SEQUENCE "public"."order_seq" TO "{{name}}";`,
		}, revoke: []string{
			`REVOKE ALL ON ALL TABLES IN SCHEMA "public" FROM "{{name}}";`,
			`REVOKE ALL ON ALL SEQUENCES IN SCHEMA "public" FROM "{{name}}";`,
			`REVOKE USAGE ON SCHEMA "public" FROM "{{name}}";`,
			`DROP ROLE IF EXISTS "{{name}}";`,
		}, notes: []string{"public.secrets: whole relation labelled secret, denied"}},
	}
	for _, tt := range tests {
		t.Run(tt.role, func(t *testing.T) {
			t.Parallel()
			r := byName[tt.role]
			assert.Equal(t, tt.grants, r.CreationStatements[1:])
			assert.Equal(t, tt.revoke, r.RevocationStatements)
			assert.Equal(t, tt.notes, r.Notes)
		})
	}
}

func TestRolesForPolicyOptions(t *testing.T) {
	t.Parallel()
	cat := shopCatalog()
	p, _, err := sqlpolicy.ParsePolicy([]byte(designPolicy), "policy.yaml", cat)
	require.NoError(t, err)

	roles, err := creds.RolesForPolicy(p, cat, creds.RoleOptions{DBName: "shop-db", TerminateSessions: true, DropOwned: true})
	require.NoError(t, err)
	r := roles[0]
	assert.Equal(t, "shop-db", r.DBName)
	assert.Equal(t, creds.DefaultRoleTTL, r.DefaultTTL)
	assert.Equal(t, creds.DefaultRoleMaxTTL, r.MaxTTL)
	assert.Equal(t, []string{
		`SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = '{{name}}';`,
		`REVOKE ALL ON ALL TABLES IN SCHEMA "public" FROM "{{name}}";`,
		`REVOKE USAGE ON SCHEMA "public" FROM "{{name}}";`,
		`REASSIGN OWNED BY "{{name}}" TO CURRENT_USER;`,
		`DROP OWNED BY "{{name}}";`,
		`DROP ROLE IF EXISTS "{{name}}";`,
	}, r.RevocationStatements)
	data := r.Data()
	assert.Equal(t, int64(3600), data["default_ttl"])
	assert.Equal(t, "shop-db", data["db_name"])

	roles, err = creds.RolesForPolicy(p, cat, creds.RoleOptions{Upstream: "other"})
	require.NoError(t, err)
	assert.Empty(t, roles)

	_, err = creds.RolesForPolicy(p, nil, creds.RoleOptions{})
	assert.ErrorIs(t, err, creds.ErrNoCatalog)
	_, err = creds.RolesForPolicy(p, cat, creds.RoleOptions{DefaultTTL: time.Hour, MaxTTL: time.Minute})
	assert.Error(t, err)
}

// TestRolesEnforcedByPostgres: with a credential Vault issues for a role
// built from the policy, a direct connection that bypasses keyhole gets
// exactly what the policy allows, and Postgres refuses the rest.
func TestRolesEnforcedByPostgres(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, rolesSQL)
	db := e.db
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cat, err := catalog.LoadPostgresDSN(ctx, db.DSN)
	require.NoError(t, err)
	p, _, err := sqlpolicy.ParsePolicy([]byte(designPolicy), "policy.yaml", cat)
	require.NoError(t, err)
	roles, err := creds.RolesForPolicy(p, cat, creds.RoleOptions{TerminateSessions: true})
	require.NoError(t, err)
	require.NoError(t, creds.WriteVaultRoles(ctx, e.vault.Client, "database", roles))
	v, _ := e.source(t, e.vault.Addr, nil)

	connect := func(agent, role string) (*creds.Lease, *pgx.Conn) {
		l, err := v.Acquire(ctx, creds.Request{Agent: agent, Role: role})
		require.NoError(t, err)
		c, err := pgx.Connect(ctx, testpg.WithUser(db.DSN, l.User, l.Password.Reveal()))
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		return l, c
	}
	analyst, ac := connect("sales-summarizer", "analyst")
	auditor, uc := connect("books", "auditor")

	tests := []struct {
		name string
		conn *pgx.Conn
		sql  string
		deny bool
	}{
		{"analyst reads unlabelled columns", ac, "SELECT id, name FROM customers", false},
		{"analyst reads orders", ac, "SELECT * FROM orders", false},
		{"analyst inserts orders", ac, "INSERT INTO orders VALUES (2, 1, 1.50)", false},
		{"analyst email (policy label)", ac, "SELECT email FROM customers", true},
		{"analyst ssn in WHERE", ac, "SELECT id FROM customers WHERE ssn = '123-45-6789'", true},
		{"analyst phone (comment label)", ac, "SELECT phone FROM customers", true},
		{"analyst star over labelled columns", ac, "SELECT * FROM customers", true},
		{"analyst whole row", ac, "SELECT row_to_json(c) FROM customers c", true},
		{"analyst secrets", ac, "SELECT * FROM secrets", true},
		{"analyst updates", ac, "UPDATE orders SET total = 0", true},
		{"analyst deletes", ac, "DELETE FROM orders", true},
		{"analyst creates", ac, "CREATE TABLE public.x (a int)", true},
		{"auditor reads email", uc, "SELECT email, ssn FROM customers", false},
		{"auditor secrets (table label)", uc, "SELECT * FROM secrets", true},
		{"auditor updates total", uc, "UPDATE orders SET total = 0 WHERE id = 1", false},
		{"auditor updates other column", uc, "UPDATE orders SET customer_id = 0", true},
		{"auditor deletes", uc, "DELETE FROM orders WHERE id = 2", false},
	}
	for _, tt := range tests {
		_, err := tt.conn.Exec(ctx, tt.sql)
		if !tt.deny {
			assert.NoError(t, err, tt.name)
			continue
		}
		var pgErr *pgconn.PgError
		if assert.True(t, errors.As(err, &pgErr), "%s: %v", tt.name, err) {
			assert.Equal(t, "42501", pgErr.Code, "%s: %s", tt.name, pgErr.Message)
		}
	}

	// Revocation (Close) works with the column grants in place, and ends
	// the sessions that still use the credential.
	require.NoError(t, v.Close())
	assert.False(t, e.db.RoleExists(t, analyst.User))
	assert.False(t, e.db.RoleExists(t, auditor.User))
	_, err = ac.Exec(ctx, "SELECT 1")
	assert.Error(t, err, "session of a revoked credential was terminated")
}

// writerPolicy allows inserts whose defaults advance sequences (one in
// another schema), calls of a procedure, and a function with overloads.
const writerPolicy = `labels:
  ops.secret_seq: [secret]
roles:
  clerk:
    upstream: shop
    allow:
      - select: {public.tickets: [id, title, ref], ops.other_seq: [last_value]}
      - insert: {public.tickets: [title]}
      - update: [public.tickets_id_seq, ops.audit_seq, ops.secret_seq]
      - call: [public.touch, ops.*]
      - ddl: [public.scratch]
      - lock: [public.tickets]
    deny_labels: [secret]
    functions: [public.slugify]
agents:
  clerk-bot: {role: clerk}
`

func writerCatalog() *catalog.Catalog {
	col := func(name, def string, seqs ...string) *catalog.Column {
		return &catalog.Column{Name: name, Type: "text", Default: def, Sequences: seqs}
	}
	seq := func(schema, name string) *catalog.Relation {
		return &catalog.Relation{Schema: schema, Name: name, Kind: catalog.KindSequence,
			Columns: []*catalog.Column{col("last_value", ""), col("log_cnt", ""), col("is_called", "")}}
	}
	return &catalog.Catalog{
		Dialect: "postgres", Database: "shop", SearchPath: []string{"pg_catalog", "public"},
		Relations: map[string]map[string]*catalog.Relation{
			"public": {
				"tickets": {Schema: "public", Name: "tickets", Kind: catalog.KindTable, Columns: []*catalog.Column{
					col("id", "nextval('public.tickets_id_seq'::regclass)", "public.tickets_id_seq"),
					col("title", ""), col("note", ""),
					col("ref", "nextval('ops.audit_seq'::regclass)", "ops.audit_seq"),
				}},
				"tickets_id_seq": seq("public", "tickets_id_seq"),
				"scratch":        {Schema: "public", Name: "scratch", Kind: catalog.KindTable, Columns: []*catalog.Column{col("x", "")}},
			},
			"ops": {"audit_seq": seq("ops", "audit_seq"), "other_seq": seq("ops", "other_seq"), "secret_seq": seq("ops", "secret_seq")},
		},
		Functions: map[string]map[string]*catalog.Function{
			"public":     {"slugify": {Schema: "public", Name: "slugify", Kind: "function"}, "touch": {Schema: "public", Name: "touch", Kind: "procedure"}},
			"pg_catalog": {"lower": {Schema: "pg_catalog", Name: "lower", Kind: "function", Builtin: true}},
		},
	}
}

// TestRolesForPolicyWrites: what allowed writes need besides table
// privileges — sequences their defaults advance, schemas, routines — and
// nothing more.
func TestRolesForPolicyWrites(t *testing.T) {
	t.Parallel()
	cat := writerCatalog()
	p, _, err := sqlpolicy.ParsePolicy([]byte(writerPolicy), "policy.yaml", cat)
	require.NoError(t, err)
	roles, err := creds.RolesForPolicy(p, cat, creds.RoleOptions{})
	require.NoError(t, err)
	require.Len(t, roles, 1)
	r := roles[0]
	routine := func(schema, name, kinds string) string {
		return `DO $keyhole$ DECLARE r regprocedure; BEGIN FOR r IN SELECT p.oid FROM pg_catalog.pg_proc p ` +
			`JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = '` + schema + `' AND p.proname = '` + name +
			`' AND ` + kinds + ` LOOP EXECUTE pg_catalog.format('GRANT EXECUTE ON ROUTINE %s TO %I', r, '{{name}}'); END LOOP; END $keyhole$;`
	}
	assert.Equal(t, []string{
		`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`,
		`GRANT USAGE ON SCHEMA "ops" TO "{{name}}";`,
		`GRANT USAGE ON SCHEMA "public" TO "{{name}}";`,
		`GRANT TRUNCATE ON "public"."scratch" TO "{{name}}";`,
		`GRANT SELECT ("id", "title", "ref") ON "public"."tickets" TO "{{name}}";`,
		`GRANT INSERT ("title") ON "public"."tickets" TO "{{name}}";`,
		// nextval (defaults included) and setval: UPDATE, not USAGE,
		// which would add currval that keyhole allows with select only.
		`GRANT UPDATE ON SEQUENCE "ops"."audit_seq" TO "{{name}}";`,
		`GRANT UPDATE ON SEQUENCE "public"."tickets_id_seq" TO "{{name}}";`,
		routine("public", "touch", "p.prokind = 'p'"),
		`GRANT EXECUTE ON ALL PROCEDURES IN SCHEMA "ops" TO "{{name}}";`,
		routine("public", "slugify", "p.prokind <> 'p'"),
	}, r.CreationStatements)
	assert.Equal(t, []string{
		`REVOKE ALL ON ALL TABLES IN SCHEMA "ops" FROM "{{name}}";`,
		`REVOKE ALL ON ALL SEQUENCES IN SCHEMA "ops" FROM "{{name}}";`,
		`REVOKE ALL ON ALL ROUTINES IN SCHEMA "ops" FROM "{{name}}";`,
		`REVOKE USAGE ON SCHEMA "ops" FROM "{{name}}";`,
		`REVOKE ALL ON ALL TABLES IN SCHEMA "public" FROM "{{name}}";`,
		`REVOKE ALL ON ALL SEQUENCES IN SCHEMA "public" FROM "{{name}}";`,
		`REVOKE ALL ON ALL ROUTINES IN SCHEMA "public" FROM "{{name}}";`,
		`REVOKE USAGE ON SCHEMA "public" FROM "{{name}}";`,
		`DROP ROLE IF EXISTS "{{name}}";`,
	}, r.RevocationStatements)
	assert.Equal(t, []string{
		"ops.other_seq: select of some columns of a sequence is enforced by keyhole only",
		"ops.secret_seq: whole relation labelled secret, denied",
		"roles.clerk.allow[4].ddl: CREATE, ALTER and DROP need ownership in Postgres: only TRUNCATE is granted",
		"roles.clerk.allow[5].lock: LOCK TABLE and SELECT ... FOR UPDATE/SHARE need UPDATE, DELETE or TRUNCATE in Postgres, which would allow more: not granted, enforced by keyhole only",
		"functions not listed keep Postgres's default EXECUTE for PUBLIC: enforced by keyhole only",
	}, r.Notes)
}

// writerSQL is writerPolicy's database: serial and nextval defaults (one
// sequence in another schema), a sequence labelled secret by its comment,
// overloaded functions and a procedure, none executable by PUBLIC.
const writerSQL = `
CREATE SCHEMA ops;
CREATE SEQUENCE ops.audit_seq START 500;
CREATE SEQUENCE ops.other_seq;
CREATE SEQUENCE ops.secret_seq;
COMMENT ON SEQUENCE ops.secret_seq IS 'keyhole: secret';
CREATE TABLE tickets (id bigserial PRIMARY KEY, title text NOT NULL, note text,
                      ref bigint NOT NULL DEFAULT nextval('ops.audit_seq'));
CREATE FUNCTION slugify(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT lower(t) $$;
CREATE FUNCTION slugify(t text, n int) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT left(lower(t), n) $$;
CREATE FUNCTION unlisted() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
CREATE PROCEDURE touch(n bigint) LANGUAGE sql AS $$ SELECT n $$;
CREATE TABLE scratch (x int);
INSERT INTO scratch VALUES (1);
REVOKE EXECUTE ON ALL ROUTINES IN SCHEMA public FROM PUBLIC;
`

// TestRolesWritesEnforcedByPostgres (issue 10 item 11): with the
// credential Vault issues for a role built from the policy, used directly,
// every statement keyhole allows runs — an INSERT whose serial and nextval
// defaults advance sequences, nextval/setval, the listed functions and
// procedure — and what keyhole denies Postgres refuses too: a column not
// granted, currval (USAGE would allow it), a labelled sequence, a function
// not listed.
func TestRolesWritesEnforcedByPostgres(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, writerSQL)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cat, err := catalog.LoadPostgresDSN(ctx, e.db.DSN)
	require.NoError(t, err)
	p, _, err := sqlpolicy.ParsePolicy([]byte(writerPolicy), "policy.yaml", cat)
	require.NoError(t, err)
	roles, err := creds.RolesForPolicy(p, cat, creds.RoleOptions{TerminateSessions: true})
	require.NoError(t, err)
	require.NoError(t, creds.WriteVaultRoles(ctx, e.vault.Client, "database", roles))
	v, _ := e.source(t, e.vault.Addr, nil)
	l, err := v.Acquire(ctx, creds.Request{Agent: "clerk-bot", Role: "clerk"})
	require.NoError(t, err)
	conn, err := pgx.Connect(ctx, testpg.WithUser(e.db.DSN, l.User, l.Password.Reveal()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	eng := sqlpolicy.NewEngine(p, cat, pganalyze.New(cat, pganalyze.Options{}), sqlpolicy.EngineOptions{})

	tests := []struct {
		sql   string
		allow bool
	}{
		{"INSERT INTO tickets (title) VALUES ('printer on fire')", true},
		{"INSERT INTO tickets (title) VALUES ('coffee') RETURNING id, ref", true},
		{"SELECT id, title, ref FROM tickets", true},
		{"SELECT nextval('ops.audit_seq')", true},
		{"SELECT setval('public.tickets_id_seq', 100)", true},
		{"SELECT public.slugify('Hello World'), public.slugify('Hello World', 5)", true},
		{"CALL public.touch(1)", true},
		{"TRUNCATE scratch", true},
		{"INSERT INTO tickets (title, note) VALUES ('x', 'a note')", false},
		{"INSERT INTO tickets (id, title) VALUES (7, 'x')", false},
		{"SELECT note FROM tickets", false},
		{"UPDATE tickets SET title = 'x'", false},
		{"SELECT currval('ops.audit_seq')", false},
		{"SELECT nextval('ops.secret_seq')", false},
		{"SELECT nextval('ops.other_seq')", false},
		{"SELECT public.unlisted()", false},
		{"TRUNCATE tickets", false},
	}
	for _, tt := range tests {
		d, _ := eng.Check(sqlpolicy.Principal{Agent: "clerk-bot"}, tt.sql, eng.NewSession())
		require.Equal(t, tt.allow, d.Allowed(), "keyhole's decision on %s: %s", tt.sql, d.Message)
		_, err := conn.Exec(ctx, tt.sql)
		if tt.allow {
			assert.NoError(t, err, tt.sql)
			continue
		}
		var pgErr *pgconn.PgError
		if assert.ErrorAs(t, err, &pgErr, tt.sql) {
			assert.Equal(t, "42501", pgErr.Code, "%s: %s", tt.sql, pgErr.Message)
		}
	}
	// The two inserts took their id and ref from the sequences.
	admin, err := pgx.Connect(ctx, e.db.DSN)
	require.NoError(t, err)
	defer admin.Close(ctx)
	rows, err := admin.Query(ctx, "SELECT ARRAY[id, ref] FROM tickets ORDER BY id")
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows, pgx.RowTo[[]int64])
	require.NoError(t, err)
	assert.Equal(t, [][]int64{{1, 500}, {2, 501}}, got)

	// Revocation drops the user although it held sequence and routine
	// privileges.
	require.NoError(t, v.Close())
	assert.False(t, e.db.RoleExists(t, l.User))
}
