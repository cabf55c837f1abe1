package gateway_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/gateway"
	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/internal/testpg"
)

// otherLogin is a credential source whose agent sessions log in as user,
// not as the catalog's login (as Vault gives each its own role): the
// gateway then cannot take the catalog's search path for the sessions'.
type otherLogin struct {
	creds.Source
	user string
}

func (o otherLogin) Acquire(ctx context.Context, req creds.Request) (*creds.Lease, error) {
	if req.Agent == "(keyhole catalog)" {
		return o.Source.Acquire(ctx, req)
	}
	return (&creds.Static{User: o.user}).Acquire(ctx, req)
}

// sessionPathEnv is the shop with a second orders table in schema
// analytics, and an agent login that starts on "analytics, public": by a
// setting of the role in the database, or (dbDefault) by the database's
// default search_path, where keyhole's catalog login, which lacks USAGE on
// analytics, starts on public alone. An unqualified orders is
// analytics.orders in the agent's sessions, public.orders in the
// catalog's.
func sessionPathEnv(t *testing.T, dbDefault bool) (upstream, string) {
	t.Helper()
	// Created before the database, dropped after it (cleanups run last
	// in, first out); its grants and settings there go with it.
	agentLogin := testpg.NewRole(t, "")
	up := newUpstream(t, fixture.ShopSQL(t)+`
CREATE SCHEMA analytics;
CREATE TABLE analytics.orders (id int PRIMARY KEY, customer_id int, total numeric);
INSERT INTO analytics.orders SELECT g, 1, g * 1000 FROM generate_series(1, 7) g;`)
	_, err := up.adminExec(t, fmt.Sprintf(`
GRANT USAGE ON SCHEMA public, analytics TO %[1]s;
GRANT SELECT ON ALL TABLES IN SCHEMA public, analytics TO %[1]s;`, agentLogin))
	require.NoError(t, err)
	set := fmt.Sprintf("ALTER ROLE %s IN DATABASE %s SET search_path = analytics, public", agentLogin, up.db.Name)
	if dbDefault {
		set = fmt.Sprintf("ALTER DATABASE %s SET search_path = analytics, public", up.db.Name)
	}
	_, err = up.adminExec(t, set)
	require.NoError(t, err)
	return up, agentLogin
}

// pathPolicy is the fixture policy whose analyst may change search_path
// and reset the session's identity (DISCARD ALL).
var pathPolicy = strings.Replace(fixture.Policy, "    max_rows: 1000\n",
	"    max_rows: 1000\n    settings: [search_path, session_authorization]\n", 1)

// TestSessionStartingSearchPath: when sessions do not log in as the
// catalog's login, keyhole reads each session's starting search path
// after login and decides on the relations Postgres resolves along it, at
// login and after RESET search_path.
func TestSessionStartingSearchPath(t *testing.T) {
	t.Parallel()
	t.Run("role setting", func(t *testing.T) { t.Parallel(); testSessionStartingSearchPath(t, false) })
	t.Run("database default, USAGE", func(t *testing.T) { t.Parallel(); testSessionStartingSearchPath(t, true) })
}

func testSessionStartingSearchPath(t *testing.T, dbDefault bool) {
	up, agentLogin := sessionPathEnv(t, dbDefault)
	e, err := build(t, false, gateway.Options{WrapCreds: func(s creds.Source) creds.Source {
		return otherLogin{Source: s, user: agentLogin}
	}}, map[string]string{"": up.url()}, pathPolicy)
	require.NoError(t, err)
	require.Contains(t, pathPolicy, "settings:")
	c := e.connect(agent, up.db.Name)

	assert.Equal(t, agentLogin, query(c, "SELECT current_user::text"), "the session is the agent login's")
	assert.Equal(t, "42501", query(c, "SELECT count(*)::text FROM orders"),
		"orders is analytics.orders in this session, which the policy does not allow")
	assert.Equal(t, "5", query(c, "SELECT count(*)::text FROM public.orders"))
	_, err = c.Exec(context.Background(), "SET search_path = public")
	require.NoError(t, err)
	assert.Equal(t, "5", query(c, "SELECT count(*)::text FROM orders"))
	_, err = c.Exec(context.Background(), "RESET search_path")
	require.NoError(t, err)
	assert.Equal(t, "42501", query(c, "SELECT count(*)::text FROM orders"), "RESET returns to the session's own path")
	_, err = c.Exec(context.Background(), "SET search_path = public")
	require.NoError(t, err)
	_, err = c.Exec(context.Background(), "DISCARD ALL")
	require.NoError(t, err)
	assert.Equal(t, "42501", query(c, "SELECT count(*)::text FROM orders"), "DISCARD ALL returns to the session's own path")
	_, err = c.Exec(context.Background(), "SET search_path = public")
	require.NoError(t, err)
	assert.Equal(t, "5", query(c, "SELECT count(*)::text FROM orders"), "after DISCARD ALL the session resolves names again")
	e.waitLog("upstream session ready")
}

// TestSessionProbeFails: a session whose starting state cannot be read is
// refused (08001), with no credential in the error.
func TestSessionProbeFails(t *testing.T) {
	t.Parallel()
	up, agentLogin := sessionPathEnv(t, false)
	// The probe calls to_json; the catalog does not.
	_, err := up.adminExec(t, "REVOKE EXECUTE ON FUNCTION pg_catalog.to_json(anyelement) FROM PUBLIC")
	require.NoError(t, err)
	e, err := build(t, false, gateway.Options{WrapCreds: func(s creds.Source) creds.Source {
		return otherLogin{Source: s, user: agentLogin}
	}}, map[string]string{"": up.url()}, fixture.Policy)
	require.NoError(t, err)
	_, err = e.dial(agent, up.db.Name)
	require.Error(t, err)
	assert.Equal(t, "08001", sqlState(err), "%v", err)
	assert.NotContains(t, err.Error(), agentLogin, "the upstream login is not the agent's business")
	e.waitLog("session probe failed", "permission denied")
}

// lastUpstreamQuery is the last query pg_stat_activity shows for the
// database's one keyhole session of agent.
func lastUpstreamQuery(t *testing.T, up upstream) string {
	t.Helper()
	var q string
	up.adminScan(t, "SELECT query FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE $2",
		[]any{up.db.Name, "keyhole:" + agent + "%"}, &q)
	return q
}

// TestSessionProbeOnlyWhereNeeded: a session of a static login (the
// catalog's) runs nothing before the agent's first statement; one of
// another login runs the probe, once.
func TestSessionProbeOnlyWhereNeeded(t *testing.T) {
	t.Parallel()
	t.Run("static", func(t *testing.T) {
		t.Parallel()
		up, _ := sessionPathEnv(t, false)
		e := start(t, map[string]string{"": up.url()}, fixture.Policy)
		e.connect(agent, up.db.Name)
		assert.Empty(t, lastUpstreamQuery(t, up), "a static login's session pays no round trip")
	})
	t.Run("other login", func(t *testing.T) {
		t.Parallel()
		up, agentLogin := sessionPathEnv(t, false)
		e, err := build(t, false, gateway.Options{WrapCreds: func(s creds.Source) creds.Source {
			return otherLogin{Source: s, user: agentLogin}
		}}, map[string]string{"": up.url()}, fixture.Policy)
		require.NoError(t, err)
		e.connect(agent, up.db.Name)
		assert.Contains(t, lastUpstreamQuery(t, up), "current_schemas(true)")
	})
}
