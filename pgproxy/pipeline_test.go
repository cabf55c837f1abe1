package pgproxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// TestRandomPipelines drives random extended-protocol pipelines (Parse,
// Bind, Execute with row limits, Describe, Close, Query, Sync, Flush;
// statements that fail at parse, at run time after some rows, or that
// keyhole refuses; transaction control) through keyhole and checks the
// audit against the server's own statement log: log_statement=all on the
// upstream login writes one line per simple Query and per Execute the
// server ran, before running it, and log_min_error_statement its errors.
// Every statement that ran must be audited once, in order, with the rows
// the client received and its error; nothing else may be.
//
// KEYHOLE_PIPELINE_ROUNDS sets the number of pipelines (default 40) and
// KEYHOLE_PIPELINE_SEED the seed (default: random, logged).
func TestRandomPipelines(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{raw: true})
	logPath := serverLogPath(t, e)
	login := e.upUser
	d := e.direct()
	ctx := context.Background()
	for _, set := range []string{"log_statement = 'all'", "log_error_verbosity = 'verbose'", "log_min_error_statement = 'error'"} {
		_, err := d.Exec(ctx, "ALTER ROLE "+login+" SET "+set)
		require.NoError(t, err)
	}

	rounds := envInt(t, "KEYHOLE_PIPELINE_ROUNDS", 40)
	seed := uint64(envInt(t, "KEYHOLE_PIPELINE_SEED", int(time.Now().UnixNano()&0x7fffffff)))
	t.Logf("seed %d (KEYHOLE_PIPELINE_SEED)", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	g := &pipelineGen{rng: rng, id: 100000}
	for round := range rounds {
		ok := t.Run(fmt.Sprintf("round%d", round), func(t *testing.T) {
			runPipeline(t, e, logPath, g, round)
		})
		if !ok {
			break
		}
	}
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	require.NoError(t, err, name)
	return n
}

// serverLogPath is the file the test server writes its log to:
// KEYHOLE_PG_LOG, else Debian's /var/log/postgresql/postgresql-<major>-main.log.
func serverLogPath(t *testing.T, e *env) string {
	if p := os.Getenv("KEYHOLE_PG_LOG"); p != "" {
		return p
	}
	var v int
	require.NoError(t, e.direct().QueryRow(context.Background(), "SELECT current_setting('server_version_num')::int").Scan(&v))
	p := fmt.Sprintf("/var/log/postgresql/postgresql-%d-main.log", v/10000)
	f, err := os.Open(p)
	require.NoError(t, err, "the server log is needed to check the audit against it: set KEYHOLE_PG_LOG to the file the test server logs to (stderr destination)")
	require.NoError(t, f.Close())
	return p
}

// pipelineGen makes random protocol messages. Every statement text is
// unique (it carries a counter), so log lines name the message they are for.
type pipelineGen struct {
	rng *rand.Rand
	n   int
	id  int // order ids for INSERTs
}

func (g *pipelineGen) pick(xs ...string) string { return xs[g.rng.IntN(len(xs))] }

func (g *pipelineGen) text() (sql string, denied bool) {
	g.n++
	tag := fmt.Sprintf("'q%d'", g.n)
	switch g.rng.IntN(14) {
	case 0, 1, 2:
		return fmt.Sprintf("SELECT g, %s AS tag FROM generate_series(1, %d) g", tag, g.rng.IntN(6)), false
	case 3:
		// Fails at run time after k-1 rows.
		return fmt.Sprintf("SELECT 1 / (g - %d), %s FROM generate_series(1, 5) g", 1+g.rng.IntN(5), tag), false
	case 4:
		if g.rng.IntN(2) == 0 {
			return "SELEC " + tag, true // keyhole refuses what does not parse
		}
		// Fails in parse analysis (at Parse, or in the Query after it was
		// logged).
		return fmt.Sprintf("SELECT %s::int", tag), false
	case 5:
		return fmt.Sprintf("SELECT value, %s FROM secrets", tag), true
	case 6:
		return fmt.Sprintf("DELETE FROM orders WHERE item = %s", tag), true
	case 7:
		g.id++
		return fmt.Sprintf("INSERT INTO orders VALUES (%d, %s, 1)", g.id, tag), false
	case 8:
		return fmt.Sprintf("%s /* %s */", g.pick("BEGIN", "COMMIT", "ROLLBACK"), tag), false
	case 9:
		return fmt.Sprintf("%s /* %s */", g.pick("SAVEPOINT sp", "ROLLBACK TO SAVEPOINT sp", "RELEASE sp"), tag), false
	case 10:
		// Outside a transaction block only WITH HOLD cursors may be opened.
		return fmt.Sprintf("DECLARE %s CURSOR %s FOR SELECT g, %s FROM generate_series(1, %d) g",
			g.pick("c1", "c2"), g.pick("", "WITH HOLD"), tag, g.rng.IntN(6)), false
	case 11:
		return fmt.Sprintf("%s /* %s */", g.pick("CLOSE c1", "CLOSE c2", "CLOSE ALL", "FETCH 2 FROM c1", "FETCH ALL FROM c2"), tag), false
	default:
		return fmt.Sprintf("SELECT count(*), %s FROM orders", tag), false
	}
}

func (g *pipelineGen) messages() (msgs []pgproto3.FrontendMessage, denied map[string]bool) {
	denied = map[string]bool{}
	stmts := []string{"", "s1", "s2"}
	portals := []string{"", "p1", "c1", "c2"}
	for range 5 + g.rng.IntN(30) {
		switch g.rng.IntN(20) {
		case 0, 1, 2, 3:
			sql, no := g.text()
			if no {
				denied[sql] = true
			}
			msgs = append(msgs, &pgproto3.Parse{Name: g.pick(stmts...), Query: sql})
		case 4, 5, 6:
			msgs = append(msgs, &pgproto3.Bind{DestinationPortal: g.pick(portals...), PreparedStatement: g.pick(append(stmts, "nope")...)})
		case 7, 8, 9, 10:
			msgs = append(msgs, &pgproto3.Execute{Portal: g.pick(append(portals, "nope")...), MaxRows: uint32(g.rng.IntN(4))})
		case 11:
			if g.rng.IntN(2) == 0 {
				msgs = append(msgs, &pgproto3.Describe{ObjectType: 'S', Name: g.pick(stmts...)})
			} else {
				msgs = append(msgs, &pgproto3.Describe{ObjectType: 'P', Name: g.pick(portals...)})
			}
		case 12:
			if g.rng.IntN(2) == 0 {
				msgs = append(msgs, &pgproto3.Close{ObjectType: 'S', Name: g.pick(stmts...)})
			} else {
				msgs = append(msgs, &pgproto3.Close{ObjectType: 'P', Name: g.pick(portals...)})
			}
		case 13, 14, 15:
			msgs = append(msgs, &pgproto3.Sync{})
		case 16:
			msgs = append(msgs, &pgproto3.Flush{})
		default:
			sql, no := g.text()
			if no {
				denied[sql] = true
			}
			msgs = append(msgs, &pgproto3.Query{String: sql})
		}
	}
	return msgs, denied
}

// clientEvent is what the client saw end one run or one error: rows
// received since the previous event, then CommandComplete /
// EmptyQueryResponse / PortalSuspended, or an ErrorResponse.
type clientEvent struct {
	rows      int64
	suspended bool
	code      string // error
}

// logEvent is one line of the server log for the session's backend.
type logEvent struct {
	exec string // LOG: statement / execute: the text that ran
	code string // ERROR: its SQLSTATE
	stmt string // the ERROR's STATEMENT, if any
}

func runPipeline(t *testing.T, e *env, logPath string, g *pipelineGen, round int) {
	r := e.raw(t)
	r.login(e, "analyst-bot")
	marker := fmt.Sprintf("SELECT pg_backend_pid() /* round %d */", round)
	r.fe.Send(&pgproto3.Query{String: marker})
	require.NoError(t, r.fe.Flush())
	var pid string
	for _, m := range r.until(&pgproto3.ReadyForQuery{}) {
		if dr, ok := m.(*pgproto3.DataRow); ok {
			pid = string(dr.Values[0])
		}
	}
	require.NotEmpty(t, pid)
	offset := fileSize(t, logPath)

	msgs, denied := g.messages()
	end := fmt.Sprintf("SELECT 'end of round %d'", round)
	msgs = append(msgs, &pgproto3.Sync{}, &pgproto3.Query{String: "ROLLBACK"}, &pgproto3.Query{String: end})
	for _, m := range msgs {
		r.fe.Send(m)
	}
	require.NoError(t, r.fe.Flush())
	t.Logf("pipeline: %s", describe(msgs))

	// Read until the end marker's ReadyForQuery, collecting what ended
	// each run as the client saw it.
	var got []clientEvent
	var rows int64
	sawEnd := false
	for {
		m := r.recv()
		switch m := m.(type) {
		case *pgproto3.DataRow:
			rows++
			if len(m.Values) == 1 && string(m.Values[0]) == strings.Trim(strings.TrimPrefix(end, "SELECT "), "'") {
				sawEnd = true
			}
		case *pgproto3.CommandComplete, *pgproto3.EmptyQueryResponse:
			got = append(got, clientEvent{rows: rows})
			rows = 0
		case *pgproto3.PortalSuspended:
			got = append(got, clientEvent{rows: rows, suspended: true})
			rows = 0
		case *pgproto3.ErrorResponse:
			require.NotEqual(t, "FATAL", m.Severity, "keyhole ended the session: %s %s", m.Code, m.Message)
			got = append(got, clientEvent{rows: rows, code: m.Code})
			rows = 0
		}
		if _, ok := m.(*pgproto3.ReadyForQuery); ok && sawEnd {
			break
		}
	}

	logged := readServerLog(t, logPath, offset, pid)
	defer func() {
		if t.Failed() {
			t.Logf("server log: %+v", logged)
			t.Logf("client: %+v", got)
		}
	}()
	// Walk the log and the client's view together: each run the server
	// logged ended, for the client, in the next event; each error the
	// server logged outside a run reached the client as the next error
	// (keyhole's refusals stand in for the error of their stand-in).
	type expect struct {
		stmt    string
		rows    int64
		code    string
		outcome string
	}
	var want []expect
	ci := 0
	next := func(what string) clientEvent {
		require.Less(t, ci, len(got), "the client saw no event for %s", what)
		ci++
		return got[ci-1]
	}
	for li := 0; li < len(logged); li++ {
		l := logged[li]
		if l.exec != "" {
			ev := next("run " + l.exec)
			x := expect{stmt: l.exec, rows: ev.rows, code: ev.code}
			if ev.suspended {
				x.outcome = "suspended"
			}
			if ev.code != "" {
				require.Less(t, li+1, len(logged), "run %q failed for the client but not in the log", l.exec)
				require.Equal(t, ev.code, logged[li+1].code, "run %q", l.exec)
				li++
			}
			want = append(want, x)
			continue
		}
		ev := next("error " + l.code)
		if strings.Contains(l.stmt, "keyhole_refused") {
			// A policy refusal, or what the decision answers for text that
			// does not parse or names nothing (42601, 42P01, 42703, 42883).
			assert.Contains(t, []string{"42501", "26000", "34000", "42601", "42P01", "42703", "42883"}, ev.code, "a refusal")
		} else {
			assert.Equal(t, l.code, ev.code, "error of %q", l.stmt)
		}
		assert.Zero(t, ev.rows)
	}
	require.Equal(t, len(got), ci, "the client saw runs or errors the server did not log")

	var audited []expect
	session := ""
	for _, ev := range e.audit.Events() {
		if ev.Kind != audit.KindStatement {
			continue
		}
		if ev.Statement == marker {
			session = ev.Session
			audited = audited[:0]
			continue
		}
		if session == "" || ev.Session != session {
			continue
		}
		if ev.Decision == sqlpolicy.Deny {
			assert.True(t, denied[ev.Statement], "denial of %q, which the policy allows", ev.Statement)
			continue
		}
		audited = append(audited, expect{ev.Statement, ev.Rows, ev.ErrorCode, ev.Outcome})
	}
	require.NotEmpty(t, session)
	// An Execute of a portal the server had already dropped (keyhole
	// forwarded it before it learnt so) is refused by the server before
	// it logs or runs anything; the audit records the attempt.
	var matched []expect
	j := 0
	for _, a := range audited {
		if j < len(want) && a == want[j] {
			matched = append(matched, a)
			j++
			continue
		}
		if a.code == "34000" && a.rows == 0 {
			continue
		}
		matched = append(matched, a)
	}
	assert.Equal(t, want, matched)
}

func describe(msgs []pgproto3.FrontendMessage) string {
	var b strings.Builder
	for _, m := range msgs {
		switch m := m.(type) {
		case *pgproto3.Parse:
			fmt.Fprintf(&b, "P(%s,%q) ", m.Name, m.Query)
		case *pgproto3.Bind:
			fmt.Fprintf(&b, "B(%s<-%s) ", m.DestinationPortal, m.PreparedStatement)
		case *pgproto3.Execute:
			fmt.Fprintf(&b, "E(%s,%d) ", m.Portal, m.MaxRows)
		case *pgproto3.Describe:
			fmt.Fprintf(&b, "D(%c,%s) ", m.ObjectType, m.Name)
		case *pgproto3.Close:
			fmt.Fprintf(&b, "C(%c,%s) ", m.ObjectType, m.Name)
		case *pgproto3.Sync:
			b.WriteString("S ")
		case *pgproto3.Flush:
			b.WriteString("H ")
		case *pgproto3.Query:
			fmt.Fprintf(&b, "Q(%q) ", m.String)
		}
	}
	return b.String()
}

func fileSize(t *testing.T, path string) int64 {
	st, err := os.Stat(path)
	require.NoError(t, err)
	return st.Size()
}

// readServerLog parses the lines backend pid wrote after offset (the
// Debian default log_line_prefix '%m [%p] %q%u@%d ', log_error_verbosity
// verbose, single-line statements).
func readServerLog(t *testing.T, path string, offset int64, pid string) []logEvent {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.Seek(offset, io.SeekStart)
	require.NoError(t, err)
	var out []logEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	mark := "[" + pid + "] "
	for sc.Scan() {
		line := sc.Text()
		i := strings.Index(line, mark)
		if i < 0 {
			continue
		}
		rest := line[i+len(mark):]
		sev, msg, ok := cutField(rest)
		if !ok {
			continue
		}
		switch sev {
		case "LOG":
			// log_error_verbosity verbose puts the SQLSTATE first.
			if len(msg) > 7 && msg[5:7] == ": " {
				msg = msg[7:]
			}
			switch {
			case strings.HasPrefix(msg, "statement: "):
				out = append(out, logEvent{exec: strings.TrimPrefix(msg, "statement: ")})
			case strings.HasPrefix(msg, "execute "):
				_, text, ok := strings.Cut(msg, ": ")
				require.True(t, ok, "log line %q", line)
				out = append(out, logEvent{exec: text})
			}
		case "ERROR":
			code, _, _ := strings.Cut(msg, ": ")
			out = append(out, logEvent{code: code})
		case "STATEMENT":
			require.NotEmpty(t, out, "STATEMENT without an error: %q", line)
			out[len(out)-1].stmt = msg
		}
	}
	require.NoError(t, sc.Err())
	return out
}

// cutField splits "user@db SEVERITY:  message".
func cutField(s string) (sev, msg string, ok bool) {
	_, s, ok = strings.Cut(s, " ")
	if !ok {
		return "", "", false
	}
	sev, msg, ok = strings.Cut(s, ":  ")
	return sev, msg, ok
}
