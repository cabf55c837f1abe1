package corpus_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/internal/corpus"
	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/internal/testpg"
)

// checkLine is one output line of `keyhole check` in JSON-lines mode.
type checkLine struct {
	ID       string            `json:"id"`
	Decision string            `json:"decision"`
	Rule     string            `json:"rule"`
	Reasons  []json.RawMessage `json:"reasons"`
	Error    string            `json:"error"`
}

func TestMain(m *testing.M) { fixture.Main(m) }

// TestCorpusCLI is the acceptance check: the built `keyhole check` binary,
// reading the catalog from a real Postgres, decides the whole corpus as
// expected. Cases with several texts need one session across texts, which
// JSON-lines mode (a fresh session per line) does not give; TestCorpus
// covers them.
func TestCorpusCLI(t *testing.T) {
	t.Parallel()
	db := testpg.New(t, fixture.ShopSQL(t)+corpus.EffectsSQL(t))
	bin := fixture.BuildKeyhole(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	for _, su := range corpus.Suites {
		t.Run(su.Name, func(t *testing.T) {
			runCLI(t, ctx, bin, db.DSN, su)
		})
	}
}

func runCLI(t *testing.T, ctx context.Context, bin, dsn string, su corpus.Suite) {
	cases, err := corpus.LoadCases(fixture.Path(t, su.CasesDir))
	require.NoError(t, err)
	var in bytes.Buffer
	enc := json.NewEncoder(&in)
	byID := map[string]*corpus.Case{}
	var skipped int
	for _, c := range cases {
		if len(c.SQL) != 1 {
			skipped++
			continue
		}
		byID[c.ID] = c
		require.NoError(t, enc.Encode(map[string]string{"id": c.ID, "sql": c.SQL[0]}))
	}
	t.Logf("%d single-text cases sent, %d multi-text cases left to TestCorpus", len(byID), skipped)

	cmd := exec.CommandContext(ctx, bin, "check",
		"--policy", fixture.Path(t, su.Policy), "--dsn", dsn, "--agent", su.Agent, "--json")
	cmd.Stdin = &in
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	require.NoError(t, err, "keyhole check failed; stderr:\n%s", stderr.String())

	got := map[string]checkLine{}
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var l checkLine
		require.NoError(t, json.Unmarshal([]byte(line), &l), "output line %q", line)
		_, dup := got[l.ID]
		require.False(t, dup, "two output lines for case %s", l.ID)
		got[l.ID] = l
	}
	require.NoError(t, sc.Err())

	var failed []string
	for id, c := range byID {
		l, ok := got[id]
		if !assert.True(t, ok, "case %s: no output line", c) {
			continue
		}
		if !assert.Empty(t, l.Error, "case %s: input error", c) {
			continue
		}
		if !assert.Equal(t, c.Expect, l.Decision, "case %s\n  sql: %s\n  rule: %s\n  reasons: %s",
			c, c.SQLText(), l.Rule, rawJoin(l.Reasons)) {
			failed = append(failed, id)
		}
	}
	assert.Len(t, got, len(byID), "one output line per input line")
	if len(failed) > 0 {
		t.Logf("suite %s: %d case(s) decided wrongly by keyhole check: %s", su.Name, len(failed), strings.Join(failed, ", "))
	}
}

func rawJoin(rs []json.RawMessage) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = string(r)
	}
	return "[" + strings.Join(parts, ",") + "]"
}
