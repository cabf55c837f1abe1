package pgproxy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// keyhole accepts a startup client_encoding exactly when Postgres reads it
// as UTF8 (asyncpg sends 'utf-8', quotes included): each spelling is tried
// on the real server and through keyhole.
func TestStartupClientEncoding(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	spellings := []string{
		"UTF8", "utf8", "'utf-8'", "utf-8", "UTF_8", "Unicode", "UNICODE", "u.t.f-8", " utf8 ",
		"\"utf8\"", "utf8\u00e9", "ｕｔｆ8", "utf8mb4", "utf16", "latin1", "LATIN1", "sql_ascii", "win1252",
		"utf", "uni-code", "x", "",
		// The value is cut to 63 bytes before it is read.
		"utf8" + strings.Repeat(".", 70), strings.Repeat(".", 59) + "utf8", strings.Repeat(".", 60) + "utf8",
	}
	ctx := context.Background()
	for _, v := range spellings {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			direct, err := pgconn.ParseConfig(e.db.DSN)
			require.NoError(t, err)
			direct.RuntimeParams["client_encoding"] = v
			pgUTF8 := false
			if pc, err := pgconn.ConnectConfig(cctx, direct); err == nil {
				// Postgres reports UTF8 by its name, except that it keeps
				// the spelling UNICODE (for old JDBC drivers).
				enc := pc.ParameterStatus("client_encoding")
				pgUTF8 = enc == "UTF8" || enc == "UNICODE"
				_ = pc.Close(cctx)
			}

			cfg, err := pgconn.ParseConfig(e.dsn("analyst-bot"))
			require.NoError(t, err)
			cfg.RuntimeParams["client_encoding"] = v
			pc, err := pgconn.ConnectConfig(cctx, cfg)
			if err == nil {
				assert.Equal(t, "UTF8", pc.ParameterStatus("client_encoding"))
				_ = pc.Close(cctx)
			} else {
				assert.Equal(t, "0A000", sqlState(err), "err: %v", err)
			}
			assert.Equal(t, pgUTF8, err == nil, "Postgres reads %q as UTF8: %v; keyhole accepted it: %v (%v)", v, pgUTF8, err == nil, err)
		})
	}
}
