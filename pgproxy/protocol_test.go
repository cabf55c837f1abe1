package pgproxy_test

import (
	"context"
	"database/sql"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/lib/pq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/audit"
)

// rawClient is a hand-driven protocol client for corners real drivers do
// not produce.
type rawClient struct {
	t    testing.TB
	conn net.Conn
	fe   *pgproto3.Frontend
}

func (e *env) raw(t testing.TB) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", e.addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawClient{t: t, conn: nc, fe: pgproto3.NewFrontend(nc, nc)}
}

// login runs startup and cleartext token authentication up to the first
// ReadyForQuery.
func (r *rawClient) login(e *env, agent string) {
	r.t.Helper()
	r.fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": agent, "database": e.db.Name}})
	require.NoError(r.t, r.fe.Flush())
	msg := r.recv()
	require.IsType(r.t, &pgproto3.AuthenticationCleartextPassword{}, msg)
	r.fe.Send(&pgproto3.PasswordMessage{Password: e.signer(agent, time.Hour)})
	require.NoError(r.t, r.fe.Flush())
	r.until(&pgproto3.ReadyForQuery{})
}

func (r *rawClient) recv() pgproto3.BackendMessage {
	r.t.Helper()
	msg, err := r.fe.Receive()
	require.NoError(r.t, err)
	return msg
}

// until receives messages up to one of want's type and returns the
// messages seen, including it.
func (r *rawClient) until(want pgproto3.BackendMessage) []pgproto3.BackendMessage {
	r.t.Helper()
	var seen []pgproto3.BackendMessage
	for {
		msg := r.recv()
		seen = append(seen, copyMsg(msg))
		if typeName(msg) == typeName(want) {
			return seen
		}
		if er, ok := msg.(*pgproto3.ErrorResponse); ok && er.Severity == "FATAL" {
			return seen
		}
	}
}

func copyMsg(m pgproto3.BackendMessage) pgproto3.BackendMessage {
	switch v := m.(type) {
	case *pgproto3.ErrorResponse:
		c := *v
		return &c
	case *pgproto3.ReadyForQuery:
		c := *v
		return &c
	case *pgproto3.DataRow:
		c := &pgproto3.DataRow{}
		for _, b := range v.Values {
			c.Values = append(c.Values, append([]byte(nil), b...))
		}
		return c
	}
	return m
}

func typeName(m any) string {
	switch m.(type) {
	case *pgproto3.ReadyForQuery:
		return "Z"
	case *pgproto3.ErrorResponse:
		return "E"
	}
	return "?"
}

func errorsIn(msgs []pgproto3.BackendMessage) []*pgproto3.ErrorResponse {
	var out []*pgproto3.ErrorResponse
	for _, m := range msgs {
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			out = append(out, e)
		}
	}
	return out
}

func TestLibPQ(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	db, err := sql.Open("postgres", e.dsn("analyst-bot"))
	require.NoError(t, err)
	defer db.Close()
	db.SetMaxOpenConns(1)
	ctx := context.Background()

	var n int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT count(*) FROM orders WHERE id > $1", 5).Scan(&n))
	assert.Equal(t, 15, n)
	require.NoError(t, db.QueryRowContext(ctx, "SELECT count(*) FROM orders").Scan(&n))
	assert.Equal(t, 20, n)

	_, err = db.ExecContext(ctx, "DELETE FROM orders")
	assert.Equal(t, "42501", pqCode(err), "err: %v", err)
	_, err = db.QueryContext(ctx, "SELECT * FROM secrets WHERE id = $1", 1)
	assert.Equal(t, "42501", pqCode(err), "err: %v", err)

	require.NoError(t, db.QueryRowContext(ctx, "SELECT count(*) FROM orders").Scan(&n))
	assert.Equal(t, 20, n)

	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = tx.ExecContext(ctx, "INSERT INTO orders VALUES ($1, $2, $3)", 500, "pq", 1)
	require.NoError(t, err)
	require.NoError(t, tx.Commit())
	require.NoError(t, db.QueryRowContext(ctx, "SELECT count(*) FROM orders").Scan(&n))
	assert.Equal(t, 21, n)
}

func TestLibPQCopyIn(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	db, err := sql.Open("postgres", e.dsn("analyst-bot"))
	require.NoError(t, err)
	defer db.Close()
	txn, err := db.Begin()
	require.NoError(t, err)
	stmt, err := txn.Prepare(pq.CopyIn("orders", "id", "item", "amount"))
	require.NoError(t, err)
	for i := 100; i < 150; i++ {
		_, err = stmt.Exec(i, "pq-copy", 1.25)
		require.NoError(t, err)
	}
	_, err = stmt.Exec()
	require.NoError(t, err)
	require.NoError(t, stmt.Close())
	require.NoError(t, txn.Commit())
	var n int
	require.NoError(t, db.QueryRow("SELECT count(*) FROM orders WHERE item = 'pq-copy'").Scan(&n))
	assert.Equal(t, 50, n)
}

func pqCode(err error) string {
	type coded interface{ SQLState() string }
	if c, ok := err.(coded); ok {
		return c.SQLState()
	}
	return ""
}

func TestAuthFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	cases := []struct {
		name, dsn, code string
	}{
		{"garbage token", "postgres://analyst-bot:not-a-token@" + e.addr + "/" + e.db.Name + "?sslmode=disable", "28P01"},
		{"token of another agent", "postgres://analyst-bot:" + e.signer("other-bot", time.Hour) + "@" + e.addr + "/" + e.db.Name + "?sslmode=disable", "28P01"},
		{"agent unknown to policy", "postgres://stranger:" + e.signer("stranger", time.Hour) + "@" + e.addr + "/" + e.db.Name + "?sslmode=disable", "28P01"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pgx.Connect(ctx, tc.dsn)
			require.Error(t, err)
			assert.Equal(t, tc.code, sqlState(err), "err: %v", err)
			// The message is generic: no token, no upstream detail.
			assert.NotContains(t, err.Error(), "upstream-secret-pw")
		})
	}
	var failed int
	for _, ev := range e.audit.Events() {
		if ev.Kind == audit.KindAuthFailed {
			failed++
		}
	}
	assert.Equal(t, 3, failed)
}

func TestStartupRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	t.Run("replication", func(t *testing.T) {
		cfg, err := pgconn.ParseConfig(e.dsn("analyst-bot"))
		require.NoError(t, err)
		cfg.RuntimeParams["replication"] = "database"
		_, err = pgconn.ConnectConfig(ctx, cfg)
		assert.Equal(t, "0A000", sqlState(err), "err: %v", err)
	})
	t.Run("startup options", func(t *testing.T) {
		cfg, err := pgconn.ParseConfig(e.dsn("analyst-bot"))
		require.NoError(t, err)
		cfg.RuntimeParams["options"] = "-c search_path=evil"
		_, err = pgconn.ConnectConfig(ctx, cfg)
		assert.Equal(t, "0A000", sqlState(err), "err: %v", err)
	})
	t.Run("bad protocol version", func(t *testing.T) {
		r := e.raw(t)
		pkt := make([]byte, 8)
		binary.BigEndian.PutUint32(pkt, 8)
		binary.BigEndian.PutUint32(pkt[4:], 2<<16)
		_, err := r.conn.Write(pkt)
		require.NoError(t, err)
		er, ok := r.recv().(*pgproto3.ErrorResponse)
		require.True(t, ok)
		assert.Equal(t, "08P01", er.Code)
	})
	t.Run("bad length", func(t *testing.T) {
		r := e.raw(t)
		_, err := r.conn.Write([]byte{0xff, 0xff, 0xff, 0xff, 0, 3, 0, 0})
		require.NoError(t, err)
		er, ok := r.recv().(*pgproto3.ErrorResponse)
		require.True(t, ok)
		assert.Equal(t, "08P01", er.Code)
	})
	t.Run("ssl and gss declined", func(t *testing.T) {
		r := e.raw(t)
		for _, code := range []uint32{80877103, 80877104} {
			pkt := make([]byte, 8)
			binary.BigEndian.PutUint32(pkt, 8)
			binary.BigEndian.PutUint32(pkt[4:], code)
			_, err := r.conn.Write(pkt)
			require.NoError(t, err)
			b := make([]byte, 1)
			_, err = r.conn.Read(b)
			require.NoError(t, err)
			assert.Equal(t, byte('N'), b[0])
		}
		r.login(e, "analyst-bot")
	})
	t.Run("protocol 3.2 negotiated down", func(t *testing.T) {
		r := e.raw(t)
		r.fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion32, Parameters: map[string]string{"user": "analyst-bot", "database": e.db.Name, "_pq_.test": "x"}})
		require.NoError(t, r.fe.Flush())
		npv, ok := r.recv().(*pgproto3.NegotiateProtocolVersion)
		require.True(t, ok)
		assert.EqualValues(t, 0, npv.NewestMinorProtocol)
		assert.Equal(t, []string{"_pq_.test"}, npv.UnrecognizedOptions)
	})
}

func TestProtocolCorners(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})

	t.Run("function call refused, session intact", func(t *testing.T) {
		r := e.raw(t)
		r.login(e, "analyst-bot")
		r.fe.Send(&pgproto3.FunctionCall{Function: 1242, ArgFormatCodes: []uint16{0}, Arguments: [][]byte{[]byte("x")}})
		require.NoError(t, r.fe.Flush())
		msgs := r.until(&pgproto3.ReadyForQuery{})
		errs := errorsIn(msgs)
		require.Len(t, errs, 1)
		assert.Equal(t, "0A000", errs[0].Code)
		r.fe.Send(&pgproto3.Query{String: "SELECT 1"})
		require.NoError(t, r.fe.Flush())
		assert.Empty(t, errorsIn(r.until(&pgproto3.ReadyForQuery{})))
	})

	t.Run("garbage ends the session with 08P01", func(t *testing.T) {
		r := e.raw(t)
		r.login(e, "analyst-bot")
		_, err := r.conn.Write([]byte("GARBAGE!\x00\x00\x00\x04"))
		require.NoError(t, err)
		msg, err := r.fe.Receive()
		require.NoError(t, err)
		er, ok := msg.(*pgproto3.ErrorResponse)
		require.True(t, ok, "got %T", msg)
		assert.Equal(t, "08P01", er.Code)
		assert.Equal(t, "FATAL", er.Severity)
		_, err = r.fe.Receive()
		assert.Error(t, err, "connection closed")
	})

	t.Run("bind of denied statement never forwarded", func(t *testing.T) {
		r := e.raw(t)
		r.login(e, "analyst-bot")
		// Unnamed statement allowed first, then replaced by a denied one:
		// a Bind must not reach the old upstream statement.
		r.fe.Send(&pgproto3.Parse{Query: "SELECT 1"})
		r.fe.Send(&pgproto3.Sync{})
		require.NoError(t, r.fe.Flush())
		assert.Empty(t, errorsIn(r.until(&pgproto3.ReadyForQuery{})))

		r.fe.Send(&pgproto3.Parse{Query: "SELECT value FROM secrets"})
		r.fe.Send(&pgproto3.Sync{})
		require.NoError(t, r.fe.Flush())
		errs := errorsIn(r.until(&pgproto3.ReadyForQuery{}))
		require.Len(t, errs, 1)
		assert.Equal(t, "42501", errs[0].Code)

		r.fe.Send(&pgproto3.Bind{})
		r.fe.Send(&pgproto3.Execute{})
		r.fe.Send(&pgproto3.Sync{})
		require.NoError(t, r.fe.Flush())
		errs = errorsIn(r.until(&pgproto3.ReadyForQuery{}))
		require.Len(t, errs, 1)
		assert.Equal(t, "42501", errs[0].Code)

		// Unknown names are refused too.
		r.fe.Send(&pgproto3.Describe{ObjectType: 'S', Name: "nope"})
		r.fe.Send(&pgproto3.Execute{Portal: "nope"})
		r.fe.Send(&pgproto3.Sync{})
		require.NoError(t, r.fe.Flush())
		errs = errorsIn(r.until(&pgproto3.ReadyForQuery{}))
		require.Len(t, errs, 1)
		assert.Equal(t, "26000", errs[0].Code)
	})

	t.Run("denied parse in pipeline after allowed statements", func(t *testing.T) {
		r := e.raw(t)
		r.login(e, "analyst-bot")
		r.fe.Send(&pgproto3.Parse{Name: "a", Query: "SELECT count(*) FROM orders"})
		r.fe.Send(&pgproto3.Bind{PreparedStatement: "a"})
		r.fe.Send(&pgproto3.Execute{})
		r.fe.Send(&pgproto3.Parse{Name: "b", Query: "SELECT * FROM secrets"})
		r.fe.Send(&pgproto3.Bind{PreparedStatement: "b"})
		r.fe.Send(&pgproto3.Execute{})
		r.fe.Send(&pgproto3.Sync{})
		require.NoError(t, r.fe.Flush())
		var kinds []string
		for {
			msg := r.recv()
			switch m := msg.(type) {
			case *pgproto3.ParseComplete:
				kinds = append(kinds, "1")
			case *pgproto3.BindComplete:
				kinds = append(kinds, "2")
			case *pgproto3.DataRow:
				kinds = append(kinds, "D")
			case *pgproto3.CommandComplete:
				kinds = append(kinds, "C")
			case *pgproto3.ErrorResponse:
				kinds = append(kinds, "E:"+m.Code)
			case *pgproto3.ReadyForQuery:
				kinds = append(kinds, "Z:"+string(m.TxStatus))
			}
			if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
				break
			}
		}
		assert.Equal(t, []string{"1", "2", "D", "C", "E:42501", "Z:I"}, kinds)
	})

	t.Run("query during COPY FROM STDIN", func(t *testing.T) {
		r := e.raw(t)
		r.login(e, "analyst-bot")
		r.fe.Send(&pgproto3.Query{String: "COPY orders (id, item, amount) FROM STDIN"})
		require.NoError(t, r.fe.Flush())
		_, ok := r.recv().(*pgproto3.CopyInResponse)
		require.True(t, ok)
		r.fe.Send(&pgproto3.CopyData{Data: []byte("700\tx\t1\n")})
		r.fe.Send(&pgproto3.Query{String: "SELECT 1"})
		require.NoError(t, r.fe.Flush())
		errs := errorsIn(r.until(&pgproto3.ReadyForQuery{}))
		require.NotEmpty(t, errs)
		assert.Equal(t, "08P01", errs[len(errs)-1].Code)
		assert.Equal(t, "FATAL", errs[len(errs)-1].Severity)
	})

	// (At a clean point, outside a transaction, the upstream session is
	// reset and kept instead: reuse_test.go.)
	t.Run("terminate in a transaction ends the upstream session", func(t *testing.T) {
		r := e.raw(t)
		r.login(e, "analyst-bot")
		r.fe.Send(&pgproto3.Query{String: "BEGIN"})
		require.NoError(t, r.fe.Flush())
		r.until(&pgproto3.ReadyForQuery{})
		r.fe.Send(&pgproto3.Query{String: "SELECT count(*) FROM orders"})
		require.NoError(t, r.fe.Flush())
		r.until(&pgproto3.ReadyForQuery{})
		r.fe.Send(&pgproto3.Terminate{})
		require.NoError(t, r.fe.Flush())
		_, err := r.fe.Receive()
		require.Error(t, err)
		d, err := pgx.Connect(context.Background(), e.db.DSN)
		require.NoError(t, err)
		defer d.Close(context.Background())
		require.Eventually(t, func() bool {
			var n int
			// (Sessions of earlier subtests that ended cleanly are
			// kept, reset: their last statement is DISCARD ALL.)
			err := d.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND usename LIKE 'keyhole_role_%' AND query <> 'DISCARD ALL'").Scan(&n)
			return err == nil && n == 0
		}, 5*time.Second, 20*time.Millisecond)
	})

	// Postgres closes its end as soon as it reads the Terminate keyhole
	// passes on; that EOF must not come back to the client as a "lost
	// upstream" FATAL (node-postgres crashes on an error after end()). The
	// race is narrow, so it is run many times.
	t.Run("terminate gets no error back", func(t *testing.T) {
		for i := 0; i < 100; i++ {
			r := e.raw(t)
			r.login(e, "analyst-bot")
			r.fe.Send(&pgproto3.Terminate{})
			require.NoError(t, r.fe.Flush())
			msg, err := r.fe.Receive()
			require.Error(t, err, "round %d: got %T %+v instead of a closed connection", i, msg, msg)
			_ = r.conn.Close()
		}
	})

	t.Run("denial after unsynced messages is visible on Flush", func(t *testing.T) {
		r := e.raw(t)
		r.login(e, "analyst-bot")
		r.fe.Send(&pgproto3.Parse{Name: "ok", Query: "SELECT count(*) FROM orders"})
		r.fe.Send(&pgproto3.Parse{Name: "no", Query: "SELECT value FROM secrets"})
		r.fe.Send(&pgproto3.Flush{})
		require.NoError(t, r.fe.Flush())
		_, ok := r.recv().(*pgproto3.ParseComplete)
		require.True(t, ok)
		er, ok := r.recv().(*pgproto3.ErrorResponse)
		require.True(t, ok)
		assert.Equal(t, "42501", er.Code)
		r.fe.Send(&pgproto3.Sync{})
		require.NoError(t, r.fe.Flush())
		rfq, ok := r.recv().(*pgproto3.ReadyForQuery)
		require.True(t, ok)
		assert.Equal(t, byte('I'), rfq.TxStatus)
	})

	// keyhole's names must not drift from the upstream's: a Parse the
	// server rejects (duplicate name) or skips (after an earlier error in
	// its block) leaves the server's older statement under the name, so
	// keyhole refuses the name instead of binding text it did not decide.
	t.Run("a name whose Parse the server did not accept is refused", func(t *testing.T) {
		r := e.raw(t)
		r.login(e, "analyst-bot")
		r.fe.Send(&pgproto3.Parse{Name: "s1", Query: "SELECT count(*) FROM orders"})
		r.fe.Send(&pgproto3.Sync{})
		require.NoError(t, r.fe.Flush())
		assert.Empty(t, errorsIn(r.until(&pgproto3.ReadyForQuery{})))
		r.fe.Send(&pgproto3.Parse{Name: "s1", Query: "SELECT id FROM orders"})
		r.fe.Send(&pgproto3.Sync{})
		require.NoError(t, r.fe.Flush())
		errs := errorsIn(r.until(&pgproto3.ReadyForQuery{}))
		require.Len(t, errs, 1)
		assert.Equal(t, "42P05", errs[0].Code, "the server keeps the first s1")
		r.fe.Send(&pgproto3.Bind{PreparedStatement: "s1"})
		r.fe.Send(&pgproto3.Execute{})
		r.fe.Send(&pgproto3.Sync{})
		require.NoError(t, r.fe.Flush())
		msgs := r.until(&pgproto3.ReadyForQuery{})
		errs = errorsIn(msgs)
		require.Len(t, errs, 1, "messages: %v", msgs)
		assert.Equal(t, "26000", errs[0].Code)
		for _, m := range msgs {
			assert.NotEqual(t, "*pgproto3.DataRow", typeName(m), "nothing ran upstream")
		}

		// The unnamed statement: its Parse is skipped after an error.
		r.fe.Send(&pgproto3.Parse{Query: "SELECT count(*) FROM orders"})
		r.fe.Send(&pgproto3.Sync{})
		r.fe.Send(&pgproto3.Parse{Name: "boom", Query: "SELECT 1 / (id - id) FROM orders"})
		r.fe.Send(&pgproto3.Bind{PreparedStatement: "boom"})
		r.fe.Send(&pgproto3.Execute{})
		r.fe.Send(&pgproto3.Parse{Query: "SELECT id FROM orders"})
		r.fe.Send(&pgproto3.Sync{})
		require.NoError(t, r.fe.Flush())
		r.until(&pgproto3.ReadyForQuery{})
		errs = errorsIn(r.until(&pgproto3.ReadyForQuery{}))
		require.Len(t, errs, 1)
		assert.Equal(t, "22012", errs[0].Code)
		r.fe.Send(&pgproto3.Bind{})
		r.fe.Send(&pgproto3.Execute{})
		r.fe.Send(&pgproto3.Sync{})
		require.NoError(t, r.fe.Flush())
		errs = errorsIn(r.until(&pgproto3.ReadyForQuery{}))
		require.Len(t, errs, 1)
		assert.Equal(t, "26000", errs[0].Code)
	})

	// Sent in one write, the use of s2 in the block after its re-creation
	// waits for the server's answer to the re-creation (on a loop, the
	// goroutine relay takes the session over to wait).
	t.Run("a use pipelined behind a name's re-creation waits for its answer", func(t *testing.T) {
		r := e.raw(t)
		r.login(e, "analyst-bot")
		r.fe.Send(&pgproto3.Parse{Name: "s2", Query: "SELECT count(*) FROM orders"})
		r.fe.Send(&pgproto3.Sync{})
		require.NoError(t, r.fe.Flush())
		assert.Empty(t, errorsIn(r.until(&pgproto3.ReadyForQuery{})))
		r.fe.Send(&pgproto3.Parse{Name: "s2", Query: "SELECT id FROM orders"})
		r.fe.Send(&pgproto3.Sync{})
		r.fe.Send(&pgproto3.Bind{PreparedStatement: "s2"})
		r.fe.Send(&pgproto3.Execute{})
		r.fe.Send(&pgproto3.Sync{})
		require.NoError(t, r.fe.Flush())
		errs := errorsIn(r.until(&pgproto3.ReadyForQuery{}))
		require.Len(t, errs, 1)
		assert.Equal(t, "42P05", errs[0].Code, "the server keeps the first s2")
		msgs := r.until(&pgproto3.ReadyForQuery{})
		errs = errorsIn(msgs)
		require.Len(t, errs, 1, "messages: %v", msgs)
		assert.Equal(t, "26000", errs[0].Code)
		// And the session goes on.
		r.fe.Send(&pgproto3.Query{String: "SELECT id FROM orders WHERE id = 1"})
		require.NoError(t, r.fe.Flush())
		assert.Empty(t, errorsIn(r.until(&pgproto3.ReadyForQuery{})))
	})

	t.Run("only the first error of a block is reported", func(t *testing.T) {
		r := e.raw(t)
		r.login(e, "analyst-bot")
		r.fe.Send(&pgproto3.Parse{Query: "SELECT 1 / (id - id) FROM orders"})
		r.fe.Send(&pgproto3.Bind{})
		r.fe.Send(&pgproto3.Execute{})
		r.fe.Send(&pgproto3.Parse{Name: "no", Query: "SELECT value FROM secrets"})
		r.fe.Send(&pgproto3.Sync{})
		require.NoError(t, r.fe.Flush())
		errs := errorsIn(r.until(&pgproto3.ReadyForQuery{}))
		require.Len(t, errs, 1)
		assert.Equal(t, "22012", errs[0].Code)
		// And the session goes on.
		r.fe.Send(&pgproto3.Query{String: "SELECT count(*) FROM orders"})
		require.NoError(t, r.fe.Flush())
		assert.Empty(t, errorsIn(r.until(&pgproto3.ReadyForQuery{})))
	})

	t.Run("oversized message", func(t *testing.T) {
		r := e.raw(t)
		r.login(e, "analyst-bot")
		hdr := []byte{'Q', 0x7f, 0xff, 0xff, 0xff}
		_, err := r.conn.Write(hdr)
		require.NoError(t, err)
		er, ok := r.recv().(*pgproto3.ErrorResponse)
		require.True(t, ok)
		assert.Equal(t, "08P01", er.Code)
	})
}

func TestCleartextNeedsTLSOffLoopback(t *testing.T) {
	t.Parallel()
	var ip net.IP
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			ip = n.IP
			break
		}
	}
	if ip == nil {
		t.Skip("no non-loopback address")
	}
	e := newEnv(t, envOpts{})
	ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	require.NoError(t, err)
	go func() { _ = e.fe.Serve(ln) }()
	token := e.signer("analyst-bot", time.Hour)
	_, err = pgx.Connect(context.Background(), "postgres://analyst-bot:"+token+"@"+ln.Addr().String()+"/"+e.db.Name+"?sslmode=disable")
	require.Error(t, err)
	assert.Equal(t, "28000", sqlState(err), "err: %v", err)
}
