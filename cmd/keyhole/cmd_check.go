package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

func init() {
	register("check", "decide SQL against a policy without running it", runCheck)
}

const checkUsage = `usage: keyhole check --policy FILE (--dsn URL | --catalog FILE) --agent NAME [--json] [SQL]

check decides SQL for an agent exactly as the proxy would, without running
it. The catalog comes from the database (--dsn, read-only introspection) or
from a file written by 'keyhole catalog dump' (--catalog); its dialect
picks the analyzer. --dsn is a Postgres DSN (postgres://USER@HOST/DB or
key=value; password from PGPASSWORD) or a MySQL/MariaDB URL
(mysql://USER@HOST[:PORT]/DB; password from MYSQL_PWD).

With SQL, it prints the decision (--json: as JSON) and exits 0 when the
statement is allowed, 1 when it is denied, 2 on error.

Without SQL, it reads JSON lines {"id": ..., "sql": "..."} from stdin and
writes one JSON line per input:
  {"id": ..., "decision": "allow"|"deny", "rule": ..., "reasons": [...],
   "message": ..., "detail": ..., "hint": ...}
Each line is decided in a fresh session. A malformed line gets
{"id": ..., "error": "..."} and makes the exit status 2 once all lines are
done; otherwise the exit status is 0.
`

// maxCheckLine bounds one JSON input line (a statement plus its id).
const maxCheckLine = 16 << 20

func runCheck(args []string) int {
	fs := flag.NewFlagSet("keyhole check", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	policyFile := fs.String("policy", "", "policy file")
	dsn := fs.String("dsn", "", "upstream DSN (postgres:// or mysql://) to read the catalog from")
	catFile := fs.String("catalog", "", "catalog file written by 'keyhole catalog dump'")
	agent := fs.String("agent", "", "agent name to decide for")
	asJSON := fs.Bool("json", false, "print the decision as JSON")
	timeout := fs.Duration("timeout", time.Minute, "give up loading the catalog after this long")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(os.Stdout, checkUsage)
			return exitOK
		}
		fmt.Fprintf(os.Stderr, "keyhole check: %v\n%s", err, checkUsage)
		return exitError
	}
	switch {
	case *policyFile == "":
		fmt.Fprintf(os.Stderr, "keyhole check: --policy is required\n%s", checkUsage)
		return exitError
	case (*dsn == "") == (*catFile == ""):
		fmt.Fprintf(os.Stderr, "keyhole check: give exactly one of --dsn and --catalog\n%s", checkUsage)
		return exitError
	case *agent == "":
		fmt.Fprintf(os.Stderr, "keyhole check: --agent is required\n%s", checkUsage)
		return exitError
	}

	var cat *catalog.Catalog
	if *dsn != "" {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		l, err := inspectDSN(ctx, *dsn)
		cancel()
		if err != nil {
			fmt.Fprintf(os.Stderr, "keyhole check: %v\n", err)
			return exitError
		}
		cat = l.Catalog
	} else {
		c, err := catalog.ReadFile(*catFile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "keyhole check: %v\n", err)
			return exitError
		}
		cat = c
	}

	pol, warns, err := sqlpolicy.LoadPolicyFile(*policyFile, cat)
	for _, w := range warns {
		fmt.Fprintf(os.Stderr, "keyhole check: warning: %s\n", w)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "keyhole check: %v\n", err)
		return exitError
	}
	if pol.Agents[*agent] == nil {
		fmt.Fprintf(os.Stderr, "keyhole check: warning: agent %q is not in the policy; everything is denied\n", *agent)
	}
	eng, err := newEngine(pol, cat)
	if err != nil {
		fmt.Fprintf(os.Stderr, "keyhole check: %v\n", err)
		return exitError
	}
	p := sqlpolicy.Principal{Agent: *agent}

	if fs.NArg() > 0 {
		sql := strings.Join(fs.Args(), " ")
		d, a := eng.Check(p, sql, eng.NewSession())
		if *asJSON {
			err = writeCheckJSON(os.Stdout, d, a)
		} else {
			err = writeCheckText(os.Stdout, d)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "keyhole check: write: %v\n", err)
			return exitError
		}
		if d.Allowed() {
			return exitOK
		}
		return exitDeny
	}
	return checkLines(os.Stdin, os.Stdout, eng, p)
}

func writeCheckJSON(w io.Writer, d *sqlpolicy.Decision, a *sqlpolicy.Access) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		*sqlpolicy.Decision
		Access *sqlpolicy.Access `json:"access,omitempty"`
	}{d, a})
}

func writeCheckText(w io.Writer, d *sqlpolicy.Decision) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (rule %s)\n", d.Effect, d.Rule)
	if d.Role != "" {
		fmt.Fprintf(&b, "agent:   %s (role %s)\n", d.Agent, d.Role)
	}
	if d.MaxRows > 0 {
		fmt.Fprintf(&b, "max_rows: %d\n", d.MaxRows)
	}
	if !d.Allowed() {
		for _, r := range d.Reasons {
			fmt.Fprintf(&b, "reason:  %s\n", reasonText(r))
		}
		fmt.Fprintf(&b, "message: %s\ndetail:  %s\nhint:    %s\n", d.Message, d.Detail, d.Hint)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func reasonText(r sqlpolicy.Reason) string {
	parts := []string{string(r.Code)}
	if r.Problem != "" {
		parts = append(parts, "problem="+string(r.Problem))
	}
	if r.Verb != "" {
		parts = append(parts, "verb="+string(r.Verb))
	}
	obj := r.Table
	if r.Column != "" {
		obj += "." + r.Column
	}
	if obj != "" {
		parts = append(parts, obj)
	}
	if r.Label != "" {
		parts = append(parts, "label="+r.Label)
	}
	if r.Func != "" {
		parts = append(parts, "function="+r.Func)
	}
	if r.Setting != "" {
		parts = append(parts, "setting="+r.Setting)
	}
	if r.Rule != "" {
		parts = append(parts, "rule="+r.Rule)
	}
	if r.Detail != "" {
		parts = append(parts, "("+r.Detail+")")
	}
	return strings.Join(parts, " ")
}

type checkInput struct {
	ID  json.RawMessage `json:"id"`
	SQL *string         `json:"sql"`
}

type checkOutput struct {
	ID       json.RawMessage    `json:"id"`
	Decision sqlpolicy.Effect   `json:"decision,omitempty"`
	Rule     string             `json:"rule,omitempty"`
	Reasons  []sqlpolicy.Reason `json:"reasons,omitempty"`
	Message  string             `json:"message,omitempty"`
	Detail   string             `json:"detail,omitempty"`
	Hint     string             `json:"hint,omitempty"`
	Error    string             `json:"error,omitempty"`
}

// checkLines decides one JSON line at a time, each in a fresh session.
func checkLines(r io.Reader, w io.Writer, eng *sqlpolicy.Engine, p sqlpolicy.Principal) int {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxCheckLine)
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	code := exitOK
	line := 0
	for sc.Scan() {
		line++
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		var in checkInput
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		err := dec.Decode(&in)
		if err == nil && dec.More() {
			err = errors.New("trailing data after the object")
		}
		if err == nil && in.SQL == nil {
			err = errors.New(`missing "sql"`)
		}
		out := checkOutput{ID: in.ID}
		if len(out.ID) == 0 || !json.Valid(out.ID) {
			out.ID = json.RawMessage("null")
		}
		if err != nil {
			out.Error = fmt.Sprintf("line %d: %v", line, err)
			code = exitError
		} else {
			d, _ := eng.Check(p, *in.SQL, eng.NewSession())
			out.Decision, out.Rule, out.Reasons = d.Effect, d.Rule, d.Reasons
			out.Message, out.Detail, out.Hint = d.Message, d.Detail, d.Hint
		}
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(os.Stderr, "keyhole check: write: %v\n", err)
			return exitError
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "keyhole check: read stdin: %v\n", err)
		code = exitError
	}
	if err := bw.Flush(); err != nil {
		fmt.Fprintf(os.Stderr, "keyhole check: write: %v\n", err)
		return exitError
	}
	return code
}
