package pgproxy_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPsql(t *testing.T) {
	t.Parallel()
	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Skip("psql not installed")
	}
	e := newEnv(t, envOpts{})
	host, port, _ := strings.Cut(e.addr, ":")
	run := func(sql string) (string, error) {
		cmd := exec.Command(psql, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", port, "-U", "analyst-bot", "-d", e.db.Name, "-c", sql)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+e.signer("analyst-bot", time.Hour), "PGSSLMODE=prefer", "PGCONNECT_TIMEOUT=10")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("SELECT count(*) FROM orders")
	require.NoError(t, err, out)
	assert.Equal(t, "20", strings.TrimSpace(out))

	out, err = run("SELECT * FROM secrets")
	require.Error(t, err)
	assert.Contains(t, out, "ERROR:  keyhole")

	out, err = run("SELECT 1; SELECT value FROM secrets")
	require.Error(t, err)
	assert.NotContains(t, out, "hunter2")
}
