package catalog_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/internal/testpg"
)

// BenchmarkLoadPostgres measures a full introspection, which the proxy runs
// at start and on every reload.
func BenchmarkLoadPostgres(b *testing.B) {
	db := testpg.New(b, shopSQL)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db.DSN)
	require.NoError(b, err)
	defer conn.Close(ctx)
	for b.Loop() {
		if _, err := catalog.LoadPostgres(ctx, conn); err != nil {
			b.Fatal(err)
		}
	}
}
