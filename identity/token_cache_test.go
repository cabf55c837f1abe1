package identity

import (
	"crypto/ed25519"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A token that verified once is not verified again: with the key swapped
// under the verifier, the remembered token still passes while a new one,
// checked against the new key, fails. (The external tests check what a
// remembered token must still be refused for.)
func TestTokenCacheSkipsTheSignature(t *testing.T) {
	key, err := GenerateKey()
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "token.key")
	require.NoError(t, WriteKeyFile(path, key))
	a, err := New(Config{Tokens: TokenConfig{PublicKeyFile: path + ".pub"}})
	require.NoError(t, err)
	tok, err := Mint(key, Claims{Agent: "a", TTL: time.Hour, ID: "one"})
	require.NoError(t, err)
	first, err := a.Token("a", tok)
	require.NoError(t, err)

	other, err := GenerateKey()
	require.NoError(t, err)
	a.tokens.localKey = other.Public().(ed25519.PublicKey)
	again, err := a.Token("a", tok)
	require.NoError(t, err, "the remembered token")
	assert.Equal(t, first, again)
	fresh, err := Mint(key, Claims{Agent: "a", TTL: time.Hour, ID: "two"})
	require.NoError(t, err)
	_, err = a.Token("a", fresh)
	require.ErrorIs(t, err, ErrAuthFailed, "a token not seen before is verified, against the new key")
}
