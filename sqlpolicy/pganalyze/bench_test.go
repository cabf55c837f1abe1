package pganalyze_test

import (
	"testing"

	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

const benchJoin = `SELECT c.name, o.total, p.name
FROM customers c JOIN orders o ON o.customer_id = c.id JOIN products p ON p.id = o.id
WHERE o.status = 'paid' AND c.created_at > now() - interval '7 days'
ORDER BY o.total DESC LIMIT 10`

// BenchmarkAnalyzeJoin is parse + analysis of a three-table join.
func BenchmarkAnalyzeJoin(b *testing.B) {
	a := analyzer(b)
	b.ReportAllocs()
	for b.Loop() {
		a.Analyze(benchJoin, nil)
	}
}

// BenchmarkAnalyzeView measures a query through a cached view.
func BenchmarkAnalyzeView(b *testing.B) {
	a := analyzer(b)
	b.ReportAllocs()
	for b.Loop() {
		a.Analyze("SELECT customer, total FROM order_summary WHERE total > 10", nil)
	}
}

// pgbenchSelect is pgbench -S's statement in simple mode.
const pgbenchSelect = "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;"

// BenchmarkNormalizeShaped is pg_query's Normalize (a full parse) of
// pgbench's statement: what a literal variant of a cached statement costs
// without FastNormal.
func BenchmarkNormalizeShaped(b *testing.B) {
	a := pganalyze.New(nil, pganalyze.Options{})
	b.ReportAllocs()
	for b.Loop() {
		_, _ = a.NormalizeShaped(pgbenchSelect)
	}
}

// BenchmarkFastNormal is FastNormal of pgbench's statement.
func BenchmarkFastNormal(b *testing.B) {
	a := pganalyze.New(nil, pganalyze.Options{})
	var f sqlpolicy.FastForm
	b.ReportAllocs()
	for b.Loop() {
		a.FastNormal(pgbenchSelect, &f)
	}
}

// BenchmarkShape is the scan that bounds a text before parsing and
// hashes its shape, of pgbench's statement.
func BenchmarkShape(b *testing.B) {
	a := pganalyze.New(nil, pganalyze.Options{})
	b.ReportAllocs()
	for b.Loop() {
		a.Shape(pgbenchSelect)
	}
}
