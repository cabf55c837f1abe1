package pgproxy_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/audit"
)

// exchange sends msgs and Sync and returns what came back up to the
// ReadyForQuery, as short kinds: "T" RowDescription, "D" DataRow, "C"
// CommandComplete, "s" PortalSuspended, "3" CloseComplete, "E:code",
// "Z:status".
func (r *rawClient) exchange(msgs ...pgproto3.FrontendMessage) []string {
	r.t.Helper()
	for _, m := range msgs {
		r.fe.Send(m)
	}
	r.fe.Send(&pgproto3.Sync{})
	require.NoError(r.t, r.fe.Flush())
	return r.kinds()
}

// query runs one simple Query and returns kinds as exchange does.
func (r *rawClient) query(sql string) []string {
	r.t.Helper()
	r.fe.Send(&pgproto3.Query{String: sql})
	require.NoError(r.t, r.fe.Flush())
	return r.kinds()
}

func (r *rawClient) kinds() []string {
	var out []string
	for {
		switch m := r.recv().(type) {
		case *pgproto3.RowDescription:
			out = append(out, "T")
		case *pgproto3.DataRow:
			out = append(out, "D")
		case *pgproto3.CommandComplete:
			out = append(out, "C")
		case *pgproto3.PortalSuspended:
			out = append(out, "s")
		case *pgproto3.CloseComplete:
			out = append(out, "3")
		case *pgproto3.ErrorResponse:
			out = append(out, "E:"+m.Code)
		case *pgproto3.ReadyForQuery:
			return append(out, "Z:"+string(m.TxStatus))
		}
	}
}

func rows(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "D"
	}
	return out
}

func seq(parts ...any) []string {
	var out []string
	for _, p := range parts {
		switch p := p.(type) {
		case string:
			out = append(out, p)
		case []string:
			out = append(out, p...)
		}
	}
	return out
}

// A cursor a DECLARE opened is a portal the client may Describe, Execute
// with a row limit and Close through the protocol (psycopg 3 named
// cursors), decided at the DECLARE and audited per Execute; it ends when
// Postgres ends it.
func TestCursorPortals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{raw: true})

	t.Run("declared by query, used by protocol", func(t *testing.T) {
		r := e.raw(t)
		r.login(e, "analyst-bot")
		assert.Equal(t, []string{"C", "Z:T"}, r.query("BEGIN"))
		const decl = "DECLARE c CURSOR FOR SELECT id FROM orders ORDER BY id"
		assert.Equal(t, []string{"C", "Z:T"}, r.query(decl))
		assert.Equal(t, seq("T", rows(5), "s", "Z:T"),
			r.exchange(&pgproto3.Describe{ObjectType: 'P', Name: "c"}, &pgproto3.Execute{Portal: "c", MaxRows: 5}))
		assert.Equal(t, seq(rows(15), "C", "Z:T"), r.exchange(&pgproto3.Execute{Portal: "c"}))
		assert.Equal(t, []string{"3", "Z:T"}, r.exchange(&pgproto3.Close{ObjectType: 'P', Name: "c"}))
		assert.Equal(t, []string{"E:34000", "Z:E"}, r.exchange(&pgproto3.Execute{Portal: "c"}))
		assert.Equal(t, []string{"C", "Z:I"}, r.query("ROLLBACK"))

		var runs []string
		for _, ev := range e.audit.Events() {
			if ev.Kind == audit.KindStatement && ev.Statement == decl {
				runs = append(runs, fmt.Sprintf("%d/%s", ev.Rows, ev.Outcome))
			}
		}
		assert.Equal(t, []string{"0/", "5/suspended", "15/"}, runs, "the DECLARE, then each Execute")
	})

	t.Run("declared by the extended protocol with a parameter", func(t *testing.T) {
		r := e.raw(t)
		r.login(e, "analyst-bot")
		assert.Equal(t, []string{"C", "Z:T"}, r.query("BEGIN"))
		assert.Equal(t, []string{"C", "Z:T"}, r.exchange(
			&pgproto3.Parse{Query: "DECLARE \"My Cursor\" CURSOR FOR SELECT id FROM orders WHERE id > $1 ORDER BY id", ParameterOIDs: []uint32{23}},
			&pgproto3.Bind{ParameterFormatCodes: []int16{0}, Parameters: [][]byte{[]byte("17")}},
			&pgproto3.Execute{}))
		assert.Equal(t, seq("T", rows(2), "s", "Z:T"),
			r.exchange(&pgproto3.Describe{ObjectType: 'P', Name: "My Cursor"}, &pgproto3.Execute{Portal: "My Cursor", MaxRows: 2}))
		assert.Equal(t, seq("T", "D", "C", "Z:T"), r.query(`FETCH NEXT FROM "My Cursor"`))
		assert.Equal(t, []string{"C", "Z:T"}, r.query(`CLOSE "My Cursor"`))
		assert.Equal(t, []string{"E:34000", "Z:E"}, r.exchange(&pgproto3.Describe{ObjectType: 'P', Name: "My Cursor"}))
		assert.Equal(t, []string{"C", "Z:I"}, r.query("ROLLBACK"))
	})

	t.Run("denied declare", func(t *testing.T) {
		r := e.raw(t)
		r.login(e, "analyst-bot")
		assert.Equal(t, []string{"C", "Z:T"}, r.query("BEGIN"))
		assert.Equal(t, []string{"E:42501", "Z:E"}, r.query("DECLARE s CURSOR FOR SELECT value FROM secrets"))
		assert.Equal(t, []string{"C", "Z:I"}, r.query("ROLLBACK"))
		assert.Equal(t, []string{"C", "Z:T"}, r.query("BEGIN"))
		assert.Equal(t, []string{"E:34000", "Z:E"}, r.exchange(&pgproto3.Execute{Portal: "s"}))
		assert.Equal(t, []string{"C", "Z:I"}, r.query("ROLLBACK"))
	})

	t.Run("lifetimes", func(t *testing.T) {
		r := e.raw(t)
		r.login(e, "analyst-bot")
		// Without HOLD a cursor ends with its transaction.
		assert.Equal(t, []string{"C", "C", "Z:T"}, r.query("BEGIN; DECLARE n CURSOR FOR SELECT id FROM orders"))
		assert.Equal(t, []string{"C", "Z:I"}, r.query("COMMIT"))
		assert.Equal(t, []string{"E:34000", "Z:I"}, r.exchange(&pgproto3.Execute{Portal: "n"}))
		// WITH HOLD outlives its COMMIT (here the implicit one) and a later
		// ROLLBACK, not a CLOSE.
		assert.Equal(t, []string{"C", "Z:I"}, r.query("DECLARE h CURSOR WITH HOLD FOR SELECT id FROM orders ORDER BY id"))
		assert.Equal(t, []string{"C", "Z:T"}, r.query("BEGIN"))
		assert.Equal(t, []string{"C", "Z:I"}, r.query("ROLLBACK"))
		assert.Equal(t, seq(rows(3), "s", "Z:I"), r.exchange(&pgproto3.Execute{Portal: "h", MaxRows: 3}))
		assert.Equal(t, []string{"C", "Z:I"}, r.query("CLOSE h"))
		assert.Equal(t, []string{"E:34000", "Z:I"}, r.exchange(&pgproto3.Execute{Portal: "h"}))
		// A WITH HOLD cursor of a transaction that rolls back is gone.
		assert.Equal(t, []string{"C", "C", "Z:T"}, r.query("BEGIN; DECLARE g CURSOR WITH HOLD FOR SELECT id FROM orders"))
		assert.Equal(t, []string{"C", "Z:I"}, r.query("ROLLBACK"))
		assert.Equal(t, []string{"E:34000", "Z:I"}, r.exchange(&pgproto3.Execute{Portal: "g"}))
		// ROLLBACK TO SAVEPOINT drops what was opened after the savepoint.
		assert.Equal(t, []string{"C", "C", "C", "C", "Z:T"},
			r.query("BEGIN; DECLARE a CURSOR FOR SELECT 1; SAVEPOINT sp; DECLARE b CURSOR FOR SELECT 2"))
		assert.Equal(t, []string{"C", "Z:T"}, r.query("ROLLBACK TO SAVEPOINT sp"))
		assert.Equal(t, seq("D", "C", "Z:T"), r.exchange(&pgproto3.Execute{Portal: "a"}))
		assert.Equal(t, []string{"E:34000", "Z:E"}, r.exchange(&pgproto3.Execute{Portal: "b"}))
		assert.Equal(t, []string{"C", "Z:I"}, r.query("ROLLBACK"))
		// By name: a ROLLBACK TO the newest of two savepoints of one name
		// (pgJDBC's autosave) keeps what was opened before it; a RELEASE
		// moves what was opened inside to the level it was set at.
		assert.Equal(t, seq(strings.Split(strings.Repeat("C", 9), ""), "Z:T"),
			r.query("BEGIN; SAVEPOINT auto; DECLARE a CURSOR FOR SELECT 1; SAVEPOINT auto; DECLARE b CURSOR FOR SELECT 2; "+
				"SAVEPOINT outer_sp; SAVEPOINT inner_sp; DECLARE c CURSOR FOR SELECT 3; RELEASE inner_sp"))
		assert.Equal(t, []string{"C", "Z:T"}, r.query("ROLLBACK TO SAVEPOINT outer_sp"))
		assert.Equal(t, []string{"E:34000", "Z:E"}, r.exchange(&pgproto3.Execute{Portal: "c"}), "opened inside outer_sp, released into it")
		assert.Equal(t, []string{"C", "Z:T"}, r.query("ROLLBACK TO SAVEPOINT auto"))
		assert.Equal(t, seq("D", "C", "Z:T"), r.exchange(&pgproto3.Execute{Portal: "a"}), "opened before the newest auto")
		assert.Equal(t, []string{"E:34000", "Z:E"}, r.exchange(&pgproto3.Execute{Portal: "b"}), "opened after it")
		assert.Equal(t, []string{"C", "Z:T"}, r.query("ROLLBACK TO SAVEPOINT auto"))
		assert.Equal(t, seq("C", "Z:T"), r.exchange(&pgproto3.Execute{Portal: "a"}), "a is still open (and read)")
		assert.Equal(t, []string{"C", "Z:I"}, r.query("ROLLBACK"))
	})
}

// max_rows counts a cursor's rows across the Executes that fetch them.
func TestCursorMaxRows(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{maxRows: 10})
	r := e.raw(t)
	r.login(e, "analyst-bot")
	assert.Equal(t, []string{"C", "C", "Z:T"}, r.query("BEGIN; DECLARE c CURSOR FOR SELECT id FROM orders"))
	assert.Equal(t, seq(rows(6), "s", "Z:T"), r.exchange(&pgproto3.Execute{Portal: "c", MaxRows: 6}))
	got := r.exchange(&pgproto3.Execute{Portal: "c", MaxRows: 6})
	// (The transaction status after a cut depends on whether keyhole's
	// cancel reached the server before the fetch ended; see doc.go.)
	assert.Equal(t, seq(rows(4), "E:54000"), got[:len(got)-1])
	assert.Equal(t, []string{"C", "Z:I"}, r.query("ROLLBACK"))
}

// max_rows counts a cursor's (or a named portal's) rows across the FETCH
// statements that read them, as across Executes: fetching in parts does
// not get past it.
func TestFetchMaxRows(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{maxRows: 10})
	r := e.raw(t)
	r.login(e, "analyst-bot")
	tail := func(got []string) []string { return got[:len(got)-1] }

	assert.Equal(t, []string{"C", "C", "Z:T"}, r.query("BEGIN; DECLARE c CURSOR FOR SELECT id FROM orders"))
	assert.Equal(t, seq("T", rows(6), "C", "Z:T"), r.query("FETCH 6 FROM c"))
	assert.Equal(t, seq("T", rows(4), "E:54000"), tail(r.query("FETCH 6 FROM c")))
	assert.Equal(t, []string{"C", "Z:I"}, r.query("ROLLBACK"))

	// A FETCH prepared and executed through the protocol, and an Execute,
	// count together.
	assert.Equal(t, []string{"C", "C", "Z:T"}, r.query("BEGIN; DECLARE c CURSOR FOR SELECT id FROM orders"))
	assert.Equal(t, seq(rows(4), "s", "Z:T"), r.exchange(&pgproto3.Execute{Portal: "c", MaxRows: 4}))
	assert.Equal(t, seq(rows(6), "E:54000"), tail(r.exchange(
		&pgproto3.Parse{Query: "FETCH 7 FROM c"}, &pgproto3.Bind{}, &pgproto3.Execute{})))
	assert.Equal(t, []string{"C", "Z:I"}, r.query("ROLLBACK"))

	// A named protocol portal read by FETCH.
	assert.Equal(t, []string{"C", "Z:T"}, r.query("BEGIN"))
	assert.Equal(t, []string{"Z:T"}, r.exchange(&pgproto3.Parse{Query: "SELECT id FROM orders"}, &pgproto3.Bind{DestinationPortal: "np"}))
	assert.Equal(t, seq("T", rows(9), "C", "Z:T"), r.query("FETCH 9 FROM np"))
	assert.Equal(t, seq("T", rows(1), "E:54000"), tail(r.query("FETCH 9 FROM np")))
	assert.Equal(t, []string{"C", "Z:I"}, r.query("ROLLBACK"))
}

// A cursor outlives the decision that allowed its DECLARE (a WITH HOLD one
// its transaction too): after a policy reload its statement is decided
// again before each FETCH, MOVE or Execute of it, and refused once the
// policy denies it (the end of a grant works the same way).
func TestCursorAfterReloadIsDecidedAgain(t *testing.T) {
	e := newEnv(t, envOpts{raw: true})
	text, narrowed := e.ordersRevoked()

	r := e.raw(t)
	r.login(e, "analyst-bot")
	assert.Equal(t, []string{"C", "Z:T"}, r.query("BEGIN"))
	assert.Equal(t, []string{"C", "Z:T"}, r.query("DECLARE c CURSOR WITH HOLD FOR SELECT id FROM orders ORDER BY id"))
	assert.Equal(t, []string{"C", "Z:I"}, r.query("COMMIT"))
	assert.Equal(t, seq("T", rows(2), "C", "Z:I"), r.query("FETCH 2 FROM c"))

	e.reloadPolicy(narrowed)
	assert.Equal(t, []string{"E:42501", "Z:I"}, r.query("FETCH 2 FROM c"))
	assert.Equal(t, []string{"E:42501", "Z:I"}, r.query("MOVE 2 IN c"))
	assert.Equal(t, []string{"E:42501", "Z:I"}, r.exchange(&pgproto3.Execute{Portal: "c", MaxRows: 2}))
	assert.Equal(t, []string{"E:42501", "Z:I"}, r.exchange(
		&pgproto3.Parse{Query: "FETCH NEXT FROM c"}, &pgproto3.Bind{}, &pgproto3.Execute{}))
	assert.Equal(t, []string{"FETCH 2 FROM c", "MOVE 2 IN c", "DECLARE c CURSOR WITH HOLD FOR SELECT id FROM orders ORDER BY id", "FETCH NEXT FROM c"}, e.deniedStatements(),
		"each refusal is audited with the text the agent sent")

	// Decided again, not dropped: the restored policy allows it again.
	e.reloadPolicy(string(text))
	assert.Equal(t, seq("T", rows(2), "C", "Z:I"), r.query("FETCH 2 FROM c"))
	assert.Equal(t, seq(rows(2), "s", "Z:I"), r.exchange(&pgproto3.Execute{Portal: "c", MaxRows: 2}))

	assert.Equal(t, []string{"C", "Z:I"}, r.query("CLOSE c"))
}

// FETCH and MOVE read a named protocol portal as they read a cursor: after
// a policy reload, the portal's statement is decided again before them, as
// before an Execute of it.
func TestFetchFromPortalAfterReloadIsDecidedAgain(t *testing.T) {
	e := newEnv(t, envOpts{raw: true})
	text, narrowed := e.ordersRevoked()

	r := e.raw(t)
	r.login(e, "analyst-bot")
	assert.Equal(t, []string{"C", "Z:T"}, r.query("BEGIN"))
	assert.Equal(t, []string{"Z:T"}, r.exchange(&pgproto3.Parse{Query: "SELECT id FROM orders ORDER BY id"}, &pgproto3.Bind{DestinationPortal: "np"}))
	assert.Equal(t, seq("T", "D", "C", "Z:T"), r.query("FETCH 1 FROM np"))

	e.setPolicy(narrowed)
	require.NoError(t, e.g.ReloadPolicy())
	assert.Equal(t, []string{"E:42501", "Z:E"}, r.query("FETCH 1 FROM np"))
	assert.Equal(t, []string{"C", "Z:I"}, r.query("ROLLBACK"))
	assert.Equal(t, []string{"C", "Z:T"}, r.query("BEGIN"))
	e.setPolicy(string(text))
	require.NoError(t, e.g.ReloadPolicy())
	assert.Equal(t, []string{"Z:T"}, r.exchange(&pgproto3.Parse{Query: "SELECT id FROM orders ORDER BY id"}, &pgproto3.Bind{DestinationPortal: "np"}))
	e.setPolicy(narrowed)
	require.NoError(t, e.g.ReloadPolicy())
	assert.Equal(t, []string{"E:42501", "Z:E"}, r.query("MOVE 1 IN np"))
	assert.Equal(t, []string{"C", "Z:I"}, r.query("ROLLBACK"))
}

// A cursor opened before the session's search_path changed cannot be
// decided again for its rows after a reload: its text would now name
// other relations than the cursor reads. Here the cursor reads
// internal.orders; after SET search_path TO public its text names
// public.orders, which the new policy allows and internal.orders not.
func TestCursorAfterSearchPathAndReloadIsRefused(t *testing.T) {
	e := newEnv(t, envOpts{raw: true})
	pathAgent(t, e, "internal.orders")
	r := e.raw(t)
	r.login(e, "path-bot")
	assert.Equal(t, []string{"C", "Z:I"}, r.query("SET search_path TO internal, public"))
	assert.Equal(t, []string{"C", "Z:T"}, r.query("BEGIN"))
	assert.Equal(t, []string{"C", "Z:T"}, r.query("DECLARE c CURSOR WITH HOLD FOR SELECT id FROM orders"))
	assert.Equal(t, []string{"C", "Z:I"}, r.query("COMMIT"))
	assert.Equal(t, []string{"C", "Z:I"}, r.query("SET search_path TO public"))
	assert.Equal(t, seq("T", "D", "C", "Z:I"), r.query("FETCH 1 FROM c"), "no reload since: the allow stands")

	text, err := os.ReadFile(e.policy)
	require.NoError(t, err)
	e.setPolicy(strings.Replace(string(text), "select: [internal.orders]", "select: [public.orders]", 1))
	require.NoError(t, e.g.ReloadPolicy())
	r.fe.Send(&pgproto3.Query{String: "FETCH 1 FROM c"})
	require.NoError(t, r.fe.Flush())
	var refused *pgproto3.ErrorResponse
	for _, m := range r.until(&pgproto3.ReadyForQuery{}) {
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			refused = m
		case *pgproto3.DataRow:
			t.Errorf("a row of internal.orders came through: %q", m.Values)
		}
	}
	require.NotNil(t, refused)
	assert.Equal(t, "42501", refused.Code)
	assert.Contains(t, refused.Message, "close it and open it anew")
}

// A Describe answers with the columns of a statement or portal: after a
// reload that denies its statement, a Describe of a statement Parsed (or
// a portal opened) before it is decided again and refused, as a Bind or
// Execute would be, instead of answering with the shape of rows the
// policy now denies.
func TestDescribeAfterReloadIsDecidedAgain(t *testing.T) {
	e := newEnv(t, envOpts{raw: true})
	text, narrowed := e.ordersRevoked()

	r := e.raw(t)
	r.login(e, "analyst-bot")
	const q = "SELECT id FROM orders ORDER BY id"
	assert.Equal(t, []string{"Z:I"}, r.exchange(&pgproto3.Parse{Name: "s1", Query: q}))
	assert.Equal(t, []string{"T", "Z:I"}, r.exchange(&pgproto3.Describe{ObjectType: 'S', Name: "s1"}))
	assert.Equal(t, []string{"C", "Z:T"}, r.query("BEGIN"))
	assert.Equal(t, []string{"Z:T"}, r.exchange(&pgproto3.Bind{PreparedStatement: "s1", DestinationPortal: "np"}))
	assert.Equal(t, []string{"C", "Z:T"}, r.query("DECLARE c CURSOR FOR "+q))
	assert.Equal(t, []string{"T", "Z:T"}, r.exchange(&pgproto3.Describe{ObjectType: 'P', Name: "np"}))
	assert.Equal(t, []string{"T", "Z:T"}, r.exchange(&pgproto3.Describe{ObjectType: 'P', Name: "c"}))

	e.reloadPolicy(narrowed)
	assert.Equal(t, []string{"E:42501", "Z:E"}, r.exchange(&pgproto3.Describe{ObjectType: 'P', Name: "np"}))
	assert.Equal(t, []string{"C", "Z:I"}, r.query("ROLLBACK"))
	assert.Equal(t, []string{"E:42501", "Z:I"}, r.exchange(&pgproto3.Describe{ObjectType: 'S', Name: "s1"}))
	assert.Equal(t, []string{"C", "Z:T"}, r.query("BEGIN"))
	e.reloadPolicy(string(text))
	assert.Equal(t, []string{"C", "Z:T"}, r.query("DECLARE c CURSOR FOR "+q))
	e.reloadPolicy(narrowed)
	assert.Equal(t, []string{"E:42501", "Z:E"}, r.exchange(&pgproto3.Describe{ObjectType: 'P', Name: "c"}))
	assert.Equal(t, []string{"C", "Z:I"}, r.query("ROLLBACK"))
	assert.Equal(t, []string{q, q, "DECLARE c CURSOR FOR " + q}, e.deniedStatements(), "each refusal is audited with the statement described")

	// The statement was denied, not dropped: the restored policy allows
	// it again (a prepared statement denied at Bind stays denied until
	// Parsed again, as before).
	e.reloadPolicy(string(text))
	assert.Equal(t, []string{"Z:I"}, r.exchange(&pgproto3.Parse{Name: "s2", Query: q}))
	assert.Equal(t, []string{"T", "Z:I"}, r.exchange(&pgproto3.Describe{ObjectType: 'S', Name: "s2"}))
}
