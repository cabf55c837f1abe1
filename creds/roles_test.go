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
		assert.Equal(t, []string{
			`REVOKE ALL ON ALL TABLES IN SCHEMA "public" FROM "{{name}}";`,
			`REVOKE USAGE ON SCHEMA "public" FROM "{{name}}";`,
			`DROP ROLE IF EXISTS "{{name}}";`,
		}, r.RevocationStatements)
		assert.NotContains(t, strings.Join(r.CreationStatements, "\n"), "secrets")
		assert.NotContains(t, strings.Join(r.CreationStatements, "\n"), "order_seq")
	}
	tests := []struct {
		role   string
		grants []string
		notes  []string
	}{
		{role: "analyst", grants: []string{
			`GRANT USAGE ON SCHEMA "public" TO "{{name}}";`,
			`GRANT SELECT ("id", "name") ON "public"."customers" TO "{{name}}";`,
			`GRANT SELECT ON "public"."orders" TO "{{name}}";`,
			`GRANT INSERT ON "public"."orders" TO "{{name}}";`,
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
		}, notes: []string{"public.secrets: whole relation labelled secret, denied"}},
	}
	for _, tt := range tests {
		t.Run(tt.role, func(t *testing.T) {
			t.Parallel()
			r := byName[tt.role]
			assert.Equal(t, tt.grants, r.CreationStatements[1:])
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
