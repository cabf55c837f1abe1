package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/config"
)

func init() {
	register("audit", "review the audit log: blocked statements and more", runAudit)
}

const auditUsage = `usage: keyhole audit FILE [--blocked] [--agent A] [--protocol P] [--since 1h] [--limit N] [--json]

lists the events of the audit file FILE and its rotated files (FILE.1, …),
newest first: Postgres and MySQL sessions alike, the PROTO column says
which. --blocked keeps denied statements and failed logins, with the
reasons (rule, table.column, label); --protocol postgres|mysql keeps one
protocol's events; --since takes a duration back from now or an RFC 3339
time. --json prints the events as JSON lines.
`

// auditStatementWidth truncates statements in the table; --json has them whole.
const auditStatementWidth = 100

func runAudit(args []string) int { return auditMain(args, time.Now(), os.Stdout, os.Stderr) }

func auditMain(args []string, now time.Time, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keyhole audit", flag.ContinueOnError)
	blocked := fs.Bool("blocked", false, "only denied statements and failed authentications")
	agent := fs.String("agent", "", "only this agent")
	since := fs.String("since", "", "only events since a duration ago (1h) or an RFC 3339 time")
	limit := fs.Int("limit", 0, "at most N events (0: all)")
	protocol := fs.String("protocol", "", "only events of this protocol: postgres or mysql")
	asJSON := fs.Bool("json", false, "JSON lines instead of a table")
	fs.SetOutput(io.Discard)
	// FILE may come before or after the flags: the flag package stops at
	// the first positional argument, so parse around it.
	var files []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(stdout, auditUsage)
				return exitOK
			}
			fmt.Fprintf(stderr, "keyhole audit: %v\n%s", err, auditUsage)
			return exitError
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(files) != 1 {
		fmt.Fprintf(stderr, "keyhole audit: need exactly one FILE\n%s", auditUsage)
		return exitError
	}
	if *limit < 0 {
		fmt.Fprintf(stderr, "keyhole audit: --limit must not be negative\n")
		return exitError
	}
	switch *protocol {
	case "", config.DialectPostgres, config.DialectMySQL:
	default:
		fmt.Fprintf(stderr, "keyhole audit: --protocol %q: want postgres or mysql\n", *protocol)
		return exitError
	}
	f := audit.Filter{Blocked: *blocked, Agent: *agent, Limit: *limit}
	if *protocol != "" {
		// The limit counts the protocol's events, kept below.
		f.Limit = 0
	}
	if *since != "" {
		t, err := auditSince(*since, now)
		if err != nil {
			fmt.Fprintf(stderr, "keyhole audit: %v\n", err)
			return exitError
		}
		f.Since = t
	}
	evs, err := audit.ReadFile(files[0], f)
	if err != nil {
		fmt.Fprintf(stderr, "keyhole audit: %v\n", err)
		return exitError
	}
	if *protocol != "" {
		evs = slices.DeleteFunc(evs, func(ev audit.Event) bool { return ev.Protocol != *protocol })
		if *limit > 0 && len(evs) > *limit {
			evs = evs[:*limit]
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, ev := range evs {
			if err := enc.Encode(ev); err != nil {
				fmt.Fprintf(stderr, "keyhole audit: %v\n", err)
				return exitError
			}
		}
		return exitOK
	}
	if err := writeAuditTable(stdout, evs); err != nil {
		fmt.Fprintf(stderr, "keyhole audit: %v\n", err)
		return exitError
	}
	return exitOK
}

func auditSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want a duration like 1h or an RFC 3339 time", s)
}

// writeAuditTable prints one line per event and, under a blocked
// statement, one indented line per reason.
func writeAuditTable(w io.Writer, evs []audit.Event) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tPROTO\tAGENT\tKIND\tDECISION\tRULE\tSTATEMENT")
	for _, ev := range evs {
		what := ev.Statement
		if what == "" && (ev.ErrorCode != "" || ev.Error != "") {
			what = strings.TrimSpace(ev.ErrorCode + " " + ev.Error)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			ev.Time.UTC().Format(time.RFC3339), termSafe(orDash(ev.Protocol)), termSafe(orDash(ev.Agent)), ev.Kind,
			orDash(string(ev.Decision)), termSafe(orDash(ev.Rule)), termSafe(truncate(oneLine(what), auditStatementWidth)))
		if ev.Blocked() {
			for _, r := range ev.Reasons {
				fmt.Fprintf(tw, "\t\t\t\t\t\t  - %s\n", termSafe(audit.FormatReason(r)))
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d event(s)\n", len(evs))
	return err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// termSafe escapes control and format characters: statements are written by agents,
// and an escape sequence must not reach the reviewer's terminal.
func termSafe(s string) string {
	unsafe := func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }
	if strings.IndexFunc(s, unsafe) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unsafe(r) {
			// Control and format characters (including bidi overrides).
			fmt.Fprintf(&b, "\\u%04x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
