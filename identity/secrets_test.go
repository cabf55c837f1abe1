package identity_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/xdg-go/scram"

	"github.com/keyholedb/keyhole/identity"
)

// TestReloadSecrets: the verifier files are read again; new logins check
// the new secrets at once, the agents whose secret changed or went are
// named per protocol, and a file that does not parse changes nothing.
func TestReloadSecrets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	scramFile, mysqlFile := filepath.Join(dir, "scram.yaml"), filepath.Join(dir, "mysql.yaml")
	scram := func(secret string) string {
		v, err := identity.NewVerifier(secret, 4096)
		require.NoError(t, err)
		return v.Encode()
	}
	mysql := func(secret string) string { return identity.NewMySQLVerifier(secret).Encode() }
	write := func(path, text string) { require.NoError(t, os.WriteFile(path, []byte(text), 0o600)) }
	bSCRAM, aMySQL := scram("b-1"), mysql("a-1") // a new verifier of a secret has a new salt
	write(scramFile, "a: "+scram("a-1")+"\nb: "+bSCRAM+"\nc: "+scram("c-1")+"\n")
	write(mysqlFile, "a: \""+aMySQL+"\"\nb: \""+mysql("b-1")+"\"\n")
	inline := scram("d-1")
	cfg := identity.Config{
		SCRAM: identity.SCRAMConfig{VerifiersFile: scramFile, Verifiers: map[string]string{"d": inline}},
		MySQL: identity.MySQLConfig{VerifiersFile: mysqlFile},
	}
	a, err := identity.New(cfg)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{scramFile, mysqlFile}, cfg.SecretFiles())

	ch, err := a.ReloadSecrets()
	require.NoError(t, err)
	assert.True(t, ch.Empty(), "nothing changed: %+v", ch)

	// a's SCRAM secret rotated, c removed; b's MySQL secret rotated.
	write(scramFile, "a: "+scram("a-2")+"\nb: "+bSCRAM+"\n")
	write(mysqlFile, "a: \""+aMySQL+"\"\nb: \""+mysql("b-2")+"\"\n")
	ch, err = a.ReloadSecrets()
	require.NoError(t, err)
	assert.Equal(t, map[string]bool{"a": true, "c": true}, ch.SCRAM)
	assert.Equal(t, map[string]bool{"b": true}, ch.MySQL)
	assert.True(t, scramLogin(t, a, "a", "a-2"), "the new secret logs in")
	assert.False(t, scramLogin(t, a, "a", "a-1"), "the old one no longer does")
	assert.True(t, scramLogin(t, a, "d", "d-1"), "inline verifiers stay")
	_, ok := a.SCRAM("c")
	assert.True(t, ok, "without tokens a removed agent still gets a (made-up) conversation")
	assert.False(t, scramLogin(t, a, "c", "c-1"))
	v, ok := a.MySQLVerifier("b")
	require.True(t, ok)
	_, err = v.VerifyCleartext("b", "b-2")
	assert.NoError(t, err)
	_, err = v.VerifyCleartext("b", "b-1")
	assert.Error(t, err)

	write(scramFile, "a: "+scram("a-3")+"\nd: "+scram("d-2")+"\n") // d is inline too: refused
	_, err = a.ReloadSecrets()
	assert.ErrorIs(t, err, identity.ErrConfig)
	assert.True(t, scramLogin(t, a, "a", "a-2"), "a refused reload leaves the secrets as they were")
	write(scramFile, "a: [not a verifier\n")
	_, err = a.ReloadSecrets()
	assert.ErrorIs(t, err, identity.ErrConfig)
	assert.True(t, scramLogin(t, a, "a", "a-2"))
}

// scramLogin runs a SCRAM exchange for agent with secret against a.
func scramLogin(t *testing.T, a *identity.Auth, agent, secret string) bool {
	t.Helper()
	conv, ok := a.SCRAM(agent)
	require.True(t, ok)
	client, err := scram.SHA256.NewClient("", secret, "")
	require.NoError(t, err)
	return runXDG(t, conv, client.NewConversation()) == nil
}
