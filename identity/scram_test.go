package identity_test

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/xdg-go/scram"

	"github.com/keyholedb/keyhole/identity"
)

// RFC 7677 §3 test vector: user "user", password "pencil".
func TestSCRAMRFC7677Vector(t *testing.T) {
	t.Parallel()
	salt, err := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	require.NoError(t, err)
	v, err := identity.DeriveVerifier("pencil", salt, 4096)
	require.NoError(t, err)
	conv := identity.NewSCRAMServerWithNonce("user", v, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")

	out, done, err := conv.Step([]byte("n,,n=user,r=rOprNGfwEbeRWgbNEkqO"))
	require.NoError(t, err)
	assert.False(t, done)
	assert.Equal(t, "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", string(out))

	out, done, err = conv.Step([]byte("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="))
	require.NoError(t, err)
	assert.True(t, done)
	assert.Equal(t, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", string(out))
	require.NotNil(t, conv.Agent())
	assert.Equal(t, "user", conv.Agent().Name)
	assert.Equal(t, identity.MethodSCRAM, conv.Agent().Method)
}

func TestVerifierRoundTrip(t *testing.T) {
	t.Parallel()
	v, err := identity.NewVerifier(identity.NewSecret(), 0)
	require.NoError(t, err)
	s := v.Encode()
	assert.True(t, strings.HasPrefix(s, "SCRAM-SHA-256$4096:"), s)
	back, err := identity.ParseVerifier(s)
	require.NoError(t, err)
	assert.Equal(t, v, back)

	for _, bad := range []string{"", "md5abc", "SCRAM-SHA-256$4096:c2FsdA==$AAAA:BBBB", "SCRAM-SHA-1$4096:c2FsdA==$x:y", "SCRAM-SHA-256$zero:c2FsdA==$x:y"} {
		_, err := identity.ParseVerifier(bad)
		assert.ErrorIs(t, err, identity.ErrBadVerifier, bad)
	}
}

// runXDG drives our server with the xdg-go/scram client.
func runXDG(t *testing.T, conv identity.SCRAMConversation, c *scram.ClientConversation) error {
	t.Helper()
	first, err := c.Step("")
	require.NoError(t, err)
	srvFirst, _, err := conv.Step([]byte(first))
	if err != nil {
		return err
	}
	final, err := c.Step(string(srvFirst))
	require.NoError(t, err)
	srvFinal, done, err := conv.Step([]byte(final))
	if err != nil {
		return err
	}
	require.True(t, done)
	_, err = c.Step(string(srvFinal))
	require.NoError(t, err, "client must accept the server signature")
	require.True(t, c.Valid())
	return nil
}

func TestSCRAMWithXDGClient(t *testing.T) {
	t.Parallel()
	secret := identity.NewSecret()
	v, err := identity.NewVerifier(secret, 4096)
	require.NoError(t, err)
	a, err := identity.New(identity.Config{SCRAM: identity.SCRAMConfig{Verifiers: map[string]string{"sales": v.Encode()}}})
	require.NoError(t, err)

	tests := []struct {
		name     string
		password string
		advertCB bool
		wantErr  bool
	}{
		{name: "n flag", password: secret},
		{name: "y flag", password: secret, advertCB: true},
		{name: "wrong secret", password: secret + "x", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			conv, ok := a.SCRAM("sales")
			require.True(t, ok)
			// Postgres drivers send an empty SCRAM username.
			client, err := scram.SHA256.NewClient("", tt.password, "")
			require.NoError(t, err)
			cc := client.NewConversation()
			if tt.advertCB {
				cc = client.NewConversationAdvertisingChannelBinding()
			}
			err = runXDG(t, conv, cc)
			if tt.wantErr {
				require.ErrorIs(t, err, identity.ErrAuthFailed)
				r, _ := identity.ReasonOf(err)
				assert.Equal(t, identity.ReasonCredentials, r)
				assert.NotContains(t, err.Error(), tt.password)
				assert.Nil(t, conv.Agent())
				return
			}
			require.NoError(t, err)
			assert.Equal(t, &identity.Agent{Name: "sales", Method: identity.MethodSCRAM}, conv.Agent())
		})
	}
}

// TestSCRAMUnknownAgent: without a token method, a name with no verifier
// gets a SCRAM exchange that fails exactly like a wrong secret, with a
// salt that stays the same for that name; with tokens configured, the
// front end asks for a token instead.
func TestSCRAMUnknownAgent(t *testing.T) {
	t.Parallel()
	v, err := identity.NewVerifier(identity.NewSecret(), 4096)
	require.NoError(t, err)
	cfg := identity.Config{SCRAM: identity.SCRAMConfig{Verifiers: map[string]string{"sales": v.Encode()}}}
	a, err := identity.New(cfg)
	require.NoError(t, err)

	serverFirst := func(a *identity.Auth, user string) (identity.SCRAMConversation, string) {
		conv, ok := a.SCRAM(user)
		require.True(t, ok)
		out, done, err := conv.Step([]byte("n,,n=,r=clientnonce"))
		require.NoError(t, err)
		require.False(t, done)
		return conv, string(out)
	}
	attrs := func(serverFirst string) (salt, iter string) {
		parts := strings.Split(serverFirst, ",")
		require.Len(t, parts, 3)
		return parts[1], parts[2]
	}
	_, real := serverFirst(a, "sales")
	_, first := serverFirst(a, "nobody")
	_, again := serverFirst(a, "nobody")
	_, other := serverFirst(a, "someone")
	realSalt, realIter := attrs(real)
	salt, iter := attrs(first)
	salt2, _ := attrs(again)
	otherSalt, _ := attrs(other)
	assert.Equal(t, realIter, iter)
	assert.Len(t, salt, len(realSalt))
	assert.Equal(t, salt, salt2, "an unknown name gets the same salt every time")
	assert.NotEqual(t, salt, otherSalt)
	a2, err := identity.New(cfg)
	require.NoError(t, err)
	_, restarted := serverFirst(a2, "nobody")
	salt3, _ := attrs(restarted)
	assert.Equal(t, salt, salt3, "and after a restart with the same verifiers")

	for _, user := range []string{"sales", "nobody"} {
		conv, ok := a.SCRAM(user)
		require.True(t, ok)
		client, err := scram.SHA256.NewClient("", "a guess", "")
		require.NoError(t, err)
		err = runXDG(t, conv, client.NewConversation())
		var ae *identity.AuthError
		require.ErrorAs(t, err, &ae, user)
		assert.Equal(t, identity.ReasonCredentials, ae.Reason, user)
		assert.Equal(t, identity.ReasonCredentials.ClientText(), ae.ClientMessage(), user)
	}

	pub := filepath.Join(t.TempDir(), "k")
	key, err := identity.GenerateKey()
	require.NoError(t, err)
	require.NoError(t, identity.WriteKeyFile(pub, key))
	cfg.Tokens.PublicKeyFile = pub + ".pub"
	withTokens, err := identity.New(cfg)
	require.NoError(t, err)
	_, ok := withTokens.SCRAM("nobody")
	assert.False(t, ok, "ask for a token")
	_, ok = withTokens.SCRAM("sales")
	assert.True(t, ok)
}

// clientFinal computes a client-final-message by hand (RFC 5802 §3), for
// corner cases a stock client will not produce.
func clientFinal(v identity.Verifier, clientKey []byte, first, srvFirst, cbind, nonce string) string {
	without := "c=" + base64.StdEncoding.EncodeToString([]byte(cbind)) + ",r=" + nonce
	auth := first + "," + srvFirst + "," + without
	m := hmac.New(sha256.New, v.StoredKey)
	m.Write([]byte(auth))
	sig := m.Sum(nil)
	proof := make([]byte, len(sig))
	for i := range sig {
		proof[i] = clientKey[i] ^ sig[i]
	}
	return without + ",p=" + base64.StdEncoding.EncodeToString(proof)
}

func TestSCRAMProtocolErrors(t *testing.T) {
	t.Parallel()
	salt := []byte("0123456789abcdef")
	v, err := identity.DeriveVerifier("pencil", salt, 4096)
	require.NoError(t, err)

	tests := []struct {
		name  string
		first string
		final func(srvFirst string) string // nil: first message must fail
		guess bool                         // a wrong proof (a tested guess), not a protocol error
	}{
		{name: "channel binding p=", first: "p=tls-server-end-point,,n=,r=abc"},
		{name: "bad flag", first: "x,,n=,r=abc"},
		{name: "authzid", first: "n,a=admin,n=,r=abc"},
		{name: "mandatory extension", first: "n,,m=ext,n=,r=abc"},
		{name: "no nonce", first: "n,,n=,r="},
		{name: "no username attr", first: "n,,r=abc"},
		{name: "garbage", first: "hello"},
		{name: "nonce mismatch", first: "n,,n=,r=abc", final: func(string) string {
			return "c=biws,r=abcXYZ,p=" + base64.StdEncoding.EncodeToString(make([]byte, 32))
		}},
		{name: "cbind mismatch", first: "n,,n=,r=abc", final: func(s string) string {
			nonce := strings.TrimPrefix(strings.Split(s, ",")[0], "r=")
			return "c=eSws,r=" + nonce + ",p=" + base64.StdEncoding.EncodeToString(make([]byte, 32))
		}},
		{name: "missing proof", first: "n,,n=,r=abc", final: func(s string) string {
			return "c=biws," + strings.Split(s, ",")[0]
		}},
		{name: "zero proof", first: "n,,n=,r=abc", final: func(s string) string {
			return "c=biws," + strings.Split(s, ",")[0] + ",p=" + base64.StdEncoding.EncodeToString(make([]byte, 32))
		}, guess: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			conv := identity.NewSCRAMServerWithNonce("u", v, "")
			srvFirst, _, err := conv.Step([]byte(tt.first))
			want := identity.ReasonSCRAMProtocol
			if tt.guess {
				want = identity.ReasonCredentials
			}
			if tt.final == nil {
				require.ErrorIs(t, err, identity.ErrAuthFailed)
				r, _ := identity.ReasonOf(err)
				assert.Equal(t, want, r)
				return
			}
			require.NoError(t, err)
			_, done, err := conv.Step([]byte(tt.final(string(srvFirst))))
			require.ErrorIs(t, err, identity.ErrAuthFailed)
			r, _ := identity.ReasonOf(err)
			assert.Equal(t, want, r)
			assert.False(t, done)
			assert.Nil(t, conv.Agent())
			// The conversation is over after a failure.
			_, _, err = conv.Step([]byte("c=biws"))
			assert.ErrorIs(t, err, identity.ErrAuthFailed)
		})
	}

	t.Run("y flag by hand", func(t *testing.T) {
		t.Parallel()
		conv := identity.NewSCRAMServerWithNonce("u", v, "srv")
		first := "n=,r=cli"
		srvFirst, _, err := conv.Step([]byte("y,," + first))
		require.NoError(t, err)
		salted := pbkdf2Key(t, "pencil", salt)
		ck := hmac.New(sha256.New, salted)
		ck.Write([]byte("Client Key"))
		_, done, err := conv.Step([]byte(clientFinal(v, ck.Sum(nil), first, string(srvFirst), "y,,", "clisrv")))
		require.NoError(t, err)
		assert.True(t, done)
	})
}

func pbkdf2Key(t *testing.T, pw string, salt []byte) []byte {
	t.Helper()
	// SaltedPassword (RFC 5802 §3): the client side, which the stored
	// verifier cannot give.
	k, err := pbkdf2.Key(sha256.New, pw, salt, 4096, sha256.Size)
	require.NoError(t, err)
	return k
}
