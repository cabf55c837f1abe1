package identity_test

import (
	"bytes"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/identity"
)

// A JWKS URL's query (…?access_token=…) was logged as it was written when
// the URL is http or the first fetch fails. Not parallel: it swaps the
// default logger, which the JWKS source writes to.
func TestJWKSURLCredentialsNeverLogged(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	var logs bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewJSONHandler(&logs, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })

	_, err = identity.New(identity.Config{JWKS: []identity.JWKSConfig{{
		Issuer:  "https://idp.example/",
		URL:     "http://client:canary-basic-pw@" + addr + "/jwks.json?access_token=canary-query-token",
		Timeout: time.Second,
	}}})
	require.NoError(t, err)
	require.Contains(t, logs.String(), "jwks fetch failed", "the test reads the lines that carry the URL")
	assert.NotContains(t, logs.String(), "canary-basic-pw")
	assert.NotContains(t, logs.String(), "canary-query-token")
}
