package pgproxy_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"
)

// panicCounter is a slog handler that counts records mentioning a panic,
// since a recovered panic only shows in the log.
type panicCounter struct {
	slog.Handler
	n *atomic.Int64
}

func (h panicCounter) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		h.n.Add(1)
	}
	return nil
}

func (h panicCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h panicCounter) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h panicCounter) WithGroup(string) slog.Handler            { return h }

// drain reads everything the server sends until it closes the connection,
// failing if that takes longer than a few seconds (a hang).
func drain(t *testing.T, nc net.Conn) []byte {
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(nc)
	if errors.Is(err, syscall.ECONNRESET) {
		// The server closed with our unread input still queued: a close.
		return b
	}
	require.NoError(t, err, "server did not close the connection")
	return b
}

func encode(msgs ...interface{ Encode([]byte) ([]byte, error) }) []byte {
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			panic(err)
		}
	}
	return b
}

func FuzzClientMessages(f *testing.F) {
	f.Add(encode(&pgproto3.Query{String: "SELECT 1"}))
	f.Add(encode(&pgproto3.Query{String: "SELECT * FROM secrets"}))
	f.Add(encode(&pgproto3.Parse{Name: "s", Query: "SELECT $1::int"}, &pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte("1")}}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}))
	f.Add(encode(&pgproto3.Parse{Query: "SELECT * FROM secrets"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{}, &pgproto3.Sync{}))
	f.Add(encode(&pgproto3.Query{String: "COPY orders (id, item, amount) FROM STDIN"}, &pgproto3.CopyData{Data: []byte("900\tx\t1\n")}, &pgproto3.CopyDone{}))
	f.Add(encode(&pgproto3.FunctionCall{Function: 1}, &pgproto3.Query{String: "BEGIN"}, &pgproto3.Close{ObjectType: 'S'}, &pgproto3.Sync{}))
	// Refusals, a pipelined Query after an error, cursors used as portals.
	f.Add(encode(&pgproto3.Parse{Query: "SELECT 1/0"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Query{String: "SELECT 1"},
		&pgproto3.Bind{PreparedStatement: "nope"}, &pgproto3.Sync{}, &pgproto3.Query{String: "SELECT 2"}))
	f.Add(encode(&pgproto3.Query{String: "BEGIN; DECLARE c CURSOR FOR SELECT id FROM orders"}, &pgproto3.Describe{ObjectType: 'P', Name: "c"},
		&pgproto3.Execute{Portal: "c", MaxRows: 2}, &pgproto3.Close{ObjectType: 'P', Name: "c"}, &pgproto3.Sync{}, &pgproto3.Query{String: "COMMIT"}))
	f.Add(encode(&pgproto3.Parse{Name: "s", Query: "SELECT 1"}, &pgproto3.Sync{}, &pgproto3.Parse{Name: "s", Query: "SELECT 2"}, &pgproto3.Sync{},
		&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Sync{}))
	f.Add([]byte("X\x00\x00\x00\x04"))
	f.Add([]byte("Q\x00\x00\x00\x03"))
	f.Add([]byte("p\x00\x00\x00\x08abcd"))
	addDeepSeeds(f)

	var panics atomic.Int64
	e := newEnv(f, envOpts{logger: slog.New(panicCounter{n: &panics})})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := e.raw(t)
		r.login(e, "analyst-bot")
		_, _ = r.conn.Write(data)
		// End of input: the server must answer what it got and close.
		_ = r.conn.(*net.TCPConn).CloseWrite()
		drain(t, r.conn)
		require.Zero(t, panics.Load(), "a connection panicked")
	})
}

// FuzzClientMessagesMaxRows is FuzzClientMessages under a max_rows cap
// the seeds' results pass: the cut, its cancel and what is pipelined
// behind it.
func FuzzClientMessagesMaxRows(f *testing.F) {
	addDeepSeeds(f)
	var panics atomic.Int64
	e := newEnv(f, envOpts{maxRows: 3, logger: slog.New(panicCounter{n: &panics})})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := e.raw(t)
		r.login(e, "analyst-bot")
		_, _ = r.conn.Write(data)
		_ = r.conn.(*net.TCPConn).CloseWrite()
		drain(t, r.conn)
		require.Zero(t, panics.Load(), "a connection panicked")
	})
}

// addDeepSeeds adds inputs that reach protocol states a mutation finds
// slowly: COPY FROM STDIN with messages pipelined into it, ended by
// CopyFail, an error, Terminate or the input's end; cursors and
// savepoints; row-limited portals across Syncs; Describe and Close
// pipelined; Flush without Sync; Terminate mid-pipeline.
func addDeepSeeds(f *testing.F) {
	copyIn := "COPY orders (id, item, amount) FROM STDIN"
	row := &pgproto3.CopyData{Data: []byte("901\tx\t1\n")}
	bad := &pgproto3.CopyData{Data: []byte("bad\n")}
	f.Add(encode(&pgproto3.Query{String: copyIn}, row, &pgproto3.Sync{}, &pgproto3.Flush{}, &pgproto3.CopyDone{}, &pgproto3.Query{String: "SELECT 1"}))
	f.Add(encode(&pgproto3.Parse{Query: copyIn}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}, row, bad, &pgproto3.CopyDone{}, &pgproto3.Sync{}, &pgproto3.Query{String: "SELECT 1"}))
	f.Add(encode(&pgproto3.Parse{Query: copyIn}, &pgproto3.Bind{}, &pgproto3.Execute{}, row, &pgproto3.CopyDone{}, &pgproto3.Sync{}, &pgproto3.Query{String: "SELECT 1"}))
	f.Add(encode(&pgproto3.Query{String: copyIn}, row, &pgproto3.CopyFail{Message: "no"}, &pgproto3.Query{String: "SELECT 1"}))
	f.Add(encode(&pgproto3.Query{String: copyIn}, &pgproto3.Query{String: "SELECT 1"}))
	f.Add(encode(&pgproto3.Query{String: copyIn}, row, &pgproto3.Terminate{}))
	f.Add(encode(&pgproto3.Query{String: copyIn}, row))
	f.Add(encode(&pgproto3.Query{String: "COPY orders TO STDOUT"}, &pgproto3.Parse{Query: "COPY orders TO STDOUT"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}))
	f.Add(encode(&pgproto3.Query{String: "BEGIN; DECLARE c CURSOR WITH HOLD FOR SELECT id FROM orders; SAVEPOINT a"}, &pgproto3.Query{String: "FETCH 2 FROM c"},
		&pgproto3.Query{String: "ROLLBACK TO a; FETCH 5 FROM c"}, &pgproto3.Query{String: "COMMIT"}, &pgproto3.Execute{Portal: "c", MaxRows: 4}, &pgproto3.Sync{}))
	f.Add(encode(&pgproto3.Query{String: "BEGIN"}, &pgproto3.Parse{Query: "SELECT id FROM orders"}, &pgproto3.Bind{DestinationPortal: "p"}, &pgproto3.Execute{Portal: "p", MaxRows: 2},
		&pgproto3.Sync{}, &pgproto3.Execute{Portal: "p", MaxRows: 2}, &pgproto3.Sync{}, &pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{}, &pgproto3.Query{String: "COMMIT"}))
	f.Add(encode(&pgproto3.Parse{Name: "s", Query: "SELECT id FROM orders"}, &pgproto3.Describe{ObjectType: 'S', Name: "s"}, &pgproto3.Bind{PreparedStatement: "s", DestinationPortal: "p"},
		&pgproto3.Describe{ObjectType: 'P', Name: "p"}, &pgproto3.Close{ObjectType: 'P', Name: "p"}, &pgproto3.Execute{Portal: "p"}, &pgproto3.Close{ObjectType: 'S', Name: "s"}, &pgproto3.Sync{}))
	f.Add(encode(&pgproto3.Parse{Query: "SELECT id FROM orders"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{}, &pgproto3.Parse{Query: "SELECT 1/0"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{}))
	f.Add(encode(&pgproto3.Parse{Query: "SELECT id FROM orders"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Terminate{}, &pgproto3.Sync{}))
	f.Add(encode(&pgproto3.Query{String: "SELECT 1; SELECT 1/0; SELECT 3"}, &pgproto3.Query{String: "BEGIN; SELECT 1/0"}, &pgproto3.Query{String: "ROLLBACK"}))
}

func FuzzStartup(f *testing.F) {
	f.Add(encode(&pgproto3.SSLRequest{}))
	f.Add(encode(&pgproto3.GSSEncRequest{}, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "a"}}))
	f.Add(encode(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "analyst-bot", "database": "x"}}, &pgproto3.PasswordMessage{Password: "nope"}))
	f.Add(encode(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "analyst-bot", "replication": "true"}}))
	f.Add(encode(&pgproto3.CancelRequest{ProcessID: 1, SecretKey: []byte{1, 2, 3, 4}}))
	f.Add([]byte{0, 0, 0, 8, 0, 3, 0, 2})
	f.Add([]byte{0, 0, 0, 9, 0, 3, 0, 0, 0})
	f.Add([]byte{0x16, 0x03, 0x01, 0x02, 0x00})

	var panics atomic.Int64
	e := newEnv(f, envOpts{logger: slog.New(panicCounter{n: &panics})})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := e.raw(t)
		_, _ = r.conn.Write(data)
		_ = r.conn.(*net.TCPConn).CloseWrite()
		drain(t, r.conn)
		require.Zero(t, panics.Load(), "a connection panicked")
	})
}
