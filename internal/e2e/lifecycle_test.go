package e2e_test

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

	"github.com/keyholedb/keyhole/internal/fixture"
)

// policyWithout is shopPolicy without products: SELECT from products is
// denied until a reload brings shopPolicy in.
var policyWithout = strings.Replace(shopPolicy, ", public.products]", "]", 1)

// TestConfigFileReloadShutdown runs keyhole from a keyhole.yaml (polling
// off), reloads the policy on SIGHUP, keeps the running policy when the new
// file is bad, serves the admin endpoints and exits cleanly on SIGTERM.
func TestConfigFileReloadShutdown(t *testing.T) {
	up := newUpstream(t, fixture.ShopSQL(t))
	key := newAgentKey(t)
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	audit := filepath.Join(dir, "audit.jsonl")
	writeFile(t, policy, policyWithout)
	pu, err := pgURL(up.DB.DSN)
	require.NoError(t, err)
	writeFile(t, filepath.Join(dir, "keyhole.yaml"), fmt.Sprintf(`
listen:
  postgres: 127.0.0.1:0
  admin: 127.0.0.1:0
tls:
  generate_self_signed: true
upstreams:
  shop: {url: "postgres://%s/%s"}
identity:
  tokens: {public_key_file: %q}
creds:
  static: {user: %q}
audit:
  file: audit.jsonl
  raw_statements: true
policy:
  file: policy.yaml
  reload_interval: -1s
limits:
  shutdown_grace: 5s
log:
  format: json
`, net.JoinHostPort(pu.host, pu.port), up.DB.Name, key.Public, up.Login))

	kh := startKeyhole(t, nil, "--config", filepath.Join(dir, "keyhole.yaml"))
	token := key.mint(t, agentName)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, kh.ConnString(agentName, token))
	require.NoError(t, err)
	defer conn.Close(ctx)

	query := func(sql string) string {
		var v string
		err := conn.QueryRow(ctx, sql).Scan(&v)
		if err != nil {
			return sqlstate(err)
		}
		return v
	}
	require.Equal(t, "42501", query("SELECT title FROM products WHERE id = 1"))
	require.Equal(t, "Ada Lovelace", query("SELECT name FROM customers WHERE id = 1"))

	t.Run("SIGHUP reloads", func(t *testing.T) {
		off := len(kh.Log())
		writeFile(t, policy, shopPolicy)
		kh.Signal(syscall.SIGHUP)
		kh.WaitLog(off, 10*time.Second, "policy reloaded", "SIGHUP")
		assert.Equal(t, "Keyboard", query("SELECT title FROM products WHERE id = 1"), "the open session sees the new policy")
	})

	t.Run("bad policy keeps the running one", func(t *testing.T) {
		off := len(kh.Log())
		writeFile(t, policy, shopPolicy+"\nroles_typo: {}\n")
		kh.Signal(syscall.SIGHUP)
		line := kh.WaitLog(off, 10*time.Second, "policy reload failed")
		assert.Contains(t, line, "roles_typo")
		assert.Equal(t, "Keyboard", query("SELECT title FROM products WHERE id = 1"))
		assert.Equal(t, "42501", query("SELECT email FROM customers WHERE id = 1"))
	})

	t.Run("admin endpoints", func(t *testing.T) {
		for path, want := range map[string]string{
			"/healthz": "ok",
			"/metrics": "keyhole_policy_reload_ok 0", // the failed reload above
		} {
			resp, err := http.Get("http://" + kh.AdminAddr + path)
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", path, body)
			assert.Contains(t, string(body), want, path)
			if path == "/metrics" {
				assert.Contains(t, string(body), `keyhole_policy_reloads_total{result="error"} 1`)
				assert.Contains(t, string(body), `keyhole_policy_reloads_total{result="ok"} 1`)
				assert.Contains(t, string(body), `keyhole_statements_total{`)
			}
		}
	})

	t.Run("SIGHUP re-reads the schema", func(t *testing.T) {
		_, err := up.adminExec(t, fmt.Sprintf(`CREATE TABLE public.invoices (id int PRIMARY KEY, amount numeric);
			INSERT INTO public.invoices VALUES (1, 10), (2, 32);
			GRANT ALL ON public.invoices TO %s`, up.Login))
		require.NoError(t, err)
		// This policy names a table the running catalog has never seen: it
		// loads only if the schema is read again first.
		off := len(kh.Log())
		writeFile(t, policy, strings.Replace(shopPolicy, "public.products]", "public.products, public.invoices]", 1))
		kh.Signal(syscall.SIGHUP)
		line := kh.WaitLog(off, 10*time.Second, "policy reloaded")
		assert.Contains(t, line, `"catalog_reloaded":true`)
		assert.Equal(t, "42", query("SELECT sum(amount)::text FROM invoices"))
	})

	t.Run("SIGTERM drains and exits 0", func(t *testing.T) {
		start := time.Now()
		kh.Signal(syscall.SIGTERM)
		code, err := kh.Wait(20 * time.Second)
		require.NoError(t, err)
		assert.Equal(t, 0, code, "exit code; log:\n%s", kh.Log())
		assert.Less(t, time.Since(start), 15*time.Second)
		assert.Contains(t, kh.Log(), "keyhole stopped")
		// The open session was ended by the shutdown.
		assert.Error(t, conn.Ping(ctx))
		// Every event was flushed as a whole JSON line.
		evs := auditEvents(t, audit)
		require.NotEmpty(t, evs)
		var denied int
		for _, ev := range evs {
			if ev["kind"] == "statement" && ev["decision"] == "deny" {
				denied++
			}
		}
		assert.GreaterOrEqual(t, denied, 2)
		// raw_statements: true keeps the literals.
		raw, err := os.ReadFile(audit)
		require.NoError(t, err)
		assert.Contains(t, string(raw), "SELECT name FROM customers WHERE id = 1")
	})
}

// TestPolicyFileWatch checks that keyhole picks up an edited policy file
// without a signal (mtime polling, 1s by default).
func TestPolicyFileWatch(t *testing.T) {
	up := newUpstream(t, fixture.ShopSQL(t))
	key := newAgentKey(t)
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	writeFile(t, policy, policyWithout)
	kh := startKeyhole(t, nil,
		"--upstream", up.URL(),
		"--policy", policy,
		"--token-key", key.Private, // a private key works too: its public half verifies
		"--audit", filepath.Join(dir, "audit.jsonl"),
		"--listen-postgres", "127.0.0.1:0",
	)
	token := key.mint(t, agentName)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, kh.ConnString(agentName, token))
	require.NoError(t, err)
	defer conn.Close(ctx)
	var title string
	err = conn.QueryRow(ctx, "SELECT title FROM products WHERE id = 3").Scan(&title)
	require.Equal(t, "42501", sqlstate(err))

	off := len(kh.Log())
	writeFile(t, policy, shopPolicy)
	kh.WaitLog(off, 10*time.Second, "policy reloaded", "file changed")
	require.NoError(t, conn.QueryRow(ctx, "SELECT title FROM products WHERE id = 3").Scan(&title))
	assert.Equal(t, "Cable", title)
}
