package audit_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

func TestReadFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	base := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	r, err := audit.NewFileRecorder(path, audit.FileOptions{MaxBytes: 600, MaxBackups: 20})
	require.NoError(t, err)
	for i := range 20 {
		ev := audit.Event{Time: base.Add(time.Duration(i) * time.Minute), Kind: audit.KindStatement, Session: "s",
			Agent: []string{"a", "b"}[i%2], Statement: "SELECT x", Decision: sqlpolicy.Allow}
		if i%3 == 0 {
			ev.Decision = sqlpolicy.Deny
			ev.Rule = "default-deny"
		}
		r.Record(ev)
	}
	r.Record(audit.Event{Time: base.Add(30 * time.Minute), Kind: audit.KindAuthFailed, Session: "t", Agent: "a"})
	require.NoError(t, r.Close())
	_, err = os.Stat(path + ".2")
	require.NoError(t, err, "the test needs rotated files")

	// A torn line is skipped, not fatal.
	f, err := os.OpenFile(path+".1", os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"time":"2026-11-25T1` + "\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())

	all, err := audit.ReadFile(path, audit.Filter{})
	require.NoError(t, err)
	require.Len(t, all, 21)
	for i := 1; i < len(all); i++ {
		assert.False(t, all[i].Time.After(all[i-1].Time), "newest first")
	}
	assert.Equal(t, audit.KindAuthFailed, all[0].Kind)

	tests := []struct {
		name string
		f    audit.Filter
		want int
	}{
		{name: "blocked", f: audit.Filter{Blocked: true}, want: 7 + 1},
		{name: "agent", f: audit.Filter{Agent: "b"}, want: 10},
		{name: "since", f: audit.Filter{Since: base.Add(15 * time.Minute)}, want: 5 + 1},
		{name: "limit", f: audit.Filter{Limit: 3}, want: 3},
		{name: "blocked agent since", f: audit.Filter{Blocked: true, Agent: "a", Since: base.Add(6 * time.Minute)}, want: 3 + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			evs, err := audit.ReadFile(path, tt.f)
			require.NoError(t, err)
			assert.Len(t, evs, tt.want)
			for _, ev := range evs {
				assert.True(t, tt.f.Match(&ev))
			}
		})
	}
	limited, err := audit.ReadFile(path, audit.Filter{Limit: 3})
	require.NoError(t, err)
	assert.Equal(t, all[:3], limited)

	_, err = audit.ReadFile(filepath.Join(dir, "missing"), audit.Filter{})
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestRead(t *testing.T) {
	t.Parallel()
	in := `{"time":"2026-01-01T00:00:00Z","kind":"connect","session":"a"}
not json
{"time":"2026-01-01T00:00:01Z","kind":"statement","session":"a","decision":"deny","reasons":[{"code":"label_denied","table":"public.customers","column":"ssn","label":"pii.ssn"}]}

{"foo":1}
`
	evs, skipped, err := audit.Read(strings.NewReader(in), audit.Filter{})
	require.NoError(t, err)
	assert.Equal(t, 2, skipped)
	require.Len(t, evs, 2)
	assert.Equal(t, sqlpolicy.ReasonLabelDenied, evs[1].Reasons[0].Code)
	assert.True(t, evs[1].Blocked())
	assert.False(t, evs[0].Blocked())
}
