package sqlpolicy_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/keyholedb/keyhole/catalog"
	sp "github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

// TestNormalFormsDoNotMerge checks that a text is decided the same with a
// warm cache as with a cold one, for pairs of texts whose normal forms
// are equal although they are not literal variants of each other: a '$'
// in an unquoted identifier reads as a placeholder in the normal form
// (ab'x', cd$1 and ab$1, cd'y' both give ab$1, cd$1 while reading other
// columns), and a parameter of the text reads as a replaced literal ($1, 5
// and 5, 6 both give $1, $2).
func TestNormalFormsDoNotMerge(t *testing.T) {
	t.Parallel()
	cat := testCatalog()
	cols := []*catalog.Column{
		{Name: "int4$1", Type: "text", Labels: []string{"pii.ssn"}},
		{Name: "text$1", Type: "text"},
	}
	cat.Relations["public"]["dollars"] = &catalog.Relation{Schema: "public", Name: "dollars", Kind: catalog.KindTable, Columns: cols}
	const policy = `roles:
  analyst:
    upstream: shop
    allow:
      - select: [public.orders, public.customers, public.dollars]
    deny_labels: [pii.*]
  owner:
    upstream: shop
    allow:
      - select: [public.orders, public.customers, public.dollars]
agents:
  bench: {role: analyst}
  dba: {role: owner}
`
	newEngine := func() *sp.Engine {
		return sp.NewEngine(mustPolicy(t, policy, cat), cat, pganalyze.New(cat, pganalyze.Options{}), sp.EngineOptions{})
	}
	p := sp.Principal{Agent: "bench"}
	for _, pair := range [][2]string{
		{"SELECT int4'5', text$1 FROM dollars", "SELECT int4$1, text'y' FROM dollars"},
		{"SELECT int4'5', text$1 FROM dollars;", "SELECT int4$1, text'y' FROM dollars;"},
		{"SELECT nextval($1)", "SELECT nextval('public.order_seq')"},
		{"SELECT $1::regclass", "SELECT 'public.secrets'::regclass"},
		{"SELECT name FROM customers WHERE id = $1 AND name = 'x'", "SELECT name FROM customers WHERE id = 5 AND name = 'x'"},
	} {
		cold, _ := newEngine().Check(p, pair[1], &pganalyze.Session{})
		e := newEngine()
		// Another role's sessions make the second text's shape a seen
		// one; then the analyst's first text, twice (the second sighting
		// admits an exact entry).
		e.Check(sp.Principal{Agent: "dba"}, pair[1], &pganalyze.Session{})
		for range 2 {
			e.Check(p, pair[0], &pganalyze.Session{})
		}
		warm, _ := e.Check(p, pair[1], &pganalyze.Session{})
		assert.Equal(t, cold.Allowed(), warm.Allowed(), "%q after %q: %s / %s", pair[1], pair[0], cold.Message, warm.Message)
		assert.Equal(t, cold.Message, warm.Message, "%q after %q", pair[1], pair[0])
	}
}
