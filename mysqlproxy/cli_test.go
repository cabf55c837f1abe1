package mysqlproxy_test

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cli runs the mariadb command-line client against keyhole.
func (e *env) cli(t *testing.T, password string, args ...string) (stdout, stderr string, code int) {
	return e.cliStdin(t, password, "", args...)
}

func (e *env) cliStdin(t *testing.T, password, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	bin, err := exec.LookPath("mariadb")
	if err != nil {
		bin, err = exec.LookPath("mysql")
	}
	require.NoError(t, err, "the mariadb client (mariadb-client) is needed; scripts/setup.sh installs it")
	host, port, _ := strings.Cut(e.addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	full := append([]string{"--no-defaults", "-h", host, "-P", port, "--protocol=TCP", "--batch", "--skip-column-names"}, args...)
	cmd := exec.CommandContext(ctx, bin, full...)
	cmd.Env = append(cmd.Environ(), "MYSQL_PWD="+password)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Stdin = strings.NewReader(stdin)
	err = cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return out.String(), errb.String(), code
}

func TestMariaDBCLI(t *testing.T) {
	e := newEnv(t, envOpts{})
	tok := e.signer("analyst-bot", time.Hour)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"token, default plugin", nil},
		{"token, mysql_clear_password", []string{"--default-auth=mysql_clear_password"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, code := e.cli(t, tok, append(tc.args, "-u", "analyst-bot", e.db.Name, "-e", "SELECT id, name FROM customers ORDER BY id")...)
			t.Logf("stderr: %s", stderr)
			require.Equal(t, 0, code, stderr)
			assert.Equal(t, "1\tann\n2\tbob\n", out)
		})
	}
	t.Run("secret, default plugin", func(t *testing.T) {
		out, stderr, code := e.cli(t, e.secret, "-u", "secret-bot", e.db.Name, "-e", "SELECT count(*) FROM orders")
		require.Equal(t, 0, code, stderr)
		assert.Equal(t, "20\n", out)
	})
	t.Run("denied statements, session goes on", func(t *testing.T) {
		before := e.count("orders")
		out, stderr, code := e.cliStdin(t, tok, "SELECT id, email FROM customers;\nDELETE FROM orders;\nSELECT count(*) FROM orders;\n",
			"-u", "analyst-bot", "--force", e.db.Name)
		assert.Equal(t, 0, code, "--force reports errors and goes on")
		assert.Contains(t, stderr, "ERROR 1143 (42000)")
		assert.Contains(t, stderr, "ERROR 1142 (42000)")
		assert.Contains(t, stderr, "pii.email")
		assert.Equal(t, "20\n", out)
		assert.Equal(t, before, e.count("orders"))
	})
	t.Run("wrong token", func(t *testing.T) {
		_, stderr, code := e.cli(t, "nope", "-u", "analyst-bot", e.db.Name, "-e", "SELECT 1")
		assert.Equal(t, 1, code)
		assert.Contains(t, stderr, "ERROR 1045 (28000)")
	})
}
