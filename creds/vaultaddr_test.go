package creds_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/creds"
)

// A login in the Vault address (basic auth, which Go's HTTP client sends to
// a proxy in front of Vault) or a token in its query was printed on every
// creds.vault log line (vault_addr) and in the config error for an address
// that is not an http(s) URL.
func TestVaultAddrCredentialsNeverPrint(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := ln.Addr().String()
	require.NoError(t, ln.Close())

	var logs bytes.Buffer
	cfg := creds.VaultConfig{
		Addr:           "http://keyhole:canary-basic-pw@" + closed + "/?token=canary-query-token",
		Auth:           creds.VaultAuth{Token: creds.NewSecret("canary-vault-token")},
		RequestTimeout: time.Second,
	}
	v, err := creds.NewVault(cfg, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	require.NoError(t, err)
	_, aerr := v.Acquire(context.Background(), creds.Request{Agent: "bot", Role: "analyst"})
	require.Error(t, aerr)
	herr := v.Healthy()
	require.Error(t, herr)
	require.NoError(t, v.Close())
	require.Contains(t, logs.String(), "vault_addr", "the test reads the lines that carry the address")

	bad := creds.VaultConfig{Addr: "ftp://keyhole:canary-basic-pw@vault.internal/"}
	verr := bad.Validate()
	require.Error(t, verr)
	unparsable := creds.VaultConfig{Addr: "http://keyhole:canary-basic-pw%zz@vault.internal/"}
	uerr := unparsable.Validate()
	require.Error(t, uerr)

	for _, text := range []string{logs.String(), aerr.Error(), herr.Error(), verr.Error(), uerr.Error()} {
		for _, secret := range []string{"canary-basic-pw", "canary-query-token", "canary-vault-token"} {
			assert.NotContains(t, text, secret)
		}
	}
	assert.Equal(t, "https://vault.internal:8200/v", creds.DisplayAddr("https://u:p@vault.internal:8200/v?token=t"))
}
