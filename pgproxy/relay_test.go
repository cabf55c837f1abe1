package pgproxy_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

func TestAllowAndDeny(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec, pgx.QueryExecModeDescribeExec} {
		t.Run(mode.String(), func(t *testing.T) {
			ctx := context.Background()
			c := e.connect(mode)

			var n int
			require.NoError(t, c.QueryRow(ctx, "SELECT count(*) FROM orders WHERE amount > $1", 3).Scan(&n))
			assert.Equal(t, 18, n)

			_, err := c.Exec(ctx, "SELECT value FROM secrets")
			assert.Equal(t, "42501", sqlState(err), "err: %v", err)

			_, err = c.Exec(ctx, "DELETE FROM orders WHERE id > $1", 0)
			assert.Equal(t, "42501", sqlState(err), "err: %v", err)

			// The session is still usable and the rows are still there.
			require.NoError(t, c.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n))
			assert.Equal(t, 20, n)

			// An upstream error passes through with its own SQLSTATE.
			_, err = c.Exec(ctx, "SELECT 1 / (id - id) FROM orders")
			assert.Equal(t, "22012", sqlState(err))
			require.NoError(t, c.QueryRow(ctx, "SELECT 1").Scan(&n))
		})
	}
	var denied, allowed int
	for _, ev := range e.audit.Events() {
		if ev.Kind != audit.KindStatement {
			continue
		}
		switch ev.Decision {
		case sqlpolicy.Deny:
			denied++
			assert.Equal(t, "42501", ev.ErrorCode)
		case sqlpolicy.Allow:
			allowed++
		}
	}
	assert.Equal(t, 8, denied)
	assert.Positive(t, allowed)
}

func TestBatchWithDeniedStatement(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe} {
		t.Run(mode.String(), func(t *testing.T) {
			c := e.connect(mode)
			b := &pgx.Batch{}
			b.Queue("SELECT count(*) FROM orders")
			b.Queue("SELECT value FROM secrets")
			b.Queue("SELECT 42")
			err := c.SendBatch(ctx, b).Close()
			assert.Equal(t, "42501", sqlState(err), "err: %v", err)

			var n int
			require.NoError(t, c.QueryRow(ctx, "SELECT count(*) FROM customers").Scan(&n))
			assert.Equal(t, 2, n)

			// A batch of allowed statements still works afterwards.
			b = &pgx.Batch{}
			b.Queue("SELECT 1")
			b.Queue("SELECT 2")
			br := c.SendBatch(ctx, b)
			var x, y int
			require.NoError(t, br.QueryRow().Scan(&x))
			require.NoError(t, br.QueryRow().Scan(&y))
			require.NoError(t, br.Close())
			assert.Equal(t, []int{1, 2}, []int{x, y})
		})
	}
}

func TestMaxRows(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{maxRows: 10})
	ctx := context.Background()
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		t.Run(mode.String(), func(t *testing.T) {
			c := e.connect(mode)
			rows, err := c.Query(ctx, "SELECT id FROM orders ORDER BY id")
			require.NoError(t, err)
			n := 0
			for rows.Next() {
				n++
			}
			assert.Equal(t, "54000", sqlState(rows.Err()), "err: %v", rows.Err())
			assert.LessOrEqual(t, n, 10)

			// A big result is cut and the upstream statement cancelled.
			start := time.Now()
			// (A five-way self join streams 3.2M rows without materializing.)
			rows, err = c.Query(ctx, "SELECT a.id FROM orders a, orders b, orders c, orders d, orders e")
			require.NoError(t, err)
			for rows.Next() {
			}
			assert.Equal(t, "54000", sqlState(rows.Err()))
			assert.Less(t, time.Since(start), 3*time.Second)

			var got int
			require.NoError(t, c.QueryRow(ctx, "SELECT count(*) FROM orders WHERE id <= $1", 10).Scan(&got))
			assert.Equal(t, 10, got)
			assert.Equal(t, byte('I'), c.PgConn().TxStatus())
		})
	}
}

func TestCopy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	c := e.connect(pgx.QueryExecModeCacheStatement)

	rows := [][]any{}
	for i := 1000; i < 3000; i++ {
		rows = append(rows, []any{i, "copied", 2.5})
	}
	n, err := c.CopyFrom(ctx, pgx.Identifier{"orders"}, []string{"id", "item", "amount"}, pgx.CopyFromRows(rows))
	require.NoError(t, err)
	assert.EqualValues(t, 2000, n)

	var buf countingWriter
	tag, err := c.PgConn().CopyTo(ctx, &buf, "COPY (SELECT * FROM orders WHERE item = 'copied') TO STDOUT")
	require.NoError(t, err)
	assert.EqualValues(t, 2000, tag.RowsAffected())
	assert.Equal(t, 2000, buf.lines)

	// A denied COPY never starts.
	_, err = c.PgConn().CopyTo(ctx, &buf, "COPY secrets TO STDOUT")
	assert.Equal(t, "42501", sqlState(err))

	// A COPY FROM that fails upstream (duplicate key) reports the error
	// and leaves the session usable.
	_, err = c.CopyFrom(ctx, pgx.Identifier{"orders"}, []string{"id", "item", "amount"}, pgx.CopyFromRows(rows[:5]))
	assert.Equal(t, "23505", sqlState(err))
	var cnt int
	require.NoError(t, c.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&cnt))
	assert.Equal(t, 2020, cnt)
}

type countingWriter struct{ lines int }

func (w *countingWriter) Write(p []byte) (int, error) {
	for _, b := range p {
		if b == '\n' {
			w.lines++
		}
	}
	return len(p), nil
}

func TestCancel(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		t.Run(mode.String(), func(t *testing.T) {
			release := e.lockOrders()
			defer release()
			c := e.connect(mode)
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := c.Exec(ctx, "SELECT count(*) FROM orders")
			require.Error(t, err)
			assert.Less(t, time.Since(start), 5*time.Second)
			// pgx sent a CancelRequest to keyhole, which forwarded it: the
			// upstream statement no longer waits for the lock.
			require.Eventually(t, func() bool { return e.waiting() == 0 }, 5*time.Second, 50*time.Millisecond)
		})
	}
}

func TestPgconnPipeline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	c := e.connect(pgx.QueryExecModeCacheStatement)
	p := c.PgConn().StartPipeline(ctx)
	p.SendPrepare("ok", "SELECT count(*) FROM orders", nil)
	p.SendPrepare("no", "SELECT value FROM secrets", nil)
	p.SendFlushRequest() // a protocol Flush, no Sync: answers must come now
	require.NoError(t, p.Flush())
	res, err := p.GetResults()
	require.NoError(t, err)
	_, isDesc := res.(*pgconn.StatementDescription)
	assert.True(t, isDesc, "got %T %v", res, res)
	_, err = p.GetResults()
	assert.Equal(t, "42501", sqlState(err), "err: %v", err)
	require.NoError(t, p.Sync())
	for {
		res, err = p.GetResults()
		require.NoError(t, err)
		if _, ok := res.(*pgconn.PipelineSync); ok {
			break
		}
	}
	require.NoError(t, p.Close())
	var n int
	require.NoError(t, c.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n))
	assert.Equal(t, 20, n)
}

// A client that stops reading while the server streams it a result stalls
// only its own session: keyhole stops reading that session's upstream (the
// server then waits in ClientWrite) and holds no more than a buffer for
// it, other sessions (on the same event loop) are served meanwhile, and
// the client gets every row once it reads.
func TestClientNotReading(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	r := e.raw(t)
	r.login(e, "analyst-bot")
	// About 20 MiB of DataRows: more than the sockets on the way buffer
	// (loopback's autotuning reaches 4 MiB sending and 6 MiB receiving).
	const want = 20 * 20 * 20 * 20
	r.fe.Send(&pgproto3.Query{String: "SELECT a.*, b.*, c.*, d.*, a.item || b.item || c.item || d.item FROM orders a, orders b, orders c, orders d"})
	require.NoError(t, r.fe.Flush())

	d := e.direct()
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, d.QueryRow(context.Background(),
			"SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'ClientWrite'").Scan(&n))
		return n == 1
	}, 15*time.Second, 20*time.Millisecond, "the server never waited to write to keyhole")

	other := e.connect(pgx.QueryExecModeCacheStatement)
	var n int
	require.NoError(t, other.QueryRow(context.Background(), "SELECT count(*) FROM orders WHERE id > $1", 10).Scan(&n))
	assert.Equal(t, 10, n)

	got := 0
	for done := false; !done; {
		switch m := r.recv().(type) {
		case *pgproto3.DataRow:
			got++
		case *pgproto3.ErrorResponse:
			t.Fatalf("error: %s %s", m.Code, m.Message)
		case *pgproto3.ReadyForQuery:
			done = true
		}
	}
	assert.Equal(t, want, got)
	assert.Equal(t, []string{"T", "D", "C", "Z:I"}, r.query("SELECT id FROM orders WHERE id = 1"))
}
