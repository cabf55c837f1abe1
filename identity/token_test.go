package identity_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// keyPair writes a fresh key pair to a temp dir and returns the private key
// and the public key file.
func keyPair(t *testing.T) (ed25519.PrivateKey, string) {
	t.Helper()
	key, err := identity.GenerateKey()
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "token.key")
	require.NoError(t, identity.WriteKeyFile(path, key))
	return key, path + ".pub"
}

func TestKeyFiles(t *testing.T) {
	t.Parallel()
	key, err := identity.GenerateKey()
	require.NoError(t, err)
	dir := t.TempDir()
	path := filepath.Join(dir, "k")
	require.NoError(t, identity.WriteKeyFile(path, key))

	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	priv, err := identity.ReadPrivateKeyFile(path)
	require.NoError(t, err)
	assert.True(t, key.Equal(priv))
	pub, err := identity.ReadPublicKeyFile(path + ".pub")
	require.NoError(t, err)
	assert.True(t, key.Public().(ed25519.PublicKey).Equal(pub))

	// Refuses to overwrite; private and public files are not interchangeable.
	require.Error(t, identity.WriteKeyFile(path, key))
	_, err = identity.ReadPublicKeyFile(path)
	assert.ErrorIs(t, err, identity.ErrKeyFile)
	_, err = identity.ReadPrivateKeyFile(path + ".pub")
	assert.ErrorIs(t, err, identity.ErrKeyFile)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "junk"), []byte("not pem"), 0o600))
	_, err = identity.ReadPrivateKeyFile(filepath.Join(dir, "junk"))
	assert.ErrorIs(t, err, identity.ErrKeyFile)
}

func TestMintVerify(t *testing.T) {
	t.Parallel()
	key, pub := keyPair(t)
	a, err := identity.New(identity.Config{Tokens: identity.TokenConfig{PublicKeyFile: pub}})
	require.NoError(t, err)

	scope := []sqlpolicy.Grant{
		{Verb: sqlpolicy.VerbSelect, Tables: []string{"public.orders", "public.customers"}},
		{Verb: sqlpolicy.VerbInsert, Tables: []string{"public.orders"}},
	}
	tok, err := identity.Mint(key, identity.Claims{Agent: "sales", TTL: 15 * time.Minute, Scope: scope, ID: "jti-1"})
	require.NoError(t, err)

	ag, err := a.Token("sales", tok)
	require.NoError(t, err)
	assert.Equal(t, "sales", ag.Name)
	assert.Equal(t, identity.MethodToken, ag.Method)
	assert.Equal(t, scope, ag.Scope)
	assert.Equal(t, "jti-1", ag.TokenID)
	assert.WithinDuration(t, time.Now().Add(15*time.Minute), ag.Expires, 2*time.Second)
	assert.Equal(t, sqlpolicy.Principal{Agent: "sales", Scope: scope}, ag.Principal())

	// No scope claim → nil scope (no narrowing); a random jti is made.
	tok, err = identity.Mint(key, identity.Claims{Agent: "sales", TTL: time.Minute})
	require.NoError(t, err)
	ag, err = a.Token("sales", tok)
	require.NoError(t, err)
	assert.Nil(t, ag.Scope)
	assert.NotEmpty(t, ag.TokenID)

	// Mint rejects nonsense.
	for _, c := range []identity.Claims{
		{Agent: "", TTL: time.Minute},
		{Agent: "a", TTL: 0},
		{Agent: "a", TTL: time.Minute, Scope: []sqlpolicy.Grant{{Verb: "frobnicate", Tables: []string{"t"}}}},
		{Agent: "a", TTL: time.Minute, Scope: []sqlpolicy.Grant{{Verb: "select"}}},
	} {
		_, err := identity.Mint(key, c)
		assert.Error(t, err)
	}
}

func segment(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// TestTokenAttacks: every token here must be refused with ErrAuthFailed, and
// the error must not contain the token.
func TestTokenAttacks(t *testing.T) {
	t.Parallel()
	key, pubFile := keyPair(t)
	other, _ := keyPair(t)
	pubPEM, err := os.ReadFile(pubFile)
	require.NoError(t, err)
	pub := key.Public().(ed25519.PublicKey)
	now := time.Now()
	a, err := identity.New(identity.Config{Tokens: identity.TokenConfig{PublicKeyFile: pubFile}})
	require.NoError(t, err)

	claims := func(mod func(m jwt.MapClaims)) jwt.MapClaims {
		m := jwt.MapClaims{"iss": "keyhole", "sub": "sales", "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": "x"}
		if mod != nil {
			mod(m)
		}
		return m
	}
	sign := func(k any, m jwt.Claims, method jwt.SigningMethod) string {
		s, err := jwt.NewWithClaims(method, m).SignedString(k)
		require.NoError(t, err)
		return s
	}
	good := sign(key, claims(nil), jwt.SigningMethodEdDSA)
	parts := strings.Split(good, ".")

	tests := []struct {
		name   string
		user   string
		token  string
		reason identity.Reason
	}{
		{name: "alg none", user: "sales", token: segment(map[string]string{"alg": "none", "typ": "JWT"}) + "." + parts[1] + ".", reason: identity.ReasonTokenSignature},
		{name: "alg none with sig", user: "sales", token: segment(map[string]string{"alg": "none"}) + "." + parts[1] + "." + parts[2], reason: identity.ReasonTokenSignature},
		// Algorithm confusion: HMAC keyed with the public key's bytes.
		{name: "HS256 with raw public key", user: "sales", token: sign([]byte(pub), claims(nil), jwt.SigningMethodHS256), reason: identity.ReasonTokenSignature},
		{name: "HS256 with public key PEM", user: "sales", token: sign(pubPEM, claims(nil), jwt.SigningMethodHS256), reason: identity.ReasonTokenSignature},
		{name: "HS512", user: "sales", token: sign(pubPEM, claims(nil), jwt.SigningMethodHS512), reason: identity.ReasonTokenSignature},
		{name: "other key", user: "sales", token: sign(other, claims(nil), jwt.SigningMethodEdDSA), reason: identity.ReasonTokenSignature},
		{name: "tampered payload", user: "admin", token: parts[0] + "." + segment(claims(func(m jwt.MapClaims) { m["sub"] = "admin" })) + "." + parts[2], reason: identity.ReasonTokenSignature},
		{name: "stripped signature", user: "sales", token: parts[0] + "." + parts[1] + ".", reason: identity.ReasonTokenSignature},
		{name: "subject mismatch", user: "admin", token: good, reason: identity.ReasonTokenSubject},
		{name: "empty subject", user: "", token: sign(key, claims(func(m jwt.MapClaims) { delete(m, "sub") }), jwt.SigningMethodEdDSA), reason: identity.ReasonTokenSubject},
		{name: "expired", user: "sales", token: sign(key, claims(func(m jwt.MapClaims) { m["exp"] = now.Add(-time.Minute).Unix() }), jwt.SigningMethodEdDSA), reason: identity.ReasonTokenExpired},
		{name: "no exp", user: "sales", token: sign(key, claims(func(m jwt.MapClaims) { delete(m, "exp") }), jwt.SigningMethodEdDSA), reason: identity.ReasonTokenMalformed},
		{name: "nbf in future", user: "sales", token: sign(key, claims(func(m jwt.MapClaims) { m["nbf"] = now.Add(10 * time.Minute).Unix() }), jwt.SigningMethodEdDSA), reason: identity.ReasonTokenNotYetValid},
		{name: "iat in future", user: "sales", token: sign(key, claims(func(m jwt.MapClaims) { m["iat"] = now.Add(10 * time.Minute).Unix() }), jwt.SigningMethodEdDSA), reason: identity.ReasonTokenNotYetValid},
		{name: "wrong issuer", user: "sales", token: sign(key, claims(func(m jwt.MapClaims) { m["iss"] = "evil" }), jwt.SigningMethodEdDSA), reason: identity.ReasonTokenSignature},
		{name: "no issuer", user: "sales", token: sign(key, claims(func(m jwt.MapClaims) { delete(m, "iss") }), jwt.SigningMethodEdDSA), reason: identity.ReasonTokenSignature},
		{name: "no jti", user: "sales", token: sign(key, claims(func(m jwt.MapClaims) { delete(m, "jti") }), jwt.SigningMethodEdDSA), reason: identity.ReasonTokenMalformed},
		{name: "scope as OAuth string", user: "sales", token: sign(key, claims(func(m jwt.MapClaims) { m["scope"] = "select:public.orders" }), jwt.SigningMethodEdDSA), reason: identity.ReasonTokenMalformed},
		{name: "scope with unknown verb", user: "sales", token: sign(key, claims(func(m jwt.MapClaims) {
			m["scope"] = []map[string]any{{"verb": "all", "tables": []string{"*"}}}
		}), jwt.SigningMethodEdDSA), reason: identity.ReasonTokenMalformed},
		{name: "crit header", user: "sales", token: func() string {
			tk := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims(nil))
			tk.Header["crit"] = []string{"exp"}
			s, err := tk.SignedString(key)
			require.NoError(t, err)
			return s
		}(), reason: identity.ReasonTokenMalformed},
		{name: "empty", user: "sales", token: "", reason: identity.ReasonTokenMalformed},
		{name: "garbage", user: "sales", token: "not-a-jwt", reason: identity.ReasonTokenMalformed},
		{name: "huge", user: "sales", token: strings.Repeat("a", 1<<20), reason: identity.ReasonTokenMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ag, err := a.Token(tt.user, tt.token)
			require.ErrorIs(t, err, identity.ErrAuthFailed)
			assert.Nil(t, ag)
			var ae *identity.AuthError
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, tt.reason, ae.Reason, "%v", err)
			if tt.token != "" && len(tt.token) > 20 {
				assert.NotContains(t, err.Error(), tt.token)
				for _, p := range strings.Split(tt.token, ".") {
					if len(p) > 8 {
						assert.NotContains(t, err.Error(), p)
					}
				}
			}
		})
	}

	t.Run("good token passes", func(t *testing.T) {
		t.Parallel()
		_, err := a.Token("sales", good)
		require.NoError(t, err)
	})
}

func TestTokenLeewayAndAudience(t *testing.T) {
	t.Parallel()
	key, pub := keyPair(t)
	now := time.Now()
	clock := func() time.Time { return now }
	tok, err := identity.Mint(key, identity.Claims{Agent: "a", TTL: time.Minute, Audience: "db1"})
	require.NoError(t, err)

	a, err := identity.NewAt(identity.Config{Tokens: identity.TokenConfig{PublicKeyFile: pub, Audience: "db1", Leeway: 10 * time.Second}}, clock)
	require.NoError(t, err)
	_, err = a.Token("a", tok)
	require.NoError(t, err)

	late := func() time.Time { return now.Add(time.Minute + 5*time.Second) }
	a, err = identity.NewAt(identity.Config{Tokens: identity.TokenConfig{PublicKeyFile: pub, Leeway: 10 * time.Second}}, late)
	require.NoError(t, err)
	_, err = a.Token("a", tok)
	require.NoError(t, err, "within leeway")

	tooLate := func() time.Time { return now.Add(time.Minute + 15*time.Second) }
	a, err = identity.NewAt(identity.Config{Tokens: identity.TokenConfig{PublicKeyFile: pub, Leeway: 10 * time.Second}}, tooLate)
	require.NoError(t, err)
	_, err = a.Token("a", tok)
	r, _ := identity.ReasonOf(err)
	assert.Equal(t, identity.ReasonTokenExpired, r, "%v", err)

	early := func() time.Time { return now.Add(-15 * time.Second) }
	a, err = identity.NewAt(identity.Config{Tokens: identity.TokenConfig{PublicKeyFile: pub, Leeway: 10 * time.Second}}, early)
	require.NoError(t, err)
	_, err = a.Token("a", tok)
	r, _ = identity.ReasonOf(err)
	assert.Equal(t, identity.ReasonTokenNotYetValid, r, "%v", err)

	a, err = identity.NewAt(identity.Config{Tokens: identity.TokenConfig{PublicKeyFile: pub, Audience: "db2"}}, clock)
	require.NoError(t, err)
	_, err = a.Token("a", tok)
	r, _ = identity.ReasonOf(err)
	assert.Equal(t, identity.ReasonTokenAudience, r, "%v", err)
}

func TestTokenNotConfigured(t *testing.T) {
	t.Parallel()
	key, _ := keyPair(t)
	tok, err := identity.Mint(key, identity.Claims{Agent: "a", TTL: time.Minute})
	require.NoError(t, err)
	a, err := identity.New(identity.Config{})
	require.NoError(t, err)
	_, err = a.Token("a", tok)
	require.ErrorIs(t, err, identity.ErrAuthFailed)
}

func TestRevocation(t *testing.T) {
	t.Parallel()
	key, pub := keyPair(t)
	revoked := filepath.Join(t.TempDir(), "revoked")
	require.NoError(t, os.WriteFile(revoked, []byte("# revoked tokens\nold-1\n"), 0o600))
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	a, err := identity.NewAt(identity.Config{Tokens: identity.TokenConfig{PublicKeyFile: pub, RevokedFile: revoked}}, clock)
	require.NoError(t, err)

	mint := func(id string) string {
		s, err := identity.Mint(key, identity.Claims{Agent: "a", TTL: time.Hour, ID: id})
		require.NoError(t, err)
		return s
	}
	_, err = a.Token("a", mint("old-1"))
	require.ErrorIs(t, err, identity.ErrAuthFailed)
	_, err = a.Token("a", mint("new-1"))
	require.NoError(t, err)

	require.NoError(t, os.WriteFile(revoked, []byte("old-1\nnew-1  # leaked\n"), 0o600))
	now.Add(int64(2 * time.Second))
	_, err = a.Token("a", mint("new-1"))
	require.ErrorIs(t, err, identity.ErrAuthFailed, "reloaded list revokes new-1")
	r, _ := identity.ReasonOf(err)
	assert.Equal(t, identity.ReasonTokenRevoked, r)

	// A list of the same size that kept the old mtime (cp -p, rsync -t)
	// is a new list too.
	fi, err := os.Stat(revoked)
	require.NoError(t, err)
	_, err = a.Token("a", mint("new-2"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(revoked, []byte("old-1\nnew-2  # leaked\n"), 0o600))
	require.NoError(t, os.Chtimes(revoked, fi.ModTime(), fi.ModTime()))
	now.Add(int64(2 * time.Second))
	_, err = a.Token("a", mint("new-2"))
	require.ErrorIs(t, err, identity.ErrAuthFailed, "the same-size list with the old mtime revokes new-2")

	// A version that drops ids may be a file read mid-write (truncated,
	// or cut short): its new ids count at once, the dropped ones stay
	// revoked until a later check finds the same version.
	require.NoError(t, os.WriteFile(revoked, []byte("old-1\nnew-3\n"), 0o600))
	now.Add(int64(2 * time.Second))
	_, err = a.Token("a", mint("new-2"))
	require.ErrorIs(t, err, identity.ErrAuthFailed, "new-2, dropped by a version seen once, stays revoked")
	_, err = a.Token("a", mint("new-3"))
	require.ErrorIs(t, err, identity.ErrAuthFailed, "new-3, added by it, is revoked at once")
	require.NoError(t, os.WriteFile(revoked, nil, 0o600)) // truncated, the writer not done
	now.Add(int64(2 * time.Second))
	_, err = a.Token("a", mint("old-1"))
	require.ErrorIs(t, err, identity.ErrAuthFailed, "a truncated file undoes nothing")
	require.NoError(t, os.WriteFile(revoked, []byte("old-1\nnew-3\n"), 0o600))
	now.Add(int64(2 * time.Second))
	_, err = a.Token("a", mint("new-2"))
	require.ErrorIs(t, err, identity.ErrAuthFailed, "the version is new again: not yet settled")
	now.Add(int64(2 * time.Second))
	_, err = a.Token("a", mint("new-2"))
	require.NoError(t, err, "the same version a check later: new-2's revocation is undone")
	_, err = a.Token("a", mint("new-3"))
	require.ErrorIs(t, err, identity.ErrAuthFailed)

	// A vanished file keeps the last list in force.
	require.NoError(t, os.Remove(revoked))
	now.Add(int64(2 * time.Second))
	_, err = a.Token("a", mint("new-3"))
	require.ErrorIs(t, err, identity.ErrAuthFailed)
}

// jwkOf renders a public key as a JWK.
func jwkOf(t *testing.T, kid string, k any) map[string]string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	switch k := k.(type) {
	case ed25519.PublicKey:
		return map[string]string{"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": enc(k)}
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "kid": kid, "n": enc(k.N.Bytes()), "e": enc(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		b, err := k.Bytes()
		require.NoError(t, err)
		size := (len(b) - 1) / 2
		return map[string]string{"kty": "EC", "crv": k.Curve.Params().Name, "kid": kid, "x": enc(b[1 : 1+size]), "y": enc(b[1+size:])}
	}
	t.Fatalf("no jwk for %T", k)
	return nil
}

func jwksDoc(keys ...map[string]string) []byte {
	b, _ := json.Marshal(map[string]any{"keys": keys})
	return b
}

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

func testRSAKey(t *testing.T) *rsa.PrivateKey {
	rsaOnce.Do(func() {
		var err error
		rsaKey, err = rsa.GenerateKey(rand.Reader, 2048)
		require.NoError(t, err)
	})
	return rsaKey
}

func TestJWKSFile(t *testing.T) {
	t.Parallel()
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	rk := testRSAKey(t)

	path := filepath.Join(t.TempDir(), "jwks.json")
	require.NoError(t, os.WriteFile(path, jwksDoc(
		jwkOf(t, "ed", edKey.Public()),
		jwkOf(t, "ec", &ecKey.PublicKey),
		jwkOf(t, "rsa", &rk.PublicKey),
	), 0o600))
	const iss = "https://idp.example.com/"
	a, err := identity.New(identity.Config{JWKS: []identity.JWKSConfig{{File: path, Issuer: iss, Audience: "keyhole"}}})
	require.NoError(t, err)

	sign := func(method jwt.SigningMethod, kid string, k any, mod func(jwt.MapClaims)) string {
		m := jwt.MapClaims{"iss": iss, "sub": "bot", "aud": "keyhole", "exp": time.Now().Add(time.Minute).Unix()}
		if mod != nil {
			mod(m)
		}
		tk := jwt.NewWithClaims(method, m)
		if kid != "" {
			tk.Header["kid"] = kid
		}
		s, err := tk.SignedString(k)
		require.NoError(t, err)
		return s
	}
	tests := []struct {
		name   string
		token  string
		ok     bool
		reason identity.Reason // when not ok
	}{
		{name: "EdDSA", token: sign(jwt.SigningMethodEdDSA, "ed", edKey, nil), ok: true},
		{name: "ES256", token: sign(jwt.SigningMethodES256, "ec", ecKey, nil), ok: true},
		{name: "RS256", token: sign(jwt.SigningMethodRS256, "rsa", rk, nil), ok: true},
		{name: "PS256", token: sign(jwt.SigningMethodPS256, "rsa", rk, nil), ok: true},
		{name: "extra claims", token: sign(jwt.SigningMethodEdDSA, "ed", edKey, func(m jwt.MapClaims) {
			m["email"], m["scp"], m["aud"] = "bot@example.com", []string{"db"}, []string{"other", "keyhole"}
		}), ok: true},
		{name: "ES256 with P-256 key but ES384 alg", token: func() string {
			k384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
			require.NoError(t, err)
			return sign(jwt.SigningMethodES384, "ec", k384, nil)
		}(), reason: identity.ReasonTokenSignature},
		{name: "wrong kid", token: sign(jwt.SigningMethodRS256, "ec", rk, nil), reason: identity.ReasonTokenSignature},
		{name: "unknown kid", token: sign(jwt.SigningMethodEdDSA, "nope", edKey, nil), reason: identity.ReasonTokenSignature},
		{name: "no kid, ambiguous alg ok", token: sign(jwt.SigningMethodEdDSA, "", edKey, nil), ok: true},
		{name: "wrong audience", token: sign(jwt.SigningMethodEdDSA, "ed", edKey, func(m jwt.MapClaims) { m["aud"] = "other" }), reason: identity.ReasonTokenAudience},
		{name: "no audience", token: sign(jwt.SigningMethodEdDSA, "ed", edKey, func(m jwt.MapClaims) { delete(m, "aud") }), reason: identity.ReasonTokenAudience},
		{name: "unknown issuer", token: sign(jwt.SigningMethodEdDSA, "ed", edKey, func(m jwt.MapClaims) { m["iss"] = "https://evil/" }), reason: identity.ReasonTokenSignature},
		{name: "HS256 keyed with jwk x", token: sign(jwt.SigningMethodHS256, "ed", []byte(edKey.Public().(ed25519.PublicKey)), nil), reason: identity.ReasonTokenSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ag, err := a.Token("bot", tt.token)
			if !tt.ok {
				require.ErrorIs(t, err, identity.ErrAuthFailed)
				r, _ := identity.ReasonOf(err)
				assert.Equal(t, tt.reason, r, "%v", err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, "bot", ag.Name)
		})
	}
}

func TestJWKSRejectsBadDocuments(t *testing.T) {
	t.Parallel()
	rk := testRSAKey(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	priv := jwkOf(t, "p", &rk.PublicKey)
	priv["d"] = "secret"
	docs := map[string][]byte{
		"not json":     []byte("{"),
		"no keys":      jwksDoc(),
		"private key":  jwksDoc(priv),
		"small rsa":    jwksDoc(jwkOf(t, "s", &small.PublicKey)),
		"only enc use": jwksDoc(map[string]string{"kty": "OKP", "crv": "Ed25519", "use": "enc", "x": base64.RawURLEncoding.EncodeToString(make([]byte, 32))}),
	}
	for name, doc := range docs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "jwks.json")
			require.NoError(t, os.WriteFile(path, doc, 0o600))
			_, err := identity.New(identity.Config{JWKS: []identity.JWKSConfig{{File: path, Issuer: "x"}}})
			require.ErrorIs(t, err, identity.ErrJWKS)
		})
	}
}

func TestJWKSURLRotation(t *testing.T) {
	t.Parallel()
	_, k1, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	_, k2, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	var doc atomic.Pointer[[]byte]
	d1 := jwksDoc(jwkOf(t, "k1", k1.Public()))
	doc.Store(&d1)
	var fetches atomic.Int32
	var down atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if down.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		_, _ = w.Write(*doc.Load())
	}))
	t.Cleanup(srv.Close)

	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	a, err := identity.NewAt(identity.Config{JWKS: []identity.JWKSConfig{{URL: srv.URL, Issuer: "idp"}}}, clock)
	require.NoError(t, err)
	assert.Equal(t, int32(1), fetches.Load())

	sign := func(kid string, k ed25519.PrivateKey) string {
		tk := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"iss": "idp", "sub": "bot", "exp": time.Unix(0, now.Load()).Add(time.Hour).Unix()})
		tk.Header["kid"] = kid
		s, err := tk.SignedString(k)
		require.NoError(t, err)
		return s
	}
	_, err = a.Token("bot", sign("k1", k1))
	require.NoError(t, err)
	_, err = a.Token("bot", sign("k1", k1))
	require.NoError(t, err)
	assert.Equal(t, int32(1), fetches.Load(), "cached")

	// The issuer rotates to k2. An unknown kid refetches, but not more
	// often than the minimum refetch interval.
	d2 := jwksDoc(jwkOf(t, "k2", k2.Public()))
	doc.Store(&d2)
	now.Add(int64(time.Second))
	_, err = a.Token("bot", sign("k2", k2))
	require.ErrorIs(t, err, identity.ErrAuthFailed)
	assert.Equal(t, int32(1), fetches.Load(), "refetch is rate limited")
	now.Add(int64(time.Minute))
	_, err = a.Token("bot", sign("k2", k2))
	require.NoError(t, err)
	assert.Equal(t, int32(2), fetches.Load())
	_, err = a.Token("bot", sign("k1", k1))
	require.ErrorIs(t, err, identity.ErrAuthFailed, "rotated-out key no longer accepted")

	// A failing issuer keeps the cached keys.
	down.Store(true)
	now.Add(int64(10 * time.Minute))
	_, err = a.Token("bot", sign("k2", k2))
	require.NoError(t, err)
	assert.Equal(t, int32(3), fetches.Load(), "stale keys triggered a refetch")
}

func TestPurposeClaim(t *testing.T) {
	t.Parallel()
	key, pub := keyPair(t)
	a, err := identity.New(identity.Config{Tokens: identity.TokenConfig{PublicKeyFile: pub}})
	require.NoError(t, err)
	tok, err := identity.Mint(key, identity.Claims{Agent: "sales", TTL: time.Minute, Purpose: "Q3 churn report (TICKET-42)"})
	require.NoError(t, err)
	ag, err := a.Token("sales", tok)
	require.NoError(t, err)
	assert.Equal(t, "Q3 churn report (TICKET-42)", ag.Purpose)
	assert.Equal(t, sqlpolicy.Principal{Agent: "sales", Purpose: "Q3 churn report (TICKET-42)"}, ag.Principal())

	for _, p := range []string{strings.Repeat("x", identity.MaxPurposeLen+1), "two\nlines", "bell\a", "\xff"} {
		_, err := identity.Mint(key, identity.Claims{Agent: "a", TTL: time.Minute, Purpose: p})
		assert.Error(t, err, "%q", p)
	}
	// A token signed elsewhere with a purpose keyhole would not mint is
	// refused, not shown to reviewers.
	priv := ed25519.PrivateKey(key)
	claims := map[string]any{"iss": identity.DefaultIssuer, "sub": "sales", "jti": "j", "iat": time.Now().Unix(),
		"exp": time.Now().Add(time.Minute).Unix(), "purpose": "<script>\x1b[31m"}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims(claims)).SignedString(priv)
	require.NoError(t, err)
	_, err = a.Token("sales", signed)
	require.ErrorIs(t, err, identity.ErrAuthFailed)
}

// What a token remembered as verified (tokenCache) is still refused for:
// expiry, revocation, another user's name, and altered bytes.
func TestTokenCacheRechecks(t *testing.T) {
	t.Parallel()
	key, pub := keyPair(t)
	revoked := filepath.Join(t.TempDir(), "revoked")
	require.NoError(t, os.WriteFile(revoked, nil, 0o600))
	start := time.Now()
	var now atomic.Int64
	now.Store(start.UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	a, err := identity.NewAt(identity.Config{Tokens: identity.TokenConfig{PublicKeyFile: pub, RevokedFile: revoked, Leeway: 10 * time.Second}}, clock)
	require.NoError(t, err)
	tok, err := identity.Mint(key, identity.Claims{Agent: "a", TTL: time.Minute, ID: "jti-1"})
	require.NoError(t, err)
	reason := func(err error) identity.Reason {
		r, _ := identity.ReasonOf(err)
		return r
	}

	for range 2 {
		_, err = a.Token("a", tok)
		require.NoError(t, err)
	}
	_, err = a.Token("b", tok)
	assert.Equal(t, identity.ReasonTokenSubject, reason(err), "%v", err)
	altered := tok[:len(tok)-2] + map[bool]string{true: "AA", false: "BB"}[!strings.HasSuffix(tok, "AA")]
	for range 2 {
		_, err = a.Token("a", altered)
		assert.ErrorIs(t, err, identity.ErrAuthFailed)
	}

	// Expired: past exp plus the leeway, not before.
	now.Store(start.Add(time.Minute + 5*time.Second).UnixNano())
	_, err = a.Token("a", tok)
	require.NoError(t, err, "within the leeway")
	now.Store(start.Add(time.Minute + 15*time.Second).UnixNano())
	_, err = a.Token("a", tok)
	assert.Equal(t, identity.ReasonTokenExpired, reason(err), "%v", err)

	// Revoked while remembered.
	tok2, err := identity.Mint(key, identity.Claims{Agent: "a", TTL: time.Hour, ID: "jti-2"})
	require.NoError(t, err)
	_, err = a.Token("a", tok2)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(revoked, []byte("jti-2\n"), 0o600))
	now.Add(int64(2 * time.Second)) // the list is re-read at most every second
	_, err = a.Token("a", tok2)
	assert.Equal(t, identity.ReasonTokenRevoked, reason(err), "%v", err)
}
