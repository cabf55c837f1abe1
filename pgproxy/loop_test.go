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
