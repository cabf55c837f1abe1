package identity_test

import (
	"crypto/x509"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/identity"
)

func certWith(t *testing.T, uris ...string) *x509.Certificate {
	t.Helper()
	c := &x509.Certificate{NotAfter: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	for _, s := range uris {
		u, err := url.Parse(s)
		require.NoError(t, err)
		c.URIs = append(c.URIs, u)
	}
	return c
}

func TestCertificate(t *testing.T) {
	t.Parallel()
	a, err := identity.New(identity.Config{SPIFFE: map[string]string{
		"spiffe://example.org/agents/sales": "sales",
	}})
	require.NoError(t, err)

	tests := []struct {
		name string
		user string
		cert *x509.Certificate
		ok   bool
	}{
		{name: "mapped", user: "sales", cert: certWith(t, "spiffe://example.org/agents/sales"), ok: true},
		{name: "user mismatch", user: "admin", cert: certWith(t, "spiffe://example.org/agents/sales")},
		{name: "unknown id", user: "sales", cert: certWith(t, "spiffe://example.org/agents/other")},
		{name: "other trust domain", user: "sales", cert: certWith(t, "spiffe://evil.org/agents/sales")},
		{name: "no URI SAN", user: "sales", cert: certWith(t)},
		{name: "two URI SANs", user: "sales", cert: certWith(t, "spiffe://example.org/agents/sales", "spiffe://example.org/agents/x")},
		{name: "https URI", user: "sales", cert: certWith(t, "https://example.org/agents/sales")},
		{name: "port", user: "sales", cert: certWith(t, "spiffe://example.org:443/agents/sales")},
		{name: "query", user: "sales", cert: certWith(t, "spiffe://example.org/agents/sales?x=1")},
		{name: "nil cert", user: "sales"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ag, err := a.Certificate(tt.user, tt.cert)
			if !tt.ok {
				require.ErrorIs(t, err, identity.ErrAuthFailed)
				r, _ := identity.ReasonOf(err)
				assert.Equal(t, identity.ReasonCertificate, r)
				assert.Nil(t, ag)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, &identity.Agent{Name: "sales", Method: identity.MethodMTLS, Expires: tt.cert.NotAfter}, ag)
		})
	}
}

func TestParseSPIFFEID(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"spiffe://example.org", "spiffe://example.org/a/b", "spiffe://a-b_c.d/x.y"} {
		_, err := identity.ParseSPIFFEID(ok)
		assert.NoError(t, err, ok)
	}
	for _, bad := range []string{"", "spiffe://", "spiffe:///path", "spiffe://Example.org/a", "spiffe://example.org/a/", "spiffe://example.org//a",
		"spiffe://example.org/./a", "spiffe://u@example.org/a", "spiffe://example.org/a#f", "http://example.org/a", "spiffe:example.org"} {
		_, err := identity.ParseSPIFFEID(bad)
		assert.ErrorIs(t, err, identity.ErrBadSPIFFEID, bad)
	}
}
