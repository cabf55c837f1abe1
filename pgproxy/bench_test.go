package pgproxy_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// BenchmarkQuery compares a point read and a 1000-row read through
// keyhole with the same reads on a direct connection.
func BenchmarkQuery(b *testing.B) {
	e := newEnv(b, envOpts{})
	ctx := context.Background()
	conns := map[string]*pgx.Conn{"direct": e.direct(), "keyhole": e.connect(pgx.QueryExecModeCacheStatement)}
	for _, name := range []string{"direct", "keyhole"} {
		c := conns[name]
		b.Run(name+"/point", func(b *testing.B) {
			var item string
			for b.Loop() {
				require.NoError(b, c.QueryRow(ctx, "SELECT item FROM orders WHERE id = $1", 7).Scan(&item))
			}
		})
		b.Run(name+"/rows", func(b *testing.B) {
			for b.Loop() {
				rows, err := c.Query(ctx, "SELECT a.id, b.item FROM orders a, orders b")
				require.NoError(b, err)
				for rows.Next() {
				}
				require.NoError(b, rows.Err())
			}
		})
	}
}
