package corpus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/internal/corpus"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

// callPatternPolicy grants call on every procedure of public (a pattern
// docs/policy.md allows) and no functions.
const callPatternPolicy = `
labels:
  public.customers.email: [pii.email]
  public.customers.ssn:   [pii.ssn]
  public.secrets:         [secret]
roles:
  ops:
    upstream: shop
    allow:
      - select: [public.orders]
      - call: [public.*]
    deny_labels: [pii.*, secret]
agents:
  ops-bot: {role: ops}
`

// TestCallGrantCoversOnlyTheProcedure: a call grant covers the procedure
// CALL invokes, not the functions its arguments call. Postgres evaluates
// the arguments first, with the session's privileges, as it evaluates a
// SELECT's expressions: CALL touch_order(get_ssn(1)::int) runs get_ssn,
// and the failed cast puts the SSN in the error message. With call:
// [public.*] every function of public matched the grant.
func TestCallGrantCoversOnlyTheProcedure(t *testing.T) {
	t.Parallel()
	shop := corpus.NewShop(t, corpus.Suites[0])
	pol, _, err := sqlpolicy.ParsePolicy([]byte(callPatternPolicy), "callpattern.yaml", shop.Cat)
	require.NoError(t, err)
	eng := sqlpolicy.NewEngine(pol, shop.Cat, pganalyze.New(shop.Cat, pganalyze.Options{}), sqlpolicy.EngineOptions{CacheBytes: -1})
	p := sqlpolicy.Principal{Agent: "ops-bot"}

	for _, tc := range []struct {
		sql     string
		allowed bool
	}{
		{"CALL touch_order(1)", true},
		{"CALL public.touch_order(1)", true},
		{"CALL touch_order(abs(-1))", true},
		{"CALL touch_order(get_ssn(1)::int)", false},
		{"CALL touch_order(public.get_ssn(1)::int)", false},
		{"CALL touch_order(length(1))", false},                // public.length(integer) reads ssn
		{"CALL touch_order(chr('Ada Lovelace')::int)", false}, // public.chr(text) reads email
		{"CALL touch_order((SELECT length(customer_id) FROM orders LIMIT 1))", false},
		{"CALL touch_order(touch_order(1))", false}, // a function of the procedure's name is a function
	} {
		d, _ := eng.Check(p, tc.sql, eng.NewSession())
		assert.Equal(t, tc.allowed, d.Allowed(), "%s: %s %s", tc.sql, d.Rule, reasonsJSON(d))
	}

	// The oracle, as the fixture's owner (what keyhole's upstream login
	// usually is): the argument runs and its error shows the SSN.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, shop.DB.DSN)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var ssn string
	require.NoError(t, conn.QueryRow(ctx, "SELECT ssn FROM customers WHERE id = 1").Scan(&ssn))
	_, err = conn.Exec(ctx, "CALL touch_order(get_ssn(1)::int)")
	var pe *pgconn.PgError
	require.True(t, errors.As(err, &pe), "%v", err)
	assert.Contains(t, pe.Message, ssn, "the argument's cast error carries the labelled value")
}

// TestVolatileViewColumn: Postgres does not flatten a view whose select
// list calls a volatile or set-returning function, and evaluates that
// column for every row though the query does not use it
// (remove_unused_subquery_outputs keeps volatile outputs; a set-returning
// one decides how many rows there are). A view column
// set_config('application_name', email, false) copies every email SELECT
// id FROM the view reads into a setting SHOW returns, and one calling
// jsonb_path_query_tz over email filters the view's rows by the email; a
// stable or immutable column over email is not evaluated unused, and
// reading the view's other columns stays allowed.
func TestVolatileViewColumn(t *testing.T) {
	t.Parallel()
	shop := corpus.NewShop(t, corpus.Suites[0])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, shop.DB.DSN)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, `
CREATE VIEW public.customer_tags AS
    SELECT id, name, set_config('application_name', email, false) AS tag FROM public.customers;
CREATE VIEW public.customer_names AS
    SELECT id, name, upper(email) AS shout FROM public.customers;
CREATE VIEW public.customer_hits AS
    SELECT id, name, jsonb_path_query_tz(to_jsonb(email), '$ ? (@ starts with "a")') AS hit FROM public.customers`)
	require.NoError(t, err)
	cat, err := catalog.LoadPostgres(ctx, conn)
	require.NoError(t, err)
	pol, _, err := sqlpolicy.ParsePolicy([]byte(`
labels:
  public.customers.email: [pii.email]
roles:
  viewer:
    allow:
      - select: [public.customer_tags, public.customer_names, public.customer_hits]
    deny_labels: [pii.*]
agents:
  view-bot: {role: viewer}
`), "views.yaml", cat)
	require.NoError(t, err)
	eng := sqlpolicy.NewEngine(pol, cat, pganalyze.New(cat, pganalyze.Options{}), sqlpolicy.EngineOptions{CacheBytes: -1})
	p := sqlpolicy.Principal{Agent: "view-bot"}
	for _, tc := range []struct {
		sql     string
		allowed bool
	}{
		{"SELECT id FROM customer_tags", false},
		{"SELECT count(*) FROM customer_tags", false},
		{"SELECT id, name FROM customer_names", true},
		{"SELECT shout FROM customer_names", false},
		// A set-returning function (one keyhole's list of names did not
		// have) keeps the view from being flattened and decides its rows.
		{"SELECT id, name FROM customer_hits", false},
	} {
		d, _ := eng.Check(p, tc.sql, eng.NewSession())
		assert.Equal(t, tc.allowed, d.Allowed(), "%s: %s %s", tc.sql, d.Rule, reasonsJSON(d))
	}

	// The leak, as the fixture's owner.
	_, err = conn.Exec(ctx, "SELECT id FROM customer_tags ORDER BY id")
	require.NoError(t, err)
	var app, email string
	require.NoError(t, conn.QueryRow(ctx, "SHOW application_name").Scan(&app))
	require.NoError(t, conn.QueryRow(ctx, "SELECT email FROM customers ORDER BY id DESC LIMIT 1").Scan(&email))
	assert.Equal(t, email, app, "the unused view column ran set_config for every row")

	var n, want int
	require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM customer_hits").Scan(&n))
	require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM customers WHERE email LIKE 'a%'").Scan(&want))
	assert.Equal(t, want, n, "the view's rows are the customers whose email starts with a")
	assert.NotZero(t, n)
}
