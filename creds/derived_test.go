package creds_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/internal/testpg"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

// derivedSQL has a table a role may merge into, and generated columns
// computed from a labelled column and from a column the role's select
// grant leaves out.
const derivedSQL = `
CREATE TABLE orders (id int PRIMARY KEY, status text, total numeric);
INSERT INTO orders VALUES (1, 'new', 10), (2, 'new', 20);
CREATE TABLE people (id int PRIMARY KEY, email text,
                     domain text GENERATED ALWAYS AS (split_part(email, '@', 2)) STORED);
COMMENT ON COLUMN people.email IS 'keyhole: pii.email';
INSERT INTO people (id, email) VALUES (1, 'ada@example.com');
CREATE TABLE prices (id int PRIMARY KEY, cost numeric, price numeric GENERATED ALWAYS AS (cost * 2) STORED);
INSERT INTO prices (id, cost) VALUES (1, 5);
CREATE VIEW people_emails AS SELECT id, email FROM people;
CREATE VIEW example_people AS SELECT id FROM people WHERE email LIKE '%@example.com';
`

const derivedPolicy = `roles:
  merger:
    upstream: shop
    allow:
      - select: [public.orders, public.people]
      - select: {public.prices: [id, price]}
      - select: [public.people_emails, public.example_people]
      - ddl: [public.people, public.prices]
      - merge: {public.orders: [id, status]}
    deny_labels: [pii.*]
agents:
  merge-bot: {role: merger}
`

// derivedGrants loads derivedSQL, derives the merger role's Postgres
// grants and runs them (Vault runs the same statements) for a role it
// connects as.
func derivedGrants(t *testing.T) (creds.VaultRole, *pgx.Conn, *sqlpolicy.Engine) {
	t.Helper()
	role := testpg.NewRole(t, "") // before the database: dropped after it
	db := testpg.New(t, derivedSQL)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cat, err := catalog.LoadPostgresDSN(ctx, db.DSN)
	require.NoError(t, err)
	p, _, err := sqlpolicy.ParsePolicy([]byte(derivedPolicy), "policy.yaml", cat)
	require.NoError(t, err)
	roles, err := creds.RolesForPolicy(p, cat, creds.RoleOptions{})
	require.NoError(t, err)
	require.Len(t, roles, 1)
	admin, err := pgx.Connect(ctx, db.DSN)
	require.NoError(t, err)
	defer admin.Close(ctx)
	for _, s := range roles[0].CreationStatements[1:] {
		_, err := admin.Exec(ctx, strings.ReplaceAll(s, "{{name}}", role))
		require.NoError(t, err, s)
	}
	conn, err := pgx.Connect(ctx, testpg.WithUser(db.DSN, role, ""))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return roles[0], conn, sqlpolicy.NewEngine(p, cat, pganalyze.New(cat, pganalyze.Options{}), sqlpolicy.EngineOptions{})
}

// agree checks keyhole's decision on each statement and that Postgres,
// under the derived grants, runs what keyhole allows and refuses (42501)
// what it denies.
func agree(t *testing.T, conn *pgx.Conn, eng *sqlpolicy.Engine, tests []derivedCase) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tt := range tests {
		d, _ := eng.Check(sqlpolicy.Principal{Agent: "merge-bot"}, tt.sql, eng.NewSession())
		assert.Equal(t, tt.allow, d.Allowed(), "keyhole's decision on %s: %s", tt.sql, d.Message)
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
}

type derivedCase struct {
	sql   string
	allow bool
}

// TestDerivedGrantsMerge: a merge grant becomes INSERT and UPDATE on its
// columns and no DELETE, so that Postgres, like keyhole, refuses a MERGE
// with a DELETE action (it asks the DELETE privilege for one).
func TestDerivedGrantsMerge(t *testing.T) {
	t.Parallel()
	r, conn, eng := derivedGrants(t)
	grants := r.CreationStatements[1:]
	assert.Contains(t, grants, `GRANT INSERT ("id", "status") ON "public"."orders" TO "{{name}}";`)
	assert.Contains(t, grants, `GRANT UPDATE ("id", "status") ON "public"."orders" TO "{{name}}";`)
	assert.NotContains(t, strings.Join(grants, "\n"), "DELETE")
	agree(t, conn, eng, []derivedCase{
		{"MERGE INTO orders o USING (VALUES (1)) v(id) ON o.id = v.id WHEN MATCHED THEN UPDATE SET status = 'merged'", true},
		{"MERGE INTO orders o USING (VALUES (3)) v(id) ON o.id = v.id WHEN NOT MATCHED THEN INSERT (id, status) VALUES (v.id, 'x')", true},
		{"MERGE INTO orders o USING (VALUES (1)) v(id) ON o.id = v.id WHEN MATCHED THEN DELETE", false},
		{"MERGE INTO orders o USING (VALUES (1)) v(id) ON o.id = v.id WHEN MATCHED AND o.total > 100 THEN DELETE WHEN MATCHED THEN UPDATE SET status = 'm'", false},
		{"MERGE INTO orders o USING (VALUES (1)) v(id) ON o.id = v.id WHEN MATCHED THEN UPDATE SET total = 0", false},
	})
}

// TestDerivedGrantsGenerated: a generated column is left out of SELECT
// when a column it is computed from is labelled or not granted, as
// keyhole reads those columns with it.
func TestDerivedGrantsGenerated(t *testing.T) {
	t.Parallel()
	r, conn, eng := derivedGrants(t)
	grants := r.CreationStatements[1:]
	assert.Contains(t, grants, `GRANT SELECT ("id") ON "public"."people" TO "{{name}}";`)
	assert.Contains(t, grants, `GRANT SELECT ("id") ON "public"."prices" TO "{{name}}";`)
	assert.Contains(t, r.Notes, "public.people.domain: generated from email, left out")
	assert.Contains(t, r.Notes, "public.prices.price: generated from cost, which the role may not read, left out")
	agree(t, conn, eng, []derivedCase{
		{"SELECT id FROM people", true},
		{"SELECT domain FROM people", false},
		{"SELECT id FROM prices", true},
		{"SELECT price FROM prices", false},
	})
}

// TestDerivedGrantsViews: a view reads its base columns with its owner's
// privileges, so a view column computed from a labelled column (and every
// column of a view whose other clauses read one, which keyhole counts for
// each of its columns) is left out of the view's SELECT, as keyhole refuses
// reading it. Granting the whole view let the credential read
// people_emails.email, the labelled people.email, on its own.
func TestDerivedGrantsViews(t *testing.T) {
	t.Parallel()
	r, conn, eng := derivedGrants(t)
	grants := r.CreationStatements[1:]
	assert.Contains(t, grants, `GRANT SELECT ("id") ON "public"."people_emails" TO "{{name}}";`)
	assert.NotContains(t, strings.Join(grants, "\n"), `"public"."example_people"`)
	agree(t, conn, eng, []derivedCase{
		{"SELECT id FROM people_emails", true},
		{"SELECT email FROM people_emails", false},
		{"SELECT * FROM people_emails", false},
		{"SELECT id FROM example_people", false},
	})
}

// TestDerivedGrantsTruncate: ddl becomes TRUNCATE, except on a relation
// with a column whose labels the role denies: TRUNCATE empties that
// column, and keyhole refuses DDL on such a relation.
func TestDerivedGrantsTruncate(t *testing.T) {
	t.Parallel()
	r, conn, eng := derivedGrants(t)
	grants := r.CreationStatements[1:]
	assert.Contains(t, grants, `GRANT TRUNCATE ON "public"."prices" TO "{{name}}";`)
	assert.NotContains(t, grants, `GRANT TRUNCATE ON "public"."people" TO "{{name}}";`)
	agree(t, conn, eng, []derivedCase{
		{"TRUNCATE people", false},
	})
}
