package sqlpolicy_test

import (
	"errors"
	"regexp"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

// testCatalog is a small shop schema: the tables of the README example,
// a view over customers, a comment-labelled column, built-in and user
// functions and one system relation.
func testCatalog() *catalog.Catalog {
	cols := func(names ...string) []*catalog.Column {
		out := make([]*catalog.Column, len(names))
		for i, n := range names {
			out[i] = &catalog.Column{Name: n, Type: "text"}
		}
		return out
	}
	customers := &catalog.Relation{Schema: "public", Name: "customers", Kind: catalog.KindTable,
		Columns: cols("id", "name", "email", "ssn", "created_at", "notes")}
	customers.Columns[5].Comment = "free text. keyhole: pii.free_text"
	customers.Columns[5].Labels = []string{"pii.free_text"}
	orders := &catalog.Relation{Schema: "public", Name: "orders", Kind: catalog.KindTable,
		Columns: cols("id", "customer_id", "total", "status", "created_at")}
	items := &catalog.Relation{Schema: "public", Name: "order_items", Kind: catalog.KindTable,
		Columns: cols("order_id", "sku", "qty", "price")}
	secrets := &catalog.Relation{Schema: "public", Name: "secrets", Kind: catalog.KindTable,
		Columns: cols("id", "value")}
	view := &catalog.Relation{Schema: "public", Name: "customer_view", Kind: catalog.KindView,
		Columns: cols("id", "ssn"), Definition: "SELECT id, ssn FROM public.customers"}
	legacy := &catalog.Relation{Schema: "public", Name: "legacy", Kind: catalog.KindTable,
		Columns: cols("id", "blob")}
	legacy.Columns[1].Labels = []string{catalog.InvalidLabel}
	seq := &catalog.Relation{Schema: "public", Name: "order_seq", Kind: catalog.KindSequence,
		Columns: cols("last_value", "log_cnt", "is_called")}
	pgClass := &catalog.Relation{Schema: "pg_catalog", Name: "pg_class", Kind: catalog.KindTable,
		Columns: cols("oid", "relname"), System: true}
	return &catalog.Catalog{
		Dialect:    "postgres",
		Database:   "shop",
		SearchPath: []string{"pg_catalog", "public"},
		Relations: map[string]map[string]*catalog.Relation{
			"public": {"customers": customers, "orders": orders, "order_items": items, "secrets": secrets,
				"customer_view": view, "legacy": legacy, "order_seq": seq},
			"pg_catalog": {"pg_class": pgClass},
		},
		Functions: map[string]map[string]*catalog.Function{
			"pg_catalog": {
				"lower":           {Schema: "pg_catalog", Name: "lower", Kind: "function", Volatility: catalog.Immutable, Builtin: true},
				"count":           {Schema: "pg_catalog", Name: "count", Kind: "aggregate", Volatility: catalog.Immutable, Builtin: true},
				"now":             {Schema: "pg_catalog", Name: "now", Kind: "function", Volatility: catalog.Stable, Builtin: true},
				"current_setting": {Schema: "pg_catalog", Name: "current_setting", Kind: "function", Volatility: catalog.Stable, Builtin: true},
			},
			"public": {
				"my_fn":    {Schema: "public", Name: "my_fn", Kind: "function", Volatility: catalog.Stable, Language: "sql"},
				"other_fn": {Schema: "public", Name: "other_fn", Kind: "function", Volatility: catalog.Volatile, Language: "plpgsql"},
				"refund":   {Schema: "public", Name: "refund", Kind: "procedure", Volatility: catalog.Volatile, Language: "plpgsql"},
			},
		},
	}
}

// fakeAnalyzer answers from a table of texts and counts analyses, so cache
// tests can tell a hit from a miss. Normalize replaces digit runs with $1,
// the way a real normalizer replaces literals; texts starting with "bad"
// do not normalize.
type fakeAnalyzer struct {
	mu      sync.Mutex
	access  map[string]*sqlpolicy.Access
	calls   map[string]int
	total   int
	digits  *regexp.Regexp
	deflt   func(sql string) *sqlpolicy.Access
	normErr error
}

func newFakeAnalyzer(deflt func(sql string) *sqlpolicy.Access) *fakeAnalyzer {
	return &fakeAnalyzer{access: map[string]*sqlpolicy.Access{}, calls: map[string]int{},
		digits: regexp.MustCompile(`[0-9]+`), deflt: deflt, normErr: errors.New("does not parse")}
}

func (f *fakeAnalyzer) NewSession() sqlpolicy.Session { return &pganalyze.Session{} }

func (f *fakeAnalyzer) Analyze(sql string, _ sqlpolicy.Session) *sqlpolicy.Access {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[sql]++
	f.total++
	if sql == "panic" {
		panic("analyzer bug")
	}
	if a := f.access[sql]; a != nil {
		return a
	}
	return f.deflt(sql)
}

func (f *fakeAnalyzer) Normalize(sql string) (string, error) {
	if sql == "panic" {
		panic("normalizer bug")
	}
	if len(sql) >= 3 && sql[:3] == "bad" {
		return "", f.normErr
	}
	return f.digits.ReplaceAllString(sql, "$$1"), nil
}

func (f *fakeAnalyzer) analyses() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.total
}

func mustPolicy(t testing.TB, yaml string, cat *catalog.Catalog) *sqlpolicy.Policy {
	t.Helper()
	p, _, err := sqlpolicy.ParsePolicy([]byte(yaml), "policy.yaml", cat)
	require.NoError(t, err)
	return p
}
