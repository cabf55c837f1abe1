package pgproxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// Upstream session reuse. A Postgres backend's first seconds cost the
// server more than its steady state (catalog and relation caches,
// first touches of heap pages), and a login costs a round trip or four
// and, with Vault, a backend for a dynamic user; an agent that opens a
// session per task pays both every time. So an upstream session whose
// client left at a clean point is reset and kept, for the next session
// that would log in exactly as it did:
//
//   - Clean point: the client sent Terminate (or closed) with everything
//     it sent answered, the last block ended by Sync or Query, the server
//     idle outside a transaction ('I'), no COPY, no max_rows cut, and the
//     session not stopped (revocation, expiry, idle timeout, shutdown).
//     Anything else is ended as before: Terminate, and the server rolls
//     back what the client left unfinished.
//   - Reset: one simple Query, DISCARD ALL (what PgBouncer runs), on the
//     ending session's goroutine: it closes cursors, drops prepared
//     statements, temporary tables and sequences' state, unlistens,
//     releases advisory locks, resets every setting to the session's
//     start (SET SESSION AUTHORIZATION DEFAULT, RESET ALL). It must
//     answer CommandComplete "DISCARD ALL" and ReadyForQuery 'I', with
//     nothing but notices and ParameterStatus reports of values the
//     session started with; anything else closes the backend. What
//     DISCARD ALL leaves is an extension's own state (dblink's
//     connections, a LOAD-ed library), which only functions and
//     statements keyhole refuses unless a rule allows them can create.
//   - Key: the session is taken only by one with the same upstream,
//     address, database, agent, client user name, lease login and
//     password, and startup parameters (application_name, which names the
//     agent and the client's application, the client's DateStyle and the
//     like, the role's resource settings): the backend then is what a new
//     login would have made, and the client gets the same greeting the
//     first one got (AuthenticationOk, the ParameterStatus values, the
//     session probe's answer for Vault logins). The key is a hash: the
//     pool keeps no password. A session is never handed to another agent,
//     nor across leases: a renewed Vault lease has a new login.
//   - Bounds: at most Limits.ReuseMax kept sessions (the oldest closes
//     for a newer one), each for at most Limits.ReuseIdle, and none
//     whose backend has lived an hour. A kept session whose lease ends
//     (revoked, expired) is closed within a sweep (a second); the pool
//     holds no reference to the lease, so a kept session never keeps a
//     credential alive. A backend the server ended meanwhile
//     (pg_terminate_backend, a restart) is found by a peek at its socket
//     before it is handed out, and at each sweep.
//   - A login refused with 53300 (too many connections) closes the kept
//     sessions of that address and tries once more: kept sessions must
//     not take the server's last slots from a new one.
//
// The client sees a new session: keyhole's own BackendKeyData, fresh
// prepared-statement and portal tables, the analyzer's session state
// from the start. What it can tell: pg_backend_pid() and
// pg_stat_activity's backend_start are the kept backend's.

// discardAllMsg is the reset: a simple Query "DISCARD ALL".
var discardAllMsg = func() []byte {
	b := appendCString(appendMsgHeader(nil, 'Q'), "DISCARD ALL")
	finishMsg(b, 0)
	return b
}()

const (
	// reuseResetTimeout bounds the reset's round trip.
	reuseResetTimeout = 5 * time.Second
	// reuseMaxAge: a backend that has lived this long is not kept (its
	// caches grow with what its sessions touched).
	reuseMaxAge = time.Hour
	// reuseSweep is how often kept sessions are checked (idle time,
	// lease, the backend still there) while there are any.
	reuseSweep = time.Second
)

// reuseKey identifies how a session logs in upstream; see reuseKeyFor.
type reuseKey [sha256.Size]byte

// keptSession is an upstream session reset and waiting for reuse.
type keptSession struct {
	key  reuseKey
	addr string
	nc   net.Conn
	pid  uint32
	// secret is the server's cancel key.
	secret []byte
	// greeting is what the client got before BackendKeyData when the
	// backend logged in: AuthenticationOk and ParameterStatus messages.
	greeting []byte
	// probe is the session probe's row (nil without a probe).
	probe [][]byte
	// leaseDone is the lease's Done (nil: it never ends).
	leaseDone  <-chan struct{}
	born, kept time.Time
}

// upstreamPool keeps reset upstream sessions for reuse.
type upstreamPool struct {
	max  int
	idle time.Duration
	log  *slog.Logger

	// report, when set, is told the number kept after each change (a
	// gauge; called under mu, so values arrive in order).
	report func(n int)

	mu     sync.Mutex
	byKey  map[reuseKey][]*keptSession // oldest first
	n      int
	closed bool
	sweep  *time.Timer
}

// setCountLocked sets the number kept; p.mu is held.
func (p *upstreamPool) setCountLocked(n int) {
	p.n = n
	if p.report != nil {
		p.report(n)
	}
}

func newUpstreamPool(max int, idle time.Duration, log *slog.Logger) *upstreamPool {
	return &upstreamPool{max: max, idle: idle, log: log, byKey: make(map[reuseKey][]*keptSession)}
}

// enabled reports whether sessions are kept at all.
func (p *upstreamPool) enabled() bool { return p != nil && p.max > 0 }

// take returns the newest kept session for key that is still usable, or
// nil; it closes those it finds unusable.
func (p *upstreamPool) take(key reuseKey) *keptSession {
	if !p.enabled() {
		return nil
	}
	now := time.Now()
	for {
		p.mu.Lock()
		list := p.byKey[key]
		if len(list) == 0 {
			p.mu.Unlock()
			return nil
		}
		k := list[len(list)-1]
		p.removeLocked(k)
		p.mu.Unlock()
		if why := k.unusable(now, p.idle); why != "" {
			p.log.Debug("kept upstream session closed", "reason", why, "backend_pid", k.pid)
			k.close()
			continue
		}
		return k
	}
}

// put keeps k, closing the oldest kept session when the pool is full.
func (p *upstreamPool) put(k *keptSession) {
	p.mu.Lock()
	if p.closed || !p.enabled() {
		p.mu.Unlock()
		k.close()
		return
	}
	var evicted *keptSession
	if p.n >= p.max {
		for _, list := range p.byKey {
			if len(list) > 0 && (evicted == nil || list[0].kept.Before(evicted.kept)) {
				evicted = list[0]
			}
		}
		p.removeLocked(evicted)
	}
	p.byKey[k.key] = append(p.byKey[k.key], k)
	p.setCountLocked(p.n + 1)
	if p.sweep == nil {
		p.sweep = time.AfterFunc(reuseSweep, p.sweepNow)
	}
	p.mu.Unlock()
	if evicted != nil {
		evicted.close()
	}
}

// removeLocked takes k out of the pool; p.mu is held.
func (p *upstreamPool) removeLocked(k *keptSession) {
	list := p.byKey[k.key]
	i := slices.Index(list, k)
	if i < 0 {
		return
	}
	list = slices.Delete(list, i, i+1)
	if len(list) == 0 {
		delete(p.byKey, k.key)
	} else {
		p.byKey[k.key] = list
	}
	p.setCountLocked(p.n - 1)
}

// removeWhereLocked takes out of the pool the kept sessions for which
// why gives a reason, and returns them for the caller to close once it
// has unlocked (close writes to the socket); p.mu is held.
func (p *upstreamPool) removeWhereLocked(why func(*keptSession) string) []*keptSession {
	var gone []*keptSession
	for _, list := range p.byKey {
		for _, k := range list {
			if reason := why(k); reason != "" {
				p.log.Debug("kept upstream session closed", "reason", reason, "backend_pid", k.pid)
				gone = append(gone, k)
			}
		}
	}
	for _, k := range gone {
		p.removeLocked(k)
	}
	return gone
}

func closeAll(ks []*keptSession) {
	for _, k := range ks {
		k.close()
	}
}

// sweepNow closes kept sessions that are no longer usable, and runs
// again in reuseSweep while any are kept.
func (p *upstreamPool) sweepNow() {
	now := time.Now()
	p.mu.Lock()
	gone := p.removeWhereLocked(func(k *keptSession) string { return k.unusable(now, p.idle) })
	if p.n > 0 && !p.closed {
		p.sweep.Reset(reuseSweep)
	} else {
		p.sweep = nil
	}
	p.mu.Unlock()
	closeAll(gone)
}

// evict closes the kept sessions of addr and reports how many there were.
func (p *upstreamPool) evict(addr string) int {
	if !p.enabled() {
		return 0
	}
	p.mu.Lock()
	gone := p.removeWhereLocked(func(k *keptSession) string {
		if k.addr == addr {
			return "its server refused a login for lack of connection slots"
		}
		return ""
	})
	p.mu.Unlock()
	closeAll(gone)
	return len(gone)
}

// close closes every kept session; put closes what comes later.
func (p *upstreamPool) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.closed = true
	gone := p.removeWhereLocked(func(*keptSession) string { return "keyhole is shutting down" })
	if p.sweep != nil {
		p.sweep.Stop()
		p.sweep = nil
	}
	p.mu.Unlock()
	closeAll(gone)
}

// close ends a kept session as a client would: Terminate, then close
// (without waiting for a server that does not read).
func (k *keptSession) close() {
	_ = k.nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = k.nc.Write(terminateMsg)
	_ = k.nc.Close()
}

// unusable says why k may not be handed out any more, or "".
func (k *keptSession) unusable(now time.Time, idle time.Duration) string {
	switch {
	case now.Sub(k.kept) >= idle:
		return "idle"
	case now.Sub(k.born) >= reuseMaxAge:
		return "age"
	case k.leaseDone != nil && isClosed(k.leaseDone):
		return "lease ended"
	}
	if !socketQuiet(k.nc) {
		return "the server closed it or sent something"
	}
	return ""
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// socketQuiet peeks at nc's socket without blocking: true when nothing is
// there to read and the peer has not closed it. A kept session's server
// has nothing to say: anything it sent (a FATAL before it closed, a
// notification) means the session is not as it was reset.
func socketQuiet(nc net.Conn) bool {
	if tc, ok := nc.(interface{ NetConn() net.Conn }); ok {
		nc = tc.NetConn()
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	quiet := false
	var b [1]byte
	err = raw.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		quiet = n < 0 && errors.Is(rerr, syscall.EAGAIN)
		return true
	})
	return err == nil && quiet
}

// --- the session's side ---

// reuseKeyFor is the reuse key of the session about to log in with params
// (startupParams) to database db. It hashes the lease's password with
// the rest, so that neither the pool nor a log can show it.
func (c *conn) reuseKeyFor(db string, params []string) reuseKey {
	h := sha256.New()
	field := func(s string) {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(s))))
		h.Write([]byte(s))
	}
	field(c.upName)
	field(c.upstream.Addr)
	field(db)
	field(c.agent.Name)
	field(c.user)
	field(c.lease.User)
	field(c.lease.Password.Reveal())
	// (startupParams's order follows map iteration: sorted here.)
	pairs := make([][2]string, 0, len(params)/2)
	for i := 0; i+1 < len(params); i += 2 {
		pairs = append(pairs, [2]string{params[i], params[i+1]})
	}
	slices.SortFunc(pairs, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	for _, p := range pairs {
		field(p[0])
		field(p[1])
	}
	var k reuseKey
	h.Sum(k[:0])
	return k
}

// adopt makes k the session's upstream: what a login would have left
// (c.upConn, c.upRd, the cancel key, the greeting in c.wbuf, the probe's
// answer learnt). It reports errShutdown when the session was stopped.
func (c *conn) adopt(k *keptSession) error {
	if k.probe != nil {
		learner, ok := c.session.(sqlpolicy.ProbeLearner)
		if !ok {
			k.close()
			return fmt.Errorf("%w: session %T cannot take the probe's answer", errProbe, c.session)
		}
		c.sessMu.Lock()
		err := learner.LearnProbe(cloneRow(k.probe))
		c.sessMu.Unlock()
		if err != nil {
			k.close()
			return fmt.Errorf("%w: %w", errProbe, err)
		}
	}
	c.mu.Lock()
	stopped := c.stopped
	if !stopped {
		c.upConn, c.upPID, c.upKey, c.txStatus = k.nc, k.pid, k.secret, 'I'
		c.upBorn = k.born
	}
	c.mu.Unlock()
	if stopped {
		k.close()
		return errShutdown
	}
	c.upRd = newUpstreamReader(k.nc)
	c.wbuf = append(c.clientBuffer(), k.greeting...)
	c.greeting = k.greeting
	c.probeRow = k.probe
	return nil
}

func cloneRow(row [][]byte) [][]byte {
	out := make([][]byte, len(row))
	for i, v := range row {
		if v != nil {
			out[i] = slices.Clone(v)
		}
	}
	return out
}

// keepUpstream resets the upstream session of a client that left and
// hands it to the pool, when the session ended at a clean point (see the
// top of this file). It runs on the relay's goroutine after the client's
// side ended, before goodbye; on false the caller ends the upstream
// session as usual (the reset's failure leaves nothing that Terminate
// does not end).
func (c *conn) keepUpstream() bool {
	pool := c.srv.reuse
	if !pool.enabled() || c.greeting == nil {
		return false
	}
	c.mu.Lock()
	// (The upstream side is this goroutine's once no upstream goroutine
	// runs: it clears upReader under mu, and only this goroutine starts
	// one.)
	clean := !c.stopped && !c.draining && !c.socksClosed && !c.upReader && c.ev == nil && c.upConn != nil &&
		c.sent.len() == 0 && c.inflight.Load() == 0 && c.txStatus == 'I' && !c.copyIn.Load()
	if clean {
		clean = c.staged.len() == 0 && len(c.upBuf) == 0 && c.endsBlock && c.upRd.buffered() == 0 &&
			!c.up.skipping && c.up.cut == nil && c.up.q.len() == 0 && c.cancelling == nil &&
			time.Since(c.upBorn) < reuseMaxAge && (c.lease.Done == nil || !isClosed(c.lease.Done))
	}
	up, pid, secret := c.upConn, c.upPID, c.upKey
	if clean {
		// A cancel request for this session from here on has no
		// statement to cancel, and must not reach the backend once a
		// later session runs statements on it.
		c.upPID = 0
	}
	c.mu.Unlock()
	if !clean {
		return false
	}
	// Cancels forwarded before have landed (cancelUpstream waits for
	// the postmaster to close their connection), on a backend that was
	// idle, which ignores them; one landing during the reset fails it.
	c.cancels.Wait()
	if err := c.resetUpstream(up); err != nil {
		c.log.Debug("upstream session not kept: its reset failed", "err", err)
		return false
	}
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return false
	}
	// From here stop and closeSockets leave the socket alone.
	c.upConn, c.upKey = nil, nil
	c.mu.Unlock()
	c.upRd.shrink()
	pool.put(&keptSession{
		key: c.reuseKey, addr: c.upstream.Addr, nc: up, pid: pid, secret: secret,
		greeting: c.greeting, probe: c.probeRow, leaseDone: c.lease.Done,
		born: c.upBorn, kept: time.Now(),
	})
	c.log.Debug("upstream session kept for reuse", "backend_pid", pid)
	return true
}

// resetUpstream runs DISCARD ALL on up and reads its answer (see the top
// of this file for what passes).
func (c *conn) resetUpstream(up net.Conn) error {
	_ = up.SetDeadline(time.Now().Add(reuseResetTimeout))
	defer func() { _ = up.SetDeadline(time.Time{}) }()
	if _, err := up.Write(discardAllMsg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	tagged := false
	for {
		typ, raw, err := c.upRd.next()
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		body := raw[5:]
		switch typ {
		case 'C':
			tagged = string(bytes.TrimSuffix(body, []byte{0})) == "DISCARD ALL"
		case 'N':
		case 'S':
			name, value, _ := bytes.Cut(body, []byte{0})
			value = bytes.TrimSuffix(value, []byte{0})
			if bytes.EqualFold(name, sessionAuthorization) {
				// The login user again (SET SESSION AUTHORIZATION
				// DEFAULT); the client was shown its own name.
				continue
			}
			if v, ok := greetingValue(c.greeting, name); !ok || !bytes.Equal(v, value) {
				return fmt.Errorf("parameter %s is not back at the value the session started with", name)
			}
		case 'Z':
			switch {
			case len(body) != 1 || body[0] != 'I':
				return errors.New("not idle after the reset")
			case !tagged:
				return errors.New("no DISCARD ALL command tag")
			case c.upRd.buffered() > 0:
				return errors.New("more after the reset's ReadyForQuery")
			}
			return nil
		case 'E':
			return serverError(body)
		default:
			return fmt.Errorf("unexpected message %q", typ)
		}
	}
}

// greetingValue finds a ParameterStatus value in a greeting.
func greetingValue(greeting, name []byte) ([]byte, bool) {
	for len(greeting) >= 5 {
		n := int(greeting[1])<<24 | int(greeting[2])<<16 | int(greeting[3])<<8 | int(greeting[4])
		if n < 4 || 1+n > len(greeting) {
			return nil, false
		}
		if greeting[0] == 'S' {
			k, v, _ := bytes.Cut(greeting[5:1+n], []byte{0})
			if bytes.Equal(k, name) {
				return bytes.TrimSuffix(v, []byte{0}), true
			}
		}
		greeting = greeting[1+n:]
	}
	return nil, false
}

// noteGreeting records, once a new backend is logged in (and probed),
// what reuse needs to hand it to a later session: the greeting in
// c.wbuf[mark:] and the probe's row.
func (c *conn) noteGreeting(mark int) {
	if !c.srv.reuse.enabled() {
		return
	}
	c.greeting = slices.Clone(c.wbuf[mark:])
	c.upBorn = time.Now()
}
