package identity_test

import (
	"crypto/sha1"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/identity"
)

// nativeResponse and sha2Response compute what a MySQL client sends
// (libmysql's scramble_native_password / caching_sha2 generate_sha2_scramble).
func nativeResponse(pw string, scramble []byte) []byte {
	s1 := sha1.Sum([]byte(pw))
	s2 := sha1.Sum(s1[:])
	m := sha1.Sum(append(append([]byte{}, scramble...), s2[:]...))
	for i := range m {
		m[i] ^= s1[i]
	}
	return m[:]
}

func sha2Response(pw string, scramble []byte) []byte {
	s1 := sha256.Sum256([]byte(pw))
	s2 := sha256.Sum256(s1[:])
	m := sha256.Sum256(append(s2[:], scramble...))
	for i := range m {
		m[i] ^= s1[i]
	}
	return m[:]
}

func TestMySQLVerifier(t *testing.T) {
	secret := identity.NewSecret()
	v := identity.NewMySQLVerifier(secret)
	scramble := []byte("abcdefghij0123456789")

	// The native part is what MySQL's PASSWORD('password') stores.
	known := identity.NewMySQLVerifier("password").Encode()
	assert.True(t, strings.HasPrefix(known, "MYSQL$*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19$"), known)

	parsed, err := identity.ParseMySQLVerifier(v.Encode())
	require.NoError(t, err)
	assert.Equal(t, v, parsed)

	tests := []struct {
		name   string
		verify func() (*identity.Agent, error)
		method identity.Method
		ok     bool
	}{
		{"native", func() (*identity.Agent, error) {
			return v.VerifyNative("a", scramble, nativeResponse(secret, scramble))
		}, identity.MethodMySQLNative, true},
		{"native wrong secret", func() (*identity.Agent, error) {
			return v.VerifyNative("a", scramble, nativeResponse("nope", scramble))
		}, "", false},
		{"native other scramble", func() (*identity.Agent, error) {
			return v.VerifyNative("a", scramble, nativeResponse(secret, []byte("xbcdefghij0123456789")))
		}, "", false},
		{"native short", func() (*identity.Agent, error) { return v.VerifyNative("a", scramble, []byte{1, 2}) }, "", false},
		{"sha2", func() (*identity.Agent, error) { return v.VerifySHA2("a", scramble, sha2Response(secret, scramble)) }, identity.MethodMySQLSHA2, true},
		{"sha2 wrong secret", func() (*identity.Agent, error) { return v.VerifySHA2("a", scramble, sha2Response("nope", scramble)) }, "", false},
		{"cleartext", func() (*identity.Agent, error) { return v.VerifyCleartext("a", secret) }, identity.MethodMySQLSHA2, true},
		{"cleartext wrong", func() (*identity.Agent, error) { return v.VerifyCleartext("a", secret+"x") }, "", false},
		{"native only: sha2 refused", func() (*identity.Agent, error) {
			return identity.MySQLVerifier{Native: v.Native}.VerifySHA2("a", scramble, sha2Response(secret, scramble))
		}, "", false},
		{"native only: cleartext", func() (*identity.Agent, error) {
			return identity.MySQLVerifier{Native: v.Native}.VerifyCleartext("a", secret)
		}, identity.MethodMySQLNative, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := tc.verify()
			if !tc.ok {
				require.ErrorIs(t, err, identity.ErrAuthFailed)
				assert.NotContains(t, err.Error(), secret)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, "a", a.Name)
			assert.Equal(t, tc.method, a.Method)
		})
	}
}

func TestParseMySQLVerifier(t *testing.T) {
	good := identity.NewMySQLVerifier("s").Encode()
	parts := strings.Split(good, "$")
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{good, true},
		{"MYSQL$" + parts[1] + "$", true},
		{"MYSQL$$" + parts[2], true},
		{"MYSQL$$", false},
		{"SCRAM-SHA-256$" + parts[1] + "$" + parts[2], false},
		{"MYSQL$" + strings.TrimPrefix(parts[1], "*") + "$" + parts[2], false},
		{"MYSQL$*abc$" + parts[2], false},
		{"MYSQL$" + parts[1] + "$zz", false},
		{"MYSQL$" + parts[1], false},
	} {
		_, err := identity.ParseMySQLVerifier(tc.in)
		if tc.ok {
			assert.NoError(t, err, tc.in)
		} else {
			assert.ErrorIs(t, err, identity.ErrBadMySQLVerifier, tc.in)
			if err != nil {
				assert.NotContains(t, err.Error(), parts[2])
			}
		}
	}
}

func TestMySQLConfig(t *testing.T) {
	v := identity.NewMySQLVerifier("s").Encode()
	file := filepath.Join(t.TempDir(), "mysql.yaml")
	require.NoError(t, os.WriteFile(file, []byte("b: \""+v+"\"\n"), 0o600))
	a, err := identity.New(identity.Config{MySQL: identity.MySQLConfig{Verifiers: map[string]string{"a": v}, VerifiersFile: file}})
	require.NoError(t, err)
	for _, agent := range []string{"a", "b"} {
		_, ok := a.MySQLVerifier(agent)
		assert.True(t, ok, agent)
	}
	_, ok := a.MySQLVerifier("c")
	assert.False(t, ok)

	_, err = identity.New(identity.Config{MySQL: identity.MySQLConfig{Verifiers: map[string]string{"b": v}, VerifiersFile: file}})
	assert.ErrorIs(t, err, identity.ErrConfig)
	_, err = identity.New(identity.Config{MySQL: identity.MySQLConfig{Verifiers: map[string]string{"a": "MYSQL$$"}}})
	assert.ErrorIs(t, err, identity.ErrConfig)
	cfg, err := identity.ParseConfig([]byte("mysql:\n  verifiers: {a: \"" + v + "\"}\n"))
	require.NoError(t, err)
	assert.Equal(t, v, cfg.MySQL.Verifiers["a"])
}
