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

// runPythonFlows runs a flows script (no statements on stdin) and decodes
// the JSON object it prints.
func runPythonFlows(t *testing.T, py, script, dsn string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, filepath.Join("clients", script))
	cmd.Env = append(os.Environ(), "KEYHOLE_DSN="+dsn)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	require.NoError(t, cmd.Run(), "%s: %s", script, e.String())
	var got map[string]any
	require.NoError(t, json.Unmarshal(o.Bytes(), &got), "output: %s", o.String())
	return got
}

// psycopg 3's pipeline mode, executemany (pipelined too) and COPY: a
// refusal in a pipeline fails the pipeline's implicit transaction as a
// Postgres error would (nothing of it stays), or leaves psycopg's explicit
// one aborted until rollback; the connection goes on.
func TestPsycopg3Flows(t *testing.T) {
	t.Parallel()
	s := startShop(t)
	py := needPython(t, "psycopg")
	got := runPythonFlows(t, py, "psycopg3_flows.py", s.dsn)
	denied := map[string]any{"code": "42501"}
	assert.Equal(t, []any{[]any{[]any{1.0}}, []any{[]any{5.0}}}, got["pipeline"])
	assert.Equal(t, denied, got["pipeline_denied"])
	assert.Equal(t, []any{[]any{5.0}}, got["after_pipeline"], "the pipeline's insert before the refusal was rolled back")
	assert.Equal(t, []any{[]any{"5.01"}, []any{"5.02"}}, got["executemany"])
	assert.Equal(t, denied, got["executemany_denied"])
	assert.Equal(t, 2.0, got["copy"])
	assert.Equal(t, denied, got["copy_denied"])
	assert.Equal(t, []any{[]any{"1"}, []any{"2"}, []any{"3"}}, got["copy_out"])
	assert.Equal(t, []any{[]any{9.0}}, got["after"])
	assert.Equal(t, []any{"42501", "INERROR"}, got["tx_pipeline_denied"])
	assert.Equal(t, []any{[]any{9.0}}, got["after_rollback"])
	assert.Equal(t, "9", s.up.AdminQuery(t, "SELECT count(*) FROM orders"))
}

// asyncpg's executemany, copy_records_to_table (binary COPY), cursors with
// prefetch, and a prepare()d statement bound again after refusals.
func TestAsyncpgFlows(t *testing.T) {
	t.Parallel()
	s := startShop(t)
	py := needPython(t, "asyncpg")
	got := runPythonFlows(t, py, "asyncpg_flows.py", s.dsn)
	denied := map[string]any{"code": "42501"}
	assert.Nil(t, got["executemany"])
	assert.Equal(t, denied, got["executemany_denied"])
	assert.Equal(t, 7.0, got["after_executemany"])
	assert.Equal(t, "COPY 2", got["copy_records"])
	assert.Equal(t, denied, got["copy_records_denied"])
	assert.Equal(t, 9.0, got["after_copy"])
	assert.Equal(t, []any{1.0, 2.0, 3.0, 4.0, 5.0}, got["cursor"])
	assert.Equal(t, denied, got["cursor_denied"])
	assert.Equal(t, []any{1.0, "42501", 2.0, "42501", 3.0}, got["prepared"])
	assert.Equal(t, []any{"42501", false}, got["tx_denied"])
	assert.Equal(t, 9.0, got["after"])
	assert.Equal(t, "0", s.up.AdminQuery(t, "SELECT count(*) FROM secrets WHERE id = 9"))
}
