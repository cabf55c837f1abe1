package main_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/identity"
)

func TestAgentSecretMySQL(t *testing.T) {
	r := keyhole(t, "", "agent", "secret", "--agent", "bot", "--mysql")
	require.Equal(t, 0, r.Code, r.Stderr)
	var secret string
	var verifiers []string
	for _, line := range strings.Split(r.Stdout, "\n") {
		if s, ok := strings.CutPrefix(line, "secret: "); ok {
			secret = s
		}
		if v, ok := strings.CutPrefix(line, `"bot": `); ok {
			u, err := strconv.Unquote(v)
			require.NoError(t, err)
			verifiers = append(verifiers, u)
		}
	}
	require.NotEmpty(t, secret)
	require.Len(t, verifiers, 2, r.Stdout)
	_, err := identity.ParseVerifier(verifiers[0])
	require.NoError(t, err)
	v, err := identity.ParseMySQLVerifier(verifiers[1])
	require.NoError(t, err)
	a, err := v.VerifyCleartext("bot", secret)
	require.NoError(t, err)
	assert.Equal(t, "bot", a.Name)

	r = keyhole(t, "", "agent", "secret", "--agent", "bot")
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.NotContains(t, r.Stdout, "MYSQL$")
}
