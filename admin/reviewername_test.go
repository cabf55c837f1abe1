package admin_test

import (
	"bytes"
	"context"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/admin"
	"github.com/keyholedb/keyhole/approval"
	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/store"
)

// A password typed into the name field (or name and password swapped) was
// written to the audit log as the failed login's reviewer.
func TestFailedLoginNeverRecordsAPasswordAsTheName(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var events bytes.Buffer
	rec := audit.NewWriterRecorder(&events)
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "a.db"), store.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	svc, err := approval.New(ctx, approval.Options{Store: st, Audit: rec})
	require.NoError(t, err)
	t.Cleanup(func() { _ = svc.Close(ctx) })
	h := newConsole(t, func(o *admin.ConsoleOptions) { o.Approvals = svc })

	const typedPassword = "canary-typed-into-name"
	for _, f := range []url.Values{
		{"user": {typedPassword}, "password": {"alice"}},
		{"user": {typedPassword}, "password": {""}},
		{"user": {"alice"}, "password": {"wrong"}},
	} {
		resp := serve(t, h, req{method: "POST", target: "/login", form: f})
		_ = resp.Body.Close()
	}
	require.NoError(t, rec.Close())
	text := events.String()
	assert.NotContains(t, text, typedPassword)
	assert.Contains(t, text, `"reviewer":"unknown:`)
	assert.Contains(t, text, `"reviewer":"alice"`, "a known reviewer's failed login names the reviewer")
	assert.Equal(t, 2, bytes.Count(events.Bytes(), []byte(`"reviewer":"unknown:`)))
}
