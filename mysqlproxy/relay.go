package mysqlproxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/internal/evloop"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/myanalyze"
)

// prepared is a statement COM_STMT_PREPARE created upstream through
// keyhole, by the upstream's statement id.
type prepared struct {
	id     uint32
	sql    string
	dec    *sqlpolicy.Decision
	access *sqlpolicy.Access
	// db is the session's current database when the statement was
	// prepared, and dbKnown whether keyhole knew it: MariaDB runs a
	// prepared statement in that database whatever the current one at
	// execute (Prepared_statement::execute switches to it), so keyhole
	// decides it again only there.
	db      string
	dbKnown bool

	// The audit text, computed once: Redact parses the text again.
	redactOnce      sync.Once
	redacted, print string
}

// run is one execution of allowed text: a COM_QUERY or a COM_STMT_EXECUTE.
type run struct {
	stmt     *prepared // nil for COM_QUERY
	sql      string
	dec      *sqlpolicy.Decision
	access   *sqlpolicy.Access
	started  time.Time
	maxRows  int64
	rows     int64 // all rows of the run
	stmtRows int64 // rows of the current result set (max_rows is per statement)
	cut      bool  // max_rows exceeded: the rest of the response is dropped
	err      *sqlError
}

// relay serves commands until the client or the upstream ends the
// session, or it moves to a loop (errOnLoop).
func (c *conn) relay(ctx context.Context) error {
	for {
		if err := c.idlePoint(); err != nil {
			return err
		}
		if err := c.toLoop(); err != nil {
			return err
		}
		// An error that ends the session between commands goes out as
		// the answer to the client's next command would (sequence 1), so
		// the client reports it when it sends one.
		c.seq = 1
		p, seq, err := c.readCommand()
		if err != nil {
			return err
		}
		c.seq = seq + 1
		if len(p) == 0 {
			return protocolErr("keyhole: empty command packet", nil)
		}
		c.setBusy(true)
		err = c.command(ctx, p)
		c.crd.release()
		c.setBusy(false)
		if err != nil {
			return err
		}
	}
}

// watch ends the session when its credentials are revoked or the agent's
// authority expires, and returns what stops watching. Expiry is a timer;
// a lease that can end (Done) is waited for by a goroutine, which a
// session on a loop keeps too (a channel offers no callback).
func (c *conn) watch() (stop func()) {
	var t *time.Timer
	if !c.agent.Expires.IsZero() {
		t = time.AfterFunc(time.Until(c.agent.Expires), func() {
			c.log.Info("agent authorization expired; ending session")
			c.stop(errExpired)
		})
	}
	if c.lease.Done == nil {
		return func() {
			if t != nil {
				t.Stop()
			}
		}
	}
	quit := make(chan struct{})
	go func() {
		defer func() {
			if r := recover(); r != nil {
				c.log.Error("panic in session watcher", "panic", r, "stack", string(debug.Stack()))
			}
		}()
		select {
		case <-c.lease.Done:
			var cause error
			if c.lease.Cause != nil {
				cause = c.lease.Cause()
			}
			c.log.Warn("upstream credentials revoked; ending session", "cause", cause)
			c.stop(errRevoked)
		case <-quit:
		}
	}()
	return func() {
		if t != nil {
			t.Stop()
		}
		close(quit)
	}
}

// idlePoint runs between commands: a draining session outside a
// transaction ends here; otherwise the idle timeout is armed.
//
// The client's read deadline is moved only when it would otherwise fire
// more than idleSlack early: setting a deadline is a timer operation, and
// doing it around every command cost more than the rest of keyhole's own
// work on a point select. It is not cleared while a command runs: keyhole
// does not read the client then (the protocol is half duplex).
func (c *conn) idlePoint() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.endsAtIdleLocked(); err != nil {
		return err
	}
	if idle := c.srv.limits.IdleTimeout; idle > 0 {
		if want := time.Now().Add(idle); want.Sub(c.idleDeadline) > idleSlack(idle) {
			_ = c.client.SetReadDeadline(want)
			c.idleDeadline = want
		}
	}
	return nil
}

// endsAtIdleLocked returns why the session ends at an idle point: it
// was stopped, or it is draining and outside a transaction (it is then
// marked stopped). The caller holds mu.
func (c *conn) endsAtIdleLocked() error {
	if c.stopped {
		return c.stopErr
	}
	if c.draining && c.status&serverStatusInTrans == 0 {
		c.stopped, c.stopErr = true, errShutdown
		return errShutdown
	}
	return nil
}

// idleSlack is how much earlier than the idle timeout an idle session may
// end: a sixteenth of it, at most a second.
func idleSlack(idle time.Duration) time.Duration { return min(idle/16, time.Second) }

func (c *conn) setBusy(b bool) {
	c.mu.Lock()
	c.busy = b
	c.mu.Unlock()
}

func (c *conn) clientReadError(err error) error {
	if se := c.stopError(); se != nil {
		return se
	}
	var tooBig *packetTooLargeError
	switch {
	case errors.As(err, &tooBig):
		return fatalErr(erNetPacketTooLarge, "08S01", fmt.Sprintf("keyhole: got a packet bigger than %d bytes (max packet size)", tooBig.limit), err)
	case isTimeout(err):
		return fmt.Errorf("client read: %w", errIdle)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed):
		return fmt.Errorf("client read: %w", errClientGone)
	case errors.Is(err, errMalformed):
		return protocolErr("keyhole: malformed packet", err)
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return fmt.Errorf("client read: %w", errors.Join(errClientGone, err))
	}
	return protocolErr("keyhole: invalid packet from client", err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

// command handles one client command p (its payload; valid until the next
// client read, which happens only after the command is answered).
func (c *conn) command(ctx context.Context, p []byte) error {
	switch cmd := p[0]; cmd {
	case comQuery:
		return c.onQuery(ctx, p)
	case comStmtPrepare:
		return c.onPrepare(p)
	case comStmtExecute:
		return c.onExecute(ctx, p)
	case comStmtBulkExecute:
		if c.extCaps&mariadbBulkOperations == 0 {
			return c.reply(stmtErr(erUnknownCom, "08S01", "keyhole: COM_STMT_BULK_EXECUTE (0xfa) is not allowed: STMT_BULK_OPERATIONS was not negotiated"))
		}
		return c.onExecute(ctx, p)
	case comStmtSendLongData:
		return c.onLongData(p)
	case comStmtClose:
		return c.onStmtClose(p)
	case comStmtReset:
		return c.onStmtReset(p)
	case comStmtFetch:
		// keyhole clears the cursor flag of every COM_STMT_EXECUTE, so the
		// server never opens a cursor: the rows come with the execute and
		// a driver that asked for a cursor reads them from there.
		return c.reply(stmtErr(erUnknownCom, "08S01", "keyhole: COM_STMT_FETCH is not supported: statements run without a server-side cursor and return their rows with COM_STMT_EXECUTE"))
	case comInitDB:
		return c.onInitDB(p)
	case comFieldList:
		return c.onFieldList(p)
	case comPing, comStatistics, comSetOption:
		return c.forwardSimple(p)
	case comResetConnection:
		return c.onResetConnection(p)
	case comQuit:
		c.upBuf, _ = appendPacket(c.upBuf[:0], 0, p)
		_ = c.upConn.SetWriteDeadline(time.Now().Add(time.Second))
		_ = c.flushUpstream()
		return fmt.Errorf("client sent COM_QUIT: %w", errClientGone)
	case comChangeUser:
		return c.reply(stmtErr(erUnknownCom, "08S01", "keyhole: COM_CHANGE_USER is not allowed; an agent keeps its identity for the whole connection (open a new connection as the other agent)"))
	case comBinlogDump, comBinlogDumpGTID, comRegisterSlave, comTableDump, comConnectOut:
		return c.reply(stmtErr(erUnknownCom, "08S01", fmt.Sprintf("keyhole: %s is not allowed: keyhole does not proxy replication", commandName(cmd))))
	case comProcessKill:
		return c.reply(stmtErr(erUnknownCom, "08S01", "keyhole: COM_PROCESS_KILL is not allowed; to stop a statement of this agent, close its connection"))
	default:
		return c.reply(stmtErr(erUnknownCom, "08S01", fmt.Sprintf("keyhole: %s (0x%02x) is not allowed", commandName(cmd), cmd)))
	}
}

// reply sends keyhole's own answer to the current command.
func (c *conn) reply(e *sqlError) error {
	c.wbuf, c.seq = appendPacket(c.wbuf, c.seq, e.packet(nil))
	return c.flushClientErr()
}

func (c *conn) flushClientErr() error {
	if err := c.flushClient(); err != nil {
		if se := c.stopError(); se != nil {
			return se
		}
		return fmt.Errorf("write client: %w", errors.Join(errClientGone, err))
	}
	return nil
}

// forward sends a client command upstream as one or more packets from
// sequence id 0 (the command's own). It is for the commands the server
// does not answer (COM_STMT_SEND_LONG_DATA, COM_STMT_CLOSE); request is
// for the others.
func (c *conn) forward(p []byte) error {
	if c.lp != nil {
		return c.loopSend(p)
	}
	if len(p) >= flushAt {
		// Large: framed in place, not copied (it may be max packet size,
		// and its bytes are already counted in the buffer budget).
		_, err := writePacket(c.upConn, 0, p)
		return c.upstreamWriteError(err)
	}
	c.upBuf, _ = appendPacket(c.upBuf[:0], 0, p)
	return c.upstreamWriteError(c.flushUpstream())
}

func (c *conn) upstreamWriteError(err error) error {
	if err == nil {
		return nil
	}
	if se := c.stopError(); se != nil {
		return se
	}
	return fatalErr(erUnknownError, "HY000", errLost.message, fmt.Errorf("write upstream: %w", err))
}

// rawRequestMax bounds the commands request writes itself: one write
// syscall takes them whole into a socket buffer with nothing in flight.
const rawRequestMax = 16 << 10

// request sends a client command the server answers, as forward does, and
// on a plain TCP upstream also waits for the answer's first bytes. The
// upstream socket's readiness is armed before the command is written, so
// the answer — which can only arrive after the write — wakes the wait,
// and no read is tried before it (net.Conn's Read must try one first,
// which fails with EAGAIN: a syscall per command, and what a relay that
// does not know the protocol pays). Each new arrival of data is a new
// edge for the poller, so an unsolicited packet the server sent earlier
// (an error before it closes) cannot make the wait miss the answer.
func (c *conn) request(p []byte) error {
	if c.lp != nil {
		return c.loopSend(p)
	}
	if c.upRaw == nil || len(p)+4 > rawRequestMax || c.urd.buffered() > 0 {
		return c.forward(p)
	}
	c.upBuf, _ = appendPacket(c.upBuf[:0], 0, p)
	rd := c.urd
	if len(rd.buf) > maxKeptReadBuf {
		rd.buf = make([]byte, readBufSize)
	}
	rd.rp, rd.wp = 0, 0
	// The callback's state lives in the conn and the callback is a method
	// value made once (rawStep): a closure over locals would escape to the
	// heap through RawConn.Read, four allocations per command.
	rs := &c.raw
	*rs = rawRequest{sent: -1}
	if c.rawStep == nil {
		c.rawStep = c.rawRequestStep
	}
	err := c.upRaw.Read(c.rawStep)
	sent, werr, rerr, got := rs.sent, rs.werr, rs.rerr, rs.got
	*rs = rawRequest{}
	written := sent >= len(c.upBuf)
	if written || werr != nil {
		c.upBuf = c.upBuf[:0]
	}
	switch {
	case werr != nil:
		return c.upstreamWriteError(werr)
	case !written && err == nil:
		// Partly written: the rest through the ordinary path, and the
		// answer read as usual.
		_, werr = c.upConn.Write(c.upBuf[max(sent, 0):])
		c.upBuf = c.upBuf[:0]
		return c.upstreamWriteError(werr)
	case !written:
		return c.upstreamWriteError(err)
	case err != nil:
		return c.upstreamReadError(err)
	case rerr != nil:
		return c.upstreamReadError(rerr)
	}
	// got == 0 is the end of the stream: the next read reports it.
	rd.wp = got
	return nil
}

// rawRequest is the state of request's RawConn.Read callback.
type rawRequest struct {
	sent       int // bytes of upBuf written; -1 before the write
	werr, rerr error
	got        int // bytes read into the upstream reader's buffer
}

// rawRequestStep is request's RawConn.Read callback: its first call
// writes upBuf (the wait for the answer is armed already), later ones
// read the answer's first bytes. It returns false to wait for readiness.
func (c *conn) rawRequestStep(fd uintptr) bool {
	rs := &c.raw
	if rs.sent < 0 {
		rs.sent = 0
		for rs.sent < len(c.upBuf) {
			k, e := syscall.Write(int(fd), c.upBuf[rs.sent:])
			if k > 0 {
				rs.sent += k
			}
			switch {
			case e == syscall.EINTR:
			case e == syscall.EAGAIN || e == nil && k <= 0:
				return true // a full send buffer: the ordinary path finishes
			case e != nil:
				rs.werr = os.NewSyscallError("write", e)
				return true
			}
		}
		return false // the answer cannot be there yet: wait for it
	}
	for {
		k, e := syscall.Read(int(fd), c.urd.buf)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		case nil:
			rs.got = k
		default:
			rs.rerr = os.NewSyscallError("read", e)
		}
		return true
	}
}

// checkAgent ends the session when the policy no longer maps the agent
// to the role and upstream the session was opened for, or it expired.
func (c *conn) checkAgent(now time.Time) error {
	if !c.agent.Expires.IsZero() && now.After(c.agent.Expires) {
		return errExpired
	}
	// The agent's role is the policy's: while the decider's epoch stands
	// (sqlpolicy.EpochDecider) the answer is the one found last time.
	var epoch uint64
	if ed, ok := c.srv.cfg.Decider.(sqlpolicy.EpochDecider); ok {
		epoch = ed.Epoch()
	}
	if epoch != 0 && epoch == c.agentEpoch {
		return nil
	}
	role, up, ok := c.srv.cfg.Decider.Role(c.agent.Name)
	if !ok || role != c.role || up != c.upName {
		c.log.Warn("agent no longer maps to the session's role", "known", ok, "new_role", role)
		return errAgentRemoved
	}
	c.agentEpoch = epoch
	return nil
}

// decide asks the policy about sql in this session, counts and logs the
// decision (asked at start). A nil decision denies.
func (c *conn) decide(sql string, start time.Time) (*sqlpolicy.Decision, *sqlpolicy.Access) {
	dec, acc := c.srv.cfg.Decider.Check(c.agent.Principal(), sql, c.session)
	if dec == nil {
		dec = &sqlpolicy.Decision{Effect: sqlpolicy.Deny, Rule: sqlpolicy.RuleDefaultDeny, Message: "keyhole: statement denied"}
	}
	if m := c.srv.cfg.Metrics; m != nil {
		m.StatementDecided(protocolName, dec.Effect, dec.Rule, time.Since(start))
	}
	if !dec.Allowed() {
		c.log.Info("statement denied", "rule", dec.Rule, "reason", dec.Message)
	}
	return dec, acc
}

// decideCommand is decide for a statement the client sent (COM_QUERY,
// COM_STMT_PREPARE, COM_STMT_EXECUTE). On the loop it asks CheckQuiet when
// the Decider has one (the gateway's: the same decision for a statement
// the policy allows): a denial there may open or count an access request,
// which writes to the approvals store, so that statement is handed to a
// goroutine (errLeaveLoop) and decided again there with Check.
func (c *conn) decideCommand(sql string, start time.Time) (*sqlpolicy.Decision, *sqlpolicy.Access, error) {
	if c.lp != nil {
		if q, ok := c.srv.cfg.Decider.(quietChecker); ok {
			dec, acc := q.CheckQuiet(c.agent.Principal(), sql, c.session)
			if dec == nil || !dec.Allowed() {
				return nil, nil, errLeaveLoop
			}
			if m := c.srv.cfg.Metrics; m != nil {
				m.StatementDecided(protocolName, dec.Effect, dec.Rule, time.Since(start))
			}
			return dec, acc, nil
		}
	}
	dec, acc := c.decide(sql, start)
	return dec, acc, nil
}

// denyError renders a denial as the error the server itself would send.
// A statement that names what does not exist (the decision's SQLSTATE,
// chosen only when the policy does not also refuse it) gets the server's
// errno for that; a refusal gets MySQL's privilege errors: 1143 when the
// first reason is a column, else 1142 (both 42000). MySQL has no hint
// field, so the message carries what was refused, the rule, and what the
// agent may use instead, most important first (clients keep 511 bytes).
func denyError(dec *sqlpolicy.Decision) *sqlError {
	num, state := uint16(erTableAccessDenied), "42000"
	switch dec.SQLState {
	case sqlpolicy.SQLStateSyntaxError:
		num = erParseError
	case sqlpolicy.SQLStateUndefinedTable:
		num, state = erNoSuchTable, "42S02"
	case sqlpolicy.SQLStateUndefinedColumn:
		num, state = erBadField, "42S22"
	case sqlpolicy.SQLStateUndefinedFunction:
		num = erSPDoesNotExist
	case sqlpolicy.SQLStateUndefinedPrepared:
		num, state = erUnknownStmtHandler, "HY000"
	default:
		if len(dec.Reasons) > 0 {
			r := dec.Reasons[0]
			if r.Column != "" && (r.Code == sqlpolicy.ReasonColumnNotAllowed || r.Code == sqlpolicy.ReasonLabelDenied) {
				num = erColumnAccessDenied
			}
		}
	}
	var b strings.Builder
	b.WriteString(dec.Message)
	if dec.Message == "" {
		b.WriteString("keyhole: permission denied by policy")
	}
	if dec.Rule != "" && !strings.Contains(dec.Message, dec.Rule) {
		fmt.Fprintf(&b, " (rule %s)", dec.Rule)
	}
	if dec.Hint != "" {
		b.WriteString(". ")
		b.WriteString(dec.Hint)
	}
	if dec.Detail != "" {
		b.WriteString(" ")
		b.WriteString(dec.Detail)
	}
	return stmtErr(num, state, b.String())
}

// databaseError renders the denial of a database named at connect or in
// COM_INIT_DB as the server would: 1049 for one that does not exist, 1044
// otherwise.
func databaseError(dec *sqlpolicy.Decision) *sqlError {
	e := denyError(dec)
	if dec.SQLState == sqlpolicy.SQLStateUndefinedTable {
		e.num, e.state = erBadDB, "42000"
	} else {
		e.num, e.state = erDBAccessDenied, "42000"
	}
	return e
}

// --- COM_QUERY ---

func (c *conn) onQuery(ctx context.Context, p []byte) error {
	start := time.Now()
	if err := c.checkAgent(start); err != nil {
		return err
	}
	sql := string(p[1:])
	dec, acc, err := c.decideCommand(sql, start)
	if err != nil {
		return err
	}
	if k := killOf(acc); k != nil {
		if c.lp != nil {
			return errLeaveLoop // it may dial the upstream
		}
		return c.onKill(ctx, sql, k, dec, start)
	}
	if !dec.Allowed() {
		e := denyError(dec)
		c.auditStatement(sql, dec, start, e)
		return c.reply(e)
	}
	if err := c.request(p); err != nil {
		return err
	}
	r := &run{sql: sql, dec: dec, access: acc, started: start, maxRows: int64(dec.MaxRows)}
	return c.await(&answer{kind: ansResults, ctx: ctx, r: r})
}

// finishRun applies a run's effects to the session when it succeeded and
// audits it.
func (c *conn) finishRun(r *run) {
	if r.err == nil && r.access != nil {
		c.session.Apply(r.access)
	}
	if sqlpolicy.ChangesSchema(r.access) {
		// DDL commits implicitly in MySQL and MariaDB (even when a later
		// statement of the text failed, the DDL before it stands): the
		// catalog is read again so later statements know what it
		// changed (sqlpolicy.SchemaNotifier).
		if n, ok := c.srv.cfg.Decider.(sqlpolicy.SchemaNotifier); ok {
			n.SchemaChanged()
		}
	}
	var text, fp string
	if p := r.stmt; p != nil && c.srv.cfg.Audit != nil {
		p.redactOnce.Do(func() { p.redacted, p.print = c.redact(p.sql, p.dec) })
		text, fp = p.redacted, p.print
	}
	c.auditRun(r, text, fp)
}

func (c *conn) redact(sql string, dec *sqlpolicy.Decision) (string, string) {
	if dec != nil && dec.Redacted != "" {
		return dec.Redacted, dec.Fingerprint
	}
	return c.srv.cfg.Decider.Redact(sql)
}

func (c *conn) auditRun(r *run, text, fp string) {
	if c.srv.cfg.Audit == nil {
		return
	}
	if text == "" {
		text, fp = c.redact(r.sql, r.dec)
	}
	c.auditEvent(r.sql, text, fp, r.dec, r.started, r.rows, r.err)
}

// auditStatement audits a statement refused before it ran.
func (c *conn) auditStatement(sql string, dec *sqlpolicy.Decision, start time.Time, e *sqlError) {
	if c.srv.cfg.Audit == nil {
		return
	}
	text, fp := c.redact(sql, dec)
	c.auditEvent(sql, text, fp, dec, start, 0, e)
}

func (c *conn) auditEvent(sql, text, fp string, dec *sqlpolicy.Decision, start time.Time, rows int64, e *sqlError) {
	if c.srv.cfg.RawStatements {
		text = sql
	}
	ev := audit.Event{
		Kind:        audit.KindStatement,
		Statement:   text,
		Fingerprint: fp,
		Decision:    dec.Effect,
		Rule:        dec.Rule,
		Reasons:     dec.Reasons,
		Rows:        rows,
	}
	ev.Time = time.Now()
	ev.DurationMS = float64(ev.Time.Sub(start).Microseconds()) / 1000
	if e != nil {
		ev.ErrorCode, ev.Error = e.code(), e.message
	}
	c.record(ev)
}

// --- prepared statements ---

func (c *conn) onPrepare(p []byte) error {
	start := time.Now()
	if err := c.checkAgent(start); err != nil {
		return err
	}
	sql := string(p[1:])
	dec, acc, err := c.decideCommand(sql, start)
	if err != nil {
		return err
	}
	c.hasLastStmt = false
	if !dec.Allowed() {
		e := denyError(dec)
		c.auditStatement(sql, dec, start, e)
		return c.reply(e)
	}
	if max := c.srv.limits.MaxPrepared; len(c.stmts) >= max {
		return c.reply(stmtErr(erMaxPreparedStmtCount, "42000", fmt.Sprintf(
			"keyhole: this session holds %d prepared statements, the most keyhole allows per session; close the ones no longer needed (COM_STMT_CLOSE)", max)))
	}
	if err := c.request(p); err != nil {
		return err
	}
	db, known := c.sessionDatabase()
	return c.await(&answer{kind: ansPrepare, stmt: &prepared{sql: sql, dec: dec, access: acc, db: db, dbKnown: known}})
}

// statement resolves a client's statement id: one it prepared through
// keyhole (MariaDB's -1 is the last one prepared, when that succeeded).
func (c *conn) statement(id uint32) (*prepared, bool) {
	if id == statementIDLast {
		if !c.hasLastStmt {
			return nil, false
		}
		id = c.lastStmt
	}
	st, ok := c.stmts[id]
	return st, ok
}

// sessionDatabase is the analyzer session's current database and whether
// it is known (a session of another kind: "", true).
func (c *conn) sessionDatabase() (string, bool) {
	if s, ok := c.session.(interface{ Database() (string, bool) }); ok {
		return s.Database()
	}
	return "", true
}

func unknownStmt(id uint32, cmd string) *sqlError {
	return stmtErr(erUnknownStmtHandler, "HY000", fmt.Sprintf("Unknown prepared statement handler (%d) given to %s", id, cmd))
}

// onExecute handles COM_STMT_EXECUTE and MariaDB's COM_STMT_BULK_EXECUTE
// (the statement run once per row of parameters: statement id, 2 bytes of
// bulk flags, parameter types and rows; answered with one OK or ERR, the
// rows' affected counts summed). Both are decided as the prepared text:
// parameter values never change what a statement may touch.
func (c *conn) onExecute(ctx context.Context, p []byte) error {
	start := time.Now()
	if err := c.checkAgent(start); err != nil {
		return err
	}
	bulk := p[0] == comStmtBulkExecute
	if !bulk && len(p) < 10 || bulk && len(p) < 7 {
		return protocolErr("keyhole: malformed "+commandName(p[0]), nil)
	}
	id := binary.LittleEndian.Uint32(p[1:])
	st, ok := c.statement(id)
	if !ok {
		if bulk {
			return c.reply(unknownStmt(id, "mysqld_stmt_bulk_execute"))
		}
		return c.reply(unknownStmt(id, "mysqld_stmt_execute"))
	}
	// The statement runs in the database it was prepared in, and it is
	// decided again in the current one: when they differ (or keyhole
	// lost track of either), the decision would not be about what runs.
	if db, known := c.sessionDatabase(); !known || !st.dbKnown || db != st.db {
		if c.lp != nil {
			return errLeaveLoop // audited on a goroutine, as other denials
		}
		dec := &sqlpolicy.Decision{Effect: sqlpolicy.Deny, Rule: sqlpolicy.RuleDefaultDeny,
			Message: fmt.Sprintf("keyhole: prepared statement %d was prepared in database %q and the session is now in %q; MariaDB would run it in %q: prepare it again", id, st.db, db, st.db)}
		e := stmtErr(erUnknownStmtHandler, "HY000", dec.Message)
		c.auditStatement(st.sql, dec, start, e)
		return c.reply(e)
	}
	// Decided again: the policy may have been reloaded since the prepare,
	// and drivers that cache statements never prepare again. With an
	// unchanged policy this is a decision-cache hit.
	dec, acc, err := c.decideCommand(st.sql, start)
	if err != nil {
		return err
	}
	if !dec.Allowed() {
		e := denyError(dec)
		c.auditStatement(st.sql, dec, start, e)
		return c.reply(e)
	}
	if id == statementIDLast || !bulk && p[5]&0x07 != 0 {
		// The upstream gets the id keyhole resolved, and no cursor: rows
		// must pass through keyhole to be counted against max_rows.
		q := c.scratch(p)
		binary.LittleEndian.PutUint32(q[1:], st.id)
		if !bulk {
			q[5] &^= 0x07
		}
		p = q
	}
	if err := c.request(p); err != nil {
		return err
	}
	r := &run{stmt: st, sql: st.sql, dec: dec, access: acc, started: start, maxRows: int64(dec.MaxRows)}
	return c.await(&answer{kind: ansResults, ctx: ctx, r: r})
}

// scratch returns a client payload that keyhole must change, to change in
// place: it is the client reader's, read by nothing else once the command
// has it, and a copy of a command of max packet size would be held
// outside the buffer budget.
func (c *conn) scratch(p []byte) []byte { return p }

func (c *conn) onLongData(p []byte) error {
	if len(p) < 7 {
		return protocolErr("keyhole: malformed COM_STMT_SEND_LONG_DATA", nil)
	}
	id := binary.LittleEndian.Uint32(p[1:])
	st, ok := c.statement(id)
	if !ok {
		// The server would not answer either (it reports the error at
		// the next execute, which keyhole refuses for this id anyway).
		return nil
	}
	if id == statementIDLast {
		p = c.scratch(p)
		binary.LittleEndian.PutUint32(p[1:], st.id)
	}
	return c.forward(p)
}

func (c *conn) onStmtClose(p []byte) error {
	if len(p) < 5 {
		return protocolErr("keyhole: malformed COM_STMT_CLOSE", nil)
	}
	id := binary.LittleEndian.Uint32(p[1:])
	st, ok := c.statement(id)
	if !ok {
		return nil // no response, as from the server
	}
	delete(c.stmts, st.id)
	if c.hasLastStmt && c.lastStmt == st.id {
		c.hasLastStmt = false
	}
	if id == statementIDLast {
		p = c.scratch(p)
		binary.LittleEndian.PutUint32(p[1:], st.id)
	}
	return c.forward(p)
}

func (c *conn) onStmtReset(p []byte) error {
	if len(p) < 5 {
		return protocolErr("keyhole: malformed COM_STMT_RESET", nil)
	}
	id := binary.LittleEndian.Uint32(p[1:])
	st, ok := c.statement(id)
	if !ok {
		return c.reply(unknownStmt(id, "mysqld_stmt_reset"))
	}
	if id == statementIDLast {
		p = c.scratch(p)
		binary.LittleEndian.PutUint32(p[1:], st.id)
	}
	if err := c.request(p); err != nil {
		return err
	}
	return c.await(&answer{kind: ansOne})
}

// --- other commands ---

// onInitDB decides COM_INIT_DB as the text USE `db`: the database must be
// served by the upstream and allowed by the policy.
func (c *conn) onInitDB(p []byte) error {
	start := time.Now()
	if err := c.checkAgent(start); err != nil {
		return err
	}
	db := string(p[1:])
	if e := c.checkDatabase(db); e != nil {
		return c.reply(e)
	}
	sql := myanalyze.InitDBText(db)
	dec, acc := c.decide(sql, start)
	if !dec.Allowed() {
		e := databaseError(dec)
		c.auditStatement(sql, dec, start, e)
		return c.reply(e)
	}
	if err := c.request(p); err != nil {
		return err
	}
	r := &run{sql: sql, dec: dec, access: acc, started: start}
	n, h, err := c.upNext()
	if err != nil {
		return c.abortRun(r, err)
	}
	relay := c.relayCur
	if len(h) > 0 && h[0] == 0xff {
		r.err = c.errFrom(h)
		if c.relayScrubbed(n, h) {
			relay = c.skipCur
		}
	} else if len(h) > 0 && h[0] == 0x00 {
		c.noteOK(h)
		c.setDatabase(db)
	}
	if err := relay(n); err != nil {
		return c.abortRun(r, err)
	}
	c.finishRun(r)
	return c.flushClientErr()
}

// onFieldList decides COM_FIELD_LIST as the statement it is equivalent
// to (SHOW COLUMNS FROM table) and relays the column definitions of the
// columns the role may read; the others are left out (each is decided as
// SELECT `column` FROM `table`).
//
// A refused COM_FIELD_LIST gets the error and never reaches the server,
// but is not audited and opens no access request (checkQuiet): clients
// send it on their own, not the agent — the mysql CLI's completion asks
// for the columns of every table SHOW TABLES lists, at connect and on
// rehash — so one denial event per table the role may not read would
// bury the denials of statements agents wrote, and a column list reads
// no row. An allowed one is audited, with the columns listed as its rows.
func (c *conn) onFieldList(p []byte) error {
	start := time.Now()
	if err := c.checkAgent(start); err != nil {
		return err
	}
	table, _, ok := nulString(p, 1)
	if !ok {
		table = p[1:]
	}
	sql := myanalyze.FieldListText(string(table))
	dec, acc := c.checkQuiet(sql)
	if m := c.srv.cfg.Metrics; m != nil {
		m.StatementDecided(protocolName, dec.Effect, dec.Rule, time.Since(start))
	}
	if !dec.Allowed() {
		c.log.Debug("COM_FIELD_LIST denied (not audited)", "rule", dec.Rule, "reason", dec.Message)
		return c.reply(denyError(dec))
	}
	if err := c.request(p); err != nil {
		return err
	}
	r := &run{sql: sql, dec: dec, access: acc, started: start}
	from := " FROM " + myanalyze.QuoteIdent(string(table))
	for {
		n, h, err := c.upNext()
		if err != nil {
			return c.abortRun(r, err)
		}
		// A column definition starts with its catalog ("def", 0x03); the
		// list ends with EOF, or an OK with header 0xfe under
		// CLIENT_DEPRECATE_EOF (longer with session state).
		if len(h) > 0 && (h[0] == 0xff || h[0] == 0xfe && n < maxPayload) {
			var err error
			if h[0] == 0xff {
				r.err = c.errFrom(h)
			}
			if h[0] == 0xff && c.relayScrubbed(n, h) {
				if err = c.skipCur(n); err == nil {
					err = c.flushClientErr()
				}
			} else {
				err = c.relayLast(n, h)
			}
			if err != nil {
				return c.abortRun(r, err)
			}
			c.auditRun(r, "", "")
			return nil
		}
		if n >= maxPayload || n > len(h) {
			return c.abortRun(r, c.upstreamProtocol("COM_FIELD_LIST response"))
		}
		name, ok := columnName(h)
		if !ok {
			return c.abortRun(r, c.upstreamProtocol("column definition"))
		}
		if dec, _ := c.checkQuiet("SELECT " + myanalyze.QuoteIdent(name) + from); dec.Allowed() {
			r.rows++
			if err := c.relayCur(n); err != nil {
				return c.abortRun(r, err)
			}
		} else if err := c.skipCur(n); err != nil {
			return c.abortRun(r, err)
		}
	}
}

// quietChecker is a Decider that can decide without opening an access
// request for a denial (the gateway's, whose Check also files denials
// with the approvals service).
type quietChecker interface {
	CheckQuiet(p sqlpolicy.Principal, sql string, s sqlpolicy.Session) (*sqlpolicy.Decision, *sqlpolicy.Access)
}

// checkQuiet decides sql for what a client enumerates on its own
// (COM_FIELD_LIST): with the Decider's CheckQuiet when it has one. A nil
// decision denies.
func (c *conn) checkQuiet(sql string) (*sqlpolicy.Decision, *sqlpolicy.Access) {
	var dec *sqlpolicy.Decision
	var acc *sqlpolicy.Access
	if q, ok := c.srv.cfg.Decider.(quietChecker); ok {
		dec, acc = q.CheckQuiet(c.agent.Principal(), sql, c.session)
	} else {
		dec, acc = c.srv.cfg.Decider.Check(c.agent.Principal(), sql, c.session)
	}
	if dec == nil {
		dec = &sqlpolicy.Decision{Effect: sqlpolicy.Deny, Rule: sqlpolicy.RuleDefaultDeny, Message: "keyhole: statement denied"}
	}
	return dec, acc
}

// columnName reads name from a Protocol::ColumnDefinition41.
func columnName(p []byte) (string, bool) {
	i := 0
	for range 4 { // catalog, schema, table, org_table
		var ok bool
		if _, i, ok = lenencString(p, i); !ok {
			return "", false
		}
	}
	name, _, ok := lenencString(p, i)
	return string(name), ok
}

// onResetConnection relays COM_RESET_CONNECTION and sets the reset
// upstream session up again (the role's limits, and the analyzer's
// session told the mode, character set and database the reset session
// has), pipelined behind the reset: one round trip.
func (c *conn) onResetConnection(p []byte) error {
	c.upBuf, _ = appendPacket(c.upBuf[:0], 0, p)
	var err error
	if c.upBuf, err = c.appendSetup(c.upBuf); err != nil {
		return err
	}
	if err := c.flushUpstream(); err != nil {
		if se := c.stopError(); se != nil {
			return se
		}
		return fatalErr(erUnknownError, "HY000", errLost.message, fmt.Errorf("write upstream: %w", err))
	}
	n, h, err := c.upNext()
	if err != nil {
		return err
	}
	if len(h) > 0 && h[0] == 0x00 {
		// The upstream dropped its prepared statements, variables and
		// session settings.
		c.stmts = make(map[uint32]*prepared)
		c.hasLastStmt = false
		c.session.Reset()
	}
	if len(h) > 0 && (h[0] == 0x00 || h[0] == 0xfe) && n < maxPayload {
		c.noteOK(h)
	}
	// Held until the session is set up again: the client's next command
	// must find the role's limits in force. If that fails, the error that
	// ends the session is the answer to the reset instead.
	seq := c.seq
	relay := c.relayCur
	if len(h) > 0 && h[0] == 0xff && c.relayScrubbed(n, h) {
		relay = c.skipCur
	}
	if err := relay(n); err != nil {
		return err
	}
	if err := c.readSetup(context.Background()); err != nil {
		c.wbuf, c.seq = c.wbuf[:0], seq
		return err
	}
	return c.flushClientErr()
}

// forwardSimple relays a command answered by exactly one packet
// (COM_PING, COM_STATISTICS, COM_SET_OPTION).
func (c *conn) forwardSimple(p []byte) error {
	if err := c.request(p); err != nil {
		return err
	}
	return c.await(&answer{kind: ansOne})
}

// relayLast relays the packet that ends a response and flushes.
func (c *conn) relayLast(n int, h []byte) error {
	if len(h) > 0 && (h[0] == 0x00 || h[0] == 0xfe) && n < maxPayload {
		c.noteOK(h)
	}
	if err := c.relayCur(n); err != nil {
		return err
	}
	return c.flushClientErr()
}

// noteOK records the server status (and a schema change) of an OK or EOF.
func (c *conn) noteOK(h []byte) {
	info, ok := parseOK(h, c.caps)
	if !ok {
		return
	}
	c.mu.Lock()
	c.status = info.status
	c.mu.Unlock()
	if info.hasDB {
		c.setDatabase(info.schema)
	}
}

// setDatabase records a new current database the upstream reported.
func (c *conn) setDatabase(db string) {
	c.database = db
	if s, ok := c.session.(mySession); ok {
		s.SetDatabase(db)
	}
}

// relayScrubbed appends the upstream ERR packet h (payload length n) to
// the client's bytes with the login scrubbed from its message and reports
// true, or reports false when it needs no change (the caller relays it as
// it came).
func (c *conn) relayScrubbed(n int, h []byte) bool {
	p := c.scrubErrPacket(n, h)
	if p == nil {
		return false
	}
	c.wbuf, c.seq = appendPacket(c.wbuf, c.seq, p)
	return true
}

func errFromPacket(h []byte) *sqlError {
	ue := parseErrPacket(h)
	return &sqlError{num: ue.num, state: ue.state, message: ue.message}
}

// --- result sets ---

// killAsync starts the KILL QUERY of the statement in flight on a side
// connection; its outcome arrives on the channel (and, on a loop, the
// loop is told: loopKillDone).
func (c *conn) killAsync(ctx context.Context) chan error {
	ch := make(chan error, 1)
	up, user, pw, thread := c.upstream, c.lease.User, c.lease.Password.Reveal(), c.upThread
	var l *evloop.Loop
	if c.lp != nil {
		l = c.lp.l
	}
	go func() {
		ch <- c.srv.killQuery(ctx, up, user, pw, thread)
		if l != nil {
			l.Post(c.posted(c.loopKillDone))
		}
	}()
	return ch
}

func (c *conn) upstreamProtocol(what string) error {
	if m := c.srv.cfg.Metrics; m != nil {
		m.UpstreamError(protocolName)
	}
	return fatalErr(erUnknownError, "HY000", "keyhole: upstream protocol error", fmt.Errorf("upstream sent an unexpected %s", what))
}

// --- upstream packets ---

// peekLen is how much of a large packet's payload is inspected.
const peekLen = 64

// upNext reads the next upstream packet's header and the start of its
// payload (all of it when it fits the read buffer). The packet stays in
// the reader until relayCur or skipCur consumes it.
func (c *conn) upNext() (n int, head []byte, err error) {
	if err := c.upFill(headerLen); err != nil {
		return 0, nil, c.upstreamReadError(err)
	}
	rd := c.urd
	b := rd.buf[rd.rp:]
	n = int(b[0]) | int(b[1])<<8 | int(b[2])<<16
	want := n
	if headerLen+n > maxKeptReadBuf {
		want = min(n, peekLen)
	}
	if err := c.upFill(headerLen + want); err != nil {
		return 0, nil, c.upstreamReadError(err)
	}
	return n, rd.buf[rd.rp+headerLen : rd.rp+headerLen+want], nil
}

// upFill is fill on the upstream reader. Relayed bytes go to the client
// before keyhole waits for more from the upstream: one write per burst the
// upstream sends, and a complete response never waits. (Holding them for
// the rest of the response behind a short read deadline saved writes but
// cost more CPU in timers than it saved: sysbench point selects, 44 vs 49
// µs per query.)
func (c *conn) upFill(n int) error {
	rd := c.urd
	if rd.buffered() >= n {
		return nil
	}
	if len(c.wbuf) > 0 {
		if err := c.flushClient(); err != nil {
			return fmt.Errorf("write client: %w", errors.Join(errClientGone, err))
		}
	}
	return rd.fill(n)
}

// relayCur appends the current packet to the client buffer with the next
// client sequence id, streaming a large payload through.
func (c *conn) relayCur(n int) error {
	c.wbuf = append(c.wbuf, byte(n), byte(n>>8), byte(n>>16), c.seq)
	c.seq++
	return c.consume(n, true)
}

// skipCur drops the current packet.
func (c *conn) skipCur(n int) error { return c.consume(n, false) }

func (c *conn) consume(n int, keep bool) error {
	c.urd.rp += headerLen
	return c.consumeRest(n, keep)
}

// consumeRest passes (keep) or drops the next n payload bytes of the
// current packet.
func (c *conn) consumeRest(n int, keep bool) error {
	rd := c.urd
	for n > 0 {
		if rd.rp == rd.wp {
			if err := c.upFill(1); err != nil {
				return c.upstreamReadError(err)
			}
		}
		k := min(n, rd.wp-rd.rp)
		if keep {
			c.wbuf = append(c.wbuf, rd.buf[rd.rp:rd.rp+k]...)
		}
		rd.rp += k
		n -= k
		if len(c.wbuf) >= flushAt {
			if err := c.flushClientErr(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *conn) upstreamReadError(err error) error {
	if se := c.stopError(); se != nil {
		return se
	}
	if errors.Is(err, errClientGone) {
		return err
	}
	if m := c.srv.cfg.Metrics; m != nil {
		m.UpstreamError(protocolName)
	}
	return fatalErr(erUnknownError, "HY000", errLost.message, fmt.Errorf("read upstream: %w", err))
}

// --- writes ---

// flushClient writes the client buffer. A failed write does not stop the
// command in flight (see clientLost): keyhole reads the upstream's answer
// to its end, for the audit, and the session ends at the next client read.
func (c *conn) flushClient() error {
	if c.lp != nil {
		c.loopWrite()
		return nil
	}
	if len(c.wbuf) == 0 {
		return nil
	}
	if c.lost == nil {
		if _, err := c.client.Write(c.wbuf); err != nil {
			c.clientLost(err)
		}
	}
	if cap(c.wbuf) > maxKeptWriteBuf {
		c.wbuf = nil
	} else {
		c.wbuf = c.wbuf[:0]
	}
	return nil
}

// flushUpstream writes what was forwarded.
func (c *conn) flushUpstream() error {
	if len(c.upBuf) == 0 {
		return nil
	}
	_, err := c.upConn.Write(c.upBuf)
	if cap(c.upBuf) > maxKeptWriteBuf {
		c.upBuf = nil
	} else {
		c.upBuf = c.upBuf[:0]
	}
	return err
}
