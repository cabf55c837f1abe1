package main_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/internal/fixture"
)

// TestHelp: every command answers --help on stdout with exit 0, in the
// --flag style; the README's command table lists every command.
func TestHelp(t *testing.T) {
	t.Parallel()
	r := keyhole(t, "", "--help")
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Empty(t, r.Stderr)
	cmds := regexp.MustCompile(`(?m)^  ([a-z]+) `).FindAllStringSubmatch(r.Stdout, -1)
	require.GreaterOrEqual(t, len(cmds), 10, r.Stdout)

	readme, err := os.ReadFile(fixture.Path(t, "README.md"))
	require.NoError(t, err)
	singleDash := regexp.MustCompile(`(?m)^\s+-[a-z]`)
	for _, m := range cmds {
		name := m[1]
		assert.Contains(t, string(readme), "| `keyhole "+name, "README's command table lacks %s", name)
		for _, help := range []string{"--help", "-h"} {
			r := keyhole(t, "", name, help)
			assert.Equal(t, 0, r.Code, "keyhole %s %s: %s", name, help, r.Stderr)
			assert.NotEmpty(t, r.Stdout, "keyhole %s %s: help on stdout", name, help)
			assert.Empty(t, r.Stderr, "keyhole %s %s", name, help)
			assert.False(t, singleDash.MatchString(r.Stdout), "keyhole %s %s: -flag style help:\n%s", name, help, r.Stdout)
		}
	}

	r = keyhole(t, "")
	assert.Equal(t, 2, r.Code)
	assert.Empty(t, r.Stdout)
	assert.Contains(t, r.Stderr, "usage: keyhole")
}

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"version"}, {"--version"}} {
		r := keyhole(t, "", args...)
		require.Equal(t, 0, r.Code, r.Stderr)
		assert.True(t, strings.HasPrefix(r.Stdout, "keyhole "), r.Stdout)
		assert.Contains(t, r.Stdout, "go1.")
	}
	r := keyhole(t, "", "version", "extra")
	assert.Equal(t, 2, r.Code)
}
