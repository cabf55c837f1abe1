package audit_test

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/audit"
)

// An agent token (here a well-formed one, still valid) sent as the user
// name reached the audit file as the event's agent and in its error, and
// the log as the session's user: whoever reads either could log in as the
// agent.
const canaryToken = "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJrZXlob2xlIiwic3ViIjoiYm90In0.Q0FOQVJZc2lnbmF0dXJlX2NhbmFyeQ"

func TestAuditFileNeverHoldsAToken(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	r, err := audit.NewFileRecorder(path, audit.FileOptions{})
	require.NoError(t, err)
	r.Record(audit.Event{Kind: audit.KindAuthFailed, Session: "s1", Agent: canaryToken,
		ErrorCode: "28P01", Error: `password authentication failed for user "` + canaryToken + `"`})
	r.Record(audit.Event{Kind: audit.KindAuthFailed, Session: "s2", Agent: "bot", Error: "password authentication failed for user \"bot\""})
	require.NoError(t, r.Close())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.NotContains(t, string(b), "Q0FOQVJZc2lnbmF0dXJl")
	assert.NotContains(t, string(b), "eyJpc3MiOiJrZXlob2xl")
	assert.Contains(t, string(b), `"agent":"[token]"`)
	assert.Contains(t, string(b), `"agent":"bot"`, "names that are not tokens are kept")
}

func TestRedactAttrHidesTokensInLogs(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	for _, h := range []slog.Handler{
		slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: audit.RedactAttr}),
		slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: audit.RedactAttr}),
	} {
		log := slog.New(h).With("user", canaryToken)
		log.Warn("authentication failed", "err", errors.New(`token subject "bot" is not user "`+canaryToken+`"`), "agent", "bot")
		log.Info("auth for " + canaryToken)
	}
	assert.NotContains(t, buf.String(), "Q0FOQVJZc2lnbmF0dXJl")
	assert.NotContains(t, buf.String(), "eyJpc3MiOiJrZXlob2xl")
	assert.Contains(t, buf.String(), "[token]")
	assert.Contains(t, buf.String(), "bot")
	assert.Equal(t, "no token here: eyJ", audit.RedactTokens("no token here: eyJ"))
}
