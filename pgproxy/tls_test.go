package pgproxy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/identity"
)

type testPKI struct {
	caDER  []byte
	pool   *x509.CertPool
	server tls.Certificate
	client tls.Certificate // SPIFFE ID spiffe://example.org/agents/analyst
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "keyhole test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	issue := func(serial int64, mod func(*x509.Certificate)) tls.Certificate {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
		mod(tmpl)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		require.NoError(t, err)
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	spiffe, _ := url.Parse("spiffe://example.org/agents/analyst")
	return &testPKI{
		caDER: caDER,
		pool:  pool,
		server: issue(2, func(c *x509.Certificate) {
			c.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		}),
		client: issue(3, func(c *x509.Certificate) {
			c.URIs = []*url.URL{spiffe}
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}),
	}
}

// files writes the server's certificate and key and the CA as keyhole.yaml's
// tls section names them: keyhole asks for client certificates and
// verifies them against the CA.
func (p *testPKI) files(t *testing.T) config.TLS {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return path
	}
	key, err := x509.MarshalPKCS8PrivateKey(p.server.PrivateKey)
	require.NoError(t, err)
	return config.TLS{
		CertFile:     write("server.crt", "CERTIFICATE", p.server.Certificate[0]),
		KeyFile:      write("server.key", "PRIVATE KEY", key),
		ClientCAFile: write("ca.crt", "CERTIFICATE", p.caDER),
	}
}

func TestTLSAndAuthMethods(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	scramSecret := identity.NewSecret()
	v, err := identity.NewVerifier(scramSecret, 4096)
	require.NoError(t, err)
	e := newEnv(t, envOpts{
		tls: pki.files(t),
		identity: func(c *identity.Config) {
			c.SCRAM.Verifiers = map[string]string{"scram-bot": v.Encode()}
			c.SPIFFE = map[string]string{"spiffe://example.org/agents/analyst": "analyst-bot"}
		},
	})
	ctx := context.Background()

	connect := func(t *testing.T, dsn string, cert *tls.Certificate) (*pgx.Conn, error) {
		cfg, err := pgx.ParseConfig(dsn)
		require.NoError(t, err)
		cfg.TLSConfig = &tls.Config{RootCAs: pki.pool, ServerName: "127.0.0.1"}
		if cert != nil {
			cfg.TLSConfig.Certificates = []tls.Certificate{*cert}
		}
		return pgx.ConnectConfig(ctx, cfg)
	}
	base := "postgres://%s@" + e.addr + "/" + e.db.Name + "?sslmode=verify-full"

	t.Run("token over TLS", func(t *testing.T) {
		c, err := connect(t, "postgres://analyst-bot:"+e.signer("analyst-bot", time.Hour)+"@"+e.addr+"/"+e.db.Name+"?sslmode=verify-full", nil)
		require.NoError(t, err)
		defer c.Close(ctx)
		var n int
		require.NoError(t, c.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n))
		assert.Equal(t, 20, n)
		assert.NotNil(t, c.PgConn().Conn().(*tls.Conn))
	})
	t.Run("scram", func(t *testing.T) {
		c, err := connect(t, "postgres://scram-bot:"+url.QueryEscape(scramSecret)+"@"+e.addr+"/"+e.db.Name+"?sslmode=verify-full", nil)
		require.NoError(t, err)
		defer c.Close(ctx)
		_, err = c.Exec(ctx, "SELECT 1")
		require.NoError(t, err)
	})
	t.Run("scram wrong secret", func(t *testing.T) {
		_, err := connect(t, "postgres://scram-bot:wrong@"+e.addr+"/"+e.db.Name+"?sslmode=verify-full", nil)
		assert.Equal(t, "28P01", sqlState(err), "err: %v", err)
	})
	t.Run("spiffe client certificate", func(t *testing.T) {
		c, err := connect(t, replaceUser(base, "analyst-bot"), &pki.client)
		require.NoError(t, err)
		defer c.Close(ctx)
		_, err = c.Exec(ctx, "SELECT 1")
		require.NoError(t, err)
	})
	t.Run("certificate for another user", func(t *testing.T) {
		_, err := connect(t, replaceUser(base, "scram-bot"), &pki.client)
		assert.Contains(t, []string{"28P01", "28000"}, sqlState(err), "err: %v", err)
	})
	methods := map[string]bool{}
	for _, ev := range e.audit.Events() {
		if ev.Kind == audit.KindAuthOK {
			methods[ev.AuthMethod] = true
		}
	}
	assert.Equal(t, map[string]bool{"token": true, "scram": true, "mtls": true}, methods)
}

func replaceUser(format, user string) string {
	return fmt.Sprintf(format, user)
}
