package pgproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// Upstream → client: the upstream goroutine reads the server's answers,
// matches each to the request it answers by the protocol's rules, relays
// it, and audits every run with its true outcome:
//
//   - each extended message is answered in order; after an ErrorResponse
//     to one of them the server discards every message up to Sync, simple
//     Queries included, and answers none of them;
//   - a simple Query (outside that skipping) always ends in its own
//     ReadyForQuery, whatever its statements did;
//   - an Execute ends with CommandComplete, EmptyQueryResponse,
//     PortalSuspended (its row limit was reached; the portal lives on) or
//     ErrorResponse;
//   - NoticeResponse, NotificationResponse and ParameterStatus may come at
//     any time.
//
// An answer the rules do not allow for the request at the head of the
// queue ends the session: keyhole would no longer know what it relays.

// upstreamState is the upstream goroutine's view of the server.
type upstreamState struct {
	q requestQueue // requests taken from conn.sent, oldest first
	// popped counts requests answered since inflight was last published.
	popped int64
	// skipping: an extended message failed and the server discards
	// messages until the next Sync.
	skipping bool
	// blockErr: the server sent an error since the last ReadyForQuery.
	blockErr bool
	// cut is the max_rows error the client got: until ReadyForQuery the
	// client's view of the block has ended, and nothing else of it is
	// relayed (answers are still matched and audited).
	cut       *pgproto3.ErrorResponse
	unflushed int // bytes for the client since the last flush
	// parsed and executed say whether the block prepared a statement and
	// whether it ran one: a prepare-only block (pgx prepares, then
	// executes in a second round trip) is not a point to end a draining
	// session at.
	parsed, executed bool
	portals          portalTracker
	// unnamed is the unnamed statement the server holds, if any.
	unnamed *prepared
	// copyDoomed: the client pipelined a message the server reads as
	// part of the COPY FROM STDIN now open and fails it on (see
	// copyStarted): the server's answer comes without the client's data.
	copyDoomed bool
	// schemaChanged: a DDL statement completed in the transaction (or
	// block) now open; the decider hears of it once no transaction is
	// open (schemaSettled), when other connections see it too.
	schemaChanged bool
}

// readUpstream reads, relays and audits the server's answers until
// nothing is owed: on the upstream goroutine, or inline on the client
// goroutine (collect), which also stops when COPY FROM STDIN starts (the
// server then waits for the client's data).
func (c *conn) readUpstream(inline bool) error {
	for {
		if c.upRd.buffered() == 0 && !c.owed(inline) {
			return nil
		}
		if inline && c.copyIn.Load() && !c.up.copyDoomed {
			if c.up.unflushed > 0 {
				c.flushToClient()
			}
			return nil
		}
		typ, raw, err := c.upRd.next()
		if err == nil && !upstreamTypes[typ] {
			err = fmt.Errorf("unknown message type: %c", typ)
		}
		if err != nil {
			if c.wokenForGoodbye(err) {
				continue
			}
			return c.upstreamReadError(err)
		}
		if err := c.answer(typ, raw); err != nil {
			return err
		}
		if c.waiting.Load() {
			select {
			case c.resolved <- struct{}{}:
			default:
			}
		}
		// Answers go to the client once the upstream has sent nothing
		// more: one write for a statement's whole response.
		if c.up.unflushed > 0 && (c.upRd.buffered() == 0 || c.up.unflushed >= flushAt) {
			c.flushToClient()
		}
	}
}

// owed reports whether the server still owes an answer. When it does not,
// the upstream goroutine (not inline) ends: it clears upReader under the
// same lock under which the client goroutine hands requests over.
//
// While the server skips to a Sync after an error, it owes nothing until
// the client sends that Sync: the requests before it, a simple Query
// included, are discarded unanswered. Waiting for them would wait for
// good, and the client goroutine (inline) would read the client no more:
// neither the Sync nor a message that must end the session (a protocol
// violation) would be seen. They stay queued; front drops them when the
// Sync's answer comes.
func (c *conn) owed(inline bool) bool {
	u := &c.up
	if u.q.len() > 0 && !u.skipping {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent.moveTo(&u.q)
	if u.q.len() > 0 && (!u.skipping || u.q.has(reqSync)) {
		return true
	}
	// Everything is relayed (the loop flushes once upRd is drained), or
	// the rest waits for the client's Sync: an idle session keeps no
	// write buffer, nor the upstream read buffer (readUpstream asks only
	// once upRd is drained, and nothing reads the upstream again until a
	// request is owed). Under mu: once upReader is cleared below, a new
	// upstream goroutine may read upRd.
	if u.unflushed == 0 {
		readBufs.put(c.wbuf)
		c.wbuf = nil
	}
	if c.upRd.buffered() == 0 && c.upRd.buf != nil {
		c.upRd.shrink()
	}
	if !inline {
		c.upReader = false
	}
	return false
}

// wokenForGoodbye handles the read deadline goodbye sets: it reports true
// (read on) while the server still owes an answer.
func (c *conn) wokenForGoodbye(err error) bool {
	var ne net.Error
	if !(errors.As(err, &ne) && ne.Timeout()) && !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	c.mu.Lock()
	bye, stopped := c.saidBye, c.stopped
	c.mu.Unlock()
	if !bye || stopped || !c.answerable() {
		return false
	}
	_ = c.upConn.SetReadDeadline(time.Time{})
	return true
}

// answerable reports whether the server will still answer a request: any
// request, unless it skips to a Sync that is not coming.
func (c *conn) answerable() bool {
	u := &c.up
	c.mu.Lock()
	c.sent.moveTo(&u.q)
	c.mu.Unlock()
	if !u.skipping {
		return u.q.len() > 0
	}
	return u.q.has(reqSync)
}

func (c *conn) upstreamReadError(err error) error {
	c.mu.Lock()
	stopped, stopErr, saidBye := c.stopped, c.stopErr, c.saidBye
	c.mu.Unlock()
	if stopped {
		return stopErr
	}
	if saidBye {
		return fmt.Errorf("upstream closed after Terminate: %w", errors.Join(errClientGone, err))
	}
	if m := c.srv.cfg.Metrics; m != nil {
		m.UpstreamError(protocolName)
	}
	return fatal(codeConnectionFailure, "keyhole: upstream connection lost", fmt.Errorf("read upstream: %w", err))
}

// front returns the oldest request the server will answer: requests it
// skips (after an error, up to the Sync) are dropped on the way.
func (c *conn) front() *request {
	u := &c.up
	for {
		if u.q.len() == 0 {
			c.mu.Lock()
			c.sent.moveTo(&u.q)
			c.mu.Unlock()
			if u.q.len() == 0 {
				return nil
			}
		}
		r := u.q.front()
		if !u.skipping || r.kind == reqSync {
			return r
		}
		c.skipped(r)
		c.answered()
	}
}

// answered removes the front request; when none is left it publishes the
// count for the idle timer and Shutdown and marks the session active.
func (c *conn) answered() {
	u := &c.up
	u.q.pop()
	u.popped++
	if u.q.len() == 0 {
		c.inflight.Add(-u.popped)
		u.popped = 0
		c.lastActive.Store(monoNow())
	}
}

// skipped records that the server did not process r: what r would have
// created does not exist, and its run did not happen (it is not audited).
func (c *conn) skipped(r *request) {
	switch r.kind {
	case reqParse:
		r.stmt.state.Store(int32(objFailed))
	case reqBind:
		r.portal.state.Store(int32(objFailed))
	case reqExecute, reqQuery:
		failCursors(&r.exec)
	}
}

// failCursors marks the cursors a run would have opened and did not.
func failCursors(ex *execution) {
	for _, p := range ex.cursors[ex.opened:] {
		p.state.CompareAndSwap(int32(objPending), int32(objFailed))
	}
	ex.opened = len(ex.cursors)
}

// dropAll empties the queue after the server went away: nothing in it ran.
func (c *conn) dropAll() {
	for r := c.front(); r != nil; r = c.front() {
		c.skipped(r)
		c.answered()
	}
}

func (c *conn) unexpected(typ byte, r *request) error {
	want := "nothing"
	if r != nil {
		want = fmt.Sprintf("request kind %d", r.kind)
	}
	return fatal(codeConnectionFailure, "keyhole: upstream protocol error",
		fmt.Errorf("upstream sent %q while keyhole expected the answer to %s", typ, want))
}

// answer handles one message from the upstream.
func (c *conn) answer(typ byte, raw []byte) error {
	u := &c.up
	switch typ {
	case 'N': // NoticeResponse
		c.writeRaw(c.scrubNotice(raw))
		return nil
	case 'A': // NotificationResponse
		c.writeRaw(raw)
		return nil
	case 'S':
		var m pgproto3.ParameterStatus
		if err := m.Decode(raw[5:]); err != nil {
			return fatal(codeConnectionFailure, "keyhole: upstream connection lost", fmt.Errorf("read upstream: %w", err))
		}
		m.Value = c.paramValue(m.Name, m.Value)
		c.sendAlways(&m)
		return nil
	case 'E':
		return c.onError(raw)
	case 'W':
		return fatal(codeFeatureUnsupported, "keyhole does not proxy replication (CopyBoth)", nil)
	case 'R', 'K', 'v', 'V':
		return fatal(codeConnectionFailure, "keyhole: upstream protocol error", fmt.Errorf("unexpected upstream message %q", typ))
	}
	r := c.front()
	if r == nil {
		return c.unexpected(typ, nil)
	}
	switch typ {
	case 'D', 'd': // DataRow, CopyData (COPY TO STDOUT rows)
		if r.kind != reqExecute && r.kind != reqQuery {
			return c.unexpected(typ, r)
		}
		if c.row(&r.exec) {
			c.toClient(raw)
		}
	case 'T': // RowDescription
		switch r.kind {
		case reqDescribe:
			c.toClient(raw)
			c.answered()
		case reqQuery:
			c.toClient(raw)
		default:
			return c.unexpected(typ, r)
		}
	case 't': // ParameterDescription, before a statement's RowDescription or NoData
		if r.kind != reqDescribe {
			return c.unexpected(typ, r)
		}
		c.toClient(raw)
	case 'n': // NoData
		if r.kind != reqDescribe {
			return c.unexpected(typ, r)
		}
		c.toClient(raw)
		c.answered()
	case '1': // ParseComplete
		if r.kind != reqParse {
			// Also a stand-in that parsed: the block would go on as if
			// nothing had been refused.
			return c.unexpected(typ, r)
		}
		r.stmt.state.CompareAndSwap(int32(objPending), int32(objOpen))
		if r.stmt.name == "" {
			u.unnamed = r.stmt
		}
		u.parsed = true
		c.toClient(raw)
		c.answered()
	case '2': // BindComplete
		if r.kind != reqBind {
			return c.unexpected(typ, r)
		}
		u.portals.open(r.portal)
		c.toClient(raw)
		c.answered()
	case '3': // CloseComplete
		if r.kind != reqClose {
			return c.unexpected(typ, r)
		}
		if r.closesPortal {
			u.portals.close(r.name)
		} else if r.stmt != nil {
			r.stmt.state.Store(int32(objClosed))
		}
		c.toClient(raw)
		c.answered()
	case 'G', 'H', 'c': // CopyInResponse, CopyOutResponse, CopyDone
		if r.kind != reqExecute && r.kind != reqQuery {
			return c.unexpected(typ, r)
		}
		if typ == 'G' {
			c.copyStarted(r)
		}
		c.toClient(raw)
	case 'C': // CommandComplete
		if r.kind != reqExecute && r.kind != reqQuery {
			return c.unexpected(typ, r)
		}
		if c.copyIn.Load() {
			c.copyIn.Store(false)
			c.copyEnded()
		}
		u.executed = true
		c.statementDone(&r.exec, raw[5:len(raw)-1])
		c.toClient(raw)
		if r.kind == reqExecute {
			c.finishExec(&r.exec, outcomeDone)
			c.answered()
		}
	case 'I': // EmptyQueryResponse
		switch r.kind {
		case reqExecute:
			c.toClient(raw)
			c.finishExec(&r.exec, outcomeDone)
			c.answered()
		case reqQuery:
			c.toClient(raw)
		default:
			return c.unexpected(typ, r)
		}
	case 's': // PortalSuspended: the Execute's row limit was reached
		if r.kind != reqExecute {
			return c.unexpected(typ, r)
		}
		c.toClient(raw)
		c.finishExec(&r.exec, outcomeSuspended)
		c.answered()
	case 'Z':
		return c.readyForQuery(r, raw)
	default:
		return c.unexpected(typ, r)
	}
	return nil
}

// copyStarted settles the requests the client sent after r, which
// started a COPY FROM STDIN, before the client knew: until the CopyDone or
// CopyFail that ends it, the server reads every message as part of the
// COPY (CopyGetData). It ignores Sync and Flush there, so a Sync's request
// is dropped (its ReadyForQuery will not come; waiting for it would wait
// for good, and the next answer would be matched to it); any other
// message fails the COPY, and the session, with a protocol violation
// (FATAL 08P01, "protocol synchronization was lost"), which then comes
// without the client's data, so it is read at once.
//
// The session is in COPY (copyIn: the client goroutine takes only COPY
// messages) unless the client goroutine has already forwarded the
// CopyDone or CopyFail that ends it: the client pipelined the data and
// its end behind the statement, and the COPY waits for nothing more.
// Both sides count and test that end under mu.
func (c *conn) copyStarted(r *request) {
	u := &c.up
	r.copies++
	end := r.copyEnd + r.copies - 1 // the CopyDone or CopyFail ending it
	if h := testHooks.Load(); h != nil {
		h.copyStarted(c)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent.moveTo(&u.q)
	// Requests still staged go through the same rule when flushUpTo
	// hands them over.
	c.copyOpened = end + 1
	if c.copyEnds.Load() == end {
		c.copyIn.Store(true)
	}
	for i := 1; i < u.q.len(); {
		b := &u.q.buf[u.q.head+i]
		if b.copyEnd != end {
			i++
			continue
		}
		if b.kind != reqSync {
			u.copyDoomed = true
			break
		}
		u.q.removeAt(i)
		u.popped++ // answered: published with the rest (answered)
	}
}

// copyEnded notes that the server ended the COPY FROM STDIN copyStarted
// noted: a Sync the client sends from now on is answered (after an error
// the server skips COPY messages to the Sync), so flushUpTo drops none.
func (c *conn) copyEnded() {
	c.mu.Lock()
	c.copyOpened = 0
	c.mu.Unlock()
}

// onError handles an ErrorResponse.
func (c *conn) onError(raw []byte) error {
	u := &c.up
	var m pgproto3.ErrorResponse
	if err := m.Decode(raw[5:]); err != nil {
		return fatal(codeConnectionFailure, "keyhole: upstream connection lost", fmt.Errorf("read upstream: %w", err))
	}
	c.copyIn.Store(false)
	c.copyEnded()
	scrubbed := c.scrubFields(&m)
	if withheld := c.withholdRowDetail(&m); withheld != nil {
		raw = withheld
	} else if scrubbed {
		if enc, err := m.Encode(nil); err == nil {
			raw = enc
		}
	}
	if m.Severity == "FATAL" || m.Severity == "PANIC" {
		// The backend is exiting: the run in progress ended with this
		// error, and nothing queued behind it will run.
		if r := c.front(); r != nil && (r.kind == reqExecute || r.kind == reqQuery) {
			r.exec.fail(m.Code, m.Message)
			c.finishExec(&r.exec, outcomeDone)
			c.answered()
		}
		c.dropAll()
		c.writeRaw(raw)
		c.flushToClient()
		return fmt.Errorf("upstream %s %s: %s: %w", m.Severity, m.Code, m.Message, errUpstreamFatal)
	}
	u.blockErr = true
	r := c.front()
	if r == nil {
		return c.unexpected('E', nil)
	}
	switch r.kind {
	case reqQuery:
		// The Query's statement failed; its ReadyForQuery follows.
		r.exec.fail(m.Code, m.Message)
		c.toClient(raw)
	case reqSync:
		// The block's implicit COMMIT failed (a deferred constraint);
		// ReadyForQuery follows.
		c.toClient(raw)
	case reqRefusedQuery:
		c.sendClient(r.refusal)
		r.refusal = nil // given; see readyForQuery
	case reqRefusedExt:
		c.sendClient(r.refusal)
		u.skipping = true
		c.answered()
	case reqExecute:
		r.exec.fail(m.Code, m.Message)
		c.finishExec(&r.exec, outcomeDone)
		c.toClient(raw)
		u.skipping = true
		c.answered()
	case reqParse, reqBind, reqDescribe, reqClose:
		if r.kind == reqBind && r.portal != nil {
			c.auditBindError(r.portal, m.Code, m.Message)
		}
		// What a failed Parse or Bind would have created does not exist;
		// the server keeps what it had under the name.
		c.skipped(r)
		c.toClient(raw)
		u.skipping = true
		c.answered()
	default:
		return c.unexpected('E', r)
	}
	return nil
}

// readyForQuery ends a sync block or a simple Query.
func (c *conn) readyForQuery(r *request, raw []byte) error {
	u := &c.up
	if r.kind != reqSync && r.kind != reqQuery && r.kind != reqRefusedQuery || len(raw) != 6 ||
		r.kind == reqRefusedQuery && r.refusal != nil {
		// (A stand-in Query that did not fail would leave the client's
		// transaction as if nothing had been refused.)
		return c.unexpected('Z', r)
	}
	status := raw[5]
	if r.kind == reqQuery {
		c.finishExec(&r.exec, outcomeDone)
	}
	sync := r.kind == reqSync
	if !sync {
		// A simple Query drops the unnamed statement and runs in the
		// unnamed portal (exec_simple_query), whatever it ran.
		if u.unnamed != nil {
			u.unnamed.state.Store(int32(objClosed))
			u.unnamed = nil
		}
		u.portals.close("")
	}
	c.answered()
	if status == 'I' {
		// No transaction is open: what the block ran has committed, or
		// rolled back if it failed, and its portals have ended with it.
		u.portals.idle(u.blockErr)
		c.schemaSettled()
	}
	c.writeRaw(raw) // also after a max_rows cut: it ends the client's block
	c.mu.Lock()
	c.txStatus = status
	c.prepOnly = u.parsed && !u.executed && sync
	drain := c.draining && c.idleLocked()
	c.mu.Unlock()
	u.skipping, u.blockErr, u.cut, u.parsed, u.executed, u.copyDoomed = false, false, nil, false, false, false
	if drain {
		c.flushToClient()
		c.stop(errShutdown)
	}
	return nil
}

// statementDone follows what a completed statement did to the server's
// portals, from its command tag (and the analysis, for what a tag does not
// say). A cursor's own Execute is a fetch and changes nothing.
func (c *conn) statementDone(ex *execution, tag []byte) {
	i := 0
	if ex.portal == nil {
		i = ex.stmts
		ex.stmts++
		ex.stmtRows = 0 // max_rows counts per statement
	} else {
		ex.portal.stmtRows = 0
		if ex.portal.cursor {
			return
		}
	}
	var st *sqlpolicy.Statement
	if ex.access != nil && i < len(ex.access.Statements) {
		st = &ex.access.Statements[i]
		if st.ChangesSchema() {
			c.up.schemaChanged = true
		}
	}
	t := &c.up.portals
	switch {
	case bytes.Equal(tag, tagDeclare):
		if ex.opened < len(ex.cursors) {
			t.open(ex.cursors[ex.opened])
			ex.opened++
		}
	case bytes.Equal(tag, tagClose):
		if st != nil && st.CursorName != "" {
			t.close(st.CursorName)
		} else {
			t.closeAll()
		}
	case bytes.Equal(tag, tagCloseAll), bytes.Equal(tag, tagDiscardAll):
		t.closeAll()
	case bytes.Equal(tag, tagCommit):
		t.commit()
	case bytes.Equal(tag, tagRollback):
		// ROLLBACK TO SAVEPOINT has the tag of ROLLBACK.
		if st != nil && st.Tx == sqlpolicy.TxRollbackTo {
			t.rollbackToSavepoint(st.Savepoint)
		} else {
			t.rollback()
		}
	case bytes.Equal(tag, tagSavepoint):
		t.savepoint(savepointOf(st))
	case bytes.Equal(tag, tagRelease):
		t.release(savepointOf(st))
	case bytes.Equal(tag, tagPrepareTx):
		t.rollback()
	}
}

// savepointOf is the savepoint st names ("" when st is not known).
func savepointOf(st *sqlpolicy.Statement) string {
	if st == nil {
		return ""
	}
	return st.Savepoint
}

// Command tags (src/include/tcop/cmdtaglist.h) that change portals.
var (
	tagDeclare    = []byte("DECLARE CURSOR")
	tagClose      = []byte("CLOSE CURSOR")
	tagCloseAll   = []byte("CLOSE CURSOR ALL")
	tagDiscardAll = []byte("DISCARD ALL")
	tagCommit     = []byte("COMMIT")
	tagRollback   = []byte("ROLLBACK")
	tagSavepoint  = []byte("SAVEPOINT")
	tagRelease    = []byte("RELEASE")
	tagPrepareTx  = []byte("PREPARE TRANSACTION")
)

// row counts a DataRow (or COPY TO row) against max_rows and reports
// whether to relay it.
func (c *conn) row(ex *execution) bool {
	u := &c.up
	if u.cut != nil {
		return false
	}
	ex.rows++
	n := &ex.stmtRows
	i := ex.stmts
	if ex.portal != nil {
		// A portal's statement may be fetched over several Executes.
		n, i = &ex.portal.stmtRows, 0
	}
	if i < len(ex.fetched) && ex.fetched[i] != nil {
		// ... and over several FETCHes.
		n = &ex.fetched[i].stmtRows
	}
	*n++
	if ex.maxRows <= 0 || *n <= ex.maxRows {
		return true
	}
	msg := fmt.Sprintf("keyhole: statement returned more than %d rows (role limit); add a LIMIT", ex.maxRows)
	ex.fail(codeProgramLimit, msg)
	cut := stmtError(codeProgramLimit, msg)
	// The client gets the error now, like a server error (a client that
	// only Flushed is waiting for it); the rest of its block is not
	// relayed.
	c.sendClient(cut)
	u.cut = cut
	c.flushToClient()
	if !c.holdForCancel() {
		// The server may be done with this statement (its rows still in
		// the socket) and running the client's next block: a cancel
		// could stop that one. The statement runs to its end instead,
		// its rows dropped.
		c.log.Info("max_rows exceeded; not cancelling: the client's next statement is already upstream", "max_rows", ex.maxRows)
		return false
	}
	c.log.Info("max_rows exceeded; cancelling upstream statement", "max_rows", ex.maxRows)
	if s := c.ev; s != nil {
		// A loop does not wait for the dial: the cancel runs on a
		// goroutine, and the loop reads no client message until it has
		// landed, which is what the wait below ensures.
		s.cancelLater()
		return false
	}
	// Synchronously: the cancel must land before the client can send
	// its next statement (after our ReadyForQuery), or it could cancel
	// that one instead. An idle backend ignores a late cancel.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.cancelUpstream(ctx); err != nil {
		c.log.Warn("cancel upstream after max_rows", "err", err)
	}
	c.mu.Lock()
	close(c.cancelHold)
	c.cancelHold = nil
	c.mu.Unlock()
	return false
}

// holdForCancel reports whether the statement in flight (the front
// request's) may be cancelled: nothing past the end of its block (its
// Query, or the Sync after its Execute) is handed to the upstream side,
// so the server runs nothing the client will get the answer of. When
// true, on the goroutine relay, the client goroutine writes nothing more
// upstream until the cancel has landed (cancelHold, see flushUpTo); a
// loop reads no client message meanwhile (cancelLater).
func (c *conn) holdForCancel() bool {
	u := &c.up
	c.mu.Lock()
	defer c.mu.Unlock()
	ended := false
	for _, q := range []*requestQueue{&u.q, &c.sent} {
		for i := q.head; i < len(q.buf); i++ {
			if ended {
				return false
			}
			switch q.buf[i].kind {
			case reqSync, reqQuery, reqRefusedQuery:
				ended = true
			}
		}
	}
	if c.ev == nil {
		c.cancelHold = make(chan struct{})
	}
	return true
}

// finishExec audits a run the server answered and, when it completed
// without error, applies its effects to the session.
func (c *conn) finishExec(ex *execution, oc outcome) {
	failCursors(ex)
	if oc == outcomeDone && ex.errCode == "" && ex.access != nil && (ex.portal == nil || !ex.portal.cursor) {
		c.sessMu.Lock()
		if ex.portal != nil {
			// An extended-protocol Execute completes before its Sync: a
			// later error in the same implicit transaction can still roll
			// back a SET it made, so it only adds search_path candidates.
			c.session.ApplyUncommitted(ex.access)
		} else {
			// Texts the client pipelined behind this Query were decided
			// (and noted) before its answer came, and may still change
			// the search path after it.
			c.session.ApplyMarked(ex.access, ex.mark)
		}
		c.sessMu.Unlock()
	}
	c.auditExec(ex, oc, c.upRd.answeredAt())
}

// --- writing to the client (upstream goroutine) ---

// toClient relays raw unless a max_rows cut ended the client's view of
// the block.
func (c *conn) toClient(raw []byte) {
	if c.up.cut == nil {
		c.writeRaw(raw)
	}
}

func (c *conn) writeRaw(raw []byte) {
	if c.clientDead.Load() {
		return
	}
	c.wbuf = append(c.clientBuffer(), raw...)
	c.up.unflushed += len(raw)
}

// sendClient encodes msg for the client unless a max_rows cut ended the
// client's view of the block.
func (c *conn) sendClient(msg pgproto3.BackendMessage) {
	if c.up.cut == nil {
		c.sendAlways(msg)
	}
}

func (c *conn) sendAlways(msg pgproto3.BackendMessage) {
	if c.clientDead.Load() {
		return
	}
	n := len(c.wbuf)
	c.send(msg)
	c.up.unflushed += max(1, len(c.wbuf)-n)
}

// flushToClient writes what is buffered for the client. A client that
// cannot be written to has gone: its answers are dropped from now on, the
// client goroutine is woken to say goodbye upstream, and this goroutine
// reads on so that what the server still answers is audited.
func (c *conn) flushToClient() {
	c.up.unflushed = 0
	if c.clientDead.Load() {
		c.wbuf, c.wsent = c.wbuf[:0], 0
		return
	}
	if err := c.flushClient(); err != nil && !c.clientDead.Swap(true) {
		c.log.Debug("client write failed; reading the upstream's answers for the audit", "err", err)
		_ = c.client.SetReadDeadline(time.Now())
	}
}

// --- audit ---

// auditDenied records a refused text.
func (c *conn) auditDenied(sql string, dec *sqlpolicy.Decision, start time.Time, resp *pgproto3.ErrorResponse) {
	if c.srv.cfg.Audit == nil {
		return
	}
	text, fp := dec.Redacted, dec.Fingerprint
	if text == "" {
		text, fp = c.srv.cfg.Decider.Redact(sql)
	}
	c.auditEvent(sql, text, fp, dec, start, time.Now(), 0, resp.Code, resp.Message, outcomeDone)
}

// auditExec records a run, one simple Query or one Execute, as ended at
// now: when the answer that ended it came (the read that brought it), or
// when the session ended without one.
func (c *conn) auditExec(ex *execution, oc outcome, now time.Time) {
	if c.srv.cfg.Audit == nil {
		return
	}
	var text, fp string
	switch {
	case ex.text != nil:
		text, fp = ex.text.get(c, ex.sql, ex.dec)
	case ex.dec.Redacted != "":
		text, fp = ex.dec.Redacted, ex.dec.Fingerprint
	default:
		text, fp = c.srv.cfg.Decider.Redact(ex.sql)
	}
	code, msg := ex.errCode, ex.errMsg
	if oc == outcomeUnknown {
		msg = "keyhole: the session ended before the server answered; the statement may have run"
	}
	c.auditEvent(ex.sql, text, fp, ex.dec, ex.started, now, ex.rows, code, msg, oc)
}

// auditBindError audits an allowed statement whose Bind the server
// refused: it reached the server, which may have evaluated part of it
// (planning folds constants: SELECT 1/0 fails here), and its Execute, if
// any, is skipped and not audited.
func (c *conn) auditBindError(p *portal, code, msg string) {
	if p.dec == nil || !strings.HasPrefix(code, "22") {
		// Only a data exception (class 22: a constant folded, a
		// parameter's value converted) says the server evaluated part of
		// the statement. The others are about names and state (26000 no
		// such statement, 42P03 the portal exists, 25P02 the transaction
		// is aborted): nothing of it ran.
		return
	}
	now := c.upRd.answeredAt()
	ex := execution{sql: p.sql, text: p.text, dec: p.dec, access: p.access, started: now}
	ex.fail(code, msg)
	c.auditExec(&ex, outcomeDone, now)
}

func (c *conn) auditEvent(sql, text, fp string, dec *sqlpolicy.Decision, start, now time.Time, rows int64, code, msg string, oc outcome) {
	if c.srv.cfg.RawStatements {
		text = sql
	}
	c.record(audit.Event{
		Time:        now,
		Kind:        audit.KindStatement,
		Statement:   text,
		Fingerprint: fp,
		Decision:    dec.Effect,
		Rule:        dec.Rule,
		Reasons:     dec.Reasons,
		DurationMS:  msBetween(start, now),
		Rows:        rows,
		ErrorCode:   code,
		Error:       msg,
		Outcome:     string(oc),
	})
}

// schemaSettled tells the decider, once no transaction is open, that DDL
// completed since it was last told: the catalog keyhole decides with is
// read again (sqlpolicy.SchemaNotifier), so a table the agent created is
// known to its later statements. A rolled-back DDL asks for a reading
// that finds nothing new.
func (c *conn) schemaSettled() {
	if !c.up.schemaChanged {
		return
	}
	c.up.schemaChanged = false
	if n, ok := c.srv.cfg.Decider.(sqlpolicy.SchemaNotifier); ok {
		n.SchemaChanged()
	}
}
