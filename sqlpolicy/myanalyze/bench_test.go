package myanalyze_test

import (
	"strconv"
	"testing"

	"github.com/keyholedb/keyhole/catalog"
	sp "github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/myanalyze"
)

// The benchmarks use an in-memory catalog (fuzzCatalog plus the tables
// below), so they need no database.

const benchPolicy = `labels:
  shop.customers.ssn: [pii.ssn]
roles:
  analyst:
    upstream: shop
    allow:
      - select: [shop.orders, shop.customers, shop.order_items]
    deny_labels: [pii.*]
agents:
  bench: {role: analyst}
`

func benchCatalog() *catalog.Catalog {
	cat := fuzzCatalog()
	cols := func(names ...string) []*catalog.Column {
		var out []*catalog.Column
		for _, n := range names {
			out = append(out, &catalog.Column{Name: n, Type: "int"})
		}
		return out
	}
	cat.Relations["shop"]["orders"].Columns = cols("id", "customer_id", "total", "status", "created_at")
	cat.Relations["shop"]["order_items"] = &catalog.Relation{Schema: "shop", Name: "order_items", Kind: catalog.KindTable,
		Columns: cols("order_id", "sku", "qty")}
	return cat
}

// benchJoin is a three-table join with WHERE, ORDER BY and LIMIT; total
// varies the literal.
func benchJoin(total int) string {
	return `SELECT o.id, c.name, i.sku, i.qty FROM shop.orders o ` +
		`JOIN shop.customers c ON c.id = o.customer_id ` +
		`JOIN shop.order_items i ON i.order_id = o.id ` +
		`WHERE o.status = 'open' AND o.total > ` + strconv.Itoa(total) + ` ` +
		`ORDER BY o.created_at DESC LIMIT 50`
}

func benchEngine(b *testing.B, opts sp.EngineOptions) *sp.Engine {
	b.Helper()
	cat := benchCatalog()
	pol, _, err := sp.ParsePolicy([]byte(benchPolicy), "bench.yaml", cat)
	if err != nil {
		b.Fatal(err)
	}
	e := sp.NewEngine(pol, cat, myanalyze.New(cat, myanalyze.Options{}), opts)
	d, _ := e.Check(sp.Principal{Agent: "bench"}, benchJoin(0), e.NewSession())
	if !d.Allowed() {
		b.Fatalf("benchmark statement denied: %s %+v", d.Message, d.Reasons)
	}
	return e
}

// BenchmarkAnalyzeJoin is parse + analysis of a three-table join.
func BenchmarkAnalyzeJoin(b *testing.B) {
	an := myanalyze.New(benchCatalog(), myanalyze.Options{})
	q := benchJoin(100)
	b.ReportAllocs()
	for b.Loop() {
		an.Analyze(q, nil)
	}
}

// BenchmarkCheckUncached is the never-seen path: cache disabled, so every
// Check lexes, parses, analyzes and decides.
func BenchmarkCheckUncached(b *testing.B) {
	e := benchEngine(b, sp.EngineOptions{CacheBytes: -1})
	p, s, q := sp.Principal{Agent: "bench"}, e.NewSession(), benchJoin(100)
	b.ReportAllocs()
	for b.Loop() {
		e.Check(p, q, s)
	}
}

// BenchmarkCheckLiteralVaried sends the join with a different literal each
// time: the exact-text level misses, the normalized level hits.
func BenchmarkCheckLiteralVaried(b *testing.B) {
	e := benchEngine(b, sp.EngineOptions{})
	p, s := sp.Principal{Agent: "bench"}, e.NewSession()
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

// BenchmarkCheckCached repeats one text: an exact-level hit.
func BenchmarkCheckCached(b *testing.B) {
	e := benchEngine(b, sp.EngineOptions{})
	p, s, q := sp.Principal{Agent: "bench"}, e.NewSession(), benchJoin(100)
	e.Check(p, q, s)
	b.ReportAllocs()
	for b.Loop() {
		e.Check(p, q, s)
	}
}

// BenchmarkNormalize is the normalizer alone (paid on every exact miss).
func BenchmarkNormalize(b *testing.B) {
	an := myanalyze.New(benchCatalog(), myanalyze.Options{})
	q := benchJoin(100)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = an.Normalize(q)
	}
}

// BenchmarkCheckPointSelectLiterals is sysbench's oltp_point_select with
// --db-ps-mode=disable: one short text, a new id literal each time out of
// as many ids as the table has rows, so an id repeats only after a while.
func BenchmarkCheckPointSelectLiterals(b *testing.B) {
	e := benchEngine(b, sp.EngineOptions{})
	p, s := sp.Principal{Agent: "bench"}, e.NewSession()
	const distinct = 10000
	texts := make([]string, distinct)
	for i := range texts {
		texts[i] = "SELECT id FROM shop.orders WHERE id=" + strconv.Itoa((i*7919)%distinct+1)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e.Check(p, texts[i%distinct], s)
		i++
	}
}

// BenchmarkCheckNewLiteral is sysbench's point select with a literal
// never sent before, of a shape seen before: the texts repeat only after
// 1<<18 checks, by when the exact level's doorkeeper has forgotten them,
// so every Check misses the exact level and is answered by the
// normalized one.
func BenchmarkCheckNewLiteral(b *testing.B) {
	e := benchEngine(b, sp.EngineOptions{})
	p, s := sp.Principal{Agent: "bench"}, e.NewSession()
	const distinct = 1 << 18
	texts := make([]string, distinct)
	for i := range texts {
		texts[i] = "SELECT id FROM shop.orders WHERE id=" + strconv.Itoa(i*7919+1)
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
