package gateway

import (
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// TestGenerationRoutes checks the routes a generation precomputes against
// what the policy and the upstreams say: each agent's role and upstream,
// the engine deciding for it (the named upstream's, the single unnamed
// upstream's, none for an upstream not configured) and its dialect, and
// nothing for an agent the policy does not know. Each generation has its
// own epoch.
func TestGenerationRoutes(t *testing.T) {
	t.Parallel()
	pol, _, err := sqlpolicy.ParsePolicy([]byte(`
roles:
  pg: {upstream: shop, allow: [{select: [public.orders]}]}
  my: {upstream: mart, allow: [{select: [public.orders]}]}
  gone: {upstream: nowhere, allow: [{select: [public.orders]}]}
agents:
  pg-bot: {role: pg}
  my-bot: {role: my}
  gone-bot: {role: gone}
`), "policy.yaml", nil)
	require.NoError(t, err)
	shop, mart := new(sqlpolicy.Engine), new(sqlpolicy.Engine)
	g := newGeneration(pol, nil, map[string]*sqlpolicy.Engine{"shop": shop, "mart": mart},
		map[string]string{"shop": "postgres", "mart": "mysql"})
	r := &router{dialect: "postgres"}
	r.gen = new(atomic.Pointer[generation])
	r.gen.Store(g)

	for agent, want := range map[string]struct {
		role, up string
		engine   *sqlpolicy.Engine
		dialect  string
	}{
		"pg-bot":   {"pg", "shop", shop, "postgres"},
		"my-bot":   {"my", "mart", mart, "mysql"},
		"gone-bot": {"gone", "nowhere", nil, ""},
	} {
		role, up, ok := r.Role(agent)
		assert.True(t, ok, agent)
		assert.Equal(t, want.role, role, agent)
		assert.Equal(t, want.up, up, agent)
		e, name := g.engineFor(agent)
		assert.Same(t, want.engine, e, agent)
		if want.engine != nil {
			assert.Equal(t, want.up, name, agent)
		}
		assert.Equal(t, want.dialect, g.routes[agent].dialect, agent)
	}
	_, _, ok := r.Role("mallory")
	assert.False(t, ok)
	e, _ := g.engineFor("mallory")
	assert.Nil(t, e)

	// The single unnamed upstream serves every role.
	one := new(sqlpolicy.Engine)
	g2 := newGeneration(pol, nil, map[string]*sqlpolicy.Engine{"": one}, map[string]string{"": "postgres"})
	for _, agent := range []string{"pg-bot", "my-bot", "gone-bot"} {
		e, name := g2.engineFor(agent)
		assert.Same(t, one, e, agent)
		assert.Equal(t, "", name, agent)
	}
	assert.NotZero(t, g.epoch)
	assert.NotEqual(t, g.epoch, g2.epoch)
}
