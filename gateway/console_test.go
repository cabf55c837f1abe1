package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/admin"
	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/store"
)

const reviewerPassword = "correct horse battery staple"

// consoleEnv is a gateway with the reviewers file: alice (approver, with
// an API token), victor (viewer).
type consoleEnv struct {
	*env
	up     upstream
	base   string
	token  string
	vtoken string
}

func startConsole(t *testing.T, opts ...setup) *consoleEnv {
	t.Helper()
	dir := t.TempDir()
	hash, err := admin.HashPassword(reviewerPassword)
	require.NoError(t, err)
	tok, tokHash := admin.NewAPIToken()
	vtok, vtokHash := admin.NewAPIToken()
	f := &admin.UsersFile{Reviewers: map[string]*admin.User{
		"alice":  {Role: admin.RoleApprover, Password: hash, Tokens: []admin.APIToken{{Name: "cli", SHA256: tokHash}}},
		"victor": {Role: admin.RoleViewer, Password: hash, Tokens: []admin.APIToken{{Name: "cli", SHA256: vtokHash}}},
	}}
	data, err := f.Marshal()
	require.NoError(t, err)
	users := filepath.Join(dir, "reviewers.yaml")
	require.NoError(t, os.WriteFile(users, data, 0o600))
	up := newUpstream(t, fixture.ShopSQL(t))
	e := start(t, map[string]string{"": up.url()}, approvalPolicy, append([]setup{func(c *config.Config) {
		c.Console.UsersFile = users
	}}, opts...)...)
	return &consoleEnv{env: e, up: up, base: "http://" + e.g.AdminAddr().String(), token: tok, vtoken: vtok}
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects. Its timeout allows for logins under the race detector, where
// one argon2id check takes about 5 s.
func browser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &http.Client{Jar: jar, Timeout: time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func do(t *testing.T, c *http.Client, method, u string, form url.Values, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	require.NoError(t, err)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func (ce *consoleEnv) login(t *testing.T, user string) (*http.Client, string) {
	t.Helper()
	c := browser(t)
	resp, _ := do(t, c, "POST", ce.base+"/login", url.Values{"user": {user}, "password": {reviewerPassword}, "next": {"/console/"}}, nil)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	var cookie *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "keyhole_session" {
			cookie = ck
		}
	}
	require.NotNil(t, cookie, "session cookie")
	assert.True(t, cookie.HttpOnly)
	assert.Equal(t, http.SameSiteStrictMode, cookie.SameSite)
	_, page := do(t, c, "GET", ce.base+"/console/grants", nil, nil)
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	require.NotNil(t, m, page)
	return c, m[1]
}

// Attacker-controlled texts: an alias in the statement (literals are
// redacted, names are not) and the token's purpose claim.
const (
	xssAlias   = `<img src=x onerror=alert(1)>`
	xssPurpose = `<script>alert("purpose")</script>`
)

func TestConsoleSecurity(t *testing.T) {
	t.Parallel()
	ce := startConsole(t)
	svc := ce.g.Approvals()
	ctx := context.Background()

	// An agent whose statement and purpose carry markup.
	tok, err := identity.Mint(ce.key, identity.Claims{Agent: agent, TTL: time.Hour, Purpose: xssPurpose})
	require.NoError(t, err)
	pc, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=require", agent, tok, ce.g.Addr(config.DialectPostgres), ce.up.db.Name))
	require.NoError(t, err)
	defer pc.Close(ctx)
	pe := pgErr(t, pc, `SELECT email AS "`+xssAlias+`" FROM customers WHERE id = 1`)
	require.NotNil(t, pe)
	id := requestRE.FindString(pe.Message)
	require.NotEmpty(t, id)
	require.NoError(t, svc.Flush(ctx))

	anon := browser(t)
	t.Run("nothing works unauthenticated but health and metrics", func(t *testing.T) {
		for _, p := range []string{"/console/", "/console/requests", "/console/requests/" + id, "/console/grants", "/console/agents",
			"/console/matrix", "/console/unlabelled", "/console/audit", "/console/events", "/console/feed/rows"} {
			resp, _ := do(t, anon, "GET", ce.base+p, nil, nil)
			assert.Equal(t, http.StatusSeeOther, resp.StatusCode, p)
			assert.True(t, strings.HasPrefix(resp.Header.Get("Location"), "/login"), p)
		}
		for _, p := range []string{"/api/v1/requests", "/api/v1/grants", "/api/v1/feed", "/api/v1/agents", "/api/v1/requests/" + id} {
			resp, _ := do(t, anon, "GET", ce.base+p, nil, nil)
			assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, p)
		}
		resp, _ := do(t, anon, "POST", ce.base+"/api/v1/requests/"+id+"/approve", url.Values{}, nil)
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		resp, _ = do(t, anon, "GET", ce.base+"/api/v1/requests", nil, map[string]string{"Authorization": "Bearer khr_forged"})
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		resp, _ = do(t, anon, "GET", ce.base+"/healthz", nil, nil)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		resp, _ = do(t, anon, "GET", ce.base+"/metrics", nil, nil)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		resp, _ = do(t, anon, "POST", ce.base+"/login", url.Values{"user": {"alice"}, "password": {"wrong password here"}}, nil)
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		resp, _ = do(t, anon, "POST", ce.base+"/login", url.Values{"user": {"nobody"}, "password": {reviewerPassword}}, nil)
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		// An open redirect after login is not possible.
		c := browser(t)
		resp, _ = do(t, c, "POST", ce.base+"/login", url.Values{"user": {"alice"}, "password": {reviewerPassword}, "next": {"//evil.example/"}}, nil)
		assert.Equal(t, "/console/", resp.Header.Get("Location"))
	})

	alice, csrf := ce.login(t, "alice")
	t.Run("every page escapes agent-written text", func(t *testing.T) {
		for _, p := range []string{"/console/", "/console/feed/rows", "/console/requests", "/console/requests/rows", "/console/requests/" + id,
			"/console/agents", "/console/matrix", "/console/unlabelled", "/console/grants", "/console/audit?all=1"} {
			resp, body := do(t, alice, "GET", ce.base+p, nil, nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, p)
			assert.NotContains(t, body, "<img src=x", p)
			assert.NotContains(t, body, "<script>alert", p)
			csp := resp.Header.Get("Content-Security-Policy")
			assert.Contains(t, csp, "default-src 'none'", p)
			assert.NotContains(t, csp, "script-src 'unsafe", p)
			assert.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"), p)
		}
		_, body := do(t, alice, "GET", ce.base+"/console/requests/"+id, nil, nil)
		assert.Contains(t, body, "&lt;img src=x onerror=alert(1)&gt;", "shown, as text")
		assert.Contains(t, body, "&lt;script&gt;alert(&#34;purpose&#34;)&lt;/script&gt;")
	})
	t.Run("CSRF: a state change needs the session's token and the same origin", func(t *testing.T) {
		form := url.Values{"item": {"0"}, "col-0": {"email"}, "for": {"15m"}, "scope": {"statement"}, "note": {"csrf test"}}
		resp, _ := do(t, alice, "POST", ce.base+"/console/requests/"+id+"/approve", form, nil)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, "no token")
		form.Set("csrf", "forged")
		resp, _ = do(t, alice, "POST", ce.base+"/console/requests/"+id+"/approve", form, nil)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, "wrong token")
		form.Set("csrf", csrf)
		resp, _ = do(t, alice, "POST", ce.base+"/console/requests/"+id+"/approve", form, map[string]string{"Origin": "https://evil.example"})
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, "cross-site origin")
		resp, _ = do(t, alice, "POST", ce.base+"/console/requests/"+id+"/approve", form, map[string]string{"Sec-Fetch-Site": "cross-site"})
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, "cross-site fetch")
		r, err := svc.Store().Request(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, store.StatusPending, r.Status, "nothing was approved")
	})
	t.Run("viewers cannot change anything", func(t *testing.T) {
		victor, vcsrf := ce.login(t, "victor")
		resp, _ := do(t, victor, "POST", ce.base+"/console/requests/"+id+"/deny", url.Values{"csrf": {vcsrf}, "note": {"no"}}, nil)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode)
		resp, _ = do(t, anon, "POST", ce.base+"/api/v1/requests/"+id+"/deny", nil, map[string]string{"Authorization": "Bearer " + ce.vtoken})
		assert.Equal(t, http.StatusForbidden, resp.StatusCode)
		resp, _ = do(t, victor, "GET", ce.base+"/console/requests/"+id, nil, nil)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
	})
	t.Run("the console approves with its form", func(t *testing.T) {
		_, page := do(t, alice, "GET", ce.base+"/console/requests/"+id, nil, nil)
		m := regexp.MustCompile(`name="grantable" value="([^"]+)"`).FindStringSubmatch(page)
		require.NotNil(t, m, page)
		form := url.Values{"csrf": {csrf}, "item": {"0"}, "col-0": {"email"}, "for": {"custom"}, "custom": {"20m"}, "scope": {"statement"}, "note": {"ticket 7"},
			"grantable": {"stale"}}
		resp, _ := do(t, alice, "POST", ce.base+"/console/requests/"+id+"/approve", form, map[string]string{"Origin": ce.base})
		require.Equal(t, http.StatusConflict, resp.StatusCode, "what the form showed is not what the request offers now")
		form.Set("grantable", m[1])
		resp, body := do(t, alice, "POST", ce.base+"/console/requests/"+id+"/approve", form, map[string]string{"Origin": ce.base})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode, body)
		gs, err := svc.Store().Grants(ctx, store.GrantFilter{ActiveAt: time.Now(), RequestID: id})
		require.NoError(t, err)
		require.Len(t, gs, 1)
		assert.Equal(t, "alice", gs[0].ApprovedBy)
		assert.InDelta(t, 20*time.Minute, gs[0].Expires.Sub(gs[0].Created), float64(time.Second))
		assert.Equal(t, xssPurpose, gs[0].Purpose)
	})
	t.Run("logout ends the session", func(t *testing.T) {
		resp, _ := do(t, alice, "POST", ce.base+"/logout", url.Values{"csrf": {csrf}}, nil)
		assert.Equal(t, http.StatusSeeOther, resp.StatusCode)
		resp, _ = do(t, alice, "GET", ce.base+"/console/", nil, nil)
		assert.Equal(t, http.StatusSeeOther, resp.StatusCode)
	})
}

func TestRequestsCLI(t *testing.T) {
	t.Parallel()
	ce := startConsole(t, func(c *config.Config) { c.Listen.Metrics = "127.0.0.1:0" })
	ctx := context.Background()
	c := ce.connect(agent, ce.up.db.Name)
	pe := pgErr(t, c, "SELECT name, email FROM customers WHERE id = 1")
	require.NotNil(t, pe)
	id := requestRE.FindString(pe.Message)
	require.NoError(t, ce.g.Approvals().Flush(ctx))

	bin := fixture.BuildKeyhole(t)
	run := func(args ...string) fixture.Result {
		cmd := exec.Command(bin, append([]string{"requests"}, args...)...)
		cmd.Env = append(os.Environ(), "KEYHOLE_ADMIN_URL="+ce.base, "KEYHOLE_API_TOKEN="+ce.token)
		return fixture.Run(t, cmd)
	}
	r := run("list")
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Contains(t, r.Stdout, id)
	r = run("list", "--json")
	require.Equal(t, 0, r.Code, r.Stderr)
	var reqs []store.Request
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &reqs))
	require.Len(t, reqs, 1)
	assert.Equal(t, agent, reqs[0].Agent)
	r = run("show", id)
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Contains(t, r.Stdout, "select public.customers (email) lifting pii.email")

	r = run("approve", id, "--for", "2d", "--note", "x")
	assert.Equal(t, 1, r.Code, "over the maximum: refused by the server")
	r = run("approve", id, "--for", "1h")
	assert.Equal(t, 2, r.Code, "a note is required")
	r = run("approve", id, "--for", "1h", "--note", "report", "--only", "public.orders")
	assert.Equal(t, 2, r.Code, "not requested")
	r = run("approve", id, "--for", "1h", "--note", "report", "--scope", "access", "--only", "public.customers.email", "--json")
	require.Equal(t, 0, r.Code, r.Stderr)
	var g store.Grant
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &g))
	assert.Equal(t, "ada@example.com", query(c, "SELECT email FROM customers WHERE id = 1"))
	r = run("grants")
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Contains(t, r.Stdout, g.ID)
	r = run("revoke", g.ID, "--note", "done")
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Equal(t, "42501", query(c, "SELECT email FROM customers WHERE id = 1"))
	r = run("revoke", g.ID, "--note", "again")
	assert.Equal(t, 1, r.Code, "conflict")
	r = run("show", "apr_aaaaaaaaaaaaaaaa")
	assert.Equal(t, 1, r.Code, "not found")

	cmd := exec.Command(bin, "requests", "list")
	cmd.Env = append(os.Environ(), "KEYHOLE_ADMIN_URL="+ce.base, "KEYHOLE_API_TOKEN=khr_wrong")
	r = fixture.Run(t, cmd)
	assert.Equal(t, 2, r.Code)
	assert.NotContains(t, r.Stderr, "khr_wrong")

	// /metrics moved to its own listener; the admin one keeps /healthz.
	resp, err := http.Get("http://" + ce.g.MetricsAddr().String() + "/metrics")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	resp, err = http.Get(ce.base + "/metrics")
	require.NoError(t, err)
	resp.Body.Close()
	assert.NotEqual(t, http.StatusOK, resp.StatusCode)
}
