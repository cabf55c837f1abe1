package pgproxy_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// An allowed statement the server refuses at Bind (planning folds
// 1/0; a parameter that is not valid input) reached the server: it is
// audited once, with the error, as one failing at Execute is; its
// skipped Execute is not audited.
func TestAuditBindError(t *testing.T) {
	e := newEnv(t, envOpts{raw: true})
	r := e.raw(t)
	r.login(e, "analyst-bot")
	const marker = "SELECT 'bind-errors'"
	r.fe.Send(&pgproto3.Query{String: marker})
	require.NoError(t, r.fe.Flush())
	r.until(&pgproto3.ReadyForQuery{})

	run := func(sql string, params ...[]byte) {
		t.Helper()
		r.fe.Send(&pgproto3.Parse{Query: sql})
		r.fe.Send(&pgproto3.Bind{Parameters: params})
		r.fe.Send(&pgproto3.Execute{})
		r.fe.Send(&pgproto3.Sync{})
		require.NoError(t, r.fe.Flush())
		errs := errorsIn(r.until(&pgproto3.ReadyForQuery{}))
		require.Len(t, errs, 1, sql)
	}
	run("SELECT id FROM orders WHERE id = 1/0")                        // folded at Bind
	run("SELECT id FROM orders WHERE id = $1", []byte("one"))          // not an int
	run("SELECT id / (id - 1) FROM orders WHERE id < $1", []byte("5")) // fails at Execute

	assert.Equal(t, []runOutcome{
		{marker, 1, "", ""},
		{"SELECT id FROM orders WHERE id = 1/0", 0, "22012", ""},
		{"SELECT id FROM orders WHERE id = $1", 0, "22P02", ""},
		{"SELECT id / (id - 1) FROM orders WHERE id < $1", 0, "22012", ""},
	}, outcomes(stmtEvents(t, e.audit.Events(), marker)))
}
