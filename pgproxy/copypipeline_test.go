package pgproxy_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMessagesPipelinedIntoCopyIn: messages a client sends after a
// statement that starts COPY FROM STDIN, before its CopyDone, are read by
// Postgres as part of the COPY: it ignores a Sync there (no ReadyForQuery
// for it), and fails the COPY and the session on anything else (FATAL
// 08P01). keyhole queued an answer to the Sync that never came: the next
// ReadyForQuery was matched to it and the session ended with "upstream
// protocol error"; and a Query pipelined so left the server's FATAL
// unread, the client waiting for good.
func TestMessagesPipelinedIntoCopyIn(t *testing.T) {
	e := newEnv(t, envOpts{})
	copySQL := "COPY orders (id, item, amount) FROM STDIN"
	t.Run("simple Query, Sync inside the data", func(t *testing.T) {
		r := e.raw(t)
		r.login(e, "analyst-bot")
		r.fe.Send(&pgproto3.Query{String: copySQL})
		r.fe.Send(&pgproto3.CopyData{Data: []byte("8101\tpipelined\t1\n")})
		r.fe.Send(&pgproto3.Sync{}) // ignored by the server
		r.fe.Send(&pgproto3.CopyDone{})
		require.NoError(t, r.fe.Flush())
		assert.Equal(t, []string{"C", "Z:I"}, r.kinds(), "as from Postgres: the COPY's answer only")
		assert.Equal(t, []string{"T", "D", "C", "Z:I"}, r.query("SELECT 2"))
	})
	t.Run("extended, Sync before the data", func(t *testing.T) {
		r := e.raw(t)
		r.login(e, "analyst-bot")
		r.fe.Send(&pgproto3.Parse{Query: copySQL})
		r.fe.Send(&pgproto3.Bind{})
		r.fe.Send(&pgproto3.Execute{})
		r.fe.Send(&pgproto3.Sync{}) // ignored by the server
		require.NoError(t, r.fe.Flush())
		for {
			if _, ok := r.recv().(*pgproto3.CopyInResponse); ok {
				break
			}
		}
		r.fe.Send(&pgproto3.CopyData{Data: []byte("8102\tpipelined\t1\n")})
		r.fe.Send(&pgproto3.CopyDone{})
		r.fe.Send(&pgproto3.Sync{})
		require.NoError(t, r.fe.Flush())
		assert.Equal(t, []string{"C", "Z:I"}, r.kinds())
		assert.Equal(t, []string{"T", "D", "C", "Z:I"}, r.query("SELECT 2"))
	})
	// (keyhole took the COPY to wait for the client's data when its
	// CopyInResponse came after the client goroutine had forwarded the
	// CopyDone: the answers after it were left unread and the next Query
	// was refused as a message inside COPY.)
	t.Run("extended, data, end and Sync pipelined", func(t *testing.T) {
		r := e.raw(t)
		r.login(e, "analyst-bot")
		r.fe.Send(&pgproto3.Parse{Query: copySQL})
		r.fe.Send(&pgproto3.Bind{})
		r.fe.Send(&pgproto3.Execute{})
		r.fe.Send(&pgproto3.CopyData{Data: []byte("8103\tpipelined\t1\n")})
		r.fe.Send(&pgproto3.CopyDone{})
		r.fe.Send(&pgproto3.Sync{})
		require.NoError(t, r.fe.Flush())
		assert.Equal(t, []string{"C", "Z:I"}, r.kinds())
		assert.Equal(t, []string{"T", "D", "C", "Z:I"}, r.query("SELECT 2"))
	})
	t.Run("Query pipelined behind the COPY", func(t *testing.T) {
		r := e.raw(t)
		r.login(e, "analyst-bot")
		r.fe.Send(&pgproto3.Query{String: copySQL})
		r.fe.Send(&pgproto3.Query{String: "SELECT 1"})
		require.NoError(t, r.fe.Flush())
		var fatal *pgproto3.ErrorResponse
		for fatal == nil {
			if m, ok := r.recv().(*pgproto3.ErrorResponse); ok && m.Severity == "FATAL" {
				fatal = m
			}
		}
		assert.Equal(t, "08P01", fatal.Code)
		_, err := r.fe.Receive()
		assert.Error(t, err, "the session is closed")
	})
	var n int
	require.NoError(t, e.direct().QueryRow(t.Context(), "SELECT count(*) FROM orders WHERE item = 'pipelined'").Scan(&n))
	assert.Equal(t, 3, n)
}
