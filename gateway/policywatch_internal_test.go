package gateway

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/config"
)

// TestPolicyWatchWaitsForTheFileToSettle: the file watch loads a new
// version of the policy file only once a poll sees the version the poll
// before it saw, so a file caught mid-write (cut short, yet valid YAML,
// and allowing what neither version allows) is not loaded; the whole file
// is, one poll later.
func TestPolicyWatchWaitsForTheFileToSettle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	write := func(text string) { require.NoError(t, os.WriteFile(path, []byte(text), 0o600)) }
	write("agents: {a: {role: r}}\n")
	g := &Gateway{cfg: &config.Config{}}
	g.cfg.Policy.File = path
	g.policyWatch = newFileWatch([]string{path}) // as loadGeneration takes it at start

	assert.False(t, g.policyChanged(), "the version loaded")
	assert.False(t, g.policyChanged(), "the version loaded, seen again")

	write("roles:\n  r:\n    deny_labels:\n") // a writer's first piece
	assert.False(t, g.policyChanged(), "a version seen for the first time may be mid-write")
	write("roles:\n  r:\n    deny_labels:\n      - pii\n") // the rest
	assert.False(t, g.policyChanged(), "changed again since the last poll")
	assert.True(t, g.policyChanged(), "the same version as the last poll saw: settled")

	assert.False(t, g.policyChanged(), "loaded")

	require.NoError(t, os.Remove(path))
	assert.False(t, g.policyChanged(), "a file gone is a change only once it stays gone")
	assert.True(t, g.policyChanged())
}
