package sqlpolicy_test

import (
	"fmt"
	"math/rand/v2"
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

// novelShapes are statements of different shapes an agent might write.
// BenchmarkCheckNovel gives each use its own table alias (%[1]d), so no
// text and no normalized form repeats: every Check is a cache miss.
var novelShapes = []string{
	// benchJoin's shape: the statement issue 8 sets the ≤ 30 µs goal on.
	`SELECT o%[1]d.id, c.name, i.sku, i.qty FROM public.orders o%[1]d ` +
		`JOIN public.customers c ON c.id = o%[1]d.customer_id ` +
		`JOIN public.order_items i ON i.order_id = o%[1]d.id ` +
		`WHERE o%[1]d.status = 'open' AND o%[1]d.total > 100 ` +
		`ORDER BY o%[1]d.created_at DESC LIMIT 50`,
	`SELECT c%[1]d.name, count(*) AS n FROM customers c%[1]d ` +
		`LEFT JOIN orders o ON o.customer_id = c%[1]d.id ` +
		`WHERE c%[1]d.created_at > now() - interval '30 days' ` +
		`GROUP BY c%[1]d.name HAVING count(*) > 3 ORDER BY n DESC`,
	`SELECT o%[1]d.id, o%[1]d.total FROM orders o%[1]d ` +
		`WHERE o%[1]d.customer_id IN (SELECT id FROM customers WHERE lower(name) LIKE 'a%%') ` +
		`AND o%[1]d.status IN ('open', 'paid') LIMIT 20 OFFSET 40`,
	`WITH recent%[1]d AS (SELECT order_id, count(qty) AS q FROM order_items GROUP BY order_id) ` +
		`SELECT o.id, r.q FROM orders o JOIN recent%[1]d r ON r.order_id = o.id ` +
		`WHERE r.q >= 10 ORDER BY r.q DESC`,
	`SELECT i%[1]d.sku, i%[1]d.qty * 2 AS double_qty FROM order_items i%[1]d ` +
		`WHERE i%[1]d.order_id = 42 AND i%[1]d.sku <> 'x-1'`,
}

// BenchmarkCheckNovel is the cold path with the cache on, as an agent
// that never repeats itself meets it: the exact and normalized lookups
// miss, then the text is parsed, analyzed, decided and stored. Each op
// takes the next shape in turn.
func BenchmarkCheckNovel(b *testing.B) {
	e := benchEngine(b, sp.EngineOptions{CacheBytes: 4 << 20})
	p, s := sp.Principal{Agent: "bench"}, &pganalyze.Session{}
	for _, shape := range novelShapes {
		if d, _ := e.Check(p, fmt.Sprintf(shape, 0), s); !d.Allowed() {
			b.Fatalf("novel shape denied: %s %+v\n%s", d.Message, d.Reasons, shape)
		}
	}
	const distinct = 1 << 12
	texts := make([]string, distinct*len(novelShapes))
	for i := range texts {
		texts[i] = fmt.Sprintf(novelShapes[i%len(novelShapes)], i+1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if i == len(texts) {
			// Start over with a new cache: the texts must stay unseen.
			b.StopTimer()
			e = benchEngine(b, sp.EngineOptions{CacheBytes: 4 << 20})
			i = 0
			b.StartTimer()
		}
		e.Check(p, texts[i], s)
		i++
	}
}

// BenchmarkCheckNewLiteral is pgbench -S in simple mode: one short
// statement with a literal never sent before, of a shape seen before.
// The texts repeat only after 1<<18 checks, by when the exact level's
// doorkeeper has forgotten them, so every Check misses the exact level
// and is answered by the normalized one.
func BenchmarkCheckNewLiteral(b *testing.B) {
	e := benchEngine(b, sp.EngineOptions{})
	p, s := sp.Principal{Agent: "bench"}, &pganalyze.Session{}
	const distinct = 1 << 18
	texts := make([]string, distinct)
	for i := range texts {
		texts[i] = "SELECT total FROM orders WHERE id = " + strconv.Itoa(i*7919+1) + ";"
	}
	if d, _ := e.Check(p, texts[0], s); !d.Allowed() {
		b.Fatalf("benchmark statement denied: %s", d.Message)
	}
	b.ReportAllocs()
	i := 1
	for b.Loop() {
		e.Check(p, texts[i%distinct], s)
		i++
	}
}

// BenchmarkCheckRandomLiteral is pgbench -S as it really draws: account
// ids uniform over 500000 (scale 5), so a text now and then comes again
// and the exact level's doorkeeper admits it, where BenchmarkCheckNewLiteral
// never repeats one.
func BenchmarkCheckRandomLiteral(b *testing.B) {
	e := benchEngine(b, sp.EngineOptions{})
	p, s := sp.Principal{Agent: "bench"}, &pganalyze.Session{}
	rng := rand.New(rand.NewPCG(1, 2))
	texts := make([]string, 1<<18)
	for i := range texts {
		texts[i] = "SELECT total FROM orders WHERE id = " + strconv.Itoa(1+rng.IntN(500000)) + ";"
	}
	if d, _ := e.Check(p, texts[0], s); !d.Allowed() {
		b.Fatalf("benchmark statement denied: %s", d.Message)
	}
	b.ReportAllocs()
	i := 1
	for b.Loop() {
		e.Check(p, texts[i%len(texts)], s)
		i++
	}
}

// BenchmarkCheckDigitVariant is pgbench -S in simple mode: one text with
// a new account id (six digits) every time, in one session, whose memo
// (RecentText) answers it. In "two shapes" the session alternates two
// such texts of different shapes, so the memo never answers and every
// text takes the fast lookup, plus what remembering it costs.
func BenchmarkCheckDigitVariant(b *testing.B) {
	for _, shapes := range []int{1, 2} {
		b.Run(map[int]string{1: "one shape", 2: "two shapes"}[shapes], func(b *testing.B) {
			e := benchEngine(b, sp.EngineOptions{})
			p, s := sp.Principal{Agent: "bench"}, &pganalyze.Session{}
			texts := make([]string, 1<<16)
			for i := range texts {
				col := "total"
				if shapes == 2 && i%2 == 1 {
					col = "customer_id"
				}
				texts[i] = "SELECT " + col + " FROM orders WHERE id = " + strconv.Itoa(100000+i*13) + ";"
			}
			for _, q := range texts[:2] {
				if d, _ := e.Check(p, q, s); !d.Allowed() {
					b.Fatalf("benchmark statement denied: %s", d.Message)
				}
			}
			b.ReportAllocs()
			i := 2
			for b.Loop() {
				e.Check(p, texts[i%len(texts)], s)
				i++
			}
		})
	}
}

// BenchmarkCheckShortRepeat is a short text sent again and again, word for
// word: what the fast level's going first (minExactFirst) costs it.
func BenchmarkCheckShortRepeat(b *testing.B) {
	e := benchEngine(b, sp.EngineOptions{})
	p, s := sp.Principal{Agent: "bench"}, &pganalyze.Session{}
	const q = "SELECT total FROM orders WHERE id = 7;"
	if d, _ := e.Check(p, q, s); !d.Allowed() {
		b.Fatalf("benchmark statement denied: %s", d.Message)
	}
	b.ReportAllocs()
	for b.Loop() {
		e.Check(p, q, s)
	}
}
