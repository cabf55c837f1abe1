package admin_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/admin"
	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

func get(t *testing.T, h http.Handler, method, target string) (int, http.Header, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	body, err := io.ReadAll(rec.Result().Body)
	require.NoError(t, err)
	return rec.Code, rec.Result().Header, string(body)
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	var healthErr error
	h := admin.Handler(admin.HandlerOptions{Health: func() error { return healthErr }})
	code, _, body := get(t, h, http.MethodGet, "/healthz")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "ok\n", body)

	healthErr = errors.New("vault: cannot issue credentials\nsecond line with more detail")
	code, _, body = get(t, h, http.MethodGet, "/healthz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "unhealthy: vault: cannot issue credentials\n", body)

	code, _, _ = get(t, h, http.MethodPost, "/healthz")
	assert.Equal(t, http.StatusMethodNotAllowed, code)
	code, _, _ = get(t, h, http.MethodGet, "/metrics")
	assert.Equal(t, http.StatusNotFound, code, "no metrics configured")
	code, _, _ = get(t, h, http.MethodGet, "/audit")
	assert.Equal(t, http.StatusNotFound, code, "no console configured")
}

func TestPprof(t *testing.T) {
	t.Parallel()
	code, _, _ := get(t, admin.Handler(admin.HandlerOptions{}), http.MethodGet, "/debug/pprof/")
	assert.Equal(t, http.StatusNotFound, code, "off by default")

	h := admin.Handler(admin.HandlerOptions{Pprof: true})
	code, _, body := get(t, h, http.MethodGet, "/debug/pprof/")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "goroutine")
	code, _, _ = get(t, h, http.MethodGet, "/debug/pprof/heap?debug=1")
	assert.Equal(t, http.StatusOK, code)
	code, _, body = get(t, h, http.MethodGet, "/debug/pprof/profile?seconds=1")
	assert.Equal(t, http.StatusOK, code)
	assert.NotEmpty(t, body, "a CPU profile")
	code, _, _ = get(t, h, http.MethodPost, "/debug/pprof/profile")
	assert.Equal(t, http.StatusMethodNotAllowed, code)
}

func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	m := admin.NewMetrics(nil)
	m.AuthFailed("postgres")
	h := admin.Handler(admin.HandlerOptions{Metrics: m})
	code, _, body := get(t, h, http.MethodGet, "/metrics")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, `keyhole_auth_failures_total{protocol="postgres"} 1`)
}

func writeAudit(t *testing.T, evs ...audit.Event) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	r, err := audit.NewFileRecorder(path, audit.FileOptions{})
	require.NoError(t, err)
	for _, ev := range evs {
		r.Record(ev)
	}
	require.NoError(t, r.Close())
	return path
}

// auditHandler serves the raw audit page at /audit, as the console does
// (behind its login) at /console/audit.
func auditHandler(file string) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /audit", admin.AuditPage(file))
	return mux
}

func TestAuditPage(t *testing.T) {
	t.Parallel()
	now := time.Now().UTC().Truncate(time.Second)
	path := writeAudit(t,
		audit.Event{Time: now.Add(-3 * time.Hour), Kind: audit.KindStatement, Session: "s1", Agent: "old-agent",
			Statement: "DELETE FROM public.orders", Decision: sqlpolicy.Deny, Rule: "default-deny"},
		audit.Event{Time: now.Add(-2 * time.Minute), Kind: audit.KindStatement, Session: "s2", Agent: "sales", Role: "analyst",
			Statement: "SELECT '<script>alert(1)</script>' FROM public.customers", Decision: sqlpolicy.Deny,
			Rule:    "roles.analyst.deny_labels[pii.*]",
			Reasons: []sqlpolicy.Reason{{Code: sqlpolicy.ReasonLabelDenied, Table: "public.customers", Column: "ssn", Label: "pii.ssn", Rule: "roles.analyst.deny_labels[pii.*]"}}},
		audit.Event{Time: now.Add(-1 * time.Minute), Kind: audit.KindStatement, Session: "s2", Agent: "sales",
			Statement: "SELECT id FROM public.orders", Decision: sqlpolicy.Allow, Rule: "roles.analyst.allow[0]"},
		audit.Event{Time: now.Add(-30 * time.Second), Kind: audit.KindAuthFailed, Session: "s3", Agent: "mallory",
			Client: "10.0.0.9:5555", ErrorCode: "28P01", Error: "agent authentication failed"},
	)
	h := auditHandler(path)

	t.Run("escaping and security headers", func(t *testing.T) {
		t.Parallel()
		code, hdr, body := get(t, h, http.MethodGet, "/audit")
		assert.Equal(t, http.StatusOK, code)
		assert.NotContains(t, body, "<script>")
		assert.Contains(t, body, "&lt;script&gt;alert(1)&lt;/script&gt;")
		assert.Contains(t, hdr.Get("Content-Security-Policy"), "default-src 'none'")
		assert.Equal(t, "nosniff", hdr.Get("X-Content-Type-Options"))
		assert.Equal(t, "text/html; charset=utf-8", hdr.Get("Content-Type"))
	})

	tests := []struct {
		name     string
		query    string
		code     int
		contains []string
		absent   []string
	}{
		{name: "blocked only, newest first", query: "", code: http.StatusOK,
			contains: []string{"mallory", "label_denied public.customers.ssn label=pii.ssn", "DELETE FROM public.orders"},
			absent:   []string{"SELECT id FROM public.orders"}},
		{name: "all", query: "?all=1", code: http.StatusOK, contains: []string{"SELECT id FROM public.orders"}},
		{name: "agent", query: "?agent=sales", code: http.StatusOK,
			contains: []string{"roles.analyst.deny_labels[pii.*]"}, absent: []string{"mallory", "old-agent"}},
		{name: "since duration", query: "?since=1h", code: http.StatusOK, contains: []string{"sales"}, absent: []string{"old-agent"}},
		{name: "since rfc3339", query: "?since=" + now.Add(-time.Hour).Format(time.RFC3339), code: http.StatusOK, absent: []string{"old-agent"}},
		{name: "limit", query: "?limit=1", code: http.StatusOK, contains: []string{"mallory"}, absent: []string{"old-agent", "sales"}},
		{name: "agent param escaped", query: "?agent=%22%3E%3Cscript%3E", code: http.StatusOK, absent: []string{`"><script>`}},
		{name: "bad since", query: "?since=yesterday", code: http.StatusBadRequest},
		{name: "bad limit", query: "?limit=-3", code: http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, _, body := get(t, h, http.MethodGet, "/audit"+tt.query)
			assert.Equal(t, tt.code, code)
			for _, s := range tt.contains {
				assert.Contains(t, body, htmlEscape(s))
			}
			for _, s := range tt.absent {
				assert.NotContains(t, body, s)
			}
		})
	}

	t.Run("newest first", func(t *testing.T) {
		t.Parallel()
		_, _, body := get(t, h, http.MethodGet, "/audit")
		assert.Less(t, strings.Index(body, "mallory"), strings.Index(body, "old-agent"))
	})

	t.Run("missing file is 500 without details", func(t *testing.T) {
		t.Parallel()
		h := auditHandler(filepath.Join(t.TempDir(), "gone.jsonl"))
		code, _, body := get(t, h, http.MethodGet, "/audit")
		assert.Equal(t, http.StatusInternalServerError, code)
		assert.NotContains(t, body, "no such file")
	})
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}
