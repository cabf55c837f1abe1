package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keyholedb/keyhole/admin"
	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/store"
)

func init() {
	register("requests", "review agents' access requests: list, show, approve, deny, revoke", runRequests)
}

const requestsUsage = `usage:
  keyhole requests list [--status pending|approved|declined|blocked|all] [--agent NAME]
  keyhole requests show REQUEST
  keyhole requests approve REQUEST --for 1h --note WHY [--scope statement|access] [--only TABLE[.COLUMN]]... [--end-sessions]
  keyhole requests deny REQUEST --note WHY
  keyhole requests grants [--agent NAME] [--all]
  keyhole requests revoke GRANT --note WHY

Talks to a running keyhole's admin listener (the reviewers' API). Every
subcommand takes:
  --server URL   the admin listener (default $KEYHOLE_ADMIN_URL, else http://127.0.0.1:9090)
  --ca FILE      CA certificate that signed an https admin listener
  --json         print the API's JSON (for scripts) instead of text
The API token comes from $KEYHOLE_API_TOKEN (keyhole reviewers token makes
one); never from a flag, where other users could read it.

approve grants what the request asks for, for --for (15m, 1h, 1d, up to the
server's approvals.max_duration): --scope statement (default) allows exactly
that statement shape; --scope access allows the same tables and columns in
any statement of the agent. --only narrows the grant to some of the
request's tables or columns.

Exit status: 0 done, 1 refused by the server (not found, conflict, not
allowed), 2 usage or connection error.
`

type apiClient struct {
	base  *url.URL
	token string
	hc    *http.Client
}

func runRequests(args []string) int { return requestsMain(args, os.Stdout, os.Stderr, os.Getenv) }

func requestsMain(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if code, ok := subcommand(args, requestsUsage, stdout, stderr); !ok {
		return code
	}
	sub, rest := args[0], args[1:]
	var id string
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		id, rest = rest[0], rest[1:]
	}
	fs := flag.NewFlagSet("keyhole requests "+sub, flag.ContinueOnError)
	server := fs.String("server", "", "")
	ca := fs.String("ca", "", "")
	asJSON := fs.Bool("json", false, "")
	status := fs.String("status", "pending", "")
	agent := fs.String("agent", "", "")
	all := fs.Bool("all", false, "")
	dur := fs.String("for", "", "")
	note := fs.String("note", "", "")
	scope := fs.String("scope", "statement", "")
	end := fs.Bool("end-sessions", false, "")
	var only multiFlag
	fs.Var(&only, "only", "")
	if code, ok := cliFlags(fs, rest, requestsUsage, stdout, stderr); !ok {
		return code
	}
	needID := sub == "show" || sub == "approve" || sub == "deny" || sub == "revoke"
	if needID && id == "" {
		fmt.Fprintf(stderr, "keyhole requests %s: which one? (an id)\n%s", sub, requestsUsage)
		return exitError
	}
	if !needID && id != "" {
		fmt.Fprintf(stderr, "keyhole requests %s: unexpected argument %q\n%s", sub, id, requestsUsage)
		return exitError
	}
	c, err := newAPIClient(*server, *ca, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "keyhole requests: %v\n", err)
		return exitError
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var out any
	switch sub {
	case "list":
		var reqs []store.Request
		q := url.Values{"status": {*status}, "agent": {*agent}}
		if err = c.do(http.MethodGet, "/api/v1/requests?"+q.Encode(), nil, &reqs); err == nil {
			out = reqs
			if !*asJSON {
				printRequests(stdout, reqs)
			}
		}
	case "show":
		var d admin.RequestDetail
		if err = c.do(http.MethodGet, "/api/v1/requests/"+url.PathEscape(id), nil, &d); err == nil {
			out = d
			if !*asJSON {
				printRequest(stdout, &d)
			}
		}
	case "approve":
		if *dur == "" || strings.TrimSpace(*note) == "" {
			fmt.Fprintf(stderr, "keyhole requests approve: --for and --note are required\n%s", requestsUsage)
			return exitError
		}
		body := admin.ApproveBody{For: *dur, Scope: *scope, Note: *note}
		if set["end-sessions"] {
			body.EndSessions = end
		}
		if len(only) > 0 {
			var d admin.RequestDetail
			if err = c.do(http.MethodGet, "/api/v1/requests/"+url.PathEscape(id), nil, &d); err != nil {
				break
			}
			if body.Access, err = narrow(d.Request.Grantable, only); err != nil {
				fmt.Fprintf(stderr, "keyhole requests approve: %v\n", err)
				return exitError
			}
		}
		var g store.Grant
		if err = c.do(http.MethodPost, "/api/v1/requests/"+url.PathEscape(id)+"/approve", body, &g); err == nil {
			out = g
			if !*asJSON {
				fmt.Fprintf(stdout, "approved %s: grant %s for %s until %s\n", id, g.ID, g.Agent, g.Expires.UTC().Format(time.RFC3339))
				printAccess(stdout, g.Access)
			}
		}
	case "deny":
		var r store.Request
		if err = c.do(http.MethodPost, "/api/v1/requests/"+url.PathEscape(id)+"/deny", admin.NoteBody{Note: *note}, &r); err == nil {
			out = r
			if !*asJSON {
				fmt.Fprintf(stdout, "declined %s (agent %s)\n", id, r.Agent)
			}
		}
	case "grants":
		var gs []store.Grant
		q := url.Values{"agent": {*agent}}
		if *all {
			q.Set("all", "1")
		}
		if err = c.do(http.MethodGet, "/api/v1/grants?"+q.Encode(), nil, &gs); err == nil {
			out = gs
			if !*asJSON {
				printGrants(stdout, gs)
			}
		}
	case "revoke":
		var g store.Grant
		if err = c.do(http.MethodPost, "/api/v1/grants/"+url.PathEscape(id)+"/revoke", admin.NoteBody{Note: *note}, &g); err == nil {
			out = g
			if !*asJSON {
				fmt.Fprintf(stdout, "revoked %s (agent %s)\n", g.ID, g.Agent)
			}
		}
	default:
		fmt.Fprintf(stderr, "keyhole requests: unknown subcommand %q\n%s", sub, requestsUsage)
		return exitError
	}
	if err != nil {
		fmt.Fprintf(stderr, "keyhole requests %s: %v\n", sub, err)
		var se *serverError
		if errors.As(err, &se) {
			return exitDeny
		}
		return exitError
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	}
	return exitOK
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// narrow keeps, of what a request asks, the tables and columns named.
func narrow(offered []sqlpolicy.Exception, only []string) ([]sqlpolicy.Exception, error) {
	var out []sqlpolicy.Exception
	used := map[string]bool{}
	for _, e := range offered {
		if contains(only, e.Table) {
			used[e.Table] = true
			out = append(out, e)
			continue
		}
		if e.Columns == nil {
			continue
		}
		var cols []string
		for _, c := range e.Columns {
			if contains(only, e.Table+"."+c) {
				used[e.Table+"."+c] = true
				cols = append(cols, c)
			}
		}
		if len(cols) > 0 {
			e.Columns = cols
			out = append(out, e)
		}
	}
	for _, o := range only {
		if !used[o] {
			return nil, fmt.Errorf("--only %s: the request does not ask for it", o)
		}
	}
	return out, nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

type serverError struct {
	code int
	msg  string
}

func (e *serverError) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.msg, e.code) }

func newAPIClient(server, caFile string, getenv func(string) string) (*apiClient, error) {
	if server == "" {
		server = getenv("KEYHOLE_ADMIN_URL")
	}
	if server == "" {
		server = "http://127.0.0.1:9090"
	}
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--server %q: want http(s)://HOST:PORT", server)
	}
	tok := getenv("KEYHOLE_API_TOKEN")
	if tok == "" {
		return nil, errors.New("KEYHOLE_API_TOKEN is not set (keyhole reviewers token makes one)")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca %s: no certificate", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &apiClient{base: u, token: tok, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

func (c *apiClient) do(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, strings.TrimSuffix(c.base.String(), "/")+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("reach keyhole's admin listener: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = http.StatusText(resp.StatusCode)
		}
		if resp.StatusCode == http.StatusUnauthorized {
			return fmt.Errorf("%s (HTTP 401)", e.Error)
		}
		return &serverError{code: resp.StatusCode, msg: e.Error}
	}
	return json.Unmarshal(data, out)
}

// safeLine keeps agent-written text on one line of a terminal, escape
// sequences shown rather than interpreted.
func safeLine(s string) string { return termSafe(oneLine(s)) }

func printRequests(w io.Writer, reqs []store.Request) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tAGENT\tCOUNT\tLAST SEEN\tSTATEMENT")
	for _, r := range reqs {
		st := safeLine(r.Statement)
		if len(st) > 80 {
			st = st[:77] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", r.ID, r.Status, safeLine(r.Agent), r.Count, r.LastSeen.UTC().Format(time.RFC3339), st)
	}
	_ = tw.Flush()
}

func printRequest(w io.Writer, d *admin.RequestDetail) {
	r := d.Request
	fmt.Fprintf(w, "request:   %s (%s)\nagent:     %s (role %s)\n", r.ID, r.Status, safeLine(r.Agent), safeLine(r.Role))
	if r.Purpose != "" {
		fmt.Fprintf(w, "purpose:   %s\n", safeLine(r.Purpose))
	}
	fmt.Fprintf(w, "statement: %s\ndenied:    %d times, first %s, last %s\nrule:      %s\n", safeLine(r.Statement), r.Count,
		r.FirstSeen.UTC().Format(time.RFC3339), r.LastSeen.UTC().Format(time.RFC3339), r.Rule)
	for _, rs := range r.Reasons {
		fmt.Fprintf(w, "reason:    %s\n", safeLine(audit.FormatReason(rs)))
	}
	if len(r.Grantable) > 0 {
		fmt.Fprintln(w, "grantable:")
		printAccess(w, r.Grantable)
	} else {
		fmt.Fprintf(w, "grantable: nothing (%s)\n", r.WhyNot)
	}
	if r.DecidedBy != "" {
		fmt.Fprintf(w, "decided:   %s by %s at %s: %s\n", r.Status, r.DecidedBy, r.DecidedAt.UTC().Format(time.RFC3339), safeLine(r.Note))
	}
	for _, g := range d.Grants {
		fmt.Fprintf(w, "grant:     %s until %s by %s\n", g.ID, g.Expires.UTC().Format(time.RFC3339), g.ApprovedBy)
	}
}

func printAccess(w io.Writer, ex []sqlpolicy.Exception) {
	for _, e := range ex {
		cols := "all columns"
		if e.Columns != nil {
			cols = strings.Join(e.Columns, ", ")
		}
		line := fmt.Sprintf("  %s %s (%s)", e.Verb, e.Table, cols)
		if len(e.Labels) > 0 {
			line += " lifting " + strings.Join(e.Labels, ", ")
		}
		fmt.Fprintln(w, safeLine(line))
	}
}

func printGrants(w io.Writer, gs []store.Grant) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GRANT\tAGENT\tSCOPE\tUNTIL\tBY\tACCESS")
	for _, g := range gs {
		var acc []string
		for _, e := range g.Access {
			s := string(e.Verb) + " " + e.Table
			if e.Columns != nil {
				s += "(" + strings.Join(e.Columns, ",") + ")"
			}
			acc = append(acc, s)
		}
		until := g.Expires.UTC().Format(time.RFC3339)
		if !g.RevokedAt.IsZero() {
			until = "revoked " + g.RevokedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", g.ID, safeLine(g.Agent), g.Scope, until, g.ApprovedBy, safeLine(strings.Join(acc, "; ")))
	}
	_ = tw.Flush()
}
