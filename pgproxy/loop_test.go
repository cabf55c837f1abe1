package pgproxy_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/internal/fixture"
)

// On a loop, a Bind of the unnamed portal reuses the object of the
// closed one. The new portal shadows nothing: an Execute of it in the
// next sync block, sent before the Bind is answered, is forwarded from the
// loop (a name that may still hold an older object upstream would send the
// session to the goroutine relay to wait for the Bind's answer). The
// server answers that Execute as Postgres does: the first block's implicit
// transaction dropped the portal.
func TestLoopReusedUnnamedPortal(t *testing.T) {
	if testRelay != config.RelayLoop {
		t.Skip("loop relay only")
	}
	t.Parallel()
	var logs fixture.SyncBuffer
	e := newEnv(t, envOpts{logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	r := e.raw(t)
	r.login(e, "analyst-bot")
	bind := &pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte("7")}}
	r.fe.Send(&pgproto3.Parse{Name: "s", Query: "SELECT item FROM orders WHERE id = $1"})
	r.fe.Send(bind)
	r.fe.Send(&pgproto3.Execute{})
	r.fe.Send(&pgproto3.Sync{})
	require.NoError(t, r.fe.Flush())
	require.Empty(t, errorsIn(r.until(&pgproto3.ReadyForQuery{})))
	// The session moves to a loop once everything is answered.
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "relay: on an event loop") },
		10*time.Second, 10*time.Millisecond)
	left := strings.Count(logs.String(), "relay: back on a goroutine")

	r.fe.Send(bind)
	r.fe.Send(&pgproto3.Sync{})
	r.fe.Send(&pgproto3.Execute{})
	r.fe.Send(&pgproto3.Sync{})
	require.NoError(t, r.fe.Flush())
	assert.Empty(t, errorsIn(r.until(&pgproto3.ReadyForQuery{})))
	errs := errorsIn(r.until(&pgproto3.ReadyForQuery{}))
	require.Len(t, errs, 1)
	assert.Equal(t, "34000", errs[0].Code, "%s", errs[0].Message)
	assert.Equal(t, left, strings.Count(logs.String(), "relay: back on a goroutine"), "logs:\n%s", logs.String())
}

// loopEnv is a loop relay's env whose log records the session's moves to a loop.
func loopEnv(t *testing.T, limits config.Limits) (*env, *fixture.SyncBuffer) {
	t.Helper()
	if testRelay != config.RelayLoop {
		t.Skip("loop relay only")
	}
	var logs fixture.SyncBuffer
	limits.Relay = config.RelayLoop
	e := newEnv(t, envOpts{limits: limits, logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	return e, &logs
}

const movedToLoop = "relay: on an event loop"

// pointRead runs a point read and returns the errors it got.
func pointRead(r *rawClient) []*pgproto3.ErrorResponse {
	r.t.Helper()
	r.fe.Send(&pgproto3.Query{String: "SELECT item FROM orders WHERE id = 7"})
	require.NoError(r.t, r.fe.Flush())
	return errorsIn(r.until(&pgproto3.ReadyForQuery{}))
}

// A client that sends its next message within limits.loop_wait of each
// answer is served on the session's goroutine for its first quiet points:
// one that connects for a few statements never pays the move to a loop
// and back.
func TestYoungSessionStaysOnItsGoroutine(t *testing.T) {
	t.Parallel()
	e, logs := loopEnv(t, config.Limits{LoopWait: time.Minute})
	r := e.raw(t)
	r.login(e, "analyst-bot")
	for range 3 {
		require.Empty(t, pointRead(r))
	}
	// The session waits at its quiet point for a minute: it has not moved.
	assert.NotContains(t, logs.String(), movedToLoop)
	r.fe.Send(&pgproto3.Terminate{})
	require.NoError(t, r.fe.Flush())
	_, err := r.fe.Receive()
	require.Error(t, err, "the session ends")
	assert.NotContains(t, logs.String(), movedToLoop)
}

// A young session whose client pauses longer than loop_wait moves to a
// loop (no goroutine waits for an idle client), and so does one past its
// young quiet points however quick its client.
func TestYoungSessionMovesToALoop(t *testing.T) {
	t.Parallel()
	t.Run("pause", func(t *testing.T) {
		t.Parallel()
		e, logs := loopEnv(t, config.Limits{LoopWait: 20 * time.Millisecond})
		r := e.raw(t)
		r.login(e, "analyst-bot")
		require.Eventually(t, func() bool { return strings.Contains(logs.String(), movedToLoop) }, 10*time.Second, 5*time.Millisecond)
		assert.Empty(t, pointRead(r))
	})
	t.Run("busy", func(t *testing.T) {
		t.Parallel()
		e, logs := loopEnv(t, config.Limits{LoopWait: time.Minute})
		r := e.raw(t)
		r.login(e, "analyst-bot")
		// More statements than a session has young quiet points (8).
		for range 12 {
			require.Empty(t, pointRead(r))
		}
		require.Eventually(t, func() bool { return strings.Contains(logs.String(), movedToLoop) }, 10*time.Second, 5*time.Millisecond)
		assert.Empty(t, pointRead(r))
	})
}

// A session stopped while its goroutine waits for the client (here by the
// idle timeout) ends then: the wait's deadline does not undo the stop's.
func TestYoungSessionStoppedWhileWaiting(t *testing.T) {
	t.Parallel()
	e, logs := loopEnv(t, config.Limits{LoopWait: time.Minute, IdleTimeout: 300 * time.Millisecond})
	r := e.raw(t)
	r.login(e, "analyst-bot")
	// Well within the young wait: an answer only after it would come
	// from the loop, not from the stop.
	require.NoError(t, r.conn.SetReadDeadline(time.Now().Add(20*time.Second)))
	er, ok := r.recv().(*pgproto3.ErrorResponse)
	require.True(t, ok)
	assert.Equal(t, "57P05", er.Code)
	assert.NotContains(t, logs.String(), movedToLoop)
}
