package identity_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/identity"
)

func FuzzParseVerifier(f *testing.F) {
	v, err := identity.DeriveVerifier("pencil", []byte("0123456789abcdef"), 4096)
	require.NoError(f, err)
	f.Add(v.Encode())
	f.Add("SCRAM-SHA-256$4096:$:")
	f.Add("md5abcdef")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := identity.ParseVerifier(s)
		if err != nil {
			return
		}
		back, err := identity.ParseVerifier(v.Encode())
		require.NoError(t, err)
		require.Equal(t, v, back)
	})
}

// FuzzSCRAMServer: no input panics, and no input authenticates without
// knowing the secret.
func FuzzSCRAMServer(f *testing.F) {
	v, err := identity.DeriveVerifier("pencil", []byte("0123456789abcdef"), 4096)
	require.NoError(f, err)
	f.Add("n,,n=,r=abc", "c=biws,r=abcsrv,p=AAAA")
	f.Add("y,,n=user,r=rOprNGfwEbeRWgbNEkqO", "c=eSws,r=rOprNGfwEbeRWgbNEkqOsrv,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
	f.Add("p=tls-unique,,n=,r=x", "")
	f.Fuzz(func(t *testing.T, first, final string) {
		conv := identity.NewSCRAMServerWithNonce("u", v, "srv")
		if _, _, err := conv.Step([]byte(first)); err != nil {
			require.ErrorIs(t, err, identity.ErrAuthFailed)
			return
		}
		_, done, err := conv.Step([]byte(final))
		require.Error(t, err)
		require.False(t, done)
		require.Nil(t, conv.Agent())
	})
}

// FuzzToken: no mutation of a token minted for "alice" verifies as "bob"
// or panics.
func FuzzToken(f *testing.F) {
	key, err := identity.GenerateKey()
	require.NoError(f, err)
	path := filepath.Join(f.TempDir(), "k")
	require.NoError(f, identity.WriteKeyFile(path, key))
	a, err := identity.New(identity.Config{Tokens: identity.TokenConfig{PublicKeyFile: path + ".pub"}})
	require.NoError(f, err)
	tok, err := identity.Mint(key, identity.Claims{Agent: "alice", TTL: time.Hour})
	require.NoError(f, err)
	f.Add(tok)
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJib2IifQ.")
	f.Fuzz(func(t *testing.T, s string) {
		ag, err := a.Token("bob", s)
		require.ErrorIs(t, err, identity.ErrAuthFailed)
		require.Nil(t, ag)
		// Every failure has a reason a client may be told, and that text
		// never echoes the input.
		var ae *identity.AuthError
		require.ErrorAs(t, err, &ae)
		if len(s) > 8 {
			require.NotContains(t, ae.ClientMessage(), s)
		}
	})
}
