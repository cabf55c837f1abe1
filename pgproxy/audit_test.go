package pgproxy_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// stmtEvents returns the allowed statement events of the session that
// audited marker (a statement text), from that event on.
func stmtEvents(t *testing.T, evs []audit.Event, marker string) []audit.Event {
	t.Helper()
	session := ""
	var out []audit.Event
	for _, ev := range evs {
		if ev.Kind != audit.KindStatement {
			continue
		}
		if session == "" && ev.Statement == marker {
			session = ev.Session
		}
		if session != "" && ev.Session == session && ev.Decision == sqlpolicy.Allow {
			out = append(out, ev)
		}
	}
	require.NotEmpty(t, session, "no audit event for %q", marker)
	return out
}

type runOutcome struct {
	Statement string
	Rows      int64
	ErrorCode string
	Outcome   string
}

func outcomes(evs []audit.Event) []runOutcome {
	out := make([]runOutcome, 0, len(evs))
	for _, ev := range evs {
		out = append(out, runOutcome{ev.Statement, ev.Rows, ev.ErrorCode, ev.Outcome})
	}
	return out
}

// A portal fetched with a row limit is audited per Execute, as the server
// logs it, also when Sync ends it before its last row.
func TestAuditSuspendedPortal(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{raw: true})
	r := e.raw(t)
	r.login(e, "analyst-bot")
	const marker = "SELECT 'suspended-portal'"
	r.fe.Send(&pgproto3.Query{String: marker})
	const q = "SELECT g FROM generate_series(1, 10) g"
	r.fe.Send(&pgproto3.Parse{Name: "s", Query: q})
	r.fe.Send(&pgproto3.Bind{PreparedStatement: "s"})
	r.fe.Send(&pgproto3.Execute{MaxRows: 3})
	r.fe.Send(&pgproto3.Sync{})
	// In a transaction block a named portal outlives Sync.
	r.fe.Send(&pgproto3.Query{String: "BEGIN"})
	r.fe.Send(&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s"})
	r.fe.Send(&pgproto3.Execute{Portal: "p", MaxRows: 4})
	r.fe.Send(&pgproto3.Sync{})
	r.fe.Send(&pgproto3.Execute{Portal: "p", MaxRows: 4})
	r.fe.Send(&pgproto3.Execute{Portal: "p"})
	r.fe.Send(&pgproto3.Sync{})
	r.fe.Send(&pgproto3.Query{String: "COMMIT"})
	require.NoError(t, r.fe.Flush())
	for range 6 {
		require.Empty(t, errorsIn(r.until(&pgproto3.ReadyForQuery{})))
	}
	got := outcomes(stmtEvents(t, e.audit.Events(), marker))
	assert.Equal(t, []runOutcome{
		{marker, 1, "", ""},
		{q, 3, "", "suspended"},
		{"BEGIN", 0, "", ""},
		{q, 4, "", "suspended"},
		{q, 4, "", "suspended"},
		{q, 2, "", ""},
		{"COMMIT", 0, "", ""},
	}, got)
}

// A client that sends a write and leaves at once: Postgres runs it (and
// commits it), so the audit records it with its outcome.
func TestAuditClientLeavesAfterWrite(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{raw: true})
	cases := []struct {
		name   string
		msgs   func(id int) []pgproto3.FrontendMessage
		stays  bool // the row is committed
		stmt   func(id int) string
		closed bool // the client closes without Terminate
	}{
		{"query then terminate", func(id int) []pgproto3.FrontendMessage {
			return []pgproto3.FrontendMessage{&pgproto3.Query{String: insertSQL(id)}, &pgproto3.Terminate{}}
		}, true, insertSQL, false},
		{"query then close", func(id int) []pgproto3.FrontendMessage {
			return []pgproto3.FrontendMessage{&pgproto3.Query{String: insertSQL(id)}}
		}, true, insertSQL, true},
		{"extended then close", func(id int) []pgproto3.FrontendMessage {
			return []pgproto3.FrontendMessage{&pgproto3.Parse{Query: insertSQL(id)}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}}
		}, true, insertSQL, true},
		// Without Sync the block never commits: the server rolls it back
		// when the session ends, but the INSERT did run.
		{"unsynced then close", func(id int) []pgproto3.FrontendMessage {
			return []pgproto3.FrontendMessage{&pgproto3.Parse{Query: insertSQL(id)}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{}}
		}, false, insertSQL, true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := 5000 + i
			r := e.raw(t)
			r.login(e, "analyst-bot")
			for _, m := range tc.msgs(id) {
				r.fe.Send(m)
			}
			require.NoError(t, r.fe.Flush())
			require.NoError(t, r.conn.Close())
			var ev audit.Event
			require.Eventually(t, func() bool {
				for _, x := range e.audit.Events() {
					if x.Kind == audit.KindStatement && x.Statement == tc.stmt(id) {
						ev = x
						return true
					}
				}
				return false
			}, 10*time.Second, 20*time.Millisecond, "the INSERT is audited")
			assert.Empty(t, ev.ErrorCode)
			assert.Empty(t, ev.Outcome)
			want := 0
			if tc.stays {
				want = 1
			}
			require.Eventually(t, func() bool { return e.orderRows(id) == want }, 10*time.Second, 20*time.Millisecond)
		})
	}
}

func insertSQL(id int) string {
	return "INSERT INTO orders VALUES (" + strconv.Itoa(id) + ", 'bye', 1)"
}

// After an error in an extended-protocol block the server skips a simple
// Query queued behind it (no answer at all). keyhole must not wait for
// its answer: every later statement keeps its own outcome.
func TestAuditSkippedQuery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{raw: true})
	r := e.raw(t)
	r.login(e, "analyst-bot")
	const marker = "SELECT 'skipped-query'"
	r.fe.Send(&pgproto3.Query{String: marker})
	const failing = "SELECT 1 / (g - 2) FROM generate_series(1, 3) g"
	r.fe.Send(&pgproto3.Parse{Query: failing})
	r.fe.Send(&pgproto3.Bind{})
	r.fe.Send(&pgproto3.Execute{})
	r.fe.Send(&pgproto3.Query{String: "INSERT INTO orders VALUES (6001, 'skipped', 1)"})
	r.fe.Send(&pgproto3.Sync{})
	r.fe.Send(&pgproto3.Query{String: "SELECT g FROM generate_series(1, 4) g"})
	r.fe.Send(&pgproto3.Query{String: "SELECT 1 / 0"})
	r.fe.Send(&pgproto3.Query{String: "SELECT 'last'"})
	require.NoError(t, r.fe.Flush())
	r.until(&pgproto3.ReadyForQuery{})
	errs := errorsIn(r.until(&pgproto3.ReadyForQuery{}))
	require.Len(t, errs, 1)
	assert.Equal(t, "22012", errs[0].Code)
	assert.Empty(t, errorsIn(r.until(&pgproto3.ReadyForQuery{})))
	errs = errorsIn(r.until(&pgproto3.ReadyForQuery{}))
	require.Len(t, errs, 1)
	assert.Equal(t, "22012", errs[0].Code)
	assert.Empty(t, errorsIn(r.until(&pgproto3.ReadyForQuery{})))

	got := outcomes(stmtEvents(t, e.audit.Events(), marker))
	assert.Equal(t, []runOutcome{
		{marker, 1, "", ""},
		{failing, 1, "22012", ""},
		{"SELECT g FROM generate_series(1, 4) g", 4, "", ""},
		{"SELECT 1 / 0", 0, "22012", ""},
		{"SELECT 'last'", 1, "", ""},
	}, got)
	assert.Equal(t, 0, e.orderRows(6001), "the server skipped the INSERT")
}
