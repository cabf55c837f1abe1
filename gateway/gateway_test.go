package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/gateway"
	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/internal/fixture"
)

func TestMain(m *testing.M) { fixture.Main(m) }

const agent = "sales-summarizer"

// withProducts is the example policy with products readable too.
var withProducts = strings.Replace(fixture.Policy, "[public.orders, public.customers]", "[public.orders, public.customers, public.products]", 1)

// TestReload: Reload, a SIGHUP on Options.Reload and a change of the file
// each swap in the policy for open sessions; a bad file keeps the running
// policy, says why and shows in the metrics.
func TestReload(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, fixture.ShopSQL(t))
	e := start(t, map[string]string{"": up.url()}, fixture.Policy)
	c := e.connect(agent, up.db.Name)
	require.Equal(t, "42501", query(c, "SELECT title FROM products WHERE id = 1"))
	require.Equal(t, "Ada Lovelace", query(c, "SELECT name FROM customers WHERE id = 1"))

	t.Run("Reload", func(t *testing.T) {
		e.writePolicy(withProducts)
		require.NoError(t, e.g.Reload())
		assert.Equal(t, "Keyboard", query(c, "SELECT title FROM products WHERE id = 1"), "the open session decides with the new policy")
	})
	t.Run("bad policy keeps the running one", func(t *testing.T) {
		e.writePolicy(fixture.Policy + "roles_typo: {}\n")
		err := e.g.Reload()
		require.Error(t, err)
		assert.Contains(t, err.Error(), "roles_typo")
		assert.Contains(t, e.waitLog("policy reload failed"), "roles_typo")
		assert.Equal(t, "Keyboard", query(c, "SELECT title FROM products WHERE id = 1"))
		assert.Equal(t, "42501", query(c, "SELECT email FROM customers WHERE id = 1"))
		resp, err := http.Get("http://" + e.g.AdminAddr().String() + "/metrics")
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Contains(t, string(body), "keyhole_policy_reload_ok 0")
		assert.Contains(t, string(body), `keyhole_policy_reloads_total{result="error"} 1`)
	})
	t.Run("SIGHUP", func(t *testing.T) {
		e.writePolicy(fixture.Policy)
		e.hup <- syscall.SIGHUP
		e.waitLog("policy reloaded", "SIGHUP", `"catalog_reloaded":true`)
		assert.Equal(t, "42501", query(c, "SELECT title FROM products WHERE id = 1"))
	})
	t.Run("ReloadPolicy keeps the catalog", func(t *testing.T) {
		// A table created now is unknown until the schema is read again.
		_, err := up.adminExec(t, "CREATE TABLE public.invoices (id int PRIMARY KEY, amount numeric); INSERT INTO public.invoices VALUES (1, 42); GRANT ALL ON public.invoices TO "+up.login)
		require.NoError(t, err)
		withInvoices := strings.Replace(fixture.Policy, "public.customers]", "public.customers, public.invoices]", 1)
		e.writePolicy(withInvoices)
		err = e.g.ReloadPolicy()
		require.Error(t, err, "the running catalog has no invoices")
		assert.Contains(t, err.Error(), "public.invoices")
		require.NoError(t, e.g.Reload())
		assert.Equal(t, "42", query(c, "SELECT amount::text FROM invoices"))
	})
}

// TestPolicyFileWatch: an edited policy file is picked up without a
// signal.
func TestPolicyFileWatch(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, fixture.ShopSQL(t))
	e := start(t, map[string]string{"": up.url()}, fixture.Policy, func(c *config.Config) {
		c.Policy.ReloadInterval = 20 * time.Millisecond
	})
	c := e.connect(agent, up.db.Name)
	require.Equal(t, "42501", query(c, "SELECT title FROM products WHERE id = 3"))
	e.writePolicy(withProducts)
	e.waitLog("policy reloaded", "file changed")
	assert.Equal(t, "Cable", query(c, "SELECT title FROM products WHERE id = 3"))

	// A new version of the same size that keeps the old modification
	// time (cp -p, rsync -t): customers are no longer readable.
	fi, err := os.Stat(e.policy)
	require.NoError(t, err)
	sameSize := strings.Replace(withProducts, "public.customers, public.products]", "public.products]                  ", 1)
	require.Len(t, sameSize, len(withProducts))
	require.NotEqual(t, withProducts, sameSize)
	e.writePolicy(sameSize)
	require.NoError(t, os.Chtimes(e.policy, fi.ModTime(), fi.ModTime()))
	assert.Eventually(t, func() bool { return query(c, "SELECT name FROM customers WHERE id = 1") == "42501" },
		10*time.Second, 20*time.Millisecond, "the same-size, same-mtime version was picked up")
	assert.Equal(t, "Cable", query(c, "SELECT title FROM products WHERE id = 3"))
}

// TestEmptyPolicyFileKeepsRunningPolicy: a policy file that is empty
// when read (truncated by an editor or a copy that has not written yet)
// is not loaded: the running policy stays and sessions go on; the full
// file, once written, is.
func TestEmptyPolicyFileKeepsRunningPolicy(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, fixture.ShopSQL(t))
	e := start(t, map[string]string{"": up.url()}, fixture.Policy, func(c *config.Config) {
		c.Policy.ReloadInterval = 20 * time.Millisecond
	})
	c := e.connect(agent, up.db.Name)
	require.Equal(t, "42501", query(c, "SELECT title FROM products WHERE id = 3"))
	e.writePolicy("\n")
	e.waitLog("policy reload refused", "is empty")
	require.Error(t, e.g.ReloadPolicy(), "an explicit reload is refused too")
	assert.Equal(t, "42501", query(c, "SELECT title FROM products WHERE id = 3"), "the running policy and the session stay")
	e.writePolicy(withProducts)
	e.waitLog("policy reloaded", "file changed")
	assert.Equal(t, "Cable", query(c, "SELECT title FROM products WHERE id = 3"))
}

// TestRevokedTokenEndsOpenSessions: a token id written to
// tokens.revoked_file ends the sessions opened with that token within a
// poll, not only its next login; the agent's sessions of other tokens go
// on.
func TestRevokedTokenEndsOpenSessions(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, fixture.ShopSQL(t))
	revoked := filepath.Join(t.TempDir(), "revoked")
	require.NoError(t, os.WriteFile(revoked, []byte("# revoked agent tokens\n"), 0o600))
	e := start(t, map[string]string{"": up.url()}, fixture.Policy, func(c *config.Config) {
		c.Identity.Tokens.RevokedFile = revoked
	})
	leakedClaims := identity.Claims{Agent: agent, TTL: time.Hour, ID: "leaked-1"}
	leaked, err := e.dialClaims(leakedClaims, up.db.Name)
	require.NoError(t, err)
	kept, err := e.dialClaims(identity.Claims{Agent: agent, TTL: time.Hour, ID: "kept-1"}, up.db.Name)
	require.NoError(t, err)
	const q = "SELECT name FROM customers WHERE id = 1"
	require.Equal(t, "Ada Lovelace", query(leaked, q))

	require.NoError(t, os.WriteFile(revoked, []byte("# revoked agent tokens\nleaked-1\n"), 0o600))
	e.waitLog("ended the sessions of revoked agent tokens")
	e.waitLog("ending session", "leaked-1", "token has been revoked")
	assert.Equal(t, "28000", query(leaked, q), "the session of the revoked token")
	assert.Equal(t, "Ada Lovelace", query(kept, q), "a session of another token")
	_, err = e.dialClaims(leakedClaims, up.db.Name)
	assert.Equal(t, "28P01", sqlState(err), "a new login with the revoked token")
}

// TestRotatedSecretEndsOpenSessions: a new version of
// scram.verifiers_file is read within a few seconds of the write; the
// sessions that logged in with the agent's old secret end, the new secret
// logs in and the old one no longer does.
func TestRotatedSecretEndsOpenSessions(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, fixture.ShopSQL(t))
	verifiers := filepath.Join(t.TempDir(), "scram.yaml")
	secret := func(s string) string {
		v, err := identity.NewVerifier(s, 4096)
		require.NoError(t, err)
		return agent + ": " + v.Encode() + "\n"
	}
	require.NoError(t, os.WriteFile(verifiers, []byte(secret("old-secret")), 0o600))
	e := start(t, map[string]string{"": up.url()}, fixture.Policy, func(c *config.Config) {
		c.Identity.SCRAM.VerifiersFile = verifiers
	})
	dial := func(secret string) (*pgx.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=require", agent, secret, e.g.Addr(config.DialectPostgres), up.db.Name))
		if err == nil {
			t.Cleanup(func() { _ = c.Close(context.Background()) })
		}
		return c, err
	}
	old, err := dial("old-secret")
	require.NoError(t, err)
	const q = "SELECT name FROM customers WHERE id = 1"
	require.Equal(t, "Ada Lovelace", query(old, q))

	require.NoError(t, os.WriteFile(verifiers, []byte(secret("new-secret")), 0o600))
	e.waitLog("agent secrets reloaded", "file changed")
	e.waitLog("ending session", agent, "secret was changed")
	assert.Equal(t, "28000", query(old, q), "the session of the old secret")
	_, err = dial("old-secret")
	assert.Equal(t, "28P01", sqlState(err), "the old secret no longer logs in")
	c, err := dial("new-secret")
	require.NoError(t, err)
	assert.Equal(t, "Ada Lovelace", query(c, q))

	// A file that does not load keeps the secrets and the sessions.
	require.NoError(t, os.WriteFile(verifiers, []byte(agent+": not a verifier\n"), 0o600))
	e.waitLog("agent secrets reload failed")
	assert.Equal(t, "Ada Lovelace", query(c, q))
}

// TestRevocation: a reload that removes an agent, or moves it to another
// role, ends its open sessions (28000 at the next statement, through the
// simple and the extended protocol) and refuses its new ones; other
// agents go on.
func TestRevocation(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, fixture.ShopSQL(t))
	const other = "order-bot"
	two := fixture.PolicyRoles + `  writer:
    upstream: shop
    allow:
      - select: [public.orders]
agents:
  sales-summarizer: {role: analyst}
  order-bot: {role: analyst}
`
	e := start(t, map[string]string{"": up.url()}, two)
	removed := e.connect(agent, up.db.Name)
	moved := e.connect(other, up.db.Name)
	require.Equal(t, "Ada Lovelace", query(removed, "SELECT name FROM customers WHERE id = 1"))
	require.Equal(t, "Ada Lovelace", query(moved, "SELECT name FROM customers WHERE id = 1"))

	e.writePolicy(strings.Replace(strings.Replace(two, "  sales-summarizer: {role: analyst}\n", "", 1), "order-bot: {role: analyst}", "order-bot: {role: writer}", 1))
	require.NoError(t, e.g.Reload())
	e.waitLog("ending the credentials and sessions", agent)
	e.waitLog("ending the credentials and sessions", other)
	// At once, not at their next statement: an idle session keeps no
	// upstream session of an agent that lost its role.
	e.waitLog("ending session", agent, "no longer allowed by the policy")
	e.waitLog("ending session", other, "no longer allowed by the policy")

	assert.Equal(t, "28000", query(removed, "SELECT name FROM customers WHERE id = 1"), "session of a removed agent")
	assert.Equal(t, "28000", query(moved, "SELECT count(*)::text FROM orders"), "session of an agent whose role changed")
	_, err := e.dial(agent, up.db.Name)
	assert.Equal(t, "28P01", sqlState(err), "new session of a removed agent: fails like a wrong secret, telling nothing about which agents exist")
	c := e.connect(other, up.db.Name)
	assert.Equal(t, "42501", query(c, "SELECT name FROM customers WHERE id = 1"), "a new session has the new role")
	assert.NotEqual(t, "42501", query(c, "SELECT count(*)::text FROM orders"))

	// Both refusals are in the audit, with the agent.
	require.NoError(t, e.g.Shutdown(context.Background()))
	evs, err := audit.ReadFile(e.audit, audit.Filter{Agent: agent})
	require.NoError(t, err)
	var codes []string
	for _, ev := range evs {
		if ev.ErrorCode != "" {
			codes = append(codes, ev.ErrorCode)
		}
	}
	assert.Contains(t, codes, "28000")
}

// TestShutdownWithoutRun: a gateway that never ran releases its listeners
// on Shutdown, and cannot run afterwards.
func TestShutdownWithoutRun(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, fixture.ShopSQL(t))
	e, err := build(t, true, gateway.Options{}, map[string]string{"": up.url()}, fixture.Policy)
	require.NoError(t, err)
	addr := e.g.Addr(config.DialectPostgres).String()
	require.NoError(t, e.g.Shutdown(context.Background()))
	_, err = net.Dial("tcp", addr)
	assert.Error(t, err, "the listener is closed")
	assert.Error(t, e.g.Run(context.Background()), "Run after Shutdown")
}
