package pgproxy_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// revocableSource wraps a static source; revoke closes every lease's Done.
type revocableSource struct {
	inner    creds.Source
	mu       sync.Mutex
	done     chan struct{}
	fail     bool
	released int
}

func (s *revocableSource) Acquire(ctx context.Context, req creds.Request) (*creds.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return nil, errors.New("vault: permission denied for token s.SECRETTOKEN: " + creds.ErrUnavailable.Error())
	}
	l, err := s.inner.Acquire(ctx, req)
	if err != nil {
		return nil, err
	}
	return creds.NewLease(l.User, l.Password, s.done, func() error { return errors.New("lease revoked") }, func() {
		s.mu.Lock()
		s.released++
		s.mu.Unlock()
	}), nil
}

func (s *revocableSource) Close() error { return nil }

func (s *revocableSource) revoke() { close(s.done) }

func TestCredentialsRevoked(t *testing.T) {
	t.Parallel()
	src := &revocableSource{done: make(chan struct{})}
	e := newEnvWith(t, envOpts{}, func(e *env) creds.Source { src.inner = e.src; return src })
	ctx := context.Background()
	c := e.connect(pgx.QueryExecModeSimpleProtocol)
	_, err := c.Exec(ctx, "SELECT 1")
	require.NoError(t, err)
	src.revoke()
	require.Eventually(t, func() bool {
		_, err = c.Exec(ctx, "SELECT 1")
		return err != nil
	}, 5*time.Second, 20*time.Millisecond)
	assert.Equal(t, "57P01", sqlState(err), "err: %v", err)
	// The session gave its lease back.
	require.Eventually(t, func() bool {
		src.mu.Lock()
		defer src.mu.Unlock()
		return src.released == 1
	}, 5*time.Second, 20*time.Millisecond)
}

func TestUpstreamLoginFails(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, envOpts{}, func(*env) creds.Source {
		return &creds.Static{User: "no_such_role_x", Password: creds.NewSecret("upstream-secret-pw")}
	})
	_, err := pgx.Connect(context.Background(), e.dsn("analyst-bot"))
	require.Error(t, err)
	assert.Equal(t, "08001", sqlState(err))
	assert.NotContains(t, err.Error(), "no_such_role_x")
	assert.NotContains(t, err.Error(), "upstream-secret-pw")
}

func TestUpstreamTerminated(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	c := e.connect(pgx.QueryExecModeSimpleProtocol)
	var pid int
	// keyhole's own BackendKeyData pid is not the upstream's.
	require.NoError(t, c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid))
	assert.NotEqual(t, uint32(pid), c.PgConn().PID())
	d := e.direct()
	_, err := d.Exec(ctx, "SELECT pg_terminate_backend($1)", pid)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err = c.Exec(ctx, "SELECT 1")
		return err != nil
	}, 5*time.Second, 20*time.Millisecond)
	assert.Equal(t, "57P01", sqlState(err), "the upstream's FATAL is relayed: %v", err)
}

func TestCredentialsUnavailable(t *testing.T) {
	t.Parallel()
	src := &revocableSource{done: make(chan struct{}), fail: true}
	e := newEnvWith(t, envOpts{}, func(e *env) creds.Source { src.inner = e.src; return src })
	_, err := pgx.Connect(context.Background(), e.dsn("analyst-bot"))
	require.Error(t, err)
	assert.Equal(t, "08001", sqlState(err))
	assert.NotContains(t, err.Error(), "SECRETTOKEN")
	assert.NotContains(t, err.Error(), "vault")
}

func TestAgentRemovedFromPolicy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	c := e.connect(pgx.QueryExecModeCacheStatement)
	_, err := c.Exec(ctx, "SELECT 1")
	require.NoError(t, err)
	e.writePolicy(false) // without the agent
	require.NoError(t, e.g.ReloadPolicy())
	_, err = c.Exec(ctx, "SELECT 2")
	assert.Equal(t, "28000", sqlState(err), "err: %v", err)
}

// movedRole is the gateway's decider with the agent's role taken away
// on the test's word, without the reload that would also end the agent's
// sessions from outside: what the session's own check (checkAgent) sees.
// With epochs, the move comes with a new epoch, as a reload's would.
type movedRole struct {
	sqlpolicy.EpochDecider
	moved atomic.Bool
}

func (m *movedRole) move() { m.moved.Store(true) }

func (m *movedRole) Role(agent string) (string, string, bool) {
	if m.moved.Load() {
		return "", "", false
	}
	return m.EpochDecider.Role(agent)
}

func (m *movedRole) bump() uint64 {
	if m.moved.Load() {
		return 1 << 40
	}
	return 0
}

func (m *movedRole) Epoch() uint64 { return m.EpochDecider.Epoch() + m.bump() }

func (m *movedRole) CheckEpoch(p sqlpolicy.Principal, sql string, s sqlpolicy.Session) (*sqlpolicy.Decision, *sqlpolicy.Access, uint64) {
	d, a, e := m.EpochDecider.CheckEpoch(p, sql, s)
	if e != 0 {
		e += m.bump()
	}
	return d, a, e
}

// noEpochs hides a decider's epochs.
type noEpochs struct{ sqlpolicy.Decider }

// TestRoleMovedEndsSession: a session whose agent no longer maps to its
// role ends at its next statement (28000), through the simple and the
// extended protocol, after statements that found the role in place —
// with a decider whose epoch moves with the role, and with one that has
// no epochs (the role is then looked up at every read).
func TestRoleMovedEndsSession(t *testing.T) {
	t.Parallel()
	for _, epochs := range []bool{true, false} {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
			t.Run(fmt.Sprintf("epochs=%v/%v", epochs, mode), func(t *testing.T) {
				t.Parallel()
				var m *movedRole
				e := newEnv(t, envOpts{decider: func(d sqlpolicy.Decider) sqlpolicy.Decider {
					ed, ok := d.(sqlpolicy.EpochDecider)
					require.True(t, ok, "the gateway's decider has epochs")
					m = &movedRole{EpochDecider: ed}
					if !epochs {
						return noEpochs{m}
					}
					return m
				}})
				ctx := context.Background()
				c := e.connect(mode)
				for i := range 3 {
					_, err := c.Exec(ctx, "SELECT $1::int", i)
					require.NoError(t, err)
				}
				m.move()
				_, err := c.Exec(ctx, "SELECT $1::int", 4)
				assert.Equal(t, "28000", sqlState(err), "err: %v", err)
			})
		}
	}
}

func TestTokenExpiryEndsSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	// Tokens carry whole seconds; the identity leeway does not extend
	// the session, only verification.
	cfg, err := pgx.ParseConfig("postgres://analyst-bot:" + e.signer("analyst-bot", 2*time.Second) + "@" + e.addr + "/" + e.db.Name + "?sslmode=disable")
	require.NoError(t, err)
	c, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	defer c.Close(ctx)
	require.Eventually(t, func() bool {
		_, err = c.Exec(ctx, "SELECT 1")
		return err != nil
	}, 10*time.Second, 100*time.Millisecond)
	assert.Equal(t, "28000", sqlState(err), "err: %v", err)
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	var logs fixture.SyncBuffer
	e := newEnv(t, envOpts{
		// Long enough that the gap between the login and the query
		// below stays under it on a loaded machine (the session must not
		// be idle before the query is sent).
		limits: config.Limits{IdleTimeout: time.Second},
		logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	r := e.raw(t)
	r.login(e, "analyst-bot")
	// A statement that outlasts the idle timeout is not idle: the idle
	// timer fires while it waits for the lock, and the session goes on.
	release := e.lockOrders()
	r.fe.Send(&pgproto3.Query{String: "SELECT count(*) FROM orders"})
	require.NoError(t, r.fe.Flush())
	require.Eventually(t, func() bool { return e.waiting() == 1 }, 5*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "idle timer: a request is in flight") },
		10*time.Second, 20*time.Millisecond)
	release()
	assert.Empty(t, errorsIn(r.until(&pgproto3.ReadyForQuery{})))
	// Then, with nothing in flight and nothing sent, the session ends.
	er, ok := r.recv().(*pgproto3.ErrorResponse)
	require.True(t, ok)
	assert.Equal(t, "57P05", er.Code)
	assert.Equal(t, "FATAL", er.Severity)
}

func TestMaxConns(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{limits: config.Limits{MaxConns: 2}})
	ctx := context.Background()
	e.connect(pgx.QueryExecModeSimpleProtocol)
	e.connect(pgx.QueryExecModeSimpleProtocol)
	_, err := pgx.Connect(ctx, e.dsn("analyst-bot"))
	assert.Equal(t, "53300", sqlState(err), "err: %v", err)
}

// One agent's sessions are bounded by max_conns_per_agent, so that an
// agent whose sessions leak leaves the others room; a session that ends
// frees its place.
func TestMaxConnsPerAgent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{limits: config.Limits{MaxConns: 10, MaxConnsPerAgent: 2}})
	ctx := context.Background()
	first := e.connect(pgx.QueryExecModeSimpleProtocol)
	e.connect(pgx.QueryExecModeSimpleProtocol)
	_, err := pgx.Connect(ctx, e.dsn("analyst-bot"))
	assert.Equal(t, "53300", sqlState(err), "err: %v", err)
	assert.ErrorContains(t, err, `too many connections for agent "analyst-bot"`)
	e.connectAs("scram-other", pgx.QueryExecModeSimpleProtocol) // another agent still gets in
	require.NoError(t, first.Close(ctx))
	require.Eventually(t, func() bool {
		c, err := pgx.Connect(ctx, e.dsn("analyst-bot"))
		if err == nil {
			_ = c.Close(ctx)
		}
		return err == nil
	}, 5*time.Second, 20*time.Millisecond, "the closed session's place is free")
}

// TestLoginFloodDoesNotLockAgentsOut: connections that never log in
// (here: never send a startup packet) count against max_startups, not
// max_conns, and a flood of them from one address only ever drops its
// own oldest, which get 53300.
func TestLoginFloodDoesNotLockAgentsOut(t *testing.T) {
	t.Parallel()
	m := &metrics{}
	e := newEnv(t, envOpts{limits: config.Limits{MaxConns: 2, MaxStartups: 4}, metrics: m})
	var flood []net.Conn
	for range 10 {
		nc, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
		require.NoError(t, err)
		t.Cleanup(func() { _ = nc.Close() })
		_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
		flood = append(flood, nc)
	}
	// Six were dropped to make room for the rest (which six depends on
	// the order the server took them in): each got the error.
	flood = droppedLogins(t, flood, 6)
	require.Len(t, flood, 4, "still logging in")
	// The flood holds every login slot and more sockets than max_conns,
	// and agents still log in, up to max_conns.
	a := e.connect(pgx.QueryExecModeSimpleProtocol)
	e.connect(pgx.QueryExecModeSimpleProtocol)
	var one int
	require.NoError(t, a.QueryRow(context.Background(), "SELECT 1").Scan(&one))
	_, err := pgx.Connect(context.Background(), e.dsn("analyst-bot"))
	assert.Equal(t, "53300", sqlState(err), "max_conns still holds: %v", err)
	// The first login dropped one of the flood's (its source held the
	// most); the later ones found the slot it freed once logged in.
	assert.Len(t, droppedLogins(t, flood, 1), 3, "still logging in")
	m.mu.Lock()
	assert.Equal(t, 7, m.dropped, "each drop is counted (keyhole_logins_dropped_total)")
	m.mu.Unlock()
}

// droppedLogins reads from each of conns, which have sent nothing, for a
// second, and checks that exactly want of them got the login gate's
// 53300; it returns the others (whose reads timed out).
func droppedLogins(t *testing.T, conns []net.Conn, want int) (waiting []net.Conn) {
	t.Helper()
	results := make([]error, len(conns))
	var wg sync.WaitGroup
	for i, nc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = nc.SetReadDeadline(time.Now().Add(time.Second))
			msg, err := pgproto3.NewFrontend(nc, nc).Receive()
			switch er, ok := msg.(*pgproto3.ErrorResponse); {
			case err != nil:
				results[i] = err
			case !ok:
				results[i] = fmt.Errorf("got %T", msg)
			case er.Code != "53300" || !strings.Contains(er.Message, "logging in"):
				results[i] = fmt.Errorf("got %s %s", er.Code, er.Message)
			}
		}()
	}
	wg.Wait()
	dropped := 0
	for i, err := range results {
		var ne net.Error
		switch {
		case err == nil:
			dropped++
		case errors.As(err, &ne) && ne.Timeout():
			_ = conns[i].SetReadDeadline(time.Time{})
			waiting = append(waiting, conns[i])
		default:
			t.Errorf("connection %d: %v", i, err)
		}
	}
	assert.Equal(t, want, dropped, "connections dropped")
	return waiting
}

func TestShutdown(t *testing.T) {
	t.Parallel()
	var logs fixture.SyncBuffer
	e := newEnv(t, envOpts{logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	ctx := context.Background()
	busy := e.connect(pgx.QueryExecModeCacheStatement)
	idle := e.connect(pgx.QueryExecModeSimpleProtocol)

	release := e.lockOrders()
	result := make(chan error, 1)
	go func() {
		var n int
		result <- busy.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n)
	}()
	require.Eventually(t, func() bool { return e.waiting() == 1 }, 5*time.Second, 20*time.Millisecond)
	shut := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		shut <- e.g.Shutdown(sctx)
	}()
	// The idle session is ended at once; new connections are refused.
	require.Eventually(t, func() bool {
		_, err := idle.Exec(ctx, "SELECT 1")
		return err != nil
	}, 5*time.Second, 20*time.Millisecond)
	_, err := pgx.Connect(ctx, e.dsn("analyst-bot"))
	assert.Error(t, err)
	// The busy session drains: its statement finishes once the lock goes
	// away.
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "draining") }, 5*time.Second, 20*time.Millisecond)
	release()
	require.NoError(t, <-result)
	require.NoError(t, <-shut)
	_, err = busy.Exec(ctx, "SELECT 1")
	assert.Error(t, err)
}

func TestShutdownIdleGets57P01(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	c := e.connect(pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, e.g.Shutdown(ctx))
	_, err := c.Exec(ctx, "SELECT 1")
	assert.Equal(t, "57P01", sqlState(err), "err: %v", err)
}

func TestShutdownDeadline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	busy := e.connect(pgx.QueryExecModeSimpleProtocol)
	e.lockOrders()
	result := make(chan error, 1)
	go func() {
		_, err := busy.Exec(ctx, "SELECT count(*) FROM orders")
		result <- err
	}()
	require.Eventually(t, func() bool { return e.waiting() == 1 }, 5*time.Second, 20*time.Millisecond)
	sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	err := e.g.Shutdown(sctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	err = <-result
	assert.Equal(t, "57P01", sqlState(err), "err: %v", err)
	// The upstream statement was cancelled, not left waiting.
	require.Eventually(t, func() bool { return e.waiting() == 0 }, 5*time.Second, 50*time.Millisecond)
}
