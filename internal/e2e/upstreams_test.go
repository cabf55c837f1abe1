package e2e_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/internal/fixture"
)

// TestSeveralUpstreams: keyhole serve --upstream NAME=URL, repeated, fronts
// two databases with their own logins; each agent reaches its role's
// database only, through the same listener.
func TestSeveralUpstreams(t *testing.T) {
	shop := newUpstream(t, fixture.ShopSQL(t))
	hr := newUpstream(t, "CREATE TABLE public.employees (id int PRIMARY KEY, name text, salary numeric);\nINSERT INTO public.employees VALUES (1, 'Grace', 100);")
	key := newAgentKey(t)
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	writeFile(t, policy, fixture.PolicyRoles+`  hr:
    upstream: hr
    allow:
      - select: {public.employees: [id, name]}
agents:
  sales-summarizer: {role: analyst}
  hr-bot: {role: hr}
`)
	kh := startKeyhole(t, nil,
		"--upstream", "shop="+shop.URL(),
		"--upstream", "hr="+hr.URL(),
		"--policy", policy,
		"--token-key", key.Public,
		"--audit", filepath.Join(dir, "audit.jsonl"),
		"--listen-postgres", "127.0.0.1:0",
	)
	host, port := kh.HostPort()
	ctx := context.Background()
	connect := func(agent, db string) (*pgx.Conn, error) {
		return pgx.Connect(ctx, fmt.Sprintf("host=%s port=%s user=%s password=%s dbname=%s sslmode=require",
			host, port, agent, key.mint(t, agent), db))
	}
	one := func(c *pgx.Conn, sql string) string {
		var v string
		if err := c.QueryRow(ctx, sql).Scan(&v); err != nil {
			return sqlstate(err)
		}
		return v
	}

	s, err := connect(agentName, shop.DB.Name)
	require.NoError(t, err)
	defer s.Close(ctx)
	assert.Equal(t, "Ada Lovelace", one(s, "SELECT name FROM customers WHERE id = 1"))
	assert.Equal(t, shop.Login, one(s, "SELECT current_user::text"), "the shop URL's login")

	h, err := connect("hr-bot", hr.DB.Name)
	require.NoError(t, err)
	defer h.Close(ctx)
	assert.Equal(t, "Grace", one(h, "SELECT name FROM employees WHERE id = 1"))
	assert.Equal(t, "42501", one(h, "SELECT salary::text FROM employees WHERE id = 1"))
	assert.Equal(t, hr.Login, one(h, "SELECT current_user::text"), "the hr URL's login")

	_, err = connect("hr-bot", shop.DB.Name)
	assert.Equal(t, "28000", sqlstate(err), "another role's database")
}
