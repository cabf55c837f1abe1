package pgproxy_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// An integrity constraint violation describes the offending row in its
// DETAIL, with every column the upstream login may read: here the login
// may read all of customers, the role not its labelled email. An UPDATE
// of name the policy allows fails a CHECK, and the row's email must not
// come back with the error; a violation on a table the role may read
// whole keeps its detail.
func TestConstraintErrorDetailKeepsUnreadableColumns(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, e.db.DSN)
	require.NoError(t, err)
	_, err = admin.Exec(ctx, "ALTER TABLE customers ADD CONSTRAINT short_name CHECK (length(name) < 10), ALTER name SET NOT NULL")
	require.NoError(t, err)
	require.NoError(t, admin.Close(ctx))
	e.allowAnalyst("update: {public.customers: [name]}")

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		c := e.connect(mode)
		for _, q := range []string{
			"UPDATE customers SET name = 'a much longer name' WHERE id = 1", // check
			"UPDATE customers SET name = NULL WHERE id = 1",                 // not-null
		} {
			_, err := c.Exec(ctx, q)
			var pe *pgconn.PgError
			require.True(t, errors.As(err, &pe), "%s: %v", q, err)
			assert.True(t, strings.HasPrefix(pe.Code, "23"), "%s: %v", q, err)
			assert.NotContains(t, pe.Detail, "ann@example.com", q)
			assert.Contains(t, pe.Detail, `may not read every column of "public"."customers"`, q)
			assert.Equal(t, "customers", pe.TableName, "the error's other fields pass")
		}
		_, err := c.Exec(ctx, "INSERT INTO orders (id, item, amount) VALUES (1, 'x', 1)")
		var pe *pgconn.PgError
		require.True(t, errors.As(err, &pe), "%v", err)
		assert.Equal(t, "23505", pe.Code)
		assert.Equal(t, "Key (id)=(1) already exists.", pe.Detail, "the role may read all of orders")
		// The session goes on.
		var n int
		require.NoError(t, c.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n))
		assert.Equal(t, 20, n)
	}
}
