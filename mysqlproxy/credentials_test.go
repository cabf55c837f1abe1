package mysqlproxy_test

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/identity"
)

// TestRevokedTokenEndsOpenSessions: a token id written to
// tokens.revoked_file ends the MySQL sessions opened with that token
// within the gateway's poll (1045, 28000), not only its next login; the
// agent's session of another token goes on.
func TestRevokedTokenEndsOpenSessions(t *testing.T) {
	revoked := filepath.Join(t.TempDir(), "revoked")
	require.NoError(t, os.WriteFile(revoked, []byte("# revoked agent tokens\n"), 0o600))
	e := newEnv(t, envOpts{identity: func(c *identity.Config) { c.Tokens.RevokedFile = revoked }})
	loginWith := func(tok string) *rawClient {
		r := e.dialRaw(t)
		r.greeting()
		r.write(r.handshakeResponse(rawDefaultCaps|cConnectWithDB, 45, "analyst-bot", []byte(tok), e.db.Name, pluginClearText))
		p := r.read()
		require.Equal(t, byte(0), p[0], "login: %q", p)
		return r
	}
	leakedTok := e.signer("analyst-bot", time.Hour)
	leaked := loginWith(leakedTok)
	kept := loginWith(e.signer("analyst-bot", time.Hour))
	selectOne(t, leaked)

	require.NoError(t, os.WriteFile(revoked, []byte("# revoked agent tokens\n"+tokenID(t, leakedTok)+"\n"), 0o600))
	num, state, msg, ok := sqlErr(leaked.read()) // sent when the session is ended, unasked
	require.True(t, ok)
	assert.EqualValues(t, 1045, num)
	assert.Equal(t, "28000", state)
	assert.Contains(t, msg, "token has been revoked")
	assert.True(t, leaked.closed())
	selectOne(t, kept)
}

// TestRotatedSecretEndsOpenSessions: a new version of
// mysql.verifiers_file is read within a few seconds of the write; the
// sessions that logged in with the agent's old secret end (1045, 28000)
// and the old secret no longer logs in, the new one does.
func TestRotatedSecretEndsOpenSessions(t *testing.T) {
	file := filepath.Join(t.TempDir(), "mysql.yaml")
	write := func(secret string) {
		text := "secret-bot: \"" + identity.NewMySQLVerifier(secret).Encode() + "\"\n"
		require.NoError(t, os.WriteFile(file, []byte(text), 0o600))
	}
	write("old-secret")
	e := newEnv(t, envOpts{identity: func(c *identity.Config) { c.MySQL = identity.MySQLConfig{VerifiersFile: file} }})
	login := func(secret string) (*rawClient, []byte) {
		r := e.dialRaw(t)
		r.greeting()
		r.write(r.handshakeResponse(rawDefaultCaps, 45, "secret-bot", nativeScramble(secret, r.scramble), "", pluginNative))
		return r, r.read()
	}
	old, p := login("old-secret")
	require.Equal(t, byte(0), p[0], "login: %q", p)
	selectOne(t, old)

	write("new-secret")
	num, state, msg, ok := sqlErr(old.read()) // sent when the session is ended, unasked
	require.True(t, ok)
	assert.EqualValues(t, 1045, num)
	assert.Equal(t, "28000", state)
	assert.Contains(t, msg, "secret was changed")
	assert.True(t, old.closed())
	_, p = login("old-secret")
	num, _, _, _ = sqlErr(p)
	assert.EqualValues(t, 1045, num, "the old secret: %q", p)
	r, p := login("new-secret")
	require.Equal(t, byte(0), p[0], "the new secret: %q", p)
	selectOne(t, r)
}

// tokenID is the jti claim of an agent token.
func tokenID(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	require.Len(t, parts, 3)
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	var claims struct {
		ID string `json:"jti"`
	}
	require.NoError(t, json.Unmarshal(payload, &claims))
	require.NotEmpty(t, claims.ID)
	return claims.ID
}
