package mysqlproxy_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/internal/testmy"
)

func TestAuthMethods(t *testing.T) {
	e := newEnv(t, envOpts{})
	tests := []struct {
		name string
		// run drives the exchange after the greeting and returns the last
		// packet the server sent.
		run func(r *rawClient) []byte
		ok  bool
	}{
		{"token as mysql_clear_password", func(r *rawClient) []byte {
			r.write(r.handshakeResponse(rawDefaultCaps, 45, "analyst-bot", []byte(e.signer("analyst-bot", time.Hour)), "", pluginClearText))
			return r.read()
		}, true},
		{"token after a native answer: switched to caching_sha2 full auth", func(r *rawClient) []byte {
			r.write(r.handshakeResponse(rawDefaultCaps, 45, "analyst-bot", nativeScramble("x", r.scramble), "", pluginNative))
			sw := r.read()
			require.Equal(t, byte(0xfe), sw[0])
			require.Contains(t, string(sw), pluginSHA2)
			r.write(sha2Scramble("x", r.scramble))
			require.Equal(t, []byte{0x01, 0x04}, r.read())
			r.write(append([]byte(e.signer("analyst-bot", time.Hour)), 0))
			return r.read()
		}, true},
		{"wrong token", func(r *rawClient) []byte {
			r.write(r.handshakeResponse(rawDefaultCaps, 45, "analyst-bot", []byte("not-a-token"), "", pluginClearText))
			return r.read()
		}, false},
		{"token of another agent", func(r *rawClient) []byte {
			r.write(r.handshakeResponse(rawDefaultCaps, 45, "analyst-bot", []byte(e.signer("other", time.Hour)), "", pluginClearText))
			return r.read()
		}, false},
		{"agent not in the policy", func(r *rawClient) []byte {
			r.write(r.handshakeResponse(rawDefaultCaps, 45, "stranger", []byte(e.signer("stranger", time.Hour)), "", pluginClearText))
			return r.read()
		}, false},
		{"secret, mysql_native_password", func(r *rawClient) []byte {
			r.write(r.handshakeResponse(rawDefaultCaps, 45, "secret-bot", nativeScramble(e.secret, r.scramble), "", pluginNative))
			return r.read()
		}, true},
		{"secret, caching_sha2_password fast path", func(r *rawClient) []byte {
			r.write(r.handshakeResponse(rawDefaultCaps, 45, "secret-bot", sha2Scramble(e.secret, r.scramble), "", pluginSHA2))
			require.Equal(t, []byte{0x01, 0x03}, r.read())
			return r.read()
		}, true},
		{"secret, wrong", func(r *rawClient) []byte {
			r.write(r.handshakeResponse(rawDefaultCaps, 45, "secret-bot", sha2Scramble("nope", r.scramble), "", pluginSHA2))
			return r.read()
		}, false},
		{"secret answered in an unknown plugin: switched", func(r *rawClient) []byte {
			r.write(r.handshakeResponse(rawDefaultCaps, 45, "secret-bot", []byte("x"), "", "client_ed25519"))
			sw := r.read()
			require.Equal(t, byte(0xfe), sw[0])
			r.write(sha2Scramble(e.secret, r.scramble))
			require.Equal(t, []byte{0x01, 0x03}, r.read())
			return r.read()
		}, true},
		{"secret not accepted as a token", func(r *rawClient) []byte {
			r.write(r.handshakeResponse(rawDefaultCaps, 45, "analyst-bot", []byte(e.secret), "", pluginClearText))
			return r.read()
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.dialRaw(t)
			r.greeting()
			p := tc.run(r)
			if tc.ok {
				require.Equal(t, byte(0), p[0], "%q", p)
				r.command(append([]byte{0x03}, "SELECT 1"...))
				p = r.read()
				assert.NotEqual(t, byte(0xff), p[0], "%q", p)
				return
			}
			num, state, msg, ok := sqlErr(p)
			require.True(t, ok, "%q", p)
			assert.EqualValues(t, 1045, num)
			assert.Equal(t, "28000", state)
			assert.NotContains(t, msg, e.secret)
			assert.True(t, r.closed())
		})
	}
	var methods []string
	for _, ev := range e.audit.Events() {
		if ev.Kind == audit.KindAuthOK {
			methods = append(methods, ev.AuthMethod)
		}
	}
	assert.ElementsMatch(t, []string{"token", "token", "mysql_native_password", "caching_sha2_password", "caching_sha2_password"}, methods)
}

func TestAuthDrivers(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	// The secret over plain TCP: go-sql-driver follows the greeting's
	// caching_sha2_password and keyhole answers with the fast path.
	c := e.cfg("secret-bot")
	c.Passwd = e.secret
	var one int
	require.NoError(t, e.open(c).QueryRowContext(ctx, "SELECT 1").Scan(&one))
	c.Passwd = "wrong"
	err := e.open(c).PingContext(ctx)
	assert.EqualValues(t, 1045, errno(err))

	// A token over plain TCP from loopback: full authentication with
	// keyhole's RSA key (the driver asks for it).
	require.NoError(t, e.open(e.cfg("analyst-bot")).QueryRowContext(ctx, "SELECT 1").Scan(&one))
	// The same with mysql_clear_password, which the driver must enable.
	c = e.cfg("analyst-bot")
	c.AllowCleartextPasswords = true
	require.NoError(t, e.open(c).QueryRowContext(ctx, "SELECT 1").Scan(&one))
}

// TestAuthFailureLimiter: wrong secrets lock out only that agent from that
// address, with the limiter the front ends share; a valid token of another
// agent from the same address, and the right secret once the lockout ends,
// still get in.
func TestAuthFailureLimiter(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	lim := identity.NewLimiter(identity.LockoutConfig{MaxFailures: 2, BaseDelay: time.Minute, MaxDelay: time.Hour, Now: clock})
	e := newEnv(t, envOpts{failures: lim})
	ctx := context.Background()
	bad := e.cfg("secret-bot")
	bad.Passwd = "wrong"
	for range 2 {
		assert.EqualValues(t, 1045, errno(e.open(bad).PingContext(ctx)))
	}
	good := e.cfg("secret-bot")
	good.Passwd = e.secret
	// Locked out: even the right secret is refused, and the message says
	// for how long.
	err := e.open(good).PingContext(ctx)
	assert.EqualValues(t, 1045, errno(err))
	assert.Contains(t, err.Error(), "try again in")
	// Another agent's valid token from the same address is not held up.
	require.NoError(t, e.open(e.cfg("analyst-bot")).PingContext(ctx))
	// Nor are bad tokens counted against anyone.
	badTok := e.cfg("analyst-bot")
	badTok.Passwd = "not-a-token"
	for range 5 {
		assert.EqualValues(t, 1045, errno(e.open(badTok).PingContext(ctx)))
	}
	require.NoError(t, e.open(e.cfg("analyst-bot")).PingContext(ctx))
	// Once the lockout has passed, the right secret gets in.
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	require.NoError(t, e.open(good).PingContext(ctx))
}

func TestHandshakeRefusals(t *testing.T) {
	e := newEnv(t, envOpts{})
	t.Run("gbk client character set", func(t *testing.T) {
		r := e.dialRaw(t)
		r.greeting()
		r.write(r.handshakeResponse(rawDefaultCaps, 28, "analyst-bot", []byte(e.signer("analyst-bot", time.Hour)), "", pluginClearText))
		num, state, msg, ok := sqlErr(r.read())
		require.True(t, ok)
		assert.EqualValues(t, 1115, num)
		assert.Equal(t, "42000", state)
		assert.Contains(t, msg, "gbk")
	})
	t.Run("oversized packet before authentication", func(t *testing.T) {
		r := e.dialRaw(t)
		r.greeting()
		// Announce 16 MB and send a few bytes: refused at once, nothing
		// allocated for it.
		_, err := r.nc.Write([]byte{0xff, 0xff, 0xff, 1, 'a', 'b', 'c'})
		require.NoError(t, err)
		num, state, _, ok := sqlErr(r.read())
		require.True(t, ok)
		assert.EqualValues(t, 1043, num)
		assert.Equal(t, "08S01", state)
		assert.True(t, r.closed())
	})
	t.Run("pre-4.1 client", func(t *testing.T) {
		r := e.dialRaw(t)
		r.greeting()
		r.write(r.handshakeResponse(cLongPassword|cSecure, 45, "analyst-bot", nil, "", ""))
		num, _, _, ok := sqlErr(r.read())
		require.True(t, ok)
		assert.EqualValues(t, 1251, num)
	})
	// keyhole serves a mysql:// upstream's own database only: any other
	// name, known to the server or not, is refused before it is looked up.
	t.Run("database keyhole does not know", func(t *testing.T) {
		r := e.dialRaw(t)
		r.greeting()
		r.write(r.handshakeResponse(rawDefaultCaps|cConnectWithDB, 45, "analyst-bot", []byte(e.signer("analyst-bot", time.Hour)), "mysql", pluginClearText))
		num, state, _, ok := sqlErr(r.read())
		require.True(t, ok)
		assert.EqualValues(t, 1044, num, "not the upstream's database")
		assert.Equal(t, "42000", state)
		assert.True(t, r.closed())
	})
	t.Run("database the upstream does not serve", func(t *testing.T) {
		other := testmy.New(t, "")
		r := e.dialRaw(t)
		r.greeting()
		r.write(r.handshakeResponse(rawDefaultCaps|cConnectWithDB, 45, "analyst-bot", []byte(e.signer("analyst-bot", time.Hour)), other.Name, pluginClearText))
		num, state, _, ok := sqlErr(r.read())
		require.True(t, ok)
		assert.EqualValues(t, 1044, num)
		assert.Equal(t, "42000", state)
		assert.True(t, r.closed())
	})
	t.Run("greeting", func(t *testing.T) {
		r := e.dialRaw(t)
		r.greeting()
		assert.Contains(t, r.version, "MariaDB")
		assert.NotZero(t, r.connID)
		assert.Zero(t, r.caps&(1<<5), "compression offered")
		assert.Zero(t, r.caps&(1<<7), "LOCAL_FILES offered")
		assert.NotZero(t, r.caps&cDeprecateEOF, "MariaDB has DEPRECATE_EOF")
		assert.Len(t, r.scramble, 20)
	})
}
