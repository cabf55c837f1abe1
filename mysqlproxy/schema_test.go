package mysqlproxy_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A table an agent creates is known to keyhole's later decisions without
// a SIGHUP: DDL commits implicitly, and once it has run the gateway reads
// the catalog again. Until then a statement naming the table is refused
// as naming a table that does not exist, so the test retries for a while.
func TestCreatedTableIsKnown(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.setPolicy(t, `
roles:
  analyst:
    upstream: shop
    allow:
      - select: [%[1]s.orders]
      - ddl: [%[1]s.*]
      - insert: [%[1]s.*]
`+testAgents)
	e.reload(t)
	ctx := context.Background()
	c := e.conn(e.cfg("analyst-bot"))
	_, err := c.ExecContext(ctx, "CREATE TABLE scratch_auto (id INT)")
	require.NoError(t, err)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err = c.ExecContext(ctx, "INSERT INTO scratch_auto VALUES (1)"); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // a poll: the catalog is read in the background
	}
	require.NoError(t, err, "INSERT INTO scratch_auto still refused")
	assert.Equal(t, 1, e.count("scratch_auto"))
}
