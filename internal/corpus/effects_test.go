package corpus_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/internal/corpus"
	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

// TestWriteEffects is the real-server proof for the effects corpus
// (testdata/pg/cases-writer/effects.yaml): rules and foreign key actions
// run with the table owner's privileges, so the policy-equivalent role
// cannot show them. Each statement runs, in a rolled-back transaction, as
// the fixture's owner (what keyhole's upstream login usually is), and a
// probe query sees whether it did more than its text says: every
// statement keyhole refuses does, every one it allows does not.
func TestWriteEffects(t *testing.T) {
	t.Parallel()
	var writer corpus.Suite
	for _, su := range corpus.Suites {
		if su.Name == "writer" {
			writer = su
		}
	}
	require.NotEmpty(t, writer.Name)
	shop := corpus.NewShop(t, writer)
	pol, _, err := sqlpolicy.LoadPolicyFile(fixture.Path(t, writer.Policy), shop.Cat)
	require.NoError(t, err)
	eng := sqlpolicy.NewEngine(pol, shop.Cat, pganalyze.New(shop.Cat, pganalyze.Options{}), sqlpolicy.EngineOptions{CacheBytes: -1})
	p := sqlpolicy.Principal{Agent: writer.Agent}

	const (
		auditRows     = "SELECT count(*) FROM audit_log"
		eventRows     = "SELECT count(*) FROM ticket_events"
		orphanEvents  = "SELECT count(*) FROM ticket_events WHERE ticket_id IS NULL"
		stampedEmails = "SELECT count(*) FROM tickets WHERE contact LIKE '%@%'"
	)
	tests := []struct {
		name, sql, probe string
		allowed          bool
	}{
		{"rule logs an insert", "INSERT INTO shipments (id, order_id, carrier) VALUES (5, 1, 'dhl')", auditRows, false},
		{"rule logs an insert ... select", "INSERT INTO shipments (id, order_id, carrier) SELECT 100 + id, id, 'dhl' FROM orders", auditRows, false},
		{"no rule on update", "UPDATE shipments SET carrier = 'fedex' WHERE id = 1", auditRows, true},
		{"statement trigger on an empty delete", "DELETE FROM shipments WHERE false", auditRows, false},
		{"insert trigger copies an email", "INSERT INTO tickets (id, order_id) VALUES (10, 1)", stampedEmails, false},
		{"update of priority is logged", "UPDATE tickets SET priority = 5 WHERE id = 1", auditRows, false},
		{"update of status is not", "UPDATE tickets SET status = 'closed' WHERE id = 1", auditRows, true},
		{"delete cascades", "DELETE FROM tickets WHERE id = 1", eventRows, false},
		{"key update sets null", "UPDATE tickets SET id = 101 WHERE id = 1", orphanEvents, false},
		{"status update leaves events", "UPDATE tickets SET status = 'closed'", orphanEvents, true},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, shop.DB.DSN)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := eng.Check(p, tc.sql, eng.NewSession())
			assert.Equal(t, tc.allowed, d.Allowed(), "decision: %s %v", d.Rule, d.Reasons)

			tx, err := conn.Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = tx.Rollback(context.Background()) }()
			var before, after int
			require.NoError(t, tx.QueryRow(ctx, tc.probe).Scan(&before))
			_, err = tx.Exec(ctx, tc.sql)
			require.NoError(t, err, "as the owner")
			require.NoError(t, tx.QueryRow(ctx, tc.probe).Scan(&after))
			assert.Equal(t, tc.allowed, before == after,
				"%s: %d before, %d after (a refused statement must have an effect beyond its text, an allowed one none)", tc.probe, before, after)
		})
	}
}

// TestShadowedBuiltin is the real-server proof of a user function that a
// built-in's name reaches: as the fixture's owner, length(customer_id)
// returns the length of the customer's ssn, and keyhole refuses it.
func TestShadowedBuiltin(t *testing.T) {
	t.Parallel()
	analyst := corpus.Suites[0]
	shop := corpus.NewShop(t, analyst)
	pol, _, err := sqlpolicy.LoadPolicyFile(fixture.Path(t, analyst.Policy), shop.Cat)
	require.NoError(t, err)
	eng := sqlpolicy.NewEngine(pol, shop.Cat, pganalyze.New(shop.Cat, pganalyze.Options{}), sqlpolicy.EngineOptions{CacheBytes: -1})
	const text = "SELECT length(customer_id) FROM orders WHERE customer_id = 1 LIMIT 1"
	d, _ := eng.Check(sqlpolicy.Principal{Agent: analyst.Agent}, text, eng.NewSession())
	assert.False(t, d.Allowed())
	assert.True(t, hasReason(d, string(sqlpolicy.ReasonFunctionDenied)), "reasons %s", reasonsJSON(d))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, shop.DB.DSN)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var n, ssnLen int
	require.NoError(t, conn.QueryRow(ctx, text).Scan(&n))
	require.NoError(t, conn.QueryRow(ctx, "SELECT pg_catalog.length(ssn) FROM customers WHERE id = 1").Scan(&ssnLen))
	assert.Equal(t, ssnLen, n, "length(customer_id) reads customers.ssn through public.length")

	// The same through an operator: integer + text is public.+.
	const opText = "SELECT customer_id + status FROM orders WHERE customer_id = 1 LIMIT 1"
	d, _ = eng.Check(sqlpolicy.Principal{Agent: analyst.Agent}, opText, eng.NewSession())
	assert.False(t, d.Allowed())
	var got, ssn string
	require.NoError(t, conn.QueryRow(ctx, opText).Scan(&got))
	require.NoError(t, conn.QueryRow(ctx, "SELECT ssn FROM customers WHERE id = 1").Scan(&ssn))
	assert.Contains(t, got, ssn, "customer_id + status reads customers.ssn through public.+")
}
