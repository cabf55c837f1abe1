package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/internal/testpg"
)

// vaultDev is a Vault dev server started for one test.
type vaultDev struct {
	Addr  string // http://127.0.0.1:PORT
	Token string
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
}

// startVault runs bin/vault (built by scripts/vault.sh build) as a dev
// server on a free port; it is stopped when the test ends.
func startVault(t *testing.T) *vaultDev {
	t.Helper()
	bin := fixture.Path(t, "bin", "vault")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s not found: run scripts/setup.sh (it builds Vault with scripts/vault.sh build)", bin)
	}
	port := freePort(t)
	v := &vaultDev{Addr: "http://127.0.0.1:" + port, Token: "keyhole-e2e-root"}
	cmd := exec.Command(bin, "server", "-dev", "-dev-listen-address=127.0.0.1:"+port,
		"-dev-root-token-id="+v.Token, "-dev-no-store-token")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(v.Addr + "/v1/sys/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return v
			}
		}
		select {
		case <-exited:
			t.Fatalf("vault exited:\n%s", log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("vault not healthy after 60s:\n%s", log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// call makes one Vault API request with the root token.
func (v *vaultDev) call(t *testing.T, method, path string, body any) map[string]any {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, v.Addr+"/v1/"+path, rd)
	require.NoError(t, err)
	req.Header.Set("X-Vault-Token", v.Token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	require.Less(t, resp.StatusCode, 300, "vault %s %s: %s", method, path, raw)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return out
}

// TestVaultCredentials: keyhole logs in upstream with Vault dynamic
// credentials (one per role, issued by the database secrets engine), reads
// the catalog with its own catalog role, enforces the policy as usual, and
// revokes the credentials when it stops.
func TestVaultCredentials(t *testing.T) {
	db := testpg.New(t, fixture.ShopSQL(t))
	v := startVault(t)
	pu, err := pgURL(db.DSN)
	require.NoError(t, err)

	v.call(t, "POST", "sys/mounts/database", map[string]any{"type": "database"})
	v.call(t, "POST", "database/config/shop", map[string]any{
		"plugin_name":    "postgresql-database-plugin",
		"connection_url": fmt.Sprintf("postgresql://{{username}}:{{password}}@%s:%s/%s?sslmode=disable", pu.host, pu.port, db.Name),
		"username":       pu.user,
		"password":       "unused-trust-auth",
		"allowed_roles":  "*",
	})
	create := []string{
		`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`,
		`GRANT USAGE ON SCHEMA public TO "{{name}}"`,
		`GRANT ALL ON ALL TABLES IN SCHEMA public TO "{{name}}"`,
	}
	for _, role := range []string{"analyst", "keyhole-catalog"} {
		v.call(t, "POST", "database/roles/"+role, map[string]any{
			"db_name": "shop", "creation_statements": create, "default_ttl": "10m", "max_ttl": "1h",
		})
	}
	// Whatever happens, no Vault-made login outlives the test.
	t.Cleanup(func() {
		req, _ := http.NewRequest("PUT", v.Addr+"/v1/sys/leases/revoke-prefix/database/creds", nil)
		req.Header.Set("X-Vault-Token", v.Token)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})

	key := newAgentKey(t)
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	writeFile(t, policy, shopPolicy)
	kh := startKeyhole(t, []string{"VAULT_TOKEN=" + v.Token},
		"--upstream", fmt.Sprintf("postgres://%s:%s/%s", pu.host, pu.port, db.Name),
		"--vault-addr", v.Addr,
		"--policy", policy,
		"--token-key", key.Public,
		"--audit", filepath.Join(dir, "audit.jsonl"),
		"--listen-postgres", "127.0.0.1:0",
	)
	token := key.mint(t, agentName)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, kh.ConnString(agentName, token))
	require.NoError(t, err)
	defer conn.Close(ctx)

	var n int64
	require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n))
	assert.Equal(t, int64(5), n)
	_, err = conn.Exec(ctx, "DELETE FROM orders")
	assert.Equal(t, "42501", sqlstate(err))

	// The agent's upstream session runs as a login Vault made for the
	// analyst role, not as a shared account.
	admin, err := pgx.Connect(ctx, db.DSN)
	require.NoError(t, err)
	defer admin.Close(ctx)
	var users []string
	rows, err := admin.Query(ctx, "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = $1 AND usename <> $2", db.Name, pu.user)
	require.NoError(t, err)
	for rows.Next() {
		var u string
		require.NoError(t, rows.Scan(&u))
		users = append(users, u)
	}
	require.NoError(t, rows.Err())
	require.Len(t, users, 1, "one upstream login in use: %v", users)
	t.Logf("agent session upstream login: %s", users[0])
	assert.True(t, strings.Contains(users[0], "analyst"), "upstream login %q is not a Vault analyst credential", users[0])
	assert.Equal(t, "5", fmt.Sprint(mustCount(t, admin, "SELECT count(*) FROM orders")))

	// On shutdown keyhole releases its leases; Vault revokes them and the
	// login disappears from Postgres.
	kh.Signal(syscall.SIGTERM)
	code, err := kh.Wait(30 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, 0, code, kh.Log())
	assert.Eventually(t, func() bool {
		return mustCount(t, admin, "SELECT count(*) FROM pg_roles WHERE rolname = '"+users[0]+"'") == 0
	}, 20*time.Second, 200*time.Millisecond, "the Vault credential %s was not revoked", users[0])
	assert.NotContains(t, kh.Log(), v.Token)
}

func mustCount(t *testing.T, c *pgx.Conn, sql string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, c.QueryRow(context.Background(), sql).Scan(&n))
	return n
}
