package corpus_test

import (
	"regexp"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/internal/corpus"
	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

// literalRe finds string and number literals, naively: it does not know
// comments, identifiers or dollar quotes, which only makes some variants
// unparseable or leaves their literals alone.
var literalRe = regexp.MustCompile(`'(?:[^']|'')*'|\b\d+(?:\.\d+)?\b`)

// cacheReplacements are what a literal is swapped for: names of labelled
// columns and relations (a literal that names what the statement reads
// must not share a decision with one naming something else), settings
// that reveal the server or hold secrets, and constants of other types.
var cacheReplacements = []string{
	"'email'", "'ssn'", "'secrets'", "'public.secrets'", "'data_directory'", "'app.secret'",
	"'off'", "'x'", "2", "0", "1.5",
}

// loadSuite loads su's cases, its shop's catalog and its policy.
func loadSuite(t *testing.T, su corpus.Suite) ([]*corpus.Case, *corpus.Shop, *sqlpolicy.Policy) {
	t.Helper()
	cases, err := corpus.LoadCases(fixture.Path(t, su.CasesDir))
	require.NoError(t, err)
	shop := corpus.NewShop(t, su)
	pol, _, err := sqlpolicy.LoadPolicyFile(fixture.Path(t, su.Policy), shop.Cat)
	require.NoError(t, err)
	return cases, shop, pol
}

// TestCacheDifferential checks the normalized-text decision cache against
// the uncached engine: for every single-text corpus case T and each
// variant T' that swaps one of its literals for another, deciding T and
// then T' through one cached engine must give T' the decision an engine
// without a cache gives it. An analysis that depended on a literal without
// saying so (Statement.LiteralSensitive) would let T's decision answer T'.
func TestCacheDifferential(t *testing.T) {
	t.Parallel()
	for _, su := range corpus.Suites {
		t.Run(su.Name, func(t *testing.T) {
			t.Parallel()
			cases, shop, pol := loadSuite(t, su)
			an := pganalyze.New(shop.Cat, pganalyze.Options{})
			fresh := sqlpolicy.NewEngine(pol, shop.Cat, an, sqlpolicy.EngineOptions{CacheBytes: -1})
			p := sqlpolicy.Principal{Agent: su.Agent}

			var pairs, hits atomic.Int64
			var wg sync.WaitGroup
			sem := make(chan struct{}, 2)
			for _, c := range cases {
				if len(c.SQL) != 1 {
					continue
				}
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					text := c.SQL[0]
					for _, loc := range literalRe.FindAllStringIndex(text, 6) {
						for _, r := range cacheReplacements {
							variant := text[:loc[0]] + r + text[loc[1]:]
							if variant == text {
								continue
							}
							// A cached engine of its own per pair: T's
							// entries are the only ones.
							cached := sqlpolicy.NewEngine(pol, shop.Cat, an, sqlpolicy.EngineOptions{})
							cached.Check(p, text, cached.NewSession())
							before := cached.CacheStats().Hits
							got, _ := cached.Check(p, variant, cached.NewSession())
							if cached.CacheStats().Hits > before {
								hits.Add(1)
							}
							want, _ := fresh.Check(p, variant, fresh.NewSession())
							pairs.Add(1)
							assert.Equal(t, want.Effect, got.Effect,
								"%s: after %q, the cache decides %q differently from a fresh analysis (%s)",
								c.ID, text, variant, reasonsJSON(want))
						}
					}
				}()
			}
			wg.Wait()
			t.Logf("cache differential %s: %d pairs, %d answered from the cache", su.Name, pairs.Load(), hits.Load())
			assert.Positive(t, pairs.Load())
			assert.Positive(t, hits.Load(), "no variant was answered from the cache: the test exercises nothing")
		})
	}
}

// lexCounting is the Postgres analyzer counting the fast forms it makes:
// a text a session's memo (sqlpolicy.RecentText) answers is not lexed.
type lexCounting struct {
	*pganalyze.Analyzer
	lexed atomic.Int64
}

func (l *lexCounting) FastNormal(sql string, f *sqlpolicy.FastForm) bool {
	l.lexed.Add(1)
	return l.Analyzer.FastNormal(sql, f)
}

// digitRunRe finds runs of digits that stand alone (not in a word).
var digitRunRe = regexp.MustCompile(`\b\d+\b`)

// TestRecentTextDifferential checks a session's memo against the uncached
// engine: for every single-text corpus case T with a run of digits, one
// session decides T and a variant of T with another number there (the
// fast lookup's answer, which the memo keeps), then variants with other
// values in that run; each must get the decision an engine without a
// cache gives it, whether the memo answered it or not.
func TestRecentTextDifferential(t *testing.T) {
	t.Parallel()
	for _, su := range corpus.Suites {
		t.Run(su.Name, func(t *testing.T) {
			t.Parallel()
			cases, shop, pol := loadSuite(t, su)
			an := &lexCounting{Analyzer: pganalyze.New(shop.Cat, pganalyze.Options{})}
			fresh := sqlpolicy.NewEngine(pol, shop.Cat, an.Analyzer, sqlpolicy.EngineOptions{CacheBytes: -1})
			p := sqlpolicy.Principal{Agent: su.Agent}
			values := []string{"0", "7", "00", "123456789", "1000000000", "2147483648", "5.5", "'7'"}
			var checked, answered int
			for _, c := range cases {
				if len(c.SQL) != 1 {
					continue
				}
				text := c.SQL[0]
				for _, loc := range digitRunRe.FindAllStringIndex(text, 4) {
					with := func(v string) string { return text[:loc[0]] + v + text[loc[1]:] }
					cached := sqlpolicy.NewEngine(pol, shop.Cat, an, sqlpolicy.EngineOptions{})
					s := cached.NewSession()
					cached.Check(p, text, s)
					cached.Check(p, with("4"+text[loc[0]:loc[1]]), s)
					for _, v := range values {
						variant := with(v)
						before := an.lexed.Load()
						got, _ := cached.Check(p, variant, s)
						if an.lexed.Load() == before {
							answered++
						}
						want, _ := fresh.Check(p, variant, fresh.NewSession())
						checked++
						assert.Equal(t, want.Effect, got.Effect,
							"%s: after %q in one session, %q is decided differently from a fresh analysis (%s)",
							c.ID, text, variant, reasonsJSON(want))
						assert.Equal(t, want.Rule, got.Rule, "%s: %q", c.ID, variant)
					}
				}
			}
			t.Logf("memo differential %s: %d variants, %d not lexed", su.Name, checked, answered)
			assert.Positive(t, answered, "the memo answered no variant: the test exercises nothing")
		})
	}
}
