package pgproxy_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/internal/fixture"
)

// login connects as user with password and closes the connection; it
// returns the server's error, if any.
func (e *env) login(user, password string) *pgconn.PgError {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dsn := fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", url.PathEscape(user), url.QueryEscape(password), e.addr, e.db.Name)
	c, err := pgx.Connect(ctx, dsn)
	if err == nil {
		_ = c.Close(ctx)
		return nil
	}
	var pe *pgconn.PgError
	require.ErrorAs(e.t, err, &pe, "not a server error: %v", err)
	return pe
}

func verifier(t *testing.T, secret string) string {
	t.Helper()
	v, err := identity.NewVerifier(secret, 0)
	require.NoError(t, err)
	return v.Encode()
}

func requireRefusal(t *testing.T, pe *pgconn.PgError, code string, reason identity.Reason, msgAndArgs ...any) {
	t.Helper()
	require.NotNil(t, pe, msgAndArgs...)
	assert.Equal(t, code, pe.Code, msgAndArgs...)
	if reason != identity.ReasonCredentials {
		assert.Contains(t, pe.Message, reason.ClientText(), msgAndArgs...)
	}
	assert.Equal(t, reason.Hint(), pe.Hint, msgAndArgs...)
}

// TestLockoutPerAgent (issue 10 item 4): wrong SCRAM secrets for one agent
// from 127.0.0.1 lock out only that agent from that address, with
// lockouts that double; another agent's SCRAM login and token logins from
// the same address are never held up.
func TestLockoutPerAgent(t *testing.T) {
	t.Parallel()
	var now atomic.Int64
	now.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	advance := func(d time.Duration) { now.Add(int64(d)) }
	limiter := identity.NewLimiter(identity.LockoutConfig{
		MaxFailures: 3, BaseDelay: time.Second, MaxDelay: time.Minute,
		Now: func() time.Time { return time.Unix(0, now.Load()) },
	})
	secretA, secretB := identity.NewSecret(), identity.NewSecret()
	e := newEnv(t, envOpts{limiter: limiter, identity: func(c *identity.Config) {
		c.SCRAM.Verifiers = map[string]string{"scram-bot": verifier(t, secretA), "scram-other": verifier(t, secretB)}
	}})

	others := func(when string) {
		t.Helper()
		assert.Nil(t, e.login("scram-other", secretB), "agent B's SCRAM login %s", when)
		assert.Nil(t, e.login("analyst-bot", e.signer("analyst-bot", time.Hour)), "a token login %s", when)
	}

	var locks []time.Duration
	for i := 1; i <= 12; i++ {
		requireRefusal(t, e.login("scram-bot", "guess-"+fmt.Sprint(i)), "28P01", identity.ReasonCredentials, "guess %d is checked", i)
		lock := limiter.Delay(i)
		if lock == 0 {
			continue
		}
		locks = append(locks, lock)
		// Locked out: refused without looking at the secret, even the
		// right one, until the lockout ends to the nanosecond.
		requireRefusal(t, e.login("scram-bot", secretA), "28000", identity.ReasonRateLimited, "after guess %d", i)
		others(fmt.Sprintf("while agent A is locked out after %d guesses", i))
		advance(lock - time.Nanosecond)
		requireRefusal(t, e.login("scram-bot", "guess"), "28000", identity.ReasonRateLimited, "just before the end of lockout %d", i)
		advance(time.Nanosecond)
	}
	assert.Equal(t, []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second,
		time.Minute, time.Minute, time.Minute, time.Minute}, locks, "exponential backoff up to max_delay")

	// Bad tokens from the same address are not limited and do not hold up
	// a valid token.
	for range 15 {
		requireRefusal(t, e.login("analyst-bot", "not-a-token"), "28P01", identity.ReasonTokenMalformed)
	}
	others("after 15 bad tokens")

	// The right secret once the lockout is over resets agent A.
	require.Nil(t, e.login("scram-bot", secretA))
	requireRefusal(t, e.login("scram-bot", "guess"), "28P01", identity.ReasonCredentials)
	require.Nil(t, e.login("scram-bot", secretA), "a single failure after the reset is free")

	var refused, failed int
	for _, ev := range e.audit.Events() {
		if ev.Kind == audit.KindAuthFailed && ev.Agent == "scram-bot" {
			failed++
			if strings.Contains(ev.Error, string(identity.ReasonRateLimited)) {
				refused++
			}
		}
	}
	assert.Equal(t, 13, failed-refused, "every checked guess is audited")
	assert.Equal(t, 20, refused, "every refusal is audited")
}

// TestAuthFailureReasons (issue 10 item 12): a token that fails gets 28P01
// with what was wrong with it; a valid token or a right secret for an agent
// the policy does not know fails exactly like a wrong secret. No token
// bytes reach the message, the log or the audit.
func TestAuthFailureReasons(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	idpPub, idpKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	jwks, err := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": base64.RawURLEncoding.EncodeToString(idpPub),
	}}})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "jwks.json"), jwks, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "revoked"), []byte("revoked-jti\n"), 0o600))
	ghostSecret, otherSecret := identity.NewSecret(), identity.NewSecret()
	logs := &fixture.SyncBuffer{}
	e := newEnv(t, envOpts{
		logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		identity: func(c *identity.Config) {
			c.JWKS = []identity.JWKSConfig{{File: filepath.Join(dir, "jwks.json"), Issuer: "https://idp.test/", Audience: "keyhole"}}
			c.Tokens.RevokedFile = filepath.Join(dir, "revoked")
			c.SCRAM.Verifiers = map[string]string{"scram-ghost": verifier(t, ghostSecret), "scram-other": verifier(t, otherSecret)}
		},
	})

	now := time.Now()
	mint := func(key ed25519.PrivateKey, kid string, mod func(jwt.MapClaims)) string {
		c := jwt.MapClaims{"iss": "https://idp.test/", "sub": "analyst-bot", "aud": "keyhole",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": "jti-" + fmt.Sprint(now.UnixNano())}
		if mod != nil {
			mod(c)
		}
		tk := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
		tk.Header["kid"] = kid
		s, err := tk.SignedString(key)
		require.NoError(t, err)
		return s
	}
	require.Nil(t, e.login("analyst-bot", mint(idpKey, "k1", nil)), "the issuer's valid token")

	tests := []struct {
		name, user, password string
		code                 string
		reason               identity.Reason
	}{
		{"expired", "analyst-bot", mint(idpKey, "k1", func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() }), "28P01", identity.ReasonTokenExpired},
		{"not yet valid", "analyst-bot", mint(idpKey, "k1", func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() }), "28P01", identity.ReasonTokenNotYetValid},
		{"wrong audience", "analyst-bot", mint(idpKey, "k1", func(c jwt.MapClaims) { c["aud"] = "billing" }), "28P01", identity.ReasonTokenAudience},
		{"bad signature", "analyst-bot", mint(otherKey, "k1", nil), "28P01", identity.ReasonTokenSignature},
		{"unknown key id", "analyst-bot", mint(idpKey, "k9", nil), "28P01", identity.ReasonTokenSignature},
		{"unknown issuer", "analyst-bot", mint(idpKey, "k1", func(c jwt.MapClaims) { c["iss"] = "https://evil.test/" }), "28P01", identity.ReasonTokenSignature},
		{"revoked", "analyst-bot", mint(idpKey, "k1", func(c jwt.MapClaims) { c["jti"] = "revoked-jti" }), "28P01", identity.ReasonTokenRevoked},
		{"malformed", "analyst-bot", "eyJhbGciOiJFZERTQSJ9.bm90IGpzb24.c2ln", "28P01", identity.ReasonTokenMalformed},
		{"not a token", "analyst-bot", "hunter2", "28P01", identity.ReasonTokenMalformed},
		{"no exp", "analyst-bot", mint(idpKey, "k1", func(c jwt.MapClaims) { delete(c, "exp") }), "28P01", identity.ReasonTokenMalformed},
		{"another agent's token", "analyst-bot", mint(idpKey, "k1", func(c jwt.MapClaims) { c["sub"] = "scram-other" }), "28P01", identity.ReasonTokenSubject},
		// Past the token checks, an agent the policy does not know fails
		// like a wrong secret.
		{"valid token, agent not in policy", "stranger", mint(idpKey, "k1", func(c jwt.MapClaims) { c["sub"] = "stranger" }), "28P01", identity.ReasonCredentials},
		{"right SCRAM secret, agent not in policy", "scram-ghost", ghostSecret, "28P01", identity.ReasonCredentials},
		{"wrong SCRAM secret", "scram-other", "guess", "28P01", identity.ReasonCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pe := e.login(tt.user, tt.password)
			requireRefusal(t, pe, tt.code, tt.reason)
			if tt.reason == identity.ReasonCredentials {
				assert.Equal(t, fmt.Sprintf("password authentication failed for user %q", tt.user), pe.Message)
				assert.Empty(t, pe.Detail)
			}
			assert.Equal(t, "FATAL", pe.Severity)
			for _, part := range append(strings.Split(tt.password, "."), tt.password) {
				if len(part) < 6 {
					continue
				}
				for where, text := range map[string]string{"message": pe.Message + pe.Detail + pe.Hint, "log": logs.String()} {
					assert.NotContains(t, text, part, "token bytes in the %s", where)
				}
				for _, ev := range e.audit.Events() {
					b, err := json.Marshal(ev)
					require.NoError(t, err)
					assert.NotContains(t, string(b), part, "token bytes in the audit")
				}
			}
		})
	}
	var failed int
	for _, ev := range e.audit.Events() {
		if ev.Kind == audit.KindAuthFailed {
			failed++
			assert.NotEmpty(t, ev.Error, "the audit says why")
		}
	}
	assert.Equal(t, len(tests), failed)
}

// TestLockoutSharedByServers: one limiter passed to two Servers counts
// guesses made through either.
func TestLockoutSharedByServers(t *testing.T) {
	t.Parallel()
	limiter := identity.NewLimiter(identity.LockoutConfig{MaxFailures: 2, BaseDelay: time.Hour, MaxDelay: time.Hour})
	secret := identity.NewSecret()
	opts := envOpts{limiter: limiter, identity: func(c *identity.Config) {
		c.SCRAM.Verifiers = map[string]string{"scram-bot": verifier(t, secret)}
	}}
	e1, e2 := newEnv(t, opts), newEnv(t, opts)
	requireRefusal(t, e1.login("scram-bot", "guess"), "28P01", identity.ReasonCredentials)
	requireRefusal(t, e2.login("scram-bot", "guess"), "28P01", identity.ReasonCredentials)
	requireRefusal(t, e1.login("scram-bot", secret), "28000", identity.ReasonRateLimited)
	requireRefusal(t, e2.login("scram-bot", secret), "28000", identity.ReasonRateLimited)
}
