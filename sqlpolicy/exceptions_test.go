package sqlpolicy_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	sp "github.com/keyholedb/keyhole/sqlpolicy"
)

// exceptionPolicy: analyst reads orders and customers (not secrets, not
// order_items) and is denied pii.* and secret; pii.ssn and secret are
// never grantable, pii.free_text only for the analyst role.
const exceptionPolicy = `labels:
  public.customers.email: [pii.email]
  public.customers.ssn:   [pii.ssn]
  public.secrets:         [secret]
never_grant: [secret, pii.ssn]
roles:
  analyst:
    allow:
      - select: [public.orders]
      - select: {public.customers: [id, name]}
      - insert: [public.orders]
    deny_labels: [pii.*, secret, internal]
    never_grant: [pii.free_text]
agents:
  bot: {role: analyst}
`

func TestDecideWithExceptions(t *testing.T) {
	t.Parallel()
	cat := testCatalog()
	p := mustPolicy(t, exceptionPolicy, cat)
	ex := func(v sp.Verb, table string, cols []string, labels ...string) sp.Exception {
		return sp.Exception{Verb: v, Table: table, Columns: cols, Labels: labels, Rule: "grant.grt_1"}
	}
	insertItems := sp.Statement{Verb: sp.VerbInsert, Command: "INSERT",
		Tables:  []sp.TableRef{{Rel: rel("public.order_items"), Mode: sp.Write}},
		Columns: []sp.ColumnRef{{Rel: rel("public.order_items"), Column: "sku", Mode: sp.Write}}}
	cases := []struct {
		name   string
		st     sp.Statement
		scope  []sp.Grant
		ex     []sp.Exception
		allow  bool
		rule   string
		reason sp.ReasonCode
		label  string
	}{
		{name: "no exception: table not granted", st: sel("public.order_items", "sku"), reason: sp.ReasonNoRule},
		{name: "table exception", st: sel("public.order_items", "sku", "qty"),
			ex: []sp.Exception{ex(sp.VerbSelect, "public.order_items", nil)}, allow: true, rule: "grant.grt_1"},
		{name: "exception of another verb adds nothing", st: sel("public.order_items", "sku"),
			ex: []sp.Exception{ex(sp.VerbInsert, "public.order_items", nil)}, reason: sp.ReasonNoRule},
		{name: "exception on another table adds nothing", st: sel("public.order_items", "sku"),
			ex: []sp.Exception{ex(sp.VerbSelect, "public.orders", nil)}, reason: sp.ReasonNoRule},
		{name: "column exception: only its columns", st: sel("public.order_items", "sku", "price"),
			ex: []sp.Exception{ex(sp.VerbSelect, "public.order_items", []string{"sku"})}, reason: sp.ReasonColumnNotAllowed},
		{name: "column exception widens a role's column list", st: sel("public.customers", "id", "created_at"),
			ex: []sp.Exception{ex(sp.VerbSelect, "public.customers", []string{"created_at"})}, allow: true, rule: "grant.grt_1"},
		{name: "labelled column: granting the column does not lift its label", st: sel("public.customers", "id", "email"),
			ex: []sp.Exception{ex(sp.VerbSelect, "public.customers", []string{"email"})}, reason: sp.ReasonLabelDenied, label: "pii.email"},
		{name: "label lifted on exactly the column", st: sel("public.customers", "id", "email"),
			ex: []sp.Exception{ex(sp.VerbSelect, "public.customers", []string{"email"}, "pii.email")}, allow: true, rule: "grant.grt_1"},
		{name: "lifted label on one column does not lift it on another", st: sel("public.customers", "email", "notes"),
			ex:     []sp.Exception{ex(sp.VerbSelect, "public.customers", []string{"email"}, "pii.email", "pii.free_text")},
			reason: sp.ReasonLabelDenied, label: "pii.free_text"},
		{name: "never_grant at the top: pii.ssn stays denied", st: sel("public.customers", "ssn"),
			ex: []sp.Exception{ex(sp.VerbSelect, "public.customers", []string{"ssn"}, "pii.ssn")}, reason: sp.ReasonLabelDenied, label: "pii.ssn"},
		{name: "never_grant of the role: pii.free_text stays denied", st: sel("public.customers", "notes"),
			ex: []sp.Exception{ex(sp.VerbSelect, "public.customers", []string{"notes"}, "pii.free_text")}, reason: sp.ReasonLabelDenied, label: "pii.free_text"},
		{name: "never_grant on a whole table", st: sel("public.secrets", "value"),
			ex: []sp.Exception{ex(sp.VerbSelect, "public.secrets", nil, "secret")}, reason: sp.ReasonLabelDenied, label: "secret"},
		{name: "an invalid comment label is never grantable", st: sel("public.legacy", "blob"),
			ex: []sp.Exception{ex(sp.VerbSelect, "public.legacy", nil, catalog.InvalidLabel)}, reason: sp.ReasonLabelDenied},
		{name: "write exception", st: insertItems,
			ex: []sp.Exception{ex(sp.VerbInsert, "public.order_items", nil)}, allow: true, rule: "grant.grt_1"},
		{name: "token scope still narrows", st: sel("public.order_items", "sku"),
			scope: []sp.Grant{{Verb: sp.VerbSelect, Tables: []string{"public.orders"}}},
			ex:    []sp.Exception{ex(sp.VerbSelect, "public.order_items", nil)}, reason: sp.ReasonScopeDenied},
		{name: "problems are not lifted", st: sp.Statement{Verb: sp.VerbSelect, Problems: []sp.Problem{{Code: sp.ProblemUnparseable}}},
			ex: []sp.Exception{ex(sp.VerbSelect, "public.order_items", nil)}, reason: sp.ReasonProblem},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := p.DecideWith(sp.Principal{Agent: "bot", Scope: tc.scope}, access(tc.st), cat, tc.ex)
			require.NotNil(t, d)
			if tc.allow {
				assert.Equal(t, sp.Allow, d.Effect, "%+v", d.Reasons)
				assert.Contains(t, d.Rule, tc.rule)
				return
			}
			require.Equal(t, sp.Deny, d.Effect)
			require.NotEmpty(t, d.Reasons)
			assert.Equal(t, tc.reason, d.Reasons[0].Code, "%+v", d.Reasons)
			if tc.label != "" {
				assert.Equal(t, tc.label, d.Reasons[0].Label)
			}
			// Without exceptions the statement is denied too: exceptions
			// never narrow, and the cases above only widen.
			assert.Equal(t, sp.Deny, p.Decide(sp.Principal{Agent: "bot", Scope: tc.scope}, access(tc.st), cat).Effect)
		})
	}
}

func TestNeverGrant(t *testing.T) {
	t.Parallel()
	p := mustPolicy(t, exceptionPolicy, testCatalog())
	role := p.Roles["analyst"]
	assert.True(t, p.NeverGrantable(role, "secret"))
	assert.True(t, p.NeverGrantable(role, "pii.ssn"))
	assert.True(t, p.NeverGrantable(role, "pii.free_text"), "the role's own list")
	assert.True(t, p.NeverGrantable(nil, catalog.InvalidLabel))
	assert.False(t, p.NeverGrantable(role, "pii.email"))
	assert.False(t, p.NeverGrantable(nil, "pii.free_text"), "another role may be granted it")

	_, _, err := sp.ParsePolicy([]byte("never_grant: [\"Bad Label\"]\n"), "p.yaml", nil)
	require.Error(t, err)
	_, _, err = sp.ParsePolicy([]byte("roles:\n  r:\n    never_grant: [ok, \"x y\"]\n"), "p.yaml", nil)
	require.Error(t, err)
}
