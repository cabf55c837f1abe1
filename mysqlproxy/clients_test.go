package mysqlproxy_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/internal/fixture"
)

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // PEM
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "keyhole test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	return &testCA{cert: cert, key: key, file: file}
}

// issue signs a leaf certificate: a server one for 127.0.0.1, or a client
// one carrying uri as its SAN.
func (ca *testCA) issue(t testing.TB, serial int64, uri string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if uri == "" {
		tmpl.IPAddresses, tmpl.DNSNames = []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	} else {
		u, err := url.Parse(uri)
		require.NoError(t, err)
		tmpl.URIs = []*url.URL{u}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// testTLS makes a CA and a server certificate for 127.0.0.1; it returns
// the server config and the CA's PEM file.
func testTLS(t testing.TB) (*tls.Config, string) {
	ca := newTestCA(t)
	return &tls.Config{Certificates: []tls.Certificate{ca.issue(t, 2, "")}, MinVersion: tls.VersionTLS12}, ca.file
}

// clientResult is what both runners print.
type clientResult struct {
	ConnectError *clientErr `json:"connect_error"`
	Fatal        string     `json:"fatal"`
	Rows         [][]any    `json:"rows"`
	DeniedColumn *clientErr `json:"denied_column"`
	Count        int        `json:"count"`
	DeniedWrite  *clientErr `json:"denied_write"`
	ParamRow     []any      `json:"param_row"`
	Prepared     [][]any    `json:"prepared"`
	DeniedPrep   *clientErr `json:"denied_prepare"`
}

type clientErr struct {
	Errno    int    `json:"errno"`
	SQLState string `json:"sqlState"`
	Message  string `json:"message"`
}

func runClient(t *testing.T, e *env, client, user, password, caFile string) clientResult {
	t.Helper()
	var cmd *exec.Cmd
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	switch client {
	case "pymysql":
		// Debian's python3-pymysql is installed for /usr/bin/python3.
		cmd = exec.CommandContext(ctx, "/usr/bin/python3", fixture.Path(t, "internal", "e2e", "mysql", "pymysql_runner.py"))
	case "mysql2":
		dir := fixture.Path(t, "internal", "e2e", "mysql", "node")
		_, err := os.Stat(filepath.Join(dir, "node_modules", "mysql2"))
		require.NoError(t, err, "mysql2 is not installed: run scripts/setup.sh")
		cmd = exec.CommandContext(ctx, "node", filepath.Join(dir, "runner.js"))
	}
	host, port, _ := strings.Cut(e.addr, ":")
	cmd.Env = append(os.Environ(), "KH_HOST="+host, "KH_PORT="+port, "KH_USER="+user, "KH_PASSWORD="+password, "KH_DB="+e.db.Name, "KH_SSL_CA="+caFile)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	require.NoError(t, cmd.Run(), "%s: %s %s", client, out.String(), errb.String())
	var r clientResult
	require.NoError(t, json.Unmarshal(out.Bytes(), &r), out.String())
	require.Empty(t, r.Fatal)
	return r
}

func TestClients(t *testing.T) {
	serverTLS, caFile := testTLS(t)
	e := newEnv(t, envOpts{tls: serverTLS})
	for _, client := range []string{"pymysql", "mysql2"} {
		for _, tc := range []struct {
			name       string
			user, pass string
			ca         string
		}{
			{"token", "analyst-bot", e.signer("analyst-bot", time.Hour), ""},
			{"token over TLS", "analyst-bot", e.signer("analyst-bot", time.Hour), caFile},
			{"secret", "secret-bot", e.secret, ""},
		} {
			t.Run(client+"/"+tc.name, func(t *testing.T) {
				before := e.count("orders")
				r := runClient(t, e, client, tc.user, tc.pass, tc.ca)
				require.Nil(t, r.ConnectError)
				assert.Equal(t, [][]any{{1.0, "ann"}, {2.0, "bob"}}, r.Rows)
				require.NotNil(t, r.DeniedColumn)
				assert.Equal(t, 1143, r.DeniedColumn.Errno)
				assert.Contains(t, r.DeniedColumn.Message, "pii.email")
				assert.Equal(t, before, r.Count, "session usable after the denial")
				require.NotNil(t, r.DeniedWrite)
				assert.Equal(t, 1142, r.DeniedWrite.Errno)
				// 100 was rolled back, 101 committed; DELETE never ran.
				assert.Equal(t, before+1, e.count("orders"))
				var n int
				require.NoError(t, e.direct().QueryRow("SELECT count(*) FROM orders WHERE id = 100").Scan(&n))
				assert.Zero(t, n)
				if client == "mysql2" {
					assert.Equal(t, [][]any{{3.0, "item3"}, {7.0, "item7"}}, r.Prepared)
					require.NotNil(t, r.DeniedPrep)
					assert.Equal(t, 1143, r.DeniedPrep.Errno)
				} else {
					assert.Equal(t, []any{3.0, "item3"}, r.ParamRow)
				}
				_, err := e.direct().Exec("DELETE FROM orders WHERE id = 101")
				require.NoError(t, err)
			})
		}
	}
	t.Run("pymysql/wrong token", func(t *testing.T) {
		r := runClient(t, e, "pymysql", "analyst-bot", "nope", "")
		require.NotNil(t, r.ConnectError)
		assert.Equal(t, 1045, r.ConnectError.Errno)
	})
}

func TestTLS(t *testing.T) {
	serverTLS, caFile := testTLS(t)
	e := newEnv(t, envOpts{tls: serverTLS})
	pool := x509.NewCertPool()
	pemBytes, err := os.ReadFile(caFile)
	require.NoError(t, err)
	require.True(t, pool.AppendCertsFromPEM(pemBytes))
	require.NoError(t, mysql.RegisterTLSConfig("keyhole-test", &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}))
	c := e.cfg("analyst-bot")
	c.TLSConfig = "keyhole-test"
	db := e.open(c)
	var cipher string
	var one int
	require.NoError(t, db.QueryRow("SELECT 1").Scan(&one))
	// keyhole's leg is TLS; the upstream leg here is plain.
	require.NoError(t, db.QueryRow("SELECT id, item FROM orders WHERE id = 3").Scan(&one, &cipher))
	assert.Equal(t, "item3", cipher)

	// The secret over TLS with mysql_clear_password.
	c = e.cfg("secret-bot")
	c.Passwd = e.secret
	c.TLSConfig = "keyhole-test"
	c.AllowCleartextPasswords = true
	require.NoError(t, e.open(c).QueryRow("SELECT 1").Scan(&one))
}

func TestMTLS(t *testing.T) {
	ca := newTestCA(t)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	serverTLS := &tls.Config{Certificates: []tls.Certificate{ca.issue(t, 2, "")}, ClientCAs: pool,
		ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12}
	e := newEnv(t, envOpts{tls: serverTLS, caFile: ca.file, identity: func(c *identity.Config) {
		c.SPIFFE = map[string]string{"spiffe://example.org/agents/analyst": "analyst-bot"}
	}})
	register := func(name string, cert tls.Certificate) {
		require.NoError(t, mysql.RegisterTLSConfig(name, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", Certificates: []tls.Certificate{cert}}))
	}
	register("keyhole-mtls-analyst", ca.issue(t, 3, "spiffe://example.org/agents/analyst"))
	register("keyhole-mtls-other", ca.issue(t, 4, "spiffe://example.org/agents/other"))

	// The certificate is the credential: no password at all.
	c := e.cfg("analyst-bot")
	c.Passwd = ""
	c.TLSConfig = "keyhole-mtls-analyst"
	var one int
	require.NoError(t, e.open(c).QueryRow("SELECT 1").Scan(&one))
	// A certificate of another SPIFFE ID cannot claim the agent.
	c.TLSConfig = "keyhole-mtls-other"
	assert.EqualValues(t, 1045, errno(e.open(c).Ping()))
	var methods []string
	for _, ev := range e.audit.Events() {
		if ev.Kind == audit.KindAuthOK {
			methods = append(methods, ev.AuthMethod)
		}
	}
	assert.Equal(t, []string{"mtls"}, methods)
}
