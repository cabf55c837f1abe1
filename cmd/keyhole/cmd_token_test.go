package main_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

type khResult struct {
	code           int
	stdout, stderr string
}

type khBin string

func (k khBin) run(t *testing.T, stdin string, args ...string) khResult {
	t.Helper()
	cmd := exec.Command(string(k), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return khResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// TestIdentityCLI builds the binary once and runs the token, agent and
// audit commands.
func TestIdentityCLI(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "keyhole")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	k := khBin(bin)
	t.Run("token", func(t *testing.T) { t.Parallel(); testTokenCLI(t, k) })
	t.Run("agent", func(t *testing.T) { t.Parallel(); testAgentCLI(t, k) })
	t.Run("audit", func(t *testing.T) { t.Parallel(); testAuditCLI(t, k) })
}

func testTokenCLI(t *testing.T, k khBin) {
	dir := t.TempDir()
	key := filepath.Join(dir, "token.key")

	r := k.run(t, "", "token", "keygen", "--out", key)
	require.Equal(t, 0, r.code, r.stderr)
	fi, err := os.Stat(key)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	_, err = identity.ReadPublicKeyFile(key + ".pub")
	require.NoError(t, err)

	r = k.run(t, "", "token", "keygen", "--out", key)
	assert.Equal(t, 2, r.code, "refuses to overwrite a key")

	r = k.run(t, "", "token", "mint", "--key", key, "--agent", "sales", "--ttl", "15m",
		"--scope", "select:public.orders,public.customers", "--scope", "insert:public.orders")
	require.Equal(t, 0, r.code, r.stderr)
	tok := strings.TrimSpace(r.stdout)
	assert.Equal(t, 2, strings.Count(tok, "."), "stdout is the JWT alone")
	assert.NotContains(t, r.stderr, tok)

	a, err := identity.New(identity.Config{Tokens: identity.TokenConfig{PublicKeyFile: key + ".pub"}})
	require.NoError(t, err)
	ag, err := a.Token("sales", tok)
	require.NoError(t, err)
	assert.Equal(t, []sqlpolicy.Grant{
		{Verb: sqlpolicy.VerbSelect, Tables: []string{"public.orders", "public.customers"}},
		{Verb: sqlpolicy.VerbInsert, Tables: []string{"public.orders"}},
	}, ag.Scope)
	assert.WithinDuration(t, time.Now().Add(15*time.Minute), ag.Expires, 5*time.Second)

	r = k.run(t, tok+"\n", "token", "verify", "--pub", key+".pub", "--agent", "sales")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "scope:   select public.orders, public.customers")
	r = k.run(t, tok+"\n", "token", "verify", "--pub", key+".pub", "--agent", "other")
	assert.Equal(t, 1, r.code)
	assert.NotContains(t, r.stderr, tok)

	for name, args := range map[string][]string{
		"bad scope verb":    {"token", "mint", "--key", key, "--agent", "a", "--scope", "drop:public.x"},
		"scope no tables":   {"token", "mint", "--key", key, "--agent", "a", "--scope", "select:"},
		"no agent":          {"token", "mint", "--key", key},
		"negative ttl":      {"token", "mint", "--key", key, "--agent", "a", "--ttl", "-1m"},
		"public key":        {"token", "mint", "--key", key + ".pub", "--agent", "a"},
		"unknown sub":       {"token", "frob"},
		"stray argument":    {"token", "keygen", "--out", filepath.Join(dir, "x"), "extra"},
		"keygen no --out":   {"token", "keygen"},
		"no subcommand":     {"token"},
		"verify no --pub":   {"token", "verify", "--agent", "a"},
		"verify no --agent": {"token", "verify", "--pub", key + ".pub"},
	} {
		r := k.run(t, "", args...)
		assert.Equal(t, 2, r.code, name)
	}
}

func testAgentCLI(t *testing.T, k khBin) {
	r := k.run(t, "", "agent", "secret", "--agent", "sales")
	require.Equal(t, 0, r.code, r.stderr)
	var secret, verifier string
	for _, line := range strings.Split(r.stdout, "\n") {
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
	for _, line := range strings.Split(r.stdout, "\n") {
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

	r2 := k.run(t, "", "agent", "secret", "--agent", "sales")
	assert.NotEqual(t, r.stdout, r2.stdout, "a new secret every time")

	for name, args := range map[string][]string{
		"no agent":       {"agent", "secret"},
		"few iterations": {"agent", "secret", "--agent", "a", "--iterations", "100"},
		"unknown sub":    {"agent", "rotate"},
	} {
		r := k.run(t, "", args...)
		assert.Equal(t, 2, r.code, name)
	}
}
