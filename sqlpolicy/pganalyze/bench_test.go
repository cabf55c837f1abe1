package pganalyze_test

import (
	"testing"
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
