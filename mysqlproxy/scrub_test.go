package mysqlproxy_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/internal/fixture"
)

// The upstream's own errors name the login keyhole uses ("SELECT command
// denied to user 'kh_…'@'localhost'"), a name the agent must not learn
// (with Vault, a generated one). Every path an upstream ERR takes to the
// agent, the audit and the log shows the agent's name and host "keyhole"
// in its place, with the server's errno and SQLSTATE.
func TestUpstreamErrorsHideLogin(t *testing.T) {
	logs := &fixture.SyncBuffer{}
	e := newEnv(t, envOpts{logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	admin := testmyAdmin(t)
	grant := func(stmt string) {
		t.Helper()
		_, err := admin.Exec(fmt.Sprintf(stmt, e.db.Name, e.upUser))
		require.NoError(t, err)
	}
	// The policy lets analysts read orders; the login may read customers only.
	grant("REVOKE ALL ON %s.* FROM '%s'@'%%'")
	grant("GRANT SELECT ON %s.customers TO '%s'@'%%'")

	hidden := func(t *testing.T, err error, num uint16) {
		t.Helper()
		var me *mysql.MySQLError
		require.ErrorAs(t, err, &me)
		assert.Equal(t, num, me.Number, me.Message)
		assert.Equal(t, "42000", string(me.SQLState[:]))
		assert.NotContains(t, me.Message, e.upUser)
		assert.NotContains(t, me.Message, "localhost")
		assert.Contains(t, me.Message, "'analyst-bot'@'keyhole'")
	}
	c := e.cfg("analyst-bot")
	c.MultiStatements = true
	conn := e.conn(c)
	ctx := context.Background()

	t.Run("query", func(t *testing.T) {
		_, err := conn.ExecContext(ctx, "SELECT id FROM orders")
		hidden(t, err, 1142)
	})
	t.Run("second result of a multi-statement text", func(t *testing.T) {
		rows, err := conn.QueryContext(ctx, "SELECT id FROM customers; SELECT id FROM orders")
		require.NoError(t, err)
		for rows.Next() {
		}
		assert.False(t, rows.NextResultSet())
		hidden(t, rows.Err(), 1142)
		require.NoError(t, rows.Close())
	})
	t.Run("prepare", func(t *testing.T) {
		_, err := conn.PrepareContext(ctx, "SELECT id FROM orders WHERE id = ?")
		hidden(t, err, 1142)
	})
	t.Run("execute", func(t *testing.T) {
		st, err := conn.PrepareContext(ctx, "SELECT id FROM customers WHERE id = ?")
		require.NoError(t, err)
		defer st.Close()
		grant("REVOKE SELECT ON %s.customers FROM '%s'@'%%'")
		defer grant("GRANT SELECT ON %s.customers TO '%s'@'%%'")
		_, err = st.ExecContext(ctx, 1)
		hidden(t, err, 1142)
	})

	r := e.dialRaw(t)
	r.login(e, "analyst-bot")
	t.Run("field list", func(t *testing.T) {
		r.command(append(append([]byte{0x04}, "orders"...), 0))
		msg := assertErr(t, r.read(), 1142, "42000")
		assert.NotContains(t, msg, e.upUser)
		assert.Contains(t, msg, "'analyst-bot'@'keyhole'")
	})
	t.Run("init db", func(t *testing.T) {
		grant("REVOKE SELECT ON %s.customers FROM '%s'@'%%'")
		r.command(append([]byte{0x02}, e.db.Name...))
		msg := assertErr(t, r.read(), 1044, "42000")
		assert.NotContains(t, msg, e.upUser)
		assert.Contains(t, msg, "'analyst-bot'@'keyhole'")
		// The session goes on.
		r.command([]byte{0x0e})
		assert.Equal(t, byte(0), r.read()[0])
	})
	t.Run("login", func(t *testing.T) {
		// No grant at all on the database: the upstream refuses the login.
		_, err := e.open(e.cfg("other-bot")).ExecContext(ctx, "SELECT 1")
		require.Error(t, err)
		assert.Equal(t, uint16(1105), errno(err))
		assert.NotContains(t, err.Error(), e.upUser)
	})

	for _, ev := range e.audit.Events() {
		assert.NotContains(t, ev.Error, e.upUser, "audit: %+v", ev)
	}
	assert.NotContains(t, logs.String(), e.upUser)
	assert.Contains(t, logs.String(), "analyst-bot")
}
