package main_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/internal/testpg"
)

// A driver given the agent token as its user name too: the failed login
// must not put the (valid) token in keyhole serve's log or audit file.
// Before, the log's user attribute and error and the audit event's agent
// and error held it.
func TestServeNeverLogsATokenSentAsTheUserName(t *testing.T) {
	db := testpg.New(t, "CREATE TABLE orders (id int);")
	bin := fixture.BuildKeyhole(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "tok.key")
	fixture.Run(t, exec.Command(bin, "token", "keygen", "--out", key))
	res := fixture.Run(t, exec.Command(bin, "token", "mint", "--token-key", key, "--agent", "bot"))
	token := strings.TrimSpace(res.Stdout)
	require.True(t, strings.HasPrefix(token, "eyJ"), "a minted token: %q", res.Stderr)
	policy := filepath.Join(dir, "policy.yaml")
	require.NoError(t, os.WriteFile(policy, []byte("roles:\n  analyst:\n    allow:\n      - select: [public.orders]\nagents:\n  bot: {role: analyst}\n"), 0o600))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	auditFile := filepath.Join(dir, "audit.jsonl")

	var stderr bytes.Buffer
	cmd := exec.Command(bin, "serve", "--upstream", db.DSN, "--policy", policy, "--token-key", key+".pub",
		"--audit", auditFile, "--listen-postgres", addr, "--admin", "", "--log-level", "debug")
	cmd.Stderr = &fixture.SyncBuffer{}
	sb := cmd.Stderr.(*fixture.SyncBuffer)
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	require.Eventually(t, func() bool { return strings.Contains(sb.String(), "keyhole ready") }, 30*time.Second, 50*time.Millisecond, "keyhole did not start: %s", sb.String())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	host, port, _ := net.SplitHostPort(addr)
	for _, user := range []string{token, "bot"} {
		cfg, err := pgconn.ParseConfig("host=" + host + " port=" + port + " dbname=" + db.Name + " sslmode=require")
		require.NoError(t, err)
		cfg.User, cfg.Password = user, token
		if user == "bot" {
			cfg.Database = token // the token as the database name
		}
		c, err := pgconn.ConnectConfig(ctx, cfg)
		if err == nil {
			_ = c.Close(ctx)
		}
		require.Error(t, err)
	}

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("keyhole did not stop")
	}
	stderr.WriteString(sb.String())
	auditText, err := os.ReadFile(auditFile)
	require.NoError(t, err)
	require.Contains(t, string(auditText), "auth_failed", "the audit file holds the failed logins")
	parts := strings.Split(token, ".")
	for name, text := range map[string]string{"log": stderr.String(), "audit": string(auditText)} {
		for _, p := range parts {
			assert.NotContains(t, text, p, "token part in the %s", name)
		}
		assert.Contains(t, text, "[token]", name)
	}
}
