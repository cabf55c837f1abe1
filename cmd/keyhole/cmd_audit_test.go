package main_test

import (
	"bufio"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

func testAuditCLI(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	rec, err := audit.NewFileRecorder(path, audit.FileOptions{MaxBytes: 700, MaxBackups: 5})
	require.NoError(t, err)
	now := time.Now().UTC().Truncate(time.Second)
	rec.Record(audit.Event{Time: now.Add(-3 * time.Hour), Kind: audit.KindStatement, Session: "s0", Agent: "old",
		Statement: "DROP TABLE public.orders", Decision: sqlpolicy.Deny, Rule: "default-deny",
		Reasons: []sqlpolicy.Reason{{Code: sqlpolicy.ReasonNoRule, Verb: sqlpolicy.VerbDDL, Table: "public.orders", Rule: "default-deny"}}})
	for i := range 5 {
		rec.Record(audit.Event{Time: now.Add(time.Duration(i-10) * time.Minute), Kind: audit.KindStatement, Session: "s1",
			Agent: "sales", Statement: "SELECT id FROM public.orders", Decision: sqlpolicy.Allow, Rule: "roles.analyst.allow[0]"})
	}
	rec.Record(audit.Event{Time: now.Add(-time.Minute), Kind: audit.KindStatement, Session: "s1", Agent: "sales",
		Statement: "SELECT ssn FROM public.customers -- \x1b[2J", Decision: sqlpolicy.Deny, Rule: "roles.analyst.deny_labels[pii.*]",
		Reasons: []sqlpolicy.Reason{{Code: sqlpolicy.ReasonLabelDenied, Table: "public.customers", Column: "ssn", Label: "pii.ssn", Rule: "roles.analyst.deny_labels[pii.*]"}}})
	require.NoError(t, rec.Close())

	r := keyhole(t, "", "audit", path, "--blocked")
	require.Equal(t, 0, r.Code, r.Stderr)
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	require.GreaterOrEqual(t, len(lines), 5)
	assert.True(t, strings.HasPrefix(lines[0], "TIME"))
	assert.Contains(t, lines[1], "sales", "newest first")
	assert.Contains(t, lines[2], "label_denied public.customers.ssn label=pii.ssn rule=roles.analyst.deny_labels[pii.*]")
	assert.Contains(t, r.Stdout, "no_rule ddl public.orders rule=default-deny")
	assert.NotContains(t, r.Stdout, "\x1b", "escape sequences are neutralised")
	assert.NotContains(t, r.Stdout, "SELECT id FROM")
	assert.Contains(t, r.Stdout, "2 event(s)")

	r = keyhole(t, "", "audit", "--since", "1h", path, "--json")
	require.Equal(t, 0, r.Code, r.Stderr)
	var evs []audit.Event
	sc := bufio.NewScanner(strings.NewReader(r.Stdout))
	for sc.Scan() {
		var ev audit.Event
		require.NoError(t, json.Unmarshal(sc.Bytes(), &ev))
		evs = append(evs, ev)
	}
	require.Len(t, evs, 6, "rotated files are read too")
	assert.Equal(t, sqlpolicy.Deny, evs[0].Decision)

	r = keyhole(t, "", "audit", path, "--agent", "old", "--limit", "1", "--json")
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Equal(t, 1, strings.Count(r.Stdout, "\n"))
	assert.Contains(t, r.Stdout, `"agent":"old"`)

	for name, args := range map[string][]string{
		"no file":      {"audit"},
		"two files":    {"audit", path, path},
		"bad since":    {"audit", path, "--since", "yesterday"},
		"missing file": {"audit", path + ".nope"},
		"bad flag":     {"audit", path, "--frob"},
	} {
		r := keyhole(t, "", args...)
		assert.Equal(t, 2, r.Code, name)
	}
}
