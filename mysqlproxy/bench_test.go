package mysqlproxy_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"
)

// BenchmarkPointSelect runs one point select per op with go-sql-driver,
// direct and through keyhole, as text (interpolated) and as a binary
// prepared statement. The driver and the proxy share the process, so
// keyhole's own allocations per query are keyhole's allocs/op minus
// direct's.
func BenchmarkPointSelect(b *testing.B) {
	e := newEnv(b, envOpts{})
	ctx := context.Background()
	for _, target := range []string{"direct", "keyhole"} {
		for _, mode := range []string{"text", "binary"} {
			b.Run(target+"/"+mode, func(b *testing.B) {
				var db *sql.DB
				if target == "direct" {
					c, err := mysql.ParseDSN(e.db.DSN)
					require.NoError(b, err)
					c.User, c.Passwd, c.MultiStatements = e.upUser, e.upPW, false
					c.InterpolateParams = mode == "text"
					db = e.open(c)
				} else {
					c := e.cfg("analyst-bot")
					c.InterpolateParams = mode == "text"
					db = e.open(c)
				}
				var st *sql.Stmt
				if mode == "binary" {
					var err error
					st, err = db.PrepareContext(ctx, "SELECT id, item FROM orders WHERE id = ?")
					require.NoError(b, err)
				}
				var id int
				var item string
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					var err error
					if st != nil {
						err = st.QueryRowContext(ctx, 3).Scan(&id, &item)
					} else {
						err = db.QueryRowContext(ctx, "SELECT id, item FROM orders WHERE id = ?", 3).Scan(&id, &item)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
