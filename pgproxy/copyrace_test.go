package pgproxy_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/pgproxy"
)

// A Sync the client sends after an Execute that starts COPY FROM STDIN,
// before the server's CopyInResponse reached it, is read by the server
// as COPY input and ignored: no ReadyForQuery comes for it. When the
// CopyInResponse is handled while that Sync is staged but not yet handed
// to the upstream side (a window of microseconds, held open here), the
// Sync must be dropped all the same, or the session waits for an answer
// that never comes and takes the next one for it.
func TestCopySyncStagedAtCopyInResponse(t *testing.T) {
	if testRelay == config.RelayLoop {
		t.Skip("a session on a loop reads the client and the upstream on one goroutine: there is no window")
	}
	e := newEnv(t, envOpts{})
	const app = "copy-sync-race"
	// The CopyInResponse is handled only once the Sync is staged, and the
	// Sync handed over only once the CopyInResponse was handled.
	var copyArrived, syncStaged atomic.Bool
	wait := func(cond func() bool) {
		for deadline := time.Now().Add(5 * time.Second); !cond() && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond) // a poll, inside a hook: cond has no channel to wait on
		}
	}
	pgproxy.SetCopyHooksForTest(app, func(copyIn func() bool) {
		if copyArrived.Load() && !syncStaged.Load() {
			syncStaged.Store(true)
			wait(copyIn)
		}
	}, func() {
		copyArrived.Store(true)
		wait(syncStaged.Load)
	})
	t.Cleanup(func() { pgproxy.SetCopyHooksForTest("", nil, nil) })

	r := e.raw(t)
	r.fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": "analyst-bot", "database": e.db.Name, "application_name": app}})
	require.NoError(t, r.fe.Flush())
	require.IsType(t, &pgproto3.AuthenticationCleartextPassword{}, r.recv())
	r.fe.Send(&pgproto3.PasswordMessage{Password: e.signer("analyst-bot", time.Hour)})
	require.NoError(t, r.fe.Flush())
	r.until(&pgproto3.ReadyForQuery{})

	r.fe.Send(&pgproto3.Parse{Query: "COPY orders FROM STDIN"})
	r.fe.Send(&pgproto3.Bind{})
	r.fe.Send(&pgproto3.Execute{})
	r.fe.Send(&pgproto3.Flush{})
	require.NoError(t, r.fe.Flush())
	wait(copyArrived.Load) // the Sync in a read of its own
	r.fe.Send(&pgproto3.Sync{})
	require.NoError(t, r.fe.Flush())
	for {
		m := r.recv()
		if _, ok := m.(*pgproto3.CopyInResponse); ok {
			break
		}
		require.NotContains(t, []string{"E", "Z"}, typeName(m), "%#v", m)
	}
	r.fe.Send(&pgproto3.CopyData{Data: []byte("500\tcopied\t1.5\n")})
	r.fe.Send(&pgproto3.CopyDone{})
	r.fe.Send(&pgproto3.Sync{})
	require.NoError(t, r.fe.Flush())
	msgs := r.until(&pgproto3.ReadyForQuery{})
	require.Empty(t, errorsIn(msgs))

	// In step: the next statement's answer is its own.
	r.fe.Send(&pgproto3.Query{String: "SELECT item FROM orders WHERE id = 500"})
	require.NoError(t, r.fe.Flush())
	var items []string
	for _, m := range r.until(&pgproto3.ReadyForQuery{}) {
		switch m := m.(type) {
		case *pgproto3.DataRow:
			items = append(items, string(m.Values[0]))
		case *pgproto3.ErrorResponse:
			t.Fatalf("error: %s %s", m.Code, m.Message)
		}
	}
	assert.Equal(t, []string{"copied"}, items)
}

// After the server fails a COPY FROM STDIN (a bad row), it ignores COPY
// messages up to the client's Sync, which it answers: that Sync is not
// one of those read as COPY input, and must stay owed.
func TestCopyFailedThenSync(t *testing.T) {
	e := newEnv(t, envOpts{})
	r := e.raw(t)
	r.login(e, "analyst-bot")
	r.fe.Send(&pgproto3.Parse{Query: "COPY orders FROM STDIN"})
	r.fe.Send(&pgproto3.Bind{})
	r.fe.Send(&pgproto3.Execute{})
	r.fe.Send(&pgproto3.Flush{})
	require.NoError(t, r.fe.Flush())
	for {
		m := r.recv()
		if _, ok := m.(*pgproto3.CopyInResponse); ok {
			break
		}
		require.NotContains(t, []string{"E", "Z"}, typeName(m), "%#v", m)
	}
	r.fe.Send(&pgproto3.CopyData{Data: []byte("not a number\tx\t1\n")})
	r.fe.Send(&pgproto3.Flush{})
	require.NoError(t, r.fe.Flush())
	er, ok := r.recv().(*pgproto3.ErrorResponse)
	require.True(t, ok)
	assert.Equal(t, "22P02", er.Code)
	r.fe.Send(&pgproto3.Sync{})
	require.NoError(t, r.fe.Flush())
	r.until(&pgproto3.ReadyForQuery{})

	r.fe.Send(&pgproto3.Query{String: "SELECT item FROM orders WHERE id = 2"})
	require.NoError(t, r.fe.Flush())
	var items []string
	for _, m := range r.until(&pgproto3.ReadyForQuery{}) {
		switch m := m.(type) {
		case *pgproto3.DataRow:
			items = append(items, string(m.Values[0]))
		case *pgproto3.ErrorResponse:
			t.Fatalf("error: %s %s", m.Code, m.Message)
		}
	}
	assert.Equal(t, []string{"item2"}, items)
}
