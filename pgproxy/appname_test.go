package pgproxy_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The upstream session's application_name names the agent, then the
// client's own application_name, so pg_stat_activity (and the server log,
// %a) show which agent runs what; the agent cannot SET it away.
func TestApplicationName(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	connect := func(app string) *pgx.Conn {
		cfg, err := pgx.ParseConfig(e.dsn("analyst-bot"))
		require.NoError(t, err)
		if app != "" {
			cfg.RuntimeParams["application_name"] = app
		}
		c, err := pgx.ConnectConfig(ctx, cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		return c
	}
	// activity is what pg_stat_activity shows for the session c is
	// relayed to.
	activity := func(c *pgx.Conn) string {
		var pid int
		require.NoError(t, c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid))
		var app string
		require.NoError(t, e.direct().QueryRow(ctx, "SELECT application_name FROM pg_stat_activity WHERE pid = $1", pid).Scan(&app))
		return app
	}

	assert.Equal(t, "keyhole:analyst-bot", activity(connect("")))
	c := connect("nightly-report")
	assert.Equal(t, "keyhole:analyst-bot nightly-report", activity(c))
	assert.Equal(t, "keyhole:analyst-bot nightly-report", c.PgConn().ParameterStatus("application_name"))
	// Postgres shows 63 bytes: the agent comes first.
	long := strings.Repeat("x", 100)
	assert.Equal(t, ("keyhole:analyst-bot " + long)[:63], activity(connect(long)))

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		for _, sql := range []string{
			"SELECT set_config('application_name', 'innocent', false)",
			"SET application_name = 'x'; SELECT 1",
			"SELECT set_config('application_name', $1, false)",
		} {
			args := []any{}
			if strings.Contains(sql, "$1") {
				// Extended protocol: a value keyhole cannot see is refused;
				// pgx's simple protocol puts the literal into the text.
				args = append(args, "innocent")
			}
			_, err := c.Exec(ctx, sql, append([]any{mode}, args...)...)
			assert.Equal(t, "42501", sqlState(err), "%s: %v", sql, err)
			var pe *pgconn.PgError
			require.ErrorAs(t, err, &pe)
			assert.Contains(t, pe.Hint, "keyhole:analyst-bot ")
		}
		assert.Equal(t, "keyhole:analyst-bot nightly-report", activity(c))
	}
	// A plain SET (pgJDBC sends one after connecting) goes upstream with the
	// agent's part in front of the value, in both protocols; the escape
	// string keyhole builds keeps quotes and backslashes as they were.
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		_, err := c.Exec(ctx, "SET application_name = 'PostgreSQL JDBC Driver'", mode)
		require.NoError(t, err)
		assert.Equal(t, "keyhole:analyst-bot PostgreSQL JDBC Driver", activity(c))
		assert.Equal(t, "keyhole:analyst-bot PostgreSQL JDBC Driver", c.PgConn().ParameterStatus("application_name"))
		_, err = c.Exec(ctx, `SET application_name TO 'keyhole:analyst-botnet it''s \ odd'`, mode)
		require.NoError(t, err)
		assert.Equal(t, `keyhole:analyst-bot keyhole:analyst-botnet it's \ odd`, activity(c))
		_, err = c.Exec(ctx, "RESET application_name", mode)
		require.NoError(t, err)
	}
	tx, err := c.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "SET LOCAL application_name = 'in a transaction'")
	require.NoError(t, err)
	var inTx string
	require.NoError(t, tx.QueryRow(ctx, "SHOW application_name").Scan(&inTx))
	assert.Equal(t, "keyhole:analyst-bot in a transaction", inTx)
	require.NoError(t, tx.Rollback(ctx))
	assert.Equal(t, "keyhole:analyst-bot nightly-report", activity(c))
	// Keeping the agent's part, or returning to the connection's value, is
	// fine.
	_, err = c.Exec(ctx, "SET application_name = 'keyhole:analyst-bot weekly-report'")
	require.NoError(t, err)
	assert.Equal(t, "keyhole:analyst-bot weekly-report", activity(c))
	assert.Equal(t, "keyhole:analyst-bot weekly-report", c.PgConn().ParameterStatus("application_name"))
	_, err = c.Exec(ctx, "RESET application_name")
	require.NoError(t, err)
	assert.Equal(t, "keyhole:analyst-bot nightly-report", activity(c))
}
