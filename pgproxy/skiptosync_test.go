package pgproxy_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestQueryAfterFailedExtendedMessage: once an extended message fails,
// Postgres discards every message up to the next Sync, a simple Query
// included, and answers none of them. keyhole waits for none of them
// either: the Sync that follows is read and answered, and a protocol
// violation in its place ends the session. (keyhole read the server for
// the Query's answer, no longer reading the client: the session hung, and
// held Shutdown up.)
func TestQueryAfterFailedExtendedMessage(t *testing.T) {
	e := newEnv(t, envOpts{})
	failing := func(r *rawClient) {
		r.fe.Send(&pgproto3.Parse{Query: "SELECT 1/0"})
		r.fe.Send(&pgproto3.Bind{})
		r.fe.Send(&pgproto3.Execute{})
		r.fe.Send(&pgproto3.Query{String: "SELECT 1"}) // discarded by the server
	}
	t.Run("then Sync", func(t *testing.T) {
		r := e.raw(t)
		r.login(e, "analyst-bot")
		failing(r)
		r.fe.Send(&pgproto3.Sync{})
		r.fe.Send(&pgproto3.Query{String: "SELECT 2"})
		require.NoError(t, r.fe.Flush())
		assert.Equal(t, []string{"E:22012", "Z:I"}, r.kinds(), "as from Postgres: the error, then the Sync's answer")
		assert.Equal(t, []string{"T", "D", "C", "Z:I"}, r.kinds())
	})
	t.Run("then a protocol violation", func(t *testing.T) {
		r := e.raw(t)
		r.login(e, "analyst-bot")
		failing(r)
		require.NoError(t, r.fe.Flush())
		_, err := r.conn.Write([]byte("P\x00\x00\x00\x00")) // a length shorter than itself
		require.NoError(t, err)
		var fatal *pgproto3.ErrorResponse
		for fatal == nil {
			if m, ok := r.recv().(*pgproto3.ErrorResponse); ok && m.Severity == "FATAL" {
				fatal = m
			}
		}
		assert.Equal(t, "08P01", fatal.Code)
		_, err = r.fe.Receive()
		assert.Error(t, err, "the session is closed")
	})
}
