package pgproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// Client → upstream: the client goroutine reads the client's messages,
// decides every Query and Parse, and forwards what is allowed. A message
// keyhole refuses is replaced upstream by a statement that fails (see
// refusedSQL), so that the server answers it, in order, with an error whose
// place the refusal takes: the server then skips the rest of the sync block
// and rolls back or aborts the transaction exactly as after its own error.

// readClient runs the client side until it ends; a panic ends the session
// with an internal error (relay then stops it and audits what was in
// flight). The recovering function is deferred here, not wrapped around
// the call, so that no wrapper's frame stays on an idle session's stack.
func (c *conn) readClient() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = c.panicked("panic in client relay", r)
		}
	}()
	for {
		// What was forwarded goes upstream once no further whole message
		// is buffered: one write for a client's batch (Bind, Execute,
		// Sync). Then, before waiting for the client, what the server
		// owes is read (collect).
		if !c.clientRd.complete() {
			if err := c.exchange(); err != nil {
				return err
			}
			// About to wait for the client: an idle session keeps no
			// write buffer.
			readBufs.put(c.upBuf)
			c.upBuf = nil
			if c.loopable && c.toLoop() {
				return errOnLoop
			}
		} else if len(c.upBuf) >= flushAt {
			if err := c.flushUp(); err != nil {
				return err
			}
		}
		typ, raw, rerr := c.clientRd.next()
		if rerr != nil {
			return c.clientReadError(rerr)
		}
		if err := c.clientMessage(typ, raw); err != nil {
			return err
		}
	}
}

// clientMessage decodes and handles one client message. It is readClient's
// loop body, in a frame of its own: readClient's frame stays on the stack
// of an idle session (which the garbage collector can only halve while a
// quarter of it is unused), this one's locals do not.
func (c *conn) clientMessage(typ byte, raw []byte) error {
	if done, err := c.passMessage(typ, raw); done {
		return err
	}
	msg, err := c.cmsgs.decode(typ, raw[5:], c.authType)
	if err != nil {
		return c.clientReadError(err)
	}
	if c.copyIn.Load() {
		// In COPY FROM STDIN the upstream ignores Flush and Sync and
		// fails the COPY on anything else, consuming the message
		// without an answer; keyhole would lose track of what is owed.
		switch msg.(type) {
		case *pgproto3.CopyData, *pgproto3.CopyDone, *pgproto3.CopyFail, *pgproto3.Terminate:
		case *pgproto3.Flush, *pgproto3.Sync:
			return nil
		default:
			return fatal(codeProtocolViolation, fmt.Sprintf("unexpected message %T during COPY FROM STDIN", msg), nil)
		}
	}
	switch m := msg.(type) {
	case *pgproto3.Query:
		err = c.onQuery(m, raw)
	case *pgproto3.Parse:
		err = c.onParse(m, raw)
	case *pgproto3.Bind:
		err = c.onBind([]byte(m.DestinationPortal), []byte(m.PreparedStatement), m, raw)
	case *pgproto3.Describe:
		err = c.onDescribe(m.ObjectType, []byte(m.Name), m, raw)
	case *pgproto3.Execute:
		err = c.onExecute([]byte(m.Portal), m, raw)
	case *pgproto3.Close:
		err = c.onClose(m.ObjectType, []byte(m.Name), m, raw)
	case *pgproto3.Sync:
		err = c.onSync(raw)
	case *pgproto3.Flush:
		// Also while skipping: messages before the refused one, and
		// the refusal's stand-in, may still wait upstream for it.
		err = c.forward(m, raw)
	case *pgproto3.CopyData:
		// Outside COPY mode the upstream ignores these, as the
		// protocol specifies.
		err = c.forward(m, raw)
	case *pgproto3.CopyDone, *pgproto3.CopyFail:
		// (Under mu: see copyStarted.)
		c.mu.Lock()
		c.copyEnds.Add(1)
		c.copyIn.Store(false)
		c.mu.Unlock()
		err = c.forward(m, raw)
	case *pgproto3.FunctionCall:
		if !c.skipToSync {
			c.refuseQuery(stmtError(codeFeatureUnsupported, "keyhole does not allow the function call protocol; call the function in a SELECT"))
		}
	case *pgproto3.Terminate:
		return fmt.Errorf("client sent Terminate: %w", errClientGone)
	default:
		return fatal(codeProtocolViolation, fmt.Sprintf("unexpected message type %T", msg), nil)
	}
	c.cmsgs.forget(msg)
	return err
}

// passMessage handles, without decoding it into a pgproto3 message, a
// client message the relay only needs a name or two of and forwards as
// received: Bind, Describe, Execute, Close, Sync and Flush, read in place
// (scanBind and the like: no allocation per message). It reports false
// (the caller decodes and handles the message) for every other message, one
// these scanners do not take exactly as pgproto3 would (malformed, or with
// bytes after its last field, which forward re-encodes), and during COPY
// FROM STDIN.
func (c *conn) passMessage(typ byte, raw []byte) (bool, error) {
	if c.copyIn.Load() {
		return false, nil
	}
	body := raw[5:]
	switch typ {
	case 'B':
		portal, stmt, ok := scanBind(body)
		if !ok {
			return false, nil
		}
		return true, c.onBind(portal, stmt, nil, raw)
	case 'D', 'C':
		objType, name, ok := scanNamed(body)
		if !ok {
			return false, nil
		}
		if typ == 'D' {
			return true, c.onDescribe(objType, name, nil, raw)
		}
		return true, c.onClose(objType, name, nil, raw)
	case 'E':
		portal, ok := scanExecute(body)
		if !ok {
			return false, nil
		}
		return true, c.onExecute(portal, nil, raw)
	case 'S':
		if len(body) != 0 {
			return false, nil
		}
		return true, c.onSync(raw)
	case 'H':
		if len(body) != 0 {
			return false, nil
		}
		// Also while skipping: messages before the refused one, and
		// the refusal's stand-in, may still wait upstream for it.
		return true, c.forward(nil, raw)
	}
	return false, nil
}

func (c *conn) onSync(raw []byte) error {
	c.skipToSync = false
	c.stageNew(reqSync)
	c.syncs++
	return c.forward(nil, raw)
}

func (c *conn) clientReadError(err error) error {
	c.mu.Lock()
	stopped, stopErr := c.stopped, c.stopErr
	c.mu.Unlock()
	if stopped {
		return stopErr
	}
	if errors.Is(err, errNoBufferMemory) {
		return fatal(codeOutOfMemory, "keyhole: out of memory for client messages; try again later", err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		// The relay sets no read deadline; only stop does, and the upstream
		// goroutine's wake-up after a failed write to the client.
		return fmt.Errorf("client read: %w", errors.Join(errClientGone, err))
	}
	var tooBig *pgproto3.ExceededMaxBodyLenErr
	if errors.As(err, &tooBig) {
		return fatal(codeProtocolViolation, fmt.Sprintf("message of %d bytes exceeds the maximum of %d", tooBig.ActualBodyLen, tooBig.MaxExpectedBodyLen), err)
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return fmt.Errorf("client read: %w", errors.Join(errClientGone, err))
	}
	return fatal(codeProtocolViolation, "invalid message from client", err)
}

// stage queues the request a message forwarded next is answered by. It
// reaches the upstream goroutine in flushUp, before the message's bytes
// leave.
func (c *conn) stage(r request) {
	r.copyEnd = c.copyEnds.Load()
	c.staged.push(r)
}

// stageNew stages a request of kind, returned for the caller to fill in
// (valid until the next stage).
func (c *conn) stageNew(kind reqKind) *request {
	r := c.staged.add()
	r.kind, r.copyEnd = kind, c.copyEnds.Load()
	return r
}

// exchange writes what was forwarded and collects the answers. When this
// goroutine is to read them (collect), the write is made by the first read
// of the upstream (writeBeforeRead), which then waits for the answer
// without first trying a read that finds nothing.
func (c *conn) exchange() error {
	deferred, err := c.flushUpTo(true)
	if err != nil {
		return err
	}
	err = c.collect()
	if deferred && c.upRd.pre != nil {
		// collect did not read (it does whenever flushUpTo defers, so
		// this is a safety net): write the request now.
		b := c.upRd.pre
		c.upRd.pre, c.upRd.preW = nil, nil
		if err == nil {
			err = c.writeUp(b)
		}
	}
	if err != nil {
		return err
	}
	c.upBufLeft()
	return nil
}

// collect reads what the server owes on this goroutine, relaying and
// auditing it, when the server answers everything sent without waiting
// for the client (the batch ended with a Sync or a Query, and no COPY FROM
// STDIN waits for data); otherwise it leaves the answers to an upstream
// goroutine, started unless one runs.
func (c *conn) collect() error {
	if c.inflight.Load() == 0 {
		return nil
	}
	c.mu.Lock()
	reader := c.upReader
	if !reader && (!c.endsBlock || c.copyIn.Load()) {
		c.startReaderLocked()
		reader = true
	}
	c.mu.Unlock()
	if reader {
		return nil
	}
	return c.readUpstream(true)
}

// forward queues a client message for the upstream as it was received;
// readClient writes it before it next waits for the client. msg is the
// decoded message, or nil for one passMessage read in place. Parse, Bind
// and Execute decode without looking past their last field: one with
// bytes after it goes as pgproto3 encodes it, so the upstream reads
// exactly what keyhole decoded (passMessage leaves those to the decoder).
func (c *conn) forward(msg pgproto3.FrontendMessage, raw []byte) error {
	// A block ends with Sync or Query (also a Query keyhole rewrote).
	c.endsBlock = raw[0] == 'S' || raw[0] == 'Q'
	if n, ok := bodyLen(msg); ok && n != len(raw)-5 {
		b, err := msg.Encode(c.upBuffer())
		if err != nil {
			return fatal(codeProtocolViolation, "invalid message from client", err)
		}
		c.upBuf = b
		return nil
	}
	if len(raw) >= flushAt {
		// A large message goes out from the read buffer, not via a copy,
		// with the upstream read meanwhile (see maxUnreadWrite).
		if err := c.flushUp(); err != nil {
			return err
		}
		c.ensureReader()
		return c.writeUp(raw)
	}
	c.upBuf = append(c.upBuffer(), raw...)
	return nil
}

// maxUnreadWrite bounds what the client goroutine writes upstream while
// no one reads the upstream, and only when nothing was owed before: the
// server may answer the first messages of the write before it reads the
// rest, and the sockets' buffers (at least 16 KiB sending, 64 KiB
// receiving on Linux by default) must take the rest without the server
// reading, or both sides would block writing.
const maxUnreadWrite = 8 << 10

// upBuffer returns upBuf, taking a buffer from readBufs when it has none.
func (c *conn) upBuffer() []byte {
	if c.upBuf == nil {
		c.upBuf = c.bufs().get()[:0]
	}
	return c.upBuf
}

// flushUp hands the staged requests to the upstream side, then writes
// what was forwarded. A write while answers are owed, or a large one,
// first starts the upstream goroutine, so that the server's answers are
// read while keyhole writes.
func (c *conn) flushUp() error {
	_, err := c.flushUpTo(false)
	return err
}

// flushUpTo is flushUp; with canDefer, when collect will read the answers
// on this goroutine right after (the same conditions as collect's, under
// the same lock that starts upstream goroutines, which only this goroutine
// does), the write is left to the upstream reader's next read
// (writeBeforeRead) and deferred reports true. upBuf then keeps the bytes
// until exchange calls upBufLeft.
func (c *conn) flushUpTo(canDefer bool) (deferred bool, err error) {
	if h := testHooks.Load(); h != nil {
		h.flush(c)
	}
	n := c.staged.len()
	inline := false
	if n > 0 || len(c.upBuf) > 0 {
		c.mu.Lock()
		if c.cancelHold != nil {
			if err := c.awaitCancel(); err != nil {
				c.mu.Unlock()
				return false, err
			}
		}
		owed := c.inflight.Load() > 0
		if n > 0 && c.copyOpened != 0 {
			n = c.copySyncsDropped()
		}
		if n > 0 {
			c.staged.moveTo(&c.sent)
			c.inflight.Add(int64(n))
		}
		if !c.upReader && len(c.upBuf) > 0 && (owed || len(c.upBuf) > maxUnreadWrite) {
			c.startReaderLocked()
		}
		inline = !c.upReader && c.endsBlock && c.inflight.Load() > 0 && !c.copyIn.Load()
		c.mu.Unlock()
	}
	if len(c.upBuf) == 0 {
		return false, nil
	}
	if canDefer && inline && c.upRd.writeBeforeRead(c.upBuf, c.upConn) {
		return true, nil
	}
	err = c.writeUp(c.upBuf)
	c.upBufLeft()
	return false, err
}

// awaitCancel waits, with mu held on entry and on return, until the
// cancel of a statement past max_rows has landed (holdForCancel): until
// then what the client sends next must not reach the server, or the
// cancel could stop it instead.
func (c *conn) awaitCancel() error {
	for c.cancelHold != nil {
		ch := c.cancelHold
		c.mu.Unlock()
		select {
		case <-ch:
		case <-c.stopCh:
			c.mu.Lock()
			if c.stopErr == nil {
				return errShutdown
			}
			return c.stopErr
		}
		c.mu.Lock()
	}
	return nil
}

// copySyncsDropped applies copyStarted's rule to the staged requests,
// under mu: those staged after a statement that started COPY FROM STDIN,
// and before the CopyDone or CopyFail ending it, that the upstream side
// had not been handed when the server's CopyInResponse came. The server
// ignores a Sync there, so its request goes (no ReadyForQuery will come
// for it); anything else fails the COPY with a FATAL, which the upstream
// goroutine then reads as the answer. It returns how many requests stay.
func (c *conn) copySyncsDropped() int {
	end := c.copyOpened - 1
	q := &c.staged
	if q.front().copyEnd > end {
		c.copyOpened = 0 // staged in order: none later can be inside it
		return q.len()
	}
	for i := 0; i < q.len(); {
		if r := &q.buf[q.head+i]; r.copyEnd == end && r.kind == reqSync {
			q.removeAt(i)
			continue
		}
		i++
	}
	return q.len()
}

// testHooks, when set (tests only), run as flushUpTo and copyStarted
// start: to hold open the window between them.
var testHooks atomic.Pointer[hooks]

type hooks struct{ flush, copyStarted func(c *conn) }

// upBufLeft empties upBuf once its bytes have been written, dropping a
// large buffer.
func (c *conn) upBufLeft() {
	if cap(c.upBuf) > maxKeptWriteBuf {
		c.upBuf = nil
	} else {
		c.upBuf = c.upBuf[:0]
	}
}

func (c *conn) writeUp(b []byte) error {
	if _, err := c.upConn.Write(b); err != nil {
		return c.upWriteError(err)
	}
	return nil
}

func (c *conn) upWriteError(err error) error {
	c.mu.Lock()
	stopped, stopErr := c.stopped, c.stopErr
	c.mu.Unlock()
	if stopped {
		return stopErr
	}
	return fatal(codeConnectionFailure, "keyhole: upstream connection lost", fmt.Errorf("write upstream: %w", err))
}

// refuseExt refuses an extended-protocol message: a failing Parse goes
// upstream in its place, and like Postgres after an error keyhole
// discards the client's messages until Sync.
func (c *conn) refuseExt(resp *pgproto3.ErrorResponse) error {
	c.skipToSync = true
	c.endsBlock = false
	c.stage(request{kind: reqRefusedExt, refusal: resp})
	c.upBuf = append(c.upBuffer(), refusedParseMsg...)
	return nil
}

// refuseQuery refuses a Query or FunctionCall: a failing Query goes
// upstream in its place.
func (c *conn) refuseQuery(resp *pgproto3.ErrorResponse) {
	c.endsBlock = true
	c.stage(request{kind: reqRefusedQuery, refusal: resp})
	c.upBuf = append(c.upBuffer(), refusedQueryMsg...)
}

// checkAgent ends the session when the policy no longer maps the agent
// to the role and upstream the session was opened for, or it expired.
// It checks once per read of the client: the messages of one read (a
// driver's Bind, Describe, Execute, Sync) arrived together, and what they
// forward leaves together. The expiry is checked at the read's time, on
// the monotonic clock as the watcher's timer is (watch).
func (c *conn) checkAgent() error {
	if r := c.clientRd.reads; r == c.agentChecked && r != 0 {
		return nil
	}
	if !c.agent.Expires.IsZero() && c.clientRd.takenUp().After(c.agent.Expires) {
		return errExpired
	}
	// The agent's role is the policy's: while the decider's epoch stands
	// (sqlpolicy.EpochDecider) the answer is the one found last time.
	var epoch uint64
	if ed, ok := c.srv.cfg.Decider.(sqlpolicy.EpochDecider); ok {
		epoch = ed.Epoch()
	}
	if epoch == 0 || epoch != c.agentEpoch {
		role, up, ok := c.srv.cfg.Decider.Role(c.agent.Name)
		if !ok || role != c.role || up != c.upName {
			c.log.Warn("agent no longer maps to the session's role", "known", ok, "new_role", role)
			return errAgentRemoved
		}
	}
	c.agentChecked, c.agentEpoch = c.clientRd.reads, epoch
	return nil
}

// check asks the policy about sql in this session. A nil decision denies.
// send is the text to send upstream in sql's place when it is not sql
// itself: a lone SET of application_name, with the agent's prefix put in
// front of the value (see appNameRewrite). st is what the decision was
// made under, for stillStands.
func (c *conn) check(sql string) (dec *sqlpolicy.Decision, acc *sqlpolicy.Access, send string, st stamp) {
	c.sessMu.Lock()
	st.gen = c.session.Generation()
	if ed, ok := c.srv.cfg.Decider.(sqlpolicy.EpochDecider); ok {
		dec, acc, st.epoch = ed.CheckEpoch(c.agent.Principal(), sql, c.session)
	} else {
		dec, acc = c.srv.cfg.Decider.Check(c.agent.Principal(), sql, c.session)
	}
	st.mark = c.session.NoteMark()
	c.sessMu.Unlock()
	if dec == nil {
		dec = &sqlpolicy.Decision{Effect: sqlpolicy.Deny, Rule: "default-deny", Message: "keyhole: statement denied"}
		st.epoch = 0
	}
	if dec.Allowed() {
		if d := c.appNameRefusal(acc); d != nil {
			if send, ok := c.appNameRewrite(acc); ok {
				return dec, acc, send, st
			}
			return d, acc, "", stamp{}
		}
	}
	return dec, acc, "", st
}

// stamp is what a decision was made under: the decider's epoch (0: the
// decision may not be reused, see sqlpolicy.EpochDecider) and the
// session's generation before the decision; and the session's note mark
// after it (sqlpolicy.Session.ApplyMarked).
type stamp struct{ epoch, gen, mark uint64 }

// stillStands reports whether p's allow, made under stamp st, is what a
// decision now would give: the decider's epoch is the same and the
// session's generation too (see sqlpolicy.EpochDecider). It then notes
// p's access in the session, as the decision would have.
func (c *conn) stillStands(p *prepared) bool {
	ed, ok := c.srv.cfg.Decider.(sqlpolicy.EpochDecider)
	if !ok || p.stamp.epoch == 0 || p.stamp.epoch != ed.Epoch() {
		return false
	}
	c.sessMu.Lock()
	defer c.sessMu.Unlock()
	if c.session.Generation() != p.stamp.gen {
		return false
	}
	c.session.Note(p.access)
	return true
}

// decide checks sql and counts and logs the decision.
func (c *conn) decide(sql string) (*sqlpolicy.Decision, *sqlpolicy.Access, string, stamp) {
	m := c.srv.cfg.Metrics
	var t0 int64
	if m != nil {
		t0 = monoNow()
	}
	dec, acc, send, st := c.check(sql)
	if m != nil {
		m.StatementDecided(protocolName, dec.Effect, dec.Rule, time.Duration(monoNow()-t0))
	}
	if dec.Allowed() {
		if c.log.Enabled(context.Background(), slog.LevelDebug) { // the args allocate even when disabled
			c.log.Debug("statement allowed", "rule", dec.Rule)
		}
	} else {
		c.log.Info("statement denied", "rule", dec.Rule, "reason", dec.Message)
	}
	return dec, acc, send, st
}

// denyResponse is the ErrorResponse of every denial.
func denyResponse(dec *sqlpolicy.Decision) *pgproto3.ErrorResponse {
	msg := dec.Message
	if msg == "" {
		msg = "keyhole: permission denied by policy (rule " + dec.Rule + ")"
	}
	code := dec.SQLState // 42501, or a not-found/syntax code the decision chose
	if code == "" {
		code = codeInsufficientPriv
	}
	r := stmtError(code, msg)
	r.Detail, r.Hint = dec.Detail, dec.Hint
	return r
}

func (c *conn) onQuery(m *pgproto3.Query, raw []byte) error {
	if c.skipToSync {
		return nil
	}
	start := c.clientRd.takenUp()
	if err := c.checkAgent(); err != nil {
		return err
	}
	dec, acc, send, st := c.decide(m.String)
	if !dec.Allowed() {
		resp := denyResponse(dec)
		c.auditDenied(m.String, dec, start, resp)
		c.refuseQuery(resp)
		return nil
	}
	if resp, dec := c.fetchedCursorsStand(acc); resp != nil {
		c.auditDenied(m.String, dec, start, resp)
		c.refuseQuery(resp)
		return nil
	}
	if c.cursorsFull(acc) {
		c.refuseQuery(c.tooManyNames("portals and cursors", "CLOSE"))
		return nil
	}
	ex := &c.stageNew(reqQuery).exec
	ex.sql, ex.dec, ex.access, ex.started, ex.maxRows = m.String, dec, acc, start, int64(dec.MaxRows)
	ex.mark = st.mark
	ex.cursors = c.declareCursors(acc, m.String, dec, nil, true, st)
	ex.fetched = c.fetchedPortals(acc)
	c.dropDeallocated(acc)
	if send != "" {
		q := &pgproto3.Query{String: send}
		return c.forwardRewritten(q)
	}
	return c.forward(m, raw)
}

func (c *conn) onParse(m *pgproto3.Parse, raw []byte) error {
	if c.skipToSync {
		return nil
	}
	start := c.clientRd.takenUp()
	if err := c.checkAgent(); err != nil {
		return err
	}
	dec, acc, send, st := c.decide(m.Query)
	if i, oid, ok := userParamType(m.ParameterOIDs); ok && dec.Allowed() {
		dec = paramTypeRefusal(dec, i, oid)
	}
	if m.Name != "" && len(c.stmts.named) >= c.srv.limits.MaxNames && tableFull(&c.stmts, m.Name, c.srv.limits.MaxNames) {
		return c.refuseExt(c.tooManyNames("prepared statements", "Close (or DEALLOCATE)"))
	}
	p := &prepared{name: m.Name, sql: m.Query, dec: dec, access: acc, allowed: dec.Allowed(), stamp: st}
	old := c.setStmt(p)
	if !p.allowed {
		resp := denyResponse(dec)
		c.auditDenied(m.Query, dec, start, resp)
		return c.refuseExt(resp)
	}
	// Allowed statements are audited when they run, with rows.
	c.stage(request{kind: reqParse, stmt: p})
	p.origin = origin{syncs: c.syncs, shadows: old != nil && live(&old.state)}
	if send != "" {
		return c.forwardRewritten(&pgproto3.Parse{Name: m.Name, Query: send, ParameterOIDs: m.ParameterOIDs})
	}
	return c.forward(m, raw)
}

// firstUserOID is Postgres's FirstNormalObjectId: types with a lower OID
// come with the server.
const firstUserOID = 16384

// userParamType finds a parameter a Parse declares of a user-defined type
// (a domain, enum, composite, user base type). Converting a Bind value to
// such a type can run code the text does not show (a domain's check
// constraints, a type's input function) with the session's privileges, and
// the decision sees only the text: the parameter must be left unspecified
// (0) or be of a built-in type, and a cast in the text ($1::some_domain)
// names the type where the analyzer decides it.
func userParamType(oids []uint32) (index int, oid uint32, ok bool) {
	for i, o := range oids {
		if o >= firstUserOID {
			return i, o, true
		}
	}
	return 0, 0, false
}

// paramTypeRefusal turns dec, an allow of a Parse's text, into a refusal
// of its parameter i of user-defined type oid. dec is shared (the
// decision cache's) and is not modified.
func paramTypeRefusal(dec *sqlpolicy.Decision, i int, oid uint32) *sqlpolicy.Decision {
	why := fmt.Sprintf("parameter $%d is declared with type OID %d, a user-defined type: converting a value to it can run code "+
		"(a domain's check constraints, a type's input function) that keyhole does not decide", i+1, oid)
	return &sqlpolicy.Decision{
		Effect: sqlpolicy.Deny, Rule: sqlpolicy.RuleDefaultDeny, Agent: dec.Agent, Role: dec.Role,
		Reasons: []sqlpolicy.Reason{{Code: sqlpolicy.ReasonProblem, Problem: sqlpolicy.ProblemUnsupported,
			Rule: sqlpolicy.RuleDefaultDeny, Detail: why}},
		SQLState:    codeFeatureUnsupported,
		Message:     "keyhole: " + why,
		Hint:        "Leave the parameter's type unspecified (OID 0) or use a built-in type, and cast it in the statement ($1::typename).",
		Redacted:    dec.Redacted,
		Fingerprint: dec.Fingerprint,
	}
}

// forwardRewritten forwards msg, a message keyhole built in place of the
// client's (see appNameRewrite).
func (c *conn) forwardRewritten(msg pgproto3.FrontendMessage) error {
	raw, err := msg.Encode(nil)
	if err != nil {
		return fatal(codeInternalError, "internal error", fmt.Errorf("encode %T: %w", msg, err))
	}
	return c.forward(msg, raw)
}

// recheck decides an allowed prepared statement again at Bind: the policy
// may have been reloaded since Parse (a role narrowed), and drivers that
// cache statements never send Parse again. When the decider vouches that
// nothing the decision depends on changed since (stillStands), the allow
// stands as it is, the decision a new one would equal; otherwise the
// decision is made again (with an unchanged policy a decision-cache hit).
// A statement the new policy denies stays denied.
func (c *conn) recheck(p *prepared) *pgproto3.ErrorResponse {
	if c.stillStands(p) {
		return nil
	}
	// The statement upstream is the one Parse sent (rewritten or not); only
	// the decision is renewed.
	dec, acc, _, st := c.check(p.sql)
	p.dec, p.access, p.stamp = dec, acc, st
	if dec.Allowed() {
		return nil
	}
	p.allowed = false
	c.log.Info("prepared statement denied after policy change", "rule", dec.Rule)
	if m := c.srv.cfg.Metrics; m != nil {
		m.StatementDecided(protocolName, dec.Effect, dec.Rule, 0)
	}
	r := deniedStatement(p)
	c.auditDenied(p.sql, dec, time.Now(), r)
	return r
}

// portalStands decides a portal's statement again when the decision that
// allowed it may no longer stand: a cursor, a WITH HOLD one above all,
// outlives its DECLARE's transaction, and a named portal its Bind's sync
// block, across policy reloads and the end of the grants that allowed
// them, and more rows must not be fetched than a decision now allows. As
// for a prepared statement (stillStands), the allow stands while the
// decider's epoch is the one it was made in. Otherwise the statement is
// decided again in the session as it is now; if the session's state
// changed since (a search_path that would resolve the text to other
// relations than the portal reads), a new decision would not be about
// the portal's rows, and it is refused. It returns nil, or the error that
// refuses the portal and the decision to audit with it (the caller audits
// the text it was asked to run).
func (c *conn) portalStands(p *portal) (*pgproto3.ErrorResponse, *sqlpolicy.Decision) {
	if ed, ok := c.srv.cfg.Decider.(sqlpolicy.EpochDecider); ok && p.stamp.epoch != 0 && p.stamp.epoch == ed.Epoch() {
		return nil, nil
	}
	kind := "portal"
	if p.cursor {
		kind = "cursor"
	}
	c.sessMu.Lock()
	gen := c.session.Generation()
	c.sessMu.Unlock()
	var (
		r   *pgproto3.ErrorResponse
		dec *sqlpolicy.Decision
	)
	if gen != p.stamp.gen {
		msg := fmt.Sprintf("keyhole: %s %q was opened before a policy change and before the session's settings changed: keyhole cannot decide its rows again; close it and open it anew", kind, p.name)
		dec = &sqlpolicy.Decision{Effect: sqlpolicy.Deny, Rule: sqlpolicy.RuleDefaultDeny, Agent: c.agent.Name,
			SQLState: codeInsufficientPriv, Message: msg}
		r = stmtError(codeInsufficientPriv, msg)
	} else {
		var acc *sqlpolicy.Access
		var st stamp
		dec, acc, _, st = c.check(p.sql)
		if dec.Allowed() {
			p.dec, p.access, p.stamp, p.maxRows = dec, acc, st, int64(dec.MaxRows)
			return nil, nil
		}
		r = denyResponse(dec)
		r.Message = fmt.Sprintf("keyhole: %s %q was opened under a policy that has changed, and its statement is denied now: %s", kind, p.name, r.Message)
	}
	c.log.Info(kind+" refused after policy change", "rule", dec.Rule)
	if m := c.srv.cfg.Metrics; m != nil {
		m.StatementDecided(protocolName, dec.Effect, dec.Rule, 0)
	}
	return r, dec
}

// fetchedCursorsStand checks the cursors an allowed text's FETCH and MOVE
// statements read (portalStands), those keyhole saw DECLAREd or Bound
// (FETCH reads a named protocol portal as it reads a cursor), and returns
// what portalStands returns for the first that does not stand. A cursor
// keyhole never saw opened was opened by code the policy let run (a
// function returning a refcursor).
func (c *conn) fetchedCursorsStand(acc *sqlpolicy.Access) (*pgproto3.ErrorResponse, *sqlpolicy.Decision) {
	if acc == nil {
		return nil, nil
	}
	for i := range acc.Statements {
		if p := c.fetchedPortal(&acc.Statements[i]); p != nil {
			if r, dec := c.portalStands(p); r != nil {
				return r, dec
			}
		}
	}
	return nil, nil
}

// fetchedPortal returns the live portal (cursor or named protocol portal)
// a FETCH or MOVE statement reads; nil for other statements and for a
// name keyhole does not know.
func (c *conn) fetchedPortal(st *sqlpolicy.Statement) *portal {
	if st.CursorName == "" || (st.Command != "FETCH" && st.Command != "MOVE") {
		return nil
	}
	p := c.portals.get([]byte(st.CursorName))
	if p == nil || p.closing || !live(&p.state) {
		return nil
	}
	return p
}

// fetchedPortals returns, per statement of an allowed text, the live
// portal its FETCH (or MOVE, which returns no rows) reads, or nil when no
// statement reads one keyhole knows. max_rows caps a statement's rows
// across the Executes that fetch them; FETCH is the same fetch in SQL.
func (c *conn) fetchedPortals(acc *sqlpolicy.Access) []*portal {
	if acc == nil {
		return nil
	}
	var out []*portal
	for i := range acc.Statements {
		p := c.fetchedPortal(&acc.Statements[i])
		if p == nil {
			continue
		}
		if out == nil {
			out = make([]*portal, len(acc.Statements))
		}
		out[i] = p
	}
	return out
}

// deniedStatement refuses the use of a prepared statement the policy denied.
func deniedStatement(p *prepared) *pgproto3.ErrorResponse {
	r := denyResponse(p.dec)
	r.Message = fmt.Sprintf("keyhole: prepared statement %q was denied by policy: %s", p.name, r.Message)
	return r
}

// settle makes sure a name refers to what keyhole decided under it. When
// an older object of the name may still exist upstream (shadows), a
// creation the server rejected or skipped leaves that older object in
// place, and the server would use it for text keyhole did not decide under
// this name. Within one sync block that cannot happen: the failure makes
// the server skip the rest of the block, the use included. Across a Sync
// it can, so the use waits until the upstream goroutine knows the
// creation's fate: the server answers in order, and the Sync ensures the
// answer comes (drivers use a name in the block that creates it, or after
// its answer, so this is rare). A cursor DECLAREd by a simple Query ends
// its block itself yet may be skipped without an answer until the next
// Sync: used before that, it is refused as not yet settled.
func (c *conn) settle(o *origin, state *atomic.Int32) (refused bool, err error) {
	if !o.shadows || objState(state.Load()) != objPending {
		return false, nil
	}
	if o.syncs == c.syncs {
		return o.byQuery, nil
	}
	if c.ev != nil {
		// A loop cannot wait: the goroutine relay takes this message over.
		return false, errLeaveLoop
	}
	if err := c.flushUp(); err != nil {
		return false, err
	}
	c.ensureReader()
	c.waiting.Store(true)
	defer c.waiting.Store(false)
	for objState(state.Load()) == objPending {
		select {
		case <-c.resolved:
		case <-c.stopCh:
			return false, c.stopError()
		}
	}
	return false, nil
}

// statement returns the allowed statement name refers to, or the error
// that refuses it. name may point into the read buffer.
func (c *conn) statement(name []byte) (*prepared, *pgproto3.ErrorResponse, error) {
	p := c.stmts.get(name)
	if p != nil {
		if _, err := c.settle(&p.origin, &p.state); err != nil {
			return nil, nil, err
		}
	}
	switch {
	case p == nil || p.closing || objState(p.state.Load()) == objClosed:
		return nil, stmtError(codeInvalidStmtName, fmt.Sprintf("prepared statement %q does not exist", name)), nil
	case objState(p.state.Load()) == objFailed:
		return nil, stmtError(codeInvalidStmtName, fmt.Sprintf("keyhole: prepared statement %q is unusable: the server did not accept its Parse; Close it and Parse it again", name)), nil
	case !p.allowed:
		return nil, deniedStatement(p), nil
	}
	return p, nil, nil
}

// portal returns the portal name refers to, or the error that refuses it.
// name may point into the read buffer.
func (c *conn) portal(name []byte) (*portal, *pgproto3.ErrorResponse, error) {
	p := c.portals.get(name)
	if p != nil {
		refused, err := c.settle(&p.origin, &p.state)
		if err != nil {
			return nil, nil, err
		}
		if refused {
			return nil, stmtError(codeInvalidCursorName, fmt.Sprintf("keyhole: cursor %q is not usable before its DECLARE completed (an older cursor of the name may still be open)", name)), nil
		}
	}
	switch {
	case p == nil || p.closing || objState(p.state.Load()) == objClosed:
		return nil, stmtError(codeInvalidCursorName, fmt.Sprintf("portal %q does not exist", name)), nil
	case objState(p.state.Load()) == objFailed:
		return nil, stmtError(codeInvalidCursorName, fmt.Sprintf("keyhole: portal %q is unusable: the server did not accept the message that created it", name)), nil
	}
	return p, nil, nil
}

// tableFull reports whether a new object named name would take t past
// max objects: closed ones are dropped first; re-creating a name the
// table holds takes no room.
func tableFull[T tableEntry](t *nameTable[T], name string, max int) bool {
	if _, ok := t.named[name]; ok {
		return false
	}
	t.purge()
	return len(t.named) >= max
}

// cursorsFull reports whether the cursors the DECLAREs of acc open would
// take the session's portals past Limits.MaxNames.
func (c *conn) cursorsFull(acc *sqlpolicy.Access) bool {
	if acc == nil {
		return false
	}
	n := len(c.portals.named)
	for i := range acc.Statements {
		st := &acc.Statements[i]
		if st.CursorName == "" || st.Command != "DECLARE CURSOR" {
			continue
		}
		if n >= c.srv.limits.MaxNames && tableFull(&c.portals, st.CursorName, c.srv.limits.MaxNames) {
			return true
		}
		n++
	}
	return false
}

// tooManyNames is the refusal of a message that would create one more
// named object (what) than Limits.MaxNames; how says how to free one.
func (c *conn) tooManyNames(what, how string) *pgproto3.ErrorResponse {
	r := stmtError(codeProgramLimit, fmt.Sprintf("keyhole: this session holds %d named %s, the most keyhole allows per session", c.srv.limits.MaxNames, what))
	r.Hint = how + " the ones no longer needed, or reuse their names."
	return r
}

// setStmt and setPortal record the statement a Parse or the portal a Bind
// or DECLARE is about to create. Entries stay after the client closes
// them until the server confirms (it may skip the Close); closed ones are
// dropped now and then.
func (c *conn) setStmt(p *prepared) (old *prepared) {
	old = c.stmts.set(p)
	if len(c.stmts.named) >= c.purgeAt {
		c.stmts.purge()
		c.purgeAt = max(64, 2*max(len(c.stmts.named), len(c.portals.named)))
	}
	return old
}

func (c *conn) setPortal(p *portal, byQuery bool) {
	old := c.portals.set(p)
	// (old is p itself when a Bind reuses the closed unnamed portal: it
	// shadows nothing.)
	p.origin = origin{syncs: c.syncs, byQuery: byQuery, shadows: old != nil && old != p && live(&old.state)}
	if len(c.portals.named) >= c.purgeAt {
		c.portals.purge()
		c.purgeAt = max(64, 2*max(len(c.stmts.named), len(c.portals.named)))
	}
}

// declareCursors returns the portals the DECLAREs of an allowed text open
// when it runs, registered under their names: the client may then use
// them through the protocol (psycopg 3 Describes a named cursor's portal).
// Their rows are what the DECLARE's query returns, which the policy
// decided with it, under decided (portalStands).
func (c *conn) declareCursors(acc *sqlpolicy.Access, sql string, dec *sqlpolicy.Decision, text *auditText, byQuery bool, decided stamp) []*portal {
	if acc == nil {
		return nil
	}
	var out []*portal
	for i := range acc.Statements {
		st := &acc.Statements[i]
		if st.CursorName == "" || st.Command != "DECLARE CURSOR" {
			continue
		}
		if text == nil {
			text = &auditText{}
		}
		p := &portal{name: st.CursorName, sql: sql, dec: dec, access: acc, text: text,
			cursor: true, hold: st.CursorHold, maxRows: int64(dec.MaxRows), stamp: decided}
		c.setPortal(p, byQuery)
		out = append(out, p)
	}
	return out
}

// onBind, onDescribe, onExecute and onClose get the message's fields
// (names pointing into the read buffer) and, unless passMessage read it
// in place, the decoded message m for forward.
func (c *conn) onBind(portalName, stmtName []byte, m pgproto3.FrontendMessage, raw []byte) error {
	if c.skipToSync {
		return nil
	}
	if err := c.checkAgent(); err != nil {
		return err
	}
	p, refused, err := c.statement(stmtName)
	if err != nil {
		return err
	}
	// A statement Parsed in this sync block was decided moments ago, under
	// the policy and session state a decision now would see (no answer of
	// this block has come yet); its Bind is not decided again.
	if refused == nil && p.origin.syncs != c.syncs {
		refused = c.recheck(p)
	}
	if refused != nil {
		// Like a Bind the server rejects, the refused one leaves the
		// portal of the name (if any) as it was.
		return c.refuseExt(refused)
	}
	if len(portalName) > 0 && len(c.portals.named) >= c.srv.limits.MaxNames && tableFull(&c.portals, string(portalName), c.srv.limits.MaxNames) {
		return c.refuseExt(c.tooManyNames("portals and cursors", "Close (or CLOSE)"))
	}
	pt := c.freeUnnamedPortal(portalName)
	if pt == nil {
		pt = new(portal)
	}
	*pt = portal{name: string(portalName), sql: p.sql, stmt: p, dec: p.dec, access: p.access,
		text: &p.text, maxRows: int64(p.dec.MaxRows), stamp: p.stamp}
	c.setPortal(pt, false)
	c.stageNew(reqBind).portal = pt
	return c.forward(m, raw)
}

// freeUnnamedPortal returns the unnamed portal's object for a Bind of the
// unnamed portal to reuse, once nothing refers to it: on a loop (no other
// goroutine), with nothing staged or unanswered (no request refers to it)
// and the server done with it (closed, so the upstream side no longer
// tracks it). pgbench's prepared mode, like most drivers outside a
// transaction block, Binds the unnamed portal once per transaction: an
// allocation, and its garbage, fewer.
func (c *conn) freeUnnamedPortal(name []byte) *portal {
	p := c.portals.unnamed
	if len(name) != 0 || p == nil || c.ev == nil || objState(p.state.Load()) != objClosed ||
		c.staged.len() > 0 || c.sent.len() > 0 || c.up.q.len() > 0 {
		return nil
	}
	return p
}

func (c *conn) onDescribe(objType byte, name []byte, m pgproto3.FrontendMessage, raw []byte) error {
	if c.skipToSync {
		return nil
	}
	if objType != 'S' && objType != 'P' {
		return fatal(codeProtocolViolation, fmt.Sprintf("invalid Describe object type %q", objType), nil)
	}
	if err := c.checkAgent(); err != nil {
		return err
	}
	// A Describe answers with the columns (names and types) a statement or
	// portal returns: what the decision that allowed it was about. One
	// decided before this sync block is decided again, as at Bind and
	// Execute, so a policy change is not answered with the shape of rows
	// it now denies.
	var refused *pgproto3.ErrorResponse
	var err error
	if objType == 'S' {
		var p *prepared
		p, refused, err = c.statement(name)
		if err == nil && refused == nil && p.origin.syncs != c.syncs {
			refused = c.recheck(p)
		}
	} else {
		var p *portal
		p, refused, err = c.portal(name)
		if err == nil && refused == nil && (p.origin.byQuery || p.origin.syncs != c.syncs) {
			var dec *sqlpolicy.Decision
			if refused, dec = c.portalStands(p); refused != nil {
				c.auditDenied(p.sql, dec, c.clientRd.takenUp(), refused)
			}
		}
	}
	if err != nil {
		return err
	}
	if refused != nil {
		return c.refuseExt(refused)
	}
	c.stageNew(reqDescribe)
	return c.forward(m, raw)
}

func (c *conn) onExecute(portalName []byte, m pgproto3.FrontendMessage, raw []byte) error {
	if c.skipToSync {
		return nil
	}
	if err := c.checkAgent(); err != nil {
		return err
	}
	p, refused, err := c.portal(portalName)
	if err != nil {
		return err
	}
	if refused == nil {
		var dec *sqlpolicy.Decision
		if p.origin.byQuery || p.origin.syncs != c.syncs {
			// Not bound in this sync block (a Bind decides, or finds
			// its statement's decision standing): the policy may have
			// changed since its statement was decided.
			refused, dec = c.portalStands(p)
		}
		if refused == nil {
			refused, dec = c.fetchedCursorsStand(p.access)
		}
		if refused != nil {
			c.auditDenied(p.sql, dec, c.clientRd.takenUp(), refused)
		}
	}
	if refused == nil && !p.cursor && c.cursorsFull(p.access) {
		refused = c.tooManyNames("portals and cursors", "CLOSE")
	}
	if refused != nil {
		return c.refuseExt(refused)
	}
	r := c.stageNew(reqExecute)
	r.portal = p
	ex := &r.exec
	ex.sql, ex.text, ex.dec, ex.access, ex.portal = p.sql, p.text, p.dec, p.access, p
	ex.started, ex.maxRows = c.clientRd.takenUp(), p.maxRows
	if !p.cursor {
		// A prepared DECLARE opens its cursor each time it is executed.
		ex.cursors = c.declareCursors(p.access, p.sql, p.dec, p.text, false, p.stamp)
		ex.fetched = c.fetchedPortals(p.access)
		c.dropDeallocated(p.access)
	}
	return c.forward(m, raw)
}

// dropDeallocated follows, when an allowed text is about to run, the
// prepared statements its DEALLOCATE (DEALLOCATE ALL, DISCARD ALL) drops.
// SQL-level and protocol-level prepared statements share one namespace in
// Postgres: DEALLOCATE of a name the client Parsed drops that statement,
// and a PREPARE of the name then puts another text under it, which a Bind
// of the name would run while keyhole decided (after a policy change) and
// audited the Parse's. The names are gone for the client at once, as after
// a Close, even if the text fails before it drops them: at worst the
// client is refused a statement the server still holds (it may Close it
// and Parse it again), never the other way round.
func (c *conn) dropDeallocated(acc *sqlpolicy.Access) {
	if acc == nil {
		return
	}
	for i := range acc.Statements {
		st := &acc.Statements[i]
		if st.DeallocateAll {
			for _, p := range c.stmts.named {
				p.closing = true
			}
			continue
		}
		for _, n := range st.Deallocate {
			if p := c.stmts.named[n]; p != nil {
				p.closing = true
			}
		}
	}
}

func (c *conn) onClose(objType byte, name []byte, m pgproto3.FrontendMessage, raw []byte) error {
	if c.skipToSync {
		return nil
	}
	r := request{kind: reqClose}
	switch objType {
	case 'S':
		if p := c.stmts.get(name); p != nil {
			p.closing = true
			r.stmt = p
		}
		if len(name) > 0 {
			// A Close of a name PREPAREd in SQL drops that statement (one
			// namespace): a Parse may then put another text under the
			// name, which an EXECUTE of it must not be decided as the
			// PREPARE's.
			c.sessMu.Lock()
			c.session.Note(&sqlpolicy.Access{Statements: []sqlpolicy.Statement{{Deallocate: []string{string(name)}}}})
			c.sessMu.Unlock()
		}
	case 'P':
		if p := c.portals.get(name); p != nil {
			p.closing = true
		}
		r.name = string(name)
		r.closesPortal = true
	default:
		return fatal(codeProtocolViolation, fmt.Sprintf("invalid Close object type %q", objType), nil)
	}
	c.stage(r)
	return c.forward(m, raw)
}

// appNameRefusal denies a change of application_name that would drop the
// agent's name keyhole put at its front (see upstreamAppName): DBAs rely
// on it in pg_stat_activity and the server log. Returning to the value of
// the connection (RESET, SET ... TO DEFAULT) keeps it; any other value must
// keep it too. keyhole does not rewrite the statement instead: the text
// that runs is always the text that was decided.
func (c *conn) appNameRefusal(acc *sqlpolicy.Access) *sqlpolicy.Decision {
	if acc == nil || c.appPrefix == "" {
		return nil
	}
	for i := range acc.Statements {
		st := &acc.Statements[i]
		if c.keepsAgent(st.Settings) &&
			(st.Explained == nil || !st.ExplainAnalyze || c.keepsAgent(st.Explained.Settings)) &&
			(st.Prepared == nil || st.Verb != sqlpolicy.VerbExecute || c.keepsAgent(st.Prepared.Settings)) {
			continue
		}
		p := c.appPrefix
		return &sqlpolicy.Decision{
			Effect: sqlpolicy.Deny, Rule: "keyhole.application_name", Agent: c.agent.Name, Role: c.role,
			Reasons: []sqlpolicy.Reason{{Code: sqlpolicy.ReasonSettingDenied, Setting: "application_name",
				Rule: "keyhole.application_name", Detail: "application_name must start with " + p}},
			Message: "keyhole: application_name must keep the agent's name at its front",
			Detail:  fmt.Sprintf("keyhole sets application_name to %q followed by the client's own name, so that the server's activity view and log show which agent runs what", p),
			Hint:    fmt.Sprintf("set application_name when connecting (keyhole appends it after %q), or SET it to a value that starts with %q", p+" ", p+" "),
		}
	}
	return nil
}

// appNameRewrite returns, for a text that is one plain SET [LOCAL]
// application_name to a literal value, the SET keyhole sends instead: the
// same change with the agent's prefix in front of the value, as the
// connection's own name has it. Drivers set application_name this way
// after connecting (pgJDBC sends SET application_name = 'PostgreSQL JDBC
// Driver' unless told the server is 9.0 or later), and refusing it would
// break them. The text keyhole builds changes nothing but that one setting
// (the decision was made on the client's text, which changes the same
// setting); any other form of the change (set_config, several statements,
// a value that is not a literal) is refused by appNameRefusal.
func (c *conn) appNameRewrite(acc *sqlpolicy.Access) (string, bool) {
	if acc == nil || len(acc.Statements) != 1 {
		return "", false
	}
	st := &acc.Statements[0]
	if st.Verb != sqlpolicy.VerbSet || st.Command != "SET" || len(st.Settings) != 1 || len(st.Problems) > 0 {
		return "", false
	}
	set := st.Settings[0]
	if set.Name != "application_name" || set.Show || set.Reset || set.Unknown {
		return "", false
	}
	name, _ := upstreamAppName(c.agent.Name, set.Value)
	scope := ""
	if set.Local {
		scope = "LOCAL "
	}
	// An escape string reads the same whatever standard_conforming_strings
	// is; name is printable ASCII (cleanAppName).
	lit := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(name)
	return "SET " + scope + "application_name = E'" + lit + "'", true
}

// keepsAgent reports whether none of sets replaces application_name by a
// value without the agent's prefix.
func (c *conn) keepsAgent(sets []sqlpolicy.Setting) bool {
	for _, s := range sets {
		if s.Name != "application_name" || s.Show || s.Reset {
			continue
		}
		if s.Unknown {
			return false
		}
		v := cleanAppName(s.Value)
		if v != c.appPrefix && !strings.HasPrefix(v, c.appPrefix+" ") {
			return false
		}
	}
	return true
}
