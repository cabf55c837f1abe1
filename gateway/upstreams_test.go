package gateway_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/internal/fixture"
)

const hrSQL = `
CREATE TABLE public.employees (id int PRIMARY KEY, name text NOT NULL, salary numeric NOT NULL);
INSERT INTO public.employees VALUES (1, 'Grace', 100), (2, 'Alan', 90);
`

// twoPolicy puts the analyst on shop and an hr role on hr; labels apply
// by name on every upstream.
const twoPolicy = `labels:
  public.customers.email: [pii.email]
  public.employees.salary: [pii.salary]
roles:
  analyst:
    upstream: shop
    allow:
      - select: [public.orders, public.customers]
    deny_labels: [pii.*]
  hr:
    upstream: hr
    allow:
      - select: [public.employees]
    deny_labels: [pii.*]
agents:
  sales-summarizer: {role: analyst}
  hr-bot: {role: hr}
`

// TestUpstreams: one keyhole in front of two databases, each with its own
// login, catalog and engine; an agent reaches its role's database only.
func TestUpstreams(t *testing.T) {
	t.Parallel()
	shop := newUpstream(t, fixture.ShopSQL(t))
	hr := newUpstream(t, hrSQL)
	e := start(t, map[string]string{"shop": shop.url(), "hr": hr.url()}, twoPolicy)

	sales := e.connect(agent, shop.db.Name)
	assert.Equal(t, "Ada Lovelace", query(sales, "SELECT name FROM customers WHERE id = 1"))
	assert.Equal(t, "42501", query(sales, "SELECT email FROM customers WHERE id = 1"))
	assert.Equal(t, shop.login, query(sales, "SELECT current_user::text"), "the shop upstream's own login")

	bot := e.connect("hr-bot", hr.db.Name)
	assert.Equal(t, "Grace", query(bot, "SELECT name FROM employees WHERE id = 1"))
	assert.Equal(t, "42501", query(bot, "SELECT salary::text FROM employees WHERE id = 1"), "a label of the policy on hr's column")
	assert.Equal(t, "42P01", query(bot, "SELECT name FROM customers WHERE id = 1"), "decided against hr's catalog, which has no customers")
	assert.Equal(t, hr.login, query(bot, "SELECT current_user::text"))

	t.Run("another upstream's database is refused", func(t *testing.T) {
		for _, tc := range []struct{ agent, db string }{
			{"hr-bot", shop.db.Name},
			{agent, hr.db.Name},
			{agent, "postgres"},
		} {
			_, err := e.dial(tc.agent, tc.db)
			var pe *pgconn.PgError
			require.ErrorAs(t, err, &pe, "%s asking for %s", tc.agent, tc.db)
			assert.Equal(t, "28000", pe.Code, "%s asking for %s", tc.agent, tc.db)
			assert.Contains(t, pe.Message, tc.db)
		}
	})
	t.Run("no database means the role's", func(t *testing.T) {
		// pgx sends no database parameter when none is given; Postgres
		// then uses the user name, and so does keyhole: the role's.
		c, err := e.dial("hr-bot", "")
		require.NoError(t, err)
		assert.Equal(t, hr.db.Name, query(c, "SELECT current_database()::text"))
	})
	t.Run("a reload that moves a role to another upstream ends its sessions", func(t *testing.T) {
		moved := strings.Replace(twoPolicy, "upstream: hr", "upstream: shop", 1)
		moved = strings.Replace(moved, "select: [public.employees]", "select: [public.orders]", 1)
		e.writePolicy(moved)
		require.NoError(t, e.g.Reload())
		assert.Equal(t, "28000", query(bot, "SELECT name FROM employees WHERE id = 1"))
		c := e.connect("hr-bot", shop.db.Name)
		assert.NotEqual(t, "42501", query(c, "SELECT count(*)::text FROM orders"))
		assert.Equal(t, "Ada Lovelace", query(sales, "SELECT name FROM customers WHERE id = 1"), "other agents go on")
	})
}

// TestUpstreamsPolicyChecks: with several upstreams every name a role uses
// must exist in its own upstream's catalog, and every label in one.
func TestUpstreamsPolicyChecks(t *testing.T) {
	t.Parallel()
	shop := newUpstream(t, fixture.ShopSQL(t))
	hr := newUpstream(t, hrSQL)
	ups := map[string]string{"shop": shop.url(), "hr": hr.url()}
	for _, tc := range []struct {
		name, policy string
		want         []string
	}{
		{"label in no catalog", strings.Replace(twoPolicy, "public.employees.salary", "public.employees.salry", 1),
			[]string{"policy.yaml:3:", "column public.employees.salry is in no upstream's catalog"}},
		{"grant of another upstream's table", strings.Replace(twoPolicy, "select: [public.employees]", "select: [public.employees, public.orders]", 1),
			[]string{"roles.hr.allow[0].select: relation public.orders is not in upstream hr's catalog"}},
		{"unknown upstream", strings.Replace(twoPolicy, "upstream: hr", "upstream: payroll", 1),
			[]string{`role hr uses upstream "payroll", which is not configured`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := tryStart(t, ups, tc.policy)
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

// TestRefusedAtStart: what this build cannot serve is refused with the
// reason, not ignored.
func TestRefusedAtStart(t *testing.T) {
	t.Parallel()
	shop := newUpstream(t, fixture.ShopSQL(t))
	for _, tc := range []struct {
		name string
		ups  map[string]string
		set  setup
		want string
	}{
		{"mysql upstream without listen.mysql", map[string]string{"shop": shop.url(), "crm": "mysql://root@127.0.0.1:3306/crm"}, nil,
			`listen.mysql: upstreams ["crm"] are mysql:// but listen.mysql is empty`},
		{"listen.mysql without mysql upstream", map[string]string{"": shop.url()}, func(c *config.Config) { c.Listen.MySQL = "127.0.0.1:0" },
			"listen.mysql: no upstream is mysql://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := []setup{}
			if tc.set != nil {
				opts = append(opts, tc.set)
			}
			_, err := tryStart(t, tc.ups, fixture.Policy, opts...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
