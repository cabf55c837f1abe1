package mysqlproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/keyholedb/keyhole/internal/evloop"
)

// The loop relay. Once a session is set up, and whenever its goroutine
// relay is between commands, a plain-TCP session (no TLS on either leg;
// compression is never negotiated) moves to one of the process's event
// loops (internal/evloop) and its goroutine ends. On the loop:
//
//   - client readable: one read; each whole command buffered is decided
//     and sent upstream by the same code as on a goroutine (command and
//     the on* methods: their writes go through loopSend and loopWrite),
//     one at a time (a command's answer is complete before the next one
//     starts, as on the server);
//   - upstream readable: one read; the answer's packets are walked by
//     step, as on a goroutine (rows, max_rows, status flags, the audit),
//     and what goes to the client is written once per read, not once per
//     packet;
//   - a client that does not read: the rest waits for EPOLLOUT and the
//     upstream is not read meanwhile (its socket buffer and the server
//     then hold the rest of the answer, as on a goroutine).
//
// What may block goes to a goroutine, with both sockets handed back to
// the Go poller and every buffered byte and the answer in flight carried
// (leaveLoop): a command that does not fit the read buffer (the buffer
// budget and 16 MB splitting), COM_INIT_DB, COM_FIELD_LIST,
// COM_RESET_CONNECTION and COM_QUIT, a KILL statement, a statement the
// gateway denies (it may open an access request), the end of the
// session, a stop while a command runs (the statement is killed on a side
// connection, as on a goroutine), and anything the upstream sends between
// commands. The goroutine relay serves that one command and moves the
// session back at its next idle point. A decision-cache miss is decided
// on the loop: a novel statement's analysis takes tens of µs, moving the
// sockets back and forth more.
//
// Stops from other goroutines (revocation, expiry, the idle timer,
// RevokeAgent, an agent's KILL, shutdown) reach a session on a loop
// through Post; c.loop, under c.mu, says whether it is on one.

// Relay names how sessions are relayed once set up (Config.Relay).
type Relay string

const (
	// RelayLoop relays plain-TCP sessions on event loops (the default);
	// TLS sessions stay on goroutines.
	RelayLoop Relay = "loop"
	// RelayGoroutine relays every session on a goroutine of its own.
	RelayGoroutine Relay = "goroutine"
)

var (
	// errOnLoop: the session moved to a loop; its goroutine ends, and
	// the loop ends the session.
	errOnLoop = errors.New("session moved to an event loop")
	// errLeaveLoop: a command the loop does not serve, returned before it
	// had any effect; a goroutine serves it.
	errLeaveLoop = errors.New("command handed to a goroutine")
)

// loopState is a session's state on a loop (loop goroutine only).
type loopState struct {
	l        *evloop.Loop
	cfd, ufd int
	ans      *answer // the answer in flight; nil between commands
	woff     int     // bytes of c.wbuf written
	uoff     int     // bytes of c.upBuf written
	// clientEOF: the client's end closed (or failed) while a command
	// ran; its socket is no longer watched.
	clientEOF bool
	waitKill  bool // the answer is in; the KILL QUERY after max_rows is not
	idle      *time.Timer
	lastCmd   time.Time
}

// toLoop moves the session to a loop when the server relays on loops and
// the session can be (errOnLoop), at an idle point of the goroutine relay.
func (c *conn) toLoop() error {
	if c.srv.relay != RelayLoop || c.isTLS || c.upstream.TLS != nil {
		return nil
	}
	if c.offLoop {
		c.offLoop = false
		return nil
	}
	if c.lost != nil || c.urd.buffered() > 0 || len(c.wbuf) > 0 || len(c.upBuf) > 0 {
		return nil
	}
	l, err := evloop.Next()
	if err != nil {
		c.log.Warn("no event loop; the session stays on its goroutine", "err", err)
		return nil
	}
	// Under c.mu: stop either finds the session on the loop or stopped
	// it before (its deadlines then stand on the sockets).
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	cfd, err := evloop.Detach(c.client)
	if err != nil {
		return nil // not a plain socket (ErrNotSocket), left as it was
	}
	ufd, err := evloop.Detach(c.upConn)
	if err != nil {
		// c.client was closed by Detach: take the socket back.
		cl, aerr := evloop.Attach(cfd)
		if aerr != nil {
			return fmt.Errorf("client socket: %w", errors.Join(errClientGone, aerr))
		}
		c.client, c.crd.r = cl, cl
		if !c.idleDeadline.IsZero() {
			_ = cl.SetReadDeadline(c.idleDeadline)
		}
		return nil
	}
	lp := &loopState{l: l, cfd: cfd, ufd: ufd}
	c.loop = l
	l.Post(c.posted(func() { c.loopEnter(lp) }))
	return errOnLoop
}

// posted wraps a function posted to the loop: a panic in it ends this
// session only.
func (c *conn) posted(f func()) func() {
	return func() {
		defer func() {
			if r := recover(); r != nil {
				c.Panicked(r)
			}
		}()
		f()
	}
}

func (c *conn) loopEnter(lp *loopState) {
	c.lp = lp
	lp.lastCmd = time.Now()
	if err := lp.l.Add(lp.cfd, evloop.In, c); err != nil {
		c.leaveLoop(fatalErr(erUnknownError, "HY000", "keyhole: internal error", err))
		return
	}
	if err := lp.l.Add(lp.ufd, evloop.In, c); err != nil {
		c.leaveLoop(fatalErr(erUnknownError, "HY000", "keyhole: internal error", err))
		return
	}
	if idle := c.srv.limits.IdleTimeout; idle > 0 {
		lp.idle = time.AfterFunc(idle, func() { lp.l.Post(c.posted(func() { c.loopIdleCheck(lp) })) })
	}
	c.loopCommands()
	c.loopWatch()
}

// Event implements evloop.Handler.
func (c *conn) Event(fd int, events uint32) {
	lp := c.lp
	if lp == nil {
		return
	}
	switch fd {
	case lp.cfd:
		c.clientEvent(events)
	case lp.ufd:
		c.upstreamEvent(events)
	}
	c.loopWatch()
}

// Panicked implements evloop.Handler: the panic ends this session.
func (c *conn) Panicked(v any) {
	c.log.Error("panic in connection", "panic", v, "stack", string(debug.Stack()))
	if c.lp != nil {
		c.leaveLoop(fatalErr(erUnknownError, "HY000", "keyhole: internal error", fmt.Errorf("panic: %v", v)))
	}
}

// loopWatch registers the events the session waits for now (no system
// call when they are unchanged).
func (c *conn) loopWatch() {
	lp := c.lp
	if lp == nil {
		return
	}
	writing := lp.woff < len(c.wbuf)
	if !lp.clientEOF {
		var ev uint32
		if c.crd.rp > 0 || c.crd.wp < len(c.crd.buf) {
			ev |= evloop.In
		}
		if writing {
			ev |= evloop.Out
		}
		_ = lp.l.Modify(lp.cfd, ev)
	}
	var ev uint32
	if !writing && !lp.waitKill {
		ev |= evloop.In
	}
	if lp.uoff < len(c.upBuf) {
		ev |= evloop.Out
	}
	_ = lp.l.Modify(lp.ufd, ev)
}

func (c *conn) clientEvent(events uint32) {
	lp := c.lp
	if lp.woff < len(c.wbuf) && events&(evloop.Out|evloop.Hup|evloop.Error) != 0 {
		if !c.loopWrite() {
			return
		}
		// The client took what waited: go on with what waited for it.
		if lp.ans != nil {
			c.loopWalk()
		} else {
			c.loopCommands()
		}
		if c.lp == nil {
			return
		}
	}
	if events&(evloop.In|evloop.Hup|evloop.Error) == 0 || lp.clientEOF {
		return
	}
	rd := c.crd
	if rd.rp == rd.wp {
		rd.rp, rd.wp = 0, 0
	}
	if rd.wp == len(rd.buf) {
		if rd.rp == 0 {
			return // full: read again once a command is done (loopWatch)
		}
		rd.wp = copy(rd.buf, rd.buf[rd.rp:rd.wp])
		rd.rp = 0
	}
	k, e := evloop.Read(lp.cfd, rd.buf[rd.wp:])
	switch {
	case e == syscall.EAGAIN:
		return
	case e != 0 || k == 0:
		// The client is gone. Between commands the goroutine relay's next
		// read reports it; during one, its answer is read to the end for
		// the audit first.
		lp.clientEOF = true
		if u, _ := lp.l.Remove(lp.cfd); len(u) > 0 {
			// What the loop's Write had queued (io_uring mode) and the
			// socket did not take goes first.
			c.wbuf, lp.woff = append(u, c.wbuf[lp.woff:]...), 0
		}
		if lp.ans == nil {
			c.loopCommands()
			return
		}
		// The socket is no longer watched, so no event would call
		// loopWrite for what waits for it, and while something waits the
		// upstream is not read (loopWatch): the walk goes on now, over
		// what the upstream sent meanwhile, and its loopWrite either sends
		// what waits or finds the client lost (clientEOF) and drops it.
		c.loopWalk()
		return
	}
	rd.wp += k
	if lp.ans == nil {
		c.loopCommands()
	}
}

// servedOnLoop reports whether the loop serves command cmd itself (see
// the comment at the top).
func servedOnLoop(cmd byte) bool {
	switch cmd {
	case comInitDB, comFieldList, comResetConnection, comQuit:
		return false
	}
	return true
}

// loopCommands runs the whole commands the client buffered, until one
// waits for its answer (the goroutine relay's loop over readCommand and
// command).
func (c *conn) loopCommands() {
	lp, rd := c.lp, c.crd
	for c.lp != nil && lp.ans == nil && lp.woff >= len(c.wbuf) {
		if rd.buffered() < headerLen {
			break
		}
		b := rd.buf[rd.rp:rd.wp]
		n := int(b[0]) | int(b[1])<<8 | int(b[2])<<16
		if b[3] != 0 || n == 0 || headerLen+n > len(rd.buf) || n > c.srv.limits.MaxPacketSize {
			// Out of order, empty or large: the goroutine relay reads it
			// and answers as it does.
			c.leaveLoop(nil)
			return
		}
		if len(b) < headerLen+n {
			break
		}
		if !servedOnLoop(b[headerLen]) {
			c.leaveLoop(nil)
			return
		}
		if err := c.loopIdlePoint(); err != nil {
			c.loopEnd(err)
			return
		}
		start := rd.rp
		p := b[headerLen : headerLen+n]
		rd.rp += headerLen + n
		c.seq = 1
		lp.lastCmd = time.Now()
		err := c.command(c.ctx, p)
		if c.lp == nil {
			return // answered at once, and the session left the loop
		}
		switch {
		case errors.Is(err, errLeaveLoop):
			rd.rp = start
			c.setBusy(false)
			c.leaveLoop(nil)
			return
		case err != nil:
			c.loopEnd(err)
			return
		case lp.ans == nil:
			if err := c.loopIdle(); err != nil {
				c.loopEnd(err)
				return
			}
		}
	}
	if c.lp != nil && lp.ans == nil && lp.clientEOF && lp.woff >= len(c.wbuf) {
		c.leaveLoop(nil)
	}
}

// loopIdlePoint is idlePoint before a command on the loop: a stopped
// session, or a draining one outside a transaction, ends; else the
// session is busy from now on.
func (c *conn) loopIdlePoint() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.endsAtIdleLocked(); err != nil {
		return err
	}
	c.busy = true
	return nil
}

// loopIdle ends a command on the loop: the session is idle again, and
// ends now if it was stopped or is draining outside a transaction.
func (c *conn) loopIdle() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.busy = false
	return c.endsAtIdleLocked()
}

// await waits for the answer to the command just sent: on a goroutine it
// is walked now; on the loop as it arrives (loopWalk).
func (c *conn) await(a *answer) error {
	lp := c.lp
	if lp == nil {
		return c.relayAnswer(a)
	}
	lp.ans = a
	if c.urd.buffered() > 0 {
		c.loopWalk()
	}
	return nil
}

func (c *conn) upstreamEvent(events uint32) {
	lp := c.lp
	if lp.uoff < len(c.upBuf) && events&(evloop.Out|evloop.Hup|evloop.Error) != 0 {
		if err := c.loopSendRest(); err != nil {
			c.loopFail(err)
			return
		}
	}
	if events&(evloop.In|evloop.Hup|evloop.Error) == 0 {
		return
	}
	if lp.ans == nil || lp.waitKill {
		// Bytes (or the end) the server sent with no command in flight:
		// the goroutine relay takes them as it always did, as the start
		// of the next answer.
		if lp.waitKill && events&(evloop.Hup|evloop.Error) == 0 {
			return
		}
		c.leaveLoop(nil)
		return
	}
	if lp.woff < len(c.wbuf) && events&(evloop.Hup|evloop.Error) == 0 {
		return // the client is not reading: the rest stays upstream
	}
	rd, a := c.urd, lp.ans
	need := 1
	if !a.inPacket {
		need = headerLen
		if rd.buffered() >= headerLen {
			need += packetWant(rd.buf[rd.rp:])
		}
	}
	if rd.rp == rd.wp {
		rd.rp, rd.wp = 0, 0
		if len(rd.buf) > maxKeptReadBuf {
			rd.buf = make([]byte, readBufSize)
		}
	}
	rd.room(max(need, rd.buffered()+1))
	k, e := evloop.Read(lp.ufd, rd.buf[rd.wp:])
	switch {
	case e == syscall.EAGAIN:
		return
	case e != 0:
		c.loopFail(c.upstreamReadError(os.NewSyscallError("read", e)))
		return
	case k == 0:
		c.loopFail(c.upstreamReadError(io.ErrUnexpectedEOF))
		return
	}
	rd.wp += k
	c.loopWalk()
}

// packetWant is how much of a packet's payload (header at b) the walk
// needs before step: all of it, unless it is larger than maxKeptReadBuf
// (as upNext).
func packetWant(b []byte) int {
	n := int(b[0]) | int(b[1])<<8 | int(b[2])<<16
	if headerLen+n > maxKeptReadBuf {
		return min(n, peekLen)
	}
	return n
}

// loopWalk walks the answer's packets buffered from the upstream, then
// writes what goes to the client: once per read.
func (c *conn) loopWalk() {
	lp, rd := c.lp, c.urd
	a := lp.ans
	for {
		if len(c.wbuf) >= flushAt && !c.loopWrite() {
			return // on with the rest once the client reads
		}
		if a.inPacket {
			k := min(a.rest, rd.buffered())
			if a.keep {
				c.wbuf = append(c.wbuf, rd.buf[rd.rp:rd.rp+k]...)
			}
			rd.rp += k
			a.rest -= k
			if a.rest > 0 {
				break
			}
			a.inPacket = false
			if a.last {
				a.done = true
				c.loopAnswered(nil)
				return
			}
			continue
		}
		if rd.buffered() < headerLen {
			break
		}
		b := rd.buf[rd.rp:rd.wp]
		n := int(b[0]) | int(b[1])<<8 | int(b[2])<<16
		want := packetWant(b)
		if len(b) < headerLen+want {
			break
		}
		keep, last, err := c.step(a, n, b[headerLen:headerLen+want])
		if err != nil {
			c.loopFail(err)
			return
		}
		if keep && a.errPkt {
			a.errPkt = false
			keep = !c.relayScrubbed(n, b[headerLen:headerLen+want])
		}
		if keep {
			c.wbuf = append(c.wbuf, byte(n), byte(n>>8), byte(n>>16), c.seq)
			c.seq++
		}
		rd.rp += headerLen
		a.inPacket, a.rest, a.keep, a.last = true, n, keep, last
	}
	c.loopWrite()
}

// loopFail ends the answer in flight with err (the session ends).
func (c *conn) loopFail(err error) {
	if c.lp.ans == nil {
		c.loopEnd(err)
		return
	}
	c.loopAnswered(err)
}

// loopAnswered completes the answer in flight (err: its walk failed).
func (c *conn) loopAnswered(err error) {
	lp := c.lp
	a := lp.ans
	if err == nil && a.killed != nil {
		select {
		case kerr := <-a.killed:
			if kerr != nil {
				c.log.Warn("kill upstream statement after max_rows", "err", kerr)
			}
			a.killed = nil
		default:
			lp.waitKill = true // loopKillDone
			return
		}
	}
	lp.ans, lp.waitKill = nil, false
	if err := c.answered(a, err); err != nil {
		c.loopEnd(err)
		return
	}
	c.crd.release()
	if err := c.loopIdle(); err != nil {
		c.loopEnd(err)
		return
	}
	c.loopCommands()
}

// loopKillDone is posted when the KILL QUERY after max_rows is done.
func (c *conn) loopKillDone() {
	if c.lp == nil || !c.lp.waitKill {
		return
	}
	c.loopAnswered(nil)
	c.loopWatch()
}

// loopStop is stop's work for a session on a loop: between commands it
// ends now; during one a goroutine takes the session, shuts the
// upstream's write side, kills the statement and reads its answer for
// the audit (stopStatement).
func (c *conn) loopStop() {
	if c.lp == nil {
		return
	}
	if c.lp.ans == nil {
		c.loopEnd(c.stopError())
		return
	}
	c.leaveLoop(nil)
}

// loopAbandon gives up the answer of a client that left when its
// statement could not be killed (clientLost).
func (c *conn) loopAbandon() {
	if c.lp == nil || c.lp.ans == nil {
		return
	}
	c.loopAnswered(c.upstreamReadError(net.ErrClosed))
	c.loopWatch()
}

// loopIdleCheck runs when the idle timer fires: a session idle for
// IdleTimeout (less idleSlack) ends with 4031; otherwise the timer is set
// for the rest.
func (c *conn) loopIdleCheck(lp *loopState) {
	if c.lp != lp {
		return
	}
	idle := c.srv.limits.IdleTimeout
	if lp.ans != nil {
		lp.idle.Reset(idle)
		return
	}
	since := time.Since(lp.lastCmd)
	if since >= idle-idleSlack(idle) {
		c.loopEnd(fmt.Errorf("client read: %w", errIdle))
		return
	}
	lp.idle.Reset(idle - since)
}

// loopEnd ends the session with err, on a goroutine (end's writes and
// audit may block).
func (c *conn) loopEnd(err error) {
	if c.lp.ans == nil {
		// Between commands, as the answer to the client's next one.
		c.seq = 1
	}
	if err == nil {
		err = errClientGone
	}
	c.leaveLoop(err)
}

// loopSend sends a client command upstream (request and forward on the
// loop), after what is still unsent.
func (c *conn) loopSend(p []byte) error {
	lp := c.lp
	if lp.uoff >= len(c.upBuf) {
		c.upBuf, lp.uoff = c.upBuf[:0], 0
	}
	c.upBuf, _ = appendPacket(c.upBuf, 0, p)
	return c.loopSendRest()
}

// loopSendRest writes what the upstream has not taken; the rest waits for
// EPOLLOUT (loopWatch).
func (c *conn) loopSendRest() error {
	lp := c.lp
	for lp.uoff < len(c.upBuf) {
		k, e := lp.l.Write(lp.ufd, c.upBuf[lp.uoff:])
		if e == syscall.EAGAIN {
			return nil
		}
		if e != 0 {
			return c.upstreamWriteError(os.NewSyscallError("write", e))
		}
		lp.uoff += k
	}
	c.upBuf, lp.uoff = c.upBuf[:0], 0
	if cap(c.upBuf) > maxKeptWriteBuf {
		c.upBuf = nil
	}
	return nil
}

// loopWrite writes what the client has not taken (flushClient on the
// loop) and reports whether all of it is out; the rest waits for
// EPOLLOUT. A failed write is clientLost's, as on a goroutine.
func (c *conn) loopWrite() bool {
	lp := c.lp
	for lp.woff < len(c.wbuf) && c.lost == nil {
		k, e := lp.l.Write(lp.cfd, c.wbuf[lp.woff:])
		if e == syscall.EAGAIN && lp.clientEOF {
			// A client that closed its end and does not read: its
			// socket is no longer watched.
			c.clientLost(io.ErrClosedPipe)
			break
		}
		if e == syscall.EAGAIN {
			return false
		}
		if e != 0 {
			c.clientLost(os.NewSyscallError("write", e))
			break
		}
		lp.woff += k
	}
	c.wbuf, lp.woff = c.wbuf[:0], 0
	if cap(c.wbuf) > maxKeptWriteBuf {
		c.wbuf = nil
	}
	return true
}

// leaveLoop hands the session to a goroutine: its sockets go back to the
// Go poller, with every byte buffered either way and the answer in
// flight; the goroutine ends the session with endErr, or relays on.
func (c *conn) leaveLoop(endErr error) {
	lp := c.lp
	c.lp = nil
	// What the loop's Write had taken and the sockets did not goes first.
	if !lp.clientEOF {
		if u, _ := lp.l.Remove(lp.cfd); len(u) > 0 {
			c.wbuf, lp.woff = append(u, c.wbuf[lp.woff:]...), 0
		}
	}
	if u, _ := lp.l.Remove(lp.ufd); len(u) > 0 {
		c.upBuf, lp.uoff = append(u, c.upBuf[lp.uoff:]...), 0
	}
	if lp.idle != nil {
		lp.idle.Stop()
	}
	c.wbuf = c.wbuf[:copy(c.wbuf, c.wbuf[lp.woff:])]
	c.upBuf = c.upBuf[:copy(c.upBuf, c.upBuf[lp.uoff:])]
	cl, cerr := evloop.Attach(lp.cfd)
	up, uerr := evloop.Attach(lp.ufd)
	c.mu.Lock()
	c.loop = nil
	if cerr == nil {
		c.client = cl
		c.crd.r = cl
	}
	if uerr == nil {
		c.upConn = up
		c.urd.r = up
		c.upRaw = nil
		if tc, ok := up.(*net.TCPConn); ok {
			c.upRaw, _ = tc.SyscallConn()
		}
	}
	c.idleDeadline = time.Time{}
	if c.stopped {
		c.stopSockets()
	}
	c.mu.Unlock()
	if endErr == nil && (cerr != nil || uerr != nil) {
		endErr = fatalErr(erUnknownError, "HY000", "keyhole: internal error", errors.Join(cerr, uerr))
	}
	go c.resume(lp.ans, endErr)
}

// resume relays on a goroutine a session that left a loop: it ends it
// with endErr, or completes the answer in flight and serves commands
// (the first one before the session may go back to a loop).
func (c *conn) resume(a *answer, endErr error) {
	err := c.protect(func() error {
		if endErr != nil {
			return endErr
		}
		if err := c.flushUpstream(); err != nil {
			err = c.upstreamWriteError(err)
			if a != nil {
				return c.answered(a, err)
			}
			return err
		}
		if err := c.flushClientErr(); err != nil {
			return err
		}
		if a != nil {
			err := c.relayAnswer(a)
			c.crd.release()
			c.setBusy(false)
			if err != nil {
				return err
			}
		} else {
			c.offLoop = true
		}
		return c.relay(c.ctx)
	})
	if errors.Is(err, errOnLoop) {
		return
	}
	c.end(err)
}
