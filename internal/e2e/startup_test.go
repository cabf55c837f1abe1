package e2e_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
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

// TestStartupFailsClosed: keyhole refuses to start (exit 2) rather than
// serve with a broken policy, configuration or upstream, says where the
// problem is, and never prints the upstream password.
func TestStartupFailsClosed(t *testing.T) {
	up := newUpstream(t, fixture.ShopSQL(t))
	key := newAgentKey(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "policy.yaml")
	writeFile(t, good, shopPolicy)
	badPolicy := filepath.Join(dir, "bad-policy.yaml")
	writeFile(t, badPolicy, shopPolicy+"  ghost: {role: nosuchrole}\n")
	unknownTable := filepath.Join(dir, "unknown-table.yaml")
	writeFile(t, unknownTable, strings.Replace(shopPolicy, "public.products]", "public.nosuchtable]", 1))
	badConfig := filepath.Join(dir, "keyhole.yaml")
	writeFile(t, badConfig, "listen:\n  postgres: 127.0.0.1:0\n  pgbouncer_mode: true\n")

	pu, err := pgURL(up.DB.DSN)
	require.NoError(t, err)
	wrongUpstream := filepath.Join(dir, "wrong-upstream.yaml")
	writeFile(t, wrongUpstream, fmt.Sprintf(`
listen: {postgres: "127.0.0.1:0"}
tls: {generate_self_signed: true}
upstreams:
  warehouse: {url: "postgres://%s/%s"}
identity: {tokens: {public_key_file: %q}}
creds: {static: {user: %q}}
audit: {file: audit.jsonl}
policy: {file: policy.yaml}
`, net.JoinHostPort(pu.host, pu.port), up.DB.Name, key.Public, up.Login))

	const secret = "Sup3rSecretPw"
	withPassword := testpg.WithUser(up.DB.DSN, up.Login, secret)
	base := []string{"--token-key", key.Public, "--audit", filepath.Join(dir, "audit.jsonl"), "--listen-postgres", "127.0.0.1:0"}
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"policy names a missing role", append([]string{"--upstream", up.URL(), "--policy", badPolicy}, base...),
			[]string{"bad-policy.yaml:", "nosuchrole"}},
		{"policy names a missing table", append([]string{"--upstream", up.URL(), "--policy", unknownTable}, base...),
			[]string{"unknown-table.yaml:", "nosuchtable"}},
		{"missing policy file", append([]string{"--upstream", up.URL(), "--policy", filepath.Join(dir, "nope.yaml")}, base...),
			[]string{"nope.yaml"}},
		{"unknown config key", []string{"--config", badConfig},
			[]string{"keyhole.yaml:3: unknown key \"pgbouncer_mode\""}},
		{"policy role names an unconfigured upstream", []string{"--config", wrongUpstream},
			[]string{"role analyst uses upstream", "shop", "which is not configured"}},
		{"no audit sink", []string{"--upstream", up.URL(), "--policy", good, "--token-key", key.Public},
			[]string{"audit: set file or stdout"}},
		{"upstream unreachable", append([]string{"--upstream", "postgres://app:" + secret + "@127.0.0.1:1/shop", "--policy", good}, base...),
			[]string{"catalog"}},
		{"upstream refuses the database", append([]string{"--upstream", testpg.WithDatabase(withPassword, "nosuchdb"), "--policy", good}, base...),
			[]string{"catalog"}},
		{"mysql upstream without listen.mysql", append([]string{"--upstream", "mysql://root@127.0.0.1:3306/shop", "--policy", good}, base...),
			[]string{"listen.mysql: upstreams [\"\"] are mysql:// but listen.mysql is empty"}},
		{"listen.mysql without a mysql upstream", append([]string{"--upstream", up.URL(), "--listen-mysql", "127.0.0.1:0", "--policy", good}, base...),
			[]string{"listen.mysql: no upstream is mysql://"}},
		{"one URL and named ones", append([]string{"--upstream", up.URL(), "--upstream", "hr=" + up.URL(), "--policy", good}, base...),
			[]string{"give one URL, or NAME=URL for each upstream"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, fixture.BuildKeyhole(t), append([]string{"serve", "--log-format", "text"}, tc.args...)...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			var ee *exec.ExitError
			require.True(t, errors.As(err, &ee), "keyhole serve must fail; got %v\n%s", err, out.String())
			assert.Equal(t, 2, ee.ExitCode(), out.String())
			for _, w := range tc.want {
				assert.Contains(t, out.String(), w)
			}
			assert.NotContains(t, out.String(), secret, "the upstream password must not be printed")
			assert.NotContains(t, out.String(), "keyhole ready")
		})
	}
}

// TestShutdownDrainsInFlight: on SIGTERM a statement already running
// upstream completes and its result reaches the client before keyhole
// exits 0; new connections are refused meanwhile.
func TestShutdownDrainsInFlight(t *testing.T) {
	up := newUpstream(t, fixture.ShopSQL(t))
	key := newAgentKey(t)
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	writeFile(t, policy, shopPolicy)
	// The upstream (with a password) comes from the environment, which
	// keeps it out of the process list.
	kh := startKeyhole(t, []string{"KEYHOLE_UPSTREAM=" + testpg.WithUser(up.DB.DSN, up.Login, "Sup3rSecretPw")},
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

	// An admin transaction locks orders, so the agent's statement waits
	// upstream until the test lets it go.
	admin, err := pgx.Connect(ctx, up.DB.DSN)
	require.NoError(t, err)
	defer admin.Close(ctx)
	tx, err := admin.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
	require.NoError(t, err)

	type res struct {
		n   int64
		err error
	}
	done := make(chan res, 1)
	go func() {
		var n int64
		// Simple protocol: one Query message is the whole statement. (With
		// the extended protocol the Parse already waits on the lock, and
		// keyhole may end the session at the Sync before Execute is sent.)
		err := conn.QueryRow(ctx, "SELECT count(*) FROM orders", pgx.QueryExecModeSimpleProtocol).Scan(&n)
		done <- res{n, err}
	}()
	require.Eventually(t, func() bool {
		var waiting int
		_ = admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'", up.DB.Name).Scan(&waiting)
		return waiting == 1
	}, 10*time.Second, 20*time.Millisecond, "the agent's statement never waited on the lock")

	kh.Signal(syscall.SIGTERM)
	kh.WaitLog(0, 10*time.Second, "shutting down")
	// The busy session is told to drain, and the lock still holds its
	// statement.
	kh.WaitLog(0, 10*time.Second, "draining")
	select {
	case r := <-done:
		t.Fatalf("the in-flight statement ended before the lock was released: %v", r.err)
	default:
	}
	_, err = pgx.Connect(ctx, kh.ConnString(agentName, token))
	assert.Error(t, err, "a new connection during the drain is refused")
	require.NoError(t, tx.Commit(ctx))

	r := <-done
	require.NoError(t, r.err, "the in-flight statement must complete during the drain")
	assert.Equal(t, int64(5), r.n)
	code, err := kh.Wait(30 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, 0, code, kh.Log())
	assert.NotContains(t, kh.Log(), "Sup3rSecretPw", "the upstream password must not be logged")
	evs := auditEvents(t, filepath.Join(dir, "audit.jsonl"))
	var found bool
	for _, ev := range evs {
		if st, _ := ev["statement"].(string); st == "SELECT count(*) FROM orders" && ev["decision"] == "allow" {
			found = true
		}
	}
	assert.True(t, found, "the drained statement is in the flushed audit log")
}
