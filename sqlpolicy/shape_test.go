package sqlpolicy_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	sp "github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

// TestNovelShapes checks the one-parse path of a text of a never-seen
// shape: its decision carries the redaction Redact gives, a literal
// variant then hits the normalized entry it stored, a literal-sensitive
// text stores none, and a text refused before parsing is still denied.
func TestNovelShapes(t *testing.T) {
	cat := testCatalog()
	e := sp.NewEngine(mustPolicy(t, benchPolicy, cat), cat, pganalyze.New(cat, pganalyze.Options{}), sp.EngineOptions{})
	p, s := sp.Principal{Agent: "bench"}, &pganalyze.Session{}

	// variantMisses: the exact-level misses of the variant. A long text
	// misses the exact level before the fast one hits; a short one goes
	// to the fast level first (minExactFirst), and probes the exact level
	// only when the fast one cannot answer (here: LIMIT ALL and LIMIT 3
	// have different fast forms).
	for _, tc := range []struct {
		first, variant string
		variantMisses  uint64
	}{
		{benchJoin(1), benchJoin(2), 1},
		// GROUP BY with a constant: the normal form comes from pg.Normalize.
		{"SELECT lower(name), count(*) FROM customers GROUP BY lower(name) HAVING count(*) > 1",
			"SELECT lower(name), count(*) FROM customers GROUP BY lower(name) HAVING count(*) > 7", 0},
		{"SELECT id FROM orders WHERE total > -5 LIMIT ALL", "SELECT id FROM orders WHERE total > 5 LIMIT 3", 1},
	} {
		before := e.CacheStats()
		d, _ := e.Check(p, tc.first, s)
		require.True(t, d.Allowed(), "%s: %s", tc.first, d.Message)
		text, fp := e.Redact(tc.first)
		assert.Equal(t, text, d.Redacted, tc.first)
		assert.Equal(t, fp, d.Fingerprint, tc.first)

		d2, _ := e.Check(p, tc.variant, s)
		assert.Same(t, d, d2, "%s: the literal variant must hit the normalized entry", tc.variant)
		after := e.CacheStats()
		// The first text misses the exact level only (the normalized
		// lookup is skipped); the variant hits normalized.
		assert.Equal(t, before.Misses+1+tc.variantMisses, after.Misses, tc.first)
		assert.Equal(t, before.Hits+1, after.Hits, tc.first)
	}

	// current_setting('x') is literal-sensitive: no normalized entry, so a
	// variant is analyzed on its own.
	d1, _ := e.Check(p, "SELECT current_setting('a.b') FROM orders", s)
	d2, _ := e.Check(p, "SELECT current_setting('c.d') FROM orders", s)
	assert.NotSame(t, d1, d2)

	deep := "SELECT " + string(make([]byte, 0)) + repeat("(", 300) + "1" + repeat(")", 300)
	d, _ := e.Check(p, deep, s)
	assert.False(t, d.Allowed())
	assert.Equal(t, sp.ProblemTooComplex, d.Reasons[0].Problem)
}

func repeat(s string, n int) string {
	out := make([]byte, 0, len(s)*n)
	for range n {
		out = append(out, s...)
	}
	return string(out)
}
