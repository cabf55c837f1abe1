package admin_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/admin"
	"github.com/keyholedb/keyhole/approval"
	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/store"
)

const password = "correct horse battery staple"

// newConsole serves the console over a SQLite store with reviewers alice
// (approver) and victor (viewer); mod adjusts its options.
func newConsole(t *testing.T, mod func(o *admin.ConsoleOptions)) http.Handler {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(dir, "k.db"), store.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	svc, err := approval.New(ctx, approval.Options{Store: st})
	require.NoError(t, err)
	t.Cleanup(func() { _ = svc.Close(ctx) })
	hash, err := admin.HashPassword(password)
	require.NoError(t, err)
	f := &admin.UsersFile{Reviewers: map[string]*admin.User{
		"alice":  {Role: admin.RoleApprover, Password: hash},
		"victor": {Role: admin.RoleViewer, Password: hash},
	}}
	data, err := f.Marshal()
	require.NoError(t, err)
	users := filepath.Join(dir, "reviewers.yaml")
	require.NoError(t, os.WriteFile(users, data, 0o600))
	o := admin.ConsoleOptions{Approvals: svc, UsersFile: users, Durations: []time.Duration{time.Hour}}
	if mod != nil {
		mod(&o)
	}
	h, err := admin.NewConsole(o)
	require.NoError(t, err)
	return h
}

type req struct {
	method, target string
	form           url.Values
	hdr            map[string]string
	cookies        []*http.Cookie
	remote         string
}

func serve(t *testing.T, h http.Handler, r req) *http.Response {
	t.Helper()
	var body io.Reader
	if r.form != nil {
		body = strings.NewReader(r.form.Encode())
	}
	hr := httptest.NewRequest(r.method, r.target, body)
	if r.form != nil {
		hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range r.hdr {
		hr.Header.Set(k, v)
	}
	for _, c := range r.cookies {
		hr.AddCookie(c)
	}
	if r.remote != "" {
		hr.RemoteAddr = r.remote
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, hr)
	return rec.Result()
}

func login(t *testing.T, h http.Handler, user, next string) *http.Response {
	t.Helper()
	return serve(t, h, req{method: "POST", target: "/login", form: url.Values{"user": {user}, "password": {password}, "next": {next}}})
}

// After a login the browser goes only to a page of the console: no
// next= sends it to another site, however the URL is spelled for a
// browser's lenient parser.
func TestLoginNextIsNoOpenRedirect(t *testing.T) {
	t.Parallel()
	h := newConsole(t, nil)
	for _, next := range []string{"//evil.example/", "/\t/evil.example/", "/\n/evil.example", "/\r\n/evil.example", "/\\evil.example",
		"\\/evil.example", "/\\/evil.example", "https://evil.example/", "http:evil.example", "/ /evil.example", "javascript:alert(1)",
		"/%09/evil.example", "", "/login", "/api/v1/requests", " //evil.example", "\x00//evil.example"} {
		resp := login(t, h, "alice", next)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode, "%q", next)
		loc := resp.Header.Get("Location")
		u, err := url.Parse(loc)
		require.NoError(t, err, "%q → %q", next, loc)
		assert.Empty(t, u.Host, "%q → %q", next, loc)
		assert.True(t, strings.HasPrefix(loc, "/console/") && !strings.ContainsAny(loc, "\t\r\n\\"), "%q → %q", next, loc)
	}
	resp := login(t, h, "alice", "/console/requests?x=1")
	assert.Equal(t, "/console/requests?x=1", resp.Header.Get("Location"), "a console page is kept")
}

func sessionOf(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Value != "" {
			return c
		}
	}
	return nil
}

// Over TLS the session is only the __Host- cookie: a plain-named cookie
// (which an attacker on plain HTTP or a sibling domain can plant) is not
// a session.
func TestSessionCookieOverTLS(t *testing.T) {
	t.Parallel()
	h := newConsole(t, func(o *admin.ConsoleOptions) { o.TLS = true })
	resp := login(t, h, "alice", "/console/")
	ck := sessionOf(resp)
	require.NotNil(t, ck)
	assert.Equal(t, "__Host-keyhole", ck.Name)
	assert.True(t, ck.Secure)
	assert.True(t, ck.HttpOnly)
	assert.Equal(t, http.SameSiteStrictMode, ck.SameSite)
	assert.Equal(t, "/", ck.Path)
	assert.Empty(t, ck.Domain)
	resp = serve(t, h, req{method: "GET", target: "/console/grants", cookies: []*http.Cookie{ck}})
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	planted := &http.Cookie{Name: "keyhole_session", Value: ck.Value}
	resp = serve(t, h, req{method: "GET", target: "/console/grants", cookies: []*http.Cookie{planted}})
	assert.Equal(t, http.StatusSeeOther, resp.StatusCode, "a plain-named cookie is no session over TLS")
}

// A console served over TLS pins browsers to HTTPS (HSTS); over plain
// HTTP the header would mean nothing and is not sent.
func TestStrictTransportSecurityOverTLS(t *testing.T) {
	t.Parallel()
	h := newConsole(t, func(o *admin.ConsoleOptions) { o.TLS = true })
	hr := httptest.NewRequest("GET", "/login", nil)
	hr.TLS = &tls.ConnectionState{HandshakeComplete: true}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, hr)
	assert.Equal(t, "max-age=31536000", rec.Header().Get("Strict-Transport-Security"))

	resp := serve(t, h, req{method: "GET", target: "/login"})
	assert.Empty(t, resp.Header.Get("Strict-Transport-Security"), "no HSTS over plain HTTP")
}

// Repeated wrong passwords lock the (address, reviewer) pair out; while
// locked out even the right password is refused.
func TestLoginBruteForceLimited(t *testing.T) {
	t.Parallel()
	h := newConsole(t, func(o *admin.ConsoleOptions) {
		o.Lockout = identity.LockoutConfig{MaxFailures: 3, BaseDelay: time.Hour, MaxDelay: time.Hour}
	})
	for i := range 3 {
		resp := serve(t, h, req{method: "POST", target: "/login", form: url.Values{"user": {"alice"}, "password": {"guess number " + string(rune('a'+i))}},
			remote: "192.0.2.7:" + string(rune('1'+i)) + "000"})
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	}
	resp := serve(t, h, req{method: "POST", target: "/login", form: url.Values{"user": {"alice"}, "password": {password}}, remote: "192.0.2.7:4000"})
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "locked out, whatever the source port")
	b, _ := io.ReadAll(resp.Body)
	assert.Contains(t, string(b), "Too many failed attempts")
	assert.Nil(t, sessionOf(resp))
}

// Identity headers count only from the configured proxy addresses.
func TestTrustedHeadersOnlyFromTheProxy(t *testing.T) {
	t.Parallel()
	_, proxyNet, _ := net.ParseCIDR("10.9.0.0/16")
	h := newConsole(t, func(o *admin.ConsoleOptions) {
		o.ProxyAuth = &admin.ProxyAuth{Trusted: []*net.IPNet{proxyNet}, UserHeader: "X-Forwarded-User", GroupsHeader: "X-Forwarded-Groups",
			Approvers: []string{"sec-approvers"}, Viewers: []string{"sec-viewers"}}
	})
	hdr := map[string]string{"X-Forwarded-User": "mallory", "X-Forwarded-Groups": "sec-approvers"}
	resp := serve(t, h, req{method: "GET", target: "/api/v1/whoami", hdr: hdr, remote: "203.0.113.5:5000"})
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "from an untrusted address")
	resp = serve(t, h, req{method: "GET", target: "/api/v1/whoami", hdr: hdr, remote: "10.9.1.2:5000"})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, _ := io.ReadAll(resp.Body)
	assert.Contains(t, string(b), `"role": "approver"`)
	hdr["X-Forwarded-Groups"] = "other"
	resp = serve(t, h, req{method: "GET", target: "/api/v1/whoami", hdr: hdr, remote: "10.9.1.2:5000"})
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "in no configured group")
}

// The profiler is behind the console's login when there is one.
func TestPprofBehindLogin(t *testing.T) {
	t.Parallel()
	c := newConsole(t, nil)
	h := admin.Handler(admin.HandlerOptions{Pprof: true, Console: c})
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/cmdline", "/debug/pprof/symbol"} {
		resp := serve(t, h, req{method: "GET", target: p})
		assert.Equal(t, http.StatusSeeOther, resp.StatusCode, p)
		assert.True(t, strings.HasPrefix(resp.Header.Get("Location"), "/login"), p)
	}
	ck := sessionOf(login(t, c, "victor", "/console/"))
	require.NotNil(t, ck)
	resp := serve(t, h, req{method: "GET", target: "/debug/pprof/", cookies: []*http.Cookie{ck}})
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

// The static files are the console's own and nothing else.
func TestStaticNoTraversal(t *testing.T) {
	t.Parallel()
	h := newConsole(t, nil)
	resp := serve(t, h, req{method: "GET", target: "/static/app.js"})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	for _, p := range []string{"/static/../templates/layout.html", "/static/%2e%2e/templates/layout.html", "/static/..%2ftemplates%2flayout.html",
		"/static/....//templates/layout.html", "/static/templates/layout.html", "/static/%2e%2e%2f%2e%2e%2fconsole.go"} {
		resp := serve(t, h, req{method: "GET", target: p})
		b, _ := io.ReadAll(resp.Body)
		assert.NotContains(t, string(b), "{{define", p)
		assert.NotContains(t, string(b), "package admin", p)
	}
}

// The SSE stream and every state change need a session; a viewer's
// state changes are refused server-side.
func TestEventsAndStateChangesNeedAuth(t *testing.T) {
	t.Parallel()
	h := newConsole(t, nil)
	resp := serve(t, h, req{method: "GET", target: "/console/events"})
	assert.Equal(t, http.StatusSeeOther, resp.StatusCode)
	ck := sessionOf(login(t, h, "victor", "/console/"))
	require.NotNil(t, ck)
	page := serve(t, h, req{method: "GET", target: "/console/grants", cookies: []*http.Cookie{ck}})
	b, _ := io.ReadAll(page.Body)
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(string(b))
	require.NotNil(t, m)
	for _, p := range []string{"/console/requests/apr_x/approve", "/console/requests/apr_x/deny", "/console/grants/grt_x/revoke"} {
		resp := serve(t, h, req{method: "POST", target: p, form: url.Values{"csrf": {m[1]}}, cookies: []*http.Cookie{ck}})
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, p)
	}
	for _, p := range []string{"/api/v1/requests/apr_x/approve", "/api/v1/requests/apr_x/deny", "/api/v1/grants/grt_x/revoke"} {
		resp := serve(t, h, req{method: "POST", target: p, hdr: map[string]string{"X-CSRF-Token": m[1]}, cookies: []*http.Cookie{ck}})
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, p)
	}
}

// Concurrent logins (with made-up names: each still checks a hash, for
// timing) run a bounded number of argon2id checks at once, so they cannot
// take the process's memory (64 MiB each).
func TestLoginPasswordChecksBounded(t *testing.T) {
	h := newConsole(t, nil)
	var mu sync.Mutex
	running, peak := 0, 0
	admin.SetVerifyHook(func() {
		mu.Lock()
		running++
		peak = max(peak, running)
		mu.Unlock()
		// Hold the slot like a real 64 MiB argon2id check does, so that
		// checks that are let through together overlap here. No event can
		// stand in: the test counts how many run at once, and a hook that
		// waited for others would deadlock exactly when the bound works.
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		running--
		mu.Unlock()
	})
	defer admin.SetVerifyHook(nil)
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Go(func() {
			resp := serve(t, h, req{method: "POST", target: "/login", form: url.Values{"user": {fmt.Sprintf("nobody%d", i)}, "password": {"x"}},
				remote: fmt.Sprintf("198.51.100.%d:1234", i)})
			assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, peak, admin.MaxVerifying)
	assert.Positive(t, peak)
}

// A reviewer's password changed in the reviewers file (because it leaked,
// say) ends the console sessions opened with the old one, at their next
// request once the file is read again; the other reviewers' sessions go on.
func TestChangedPasswordEndsSessions(t *testing.T) {
	t.Parallel()
	var users string
	h := newConsole(t, func(o *admin.ConsoleOptions) { users = o.UsersFile })
	alice := sessionOf(login(t, h, "alice", "/console/"))
	victor := sessionOf(login(t, h, "victor", "/console/"))
	require.NotNil(t, alice)
	require.NotNil(t, victor)
	status := func(ck *http.Cookie) int {
		return serve(t, h, req{method: "GET", target: "/console/grants", cookies: []*http.Cookie{ck}}).StatusCode
	}
	require.Equal(t, http.StatusOK, status(alice))

	data, err := os.ReadFile(users)
	require.NoError(t, err)
	f, err := admin.ParseUsers(data)
	require.NoError(t, err)
	f.Reviewers["alice"].Password, err = admin.HashPassword("a new password")
	require.NoError(t, err)
	data, err = f.Marshal()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(users, data, 0o600))
	// The file is looked at again at most once a second.
	require.Eventually(t, func() bool { return status(alice) == http.StatusSeeOther }, 5*time.Second, 50*time.Millisecond,
		"the session of the old password")
	assert.Equal(t, http.StatusOK, status(victor), "another reviewer's session")
	resp := serve(t, h, req{method: "POST", target: "/login", form: url.Values{"user": {"alice"}, "password": {"a new password"}, "next": {"/console/"}}})
	assert.Equal(t, http.StatusOK, status(sessionOf(resp)), "the new password logs in")
}
