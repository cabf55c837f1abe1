package pgproxy_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A table an agent creates is known to keyhole's later decisions without
// a SIGHUP: once the DDL has taken effect (for one in a transaction
// block, once the block committed) the gateway reads the catalog again.
// Until then a statement naming the table is refused as naming a relation
// that does not exist, so the test retries for a while.
func TestCreatedTableIsKnownAfterCommit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.allowAnalyst("ddl: [public.*]", "insert: [public.*]")
	ctx := context.Background()
	admin := e.direct()
	_, err := admin.Exec(ctx, "GRANT CREATE ON SCHEMA public TO "+e.upUser)
	require.NoError(t, err)
	t.Cleanup(func() {
		// The upstream login owns what it created: gone before the role.
		_, _ = admin.Exec(context.Background(), "DROP TABLE IF EXISTS scratch_auto, scratch_tx; REVOKE CREATE ON SCHEMA public FROM "+e.upUser)
	})
	c := e.connect(pgx.QueryExecModeSimpleProtocol)

	insertSoon := func(table string) {
		t.Helper()
		var err error
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			if _, err = c.Exec(ctx, "INSERT INTO "+table+" VALUES (1)"); err == nil {
				return
			}
			time.Sleep(20 * time.Millisecond) // a poll: the catalog is read in the background
		}
		t.Fatalf("INSERT INTO %s still refused: %v", table, err)
	}

	_, err = c.Exec(ctx, "CREATE TABLE scratch_auto (id int)")
	require.NoError(t, err)
	insertSoon("scratch_auto")

	// In a transaction block the table is not visible to the catalog's
	// reader before COMMIT: a reading at CREATE would miss it for good.
	tx, err := c.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "CREATE TABLE scratch_tx (id int)")
	require.NoError(t, err)
	// A sleep, not a wait on an event: what it gives time to is a reading
	// that must not happen (one started at CREATE would be over by now
	// and have missed the table, so the poll below would time out).
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, tx.Commit(ctx))
	insertSoon("scratch_tx")

	var n int
	require.NoError(t, admin.QueryRow(ctx, "SELECT (SELECT count(*) FROM scratch_auto) + (SELECT count(*) FROM scratch_tx)").Scan(&n))
	assert.Equal(t, 2, n)
}
