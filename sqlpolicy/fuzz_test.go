package sqlpolicy_test

import (
	"testing"

	"github.com/keyholedb/keyhole/internal/fixture"
	sp "github.com/keyholedb/keyhole/sqlpolicy"
)

// FuzzParsePolicy checks that no policy text makes the parser panic, that a
// text either loads or returns errors (never both or neither), and that a
// loaded policy decides without panicking.
func FuzzParsePolicy(f *testing.F) {
	f.Add(fixture.Policy)
	f.Add(decidePolicy)
	f.Add("roles:\n  a:\n    allow:\n      - select: {public.orders: [id]}\nagents:\n  x: {role: a}\n")
	f.Add("roles: &r\n  a: *r\n")
	f.Add("labels:\n  public.customers.email: [pii.email]\n  public.customers.email: [pii.email]\n")
	cat := testCatalog()
	a := access(sel("public.customers", "id", "email"), sel("public.orders", "id"))
	f.Fuzz(func(t *testing.T, src string) {
		for _, c := range []bool{false, true} {
			cc := cat
			if !c {
				cc = nil
			}
			p, _, err := sp.ParsePolicy([]byte(src), "fuzz.yaml", cc)
			if (p == nil) == (err == nil) {
				t.Fatalf("policy %v with error %v", p, err)
			}
			if p == nil {
				continue
			}
			for agent := range p.Agents {
				d := p.Decide(sp.Principal{Agent: agent}, a, cc)
				if d.Effect != sp.Allow && d.Effect != sp.Deny {
					t.Fatalf("effect %q", d.Effect)
				}
			}
		}
	})
}
