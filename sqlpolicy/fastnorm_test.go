package sqlpolicy_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	sp "github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

// countingPg is the Postgres analyzer counting the normalizations the
// engine asks for (NormalizeShaped): a text the fast lookup answers is
// not normalized.
type countingPg struct {
	*pganalyze.Analyzer
	normalized, lexed atomic.Int64
}

func (c *countingPg) NormalizeShaped(sql string) (string, error) {
	c.normalized.Add(1)
	return c.Analyzer.NormalizeShaped(sql)
}

// TestFastLookup checks the decision cache's fast lookup with the
// Postgres analyzer: a literal variant of a stored statement is answered
// without normalizing it, with the decision, redaction and fingerprint
// the full path gives; texts Normalize tells apart (ORDER BY 1 and 2, an
// integer and a decimal where only integers are kept) never share an
// entry; and a principal's scope still keys the entry.
func TestFastLookup(t *testing.T) {
	t.Parallel()
	cat := testCatalog()
	newEngine := func() (*sp.Engine, *countingPg) {
		an := &countingPg{Analyzer: pganalyze.New(cat, pganalyze.Options{})}
		return sp.NewEngine(mustPolicy(t, benchPolicy, cat), cat, an, sp.EngineOptions{}), an
	}
	// Each subtest decides in sessions of its own: a session is not for
	// concurrent use.
	p := sp.Principal{Agent: "bench"}

	// The engine asks the policy about the agent only past the fast
	// lookup: an agent the policy does not know must still be denied for
	// a literal variant of a text whose entry the fast lookup answers for
	// a known agent, and leave no entry behind.
	t.Run("an unknown agent misses the fast lookup", func(t *testing.T) {
		t.Parallel()
		e, _ := newEngine()
		s := &pganalyze.Session{}
		first, _ := e.Check(p, "SELECT total FROM orders WHERE id = 1;", s)
		require.True(t, first.Allowed(), first.Message)
		d, _ := e.Check(p, "SELECT total FROM orders WHERE id = 2;", s)
		require.Same(t, first, d)
		entries := e.CacheStats().Entries
		for _, v := range []string{"SELECT total FROM orders WHERE id = 3;", "SELECT total FROM orders WHERE id = 1;"} {
			d, _ := e.Check(sp.Principal{Agent: "mallory"}, v, s)
			assert.Equal(t, sp.Deny, d.Effect, v)
			require.NotEmpty(t, d.Reasons, v)
			assert.Equal(t, sp.ReasonUnknownAgent, d.Reasons[0].Code, v)
		}
		assert.Equal(t, entries, e.CacheStats().Entries)
	})

	t.Run("a new literal is answered without normalizing", func(t *testing.T) {
		t.Parallel()
		e, an := newEngine()
		s := &pganalyze.Session{}
		first, _ := e.Check(p, "SELECT total FROM orders WHERE id = 1;", s)
		require.True(t, first.Allowed(), first.Message)
		before, stats := an.normalized.Load(), e.CacheStats()
		for _, v := range []string{
			"SELECT total FROM orders WHERE id = 2;",
			"SELECT total FROM orders WHERE id = 2147483647;",
			"SELECT total FROM orders WHERE id = 0000000000003;",
		} {
			d, _ := e.Check(p, v, s)
			assert.Same(t, first, d, v)
			text, fp := e.Redact(v)
			assert.Equal(t, text, d.Redacted, v)
			assert.Equal(t, fp, d.Fingerprint, v)
		}
		assert.Equal(t, before, an.normalized.Load(), "the variants were normalized")
		after := e.CacheStats()
		assert.Equal(t, stats.Hits+3, after.Hits)
		assert.Equal(t, stats.Misses, after.Misses, "a short text the fast level answers does not probe the exact level")

		// Another literal class (FCONST beyond int32) takes the full path.
		d, _ := e.Check(p, "SELECT total FROM orders WHERE id = 2147483648;", s)
		assert.Same(t, first, d, "Normalize puts it with the others")
		assert.Equal(t, before+1, an.normalized.Load())
	})

	t.Run("texts Normalize keeps apart stay apart", func(t *testing.T) {
		t.Parallel()
		for _, pair := range [][2]string{
			{"SELECT total FROM orders ORDER BY 1", "SELECT total FROM orders ORDER BY 2"},
			// ORDER BY 1.5 is replaced, ORDER BY 1 is not: the same fast
			// form, other classes.
			{"SELECT total FROM orders ORDER BY 1.5", "SELECT total FROM orders ORDER BY 1"},
			{"SELECT total FROM orders ORDER BY 3000000000", "SELECT total FROM orders ORDER BY 3"},
			// A type modifier is kept.
			{"SELECT total::varchar(10) FROM orders", "SELECT total::varchar(20) FROM orders"},
		} {
			e, _ := newEngine()
			s := &pganalyze.Session{}
			d1, _ := e.Check(p, pair[0], s)
			d2, _ := e.Check(p, pair[1], s)
			assert.NotSame(t, d1, d2, "%q answered from %q's entry", pair[1], pair[0])
			text, _ := e.Redact(pair[1])
			assert.Equal(t, text, d2.Redacted, pair[1])
		}
	})

	t.Run("an entry is marked when the full path sees the forms agree", func(t *testing.T) {
		t.Parallel()
		e, an := newEngine()
		s := &pganalyze.Session{}
		// LIMIT ALL is a constant to Normalize, not to FastNormal: the
		// entry stored for the first text is not marked.
		first, _ := e.Check(p, "SELECT total FROM orders WHERE id = 1 LIMIT ALL", s)
		require.True(t, first.Allowed(), first.Message)
		n := an.normalized.Load()
		d, _ := e.Check(p, "SELECT total FROM orders WHERE id = 2 LIMIT 3", s)
		assert.Same(t, first, d)
		assert.Equal(t, n+1, an.normalized.Load(), "answered from an entry not marked")
		d, _ = e.Check(p, "SELECT total FROM orders WHERE id = 4 LIMIT 5", s)
		assert.Same(t, first, d)
		assert.Equal(t, n+1, an.normalized.Load(), "the entry was not marked by the variant that agreed")
	})

	t.Run("concurrent variants", func(t *testing.T) {
		t.Parallel()
		e, _ := newEngine()
		s := &pganalyze.Session{}
		first, _ := e.Check(p, "SELECT total FROM orders WHERE id = 1 LIMIT ALL", s)
		require.True(t, first.Allowed())
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				s := &pganalyze.Session{}
				for i := range 200 {
					d, _ := e.Check(p, fmt.Sprintf("SELECT total FROM orders WHERE id = %d LIMIT %d", g, i), s)
					assert.Same(t, first, d)
				}
			})
		}
		wg.Wait()
	})

	t.Run("scope keys the entry", func(t *testing.T) {
		t.Parallel()
		e, _ := newEngine()
		s := &pganalyze.Session{}
		open, _ := e.Check(p, "SELECT total FROM orders WHERE id = 1", s)
		require.True(t, open.Allowed())
		scoped := sp.Principal{Agent: "bench", Scope: []sp.Grant{{Verb: sp.VerbSelect, Tables: []string{"public.customers"}}}}
		d, _ := e.Check(scoped, "SELECT total FROM orders WHERE id = 2", s)
		assert.False(t, d.Allowed(), "the scope's decision came from the unscoped entry")
	})
}

// fastLiar is fakeAnalyzer on the shaped path, with a FastNormal that
// gives every text the fast form of "SELECT id FROM orders WHERE id = 1"
// but declines that text itself, and gives texts with "str" the class of
// a string: it breaks FastNormalizer's contract, so that the tests can
// see what the engine trusts it for.
type fastLiar struct{ *fakeAnalyzer }

const liarForm = "SELECT id FROM orders WHERE id = $1"

func (l fastLiar) Shape(string) (uint64, bool) { return 1, true }

func (l fastLiar) AnalyzeNormalize(sql string, s sp.Session) (*sp.Access, string, error) {
	n, err := l.Normalize(sql)
	return l.Analyze(sql, s), n, err
}

func (l fastLiar) NormalizeShaped(sql string) (string, error) { return l.Normalize(sql) }

func (l fastLiar) FastNormal(sql string, f *sp.FastForm) bool {
	if sql == "SELECT id FROM orders WHERE id = 1" {
		return false
	}
	f.Text = append(f.Text[:0], liarForm...)
	f.Literals = append(f.Literals[:0], 'i', byte(len(liarForm)-2))
	if len(sql) > 3 && sql[len(sql)-3:] == "str" {
		f.Literals[0] = 's'
	}
	return true
}

// TestFastLookupNeedsMark checks that the fast lookup answers only from
// an entry the full path saw the fast form agree with Normalize for,
// with the same literal classes.
func TestFastLookupNeedsMark(t *testing.T) {
	t.Parallel()
	cat := testCatalog()
	fa := newFakeAnalyzer(selectOrders)
	fa.access["SELECT id FROM secrets WHERE id = 2"] = access(sel("public.secrets", "id"))
	fa.access["SELECT id FROM secrets WHERE id = 3 -- str"] = access(sel("public.secrets", "id"))
	e := sp.NewEngine(mustPolicy(t, decidePolicy, cat), cat, fastLiar{fa}, sp.EngineOptions{})

	// Declined by FastNormal: the entry stored for liarForm is not marked.
	d, _ := e.Check(analyst, "SELECT id FROM orders WHERE id = 1", nil)
	require.True(t, d.Allowed())
	d, _ = e.Check(analyst, "SELECT id FROM secrets WHERE id = 2", nil)
	assert.False(t, d.Allowed(), "answered from an entry not marked")

	// Marked now (the fast form agrees), with class 'i'.
	d, _ = e.Check(analyst, "SELECT id FROM orders WHERE id = 4", nil)
	require.True(t, d.Allowed())
	d, _ = e.Check(analyst, "SELECT id FROM secrets WHERE id = 3 -- str", nil)
	assert.False(t, d.Allowed(), "answered from an entry marked with other classes")
}

// FastNormal counts the fast forms the engine asks for: a text the
// session's memo (RecentText) answers is not lexed.
func (c *countingPg) FastNormal(sql string, f *sp.FastForm) bool {
	c.lexed.Add(1)
	return c.Analyzer.FastNormal(sql, f)
}

// TestRecentText checks a session's memo of its last fast-path text with
// the Postgres analyzer: a digit variant of it, no longer, is answered
// without lexing, with the fast lookup's decision; any other text, or the
// same one in another engine, generation or principal, is decided as
// before.
func TestRecentText(t *testing.T) {
	t.Parallel()
	cat := testCatalog()
	pol := mustPolicy(t, benchPolicy, cat)
	newEngine := func() (*sp.Engine, *countingPg) {
		an := &countingPg{Analyzer: pganalyze.New(cat, pganalyze.Options{})}
		return sp.NewEngine(pol, cat, an, sp.EngineOptions{}), an
	}
	p := sp.Principal{Agent: "bench"}
	// check decides sql in e and s, and reports whether the memo answered
	// (the text was not lexed); the decision must be the one an engine
	// without a cache gives.
	fresh := sp.NewEngine(pol, cat, pganalyze.New(cat, pganalyze.Options{}), sp.EngineOptions{CacheBytes: -1})
	check := func(t *testing.T, e *sp.Engine, an *countingPg, p sp.Principal, sql string, s *pganalyze.Session) (*sp.Decision, bool) {
		t.Helper()
		before := an.lexed.Load()
		d, _ := e.Check(p, sql, s)
		want, _ := fresh.Check(p, sql, &pganalyze.Session{})
		assert.Equal(t, want.Effect, d.Effect, sql)
		assert.Equal(t, want.Rule, d.Rule, sql)
		return d, an.lexed.Load() == before
	}
	// warm decides q(first) and q(second) in a new session: in a new
	// engine the full path, then the fast lookup, whose text the memo
	// then holds; in an engine that knows the shape the fast lookup, the
	// memo then holding q(first).
	warm := func(t *testing.T, e *sp.Engine, an *countingPg, q func(string) string, first, second string) (*pganalyze.Session, *sp.Decision) {
		t.Helper()
		s := &pganalyze.Session{}
		d, _ := check(t, e, an, p, q(first), s)
		d2, _ := check(t, e, an, p, q(second), s)
		require.Same(t, d, d2, "the fast lookup did not answer %q", q(second))
		return s, d
	}
	byID := func(n string) string { return "SELECT total FROM orders WHERE id = " + n + ";" }

	t.Run("digit variants", func(t *testing.T) {
		t.Parallel()
		e, an := newEngine()
		s, first := warm(t, e, an, byID, "1", "123456789")
		for _, n := range []string{"5", "000000000", "987654321", "42"} {
			d, memo := check(t, e, an, p, byID(n), s)
			assert.True(t, memo, "%s was lexed", byID(n))
			assert.Same(t, first, d)
		}
		// Not a run of one to nine digits: lexed, whatever the length.
		// (An integer beyond int32 is another token class; nine digits
		// never are.)
		for _, n := range []string{"1234567890", "99999999999", "1.5", "-5", "5 ", "5;"} {
			_, memo := check(t, e, an, p, byID(n), s)
			assert.False(t, memo, "%s answered from the memo", byID(n))
		}
		two := func(a, b string) string {
			return "SELECT total FROM orders WHERE id = " + a + " AND customer_id = " + b + ";"
		}
		s = &pganalyze.Session{}
		for _, n := range []string{"1", "123456789"} { // the full path, then the fast lookup
			check(t, e, an, p, two(n, n), s)
		}
		_, memo := check(t, e, an, p, two("9999999999", "12345678"), s)
		assert.False(t, memo, "ten digits answered from the memo")
		_, memo = check(t, e, an, p, two("5", "6"), s)
		assert.True(t, memo)
	})

	t.Run("a longer text", func(t *testing.T) {
		t.Parallel()
		// The analyzer takes texts of at most len(byID("12")) bytes: a
		// longer variant of the memo's text is denied, not answered.
		opts := pganalyze.Options{MaxBytes: len(byID("12"))}
		an := &countingPg{Analyzer: pganalyze.New(cat, opts)}
		e := sp.NewEngine(pol, cat, an, sp.EngineOptions{})
		s := &pganalyze.Session{}
		for _, n := range []string{"1", "12", "34", "5"} {
			d, _ := e.Check(p, byID(n), s)
			require.True(t, d.Allowed(), byID(n))
		}
		before := an.lexed.Load()
		d, _ := e.Check(p, byID("123"), s)
		assert.False(t, d.Allowed(), "%s, too long, was allowed", byID("123"))
		assert.Greater(t, an.lexed.Load(), before, "%s was answered from the memo", byID("123"))
	})

	t.Run("digits that are not a replaced literal", func(t *testing.T) {
		t.Parallel()
		e, an := newEngine()
		// pg.Normalize keeps ORDER BY 1: the fast form disagrees, so
		// the fast lookup never answers such a text and no memo is made.
		order := func(n string) string { return "SELECT total, id FROM orders WHERE id = 5 ORDER BY " + n + ";" }
		s := &pganalyze.Session{}
		for _, n := range []string{"1", "1", "2"} {
			d, memo := check(t, e, an, p, order(n), s)
			assert.False(t, memo, "%s answered from the memo", order(n))
			assert.Contains(t, d.Redacted, "ORDER BY "+n)
		}
		// A digit in a name or in a string is not a literal of its own.
		named := func(n string) string {
			return `SELECT o1.total, "o1".id FROM orders o1 WHERE o1.status = 'x1' AND o1.id = ` + n
		}
		s, _ = warm(t, e, an, named, "1", "2")
		_, memo := check(t, e, an, p, named("3"), s)
		assert.True(t, memo, "%s was lexed", named("3"))
		for _, q := range []string{
			`SELECT o2.total, "o1".id FROM orders o1 WHERE o1.status = 'x1' AND o1.id = 3`,
			`SELECT o1.total, "o2".id FROM orders o1 WHERE o1.status = 'x1' AND o1.id = 3`,
			`SELECT o1.total, "o1".id FROM orders o1 WHERE o1.status = 'x2' AND o1.id = 3`,
		} {
			_, memo := check(t, e, an, p, q, s)
			assert.False(t, memo, "%s answered from the memo", q)
		}
	})

	t.Run("another engine, generation or principal", func(t *testing.T) {
		t.Parallel()
		e, an := newEngine()
		s, _ := warm(t, e, an, byID, "1", "2")
		e2, an2 := newEngine() // a reload: the same policy, a new engine
		_, memo := check(t, e2, an2, p, byID("3"), s)
		assert.False(t, memo, "another engine's memo answered")

		s, _ = warm(t, e, an, byID, "1", "2")
		_, memo = check(t, e, an, sp.Principal{Agent: "mallory"}, byID("3"), s)
		assert.False(t, memo, "another agent was answered from the memo")
		scoped := sp.Principal{Agent: "bench", Scope: []sp.Grant{{Verb: sp.VerbSelect, Tables: []string{"public.customers"}}}}
		d, memo := check(t, e, an, scoped, byID("3"), s)
		assert.False(t, memo, "another scope was answered from the memo")
		assert.False(t, d.Allowed())

		s, _ = warm(t, e, an, byID, "1", "2")
		_, acc := e.Check(p, "PREPARE q AS SELECT total FROM orders", s)
		gen := s.Generation()
		s.Apply(acc)
		require.NotEqual(t, gen, s.Generation())
		_, memo = check(t, e, an, p, byID("3"), s)
		assert.False(t, memo, "the memo answered in another session generation")
	})
}

// digitLiar is fastLiar naming a digit run that is not there, and
// counting the texts it lexes: the memo must not trust that run.
type digitLiar struct {
	fastLiar
	lexed *atomic.Int64
}

func (l digitLiar) FastNormal(sql string, f *sp.FastForm) bool {
	l.lexed.Add(1)
	ok := l.fastLiar.FastNormal(sql, f)
	f.Digits = append(f.Digits[:0], int32(len(sql)-1), int32(len(sql)+10)) // the texts end in a digit
	return ok
}

// TestRecentTextDistrustsDigits checks that a digit run an analyzer names
// wrongly (not digits, past the text) makes no memo: every text is lexed,
// and nothing panics.
func TestRecentTextDistrustsDigits(t *testing.T) {
	t.Parallel()
	cat := testCatalog()
	fa := newFakeAnalyzer(selectOrders)
	var lexed atomic.Int64
	e := sp.NewEngine(mustPolicy(t, decidePolicy, cat), cat, digitLiar{fastLiar{fa}, &lexed}, sp.EngineOptions{})
	s := &pganalyze.Session{}
	for i, q := range []string{"SELECT id FROM orders WHERE id = 4", "SELECT id FROM orders WHERE id = 5", "SELECT id FROM orders WHERE id = 6"} {
		d, _ := e.Check(analyst, q, s)
		assert.True(t, d.Allowed(), q)
		assert.EqualValues(t, i+1, lexed.Load(), "%s was not lexed", q)
	}
}
