package mysqlproxy_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// revocable hands out the static upstream login with leases the test can
// end.
type revocable struct {
	user, pw string
	mu       sync.Mutex
	done     []chan struct{}
}

func (r *revocable) Acquire(context.Context, creds.Request) (*creds.Lease, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch := make(chan struct{})
	r.done = append(r.done, ch)
	return creds.NewLease(r.user, creds.NewSecret(r.pw), ch, nil, nil), nil
}

func (r *revocable) revokeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ch := range r.done {
		close(ch)
	}
	r.done = nil
}

func (r *revocable) Close() error { return nil }

// revokeAgent ends agent's sessions on the MySQL front end at once.
func (e *env) revokeAgent(agent string) int {
	e.t.Helper()
	r, ok := e.fe.(agentRevoker)
	require.True(e.t, ok, "the MySQL front end revokes agents")
	return r.RevokeAgent(agent)
}

func TestSessionEnds(t *testing.T) {
	t.Run("lease revoked", func(t *testing.T) {
		var src *revocable
		e := newEnv(t, envOpts{creds: func(e *env) creds.Source {
			src = &revocable{user: e.upUser, pw: e.upPW}
			return src
		}})
		r := e.dialRaw(t)
		r.login(e, "analyst-bot")
		src.revokeAll()
		num, state, msg, ok := sqlErr(r.read())
		require.True(t, ok)
		assert.EqualValues(t, 1053, num)
		assert.Equal(t, "08S01", state)
		assert.Contains(t, msg, "revoked")
		assert.True(t, r.closed())
	})
	e := newEnv(t, envOpts{limits: config.Limits{IdleTimeout: time.Second}})
	t.Run("RevokeAgent", func(t *testing.T) {
		r := e.dialRaw(t)
		r.login(e, "analyst-bot")
		require.Eventually(t, func() bool { return e.revokeAgent("analyst-bot") == 1 }, 5*time.Second, 10*time.Millisecond)
		num, _, _, ok := sqlErr(r.read())
		require.True(t, ok)
		assert.EqualValues(t, 1045, num)
		assert.True(t, r.closed())
	})
	t.Run("idle timeout", func(t *testing.T) {
		r := e.dialRaw(t)
		r.login(e, "analyst-bot")
		num, _, _, ok := sqlErr(r.read())
		require.True(t, ok)
		assert.EqualValues(t, 4031, num)
		assert.True(t, r.closed())
	})
	t.Run("agent leaves the policy", func(t *testing.T) {
		r := e.dialRaw(t)
		r.login(e, "analyst-bot")
		// A statement first: the session has found its role in place,
		// and the reload must still end it.
		selectOne(t, r)
		e.setAgents(t, "agents:\n  secret-bot: {role: analyst}\n")
		e.reload(t)
		requireAgentRefused(t, r)
	})
}

// selectOne runs SELECT 1 and requires its one row.
func selectOne(t *testing.T, r *rawClient) {
	t.Helper()
	rows, last := r.query("SELECT 1")
	require.NotEqual(t, byte(0xff), last[0], "SELECT 1: %q", last)
	assert.Equal(t, []string{"1"}, rows)
}

// requireAgentRefused sends a query and requires the session to end with
// the agent refused (1045, 28000).
func requireAgentRefused(t *testing.T, r *rawClient) {
	t.Helper()
	r.command(append([]byte{0x03}, "SELECT 1"...))
	num, state, _, ok := sqlErr(r.read())
	require.True(t, ok)
	assert.EqualValues(t, 1045, num)
	assert.Equal(t, "28000", state)
	assert.True(t, r.closed())
}

// movedRole is the gateway's decider with the agent's role taken away
// on the test's word, without the reload that would also end the agent's
// sessions from outside: what the session's own check (checkAgent) sees.
// With epochs, the move comes with a new epoch, as a reload's would.
type movedRole struct {
	sqlpolicy.EpochDecider
	moved atomic.Bool
}

func (m *movedRole) Role(agent string) (string, string, bool) {
	if m.moved.Load() {
		return "", "", false
	}
	return m.EpochDecider.Role(agent)
}

func (m *movedRole) Epoch() uint64 {
	if m.moved.Load() {
		return m.EpochDecider.Epoch() + 1<<40
	}
	return m.EpochDecider.Epoch()
}

// noEpochs hides a decider's epochs.
type noEpochs struct{ sqlpolicy.Decider }

// TestRoleMovedEndsSession: a session whose agent no longer maps to its
// role ends at its next command (1045, 28000), after commands that found
// the role in place — with a decider whose epoch moves with the role, and
// with one that has no epochs (the role is then looked up every time).
func TestRoleMovedEndsSession(t *testing.T) {
	for _, epochs := range []bool{true, false} {
		t.Run(fmt.Sprintf("epochs=%v", epochs), func(t *testing.T) {
			var m *movedRole
			e := newEnv(t, envOpts{decider: func(real sqlpolicy.Decider) sqlpolicy.Decider {
				ed, ok := real.(*decider).Decider.(sqlpolicy.EpochDecider)
				require.True(t, ok, "the gateway's decider has epochs")
				m = &movedRole{EpochDecider: ed}
				if !epochs {
					return noEpochs{m}
				}
				return m
			}})
			r := e.dialRaw(t)
			r.login(e, "analyst-bot")
			for range 3 {
				selectOne(t, r)
			}
			m.moved.Store(true)
			requireAgentRefused(t, r)
		})
	}
}

func TestMaxConns(t *testing.T) {
	e := newEnv(t, envOpts{limits: config.Limits{MaxConns: 1}})
	r1 := e.dialRaw(t)
	r1.login(e, "analyst-bot")
	// Sessions count once logged in: the second is refused in answer to
	// its handshake response.
	r2 := e.dialRaw(t)
	num, state, _, ok := sqlErr(r2.loginReply(e, "analyst-bot"))
	require.True(t, ok)
	assert.EqualValues(t, 1040, num)
	assert.Equal(t, "08004", state)
	assert.True(t, r2.closed())
}

// One agent's sessions are bounded by max_conns_per_agent (1203, as
// MariaDB past a user's max_user_connections); other agents still log in.
func TestMaxConnsPerAgent(t *testing.T) {
	e := newEnv(t, envOpts{limits: config.Limits{MaxConns: 10, MaxConnsPerAgent: 1}})
	r1 := e.dialRaw(t)
	r1.login(e, "analyst-bot")
	num, state, msg, ok := sqlErr(e.dialRaw(t).loginReply(e, "analyst-bot"))
	require.True(t, ok)
	assert.EqualValues(t, 1203, num)
	assert.Equal(t, "42000", state)
	assert.Contains(t, msg, "analyst-bot")
	other := e.dialRaw(t)
	other.login(e, "other-bot")
}

// TestLoginFloodDoesNotLockAgentsOut: connections that never log in
// (here: never answer the greeting) count against max_startups, not
// max_conns, and a flood of them from one address only ever drops its
// own oldest.
func TestLoginFloodDoesNotLockAgentsOut(t *testing.T) {
	e := newEnv(t, envOpts{limits: config.Limits{MaxConns: 2, MaxStartups: 4}})
	var flood []*rawClient
	for range 10 {
		r := e.dialRaw(t)
		r.greeting()
		flood = append(flood, r)
	}
	// The first six were dropped, with 1040, to make room for the rest.
	for i, r := range flood[:6] {
		num, _, msg, ok := sqlErr(r.read())
		require.True(t, ok, "flood connection %d", i)
		assert.EqualValues(t, 1040, num)
		assert.Contains(t, msg, "logging in")
	}
	// The flood holds every login slot and more sockets than max_conns,
	// and agents still log in, up to max_conns.
	a := e.dialRaw(t)
	a.login(e, "analyst-bot")
	b := e.dialRaw(t)
	b.login(e, "analyst-bot")
	rows, last := a.query("SELECT 1")
	assert.NotEqual(t, byte(0xff), last[0], "the session works: %q", last)
	assert.Equal(t, []string{"1"}, rows)
	// The first login dropped the flood's oldest (its source held the
	// most); the second found the slot the first freed once logged in.
	num, _, _, ok := sqlErr(flood[6].read())
	require.True(t, ok)
	assert.EqualValues(t, 1040, num)
	for _, r := range flood[7:] {
		_ = r.nc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		var one [1]byte
		_, err := r.nc.Read(one[:])
		var ne net.Error
		assert.True(t, errors.As(err, &ne) && ne.Timeout(), "still logging in: %v", err)
	}
}

func TestShutdown(t *testing.T) {
	e := newEnv(t, envOpts{})
	idle := e.dialRaw(t)
	idle.login(e, "analyst-bot")
	inTx := e.dialRaw(t)
	inTx.login(e, "analyst-bot")
	_, last := inTx.query("START TRANSACTION")
	require.Equal(t, byte(0), last[0])

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- e.g.Shutdown(ctx)
	}()
	// The idle session ends at once with 1053.
	num, _, _, ok := sqlErr(idle.read())
	require.True(t, ok)
	assert.EqualValues(t, 1053, num)
	// The one in a transaction may finish it, then ends.
	rows, _ := inTx.query("SELECT 1")
	assert.Equal(t, []string{"1"}, rows)
	_, last = inTx.query("COMMIT")
	require.Equal(t, byte(0), last[0])
	num, _, _, ok = sqlErr(inTx.read())
	require.True(t, ok)
	assert.EqualValues(t, 1053, num)
	require.NoError(t, <-done)
}

func TestPanicEndsOnlyItsConnection(t *testing.T) {
	e := newEnv(t, envOpts{decider: func(d sqlpolicy.Decider) sqlpolicy.Decider { return panicky{d} }})
	other := e.dialRaw(t)
	other.login(e, "analyst-bot")
	r := e.dialRaw(t)
	r.login(e, "analyst-bot")
	r.command(append([]byte{0x03}, "PANIC"...))
	num, _, _, ok := sqlErr(r.read())
	require.True(t, ok)
	assert.EqualValues(t, 1105, num)
	assert.True(t, r.closed())
	r2 := e.dialRaw(t)
	r2.login(e, "analyst-bot")
	rows, _ := r2.query("SELECT 1")
	assert.Equal(t, []string{"1"}, rows)
	rows, _ = other.query("SELECT 1")
	assert.Equal(t, []string{"1"}, rows)
}

func TestUpstreamLost(t *testing.T) {
	e := newEnv(t, envOpts{})
	r := e.dialRaw(t)
	r.login(e, "analyst-bot")
	rows, _ := r.query("SELECT CONNECTION_ID()")
	require.Len(t, rows, 1)
	// keyhole's connection id (the greeting's) is its own, not the upstream's.
	assert.NotEqual(t, fmt.Sprint(r.connID), rows[0])
	_, err := e.direct().Exec("KILL " + rows[0])
	require.NoError(t, err)
	_, last := r.query("SELECT 1")
	assertErr(t, last, 1105, "HY000")
	assert.True(t, r.closed())
}

// TestShutdownDeadline: a statement still running at the deadline is
// killed upstream and its session ends with 1053.
func TestShutdownDeadline(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.lockTable("big")
	const q = "SELECT id FROM big LIMIT 1"
	r := e.dialRaw(t)
	r.login(e, "analyst-bot")
	r.command(append([]byte{0x03}, q...))
	require.Eventually(t, func() bool { return e.running(q) == 1 }, 10*time.Second, 20*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, e.g.Shutdown(ctx), context.DeadlineExceeded)
	num, _, _, ok := sqlErr(r.read())
	require.True(t, ok)
	assert.EqualValues(t, 1053, num)
	assert.True(t, r.closed())
	assert.Eventually(t, func() bool { return e.running(q) == 0 }, 10*time.Second, 50*time.Millisecond, "the statement still runs upstream")
}
