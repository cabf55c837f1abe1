package sqlpolicy_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/internal/fixture"
	sp "github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

// selectOrders is what the fake analyzer returns for any text it has no
// entry for: a read of public.orders.id.
func selectOrders(string) *sp.Access { return access(sel("public.orders", "id")) }

func newTestEngine(t testing.TB, opts sp.EngineOptions) (*sp.Engine, *fakeAnalyzer) {
	t.Helper()
	cat := testCatalog()
	fa := newFakeAnalyzer(selectOrders)
	return sp.NewEngine(mustPolicy(t, decidePolicy, cat), cat, fa, opts), fa
}

var analyst = sp.Principal{Agent: "sales-summarizer"}

func TestEngineCache(t *testing.T) {
	t.Parallel()

	t.Run("exact hit", func(t *testing.T) {
		t.Parallel()
		e, fa := newTestEngine(t, sp.EngineOptions{})
		d1, a1 := e.Check(analyst, "SELECT id FROM orders WHERE id = 1", nil)
		d2, a2 := e.Check(analyst, "SELECT id FROM orders WHERE id = 1", nil)
		assert.Same(t, d1, d2)
		assert.Same(t, a1, a2)
		assert.Equal(t, 1, fa.analyses())
		assert.Equal(t, sp.Allow, d1.Effect)
		st := e.CacheStats()
		assert.Equal(t, uint64(1), st.Hits)
		assert.Equal(t, 2, st.Entries, "one exact and one normalized entry")
	})

	t.Run("literal-varied texts share the normalized entry", func(t *testing.T) {
		t.Parallel()
		e, fa := newTestEngine(t, sp.EngineOptions{})
		d1, _ := e.Check(analyst, "SELECT id FROM orders WHERE id = 1", nil)
		d2, _ := e.Check(analyst, "SELECT id FROM orders WHERE id = 2", nil)
		assert.Same(t, d1, d2)
		assert.Equal(t, 1, fa.analyses())
		// Seen once, the second text has no exact entry of its own (the
		// doorkeeper); seen twice, it has.
		assert.Equal(t, 2, e.CacheStats().Entries)
		d3, _ := e.Check(analyst, "SELECT id FROM orders WHERE id = 2", nil)
		assert.Same(t, d1, d3)
		assert.Equal(t, 3, e.CacheStats().Entries)
		hits := e.CacheStats().Hits
		e.Check(analyst, "SELECT id FROM orders WHERE id = 2", nil)
		assert.Equal(t, hits+1, e.CacheStats().Hits, "an exact hit, without the normalized lookup")
		assert.Equal(t, 1, fa.analyses())
	})

	t.Run("literal-sensitive analyses are not shared", func(t *testing.T) {
		t.Parallel()
		e, fa := newTestEngine(t, sp.EngineOptions{})
		fa.access["SET search_path = s1"] = access(sp.Statement{Verb: sp.VerbSet, LiteralSensitive: true,
			Settings: []sp.Setting{{Name: "search_path", Value: "s1"}},
			Problems: []sp.Problem{{Code: sp.ProblemSessionChange, Setting: "search_path"}}})
		fa.access["SET search_path = s2"] = access(sp.Statement{Verb: sp.VerbSet, LiteralSensitive: true,
			Settings: []sp.Setting{{Name: "search_path", Value: "s2", Reset: true}}})
		d1, _ := e.Check(analyst, "SET search_path = s1", nil)
		d2, a2 := e.Check(analyst, "SET search_path = s2", nil)
		assert.Equal(t, 2, fa.analyses())
		assert.Equal(t, sp.Deny, d1.Effect)
		assert.Equal(t, sp.Allow, d2.Effect)
		assert.Equal(t, "s2", a2.Statements[0].Settings[0].Value)
		// Exact repeats still hit.
		e.Check(analyst, "SET search_path = s1", nil)
		assert.Equal(t, 2, fa.analyses())
	})

	t.Run("setting changes are not shared even when not flagged", func(t *testing.T) {
		t.Parallel()
		e, fa := newTestEngine(t, sp.EngineOptions{})
		// An analyzer that forgot LiteralSensitive: the value decides.
		fa.access["SET myapp.mode = 1"] = access(sp.Statement{Verb: sp.VerbSet,
			Settings: []sp.Setting{{Name: "myapp.mode", Value: "1"}}})
		fa.access["SET myapp.mode = 0"] = access(sp.Statement{Verb: sp.VerbSet,
			Settings: []sp.Setting{{Name: "myapp.mode", Value: "0"}},
			Problems: []sp.Problem{{Code: sp.ProblemSessionChange, Setting: "myapp.mode"}}})
		d1, _ := e.Check(analyst, "SET myapp.mode = 1", nil)
		d2, _ := e.Check(analyst, "SET myapp.mode = 0", nil)
		assert.Equal(t, sp.Allow, d1.Effect)
		assert.Equal(t, sp.Deny, d2.Effect)
		assert.Equal(t, 2, fa.analyses())
	})

	t.Run("session generations are separate", func(t *testing.T) {
		t.Parallel()
		e, fa := newTestEngine(t, sp.EngineOptions{})
		const q = "EXECUTE s1"
		fresh := &pganalyze.Session{}
		e.Check(analyst, q, fresh)
		prepared := &pganalyze.Session{}
		prepared.Apply(access(sp.Statement{Verb: sp.VerbPrepare, PrepareName: "s1", Prepared: &sp.Statement{Verb: sp.VerbSelect}}))
		require.NotZero(t, prepared.Generation())
		e.Check(analyst, q, prepared)
		assert.Equal(t, 2, fa.analyses())
		e.Check(analyst, q, prepared)
		e.Check(analyst, q, &pganalyze.Session{})
		assert.Equal(t, 2, fa.analyses())
	})

	t.Run("principals are separate", func(t *testing.T) {
		t.Parallel()
		e, fa := newTestEngine(t, sp.EngineOptions{})
		const q = "SELECT id FROM orders"
		dA, _ := e.Check(analyst, q, nil)
		dB, _ := e.Check(sp.Principal{Agent: "auditor-bot"}, q, nil)
		scoped := sp.Principal{Agent: "sales-summarizer", Scope: []sp.Grant{{Verb: sp.VerbSelect, Tables: []string{"public.customers"}}}}
		dC, _ := e.Check(scoped, q, nil)
		dD, _ := e.Check(sp.Principal{Agent: "sales-summarizer", Scope: []sp.Grant{}}, q, nil)
		assert.Equal(t, 4, fa.analyses())
		assert.Equal(t, "sales-summarizer", dA.Agent)
		assert.Equal(t, "auditor-bot", dB.Agent)
		assert.Equal(t, sp.Allow, dA.Effect)
		assert.Equal(t, sp.Deny, dC.Effect)
		assert.Equal(t, sp.Deny, dD.Effect)
		// A scope equal in value hits the scoped entry.
		dC2, _ := e.Check(sp.Principal{Agent: "sales-summarizer", Scope: []sp.Grant{{Verb: sp.VerbSelect, Tables: []string{"public.customers"}}}}, q, nil)
		assert.Same(t, dC, dC2)
		assert.Equal(t, 4, fa.analyses())
	})

	t.Run("unknown agents are not cached", func(t *testing.T) {
		t.Parallel()
		e, fa := newTestEngine(t, sp.EngineOptions{})
		for range 3 {
			d, _ := e.Check(sp.Principal{Agent: "mallory"}, "SELECT 1", nil)
			assert.Equal(t, sp.ReasonUnknownAgent, d.Reasons[0].Code)
		}
		assert.Equal(t, 3, fa.analyses())
		assert.Zero(t, e.CacheStats().Entries)
	})

	t.Run("text that does not normalize is cached exactly", func(t *testing.T) {
		t.Parallel()
		e, fa := newTestEngine(t, sp.EngineOptions{})
		e.Check(analyst, "bad 1", nil)
		e.Check(analyst, "bad 1", nil)
		e.Check(analyst, "bad 2", nil)
		assert.Equal(t, 2, fa.analyses())
	})

	t.Run("byte bound evicts least recently used", func(t *testing.T) {
		t.Parallel()
		const budget = 16 << 10
		e, fa := newTestEngine(t, sp.EngineOptions{CacheBytes: budget})
		const keep = "SELECT id FROM orders -- keep"
		e.Check(analyst, keep, nil)
		text := func(i int) string {
			// Distinct structure (letters, not digits), so no normalized hits.
			return "SELECT id FROM orders -- " + strings.Repeat("y", i)
		}
		for i := range 200 {
			e.Check(analyst, text(i), nil)
			if i%3 == 0 {
				e.Check(analyst, keep, nil) // recently used: survives
			}
		}
		st := e.CacheStats()
		assert.LessOrEqual(t, st.Bytes, int64(budget))
		assert.NotZero(t, st.Evictions)
		before := fa.analyses()
		e.Check(analyst, keep, nil)
		assert.Equal(t, before, fa.analyses(), "recently used entry evicted")
		e.Check(analyst, text(1), nil) // long evicted
		assert.Equal(t, before+1, fa.analyses())
	})

	t.Run("a panicking analyzer denies and is not cached", func(t *testing.T) {
		t.Parallel()
		e, fa := newTestEngine(t, sp.EngineOptions{})
		for range 2 {
			d, a := e.Check(analyst, "panic", nil)
			assert.Equal(t, sp.Deny, d.Effect)
			assert.NotNil(t, a)
		}
		assert.Equal(t, 2, fa.analyses())
		text, _ := e.Redact("panic")
		assert.NotContains(t, text, "panic")
	})

	t.Run("disabled cache analyzes every time", func(t *testing.T) {
		t.Parallel()
		e, fa := newTestEngine(t, sp.EngineOptions{CacheBytes: -1})
		e.Check(analyst, "SELECT 1", nil)
		e.Check(analyst, "SELECT 1", nil)
		assert.Equal(t, 2, fa.analyses())
		assert.Equal(t, sp.CacheStats{}, e.CacheStats())
	})

	t.Run("concurrent checks", func(t *testing.T) {
		t.Parallel()
		e, _ := newTestEngine(t, sp.EngineOptions{CacheBytes: 64 << 10})
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 300 {
					d, _ := e.Check(analyst, fmt.Sprintf("SELECT id FROM orders -- %c %d", 'a'+g, i%37), nil)
					if d.Effect != sp.Allow {
						t.Errorf("unexpected deny: %+v", d.Reasons)
						return
					}
				}
			}()
		}
		wg.Wait()
	})
}

// Not parallel: AllocsPerRun refuses to run in parallel tests.
func TestEngineCacheHitDoesNotAllocate(t *testing.T) {
	e, _ := newTestEngine(t, sp.EngineOptions{})
	const q = "SELECT id FROM orders WHERE id = 1"
	s := &pganalyze.Session{}
	scoped := sp.Principal{Agent: "sales-summarizer", Scope: []sp.Grant{{Verb: sp.VerbSelect, Tables: []string{"public.orders"}}}}
	e.Check(analyst, q, s)
	e.Check(scoped, q, s)
	assert.Zero(t, testing.AllocsPerRun(100, func() { e.Check(analyst, q, s) }))
	assert.Zero(t, testing.AllocsPerRun(100, func() { e.Check(scoped, q, s) }))
}

func TestEngineRedact(t *testing.T) {
	t.Parallel()
	e, _ := newTestEngine(t, sp.EngineOptions{})
	t1, f1 := e.Redact("SELECT id FROM orders WHERE id = 42")
	t2, f2 := e.Redact("SELECT id FROM orders WHERE id = 7")
	assert.Equal(t, "SELECT id FROM orders WHERE id = $1", t1)
	assert.Equal(t, t1, t2)
	assert.Equal(t, f1, f2)
	assert.Len(t, f1, 16)
	_, f3 := e.Redact("SELECT name FROM orders")
	assert.NotEqual(t, f1, f3)

	text, _ := e.Redact("bad password 'hunter2'")
	assert.NotContains(t, text, "hunter2")
}

func TestHolder(t *testing.T) {
	t.Parallel()
	cat := testCatalog()
	fa := newFakeAnalyzer(selectOrders)
	h := sp.NewHolder(nil)
	d, a := h.Check(analyst, "SELECT id FROM orders", nil)
	assert.Equal(t, sp.Deny, d.Effect, "no engine: deny")
	assert.NotNil(t, a)
	_, _, ok := h.Role("sales-summarizer")
	assert.False(t, ok)

	old := sp.NewEngine(mustPolicy(t, fixture.Policy, cat), cat, fa, sp.EngineOptions{})
	assert.Nil(t, h.Swap(old))
	d, _ = h.Check(analyst, "SELECT id FROM orders", nil)
	assert.Equal(t, sp.Allow, d.Effect)

	// The new policy drops orders from analyst: the new engine starts with
	// an empty cache, so the earlier allow is not reused.
	narrowed := strings.Replace(fixture.Policy, "select: [public.orders, public.customers]", "select: [public.customers]", 1)
	assert.Same(t, old, h.Swap(sp.NewEngine(mustPolicy(t, narrowed, cat), cat, fa, sp.EngineOptions{})))
	d, _ = h.Check(analyst, "SELECT id FROM orders", nil)
	assert.Equal(t, sp.Deny, d.Effect)
	role, up, ok := h.Role("sales-summarizer")
	assert.True(t, ok)
	assert.Equal(t, "analyst", role)
	assert.Equal(t, "shop", up)
	text, fp := h.Redact("SELECT 1")
	assert.Equal(t, "SELECT $1", text)
	assert.NotEmpty(t, fp)
}

// TestEngineWithPostgresAnalyzer runs the cache levels with the real
// analyzer: literal-varied texts share an analysis, setting values do not.
func TestEngineWithPostgresAnalyzer(t *testing.T) {
	t.Parallel()
	cat := testCatalog()
	pol := mustPolicy(t, decidePolicy, cat)
	e := sp.NewEngine(pol, cat, pganalyze.New(cat, pganalyze.Options{}), sp.EngineOptions{})
	helpdesk := sp.Principal{Agent: "helpdesk"}

	d1, a1 := e.Check(analyst, "SELECT id, total FROM public.orders WHERE total > 10", nil)
	d2, a2 := e.Check(analyst, "SELECT id, total FROM public.orders WHERE total > 99", nil)
	assert.Equal(t, sp.Allow, d1.Effect, d1.Message)
	assert.Same(t, d1, d2)
	assert.Same(t, a1, a2)

	d, _ := e.Check(analyst, "SELECT name, email FROM public.customers WHERE id = 1", nil)
	assert.Equal(t, sp.Deny, d.Effect)
	require.NotEmpty(t, d.Reasons)
	assert.Equal(t, sp.ReasonLabelDenied, d.Reasons[0].Code)

	// helpdesk may change search_path; the value is not shared across texts.
	dA, aA := e.Check(helpdesk, "SET search_path = public", nil)
	dB, aB := e.Check(helpdesk, "SET search_path = pg_temp, public", nil)
	assert.NotSame(t, aA, aB)
	assert.Equal(t, sp.Allow, dA.Effect, dA.Message)
	assert.Equal(t, sp.Allow, dB.Effect, dB.Message)

	text, fp := e.Redact("SELECT id FROM public.orders WHERE total > 10")
	text2, fp2 := e.Redact("SELECT id FROM public.orders WHERE total > 11")
	assert.Equal(t, text, text2)
	assert.Equal(t, fp, fp2)
	assert.NotContains(t, text, "10")

	// The decision carries the redaction the engine computed while
	// deciding, equal to Redact's, so the proxies need not parse again;
	// the same for a literal-varied text that reused the analysis.
	for _, q := range []string{"SELECT id, total FROM public.orders WHERE total > 10", "SELECT id, total FROM public.orders WHERE total > 12345"} {
		d, _ := e.Check(analyst, q, nil)
		wantText, wantFP := e.Redact(q)
		assert.Equal(t, wantText, d.Redacted, q)
		assert.Equal(t, wantFP, d.Fingerprint, q)
		assert.NotContains(t, d.Redacted, "12345")
	}
}

// TestEngineSearchPathCandidates: names are resolved under every search
// path that may be in effect, and an allowed text's search_path change
// counts as possibly in effect even when it is never applied (it failed
// after a COMMIT in its middle).
func TestEngineSearchPathCandidates(t *testing.T) {
	t.Parallel()
	cat := testCatalog()
	cat.Relations["internal"] = map[string]*catalog.Relation{"orders": {Schema: "internal", Name: "orders",
		Kind: catalog.KindTable, Columns: []*catalog.Column{{Name: "id", Type: "integer"}}}}
	pol := mustPolicy(t, decidePolicy, cat)
	e := sp.NewEngine(pol, cat, pganalyze.New(cat, pganalyze.Options{}), sp.EngineOptions{})
	helpdesk := sp.Principal{Agent: "helpdesk"}
	run := func(s sp.Session, sql string, apply bool) *sp.Decision {
		d, a := e.Check(helpdesk, sql, s)
		if apply && d.Allowed() {
			s.Apply(a)
		}
		return d
	}
	tests := []struct {
		name  string
		steps []string // applied after they are allowed; a leading "!" is checked but not applied (it failed)
		last  string
		want  sp.Effect
	}{
		{name: "login path", last: "SELECT id FROM orders", want: sp.Allow},
		{name: "set sticks", steps: []string{"SET search_path = internal, public"}, last: "SELECT id FROM orders", want: sp.Deny},
		{name: "set and reset", steps: []string{"SET search_path = internal, public", "RESET search_path"},
			last: "SELECT id FROM orders", want: sp.Allow},
		{name: "failed text that committed a change", steps: []string{"!BEGIN; SET search_path = internal, public; COMMIT; SELECT 1/0"},
			last: "SELECT id FROM orders", want: sp.Deny},
		{name: "rolled back reset", steps: []string{"SET search_path = internal, public", "BEGIN", "RESET search_path", "ROLLBACK"},
			last: "SELECT id FROM orders", want: sp.Deny},
		{name: "qualified name under candidates", steps: []string{"SET search_path = internal, public", "BEGIN", "RESET search_path", "ROLLBACK"},
			last: "SELECT id FROM public.orders", want: sp.Allow},
		{name: "name only one candidate resolves", steps: []string{"BEGIN", "SET LOCAL search_path = internal"},
			last: "SELECT count(*) FROM customers", want: sp.Allow},
		{name: "same text", last: "SET search_path = internal, public; SELECT id FROM orders", want: sp.Deny},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := &pganalyze.Session{}
			for _, step := range tc.steps {
				apply := true
				if step[0] == '!' {
					step, apply = step[1:], false
				}
				d := run(s, step, apply)
				require.True(t, d.Allowed(), "%s: %s", step, d.Message)
			}
			d := run(s, tc.last, false)
			assert.Equal(t, tc.want, d.Effect, d.Message)
		})
	}
}
