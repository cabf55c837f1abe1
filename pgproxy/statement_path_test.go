package pgproxy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/audit"
)

// A prepared statement's allow stands at Bind only while the decider's
// epoch and the session's generation are those it was made under
// (conn.stillStands). These tests change one of them between two Binds of
// a statement the driver Parsed once, and the second Bind must be decided
// again, and refused.

// A reload that narrows the role (a new epoch) refuses the next Bind.
func TestBindAfterReloadIsDecidedAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	c := e.connect(pgx.QueryExecModeCacheStatement)
	const q = "SELECT id FROM orders WHERE id = $1"
	for range 3 {
		_, err := c.Exec(ctx, q, 1)
		require.NoError(t, err)
	}
	_, narrowed := e.ordersRevoked()
	e.setPolicy(narrowed)
	require.NoError(t, e.g.ReloadPolicy())
	_, err := c.Exec(ctx, q, 1)
	require.Error(t, err)
	assert.Equal(t, "42501", sqlState(err), "err: %v", err)
	assert.Contains(t, err.Error(), "was denied by policy")
}

// A search_path change (a new session generation) makes the unqualified
// name of a cached statement mean another table: the next Bind is refused.
func TestBindAfterSearchPathIsDecidedAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	// The login may use internal (else Postgres would skip it in the path
	// and orders would be public.orders from the start).
	pathAgent(t, e, "internal.orders")
	cfg, err := pgx.ParseConfig(e.dsn("path-bot"))
	require.NoError(t, err)
	cfg.DefaultQueryExecMode = pgx.QueryExecModeCacheStatement
	c, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(context.Background()) })

	_, err = c.Exec(ctx, "SET search_path TO internal, public", pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err)
	const q = "SELECT id FROM orders WHERE id = $1"
	for range 3 {
		_, err = c.Exec(ctx, q, 1)
		require.NoError(t, err, "orders is internal.orders")
	}
	_, err = c.Exec(ctx, "SET search_path TO public", pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err)
	_, err = c.Exec(ctx, q, 1)
	require.Error(t, err, "orders is public.orders now")
	assert.Equal(t, "42501", sqlState(err), "err: %v", err)
}

// A statement's audit event is stamped when the server's answer came, and
// its duration runs from when keyhole took the statement up to then: one
// clock reading serves both (auditEvent), so the event's time less its
// duration is when the statement was taken up.
func TestAuditStatementTimes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	c := e.connect(pgx.QueryExecModeSimpleProtocol)
	release := e.lockOrders()
	const q = "SELECT count(*) FROM orders WHERE item = 'timed'"
	before := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(ctx, q)
		done <- err
	}()
	require.Eventually(t, func() bool { return e.waiting() == 1 }, 10*time.Second, 10*time.Millisecond)
	// The statement is held on the lock for a known while: that wait is
	// what makes its duration long enough to tell the two readings apart,
	// so a sleep is the point here, not a wait for an event.
	time.Sleep(200 * time.Millisecond)
	release()
	require.NoError(t, <-done)
	after := time.Now()
	var ev *audit.Event
	require.Eventually(t, func() bool {
		for _, x := range e.audit.Events() {
			if x.Kind == audit.KindStatement && strings.HasPrefix(x.Statement, "SELECT count(*) FROM orders WHERE item = ") {
				ev = &x
				return true
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond)
	dur := time.Duration(ev.DurationMS * float64(time.Millisecond))
	assert.GreaterOrEqual(t, dur, 200*time.Millisecond, "the duration covers the wait for the lock")
	assert.False(t, ev.Time.Before(before.Add(200*time.Millisecond)), "stamped when the answer came: %v, sent at %v", ev.Time, before)
	assert.False(t, ev.Time.After(after), "stamped before the client had the answer")
	started := ev.Time.Add(-dur)
	assert.False(t, started.Before(before.Add(-time.Millisecond)), "time less duration is when it was taken up: %v, sent at %v", started, before)
}
