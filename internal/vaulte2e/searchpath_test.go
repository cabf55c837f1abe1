package vaulte2e_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/internal/testpg"
	"github.com/keyholedb/keyhole/internal/testvault"
)

// TestVaultSessionSearchPath: a Vault login starts with its own search
// path, not the catalog login's. The analyst role's creation statements
// (as a DBA may extend them) give each dynamic login the search_path
// "analytics, public" and, through a group role, USAGE on analytics and
// SELECT on analytics.orders, a table of the same name as the policy's
// public.orders. keyhole's catalog login starts on "$user", public. An
// unqualified orders is analytics.orders in the agent's session: keyhole
// must decide on that (the policy does not allow it), not on the
// public.orders the catalog's path names, before and after RESET
// search_path and DISCARD ALL, which return to the login's path.
func TestVaultSessionSearchPath(t *testing.T) {
	vs := testvault.Start(t)
	// The group role outlives the database (cleanups run last in, first
	// out): its privileges there go with the database.
	reader := testpg.NewRole(t, "")
	e := newEnv(t, vs, opts{
		setupSQL: fmt.Sprintf(`
CREATE SCHEMA analytics;
CREATE TABLE analytics.orders (id int PRIMARY KEY, customer_id int, total numeric);
INSERT INTO analytics.orders SELECT g, 1, g * 1000 FROM generate_series(1, 7) g;
GRANT USAGE ON SCHEMA analytics TO %[1]s;
GRANT SELECT ON analytics.orders TO %[1]s;
GRANT %[1]s TO {{mgmt}} WITH ADMIN OPTION;`, reader),
		analystSettings: "[search_path, session_authorization]",
		analystExtra: []string{
			`ALTER ROLE "{{name}}" SET search_path = analytics, public;`,
			fmt.Sprintf(`GRANT %s TO "{{name}}";`, reader),
		},
	})
	ctx := context.Background()

	// The setup is what the test says: straight to Postgres, the Vault
	// login reads analytics.orders (7 rows) for an unqualified orders.
	sec, err := vs.Client.Logical().ReadWithContext(ctx, e.vdb.Mount+"/creds/analyst")
	require.NoError(t, err)
	require.NotNil(t, sec)
	t.Cleanup(func() { _ = vs.Client.Sys().Revoke(sec.LeaseID) })
	direct, err := pgx.Connect(ctx, testpg.WithUser(e.db.DSN, sec.Data["username"].(string), sec.Data["password"].(string)))
	require.NoError(t, err)
	n, err := count(ctx, direct, "SELECT count(*) FROM orders")
	require.NoError(t, err)
	require.Equal(t, int64(7), n, "the Vault login's unqualified orders is analytics.orders")
	require.NoError(t, direct.Close(ctx))

	c := e.connect(summarizer, "vaulte2e-searchpath")
	denied := func(what string) {
		t.Helper()
		n, err := count(ctx, c, "SELECT count(*) FROM orders")
		assert.Equal(t, "42501", sqlState(err), "%s: unqualified orders is analytics.orders, which the policy does not allow; got %d rows, err %v", what, n, err)
	}
	denied("at login")
	// The schema-qualified table the policy allows is still allowed.
	n, err = count(ctx, c, "SELECT count(*) FROM public.orders")
	require.NoError(t, err)
	assert.Equal(t, int64(5), n)

	// A path set by the agent replaces the login's ...
	_, err = c.Exec(ctx, "SET search_path = public")
	require.NoError(t, err)
	n, err = count(ctx, c, "SELECT count(*) FROM orders")
	require.NoError(t, err, "search_path public: orders is public.orders")
	assert.Equal(t, int64(5), n)
	// ... and RESET and DISCARD ALL return to it, not to the catalog's.
	_, err = c.Exec(ctx, "RESET search_path")
	require.NoError(t, err)
	denied("after RESET search_path")
	_, err = c.Exec(ctx, "SET search_path = public")
	require.NoError(t, err)
	_, err = c.Exec(ctx, "DISCARD ALL")
	require.NoError(t, err)
	denied("after DISCARD ALL")

	// A second session of another agent (its own Vault login) starts on
	// the login's path too, and shares no cached decision with the first.
	c2 := e.connect(orderBot, "vaulte2e-searchpath2")
	_, err = count(ctx, c2, "SELECT count(*) FROM orders")
	assert.Equal(t, "42501", sqlState(err), "second agent: %v", err)

	// The agent leaves with its path set to public, at a clean point:
	// keyhole resets the upstream session (DISCARD ALL) and keeps it for
	// the agent's next session on the same login, which must start on
	// the login's path, as keyhole knows from the first session's probe.
	_, err = c.Exec(ctx, "SET search_path = public")
	require.NoError(t, err)
	backend := func(appName string) (pid int) {
		t.Helper()
		require.NoError(t, e.admin().QueryRow(ctx, "SELECT pid FROM pg_stat_activity WHERE application_name = $1", "keyhole:"+summarizer+" "+appName).Scan(&pid))
		return pid
	}
	kept := backend("vaulte2e-searchpath")
	closes := func() int { return strings.Count(readFile(t, e.audit), `"kind":"close"`) }
	before := closes()
	require.NoError(t, c.Close(ctx))
	// keyhole keeps the backend before it audits the close.
	require.Eventually(t, func() bool { return closes() > before }, 10*time.Second, 20*time.Millisecond)
	c3 := e.connect(summarizer, "vaulte2e-searchpath")
	assert.Equal(t, kept, backend("vaulte2e-searchpath"), "the agent's next session did not reuse its kept upstream session")
	n, err = count(ctx, c3, "SELECT count(*) FROM orders")
	assert.Equal(t, "42501", sqlState(err), "reused session: unqualified orders is analytics.orders again; got %d rows, err %v", n, err)
	n, err = count(ctx, c3, "SELECT count(*) FROM public.orders")
	require.NoError(t, err)
	assert.Equal(t, int64(5), n)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}
