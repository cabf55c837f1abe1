package admin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/keyholedb/keyhole/approval"
	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/store"
)

var funcs = template.FuncMap{
	"reason": func(r sqlpolicy.Reason) string { return audit.FormatReason(r) },
	"join":   strings.Join,
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return shortDuration(time.Since(t)) + " ago"
	},
	"left": func(t time.Time) string { return shortDuration(time.Until(t)) + " left" },
	"ms":   func(t time.Time) int64 { return t.UnixMilli() },
	"dur":  shortDuration,
}

func shortDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d >= 24*time.Hour && d%(24*time.Hour) == 0:
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	case d >= time.Hour:
		return strings.TrimSuffix(d.Truncate(time.Minute).String(), "0s")
	case d >= time.Minute:
		return strings.TrimSuffix(d.Truncate(time.Second).String(), "0s")
	}
	return d.Truncate(time.Second).String()
}

var pageNames = []string{"feed", "statement", "requests", "request", "grants", "agents", "matrix", "unlabelled", "error"}

func parsePages() (map[string]*template.Template, error) {
	base, err := template.New("base").Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/login.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{"login": base}
	for _, n := range pageNames {
		t, err := template.Must(base.Clone()).ParseFS(assets, "templates/"+n+".html")
		if err != nil {
			return nil, fmt.Errorf("admin: template %s: %w", n, err)
		}
		out[n] = t
	}
	return out, nil
}

type navItem struct {
	Name, Href string
	On         bool
}

type page struct {
	Title, User, Role, CSRF string
	Nav                     []navItem
	Data                    any
}

var nav = []navItem{{"Blocked", "/console/", false}, {"Requests", "/console/requests", false}, {"Grants", "/console/grants", false},
	{"Agents", "/console/agents", false}, {"Matrix", "/console/matrix", false}, {"Unlabelled PII", "/console/unlabelled", false},
	{"Audit log", "/console/audit", false}}

// render writes a page of the layout; data must carry no template.HTML:
// everything in it is escaped for where it lands.
func (c *console) render(w http.ResponseWriter, r *http.Request, name, title string, data any) {
	p := principalOf(r)
	pg := page{Title: title, Data: data}
	if p != nil {
		pg.User, pg.Role, pg.CSRF = p.User, p.Role, csrfToken(p.session)
	}
	for _, n := range nav {
		n.On = n.Href == r.URL.Path
		pg.Nav = append(pg.Nav, n)
	}
	c.exec(w, name, "layout", pg)
}

func (c *console) renderPlain(w http.ResponseWriter, name string, data any) {
	c.exec(w, name, name, data)
}

// exec renders into a buffer first, so a template error never leaves half
// a page.
func (c *console) exec(w http.ResponseWriter, set, tmpl string, data any) {
	var b bytes.Buffer
	if err := c.pages[set].ExecuteTemplate(&b, tmpl, data); err != nil {
		c.log.Error("console: render", "page", set, "err", err)
		http.Error(w, "render failed; see the keyhole log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(b.Bytes())
}

func (c *console) routesConsole(mux *http.ServeMux) {
	mux.HandleFunc("GET /console/{$}", c.feedPage)
	mux.HandleFunc("GET /console/feed/rows", c.feedRows)
	mux.HandleFunc("GET /console/events", c.events)
	mux.HandleFunc("GET /console/statements/{fp}", c.statementPage)
	mux.HandleFunc("GET /console/requests", c.requestsPage)
	mux.HandleFunc("GET /console/requests/rows", c.requestRows)
	mux.HandleFunc("GET /console/requests/{id}", c.requestPage)
	mux.HandleFunc("POST /console/requests/{id}/approve", c.approvePost)
	mux.HandleFunc("POST /console/requests/{id}/deny", c.denyPost)
	mux.HandleFunc("GET /console/grants", c.grantsPage)
	mux.HandleFunc("GET /console/grants/rows", c.grantRows)
	mux.HandleFunc("POST /console/grants/{id}/revoke", c.revokePost)
	mux.HandleFunc("GET /console/agents", c.agentsPage)
	mux.HandleFunc("GET /console/matrix", c.matrixPage)
	mux.HandleFunc("GET /console/unlabelled", c.unlabelledPage)
	mux.Handle("GET /console/audit", c.auditPage())
	mux.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, r, false, http.StatusNotFound, "no such page")
	})
}

type feedData struct {
	Filter       store.FeedFilter
	Since, Until string
	RowsURL      string
	Groups       []store.FeedGroup
	Error        string
}

func (c *console) feed(r *http.Request) (*feedData, int) {
	q := r.URL.Query()
	d := &feedData{Since: q.Get("since"), Until: q.Get("until"), RowsURL: "/console/feed/rows?" + q.Encode()}
	f, err := feedFilter(q, time.Now())
	d.Filter = f
	if err != nil {
		d.Error = err.Error()
		return d, http.StatusBadRequest
	}
	if d.Groups, err = c.st.Feed(r.Context(), f); err != nil {
		d.Error = c.publicError(err)
		return d, http.StatusInternalServerError
	}
	return d, http.StatusOK
}

func (c *console) feedPage(w http.ResponseWriter, r *http.Request) {
	d, code := c.feed(r)
	w.WriteHeader(code)
	c.render(w, r, "feed", "Blocked statements", d)
}

func (c *console) feedRows(w http.ResponseWriter, r *http.Request) {
	d, code := c.feed(r)
	if code != http.StatusOK {
		http.Error(w, d.Error, code)
		return
	}
	c.exec(w, "feed", "feedrows", d)
}

// events is a server-sent event stream: "change" whenever the feed,
// requests or grants may have changed (on any replica); the page then
// fetches the parts it shows.
func (c *console) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	ch, cancel := c.svc.Subscribe()
	defer cancel()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprint(w, "retry: 2000\n\n")
	fl.Flush()
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-c.o.Done:
			return
		case <-keep.C:
			_, _ = fmt.Fprint(w, ": keep-alive\n\n")
		case <-ch:
			_, _ = fmt.Fprintf(w, "event: change\ndata: %d\n\n", time.Now().UnixMilli())
		}
		fl.Flush()
	}
}

type statementData struct {
	Fingerprint, Statement string
	Requests               []store.Request
	Denials                []store.Denial
}

func (c *console) statementPage(w http.ResponseWriter, r *http.Request) {
	fp := r.PathValue("fp")
	reqs, err := c.st.Requests(r.Context(), store.RequestFilter{Fingerprint: fp,
		Statuses: []store.Status{store.StatusPending, store.StatusApproved, store.StatusDeclined, store.StatusBlocked}})
	if err != nil {
		c.fail(w, r, false, statusFor(err), c.publicError(err))
		return
	}
	if len(reqs) == 0 {
		c.fail(w, r, false, http.StatusNotFound, "no blocked statement of that shape is kept")
		return
	}
	ds, err := c.st.Denials(r.Context(), store.DenialFilter{Fingerprint: fp, Limit: 100})
	if err != nil {
		c.fail(w, r, false, statusFor(err), c.publicError(err))
		return
	}
	c.render(w, r, "statement", "Blocked statement", statementData{Fingerprint: fp, Statement: reqs[0].Statement, Requests: reqs, Denials: ds})
}

type requestsData struct {
	Pending, Decided []store.Request
}

func (c *console) requests(ctx context.Context) (*requestsData, error) {
	p, err := c.st.Requests(ctx, store.RequestFilter{Statuses: []store.Status{store.StatusPending}})
	if err != nil {
		return nil, err
	}
	d, err := c.st.Requests(ctx, store.RequestFilter{Statuses: []store.Status{store.StatusApproved, store.StatusDeclined}, Limit: 50})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(d, func(i, j int) bool { return d[i].DecidedAt.After(d[j].DecidedAt) })
	return &requestsData{Pending: p, Decided: d}, nil
}

func (c *console) requestsPage(w http.ResponseWriter, r *http.Request) {
	d, err := c.requests(r.Context())
	if err != nil {
		c.fail(w, r, false, statusFor(err), c.publicError(err))
		return
	}
	c.render(w, r, "requests", "Access requests", d)
}

func (c *console) requestRows(w http.ResponseWriter, r *http.Request) {
	d, err := c.requests(r.Context())
	if err != nil {
		http.Error(w, c.publicError(err), statusFor(err))
		return
	}
	c.exec(w, "requests", "requestrows", d)
}

type approveForm struct {
	Req         store.Request
	CSRF        string
	Digest      string
	Durations   []time.Duration
	Max         time.Duration
	EndSessions bool
}

type requestData struct {
	Detail     *RequestDetail
	CanApprove bool
	Form       approveForm
}

func (c *console) requestPage(w http.ResponseWriter, r *http.Request) {
	d, err := c.requestDetail(r.Context(), r.PathValue("id"))
	if err != nil {
		c.fail(w, r, false, statusFor(err), c.publicError(err))
		return
	}
	p := principalOf(r)
	st := d.Request.Status
	c.render(w, r, "request", "Access request", requestData{Detail: d,
		CanApprove: p.approver() && len(d.Request.Grantable) > 0 && (st == store.StatusPending || st == store.StatusDeclined),
		Form: approveForm{Req: d.Request, CSRF: csrfToken(p.session), Digest: grantableDigest(d.Request.Grantable), Durations: c.o.Durations, Max: c.svc.MaxDuration(),
			EndSessions: c.svc.EndSessionsDefault()}})
}

// approvePost reads the console's approval form: the grantable items
// ticked (item=i), their columns ticked (col-i), a preset or custom
// duration, the scope and the note.
func (c *console) approvePost(w http.ResponseWriter, r *http.Request) {
	if !c.approverOr403(w, r, false) {
		return
	}
	id := r.PathValue("id")
	req, err := c.st.Request(r.Context(), id)
	if err != nil {
		c.fail(w, r, false, statusFor(err), c.publicError(err))
		return
	}
	if err := r.ParseForm(); err != nil {
		c.fail(w, r, false, http.StatusBadRequest, "bad form")
		return
	}
	f := r.PostForm
	// The form names what to grant by position in the request's
	// grantable list, read again now: if the list changed since the page
	// was rendered (the policy changed, or the agent's later denials of the
	// shape asked for something else), the reviewer would approve what
	// they did not see.
	if f.Get("grantable") != grantableDigest(req.Grantable) {
		c.fail(w, r, false, http.StatusConflict, "the request changed since this page was shown; reload it and review it again")
		return
	}
	dur := f.Get("for")
	if dur == "custom" {
		dur = f.Get("custom")
	}
	d, err := parseDuration(dur)
	if err != nil {
		c.fail(w, r, false, http.StatusBadRequest, err.Error())
		return
	}
	var access []sqlpolicy.Exception
	for _, v := range f["item"] {
		i, err := strconv.Atoi(v)
		if err != nil || i < 0 || i >= len(req.Grantable) {
			c.fail(w, r, false, http.StatusBadRequest, "the request changed; reload it")
			return
		}
		e := req.Grantable[i]
		if e.Columns != nil {
			e.Columns = f["col-"+v]
			if e.Columns == nil {
				e.Columns = []string{}
			}
		}
		access = append(access, e)
	}
	if len(access) == 0 {
		c.fail(w, r, false, http.StatusBadRequest, "tick at least one thing to grant")
		return
	}
	end := f.Get("end_sessions") == "1"
	_, err = c.svc.Approve(r.Context(), reviewerOf(principalOf(r)), id, approval.Approve{For: d, Scope: store.Scope(f.Get("scope")),
		Access: access, Note: f.Get("note"), EndSessions: &end})
	if err != nil {
		c.fail(w, r, false, statusFor(err), c.publicError(err))
		return
	}
	http.Redirect(w, r, "/console/grants", http.StatusSeeOther)
}

func (c *console) denyPost(w http.ResponseWriter, r *http.Request) {
	if !c.approverOr403(w, r, false) {
		return
	}
	if _, err := c.svc.Decline(r.Context(), reviewerOf(principalOf(r)), r.PathValue("id"), r.PostFormValue("note")); err != nil {
		c.fail(w, r, false, statusFor(err), c.publicError(err))
		return
	}
	http.Redirect(w, r, "/console/requests", http.StatusSeeOther)
}

type grantsData struct {
	Active, Ended []store.Grant
	CSRF          string
	CanRevoke     bool
}

func (c *console) grants(r *http.Request) (*grantsData, error) {
	now := time.Now()
	active, err := c.st.Grants(r.Context(), store.GrantFilter{ActiveAt: now})
	if err != nil {
		return nil, err
	}
	all, err := c.st.Grants(r.Context(), store.GrantFilter{Limit: 100})
	if err != nil {
		return nil, err
	}
	p := principalOf(r)
	d := &grantsData{Active: active, CSRF: csrfToken(p.session), CanRevoke: p.approver()}
	for _, g := range all {
		if !g.Active(now) {
			d.Ended = append(d.Ended, g)
		}
	}
	return d, nil
}

func (c *console) grantsPage(w http.ResponseWriter, r *http.Request) {
	d, err := c.grants(r)
	if err != nil {
		c.fail(w, r, false, statusFor(err), c.publicError(err))
		return
	}
	c.render(w, r, "grants", "Grants", d)
}

func (c *console) grantRows(w http.ResponseWriter, r *http.Request) {
	d, err := c.grants(r)
	if err != nil {
		http.Error(w, c.publicError(err), statusFor(err))
		return
	}
	c.exec(w, "grants", "grantrows", d)
}

func (c *console) revokePost(w http.ResponseWriter, r *http.Request) {
	if !c.approverOr403(w, r, false) {
		return
	}
	if _, err := c.svc.Revoke(r.Context(), reviewerOf(principalOf(r)), r.PathValue("id"), r.PostFormValue("note")); err != nil {
		c.fail(w, r, false, statusFor(err), c.publicError(err))
		return
	}
	http.Redirect(w, r, "/console/grants", http.StatusSeeOther)
}

func (c *console) agentsPage(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	as, err := c.st.Agents(r.Context(), now.Add(-30*time.Second), now.Add(-24*time.Hour))
	if err != nil {
		c.fail(w, r, false, statusFor(err), c.publicError(err))
		return
	}
	if c.o.Policy != nil {
		for i := range as {
			if role := c.o.Policy.RoleOf(as[i].Name); role != "" {
				as[i].Role = role
			}
		}
	}
	c.render(w, r, "agents", "Agents", map[string]any{"Agents": as})
}

func (c *console) matrixPage(w http.ResponseWriter, r *http.Request) {
	var roles []MatrixRole
	if c.o.Policy != nil {
		roles = c.o.Policy.Matrix()
	}
	c.render(w, r, "matrix", "Role × table × column", map[string]any{"Roles": roles})
}

func (c *console) unlabelledPage(w http.ResponseWriter, r *http.Request) {
	var cols []UnlabelledColumn
	if c.o.Policy != nil {
		cols = c.o.Policy.Unlabelled()
	}
	c.render(w, r, "unlabelled", "Unlabelled columns that look like personal data", map[string]any{"Columns": cols})
}

// grantableDigest identifies what a request offered when its approval
// form was rendered.
func grantableDigest(g []sqlpolicy.Exception) string {
	b, _ := json.Marshal(g)
	h := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(h[:16])
}
