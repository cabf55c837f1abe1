package admin

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/store"
)

// ProxyAuth trusts identity headers from an authenticating reverse proxy
// (config.ProxyAuth with its defaults filled).
type ProxyAuth struct {
	Trusted      []*net.IPNet
	UserHeader   string
	GroupsHeader string
	Approvers    []string
	Viewers      []string
}

// ParseTrusted turns IPs and CIDRs into networks.
func ParseTrusted(addrs []string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	for _, a := range addrs {
		if _, n, err := net.ParseCIDR(a); err == nil {
			out = append(out, n)
			continue
		}
		ip := net.ParseIP(a)
		if ip == nil {
			return nil, errors.New("proxy_auth.trusted: " + a + " is not an IP or CIDR")
		}
		bits := 32
		if ip.To4() == nil {
			bits = 128
		}
		out = append(out, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
	}
	return out, nil
}

// principal is an authenticated reviewer.
type principal struct {
	User string
	Role string
	Via  string // "password", "proxy" or "token"
	// session is the console session token (cookie), for CSRF; empty for
	// API tokens.
	session string
}

func (p *principal) approver() bool { return p.Role == RoleApprover }

type ctxKey struct{}

func principalOf(r *http.Request) *principal {
	p, _ := r.Context().Value(ctxKey{}).(*principal)
	return p
}

// Cookie names: with Secure, the __Host- prefix makes browsers refuse the
// cookie unless it is Secure, for the whole host and set by it.
const (
	cookieSecure = "__Host-keyhole"
	cookiePlain  = "keyhole_session"
)

// auth authenticates console and API requests.
type auth struct {
	users      *users
	store      *store.Store
	proxy      *ProxyAuth
	ttl        time.Duration
	secureAll  bool // the listener is TLS
	limiter    *identity.Limiter
	log        *slog.Logger
	auditEvent func(audit.Event)
}

// remoteIP is the connection's peer address.
func remoteIP(r *http.Request) net.IP {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return net.ParseIP(host)
}

func (a *auth) fromProxy(r *http.Request) bool {
	if a.proxy == nil {
		return false
	}
	ip := remoteIP(r)
	return ip != nil && slices.ContainsFunc(a.proxy.Trusted, func(n *net.IPNet) bool { return n.Contains(ip) })
}

// secure reports whether the browser reached keyhole over TLS (directly,
// or through the trusted proxy).
func (a *auth) secure(r *http.Request) bool {
	if a.secureAll || r.TLS != nil {
		return true
	}
	return a.fromProxy(r) && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// errUnauthenticated and friends are what authenticate reports.
var (
	errUnauthenticated = errors.New("authentication required")
	errForbidden       = errors.New("not allowed")
)

// authenticate identifies the reviewer: an API token (Authorization:
// Bearer), the trusted proxy's headers, or a console session cookie. It
// may set a session cookie (proxy logins). Headers claiming a proxy
// identity from an untrusted address are refused outright.
func (a *auth) authenticate(w http.ResponseWriter, r *http.Request) (*principal, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || !strings.HasPrefix(tok, APITokenPrefix) {
			return nil, errUnauthenticated
		}
		f, err := a.users.get()
		if err != nil {
			a.log.Error("console: reviewers file", "err", err)
			return nil, errUnauthenticated
		}
		name, u := f.byToken(tok)
		if u == nil {
			return nil, errUnauthenticated
		}
		return &principal{User: name, Role: u.Role, Via: "token"}, nil
	}
	if a.proxy != nil && r.Header.Get(a.proxy.UserHeader) != "" {
		if !a.fromProxy(r) {
			a.log.Warn("console: identity header from an untrusted address refused", "remote", r.RemoteAddr, "header", a.proxy.UserHeader)
			return nil, errForbidden
		}
		return a.proxyLogin(w, r)
	}
	tok := a.sessionCookie(r)
	if tok == "" {
		return nil, errUnauthenticated
	}
	l, err := a.store.Login(r.Context(), hashToken(tok))
	if err != nil {
		return nil, errUnauthenticated
	}
	p := &principal{User: l.User, Role: l.Role, Via: l.Method, session: tok}
	if l.Method == "password" {
		// The reviewers file decides, now: a removed reviewer, a changed
		// role or a changed password takes effect at the next request.
		f, err := a.users.get()
		if err != nil {
			return nil, errUnauthenticated
		}
		u := f.Reviewers[l.User]
		if u == nil || u.Password == "" || subtle.ConstantTimeCompare([]byte(l.SecretTag), []byte(passwordTag(u.Password))) != 1 {
			return nil, errUnauthenticated
		}
		p.Role = u.Role
	}
	return p, nil
}

// proxyLogin maps the proxy's user and groups to a role and gives the
// browser a keyhole session (for CSRF tokens).
func (a *auth) proxyLogin(w http.ResponseWriter, r *http.Request) (*principal, error) {
	user := strings.TrimSpace(r.Header.Get(a.proxy.UserHeader))
	if !validProxyUser(user) {
		return nil, errForbidden
	}
	names := []string{user}
	for _, g := range strings.Split(r.Header.Get(a.proxy.GroupsHeader), ",") {
		if g = strings.TrimSpace(g); g != "" {
			names = append(names, g)
		}
	}
	role := ""
	switch {
	case slices.ContainsFunc(names, func(n string) bool { return slices.Contains(a.proxy.Approvers, n) }):
		role = RoleApprover
	case slices.ContainsFunc(names, func(n string) bool { return slices.Contains(a.proxy.Viewers, n) }):
		role = RoleViewer
	default:
		return nil, errForbidden
	}
	if tok := a.sessionCookie(r); tok != "" {
		if l, err := a.store.Login(r.Context(), hashToken(tok)); err == nil && l.Method == "proxy" && l.User == user && l.Role == role {
			return &principal{User: user, Role: role, Via: "proxy", session: tok}, nil
		}
	}
	tok, err := a.newSession(r.Context(), user, role, "proxy", "")
	if err != nil {
		return nil, err
	}
	a.setCookie(w, r, tok)
	a.auditEvent(audit.Event{Kind: audit.KindReviewerLogin, Reviewer: user, AuthMethod: "proxy", Client: r.RemoteAddr, Role: role})
	return &principal{User: user, Role: role, Via: "proxy", session: tok}, nil
}

func validProxyUser(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// sessionCookie is the session token the browser sent. Over TLS only the
// __Host- cookie counts: a plain-named cookie can be planted by anyone
// who can answer the browser over plain HTTP or from a sibling domain
// (cookie tossing), which would sign the reviewer into a session the
// attacker chose (session fixation).
func (a *auth) sessionCookie(r *http.Request) string {
	name := cookiePlain
	if a.secure(r) {
		name = cookieSecure
	}
	if c, err := r.Cookie(name); err == nil && c.Value != "" {
		return c.Value
	}
	return ""
}

func hashToken(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

func (a *auth) newSession(ctx context.Context, user, role, method, secretTag string) (string, error) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	tok := base64.RawURLEncoding.EncodeToString(b)
	now := time.Now()
	if err := a.store.CreateLogin(ctx, store.Login{IDHash: hashToken(tok), User: user, Role: role, Method: method,
		SecretTag: secretTag, Created: now, Expires: now.Add(a.ttl)}); err != nil {
		return "", err
	}
	return tok, nil
}

// passwordTag identifies a reviewer's password hash in the sessions it
// opens: a session whose tag is not the reviewer's password's of now was
// opened with a password since changed (it leaked, say) and no longer
// counts. A digest, so the store keeps nothing a password could be
// guessed against.
func passwordTag(hash string) string {
	sum := sha256.Sum256([]byte("keyhole console session password v1\x00" + hash))
	return hex.EncodeToString(sum[:16])
}

// setCookie sets the session cookie: HttpOnly (no script reads it),
// SameSite=Strict (no cross-site request carries it), Secure and
// __Host- prefixed over TLS.
func (a *auth) setCookie(w http.ResponseWriter, r *http.Request, tok string) {
	name, secure := cookiePlain, a.secure(r)
	if secure {
		name = cookieSecure
	}
	http.SetCookie(w, &http.Cookie{Name: name, Value: tok, Path: "/", MaxAge: int(a.ttl.Seconds()), HttpOnly: true,
		Secure: secure, SameSite: http.SameSiteStrictMode})
}

func (a *auth) clearCookie(w http.ResponseWriter, r *http.Request) {
	for _, name := range []string{cookieSecure, cookiePlain} {
		http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
			Secure: name == cookieSecure, SameSite: http.SameSiteStrictMode})
	}
}

// login checks a password, rate-limited per (address, reviewer) like
// agents' secrets, and starts a console session.
func (a *auth) login(ctx context.Context, r *http.Request, user, password string) (string, string, error) {
	att, err := a.limiter.Begin(ctx, r.RemoteAddr, user)
	if err != nil {
		return "", "", err
	}
	f, ferr := a.users.get()
	var u *User
	if ferr == nil {
		u = f.Reviewers[user]
	}
	hash := dummyHash()
	if u != nil && u.Password != "" {
		hash = u.Password
	}
	verified, err := a.verify(ctx, hash, password)
	if err != nil {
		att.Done(nil)
		return "", "", identity.NewAuthError(identity.ReasonRateLimited, err)
	}
	ok := verified && u != nil && u.Password != ""
	if !ok {
		att.Done(identity.NewAuthError(identity.ReasonCredentials, errors.New("wrong reviewer name or password")))
		a.auditEvent(audit.Event{Kind: audit.KindReviewerFailed, Reviewer: failedReviewerName(user, u != nil), AuthMethod: "password", Client: r.RemoteAddr})
		return "", "", errUnauthenticated
	}
	att.Done(nil)
	tok, err := a.newSession(ctx, user, u.Role, "password", passwordTag(u.Password))
	if err != nil {
		return "", "", err
	}
	a.auditEvent(audit.Event{Kind: audit.KindReviewerLogin, Reviewer: user, AuthMethod: "password", Client: r.RemoteAddr, Role: u.Role})
	return tok, u.Role, nil
}

// maxVerifying bounds password checks running at once. An argon2id check
// takes argonMemory (64 MiB) for tens of milliseconds, and a login needs
// no account (unknown names check a dummy hash, for timing): without a
// bound, a few thousand concurrent logins with made-up names would take
// the process's memory. The per-(address, reviewer) limiter does not
// bound that; this does (at most 8 × 64 MiB).
var maxVerifying = max(4, min(runtime.NumCPU(), 8))

// verifySlots is shared by every console of the process (memory is).
var verifySlots = make(chan struct{}, maxVerifying)

// verify is VerifyPassword in one of the verifySlots, waiting for one
// while ctx lasts.
func (a *auth) verify(ctx context.Context, hash, password string) (bool, error) {
	select {
	case verifySlots <- struct{}{}:
	case <-ctx.Done():
		return false, fmt.Errorf("waiting to check a password: %w", ctx.Err())
	}
	defer func() { <-verifySlots }()
	if verifyHook != nil {
		verifyHook()
	}
	return VerifyPassword(hash, password), nil
}

// verifyHook runs inside a verify slot (tests measure concurrency).
var verifyHook func()

// csrfToken is the form token of a console session: an HMAC of a fixed
// string keyed by the session token, which only the session's browser
// holds (the cookie is HttpOnly) and keyhole sees on every request, so
// nothing needs storing.
func csrfToken(session string) string {
	m := hmac.New(sha256.New, []byte(session))
	m.Write([]byte("keyhole console csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkCSRF guards a state-changing request of a cookie session: the
// browser must say it came from this origin (or say nothing), and the
// request must carry the session's token (form field csrf or header
// X-CSRF-Token).
func checkCSRF(r *http.Request, p *principal) bool {
	if p.session == "" {
		return true // an API token: browsers do not send it on their own
	}
	if !sameOrigin(r) {
		return false
	}
	got := r.Header.Get("X-CSRF-Token")
	if got == "" {
		got = r.PostFormValue("csrf")
	}
	want := csrfToken(p.session)
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// sameOrigin rejects requests a browser marks as cross-site.
func sameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	return true
}

// failedReviewerName is how a failed login's name is recorded. A name in
// the reviewers file is recorded as typed. Anything else is most often a
// password typed into the name field (or the two swapped), so it is
// recorded as "unknown:" and a digest keyed for this process: repeated
// tries of one name show as one, and the audit log holds nothing a
// dictionary could be checked against.
func failedReviewerName(user string, known bool) string {
	if known {
		return user
	}
	m := hmac.New(sha256.New, unknownNameKey[:])
	m.Write([]byte(user))
	return "unknown:" + hex.EncodeToString(m.Sum(nil)[:6])
}

var unknownNameKey = func() (k [32]byte) {
	_, _ = rand.Read(k[:])
	return k
}()
