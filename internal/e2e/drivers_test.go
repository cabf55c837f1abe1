package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runNode runs a Node client program against keyhole's MySQL listener as
// agent and decodes the one JSON object it prints; module is the npm
// package the program needs, installed in dir by scripts/setup.sh.
func (s *myServe) runNode(t *testing.T, dir, module, program, agent string) map[string]any {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "node_modules", module)); err != nil {
		t.Fatalf("%s is not installed in %s: run make setup (scripts/setup.sh)", module, dir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, needTool(t, "node"), filepath.Join(dir, program))
	host, port, _ := net.SplitHostPort(s.addr)
	cmd.Env = append(os.Environ(), "KH_HOST="+host, "KH_PORT="+port, "KH_USER="+agent, "KH_PASSWORD="+s.token(t, agent), "KH_DB="+s.myDB)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	require.NoError(t, cmd.Run(), "%s: %s %s", program, out.String(), errb.String())
	var got map[string]any
	require.NoError(t, json.Unmarshal(out.Bytes(), &got), out.String())
	require.Empty(t, got["fatal"])
	return got
}

// TestMySQLDrivers drives keyhole's MySQL listener with what
// TestMySQLServe leaves out: mysql2's binary protocol with many types,
// MariaDB's JSON type, multipleStatements, a pool, changeUser and a refusal
// inside a transaction; each checks the connection stays usable.
func TestMySQLDrivers(t *testing.T) {
	s := startMyServe(t)

	t.Run("mysql2", func(t *testing.T) {
		before := s.my.count(t, "SELECT count(*) FROM orders")
		got := s.runNode(t, filepath.Join(s.mysqlClients, "node"), "mysql2", "drivers.js", "my-bot")
		// A MariaDB upstream marks a JSON value's column with the extended
		// metadata format "json" when the client negotiated it; keyhole
		// relays that negotiation, so mysql2 parses JSON as it does direct.
		for _, step := range []string{"json_query", "json_execute"} {
			assert.Equal(t, map[string]any{"type": "object", "value": map[string]any{"a": 1.0}}, got[step], step)
		}
		assert.Equal(t, []any{"-7", "18446744073709551615", "1.5", "héllo", nil, "00ff", "2024-01-02 03:04:05.678", 3.0}, got["binary_types"])
		assert.Equal(t, []any{[]any{2.0, "item2", "3.00"}, []any{3.0, "item3", "4.50"}, []any{4.0, "item4", "6.00"}}, got["binary_columns"])
		assert.Equal(t, []any{1.0, float64(before)}, got["multi"])
		assert.EqualValues(t, 1142, refusedErrno(t, got, "multi_denied"), "a multi-statement text with a refused statement runs none of it")
		assert.EqualValues(t, before, got["after_multi_denied"])
		assert.Equal(t, []any{1142.0, 1.0}, got["denied_in_tx"], "the refusal leaves the transaction open")
		cu, _ := got["change_user"].(map[string]any)
		assert.EqualValues(t, 1047, cu["errno"], "COM_CHANGE_USER is refused: %v", got["change_user"])
		assert.Equal(t, "item5", got["after_change_user"], "the connection is usable after the refused changeUser")
		assert.Equal(t, []any{1.0, 2.0, 1143.0, 4.0, 5.0, 6.0}, got["pool"])
		assert.Equal(t, []any{7.0, 8.0, 9.0, 10.0}, got["pool_after"])
		assert.Equal(t, before, s.my.count(t, "SELECT count(*) FROM orders"), "the rolled back insert and refused deletes left the rows")
	})
}
