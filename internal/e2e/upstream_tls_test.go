package e2e_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/internal/fixture"
)

// TestUpstreamTLS checks each upstream sslmode against the local
// Postgres, which serves TLS with Debian's self-signed "snakeoil"
// certificate (CN and DNS SAN localhost, no IP SAN): keyhole's upstream
// sessions are encrypted when asked, verified when asked, and keyhole
// refuses to start when verification fails.
func TestUpstreamTLS(t *testing.T) {
	up := newUpstream(t, fixture.ShopSQL(t))
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, up.DB.DSN)
	require.NoError(t, err)
	defer admin.Close(ctx)
	var ssl, certFile string
	require.NoError(t, admin.QueryRow(ctx, "SELECT current_setting('ssl'), current_setting('ssl_cert_file')").Scan(&ssl, &certFile))
	if ssl != "on" {
		t.Fatalf("the test Postgres has ssl=%s; this test needs Debian's default ssl=on", ssl)
	}
	if !filepath.IsAbs(certFile) {
		var dataDir string
		require.NoError(t, admin.QueryRow(ctx, "SELECT current_setting('data_directory')").Scan(&dataDir))
		certFile = filepath.Join(dataDir, certFile)
	}
	_, err = os.Stat(certFile)
	require.NoError(t, err, "the server certificate must be readable to verify it")

	pu, err := pgURL(up.DB.DSN)
	require.NoError(t, err)
	key := newAgentKey(t)
	token := key.mint(t, agentName)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "policy.yaml"), shopPolicy)

	// config is a keyhole.yaml whose upstream has sslmode and the extra
	// upstream keys.
	config := func(t *testing.T, sslmode, extra string) string {
		t.Helper()
		p := filepath.Join(t.TempDir(), "keyhole.yaml")
		writeFile(t, p, fmt.Sprintf(`
listen: {postgres: "127.0.0.1:0"}
tls: {generate_self_signed: true}
upstreams:
  shop: {url: "postgres://%s/%s?sslmode=%s"%s}
identity: {tokens: {public_key_file: %q}}
creds: {static: {user: %q}}
audit: {file: %q}
policy: {file: %q}
`, net.JoinHostPort(pu.host, pu.port), up.DB.Name, sslmode, extra, key.Public, up.Login,
			filepath.Join(dir, "audit.jsonl"), filepath.Join(dir, "policy.yaml")))
		return p
	}

	for _, tc := range []struct {
		name, mode, extra string
		ssl               bool
	}{
		{"disable", "disable", "", false},
		{"require", "require", "", true},
		{"verify-ca", "verify-ca", fmt.Sprintf(", ca_file: %q", certFile), true},
		{"verify-full with the certificate's name", "verify-full", fmt.Sprintf(", ca_file: %q, server_name: localhost", certFile), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kh := startKeyhole(t, nil, "--config", config(t, tc.mode, tc.extra))
			c, err := pgx.Connect(ctx, kh.ConnString(agentName, token))
			require.NoError(t, err)
			defer c.Close(ctx)
			var n int64
			require.NoError(t, c.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n))
			assert.Equal(t, int64(5), n)
			// The agent's upstream backend, seen from the server side.
			var encrypted bool
			require.NoError(t, admin.QueryRow(ctx, `SELECT bool_and(s.ssl) FROM pg_stat_ssl s
				JOIN pg_stat_activity a USING (pid) WHERE a.usename = $1 AND a.datname = $2`, up.Login, up.DB.Name).Scan(&encrypted))
			assert.Equal(t, tc.ssl, encrypted)
		})
	}

	otherCA := newTestCA(t, t.TempDir(), "other-ca")
	for _, tc := range []struct{ name, mode, extra string }{
		{"verify-full against the IP address", "verify-full", fmt.Sprintf(", ca_file: %q", certFile)},
		{"verify-full with a CA that did not sign it", "verify-full", fmt.Sprintf(", ca_file: %q, server_name: localhost", otherCA.File)},
		{"verify-ca with a CA that did not sign it", "verify-ca", fmt.Sprintf(", ca_file: %q", otherCA.File)},
	} {
		t.Run(tc.name+" fails closed", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, fixture.BuildKeyhole(t), "serve", "--log-format", "text", "--config", config(t, tc.mode, tc.extra))
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			var ee *exec.ExitError
			require.True(t, errors.As(err, &ee), "keyhole must refuse to start: %v\n%s", err, out.String())
			assert.Equal(t, 2, ee.ExitCode())
			assert.Contains(t, out.String(), "certificate")
		})
	}
}
