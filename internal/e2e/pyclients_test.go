package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// needPython fails the test (never skips) when /usr/bin/python3 cannot
// import module: scripts/setup.sh installs the Debian packages.
func needPython(t *testing.T, module string) string {
	t.Helper()
	const py = "/usr/bin/python3"
	if out, err := exec.Command(py, "-c", "import "+module).CombinedOutput(); err != nil {
		t.Fatalf("%s cannot import %s (run scripts/setup.sh as root): %v\n%s", py, module, err, out)
	}
	return py
}

// runPython runs a client script with the session's statements on stdin
// and decodes the JSON object it prints into out.
func runPython(t *testing.T, py, script, dsn string, out any) {
	t.Helper()
	in, err := json.Marshal(sessionSQL())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, filepath.Join("clients", script))
	cmd.Env = append(os.Environ(), "KEYHOLE_DSN="+dsn)
	cmd.Stdin = bytes.NewReader(in)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	require.NoError(t, cmd.Run(), "%s: %s", script, e.String())
	require.NoError(t, json.Unmarshal(o.Bytes(), out), "output: %s", o.String())
}

// asyncpg sends client_encoding='utf-8' (quoted, lower case, with a dash)
// at startup, which Postgres reads as UTF8; its cursors are protocol
// portals fetched with a row limit.
func TestAsyncpg(t *testing.T) {
	t.Parallel()
	s := startShop(t)
	py := needPython(t, "asyncpg")
	var got struct {
		Session  []result          `json:"session"`
		Cursor   [][]int           `json:"cursor"`
		Settings map[string]string `json:"settings"`
	}
	runPython(t, py, "asyncpg_runner.py", s.dsn, &got)
	checkSession(t, got.Session)
	assert.Equal(t, [][]int{{1, 2}, {3, 4}, {5}}, got.Cursor)
	assert.Equal(t, "UTF8", got.Settings["client_encoding"])
	assert.Equal(t, "keyhole:"+agentName, got.Settings["application_name"])
}

// psycopg 3 named cursors DECLARE a cursor and use it as a portal
// (Describe), then FETCH and CLOSE it.
func TestPsycopg3(t *testing.T) {
	t.Parallel()
	s := startShop(t)
	py := needPython(t, "psycopg")
	var got struct {
		Session []result `json:"session"`
		Named   struct {
			Description []string   `json:"description"`
			First       [][]string `json:"first"`
			Rest        [][]string `json:"rest"`
			Held        [][]string `json:"held"`
			Denied      string     `json:"denied"`
			Again       [][]string `json:"again"`
		} `json:"named"`
	}
	runPython(t, py, "psycopg3_runner.py", s.dsn, &got)
	checkSession(t, got.Session)
	assert.Equal(t, []string{"id"}, got.Named.Description)
	assert.Equal(t, [][]string{{"2"}, {"3"}}, got.Named.First)
	assert.Equal(t, [][]string{{"4"}, {"5"}}, got.Named.Rest)
	assert.Equal(t, [][]string{{"Ada Lovelace"}, {"Alan Turing"}, {"Grace Hopper"}, {"Edsger Dijkstra"}}, got.Named.Held)
	assert.Equal(t, "42501", got.Named.Denied)
	assert.Equal(t, [][]string{{"5"}}, got.Named.Again)

	// Each named cursor's fetches are in the audit.
	declared := 0
	for _, ev := range auditEvents(t, s.kh.AuditFile) {
		if st, _ := ev["statement"].(string); ev["decision"] == "allow" && len(st) > 7 && st[:7] == "DECLARE" {
			declared++
		}
	}
	assert.GreaterOrEqual(t, declared, 3, "the DECLAREs are audited")
}
