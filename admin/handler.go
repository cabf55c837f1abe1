package admin

import (
	"html/template"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// Review page limits.
const (
	defaultAuditLimit = 200
	maxAuditLimit     = 5000
	maxHealthReason   = 200
)

// HandlerOptions configure Handler. Nil/empty parts answer 404.
type HandlerOptions struct {
	Metrics *Metrics
	// Health returns nil when keyhole can serve; its error text is shown
	// on /healthz and must carry no secret.
	Health func() error
	// Console is the reviewers' console and API (NewConsole), served for
	// every path but /metrics, /healthz and /debug/pprof/.
	Console http.Handler
	// Pprof serves Go's profiler under /debug/pprof/ (off by default: a
	// profile can hold statement text and costs CPU while it runs).
	Pprof bool
}

// Handler serves /metrics, /healthz, the console and, when enabled,
// /debug/pprof/ (GET and HEAD only).
func Handler(opts HandlerOptions) http.Handler {
	mux := http.NewServeMux()
	if opts.Metrics != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Metrics.Registry(), promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		var err error
		if opts.Health != nil {
			err = opts.Health()
		}
		if err != nil {
			slog.Warn("healthz: unhealthy", "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("unhealthy: " + shortReason(err.Error()) + "\n"))
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	if opts.Console != nil {
		// The reviewers' console and API: everything but health, metrics
		// and the profiler, behind its own authentication.
		mux.Handle("/", opts.Console)
	}
	if opts.Pprof {
		// A profile can hold statement text (and the heap, secrets): with
		// a console, only its signed-in reviewers get one. pprof.Index
		// serves the named profiles (heap, goroutine, …) below it; the
		// others need their own handlers.
		protect := func(h http.HandlerFunc) http.Handler { return h }
		if p, ok := opts.Console.(protector); ok {
			protect = func(h http.HandlerFunc) http.Handler { return p.Protect(h) }
		}
		mux.Handle("GET /debug/pprof/", protect(pprof.Index))
		mux.Handle("GET /debug/pprof/cmdline", protect(pprof.Cmdline))
		mux.Handle("GET /debug/pprof/profile", protect(pprof.Profile))
		mux.Handle("GET /debug/pprof/symbol", protect(pprof.Symbol))
		mux.Handle("GET /debug/pprof/trace", protect(pprof.Trace))
	}
	return mux
}

// shortReason keeps one line of at most maxHealthReason bytes.
func shortReason(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	if len(s) > maxHealthReason {
		s = s[:maxHealthReason] + "…"
	}
	return s
}

// AuditPage is the raw audit log page (the JSONL file and its rotations,
// filtered by agent and time). It has no authentication of its own: the
// console serves it behind login.
func AuditPage(file string) http.Handler { return &reviewPage{file: file, now: time.Now} }

type reviewPage struct {
	file string
	now  func() time.Time
}

// parseSince accepts a duration back from now ("1h", "30m") or an RFC 3339
// time.
func parseSince(s string, now time.Time) (time.Time, bool) {
	if s == "" {
		return time.Time{}, true
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), true
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, true
	}
	return time.Time{}, false
}

type row struct {
	Time      string
	Kind      string
	Agent     string
	Role      string
	Client    string
	Session   string
	Statement string
	Decision  string
	Rule      string
	Reasons   []string
	Error     string
	Blocked   bool
}

type pageData struct {
	Agent, Since string
	All          bool
	Limit        int
	File         string
	Rows         []row
	Error        string
}

func (p *reviewPage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// The page shows statements agents wrote: nothing in it may run.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")

	q := r.URL.Query()
	d := pageData{Agent: q.Get("agent"), Since: q.Get("since"), All: q.Get("all") == "1", Limit: defaultAuditLimit, File: p.file}
	status := http.StatusOK
	since, ok := parseSince(d.Since, p.now())
	if !ok {
		status, d.Error = http.StatusBadRequest, "since must be a duration like 1h or an RFC 3339 time"
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n <= 0 {
			status, d.Error = http.StatusBadRequest, "limit must be a positive number"
		} else {
			d.Limit = min(n, maxAuditLimit)
		}
	}
	if status == http.StatusOK {
		evs, err := audit.ReadFile(p.file, audit.Filter{Blocked: !d.All, Agent: d.Agent, Since: since, Limit: d.Limit})
		if err != nil {
			slog.Error("audit page: read failed", "file", p.file, "err", err)
			status, d.Error = http.StatusInternalServerError, "cannot read the audit file; see the keyhole log"
		}
		for i := range evs {
			d.Rows = append(d.Rows, toRow(&evs[i]))
		}
	}
	w.WriteHeader(status)
	if err := pageTmpl.Execute(w, d); err != nil {
		slog.Error("audit page: render failed", "err", err)
	}
}

func toRow(ev *audit.Event) row {
	rw := row{
		Time: ev.Time.UTC().Format(time.RFC3339), Kind: string(ev.Kind), Agent: ev.Agent, Role: ev.Role,
		Client: ev.Client, Session: ev.Session, Statement: ev.Statement, Decision: string(ev.Decision),
		Rule: ev.Rule, Blocked: ev.Blocked(),
	}
	if ev.ErrorCode != "" || ev.Error != "" {
		rw.Error = strings.TrimSpace(ev.ErrorCode + " " + ev.Error)
	}
	for _, r := range ev.Reasons {
		if r.Code == sqlpolicy.ReasonAllowedByRule && ev.Decision == sqlpolicy.Deny {
			continue
		}
		rw.Reasons = append(rw.Reasons, audit.FormatReason(r))
	}
	return rw
}

// pageTmpl is html/template: every value is escaped for its context.
var pageTmpl = template.Must(template.New("audit").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>keyhole — {{if .All}}audit events{{else}}blocked statements{{end}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4}pre{margin:0;white-space:pre-wrap;word-break:break-word;font-size:.9em}
tr.blocked td:first-child{border-left:4px solid #c33}ul{margin:0;padding-left:1.1em}.err{color:#a00}.muted{color:#777}
form{margin-bottom:1em}input{margin-right:.8em}
</style></head><body>
<h1>{{if .All}}Audit events{{else}}Blocked statements{{end}}</h1>
<form method="get" action="">
<label>agent <input name="agent" value="{{.Agent}}"></label>
<label>since <input name="since" value="{{.Since}}" placeholder="1h or 2026-01-02T15:04:05Z"></label>
<label>limit <input name="limit" value="{{.Limit}}" size="5"></label>
<label><input type="checkbox" name="all" value="1"{{if .All}} checked{{end}}> all events</label>
<button type="submit">show</button>
</form>
{{if .Error}}<p class="err">{{.Error}}</p>{{end}}
<p class="muted">{{len .Rows}} event(s), newest first, from {{.File}}</p>
<table>
<thead><tr><th>time (UTC)</th><th>agent</th><th>kind</th><th>statement</th><th>decision</th><th>rule</th><th>reasons</th><th>session</th></tr></thead>
<tbody>
{{range .Rows}}<tr{{if .Blocked}} class="blocked"{{end}}>
<td>{{.Time}}</td>
<td>{{.Agent}}{{if .Role}}<br><span class="muted">{{.Role}}</span>{{end}}</td>
<td>{{.Kind}}</td>
<td><pre>{{.Statement}}</pre>{{if .Error}}<span class="err">{{.Error}}</span>{{end}}</td>
<td>{{.Decision}}</td>
<td>{{.Rule}}</td>
<td>{{if .Reasons}}<ul>{{range .Reasons}}<li>{{.}}</li>{{end}}</ul>{{end}}</td>
<td class="muted">{{.Session}}{{if .Client}}<br>{{.Client}}{{end}}</td>
</tr>
{{else}}<tr><td colspan="8" class="muted">no events</td></tr>
{{end}}</tbody></table>
</body></html>
`))

// protector is a console that can put a handler behind its login (the
// profiler, when there is a console).
type protector interface {
	Protect(http.Handler) http.Handler
}
