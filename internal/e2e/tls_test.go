package e2e_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/internal/fixture"
)

// testCA issues certificates for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	File string // PEM of the CA certificate
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	ca := &testCA{cert: cert, key: key, File: filepath.Join(dir, name+".pem")}
	writePEM(t, ca.File, "CERTIFICATE", der)
	return ca
}

// issue writes a leaf certificate and key (name.pem, name.key).
func (ca *testCA) issue(t *testing.T, dir, name string, tmpl *x509.Certificate) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	writePEM(t, keyFile, "PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
}

// TestTLSAndAgentMethods runs keyhole with a real certificate and a client
// CA from keyhole.yaml, and checks the three ways an agent can prove who it
// is: a token over verified TLS, a client certificate with a SPIFFE ID
// (no password), and SCRAM-SHA-256 against a verifier from
// `keyhole agent secret`.
func TestTLSAndAgentMethods(t *testing.T) {
	up := newUpstream(t, fixture.ShopSQL(t))
	key := newAgentKey(t)
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	other := newTestCA(t, dir, "other-ca")
	ca.issue(t, dir, "server", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	spiffeID, err := url.Parse("spiffe://example.org/agents/sales-summarizer")
	require.NoError(t, err)
	cliCert, cliKey := ca.issue(t, dir, "client", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "sales-summarizer"},
		URIs:        []*url.URL{spiffeID},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	strangerCert, strangerKey := other.issue(t, dir, "stranger", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "sales-summarizer"},
		URIs:        []*url.URL{spiffeID},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})

	// keyhole agent secret prints the secret and the verifier line.
	out := runKeyhole(t, "agent", "secret", "--agent", "report-bot")
	secret := regexp.MustCompile(`(?m)^secret: (\S+)$`).FindStringSubmatch(out)
	verifier := regexp.MustCompile(`(?m)^"report-bot": "(\S+)"$`).FindStringSubmatch(out)
	require.NotNil(t, secret, out)
	require.NotNil(t, verifier, out)

	policy := filepath.Join(dir, "policy.yaml")
	writeFile(t, policy, shopPolicy+"  report-bot: {role: analyst}\n")
	pu, err := pgURL(up.DB.DSN)
	require.NoError(t, err)
	cfg := filepath.Join(dir, "keyhole.yaml")
	writeFile(t, cfg, fmt.Sprintf(`
listen: {postgres: "127.0.0.1:0"}
tls: {cert_file: server.pem, key_file: server.key, client_ca_file: ca.pem}
upstreams:
  shop: {url: "postgres://%s/%s"}
identity:
  tokens: {public_key_file: %q}
  scram:
    verifiers: {report-bot: %q}
  spiffe:
    %s: sales-summarizer
creds:
  static: {user: %q}
audit: {file: audit.jsonl}
policy: {file: policy.yaml}
`, net.JoinHostPort(pu.host, pu.port), up.DB.Name, key.Public, verifier[1], spiffeID, up.Login))

	kh := startKeyhole(t, nil, "--config", cfg)
	_, port := kh.HostPort()
	db := up.DB.Name
	token := key.mint(t, agentName)
	ctx := context.Background()

	count := func(t *testing.T, connString string) {
		t.Helper()
		c, err := pgx.Connect(ctx, connString)
		require.NoError(t, err)
		defer c.Close(ctx)
		var n int64
		require.NoError(t, c.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n))
		assert.Equal(t, int64(5), n)
		_, err = c.Exec(ctx, "SELECT email FROM customers")
		assert.Equal(t, "42501", sqlstate(err))
	}

	t.Run("token over verify-full TLS", func(t *testing.T) {
		count(t, fmt.Sprintf("host=localhost port=%s user=%s password=%s dbname="+db+" sslmode=verify-full sslrootcert=%s",
			port, agentName, token, ca.File))
	})
	t.Run("client refuses an unknown server CA", func(t *testing.T) {
		_, err := pgx.Connect(ctx, fmt.Sprintf("host=localhost port=%s user=%s password=%s dbname="+db+" sslmode=verify-full sslrootcert=%s",
			port, agentName, token, other.File))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "certificate")
	})
	t.Run("mTLS SPIFFE identity, no password", func(t *testing.T) {
		count(t, fmt.Sprintf("host=localhost port=%s user=%s dbname="+db+" sslmode=verify-full sslrootcert=%s sslcert=%s sslkey=%s",
			port, agentName, ca.File, cliCert, cliKey))
	})
	t.Run("mTLS with psql", func(t *testing.T) {
		psql := needTool(t, "psql")
		cmd := exec.Command(psql, "-X", "-At", fmt.Sprintf("host=localhost port=%s user=%s dbname="+db+" sslmode=verify-full sslrootcert=%s sslcert=%s sslkey=%s",
			port, agentName, ca.File, cliCert, cliKey), "-c", "SELECT title FROM products WHERE id = 1")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		assert.Equal(t, "Keyboard", strings.TrimSpace(string(out)))
	})
	t.Run("certificate from another CA is not an identity", func(t *testing.T) {
		_, err := pgx.Connect(ctx, fmt.Sprintf("host=localhost port=%s user=%s dbname="+db+" sslmode=verify-full sslrootcert=%s sslcert=%s sslkey=%s",
			port, agentName, ca.File, strangerCert, strangerKey))
		require.Error(t, err)
	})
	t.Run("SCRAM-SHA-256 agent secret", func(t *testing.T) {
		count(t, fmt.Sprintf("host=localhost port=%s user=report-bot password=%s dbname="+db+" sslmode=verify-full sslrootcert=%s",
			port, secret[1], ca.File))
		_, err := pgx.Connect(ctx, fmt.Sprintf("host=localhost port=%s user=report-bot password=wrong dbname="+db+" sslmode=verify-full sslrootcert=%s",
			port, ca.File))
		assert.Equal(t, "28P01", sqlstate(err))
	})
	assert.NotContains(t, kh.Log(), secret[1])
	assert.NotContains(t, kh.Log(), token)
}
