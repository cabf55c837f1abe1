//go:build unix

package pgparse_test

import (
	"syscall"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze/internal/pgparse"
)

// benchTexts are the three-table join of sqlpolicy's BenchmarkCheck* and a
// few corpus statements of other shapes and sizes.
var benchTexts = []struct{ name, sql string }{
	{"join", `SELECT o.id, c.name, i.sku, i.qty FROM public.orders o ` +
		`JOIN public.customers c ON c.id = o.customer_id ` +
		`JOIN public.order_items i ON i.order_id = o.id ` +
		`WHERE o.status = 'open' AND o.total > 100 ORDER BY o.created_at DESC LIMIT 50`},
	{"short", `SELECT id, name, created_at FROM customers`},
	{"cte", `WITH t AS (SELECT customer_id, sum(total) AS s FROM orders GROUP BY 1) ` +
		`SELECT c.name, t.s FROM t JOIN customers c ON c.id = t.customer_id`},
	{"upsert", `INSERT INTO products VALUES (1, 'a', 2) ON CONFLICT (id) DO UPDATE SET name = excluded.name RETURNING *`},
	{"psql", `SELECT n.nspname as "Schema", c.relname as "Name",
  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' END as "Type",
  pg_catalog.pg_get_userbyid(c.relowner) as "Owner",
  pg_catalog.pg_size_pretty(pg_catalog.pg_table_size(c.oid)) as "Size",
  pg_catalog.obj_description(c.oid, 'pg_class') as "Description"
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam
WHERE c.relkind IN ('r','p','') AND n.nspname <> 'pg_catalog' AND n.nspname !~ '^pg_toast'
  AND n.nspname <> 'information_schema' AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 1,2`},
}

// cpuTime is the process's user+system CPU time: on a machine shared with
// other builds it moves much less than wall time.
func cpuTime() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func bench(b *testing.B, f func()) {
	b.ReportAllocs()
	start, n := cpuTime(), 0
	for b.Loop() {
		f()
		n++
	}
	b.ReportMetric(float64(cpuTime()-start)/float64(n), "cpu-ns/op")
}

// BenchmarkParse compares pg.Parse (protobuf) with Parse (JSON), and shows
// the two parts of Parse: libpg_query's JSON output alone (C, plus one
// copy into Go) and the decoder alone.
func BenchmarkParse(b *testing.B) {
	for _, tc := range benchTexts {
		js, err := pg.ParseToJSON(tc.sql)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name+"/pg.Parse", func(b *testing.B) { bench(b, func() { _, _ = pg.Parse(tc.sql) }) })
		b.Run(tc.name+"/pgparse.Parse", func(b *testing.B) { bench(b, func() { _, _ = pgparse.Parse(tc.sql) }) })
		b.Run(tc.name+"/json-c", func(b *testing.B) { bench(b, func() { _, _ = pg.ParseToJSON(tc.sql) }) })
		b.Run(tc.name+"/json-decode", func(b *testing.B) { bench(b, func() { pgparse.Decode(js) }) })
	}
}

// BenchmarkNormalize is pg.Normalize, which the engine runs on every text
// it has not seen, for comparison with the parse.
func BenchmarkNormalize(b *testing.B) {
	for _, tc := range benchTexts {
		b.Run(tc.name, func(b *testing.B) { bench(b, func() { _, _ = pg.Normalize(tc.sql) }) })
	}
}
