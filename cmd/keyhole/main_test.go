package main_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/keyholedb/keyhole/internal/fixture"
)

func TestMain(m *testing.M) { fixture.Main(m) }

// keyhole runs the CLI, built once for all tests, with args and stdin.
func keyhole(t *testing.T, stdin string, args ...string) fixture.Result {
	t.Helper()
	cmd := exec.Command(fixture.BuildKeyhole(t), args...)
	cmd.Stdin = strings.NewReader(stdin)
	return fixture.Run(t, cmd)
}
