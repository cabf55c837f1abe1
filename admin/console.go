package admin

import (
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keyholedb/keyhole/approval"
	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/store"
)

//go:embed templates/*.html static/*
var assets embed.FS

// PolicyView is what the console shows of the policy in force.
type PolicyView interface {
	// Matrix is, per role, what each column of its upstream's tables
	// allows: read, or what blocks it.
	Matrix() []MatrixRole
	// Unlabelled are columns with no label whose names look like
	// personal data.
	Unlabelled() []UnlabelledColumn
	// RoleOf is the agent's role in the policy ("" when unknown).
	RoleOf(agent string) string
}

// MatrixRole is one role's row of the matrix.
type MatrixRole struct {
	Role, Upstream string
	// Agent is an agent of the role the cells were decided for; empty
	// when no agent uses the role (then Tables is empty).
	Agent  string
	Tables []MatrixTable
}

// MatrixTable is one relation.
type MatrixTable struct {
	Table   string
	Columns []MatrixCell
}

// MatrixCell is one column for one role.
type MatrixCell struct {
	Column string
	Read   bool
	// Blocked says why not: "no grant", "not in the column list", or the
	// label and the deny rule.
	Blocked string
	Labels  []string
	// NeverGrant: a label on it is never grantable for the role.
	NeverGrant bool
}

// UnlabelledColumn is a column that looks like personal data and carries
// no label.
type UnlabelledColumn struct {
	Upstream, Table, Column, Type string
	// Suggest is a label for it (pii.email ...).
	Suggest string
}

// ConsoleOptions configure the reviewers' console and API.
type ConsoleOptions struct {
	Approvals *approval.Service
	Policy    PolicyView
	// UsersFile is the reviewers file (local accounts, API tokens).
	UsersFile string
	ProxyAuth *ProxyAuth
	// SessionTTL is how long a login lasts.
	SessionTTL time.Duration
	// TLS: the listener serves TLS (cookies are Secure).
	TLS bool
	// Durations are the approval presets.
	Durations []time.Duration
	// AuditFile is read by the raw audit page.
	AuditFile string
	Lockout   identity.LockoutConfig
	Logger    *slog.Logger
	// Done ends live feeds (the server is shutting down).
	Done <-chan struct{}
}

type console struct {
	o     ConsoleOptions
	svc   *approval.Service
	st    *store.Store
	auth  *auth
	pages map[string]*template.Template
	log   *slog.Logger
}

// NewConsole returns the console and API handler: /login, /logout,
// /console/..., /api/v1/... and /static/. Everything but the login page
// and the static files (the console's own CSS and JavaScript) needs an
// authenticated reviewer.
func NewConsole(o ConsoleOptions) (http.Handler, error) {
	if o.Approvals == nil {
		return nil, errors.New("admin: console needs the approvals service")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = 12 * time.Hour
	}
	if o.Done == nil {
		o.Done = make(chan struct{})
	}
	c := &console{o: o, svc: o.Approvals, st: o.Approvals.Store(), log: o.Logger.With("component", "console")}
	c.auth = &auth{users: &users{path: o.UsersFile}, store: c.st, proxy: o.ProxyAuth, ttl: o.SessionTTL, secureAll: o.TLS,
		limiter: identity.NewLimiter(o.Lockout), log: c.log, auditEvent: o.Approvals.Audit}
	if o.UsersFile != "" {
		if _, err := c.auth.users.get(); err != nil {
			return nil, err
		}
	}
	var err error
	if c.pages, err = parsePages(); err != nil {
		return nil, err
	}
	static, _ := fs.Sub(assets, "static")
	mux := http.NewServeMux()
	mux.Handle("GET /static/", http.StripPrefix("/static/", staticHandler(http.FileServerFS(static))))
	mux.HandleFunc("GET /login", c.loginPage)
	mux.HandleFunc("POST /login", c.loginPost)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/", http.StatusSeeOther)
	})
	authed := http.NewServeMux()
	authed.HandleFunc("POST /logout", c.logout)
	c.routesConsole(authed)
	c.routesAPI(authed)
	mux.Handle("/console/", c.require(authed))
	mux.Handle("/api/", c.require(authed))
	mux.Handle("POST /logout", c.require(authed))
	return &consoleHandler{Handler: securityHeaders(mux), c: c}, nil
}

// consoleHandler is the console's handler; Protect puts other handlers
// (the profiler) behind its login.
type consoleHandler struct {
	http.Handler
	c *console
}

// Protect serves h to authenticated reviewers only (viewers included:
// they see statements anyway), with the console's headers.
func (h *consoleHandler) Protect(next http.Handler) http.Handler {
	return securityHeaders(h.c.require(next))
}

// contentSecurityPolicy lets pages load only keyhole's own script and
// style: markup injected through a statement text could not run.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", contentSecurityPolicy)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		// same-origin, not no-referrer: under no-referrer a browser sends
		// "Origin: null" with its own form posts, which the CSRF check
		// must refuse.
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Cross-Origin-Resource-Policy", "same-origin")
		if hd.Get("Cache-Control") == "" {
			hd.Set("Cache-Control", "no-store")
		}
		// Over TLS, tell the browser never to come back over plain
		// HTTP, where the session cookie could be stripped or planted.
		// Not includeSubDomains: the console's host name may share a
		// domain with services keyhole knows nothing of. Behind a
		// TLS-terminating proxy the header is that proxy's to send.
		if r.TLS != nil {
			hd.Set("Strict-Transport-Security", "max-age=31536000")
		}
		h.ServeHTTP(w, r)
	})
}

func staticHandler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}

// require authenticates every request, refuses viewers' changes, and
// checks the CSRF token of every state change made with a session
// cookie.
func (c *console) require(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		api := strings.HasPrefix(r.URL.Path, "/api/")
		p, err := c.auth.authenticate(w, r)
		if err != nil {
			switch {
			case errors.Is(err, errForbidden):
				c.fail(w, r, api, http.StatusForbidden, "not allowed")
			case api:
				w.Header().Set("WWW-Authenticate", `Bearer realm="keyhole"`)
				writeJSON(w, http.StatusUnauthorized, apiError{Error: "authentication required: log in or send Authorization: Bearer " + APITokenPrefix + "…"})
			default:
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			}
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
			if !checkCSRF(r, p) {
				c.log.Warn("console: state change without a valid CSRF token refused", "reviewer", p.User, "path", r.URL.Path)
				c.fail(w, r, api, http.StatusForbidden, "the form is stale or came from another site; reload the page and try again")
				return
			}
		}
		h.ServeHTTP(w, r.WithContext(contextWith(r, p)))
	})
}

func (c *console) fail(w http.ResponseWriter, r *http.Request, api bool, code int, msg string) {
	if api {
		writeJSON(w, code, apiError{Error: msg})
		return
	}
	w.WriteHeader(code)
	c.render(w, r, "error", "Error", map[string]any{"Message": msg, "Code": code})
}

// --- login ---

// safeNext is where a login goes next: a path of this console, else
// /console/. Browsers drop tabs and newlines from a URL and read a
// backslash as a slash, so "/\t/evil.example" and "/\\evil.example" are
// "//evil.example", another site: a next with any control character,
// backslash or space is refused, as is one that parses with a scheme or a
// host, or that leaves /console/.
func safeNext(next string) string {
	const home = "/console/"
	if strings.ContainsFunc(next, func(r rune) bool { return r < 0x21 || r == 0x7f || r == '\\' }) {
		return home
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" ||
		!strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || !strings.HasPrefix(u.Path, home) {
		return home
	}
	return next
}

func (c *console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.renderPlain(w, "login", map[string]any{"Next": safeNext(r.URL.Query().Get("next")), "Proxy": c.o.ProxyAuth != nil})
}

func (c *console) loginPost(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if !sameOrigin(r) {
		http.Error(w, "cross-site login refused", http.StatusForbidden)
		return
	}
	user, pw, next := r.PostFormValue("user"), r.PostFormValue("password"), safeNext(r.PostFormValue("next"))
	tok, _, err := c.auth.login(r.Context(), r, user, pw)
	if err != nil {
		w.WriteHeader(http.StatusUnauthorized)
		msg := "Wrong reviewer name or password."
		var ae *identity.AuthError
		if errors.As(err, &ae) && ae.Reason == identity.ReasonRateLimited {
			msg = "Too many failed attempts; wait and try again."
		}
		c.renderPlain(w, "login", map[string]any{"Next": next, "Error": msg, "User": user})
		return
	}
	c.auth.setCookie(w, r, tok)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *console) logout(w http.ResponseWriter, r *http.Request) {
	if tok := c.auth.sessionCookie(r); tok != "" {
		_ = c.st.DeleteLogin(r.Context(), hashToken(tok))
	}
	c.auth.clearCookie(w, r)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// --- helpers shared by pages and API ---

// parseDuration accepts Go durations and days ("1d").
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, ok := strings.CutSuffix(s, "d"); ok {
		d, err := strconv.Atoi(n)
		if err != nil || d <= 0 || d > 36500 {
			return 0, fmt.Errorf("%q is not a duration", s)
		}
		return time.Duration(d) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (15m, 1h, 1d)", s)
	}
	return d, nil
}

// feedFilter reads the feed's filters from a query.
func feedFilter(q url.Values, now time.Time) (store.FeedFilter, error) {
	f := store.FeedFilter{Agent: q.Get("agent"), Role: q.Get("role"), Rule: q.Get("rule"), Label: q.Get("label"),
		Table: q.Get("table"), Column: q.Get("column")}
	var err error
	if f.Since, err = parseTime(q.Get("since"), now); err != nil {
		return f, err
	}
	if f.Until, err = parseTime(q.Get("until"), now); err != nil {
		return f, err
	}
	if f.Since.IsZero() && q.Get("since") == "" {
		f.Since = now.Add(-24 * time.Hour)
	}
	return f, nil
}

// parseTime accepts a duration back from now ("1h") or RFC 3339.
func parseTime(s string, now time.Time) (time.Time, error) {
	if s == "" || s == "all" {
		return time.Time{}, nil
	}
	if d, err := parseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation("2006-01-02T15:04", s, time.UTC); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q: want a duration back from now (1h, 7d) or a time (2026-05-01T12:00:00Z)", s)
}

// recordPage is the raw audit page, behind login.
func (c *console) auditPage() http.Handler {
	if c.o.AuditFile == "" {
		return http.NotFoundHandler()
	}
	return AuditPage(c.o.AuditFile)
}

// reviewerOf is the approval package's view of the signed-in reviewer.
func reviewerOf(p *principal) approval.Reviewer { return approval.Reviewer{Name: p.User, Via: p.Via} }

// statusFor maps the approval and store errors to HTTP.
func statusFor(err error) int {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, store.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, approval.ErrInvalid):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// publicError is an error's text for a reviewer: the store's own errors
// can name SQL; those become a generic message (and a log line).
func (c *console) publicError(err error) string {
	if statusFor(err) == http.StatusInternalServerError {
		c.log.Error("console: request failed", "err", err)
		return "keyhole could not complete that; see its log"
	}
	return err.Error()
}
