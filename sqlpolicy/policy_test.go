package sqlpolicy_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

func TestParsePolicyREADMEExample(t *testing.T) {
	t.Parallel()
	for _, withCatalog := range []bool{false, true} {
		name := "without catalog"
		if withCatalog {
			name = "with catalog"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cat := testCatalog()
			if !withCatalog {
				cat = nil
			}
			p, warns, err := sqlpolicy.ParsePolicy([]byte(fixture.Policy), "policy.yaml", cat)
			require.NoError(t, err)
			assert.Empty(t, warns)

			role := p.Role("sales-summarizer")
			require.NotNil(t, role)
			assert.Equal(t, "analyst", role.Name)
			assert.Equal(t, "shop", role.Upstream)
			assert.Equal(t, 1000, role.MaxRows)
			assert.True(t, role.Catalog, "catalog defaults to true")
			assert.False(t, role.Explain, "explain defaults to false")
			assert.Equal(t, []string{"pii.*", "secret"}, role.DenyLabels)
			assert.Equal(t, []sqlpolicy.Rule{
				{Verb: sqlpolicy.VerbSelect, Name: "roles.analyst.allow[0].select", Line: 9,
					Tables: []sqlpolicy.TableRule{{Pattern: "public.orders"}, {Pattern: "public.customers"}}},
				{Verb: sqlpolicy.VerbInsert, Name: "roles.analyst.allow[1].insert", Line: 10,
					Tables: []sqlpolicy.TableRule{{Pattern: "public.orders"}}},
			}, role.Allow)

			assert.Equal(t, []sqlpolicy.LabelRule{
				{Rel: sqlpolicy.Rel{Schema: "public", Name: "customers"}, Column: "email", Labels: []string{"pii.email"}, Line: 2},
				{Rel: sqlpolicy.Rel{Schema: "public", Name: "customers"}, Column: "ssn", Labels: []string{"pii.ssn"}, Line: 3},
				{Rel: sqlpolicy.Rel{Schema: "public", Name: "secrets"}, Labels: []string{"secret"}, Line: 4},
			}, p.Labels)
			assert.Equal(t, []string{"pii.email"}, p.ColumnLabels(cat, sqlpolicy.ParseRel("public.customers"), "email"))
			assert.Equal(t, []string{"secret"}, p.ColumnLabels(cat, sqlpolicy.ParseRel("public.secrets"), "value"))

			r, up, ok := sqlpolicy.NewEngine(p, cat, newFakeAnalyzer(nil), sqlpolicy.EngineOptions{}).Role("sales-summarizer")
			assert.True(t, ok)
			assert.Equal(t, "analyst", r)
			assert.Equal(t, "shop", up)
			_, _, ok = sqlpolicy.NewEngine(p, cat, newFakeAnalyzer(nil), sqlpolicy.EngineOptions{}).Role("nobody")
			assert.False(t, ok)
		})
	}
}

func TestParsePolicyExtendedFormat(t *testing.T) {
	t.Parallel()
	src := `roles:
  support:
    description: helpdesk agents
    upstream: shop
    allow:
      - select: {public.customers: [id, name], public.orders: [id, status]}
      - select: [public.*]
      - update: {public.orders: [status]}
      - delete: [public.orders]
      - merge: [public.orders]
      - copy: [public.orders]
      - ddl: [public.new_table]
      - lock: [public.orders]
      - call: [public.refund]
    functions: [public.my_fn]
    settings: [search_path]
    catalog: false
    explain: true
    max_rows: 0
agents:
  helpdesk: {role: support, description: the helpdesk bot}
`
	p, warns, err := sqlpolicy.ParsePolicy([]byte(src), "p.yaml", testCatalog())
	require.NoError(t, err)
	// ddl may name a relation that does not exist yet: a warning.
	require.Len(t, warns, 1)
	assert.Equal(t, 12, warns[0].Line)

	role := p.Roles["support"]
	require.NotNil(t, role)
	assert.Equal(t, "helpdesk agents", role.Description)
	assert.False(t, role.Catalog)
	assert.True(t, role.Explain)
	assert.Equal(t, []string{"public.my_fn"}, role.Functions)
	assert.Equal(t, []string{"search_path"}, role.Settings)
	require.Len(t, role.Allow, 9)
	assert.Equal(t, []sqlpolicy.TableRule{
		{Pattern: "public.customers", Columns: []string{"id", "name"}},
		{Pattern: "public.orders", Columns: []string{"id", "status"}},
	}, role.Allow[0].Tables)
	assert.Equal(t, "roles.support.allow[8].call", role.Allow[8].Name)
	assert.Equal(t, "the helpdesk bot", p.Agents["helpdesk"].Description)
}

func TestParsePolicyErrors(t *testing.T) {
	t.Parallel()
	// Each case has one error, at line (1-based) and mentioning want.
	cases := []struct {
		name string
		src  string
		line int
		want string
	}{
		{"unknown top-level key", "labelz: {}\n", 1, `unknown key "labelz"`},
		{"unknown role key", "roles:\n  a:\n    alow: []\nagents:\n  x: {role: a}\n", 3, `unknown key "alow"`},
		{"unknown agent key", "roles:\n  a: {}\nagents:\n  x: {role: a, rol: b}\n", 4, `unknown key "rol"`},
		{"duplicate key", "roles:\n  a: {}\n  a: {}\nagents:\n  x: {role: a}\n", 3, `duplicate key "a"`},
		{"unknown verb", "roles:\n  a:\n    allow:\n      - selekt: [public.orders]\nagents:\n  x: {role: a}\n", 4, `unknown verb "selekt"`},
		{"two verbs in one item", "roles:\n  a:\n    allow:\n      - {select: [public.orders], insert: [public.orders]}\nagents:\n  x: {role: a}\n", 4, "want one {verb: tables} mapping"},
		{"unqualified table", "roles:\n  a:\n    allow:\n      - select: [orders]\nagents:\n  x: {role: a}\n", 4, "want schema.table"},
		{"table not in catalog", "roles:\n  a:\n    allow:\n      - select: [public.nope]\nagents:\n  x: {role: a}\n", 4, "relation public.nope is not in the catalog"},
		{"column not in catalog", "roles:\n  a:\n    allow:\n      - select:\n          public.orders: [id, nope]\nagents:\n  x: {role: a}\n", 5, "column nope is not in the catalog"},
		{"column list on wildcard", "roles:\n  a:\n    allow:\n      - select:\n          public.*: [id]\nagents:\n  x: {role: a}\n", 5, "column lists need a single relation"},
		{"bad label", "labels:\n  public.customers.email: [PII.Email]\n", 2, `"PII.Email" is not a label`},
		{"bad label pattern", "roles:\n  a:\n    deny_labels: [pii.*.x*]\nagents:\n  x: {role: a}\n", 3, "not a label pattern"},
		{"label on missing column", "labels:\n  public.customers.nope: [pii.email]\n", 2, "column public.customers.nope is not in the catalog"},
		{"label on missing table", "labels:\n  public.nope: [secret]\n", 2, "relation public.nope is not in the catalog"},
		{"label key shape", "labels:\n  customers: [secret]\n", 2, "want schema.table or schema.table.column"},
		{"agent with missing role", "roles:\n  a: {}\nagents:\n  x: {role: a}\n  y: {role: b}\n", 5, `role "b" is not defined`},
		{"agent without role", "roles:\n  a: {}\nagents:\n  x: {role: a}\n  y: {}\n", 5, "role is required"},
		{"negative max_rows", "roles:\n  a:\n    max_rows: -1\nagents:\n  x: {role: a}\n", 3, "must not be negative"},
		{"non-integer max_rows", "roles:\n  a:\n    max_rows: lots\nagents:\n  x: {role: a}\n", 3, "want a whole number"},
		{"catalog not a bool", "roles:\n  a:\n    catalog: maybe\nagents:\n  x: {role: a}\n", 3, "want true or false"},
		{"unknown function", "roles:\n  a:\n    functions: [public.nope]\nagents:\n  x: {role: a}\n", 3, "function public.nope is not in the catalog"},
		{"call of a function", "roles:\n  a:\n    allow:\n      - call: [public.my_fn]\nagents:\n  x: {role: a}\n", 4, "not a procedure"},
		{"bad setting", "roles:\n  a:\n    settings: [Search_Path]\nagents:\n  x: {role: a}\n", 3, "not a setting name"},
		{"list written as scalar", "roles:\n  a:\n    deny_labels: pii.*\nagents:\n  x: {role: a}\n", 3, "want a list"},
		{"column list for delete", "roles:\n  a:\n    allow:\n      - delete: {public.orders: [id]}\nagents:\n  x: {role: a}\n", 4, "takes a list of names"},
		{"yaml syntax", "roles:\n  a: [\n", 0, "yaml:"},
		{"two documents", "roles: {}\n---\nroles: {}\n", 2, "one YAML document"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, _, err := sqlpolicy.ParsePolicy([]byte(tc.src), "p.yaml", testCatalog())
			require.Error(t, err)
			assert.Nil(t, p)
			var errs sqlpolicy.PolicyErrors
			require.True(t, errors.As(err, &errs))
			require.Len(t, errs, 1, "errors: %v", err)
			assert.Equal(t, tc.line, errs[0].Line)
			assert.Equal(t, "p.yaml", errs[0].File)
			assert.Contains(t, errs[0].Msg, tc.want)
			var one *sqlpolicy.PolicyError
			assert.True(t, errors.As(err, &one))
		})
	}
}

func TestParsePolicyCollectsEveryError(t *testing.T) {
	t.Parallel()
	src := "roles:\n  a:\n    max_rows: -5\n    bogus: 1\nagents:\n  x: {role: nope}\n"
	_, _, err := sqlpolicy.ParsePolicy([]byte(src), "p.yaml", nil)
	var errs sqlpolicy.PolicyErrors
	require.True(t, errors.As(err, &errs))
	lines := make([]int, len(errs))
	for i, e := range errs {
		lines[i] = e.Line
	}
	assert.Equal(t, []int{3, 4, 6}, lines)
}

func TestParsePolicyWarnings(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		src  string
		line int
	}{
		{"role without agents", "roles:\n  a: {}\n  b: {}\nagents:\n  x: {role: a}\n", 3},
		{"empty policy", "", 0},
		{"listing a built-in function", "roles:\n  a:\n    functions: [pg_catalog.lower]\nagents:\n  x: {role: a}\n", 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, warns, err := sqlpolicy.ParsePolicy([]byte(tc.src), "p.yaml", testCatalog())
			require.NoError(t, err)
			require.NotNil(t, p)
			require.Len(t, warns, 1)
			assert.Equal(t, tc.line, warns[0].Line)
		})
	}
}

func TestLoadPolicyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	require.NoError(t, os.WriteFile(path, []byte(fixture.Policy), 0o600))
	p, _, err := sqlpolicy.LoadPolicyFile(path, testCatalog())
	require.NoError(t, err)
	assert.Equal(t, path, p.Name)

	_, _, err = sqlpolicy.LoadPolicyFile(filepath.Join(dir, "missing.yaml"), nil)
	require.Error(t, err)
	assert.True(t, errors.Is(err, os.ErrNotExist))

	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("roles:\n  a:\n    max_rows: -1\n"), 0o600))
	_, _, err = sqlpolicy.LoadPolicyFile(bad, nil)
	var pe *sqlpolicy.PolicyError
	require.True(t, errors.As(err, &pe))
	assert.Equal(t, bad, pe.File)
	assert.Equal(t, 3, pe.Line)
}
