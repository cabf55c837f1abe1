package identity_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/identity"
)

func TestParseConfig(t *testing.T) {
	t.Parallel()
	c, err := identity.ParseConfig([]byte(`
tokens:
  public_key_file: /etc/keyhole/token.pub
  leeway: 10s
jwks:
  - url: https://idp.example.com/jwks.json
    issuer: https://idp.example.com/
    audience: keyhole
    refresh: 1m
scram:
  verifiers_file: /etc/keyhole/scram.yaml
spiffe:
  spiffe://example.org/agents/sales: sales
`))
	require.NoError(t, err)
	assert.Equal(t, 10*time.Second, c.Tokens.Leeway)
	assert.Equal(t, time.Minute, c.JWKS[0].Refresh)
	assert.Equal(t, "sales", c.SPIFFE["spiffe://example.org/agents/sales"])

	for name, bad := range map[string]string{
		"unknown key":        "tokens:\n  public_key: x\n",
		"unknown top key":    "token:\n  public_key_file: x\n",
		"bad duration":       "tokens:\n  leeway: soon\n",
		"unknown jwks field": "jwks:\n  - uri: x\n",
	} {
		_, err := identity.ParseConfig([]byte(bad))
		assert.ErrorIs(t, err, identity.ErrConfig, name)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secret := identity.NewSecret()
	v, err := identity.NewVerifier(secret, 0)
	require.NoError(t, err)
	vfile := filepath.Join(dir, "scram.yaml")
	require.NoError(t, os.WriteFile(vfile, []byte("bot: "+v.Encode()+"\n"), 0o600))

	a, err := identity.New(identity.Config{SCRAM: identity.SCRAMConfig{VerifiersFile: vfile}})
	require.NoError(t, err)
	_, ok := a.SCRAM("bot")
	assert.True(t, ok)

	tests := map[string]identity.Config{
		"missing public key":    {Tokens: identity.TokenConfig{PublicKeyFile: filepath.Join(dir, "nope")}},
		"bad verifier":          {SCRAM: identity.SCRAMConfig{Verifiers: map[string]string{"a": "md5" + secret}}},
		"duplicate verifier":    {SCRAM: identity.SCRAMConfig{Verifiers: map[string]string{"bot": v.Encode()}, VerifiersFile: vfile}},
		"bad spiffe":            {SPIFFE: map[string]string{"https://x/y": "a"}},
		"jwks without issuer":   {JWKS: []identity.JWKSConfig{{File: vfile}}},
		"jwks file and url":     {JWKS: []identity.JWKSConfig{{File: vfile, URL: "http://x", Issuer: "i"}}},
		"jwks ftp url":          {JWKS: []identity.JWKSConfig{{URL: "ftp://x/jwks", Issuer: "i"}}},
		"missing revoked file":  {Tokens: identity.TokenConfig{RevokedFile: filepath.Join(dir, "nope")}},
		"negative leeway":       {Tokens: identity.TokenConfig{Leeway: -time.Second}},
		"spiffe to empty agent": {SPIFFE: map[string]string{"spiffe://x/y": ""}},
	}
	for name, cfg := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := identity.New(cfg)
			require.ErrorIs(t, err, identity.ErrConfig)
			// Errors never quote a verifier or secret.
			assert.NotContains(t, err.Error(), secret)
			assert.NotContains(t, err.Error(), v.Encode())
		})
	}
}
