package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// TestIdentityCLI runs the token, agent and audit commands.
func TestIdentityCLI(t *testing.T) {
	t.Parallel()
	t.Run("token", func(t *testing.T) { t.Parallel(); testTokenCLI(t) })
	t.Run("agent", func(t *testing.T) { t.Parallel(); testAgentCLI(t) })
	t.Run("audit", func(t *testing.T) { t.Parallel(); testAuditCLI(t) })
}

func testTokenCLI(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "token.key")

	r := keyhole(t, "", "token", "keygen", "--out", key)
	require.Equal(t, 0, r.Code, r.Stderr)
	fi, err := os.Stat(key)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	_, err = identity.ReadPublicKeyFile(key + ".pub")
	require.NoError(t, err)

	r = keyhole(t, "", "token", "keygen", "--out", key)
	assert.Equal(t, 2, r.Code, "refuses to overwrite a key")

	r = keyhole(t, "", "token", "mint", "--token-key", key, "--agent", "sales", "--ttl", "15m",
		"--scope", "select:public.orders,public.customers", "--scope", "insert:public.orders")
	require.Equal(t, 0, r.Code, r.Stderr)
	tok := strings.TrimSpace(r.Stdout)
	assert.Equal(t, 2, strings.Count(tok, "."), "stdout is the JWT alone")
	assert.NotContains(t, r.Stderr, tok)

	a, err := identity.New(identity.Config{Tokens: identity.TokenConfig{PublicKeyFile: key + ".pub"}})
	require.NoError(t, err)
	ag, err := a.Token("sales", tok)
	require.NoError(t, err)
	assert.Equal(t, []sqlpolicy.Grant{
		{Verb: sqlpolicy.VerbSelect, Tables: []string{"public.orders", "public.customers"}},
		{Verb: sqlpolicy.VerbInsert, Tables: []string{"public.orders"}},
	}, ag.Scope)
	assert.WithinDuration(t, time.Now().Add(15*time.Minute), ag.Expires, 5*time.Second)

	r = keyhole(t, tok+"\n", "token", "verify", "--token-key", key+".pub", "--agent", "sales")
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Contains(t, r.Stdout, "scope:   select public.orders, public.customers")
	r = keyhole(t, "", "token", "mint", "--token-key", key, "--agent", "sales", "--purpose", "Q3 churn report")
	require.Equal(t, 0, r.Code, r.Stderr)
	ag, err = a.Token("sales", strings.TrimSpace(r.Stdout))
	require.NoError(t, err)
	assert.Equal(t, "Q3 churn report", ag.Purpose)
	r = keyhole(t, r.Stdout, "token", "verify", "--token-key", key+".pub", "--agent", "sales")
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Contains(t, r.Stdout, "purpose: Q3 churn report")
	// The flags' old names still work.
	r = keyhole(t, "", "token", "mint", "--key", key, "--agent", "sales")
	require.Equal(t, 0, r.Code, r.Stderr)
	r = keyhole(t, r.Stdout, "token", "verify", "--pub", key+".pub", "--agent", "sales")
	require.Equal(t, 0, r.Code, r.Stderr)

	r = keyhole(t, tok+"\n", "token", "verify", "--token-key", key+".pub", "--agent", "other")
	assert.Equal(t, 1, r.Code)
	assert.NotContains(t, r.Stderr, tok)

	for name, args := range map[string][]string{
		"bad scope verb":        {"token", "mint", "--token-key", key, "--agent", "a", "--scope", "drop:public.x"},
		"scope no tables":       {"token", "mint", "--token-key", key, "--agent", "a", "--scope", "select:"},
		"no agent":              {"token", "mint", "--token-key", key},
		"purpose with newline":  {"token", "mint", "--token-key", key, "--agent", "a", "--purpose", "a\nb"},
		"negative ttl":          {"token", "mint", "--token-key", key, "--agent", "a", "--ttl", "-1m"},
		"public key":            {"token", "mint", "--token-key", key + ".pub", "--agent", "a"},
		"unknown sub":           {"token", "frob"},
		"stray argument":        {"token", "keygen", "--out", filepath.Join(dir, "x"), "extra"},
		"keygen no --out":       {"token", "keygen"},
		"no subcommand":         {"token"},
		"verify no --token-key": {"token", "verify", "--agent", "a"},
		"verify no --agent":     {"token", "verify", "--token-key", key + ".pub"},
	} {
		r := keyhole(t, "", args...)
		assert.Equal(t, 2, r.Code, name)
	}
}

func testAgentCLI(t *testing.T) {
	r := keyhole(t, "", "agent", "secret", "--agent", "sales")
	require.Equal(t, 0, r.Code, r.Stderr)
	var secret, verifier string
	for _, line := range strings.Split(r.Stdout, "\n") {
		if s, ok := strings.CutPrefix(line, "secret: "); ok {
			secret = s
		}
		if s, ok := strings.CutPrefix(line, `"sales": `); ok {
			verifier = strings.Trim(s, `"`)
		}
	}
	require.NotEmpty(t, secret)
	require.NotEmpty(t, verifier)

	// The printed line is valid YAML for the verifiers file, and the secret
	// passes SCRAM against it.
	vfile := filepath.Join(t.TempDir(), "scram.yaml")
	var yamlLine string
	for _, line := range strings.Split(r.Stdout, "\n") {
		if strings.HasPrefix(line, `"sales": `) {
			yamlLine = line
		}
	}
	require.NoError(t, os.WriteFile(vfile, []byte(yamlLine+"\n"), 0o600))
	a, err := identity.New(identity.Config{SCRAM: identity.SCRAMConfig{VerifiersFile: vfile}})
	require.NoError(t, err)
	v, err := identity.ParseVerifier(verifier)
	require.NoError(t, err)
	want, err := identity.DeriveVerifier(secret, v.Salt, v.Iterations)
	require.NoError(t, err)
	assert.Equal(t, want, v)
	_, ok := a.SCRAM("sales")
	assert.True(t, ok)

	r2 := keyhole(t, "", "agent", "secret", "--agent", "sales")
	assert.NotEqual(t, r.Stdout, r2.Stdout, "a new secret every time")

	for name, args := range map[string][]string{
		"no agent":       {"agent", "secret"},
		"few iterations": {"agent", "secret", "--agent", "a", "--iterations", "100"},
		"unknown sub":    {"agent", "rotate"},
	} {
		r := keyhole(t, "", args...)
		assert.Equal(t, 2, r.Code, name)
	}
}
