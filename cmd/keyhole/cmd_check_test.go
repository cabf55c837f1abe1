package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/internal/testpg"
)

const checkSchema = `
CREATE TABLE customers (id bigint PRIMARY KEY, name text, email text, ssn text, created_at timestamptz, notes text);
COMMENT ON COLUMN customers.notes IS 'free text. keyhole: pii.free_text';
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint REFERENCES customers, total numeric, status text, created_at timestamptz);
CREATE TABLE secrets (id int, value text);
`

func runKeyholeCheck(t *testing.T, stdin string, args ...string) fixture.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, fixture.BuildKeyhole(t), append([]string{"check"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	return fixture.Run(t, cmd)
}

type checkLine struct {
	ID       json.RawMessage `json:"id"`
	Decision string          `json:"decision"`
	Rule     string          `json:"rule"`
	Reasons  []struct {
		Code   string `json:"code"`
		Table  string `json:"table"`
		Column string `json:"column"`
		Label  string `json:"label"`
	} `json:"reasons"`
	Message string `json:"message"`
	Hint    string `json:"hint"`
	Error   string `json:"error"`
}

func TestCheckCLI(t *testing.T) {
	db := testpg.New(t, checkSchema)
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	require.NoError(t, os.WriteFile(policy, []byte(fixture.Policy), 0o600))
	cat, err := catalog.LoadPostgresDSN(context.Background(), db.DSN)
	require.NoError(t, err)
	catFile := filepath.Join(dir, "catalog.json")
	require.NoError(t, cat.WriteFile(catFile))

	base := []string{"--policy", policy, "--agent", "sales-summarizer"}
	sources := map[string][]string{
		"dsn":     append(append([]string{}, base...), "--dsn", db.DSN),
		"catalog": append(append([]string{}, base...), "--catalog", catFile),
	}

	t.Run("single statement", func(t *testing.T) {
		for src, args := range sources {
			t.Run(src, func(t *testing.T) {
				r := runKeyholeCheck(t, "", append(args, "SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id")...)
				assert.Equal(t, 0, r.Code, "stderr: %s", r.Stderr)
				assert.True(t, strings.HasPrefix(r.Stdout, "allow"), r.Stdout)

				r = runKeyholeCheck(t, "", append(args, "SELECT email FROM customers")...)
				assert.Equal(t, 1, r.Code, "stderr: %s", r.Stderr)
				assert.True(t, strings.HasPrefix(r.Stdout, "deny"), r.Stdout)
				assert.Contains(t, r.Stdout, "roles.analyst.deny_labels[pii.*]")

				r = runKeyholeCheck(t, "", append(args, "--json", "SELECT * FROM customers")...)
				assert.Equal(t, 1, r.Code, "stderr: %s", r.Stderr)
				var d checkLine
				require.NoError(t, json.Unmarshal([]byte(r.Stdout), &d), r.Stdout)
				assert.Equal(t, "deny", d.Decision)
				require.NotEmpty(t, d.Reasons)
				labels := map[string]string{}
				for _, reason := range d.Reasons {
					assert.Equal(t, "label_denied", reason.Code)
					labels[reason.Column] = reason.Label
				}
				// The comment label comes from the database.
				assert.Equal(t, map[string]string{"email": "pii.email", "ssn": "pii.ssn", "notes": "pii.free_text"}, labels)
				assert.Contains(t, d.Hint, "id, name, created_at")
			})
		}
	})

	t.Run("batch", func(t *testing.T) {
		in := strings.Join([]string{
			`{"id":"a","sql":"SELECT id, total FROM orders WHERE total > 10 ORDER BY id LIMIT 5"}`,
			`{"id":"b","sql":"SELECT ssn FROM customers"}`,
			`{"id":3,"sql":"SELECT * FROM secrets"}`,
			`not json`,
			`{"id":"d","sql":"INSERT INTO orders (id, customer_id, total) VALUES (1, 1, 9.5)"}`,
			`{"id":"e"}`,
			`{"id":"f","sql":"SELEC 1"}`,
			``,
			`{"id":"g","sql":"SET search_path = evil"}`,
		}, "\n")
		r := runKeyholeCheck(t, in, sources["dsn"]...)
		assert.Equal(t, 2, r.Code, "malformed lines make the exit status 2; stderr: %s", r.Stderr)
		var lines []checkLine
		sc := bufio.NewScanner(strings.NewReader(r.Stdout))
		for sc.Scan() {
			var l checkLine
			require.NoError(t, json.Unmarshal(sc.Bytes(), &l), sc.Text())
			lines = append(lines, l)
		}
		require.Len(t, lines, 8)
		want := []struct{ id, decision, code string }{
			{`"a"`, "allow", "allowed_by_rule"},
			{`"b"`, "deny", "label_denied"},
			{`3`, "deny", "label_denied"},
			{`null`, "", ""},
			{`"d"`, "allow", "allowed_by_rule"},
			{`"e"`, "", ""},
			{`"f"`, "deny", "problem"},
			{`"g"`, "deny", ""},
		}
		for i, w := range want {
			assert.JSONEq(t, w.id, string(lines[i].ID), "line %d", i)
			assert.Equal(t, w.decision, lines[i].Decision, "line %d", i)
			if w.decision == "" {
				assert.NotEmpty(t, lines[i].Error, "line %d", i)
				continue
			}
			assert.Empty(t, lines[i].Error, "line %d", i)
			require.NotEmpty(t, lines[i].Reasons, "line %d", i)
			if w.code != "" {
				assert.Equal(t, w.code, lines[i].Reasons[0].Code, "line %d", i)
			}
			if w.decision == "deny" {
				assert.True(t, strings.HasPrefix(lines[i].Message, "keyhole: permission denied: "), lines[i].Message)
				assert.NotEmpty(t, lines[i].Hint)
			}
		}

		r = runKeyholeCheck(t, `{"id":"a","sql":"SELECT id FROM orders"}`+"\n", sources["catalog"]...)
		assert.Equal(t, 0, r.Code, "stderr: %s", r.Stderr)
	})

	t.Run("errors", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.yaml")
		require.NoError(t, os.WriteFile(bad, []byte("roles:\n  analyst:\n    max_rows: -1\n"), 0o600))
		cases := []struct {
			name string
			args []string
			want string
		}{
			{"no policy", []string{"--agent", "x", "--catalog", catFile, "SELECT 1"}, "--policy"},
			{"no catalog", []string{"--policy", policy, "--agent", "x", "SELECT 1"}, "--dsn"},
			{"both catalogs", []string{"--policy", policy, "--agent", "x", "--catalog", catFile, "--dsn", db.DSN, "SELECT 1"}, "--dsn"},
			{"no agent", []string{"--policy", policy, "--catalog", catFile, "SELECT 1"}, "--agent"},
			{"bad policy", []string{"--policy", bad, "--agent", "x", "--catalog", catFile, "SELECT 1"}, bad + ":3:"},
			{"missing catalog file", []string{"--policy", policy, "--agent", "x", "--catalog", filepath.Join(dir, "nope.json"), "SELECT 1"}, "nope.json"},
			{"unknown flag", []string{"--frobnicate"}, "frobnicate"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := runKeyholeCheck(t, "", tc.args...)
				assert.Equal(t, 2, r.Code)
				assert.Contains(t, r.Stderr, tc.want)
			})
		}
	})

	t.Run("unknown agent is denied", func(t *testing.T) {
		r := runKeyholeCheck(t, "", "--policy", policy, "--catalog", catFile, "--agent", "mallory", "SELECT 1")
		assert.Equal(t, 1, r.Code)
		assert.Contains(t, r.Stdout, "deny")
	})
}
