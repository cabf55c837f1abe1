package sqlpolicy_test

import (
	"strconv"
	"testing"

	sp "github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

const benchPolicy = `labels:
  public.customers.ssn: [pii.ssn]
roles:
  analyst:
    upstream: shop
    allow:
      - select: [public.orders, public.customers, public.order_items]
    deny_labels: [pii.*]
agents:
  bench: {role: analyst}
`

// benchJoin is a three-table join with WHERE, ORDER BY and LIMIT; the
// literal in the WHERE clause varies in BenchmarkCheckLiteralVaried.
func benchJoin(total int) string {
	return `SELECT o.id, c.name, i.sku, i.qty FROM public.orders o ` +
		`JOIN public.customers c ON c.id = o.customer_id ` +
		`JOIN public.order_items i ON i.order_id = o.id ` +
		`WHERE o.status = 'open' AND o.total > ` + strconv.Itoa(total) + ` ` +
		`ORDER BY o.created_at DESC LIMIT 50`
}

func benchEngine(b *testing.B, opts sp.EngineOptions) *sp.Engine {
	b.Helper()
	cat := testCatalog()
	e := sp.NewEngine(mustPolicy(b, benchPolicy, cat), cat, pganalyze.New(cat, pganalyze.Options{}), opts)
	d, _ := e.Check(sp.Principal{Agent: "bench"}, benchJoin(0), &pganalyze.Session{})
	if !d.Allowed() {
		b.Fatalf("benchmark statement denied: %s %+v", d.Message, d.Reasons)
	}
	return e
}

// BenchmarkCheckUncached is the cold path: cache disabled, so every Check
// parses, analyzes and decides.
func BenchmarkCheckUncached(b *testing.B) {
	e := benchEngine(b, sp.EngineOptions{CacheBytes: -1})
	p, s, q := sp.Principal{Agent: "bench"}, &pganalyze.Session{}, benchJoin(100)
	b.ReportAllocs()
	for b.Loop() {
		e.Check(p, q, s)
	}
}

// BenchmarkCheckLiteralVaried sends the same join with a different literal
// each time: the exact-text level misses, the normalized level hits.
func BenchmarkCheckLiteralVaried(b *testing.B) {
	e := benchEngine(b, sp.EngineOptions{})
	p, s := sp.Principal{Agent: "bench"}, &pganalyze.Session{}
	const distinct = 1 << 16
	texts := make([]string, distinct)
	for i := range texts {
		texts[i] = benchJoin(i + 1)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e.Check(p, texts[i%distinct], s)
		i++
	}
}

// BenchmarkCheckCached repeats one text: an exact-level hit, which must
// not allocate.
func BenchmarkCheckCached(b *testing.B) {
	e := benchEngine(b, sp.EngineOptions{})
	p, s, q := sp.Principal{Agent: "bench"}, &pganalyze.Session{}, benchJoin(100)
	e.Check(p, q, s)
	b.ReportAllocs()
	for b.Loop() {
		e.Check(p, q, s)
	}
}

// BenchmarkDecide is the decision alone, on a ready Access.
func BenchmarkDecide(b *testing.B) {
	cat := testCatalog()
	pol := mustPolicy(b, benchPolicy, cat)
	a := pganalyze.New(cat, pganalyze.Options{}).Analyze(benchJoin(100), &pganalyze.Session{})
	p := sp.Principal{Agent: "bench"}
	b.ReportAllocs()
	for b.Loop() {
		pol.Decide(p, a, cat)
	}
}
