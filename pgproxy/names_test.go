package pgproxy_test

import (
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/pgproxy"
)

// A session may hold at most Limits.MaxNames named prepared statements,
// and as many named portals and cursors (keyhole keeps a few hundred
// bytes for each, so an unbounded session could take the heap): one more
// is refused with 54000 like any refused message, and the session goes
// on in step with the server.
func TestNamedObjectsBounded(t *testing.T) {
	e := newEnv(t, envOpts{})
	r := e.raw(t)
	r.login(e, "analyst-bot")
	max := pgproxy.DefaultMaxNames

	// batch sends msgs and Sync, and returns the errors of the block.
	batch := func(msgs ...pgproto3.FrontendMessage) []*pgproto3.ErrorResponse {
		t.Helper()
		for _, m := range msgs {
			r.fe.Send(m)
		}
		r.fe.Send(&pgproto3.Sync{})
		require.NoError(t, r.fe.Flush())
		return errorsIn(r.until(&pgproto3.ReadyForQuery{}))
	}
	query := func(sql string) []*pgproto3.ErrorResponse {
		t.Helper()
		r.fe.Send(&pgproto3.Query{String: sql})
		require.NoError(t, r.fe.Flush())
		return errorsIn(r.until(&pgproto3.ReadyForQuery{}))
	}
	refused := func(errs []*pgproto3.ErrorResponse) {
		t.Helper()
		require.Len(t, errs, 1)
		assert.Equal(t, "54000", errs[0].Code, errs[0].Message)
		assert.Contains(t, errs[0].Message, fmt.Sprint(max))
	}
	for i := 0; i < max; i += 500 {
		var msgs []pgproto3.FrontendMessage
		for j := i; j < i+500; j++ {
			msgs = append(msgs, &pgproto3.Parse{Name: fmt.Sprintf("s%d", j), Query: "SELECT id FROM orders WHERE id = $1"})
		}
		require.Empty(t, batch(msgs...))
	}
	refused(batch(&pgproto3.Parse{Name: "one-more", Query: "SELECT 1"}))
	// The unnamed statement is not counted; a name held is re-created.
	require.Empty(t, batch(&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}))
	require.Empty(t, batch(&pgproto3.Close{ObjectType: 'S', Name: "s0"}))
	require.Empty(t, batch(&pgproto3.Parse{Name: "one-more", Query: "SELECT 1"}))
	refused(batch(&pgproto3.Parse{Name: "s0", Query: "SELECT 1"}))

	// Portals, in a transaction (they end with it).
	require.Empty(t, query("BEGIN"))
	for i := 0; i < max; i += 500 {
		var msgs []pgproto3.FrontendMessage
		for j := i; j < i+500; j++ {
			msgs = append(msgs, &pgproto3.Bind{DestinationPortal: fmt.Sprintf("p%d", j), PreparedStatement: "s1", Parameters: [][]byte{[]byte("1")}})
		}
		require.Empty(t, batch(msgs...))
	}
	refused(batch(&pgproto3.Bind{DestinationPortal: "one-more", PreparedStatement: "s1", Parameters: [][]byte{[]byte("1")}}))
	require.Empty(t, query("ROLLBACK"))
	require.Empty(t, query("BEGIN"))
	for i := 0; i < max; i += 500 {
		var msgs []pgproto3.FrontendMessage
		for j := i; j < i+500; j++ {
			msgs = append(msgs, &pgproto3.Bind{DestinationPortal: fmt.Sprintf("p%d", j), PreparedStatement: "s1", Parameters: [][]byte{[]byte("1")}})
		}
		require.Empty(t, batch(msgs...))
	}
	refused(query("DECLARE c CURSOR FOR SELECT id FROM orders"))
	require.Empty(t, query("ROLLBACK"))
	require.Empty(t, query("BEGIN"))
	require.Empty(t, query("DECLARE c CURSOR FOR SELECT id FROM orders"))
	require.Empty(t, query("COMMIT"))

	// In step with the server.
	r.fe.Send(&pgproto3.Query{String: "SELECT id FROM orders WHERE id = 3"})
	require.NoError(t, r.fe.Flush())
	var rows int
	for _, m := range r.until(&pgproto3.ReadyForQuery{}) {
		switch m := m.(type) {
		case *pgproto3.DataRow:
			rows++
			assert.Equal(t, "3", string(m.Values[0]))
		case *pgproto3.ErrorResponse:
			t.Fatalf("error: %s", m.Message)
		}
	}
	assert.Equal(t, 1, rows)
}
