package pgproxy_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/internal/fixture"
)

// The server's error and notice texts can name the role keyhole logs in
// as (here a trigger's RAISE, as audit triggers write them; with Vault
// the name is a generated credential): the agent, the audit and the log
// see the agent's name in its place, with the server's SQLSTATE, as
// session_authorization shows it.
func TestUpstreamErrorsHideLogin(t *testing.T) {
	logs := &fixture.SyncBuffer{}
	e := newEnv(t, envOpts{logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	ctx := context.Background()
	_, err := e.direct().Exec(ctx, `
CREATE FUNCTION no_big_orders() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE 'order % inserted by %', NEW.id, session_user;
	IF NEW.amount > 100 THEN
		RAISE EXCEPTION 'role "%" may not insert orders over 100', current_user
			USING DETAIL = format('session user %s', session_user), HINT = current_user || ' needs approval';
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER no_big_orders BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION no_big_orders()`)
	require.NoError(t, err)

	// First, while no upstream session is kept for reuse.
	t.Run("login", func(t *testing.T) {
		_, err := e.direct().Exec(ctx, "ALTER ROLE "+e.upUser+" NOLOGIN")
		require.NoError(t, err)
		defer func() { _, _ = e.direct().Exec(ctx, "ALTER ROLE "+e.upUser+" LOGIN") }()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err = pgx.Connect(cctx, e.dsn("analyst-bot"))
		require.Error(t, err)
		assert.Equal(t, "08001", sqlState(err))
		assert.NotContains(t, err.Error(), e.upUser)
	})

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		t.Run(mode.String(), func(t *testing.T) {
			cfg, err := pgx.ParseConfig(e.dsn("analyst-bot"))
			require.NoError(t, err)
			cfg.DefaultQueryExecMode = mode
			var notices []string
			cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Message) }
			c, err := pgx.ConnectConfig(ctx, cfg)
			require.NoError(t, err)
			defer c.Close(ctx)
			assert.Equal(t, "analyst-bot", c.PgConn().ParameterStatus("session_authorization"))

			id := 1000 + int(mode)*10
			_, err = c.Exec(ctx, fmt.Sprintf("INSERT INTO orders VALUES (%d, 'small', 1)", id))
			require.NoError(t, err)
			_, err = c.Exec(ctx, fmt.Sprintf("INSERT INTO orders VALUES (%d, 'big', 500)", id+1))
			var pe *pgconn.PgError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, "P0001", pe.Code)
			assert.Equal(t, `role "analyst-bot" may not insert orders over 100`, pe.Message)
			assert.Equal(t, "session user analyst-bot", pe.Detail)
			assert.Equal(t, "analyst-bot needs approval", pe.Hint)
			assert.NotContains(t, pe.Where, e.upUser)
			require.Len(t, notices, 2)
			for _, n := range notices {
				assert.Contains(t, n, "inserted by analyst-bot")
			}
			// The session goes on.
			var one int
			require.NoError(t, c.QueryRow(ctx, "SELECT 1 FROM orders WHERE id = 1").Scan(&one))
		})
	}

	for _, ev := range e.audit.Events() {
		assert.NotContains(t, ev.Error, e.upUser, "audit: %+v", ev)
	}
	assert.NotContains(t, logs.String(), e.upUser)
	assert.Contains(t, logs.String(), "analyst-bot")
}
