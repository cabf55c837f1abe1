package pgproxy_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/creds"
)

// Upstream session reuse (reuse.go), seen from Postgres: which backends
// keyhole holds for an agent, and what they last ran.

// keyholeBackend is one of keyhole's upstream backends as
// pg_stat_activity shows it.
type keyholeBackend struct {
	pid   int
	agent string // application_name
	query string // the last statement it ran
}

// backends lists keyhole's upstream backends on the env's database.
func (e *env) backends() []keyholeBackend {
	e.t.Helper()
	ctx := context.Background()
	d, err := pgx.Connect(ctx, e.db.DSN)
	require.NoError(e.t, err)
	defer d.Close(ctx)
	rows, err := d.Query(ctx, `SELECT pid, application_name, query FROM pg_stat_activity
		WHERE datname = current_database() AND application_name LIKE 'keyhole:%' ORDER BY pid`)
	require.NoError(e.t, err)
	var out []keyholeBackend
	for rows.Next() {
		var b keyholeBackend
		require.NoError(e.t, rows.Scan(&b.pid, &b.agent, &b.query))
		out = append(out, b)
	}
	require.NoError(e.t, rows.Err())
	return out
}

// only returns the one backend of agent.
func (e *env) only(agent string) keyholeBackend {
	e.t.Helper()
	var found []keyholeBackend
	for _, b := range e.backends() {
		if b.agent == "keyhole:"+agent {
			found = append(found, b)
		}
	}
	require.Len(e.t, found, 1, "keyhole's backends for %s", agent)
	return found[0]
}

// waitKept waits until backend pid has run keyhole's reset and keyhole
// has audited the close of the closes-th session: the backend is kept
// (keyhole keeps it before it audits the close).
func (e *env) waitKept(pid, closes int) {
	e.t.Helper()
	require.Eventually(e.t, func() bool {
		n := 0
		for _, ev := range e.audit.Events() {
			if ev.Kind == audit.KindClose {
				n++
			}
		}
		return n >= closes
	}, 10*time.Second, 20*time.Millisecond, "keyhole audited fewer than %d closes", closes)
	for _, b := range e.backends() {
		if b.pid == pid {
			require.Equal(e.t, "DISCARD ALL", b.query, "backend %d was not reset", pid)
			return
		}
	}
	require.Fail(e.t, "backend is gone", "backend %d was not kept", pid)
}

// waitGone waits until backend pid has exited.
func (e *env) waitGone(pid int) {
	e.t.Helper()
	require.Eventually(e.t, func() bool {
		for _, b := range e.backends() {
			if b.pid == pid {
				return false
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond, "backend %d is still there", pid)
}

const reuseQuery = "SELECT count(*) FROM orders WHERE id > $1"

func countOrders(t testing.TB, c *pgx.Conn) int {
	t.Helper()
	var n int
	require.NoError(t, c.QueryRow(context.Background(), reuseQuery, 0).Scan(&n))
	return n
}

// keepOne runs a session of agent that leaves cleanly and returns its
// backend once keyhole keeps it (the closes-th session to end).
func (e *env) keepOne(agent string, closes int) keyholeBackend {
	e.t.Helper()
	c := e.connectAs(agent, pgx.QueryExecModeSimpleProtocol)
	require.Equal(e.t, 20, countOrders(e.t, c))
	b := e.only(agent)
	require.NoError(e.t, c.Close(context.Background()))
	e.waitKept(b.pid, closes)
	return b
}

// A session that leaves cleanly leaves its backend, reset, to the same
// agent's next session; the reset dropped what the first session made.
func TestUpstreamSessionReused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()

	// pgx's statement cache names its prepared statement after the text:
	// the second session prepares the same name, which Postgres refuses
	// (42P05) on a backend that still has the first one's.
	c1 := e.connectAs("analyst-bot", pgx.QueryExecModeCacheStatement)
	require.Equal(t, 20, countOrders(t, c1))
	first := e.only("analyst-bot")
	require.NoError(t, c1.Close(ctx))
	e.waitKept(first.pid, 1)

	c2 := e.connectAs("analyst-bot", pgx.QueryExecModeCacheStatement)
	require.Equal(t, 20, countOrders(t, c2))
	second := e.only("analyst-bot")
	assert.Equal(t, first.pid, second.pid, "the kept backend was not reused")
	assert.Equal(t, reuseQuery, second.query)

	// The session is a whole one: its cancel key, its denials, its
	// audit.
	_, err := c2.Exec(ctx, "SELECT * FROM secrets")
	require.Equal(t, "42501", sqlState(err))
	require.NoError(t, c2.Close(ctx))
	e.waitKept(first.pid, 2)
}

// Another agent never gets an agent's kept backend.
func TestUpstreamSessionNotSharedAcrossAgents(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	kept := e.keepOne("analyst-bot", 1)

	c2 := e.connectAs("scram-bot", pgx.QueryExecModeSimpleProtocol)
	require.Equal(t, 20, countOrders(t, c2))
	other := e.only("scram-bot")
	assert.NotEqual(t, kept.pid, other.pid)
	assert.Equal(t, kept.pid, e.only("analyst-bot").pid, "analyst-bot's kept backend is still kept")
}

// A session that leaves inside a transaction, or with a statement
// unanswered, is not kept: Terminate ends it and Postgres rolls back.
func TestUpstreamSessionNotKeptMidTransaction(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	c1 := e.connectAs("analyst-bot", pgx.QueryExecModeSimpleProtocol)
	tx, err := c1.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "INSERT INTO orders VALUES (100, 'left behind', 1)")
	require.NoError(t, err)
	b := e.only("analyst-bot")
	require.NoError(t, c1.Close(ctx))
	e.waitGone(b.pid)

	c2 := e.connectAs("analyst-bot", pgx.QueryExecModeSimpleProtocol)
	require.Equal(t, 20, countOrders(t, c2), "the transaction the client left was rolled back")
	assert.NotEqual(t, b.pid, e.only("analyst-bot").pid)
}

// A kept backend the server ended meanwhile is not handed out: the next
// session logs in anew and works.
func TestKeptSessionEndedByServer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	kept := e.keepOne("analyst-bot", 1)

	var ok bool
	require.NoError(t, e.direct().QueryRow(ctx, "SELECT pg_terminate_backend($1)", kept.pid).Scan(&ok))
	require.True(t, ok)
	e.waitGone(kept.pid)

	c2 := e.connectAs("analyst-bot", pgx.QueryExecModeSimpleProtocol)
	require.Equal(t, 20, countOrders(t, c2))
	assert.NotEqual(t, kept.pid, e.only("analyst-bot").pid)
}

// Kept backends close after upstream_reuse_idle, and when their lease
// ends.
func TestKeptSessionClosed(t *testing.T) {
	t.Parallel()
	t.Run("idle", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOpts{limits: config.Limits{UpstreamReuseIdle: 500 * time.Millisecond}})
		e.waitGone(e.keepOne("analyst-bot", 1).pid)
	})
	t.Run("lease ended", func(t *testing.T) {
		t.Parallel()
		src := &revocableSource{done: make(chan struct{})}
		e := newEnvWith(t, envOpts{}, func(e *env) creds.Source { src.inner = e.src; return src })
		kept := e.keepOne("analyst-bot", 1)
		src.revoke()
		e.waitGone(kept.pid)
	})
	t.Run("off", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOpts{limits: config.Limits{UpstreamReuseMax: -1}})
		c1 := e.connectAs("analyst-bot", pgx.QueryExecModeSimpleProtocol)
		require.Equal(t, 20, countOrders(t, c1))
		b := e.only("analyst-bot")
		require.NoError(t, c1.Close(context.Background()))
		e.waitGone(b.pid)
	})
}

// Kept backends do not keep a new session out: a login the server
// refuses with 53300 closes them and tries again.
func TestKeptSessionsMakeRoom(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	_, err := e.direct().Exec(ctx, fmt.Sprintf("ALTER ROLE %s CONNECTION LIMIT 1", e.upUser))
	require.NoError(t, err)

	kept := e.keepOne("analyst-bot", 1)

	c2 := e.connectAs("scram-bot", pgx.QueryExecModeSimpleProtocol)
	require.Equal(t, 20, countOrders(t, c2))
	for _, b := range e.backends() {
		assert.NotEqual(t, kept.pid, b.pid, "the kept backend was closed to make room")
	}
}

// The metrics say which sessions started on a kept upstream session and
// how many are kept.
func TestUpstreamReuseMetrics(t *testing.T) {
	t.Parallel()
	m := &metrics{}
	e := newEnv(t, envOpts{metrics: m})
	first := e.keepOne("analyst-bot", 1)
	second := e.keepOne("analyst-bot", 2)
	require.Equal(t, first.pid, second.pid)
	m.mu.Lock()
	defer m.mu.Unlock()
	assert.Equal(t, map[bool]int{false: 1, true: 1}, m.started)
	assert.Equal(t, []int{1, 0, 1}, m.kept, "kept, taken, kept again")
}
