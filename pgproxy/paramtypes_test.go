package pgproxy_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// TestParseUserParamType: a Parse that declares a parameter of a
// user-defined type makes Postgres convert the Bind value to that type,
// which for a domain runs its check constraints with the session's
// privileges. The domain here checks a value against customers.email, so
// Bind is an oracle on a labelled column while the text, SELECT $1 IS NOT
// NULL, reads nothing. keyhole refuses such a Parse (0A000) and the session
// goes on; the same text with the type left unspecified or built in is
// allowed, and a cast to the domain in the text is decided as a call of
// the domain's function.
func TestParseUserParamType(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := e.direct()
	_, err := admin.Exec(ctx, `
CREATE FUNCTION known_email(v text) RETURNS boolean LANGUAGE sql STABLE
    AS $$ SELECT EXISTS (SELECT 1 FROM customers WHERE email = v) $$;
CREATE DOMAIN known_email_t AS text CHECK (known_email(VALUE))`)
	require.NoError(t, err)
	var oid uint32
	require.NoError(t, admin.QueryRow(ctx, "SELECT 'known_email_t'::regtype::oid").Scan(&oid))

	// The oracle is real for keyhole's upstream login.
	up, err := pgx.Connect(ctx, e.db.DSN)
	require.NoError(t, err)
	defer up.Close(context.Background())
	_, err = up.PgConn().Prepare(ctx, "probe", "SELECT $1 = 'x'", []uint32{oid})
	require.NoError(t, err)
	assert.NoError(t, up.PgConn().ExecPrepared(ctx, "probe", [][]byte{[]byte("ann@example.com")}, nil, nil).Read().Err)
	assert.Equal(t, "23514", sqlState(up.PgConn().ExecPrepared(ctx, "probe", [][]byte{[]byte("nobody@example.com")}, nil, nil).Read().Err))

	// The catalog keyhole decides with must know the domain's function.
	require.NoError(t, e.g.Reload())

	c := e.connect(pgx.QueryExecModeExec)
	pc := c.PgConn()
	_, err = pc.Prepare(ctx, "probe", "SELECT $1 = 'x'", []uint32{oid})
	assert.Equal(t, "0A000", sqlState(err), "a user-defined parameter type: %v", err)
	err = pc.ExecPrepared(ctx, "probe", [][]byte{[]byte("ann@example.com")}, nil, nil).Read().Err
	assert.Error(t, err, "the refused statement does not exist")

	for _, oids := range [][]uint32{nil, {0}, {25}} {
		_, err = pc.Prepare(ctx, "plain", "SELECT $1 = 'x'", oids)
		require.NoError(t, err, "param types %v", oids)
		assert.NoError(t, pc.ExecPrepared(ctx, "plain", [][]byte{[]byte("nobody@example.com")}, nil, nil).Read().Err)
		require.NoError(t, pc.Exec(ctx, "DEALLOCATE plain").Close())
	}

	// Named in the text, the conversion is the analyzer's: a call of the
	// domain's user function, which the policy does not allow.
	_, err = pc.Prepare(ctx, "cast", "SELECT $1::known_email_t = 'x'", nil)
	assert.Equal(t, "42501", sqlState(err), "%v", err)

	var denied int
	for _, ev := range e.audit.Events() {
		if ev.Decision == sqlpolicy.Deny && ev.ErrorCode == "0A000" {
			denied++
		}
	}
	assert.Equal(t, 1, denied, "the refused Parse is audited")
}
