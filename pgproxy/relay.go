package pgproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// prepared is a protocol-level prepared statement as keyhole decided it.
// Denied names are kept too, so that a later Bind of the name is refused
// instead of reaching an older upstream statement of the same name.
type prepared struct {
	name    string
	sql     string
	dec     *sqlpolicy.Decision
	access  *sqlpolicy.Access
	allowed bool
	// failed is set (by the upstream goroutine) when the upstream rejected
	// or skipped the Parse — a duplicate name, or an earlier error in its
	// sync block. The upstream then still holds whatever it had under the
	// name, which is not this text, so the name is refused from now on.
	failed atomic.Bool

	// The audit text, computed once: Redact parses the text again.
	redactOnce      sync.Once
	redacted, print string
}

type portal struct {
	run *run
	// failed: the upstream rejected or skipped the Bind (see prepared).
	failed atomic.Bool
}

// run is one execution of allowed text: a simple Query or the Executes of
// one portal. Only the upstream goroutine touches it after it is queued.
type run struct {
	stmt     *prepared // nil for a simple Query
	sql      string
	dec      *sqlpolicy.Decision
	access   *sqlpolicy.Access
	started  time.Time
	maxRows  int64
	rows     int64 // all rows of the run
	stmtRows int64 // rows of the current statement (max_rows is per statement)
	cut      bool
	cutErr   *pgproto3.ErrorResponse
	errCode  string
	errMsg   string
	done     bool
}

// pending is one thing the client is owed, in order. Upstream entries are
// answered by the upstream (an Execute's result, a Sync's or Query's
// ReadyForQuery); local entries are answered by keyhole itself once every
// earlier entry has been answered, which keeps responses in request order.
type pending struct {
	run *run // an Execute (not sync) or a simple Query (sync)
	ack byte // an extended message awaiting its answer: 'P'arse, 'B'ind, 'D'escribe, 'C'lose
	// stmt / portal are what a Parse / Bind created; marked failed when the
	// upstream fails the block before answering it.
	stmt   *prepared
	portal *portal
	sync   bool // answered by ReadyForQuery
	local  bool // keyhole answers: err (if any) then, if sync, ReadyForQuery
	err    *pgproto3.ErrorResponse
}

// relay runs the client side on this goroutine and the upstream side on
// another until either ends.
func (c *conn) relay(ctx context.Context) error {
	quit := make(chan struct{})
	defer close(quit)
	go c.watch(quit)

	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		var err error
		func() {
			defer func() {
				if r := recover(); r != nil {
					c.log.Error("panic in upstream relay", "panic", r, "stack", string(debug.Stack()))
					err = fatal(codeInternalError, "internal error", fmt.Errorf("panic: %v", r))
				}
			}()
			err = c.readUpstream()
		}()
		c.stop(err)
	}()

	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				c.log.Error("panic in client relay", "panic", r, "stack", string(debug.Stack()))
				err = fatal(codeInternalError, "internal error", fmt.Errorf("panic: %v", r))
			}
		}()
		return c.readClient()
	}()
	if errors.Is(err, errClientGone) {
		// Say goodbye so the upstream logs a clean disconnect. Postgres
		// closes its end on Terminate; the upstream reader must take that
		// EOF for the goodbye, not report a lost upstream to the client.
		c.mu.Lock()
		c.saidBye = true
		c.mu.Unlock()
		c.upBuf = append(c.upBuf, terminateMsg...)
		_ = c.upConn.SetWriteDeadline(time.Now().Add(time.Second))
		_ = c.flushUpstream()
	}
	c.stop(err)
	<-upDone
	return err
}

// watch ends the session when its credentials are revoked or the agent's
// authority expires.
func (c *conn) watch(quit <-chan struct{}) {
	var expiry <-chan time.Time
	if !c.agent.Expires.IsZero() {
		t := time.NewTimer(time.Until(c.agent.Expires))
		defer t.Stop()
		expiry = t.C
	}
	select {
	case <-c.lease.Done:
		cause := error(nil)
		if c.lease.Cause != nil {
			cause = c.lease.Cause()
		}
		c.log.Warn("upstream credentials revoked; ending session", "cause", cause)
		c.stop(errRevoked)
	case <-expiry:
		c.log.Info("agent authorization expired; ending session")
		c.stop(errExpired)
	case <-quit:
	}
}

// --- client → upstream ---

func (c *conn) readClient() error {
	for {
		// What was forwarded goes upstream once no further whole message
		// is buffered: one write for a client's batch (Bind, Execute, Sync).
		if len(c.upBuf) > 0 && (len(c.upBuf) >= flushAt || !c.clientRd.complete()) {
			if err := c.flushUp(); err != nil {
				return err
			}
		}
		c.armIdle()
		typ, raw, err := c.clientRd.next()
		if err != nil {
			return c.clientReadError(err)
		}
		msg, err := c.cmsgs.decode(typ, raw[5:], c.authType)
		if err != nil {
			return c.clientReadError(err)
		}
		if c.inCopyIn() {
			// In COPY FROM STDIN the upstream ignores Flush and Sync and
			// fails the COPY on anything else, consuming the message
			// without an answer; keyhole would lose track of what is owed.
			switch msg.(type) {
			case *pgproto3.CopyData, *pgproto3.CopyDone, *pgproto3.CopyFail, *pgproto3.Terminate:
			case *pgproto3.Flush, *pgproto3.Sync:
				continue
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
			err = c.onBind(m, raw)
		case *pgproto3.Describe:
			err = c.onDescribe(m, raw)
		case *pgproto3.Execute:
			err = c.onExecute(m, raw)
		case *pgproto3.Close:
			err = c.onClose(m, raw)
		case *pgproto3.Sync:
			err = c.onSync()
		case *pgproto3.Flush:
			// Also while skipping: messages before the refused one may
			// still be waiting upstream for it.
			err = c.forward(m, raw)
		case *pgproto3.CopyData:
			// Outside COPY mode the upstream ignores these, as the
			// protocol specifies.
			err = c.forward(m, raw)
		case *pgproto3.CopyDone, *pgproto3.CopyFail:
			c.setCopyIn(false)
			err = c.forward(m, raw)
		case *pgproto3.FunctionCall:
			if !c.skipToSync {
				err = c.refuse(stmtError(codeFeatureUnsupported, "keyhole does not allow the function call protocol; call the function in a SELECT"))
			}
		case *pgproto3.Terminate:
			return fmt.Errorf("client sent Terminate: %w", errClientGone)
		default:
			return fatal(codeProtocolViolation, fmt.Sprintf("unexpected message type %T", msg), nil)
		}
		if err != nil {
			return err
		}
	}
}

func (c *conn) clientReadError(err error) error {
	c.mu.Lock()
	stopped, stopErr := c.stopped, c.stopErr
	c.mu.Unlock()
	if stopped {
		return stopErr
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("client read: %w", errIdle)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("client read: %w", errClientGone)
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

// armIdle sets the idle deadline on the client read when nothing is in
// flight (the upstream goroutine re-arms it when the last answer is sent).
func (c *conn) armIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armIdleLocked()
}

func (c *conn) armIdleLocked() {
	if c.stopped {
		return
	}
	idle := c.srv.limits.IdleTimeout
	if idle <= 0 {
		// The relay starts with no read deadline and only stop sets one.
		return
	}
	if len(c.pending) == 0 {
		_ = c.client.SetReadDeadline(time.Now().Add(idle))
	} else {
		_ = c.client.SetReadDeadline(time.Time{})
	}
}

// forward queues a client message for the upstream as it was received;
// readClient writes it before it next waits for the client. Parse, Bind
// and Execute decode without looking past their last field: one with
// bytes after it goes as pgproto3 encodes it (as before raw relaying), so
// the upstream reads exactly what keyhole decoded.
func (c *conn) forward(msg pgproto3.FrontendMessage, raw []byte) error {
	if n, ok := bodyLen(msg); ok && n != len(raw)-5 {
		b, err := msg.Encode(c.upBuf)
		if err != nil {
			return fatal(codeProtocolViolation, "invalid message from client", err)
		}
		c.upBuf = b
		return nil
	}
	c.upBuf = append(c.upBuf, raw...)
	return nil
}

func (c *conn) flushUp() error {
	if err := c.flushUpstream(); err != nil {
		c.mu.Lock()
		stopped, stopErr := c.stopped, c.stopErr
		c.mu.Unlock()
		if stopped {
			return stopErr
		}
		return fatal(codeConnectionFailure, "keyhole: upstream connection lost", fmt.Errorf("write upstream: %w", err))
	}
	return nil
}

func (c *conn) push(p *pending) {
	c.mu.Lock()
	c.pending = append(c.pending, p)
	c.mu.Unlock()
}

// emitLocal answers the client from keyhole: resp (may be nil) and, when
// rfq, ReadyForQuery with the upstream's transaction status. If answers are
// still owed from upstream it queues behind them.
func (c *conn) emitLocal(resp *pgproto3.ErrorResponse, rfq bool) error {
	// Lock order is wmu, then mu; mu is never held during I/O, so stop
	// and Shutdown never wait on a client that does not read.
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	if len(c.pending) > 0 {
		c.pending = append(c.pending, &pending{local: true, sync: rfq, err: resp})
		c.mu.Unlock()
		return nil
	}
	if !rfq && c.blockErr {
		// The upstream already failed this block; its error was the one.
		resp = nil
	}
	tx := c.txStatus
	c.mu.Unlock()
	if resp == nil && !rfq {
		return nil
	}
	return c.writeLocked(resp, rfq, tx)
}

// writeLocked sends resp and/or ReadyForQuery to the client and flushes;
// the caller holds wmu.
func (c *conn) writeLocked(resp *pgproto3.ErrorResponse, rfq bool, tx byte) error {
	if resp != nil {
		c.send(resp)
	}
	if rfq {
		c.send(&pgproto3.ReadyForQuery{TxStatus: tx})
	}
	if err := c.flushClient(); err != nil {
		return fmt.Errorf("write client: %w", errClientGone)
	}
	return nil
}

// refuse answers a Query-like message (Query, FunctionCall) with resp and
// ReadyForQuery. Unsynced extended messages already sent upstream get a
// Sync, whose ReadyForQuery then answers the client.
func (c *conn) refuse(resp *pgproto3.ErrorResponse) error {
	if c.unsynced > 0 {
		if err := c.emitLocal(resp, false); err != nil {
			return err
		}
		return c.sendSync()
	}
	return c.emitLocal(resp, true)
}

func (c *conn) sendSync() error {
	c.unsynced = 0
	c.push(&pending{sync: true})
	c.upBuf = append(c.upBuf, syncMsg...)
	return nil
}

// skip refuses an extended-protocol message: like Postgres after an error,
// every message up to Sync is discarded. The error is sent as soon as the
// upstream has answered the messages before it, so a client that Flushes
// sees it.
func (c *conn) skip(resp *pgproto3.ErrorResponse) error {
	c.skipToSync = true
	return c.emitLocal(resp, false)
}

// checkAgent ends the session when the policy no longer maps the agent
// to the role and upstream the session was opened for, or it expired.
func (c *conn) checkAgent() error {
	if !c.agent.Expires.IsZero() && time.Now().After(c.agent.Expires) {
		return errExpired
	}
	role, up, ok := c.srv.cfg.Decider.Role(c.agent.Name)
	if !ok || role != c.role || up != c.upName {
		c.log.Warn("agent no longer maps to the session's role", "known", ok, "new_role", role)
		return errAgentRemoved
	}
	return nil
}

// check asks the policy about sql in this session. A nil decision denies.
func (c *conn) check(sql string) (*sqlpolicy.Decision, *sqlpolicy.Access) {
	c.sessMu.Lock()
	dec, acc := c.srv.cfg.Decider.Check(c.agent.Principal(), sql, c.session)
	c.sessMu.Unlock()
	if dec == nil {
		dec = &sqlpolicy.Decision{Effect: sqlpolicy.Deny, Rule: "default-deny", Message: "keyhole: statement denied"}
	}
	return dec, acc
}

// decide checks sql and counts and logs the decision.
func (c *conn) decide(sql string) (*sqlpolicy.Decision, *sqlpolicy.Access) {
	start := time.Now()
	dec, acc := c.check(sql)
	if m := c.srv.cfg.Metrics; m != nil {
		m.StatementDecided(protocolName, dec.Effect, dec.Rule, time.Since(start))
	}
	if dec.Allowed() {
		c.mu.Lock()
		c.lastMaxRows = int64(dec.MaxRows)
		c.mu.Unlock()
		if c.log.Enabled(context.Background(), slog.LevelDebug) { // the args allocate even when disabled
			c.log.Debug("statement allowed", "rule", dec.Rule)
		}
	} else {
		c.log.Info("statement denied", "rule", dec.Rule, "reason", dec.Message)
	}
	return dec, acc
}

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
	if err := c.checkAgent(); err != nil {
		return err
	}
	start := time.Now()
	dec, acc := c.decide(m.String)
	if !dec.Allowed() {
		resp := denyResponse(dec)
		c.auditStatement(m.String, dec, start, 0, resp)
		return c.refuse(resp)
	}
	c.unsynced = 0
	c.push(&pending{sync: true, run: newRun(m.String, dec, acc)})
	return c.forward(m, raw)
}

func newRun(sql string, dec *sqlpolicy.Decision, acc *sqlpolicy.Access) *run {
	return &run{sql: sql, dec: dec, access: acc, started: time.Now(), maxRows: int64(dec.MaxRows)}
}

func (c *conn) onParse(m *pgproto3.Parse, raw []byte) error {
	if c.skipToSync {
		return nil
	}
	if err := c.checkAgent(); err != nil {
		return err
	}
	start := time.Now()
	dec, acc := c.decide(m.Query)
	p := &prepared{name: m.Name, sql: m.Query, dec: dec, access: acc, allowed: dec.Allowed()}
	c.stmts[m.Name] = p
	if !p.allowed {
		resp := denyResponse(dec)
		c.auditStatement(m.Query, dec, start, 0, resp)
		return c.skip(resp)
	}
	// Allowed statements are audited when they run (finishRun), with rows.
	return c.forwardExt(m, raw, &pending{ack: 'P', stmt: p})
}

// recheck decides an allowed prepared statement again at Bind: the policy
// may have been reloaded since Parse (a role narrowed), and drivers that
// cache statements never send Parse again. With an unchanged policy this is
// a decision-cache hit. A statement the new policy denies stays denied.
func (c *conn) recheck(p *prepared) *pgproto3.ErrorResponse {
	dec, acc := c.check(p.sql)
	p.dec, p.access = dec, acc
	if dec.Allowed() {
		return nil
	}
	p.allowed = false
	c.log.Info("prepared statement denied after policy change", "rule", dec.Rule)
	if m := c.srv.cfg.Metrics; m != nil {
		m.StatementDecided(protocolName, dec.Effect, dec.Rule, 0)
	}
	r := deniedStatement(p)
	c.auditStatement(p.sql, dec, time.Now(), 0, r)
	return r
}

// deniedStatement refuses the use of a prepared statement the policy denied.
func deniedStatement(p *prepared) *pgproto3.ErrorResponse {
	r := denyResponse(p.dec)
	r.Message = fmt.Sprintf("keyhole: prepared statement %q was denied by policy: %s", p.name, r.Message)
	return r
}

// statement returns the allowed statement name refers to, or the error
// that refuses it.
func (c *conn) statement(name string) (*prepared, *pgproto3.ErrorResponse) {
	p := c.stmts[name]
	switch {
	case p == nil:
		return nil, stmtError(codeInvalidStmtName, fmt.Sprintf("prepared statement %q does not exist", name))
	case p.failed.Load():
		return nil, stmtError(codeInvalidStmtName, fmt.Sprintf("keyhole: prepared statement %q is unusable: the server did not accept its Parse; Close it and Parse it again", name))
	case !p.allowed:
		return nil, deniedStatement(p)
	}
	return p, nil
}

func (c *conn) portal(name string) (*portal, *pgproto3.ErrorResponse) {
	switch p := c.portals[name]; {
	case p == nil:
		return nil, stmtError(codeInvalidCursorName, fmt.Sprintf("portal %q does not exist", name))
	case p.failed.Load():
		return nil, stmtError(codeInvalidCursorName, fmt.Sprintf("keyhole: portal %q is unusable: the server did not accept its Bind", name))
	default:
		return p, nil
	}
}

func (c *conn) onBind(m *pgproto3.Bind, raw []byte) error {
	if c.skipToSync {
		return nil
	}
	if err := c.checkAgent(); err != nil {
		return err
	}
	p, refused := c.statement(m.PreparedStatement)
	if refused == nil {
		refused = c.recheck(p)
	}
	if refused != nil {
		delete(c.portals, m.DestinationPortal)
		return c.skip(refused)
	}
	r := newRun(p.sql, p.dec, p.access)
	r.stmt = p
	pt := &portal{run: r}
	c.portals[m.DestinationPortal] = pt
	return c.forwardExt(m, raw, &pending{ack: 'B', portal: pt})
}

func (c *conn) onDescribe(m *pgproto3.Describe, raw []byte) error {
	if c.skipToSync {
		return nil
	}
	var refused *pgproto3.ErrorResponse
	switch m.ObjectType {
	case 'S':
		_, refused = c.statement(m.Name)
	case 'P':
		_, refused = c.portal(m.Name)
	default:
		return fatal(codeProtocolViolation, fmt.Sprintf("invalid Describe object type %q", m.ObjectType), nil)
	}
	if refused != nil {
		return c.skip(refused)
	}
	return c.forwardExt(m, raw, &pending{ack: 'D'})
}

func (c *conn) onExecute(m *pgproto3.Execute, raw []byte) error {
	if c.skipToSync {
		return nil
	}
	if err := c.checkAgent(); err != nil {
		return err
	}
	p, refused := c.portal(m.Portal)
	if refused != nil {
		return c.skip(refused)
	}
	return c.forwardExt(m, raw, &pending{run: p.run})
}

func (c *conn) onClose(m *pgproto3.Close, raw []byte) error {
	if c.skipToSync {
		return nil
	}
	switch m.ObjectType {
	case 'S':
		delete(c.stmts, m.Name)
	case 'P':
		delete(c.portals, m.Name)
	default:
		return fatal(codeProtocolViolation, fmt.Sprintf("invalid Close object type %q", m.ObjectType), nil)
	}
	return c.forwardExt(m, raw, &pending{ack: 'C'})
}

// forwardExt queues what the upstream owes for an extended-protocol
// message, then forwards it.
func (c *conn) forwardExt(m pgproto3.FrontendMessage, raw []byte, p *pending) error {
	c.unsynced++
	c.push(p)
	return c.forward(m, raw)
}

func (c *conn) onSync() error {
	if c.skipToSync {
		c.skipToSync = false
		if c.unsynced == 0 {
			return c.emitLocal(nil, true)
		}
	}
	return c.sendSync()
}

// --- upstream → client ---

// upstreamState is the upstream goroutine's view of the current sync block.
type upstreamState struct {
	blockErr  bool                    // the upstream sent an ErrorResponse in this block
	cutErr    *pgproto3.ErrorResponse // max_rows exceeded: suppress until ReadyForQuery
	unflushed int                     // bytes relayed since the last flush
	// parsed and executed say whether the block prepared a statement and
	// whether it ran one: a prepare-only block (pgx prepares, then
	// executes in a second round trip) is not a point to end a draining
	// session at.
	parsed, executed bool
	orphan           *run // rows not attributable to a queued run
}

func (c *conn) readUpstream() error {
	var st upstreamState
	for {
		typ, raw, err := c.upRd.next()
		if err == nil && !upstreamTypes[typ] {
			err = fmt.Errorf("unknown message type: %c", typ)
		}
		if err != nil {
			c.mu.Lock()
			stopped, stopErr, saidBye := c.stopped, c.stopErr, c.saidBye
			c.mu.Unlock()
			if stopped {
				return stopErr
			}
			if saidBye {
				return fmt.Errorf("upstream closed after Terminate: %w", errClientGone)
			}
			if m := c.srv.cfg.Metrics; m != nil {
				m.UpstreamError(protocolName)
			}
			return fatal(codeConnectionFailure, "keyhole: upstream connection lost", fmt.Errorf("read upstream: %w", err))
		}
		// Messages are relayed as received; only those keyhole must
		// inspect are decoded. ack is the kind of queued extended message
		// this answers.
		var ack byte
		send := st.cutErr == nil
		var out pgproto3.BackendMessage // sent instead of raw when set
		switch typ {
		case 'D', 'd': // DataRow, CopyData
			send = c.countRow(&st)
		case '1': // ParseComplete
			st.parsed = true
			ack = 'P'
		case '2': // BindComplete
			ack = 'B'
		case '3': // CloseComplete
			ack = 'C'
		case 'T', 'n': // RowDescription, NoData
			ack = 'D' // ends a Describe; in a simple Query nothing is queued for it
		case 'G': // CopyInResponse
			c.setCopyIn(true)
		case 'C': // CommandComplete
			c.setCopyIn(false)
			st.executed = true
			ack = 'E'
		case 'I': // EmptyQueryResponse
			ack = 'E'
		case 's': // PortalSuspended
			ack = 'S' // the Execute ended, the portal's run goes on
		case 'E':
			var m pgproto3.ErrorResponse
			if err := m.Decode(raw[5:]); err != nil {
				return fatal(codeConnectionFailure, "keyhole: upstream connection lost", fmt.Errorf("read upstream: %w", err))
			}
			if m.Severity == "FATAL" || m.Severity == "PANIC" {
				if err := c.writeRaw(raw); err != nil {
					return err
				}
				return fmt.Errorf("upstream %s %s: %s: %w", m.Severity, m.Code, m.Message, errUpstreamFatal)
			}
			c.setCopyIn(false)
			st.blockErr = true
			c.failBlock(&pgproto3.ErrorResponse{Code: m.Code, Message: m.Message})
		case 'Z':
			var m pgproto3.ReadyForQuery
			if err := m.Decode(raw[5:]); err != nil {
				return fatal(codeConnectionFailure, "keyhole: upstream connection lost", fmt.Errorf("read upstream: %w", err))
			}
			if err := c.readyForQuery(m.TxStatus, &st); err != nil {
				return err
			}
			st = upstreamState{}
			continue
		case 'S':
			var m pgproto3.ParameterStatus
			if err := m.Decode(raw[5:]); err != nil {
				return fatal(codeConnectionFailure, "keyhole: upstream connection lost", fmt.Errorf("read upstream: %w", err))
			}
			m.Value = c.paramValue(m.Name, m.Value)
			out = &m
			send = true
		case 'W':
			return fatal(codeFeatureUnsupported, "keyhole does not proxy replication (CopyBoth)", nil)
		case 'N', 'A': // NoticeResponse, NotificationResponse
			send = true
		case 'R', 'K': // authentication, BackendKeyData
			return fatal(codeConnectionFailure, "keyhole: upstream protocol error", fmt.Errorf("unexpected upstream message %q", typ))
		}
		if send {
			c.wmu.Lock()
			if out != nil {
				c.send(out)
			} else {
				c.wbuf = append(c.wbuf, raw...)
			}
			c.wmu.Unlock()
			st.unflushed += len(raw)
		}
		if ack != 0 {
			if err := c.answered(ack, &st); err != nil {
				return err
			}
		}
		// Answers go to the client once the upstream has sent nothing
		// more: one write for a statement's whole response.
		if st.unflushed > 0 && (c.upRd.buffered() == 0 || st.unflushed >= flushAt) {
			st.unflushed = 0
			c.wmu.Lock()
			err := c.flushClient()
			c.wmu.Unlock()
			if err != nil {
				return fmt.Errorf("write client: %w", errClientGone)
			}
		}
	}
}

func (c *conn) setCopyIn(v bool) {
	c.mu.Lock()
	c.copyIn = v
	c.mu.Unlock()
}

func (c *conn) inCopyIn() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.copyIn
}

func (c *conn) writeRaw(raw []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = append(c.wbuf, raw...)
	if err := c.flushClient(); err != nil {
		return fmt.Errorf("write client: %w", errClientGone)
	}
	return nil
}

// head returns the oldest upstream entry.
func (c *conn) head() *pending {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.pending {
		if !p.local {
			return p
		}
	}
	return nil
}

// answered handles the answer to the head entry when it is of kind ack
// ('E' for an Execute): it finishes an Execute's run, removes the entry and
// sends the answers keyhole queued behind it.
func (c *conn) answered(ack byte, st *upstreamState) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	var h *pending
	if len(c.pending) > 0 {
		p := c.pending[0]
		switch {
		case ack == 'E' && p.sync && p.run != nil:
			// One statement of a simple Query ended; max_rows counts anew.
			p.run.stmtRows = 0
		case (ack == 'E' || ack == 'S') && !p.sync && !p.local && p.run != nil, p.ack == ack:
			h = p
			c.pending = c.pending[1:]
		}
	}
	locals := c.takeLocalsLocked()
	tx := c.txStatus
	c.armIdleLocked()
	c.mu.Unlock()
	if h != nil && h.run != nil && ack == 'E' {
		c.finishRun(h.run, nil)
		h.run.stmtRows = 0
	}
	return c.sendLocals(locals, tx, st.blockErr || st.cutErr != nil)
}

// takeLocalsLocked removes the answers keyhole owes that are now at the
// front of the queue.
func (c *conn) takeLocalsLocked() []*pending {
	var locals []*pending
	for len(c.pending) > 0 && c.pending[0].local {
		locals = append(locals, c.pending[0])
		c.pending = c.pending[1:]
	}
	return locals
}

// sendLocals writes queued answers; the caller holds wmu. An error that
// would follow an error in the same block is dropped: Postgres reports
// only the first error before Sync.
func (c *conn) sendLocals(locals []*pending, tx byte, blockFailed bool) error {
	if len(locals) == 0 {
		return nil
	}
	for _, p := range locals {
		if p.err != nil && !(blockFailed && !p.sync) {
			c.send(p.err)
		}
		if p.sync {
			c.send(&pgproto3.ReadyForQuery{TxStatus: tx})
			blockFailed = false
		}
	}
	if err := c.flushClient(); err != nil {
		return fmt.Errorf("write client: %w", errClientGone)
	}
	return nil
}

// countRow counts a DataRow (or COPY TO row) against max_rows and reports
// whether to relay it.
func (c *conn) countRow(st *upstreamState) bool {
	if st.cutErr != nil {
		return false
	}
	h := c.head()
	r := st.orphan
	if h != nil && h.run != nil {
		r = h.run
	} else if r == nil {
		// Rows keyhole cannot attribute (a client that broke the
		// protocol's order) still count against the role's cap.
		c.mu.Lock()
		r = &run{maxRows: c.lastMaxRows, started: time.Now()}
		c.mu.Unlock()
		st.orphan = r
	}
	r.rows++
	r.stmtRows++
	if r.maxRows > 0 && r.stmtRows > r.maxRows {
		r.cut = true
		st.cutErr = stmtError(codeProgramLimit, fmt.Sprintf("keyhole: statement returned more than %d rows (role limit); add a LIMIT", r.maxRows))
		r.cutErr = st.cutErr
		c.log.Info("max_rows exceeded; cancelling upstream statement", "max_rows", r.maxRows)
		// The block now ends in this error, whatever the upstream says.
		c.failBlock(st.cutErr)
		// Synchronously: the cancel must land before the client can send
		// its next statement (after our ReadyForQuery), or it could cancel
		// that one instead. An idle backend ignores a late cancel.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.cancelUpstream(ctx); err != nil {
			c.log.Warn("cancel upstream after max_rows", "err", err)
		}
		return false
	}
	return true
}

// failBlock records that the current sync block failed (an upstream
// error, or a max_rows cut): the upstream skips the rest of the block, so
// every entry before the block's Sync is dropped, keyhole's own errors
// included (only the first error of a block is reported). The failing
// Execute's run is finished with resp.
func (c *conn) failBlock(resp *pgproto3.ErrorResponse) {
	c.mu.Lock()
	c.blockErr = true
	var failed *run
	first := true
	for len(c.pending) > 0 && !c.pending[0].sync {
		p := c.pending[0]
		if first && p.run != nil && !p.local {
			failed = p.run
		}
		// The upstream answered neither this Parse nor this Bind: it
		// rejected or skipped it and kept what it had under the name.
		if p.stmt != nil {
			p.stmt.failed.Store(true)
		}
		if p.portal != nil {
			p.portal.failed.Store(true)
		}
		if !p.local {
			first = false
		}
		c.pending = c.pending[1:]
	}
	if h := c.firstSyncLocked(); h != nil && h.run != nil && failed == nil {
		h.run.errCode, h.run.errMsg = resp.Code, resp.Message
	}
	c.mu.Unlock()
	if failed != nil {
		c.finishRun(failed, resp)
	}
}

func (c *conn) firstSyncLocked() *pending {
	if len(c.pending) > 0 && c.pending[0].sync && !c.pending[0].local {
		return c.pending[0]
	}
	return nil
}

// readyForQuery ends a sync block: it sends the max_rows error if any, the
// ReadyForQuery, then any answers keyhole queued behind it.
func (c *conn) readyForQuery(tx byte, st *upstreamState) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	c.txStatus = tx
	// Entries of the block the upstream did not answer (it skipped them
	// after an error) go first.
	for len(c.pending) > 0 && !c.pending[0].sync {
		c.pending = c.pending[1:]
	}
	var h *pending
	if len(c.pending) > 0 && !c.pending[0].local {
		h = c.pending[0]
		c.pending = c.pending[1:]
	}
	c.blockErr = false
	locals := c.takeLocalsLocked()
	c.mu.Unlock()
	if h == nil {
		return fatal(codeConnectionFailure, "keyhole: upstream protocol error", errors.New("unsolicited ReadyForQuery from upstream"))
	}
	if h.run != nil {
		st.executed = true
		c.finishRun(h.run, st.cutErr)
	}
	if st.cutErr != nil {
		c.send(st.cutErr)
	}
	c.send(&pgproto3.ReadyForQuery{TxStatus: tx})
	if err := c.flushClient(); err != nil {
		return fmt.Errorf("write client: %w", errClientGone)
	}
	if err := c.sendLocals(locals, tx, false); err != nil {
		return err
	}
	c.mu.Lock()
	c.prepOnly = st.parsed && !st.executed && h.run == nil
	drain := c.draining && c.idleLocked()
	c.armIdleLocked()
	c.mu.Unlock()
	if drain {
		c.stop(errShutdown)
	}
	return nil
}

// finishRun audits a run that the upstream answered and, when it
// succeeded, applies its effects to the session.
func (c *conn) finishRun(r *run, resp *pgproto3.ErrorResponse) {
	if r.done {
		return
	}
	r.done = true
	if r.cutErr != nil {
		resp = r.cutErr
	}
	if resp == nil && r.errCode != "" {
		resp = &pgproto3.ErrorResponse{Code: r.errCode, Message: r.errMsg}
	}
	if resp == nil && !r.cut && r.access != nil {
		c.sessMu.Lock()
		if r.stmt != nil {
			// An extended-protocol Execute completes before its Sync: a
			// later error in the same implicit transaction can still roll
			// back a SET it made, so it only adds search_path candidates.
			c.session.ApplyUncommitted(r.access)
		} else {
			c.session.Apply(r.access)
		}
		c.sessMu.Unlock()
	}
	c.auditRun(r, resp)
}

func (c *conn) auditStatement(sql string, dec *sqlpolicy.Decision, start time.Time, rows int64, resp *pgproto3.ErrorResponse) {
	if c.srv.cfg.Audit == nil {
		return
	}
	text, fp := dec.Redacted, dec.Fingerprint
	if text == "" {
		text, fp = c.srv.cfg.Decider.Redact(sql)
	}
	c.auditEvent(sql, text, fp, dec, start, rows, resp)
}

func (c *conn) auditEvent(sql, text, fp string, dec *sqlpolicy.Decision, start time.Time, rows int64, resp *pgproto3.ErrorResponse) {
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
		DurationMS:  msSince(start),
		Rows:        rows,
	}
	if resp != nil {
		ev.ErrorCode, ev.Error = resp.Code, resp.Message
	}
	c.record(ev)
}

func (c *conn) auditRun(r *run, resp *pgproto3.ErrorResponse) {
	if c.srv.cfg.Audit == nil {
		return
	}
	if p := r.stmt; p != nil {
		p.redactOnce.Do(func() { p.redacted, p.print = c.srv.cfg.Decider.Redact(p.sql) })
		c.auditEvent(r.sql, p.redacted, p.print, r.dec, r.started, r.rows, resp)
		return
	}
	c.auditStatement(r.sql, r.dec, r.started, r.rows, resp)
}
