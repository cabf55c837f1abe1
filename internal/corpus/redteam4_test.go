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
