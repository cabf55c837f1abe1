package pgproxy

import (
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// reqKind is what a message keyhole sent upstream is answered with. The
// server answers every message in order (protocol.sgml, "Extended
// Query"): Flush and, outside COPY, CopyData/CopyDone/CopyFail get no
// answer and are not queued.
type reqKind uint8

const (
	// reqParse is answered by ParseComplete.
	reqParse reqKind = iota + 1
	// reqBind is answered by BindComplete.
	reqBind
	// reqDescribe is answered by [ParameterDescription,] RowDescription
	// or NoData.
	reqDescribe
	// reqExecute is answered by its rows (or COPY) and then one of
	// CommandComplete, EmptyQueryResponse or PortalSuspended.
	reqExecute
	// reqClose is answered by CloseComplete.
	reqClose
	// reqSync is answered by ReadyForQuery; it ends the server's
	// skipping after an error.
	reqSync
	// reqQuery is a simple Query: per statement its results, then
	// ReadyForQuery. While the server skips to Sync it is ignored
	// without an answer.
	reqQuery
	// reqRefusedExt is the failing Parse keyhole sends in place of an
	// extended-protocol message it refused: the server answers it with
	// an ErrorResponse and skips to Sync, exactly as after the error
	// Postgres itself would have raised. The client gets the refusal.
	reqRefusedExt
	// reqRefusedQuery is the failing Query keyhole sends in place of a
	// refused Query or FunctionCall: ErrorResponse, then ReadyForQuery.
	reqRefusedQuery
)

// Any error aborts the implicit transaction of a sync block and an open
// transaction block, so a refused message must fail upstream too: the
// server's own transaction state stays the truth (a later COMMIT becomes
// ROLLBACK, later statements get 25P02, ROLLBACK TO SAVEPOINT recovers).
// The stand-in fails in the raw parser — before any catalog access,
// snapshot or lock, in every transaction state — and creates nothing: a
// Parse is only stored after it parsed, and a named one leaves the
// unnamed statement alone. The comment explains the error in the server
// log (log_min_error_statement).
const refusedSQL = "/* keyhole refused the client's message; this error stands in for the refusal */ keyhole_refused"

var (
	refusedParseMsg = mustEncode(&pgproto3.Parse{Name: "keyhole_refused", Query: refusedSQL})
	refusedQueryMsg = mustEncode(&pgproto3.Query{String: refusedSQL})
)

func mustEncode(m pgproto3.FrontendMessage) []byte {
	b, err := m.Encode(nil)
	if err != nil {
		panic(err)
	}
	return b
}

// request is one message sent upstream that the server still owes an
// answer to, with what keyhole needs to act on that answer.
type request struct {
	kind reqKind
	// stmt is the statement a reqParse creates (or a reqClose of a
	// statement drops); portal is the portal a reqBind creates, or a
	// reqClose of a portal closes.
	stmt   *prepared
	portal *portal
	// name is the portal a Close of a portal closes (closesPortal).
	name         string
	closesPortal bool
	// exec is the run a reqExecute or reqQuery answers.
	exec execution
	// refusal is what the client gets instead of the upstream's error
	// for reqRefusedExt and reqRefusedQuery.
	refusal *pgproto3.ErrorResponse
	// copyEnd is how many CopyDone and CopyFail messages the client had
	// forwarded before this one; copies counts the COPY FROM STDIN runs
	// this request started (a Query may run several). A message sent
	// after a request that starts COPY FROM STDIN, before the CopyDone or
	// CopyFail that ends it, is read by the server as part of the COPY:
	// see conn.copyStarted.
	copyEnd uint64
	copies  uint64
}

// execution is one run of allowed text upstream, audited as one event:
// a simple Query, or one Execute of a portal (a portal fetched with a
// row limit is audited once per Execute, as the server logs it).
type execution struct {
	sql    string
	text   *auditText // how the audit writes sql
	dec    *sqlpolicy.Decision
	access *sqlpolicy.Access
	// portal is the portal an Execute runs (nil for a Query); it counts
	// rows against max_rows across the Executes of one statement.
	portal *portal
	// mark is the session's note mark after the Query's decision: texts
	// noted after it were pipelined behind it (Session.ApplyMarked).
	mark    uint64
	started time.Time
	maxRows int64
	rows    int64 // rows of this run
	// stmtRows counts the current statement's rows for max_rows (Query).
	stmtRows int64
	// stmts counts the statements the server completed (Query).
	stmts int
	// cursors are the portals the text's DECLAREs open, in order, until
	// the server confirms them; opened counts those confirmed.
	cursors []*portal
	opened  int
	// fetched holds, per statement of the text, the portal its FETCH
	// reads (nil for other statements): a FETCH's rows count against
	// max_rows with the rest of that portal's statement, as an Execute's
	// do (conn.fetchedPortals).
	fetched []*portal
	errCode string
	errMsg  string
}

func (e *execution) fail(code, msg string) {
	if e.errCode == "" {
		e.errCode, e.errMsg = code, msg
	}
}

// requestQueue is a FIFO of requests that reuses its storage; it is not
// safe for concurrent use.
type requestQueue struct {
	buf  []request
	head int
}

func (q *requestQueue) len() int { return len(q.buf) - q.head }

func (q *requestQueue) push(r request) { q.buf = append(q.buf, r) }

// has reports whether a request of kind is queued.
func (q *requestQueue) has(kind reqKind) bool {
	for i := q.head; i < len(q.buf); i++ {
		if q.buf[i].kind == kind {
			return true
		}
	}
	return false
}

// add appends a zero request and returns it, valid until the next add or
// push, for the caller to fill in place: a request is some 230 bytes, and
// push copies it once more.
func (q *requestQueue) add() *request {
	q.buf = append(q.buf, request{})
	return &q.buf[len(q.buf)-1]
}

// front returns the oldest request, valid until the next push or pop.
func (q *requestQueue) front() *request {
	if q.head == len(q.buf) {
		return nil
	}
	return &q.buf[q.head]
}

func (q *requestQueue) pop() {
	q.buf[q.head] = request{} // drop references
	q.head++
	if q.head == len(q.buf) {
		q.buf, q.head = q.buf[:0], 0
	}
}

// removeAt removes the request at i (0 is the front), keeping the order.
func (q *requestQueue) removeAt(i int) {
	j := q.head + i
	copy(q.buf[j:], q.buf[j+1:])
	q.buf[len(q.buf)-1] = request{}
	q.buf = q.buf[:len(q.buf)-1]
}

// moveTo appends every request to dst in order and empties q.
func (q *requestQueue) moveTo(dst *requestQueue) {
	dst.buf = append(dst.buf, q.buf[q.head:]...)
	clear(q.buf[q.head:]) // drop references
	q.buf, q.head = q.buf[:0], 0
}
