package pganalyze_test

import (
	"regexp"
	"strings"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

var dml = regexp.MustCompile(`^(?i)\s*(SELECT|INSERT|UPDATE|DELETE|WITH|EXPLAIN)\b`)

// TestShapeOfNormalForm checks the property the decision cache relies on
// to skip normalized lookups: a text and its normal form have the same
// shape, so texts that normalize alike share a shape. It runs over the
// policy corpus and texts chosen for the forms Normalize replaces.
func TestShapeOfNormalForm(t *testing.T) {
	a := pganalyze.New(nil, pganalyze.Options{})
	texts := []string{
		"SELECT id FROM orders WHERE total > -5 AND x = - 2.5e3 LIMIT ALL OFFSET 3",
		"SELECT E'a\\'b', B'101', X'ff', N'n', $$d$$, $t$x$t$, true, FALSE, null, 1_000, .5",
		"SELECT a FROM t WHERE b = $1 AND c = 'x' ORDER BY 2",
		"INSERT INTO t VALUES (1, 'a', -3) RETURNING 4",
		"SELECT a::varchar(10) FROM t WHERE a IN (1, 2, 3)",
	}
	texts = append(texts, corpusTexts(t)...)
	checked := 0
	for _, sql := range texts {
		// SET takes words as string constants (SET x = on normalizes to
		// SET x = $1), N'...' normalizes to N$1, and U&'...' and a string
		// continued on the next line ('a'\n'b') are hashed as more than one
		// token: their variants miss the normalized lookup (SET never has
		// a normalized entry anyway).
		if !dml.MatchString(sql) || strings.Contains(sql, "N'") || strings.Contains(sql, "U&'") ||
			strings.Contains(sql, "'\n") {
			continue
		}
		norm, err := pg.Normalize(sql)
		if err != nil {
			continue
		}
		s1, ok1 := a.Shape(sql)
		s2, ok2 := a.Shape(norm)
		if !ok1 || !ok2 {
			continue
		}
		assert.Equal(t, s1, s2, "%q normalizes to %q", sql, norm)
		checked++
	}
	require.Greater(t, checked, 200)
}
