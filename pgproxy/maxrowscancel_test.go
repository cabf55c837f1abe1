package pgproxy_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// When a statement passes max_rows keyhole cancels it upstream; but a
// client that pipelines may already have its next block upstream, and
// the server, done with the capped statement (its rows were still in the
// socket), is running that one: a cancel then stops a statement the
// client gets the answer of, with 57014. Here the next statement waits
// on a lock when the cut comes; it must not be cancelled.
func TestMaxRowsCancelSparesNextBlock(t *testing.T) {
	for _, extended := range []bool{false, true} {
		name := "simple"
		if extended {
			name = "extended"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, envOpts{maxRows: 5})
			ctx := context.Background()
			d := e.direct()
			tx, err := d.Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = tx.Rollback(ctx) }()
			_, err = tx.Exec(ctx, "LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
			require.NoError(t, err)

			r := e.raw(t)
			r.login(e, "analyst-bot")
			const capped, next = "SELECT id FROM orders", "SELECT id FROM customers ORDER BY id"
			if extended {
				for _, sql := range []string{capped, next} {
					r.fe.Send(&pgproto3.Parse{Query: sql})
					r.fe.Send(&pgproto3.Bind{})
					r.fe.Send(&pgproto3.Execute{})
					r.fe.Send(&pgproto3.Sync{})
				}
			} else {
				r.fe.Send(&pgproto3.Query{String: capped})
				r.fe.Send(&pgproto3.Query{String: next})
			}
			require.NoError(t, r.fe.Flush())
			first := errorsIn(r.until(&pgproto3.ReadyForQuery{}))
			require.Len(t, first, 1)
			assert.Equal(t, "54000", first[0].Code)

			// The next statement waits on the lock until it is released.
			for deadline := time.Now().Add(10 * time.Second); e.waiting() == 0 && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond) // a poll of pg_stat_activity, with a deadline
			}
			// The bug is a cancel that arrives: nothing signals one that
			// does not, so the test gives a cancel in flight (a new
			// connection to Postgres, milliseconds) time to land on the
			// waiting statement before releasing it.
			time.Sleep(300 * time.Millisecond)
			require.NoError(t, tx.Rollback(ctx))
			var rows []string
			for _, m := range r.until(&pgproto3.ReadyForQuery{}) {
				switch m := m.(type) {
				case *pgproto3.DataRow:
					rows = append(rows, string(m.Values[0]))
				case *pgproto3.ErrorResponse:
					t.Errorf("next statement: %s %s", m.Code, m.Message)
				}
			}
			assert.Equal(t, []string{"1", "2"}, rows)
		})
	}
}
