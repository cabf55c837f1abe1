package pgproxy_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// orderRows counts orders rows with id in ids, read directly.
func (e *env) orderRows(ids ...int) int {
	e.t.Helper()
	var n int
	require.NoError(e.t, e.direct().QueryRow(context.Background(),
		"SELECT count(*) FROM orders WHERE id = ANY($1)", ids).Scan(&n))
	return n
}

// A statement keyhole refuses inside a transaction aborts it, exactly as
// an error Postgres raised would: later statements get 25P02, COMMIT
// becomes ROLLBACK, ROLLBACK TO SAVEPOINT recovers, and ReadyForQuery
// says 'E' meanwhile.
func TestRefusalAbortsTransaction(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	for i, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec} {
		t.Run(mode.String(), func(t *testing.T) {
			base := 1000 * (i + 1)
			c := e.connect(mode)

			tx, err := c.Begin(ctx)
			require.NoError(t, err)
			_, err = tx.Exec(ctx, "INSERT INTO orders VALUES ($1, 'x', 1)", base)
			require.NoError(t, err)
			_, err = tx.Exec(ctx, "SELECT value FROM secrets")
			assert.Equal(t, "42501", sqlState(err), "err: %v", err)
			assert.Equal(t, byte('E'), c.PgConn().TxStatus())
			_, err = tx.Exec(ctx, "SELECT count(*) FROM orders")
			assert.Equal(t, "25P02", sqlState(err), "err: %v", err)
			err = tx.Commit(ctx)
			assert.ErrorIs(t, err, pgx.ErrTxCommitRollback)
			assert.Equal(t, byte('I'), c.PgConn().TxStatus())
			assert.Equal(t, 0, e.orderRows(base), "COMMIT of the aborted transaction rolled the INSERT back")

			// ROLLBACK TO SAVEPOINT recovers, as after a server error.
			tx, err = c.Begin(ctx)
			require.NoError(t, err)
			_, err = tx.Exec(ctx, "INSERT INTO orders VALUES ($1, 'x', 1)", base+1)
			require.NoError(t, err)
			_, err = tx.Exec(ctx, "SAVEPOINT s")
			require.NoError(t, err)
			_, err = tx.Exec(ctx, "INSERT INTO orders VALUES ($1, 'x', 1)", base+2)
			require.NoError(t, err)
			_, err = tx.Exec(ctx, "DELETE FROM orders")
			assert.Equal(t, "42501", sqlState(err), "err: %v", err)
			assert.Equal(t, byte('E'), c.PgConn().TxStatus())
			_, err = tx.Exec(ctx, "ROLLBACK TO SAVEPOINT s")
			require.NoError(t, err)
			assert.Equal(t, byte('T'), c.PgConn().TxStatus())
			_, err = tx.Exec(ctx, "INSERT INTO orders VALUES ($1, 'x', 1)", base+3)
			require.NoError(t, err)
			require.NoError(t, tx.Commit(ctx))
			assert.Equal(t, 1, e.orderRows(base+1))
			assert.Equal(t, 0, e.orderRows(base+2))
			assert.Equal(t, 1, e.orderRows(base+3))

			// A batch is one implicit transaction (simple protocol: one
			// Query text, refused whole; extended: one sync block): the
			// refused statement rolls back the INSERT before it.
			b := &pgx.Batch{}
			b.Queue("INSERT INTO orders VALUES ($1, 'x', 1)", base+4)
			b.Queue("SELECT value FROM secrets")
			err = c.SendBatch(ctx, b).Close()
			assert.Equal(t, "42501", sqlState(err), "err: %v", err)
			assert.Equal(t, byte('I'), c.PgConn().TxStatus())
			assert.Equal(t, 0, e.orderRows(base+4))
		})
	}
}

// The refused message need not be a Parse: a Bind of a statement the
// policy denied, an Execute of an unknown portal, or a refused Query
// after an allowed Execute in the same sync block roll that Execute back,
// as Postgres's own error there would.
func TestRefusalRollsBackSyncBlock(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	cases := []struct {
		name  string
		id    int
		after []pgproto3.FrontendMessage
		code  string
	}{
		{"bind of denied statement", 2001, []pgproto3.FrontendMessage{&pgproto3.Bind{PreparedStatement: "denied"}, &pgproto3.Execute{}}, "42501"},
		{"execute of unknown portal", 2002, []pgproto3.FrontendMessage{&pgproto3.Execute{Portal: "nope"}}, "34000"},
		{"describe of unknown statement", 2003, []pgproto3.FrontendMessage{&pgproto3.Describe{ObjectType: 'S', Name: "nope"}}, "26000"},
		{"denied parse", 2004, []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "DELETE FROM orders"}}, "42501"},
		{"refused query", 2005, []pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT value FROM secrets"}}, "42501"},
		{"function call", 2006, []pgproto3.FrontendMessage{&pgproto3.FunctionCall{Function: 1242}}, "0A000"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := e.raw(t)
			r.login(e, "analyst-bot")
			r.fe.Send(&pgproto3.Parse{Name: "denied", Query: "SELECT value FROM secrets"})
			r.fe.Send(&pgproto3.Sync{})
			require.NoError(t, r.fe.Flush())
			require.Len(t, errorsIn(r.until(&pgproto3.ReadyForQuery{})), 1)

			r.fe.Send(&pgproto3.Parse{Name: "ins", Query: "INSERT INTO orders VALUES ($1, 'x', 1)", ParameterOIDs: []uint32{23}})
			r.fe.Send(&pgproto3.Bind{PreparedStatement: "ins", ParameterFormatCodes: []int16{0}, Parameters: [][]byte{[]byte(strconv.Itoa(tc.id))}})
			r.fe.Send(&pgproto3.Execute{})
			for _, m := range tc.after {
				r.fe.Send(m)
			}
			r.fe.Send(&pgproto3.Sync{})
			require.NoError(t, r.fe.Flush())
			msgs := r.until(&pgproto3.ReadyForQuery{})
			if _, isQuery := tc.after[0].(*pgproto3.Query); isQuery {
				// The Query ends the block with its own ReadyForQuery;
				// the Sync after it answers with another.
				msgs = append(msgs, r.until(&pgproto3.ReadyForQuery{})...)
			} else if _, isCall := tc.after[0].(*pgproto3.FunctionCall); isCall {
				msgs = append(msgs, r.until(&pgproto3.ReadyForQuery{})...)
			}
			errs := errorsIn(msgs)
			require.Len(t, errs, 1, "messages: %v", msgs)
			assert.Equal(t, tc.code, errs[0].Code)
			assert.Equal(t, 0, e.orderRows(tc.id), "the INSERT of the failed block was rolled back")
		})
	}
}

// psql runs each line of a script as its own Query: after the refusal
// the transaction is aborted and its COMMIT reports ROLLBACK.
func TestRefusalAbortsTransactionPsql(t *testing.T) {
	t.Parallel()
	psql, err := exec.LookPath("psql")
	require.NoError(t, err, "psql is needed: run scripts/setup.sh")
	e := newEnv(t, envOpts{})
	host, port, _ := strings.Cut(e.addr, ":")
	script := strings.Join([]string{
		"BEGIN;",
		"INSERT INTO orders VALUES (3001, 'psql', 1);",
		"SELECT value FROM secrets;",
		"SELECT count(*) FROM orders;",
		"COMMIT;",
	}, "\n")
	cmd := exec.Command(psql, "-X", "-h", host, "-p", port, "-U", "analyst-bot", "-d", e.db.Name, "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+e.signer("analyst-bot", time.Hour), "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=10")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.True(t, err == nil || errors.As(err, &ee), "psql: %v\n%s", err, out)
	assert.Contains(t, string(out), "ERROR:  keyhole")
	assert.Contains(t, string(out), "current transaction is aborted")
	assert.Contains(t, string(out), "ROLLBACK")
	assert.Equal(t, 0, e.orderRows(3001))
}
