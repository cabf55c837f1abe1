package pgproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/keyholedb/keyhole/internal/evloop"
)

// The loop relay. A session with no TLS on either side (and Limits.Relay
// "loop") spends its steady state on one of the process's shared event
// loops (internal/evloop) instead of a goroutine: at a quiet point of the
// goroutine relay (everything answered, nothing buffered for either peer)
// its two sockets leave the Go poller and the goroutine ends, so an idle
// session is this value, the conn and its bookkeeping, with no stack and
// no buffer. On the loop:
//
//   - client readable: one read(2); every whole message is handled by
//     clientMessage, as on the goroutine relay (decisions, cache misses
//     included, refusals, the request queue, audit of denials); the batch
//     goes upstream in one write.
//   - upstream readable: one read(2); every whole message is handled by
//     answer (row caps, errors, audit of what ran); what the client gets
//     goes in one write once the read's messages are handled.
//   - a peer that cannot take a write (EAGAIN): the rest waits for EPOLLOUT,
//     and the other peer is not read meanwhile, so a session holds no more
//     than the goroutine relay does.
//
// Everything else hands the session back to the goroutine relay, which
// takes the sockets and the buffered bytes and carries on where the loop
// stopped (relay): COPY FROM STDIN, a client message larger than the base
// buffer (it reserves memory, and may wait), a name whose creation is not
// yet settled (settle waits), a session that ends (its error, the client's
// goodbye and the audit of what was in flight are the goroutine relay's),
// and stop from another goroutine (revocation, expiry, the idle timer,
// Shutdown), which posts to the loop. A max_rows cut's cancel is dialled
// on a goroutine while the loop reads neither peer of the session. The
// goroutine relay moves the session back at its next quiet point.
//
// Unlike the goroutine relay the loop watches the upstream while nothing
// is owed, so a message the server sends on its own (a NOTIFY, the FATAL
// of pg_terminate_backend or a server shutdown) reaches the client when
// it comes, as from Postgres directly.
//
// What a loop does not avoid: a decision-cache miss is parsed and decided
// on the loop (tens of µs, less than moving the session to a goroutine
// and back); and back-pressure that blocks (an audit sink that stalls,
// the approvals service's bound on pending requests) stalls the loop's
// sessions, as it stalls every session's next statement on the goroutine
// relay.

// loopSess is one stay of a session on a loop. Its fields, and the
// conn's relay state while it stays, belong to the loop's goroutine.
type loopSess struct {
	c        *conn
	l        *evloop.Loop
	bufs     *loopBufs // l's
	cfd, ufd int
	added    int // descriptors registered (cfd, then ufd)
	// usent is how much of c.upBuf is written upstream.
	usent int
	// gone: the session left the loop (leave).
	gone bool
	// stopReq: stop was called; the loop leaves at its next event.
	stopReq atomic.Bool
	// ahead holds a read the loop did for the client side [0] or the
	// upstream side [1] (evloop.ReadAheader): that side's next read.
	ahead [2]aheadRead
}

// aheadRead is the result of a read-ahead (its bytes are in the side's
// buffer already).
type aheadRead struct {
	n     int
	errno syscall.Errno
	ok    bool
}

// ReadBuf implements evloop.ReadAheader: a side's read goes where its own
// would (nowhere when it has no room: its own read reports that).
func (s *loopSess) ReadBuf(fd int) []byte {
	if s.gone {
		return nil
	}
	m, grow := s.c.clientRd, false
	if fd == s.ufd {
		m, grow = s.c.upRd, true
	}
	to, errno := m.readTarget(grow)
	if errno != 0 {
		return nil
	}
	return to
}

// ReadDone implements evloop.ReadAheader.
func (s *loopSess) ReadDone(fd int, n int, errno syscall.Errno) {
	m, side := s.c.clientRd, 0
	if fd == s.ufd {
		m, side = s.c.upRd, 1
	}
	m.readDone(n)
	s.ahead[side] = aheadRead{n: n, errno: errno, ok: true}
}

// read is a side's next read: the loop's read-ahead when there is one.
func (s *loopSess) read(side int, m *msgReader, fd int, grow bool) (int, syscall.Errno) {
	if a := s.ahead[side]; a.ok {
		s.ahead[side] = aheadRead{}
		return a.n, a.errno
	}
	return m.readRaw(fd, grow)
}

var (
	// errOnLoop ends readClient: the session moved to a loop.
	errOnLoop = errors.New("pgproxy: session moved to an event loop")
	// errLeaveLoop hands the session to the goroutine relay without
	// ending it.
	errLeaveLoop = errors.New("pgproxy: the goroutine relay takes over")
)

// toLoop moves the session to a loop at a quiet point of the goroutine
// relay (readClient, about to wait for the client). It reports false, and
// changes nothing, unless nothing is owed or buffered for either peer.
func (c *conn) toLoop() bool {
	if c.cancelling != nil || c.staged.len() > 0 || len(c.upBuf) > 0 {
		return false
	}
	if n := c.clientRd.headLen(); n < 0 || n > readBufSize {
		return false
	}
	l, err := evloop.Next()
	if err != nil {
		c.loopable = false
		c.log.Warn("no event loop; relaying on goroutines", "err", err)
		return false
	}
	c.mu.Lock()
	moved, err := c.toLoopLocked(l)
	c.mu.Unlock()
	if err != nil {
		c.loopable = false
		c.log.Warn("the session stays on the goroutine relay", "err", err)
	}
	if moved {
		c.log.Debug("relay: on an event loop")
	}
	return moved
}

// toLoopLocked is toLoop's part under mu: stop, Shutdown and the upstream
// goroutine's end all take mu, and none can come between the checks and
// the hand-over. An error means the session cannot move to a loop.
func (c *conn) toLoopLocked(l *evloop.Loop) (bool, error) {
	// (The upstream side is this goroutine's once no upstream goroutine
	// runs: it clears upReader under mu.)
	if c.stopped || c.socksClosed || c.upReader || c.saidBye || c.inflight.Load() != 0 ||
		c.copyIn.Load() || c.clientDead.Load() || len(c.wbuf) > 0 || c.upRd.buffered() > 0 {
		return false, nil
	}
	cfd, err := evloop.Detach(c.client)
	if err != nil {
		return false, fmt.Errorf("client socket: %w", err)
	}
	ufd, err := evloop.Detach(c.upConn)
	if err != nil {
		cc, aerr := evloop.Attach(cfd)
		if aerr != nil {
			// The client's socket is lost (closed): its next read fails
			// and ends the session.
			evloop.Close(cfd)
			return false, errors.Join(fmt.Errorf("upstream socket: %w", err), fmt.Errorf("client socket lost: %w", aerr))
		}
		c.client = cc
		c.clientRd.setReader(cc)
		return false, fmt.Errorf("upstream socket: %w", err)
	}
	if c.clientRd.buffered() == 0 && c.clientRd.buf != nil {
		c.clientRd.shrink()
	}
	bufs, _ := loopBufsOf.Load(l)
	if bufs == nil {
		bufs, _ = loopBufsOf.LoadOrStore(l, &loopBufs{})
	}
	s := &loopSess{c: c, l: l, bufs: bufs.(*loopBufs), cfd: cfd, ufd: ufd}
	c.clientRd.bufs, c.upRd.bufs = s.bufs, s.bufs
	c.ev = s
	// Posted under mu: a stop that follows posts after this.
	l.Post(s.start)
	return true, nil
}

// start registers the session's sockets (on the loop).
func (s *loopSess) start() {
	for _, fd := range []int{s.cfd, s.ufd} {
		if err := s.l.Add(fd, evloop.In, s); err != nil {
			s.leave(fatal(codeInternalError, "internal error", err))
			return
		}
		s.added++
	}
	// Bytes of a message the client had begun: the rest comes with the
	// next event.
	s.then(nil)
}

// stopped is what stop posts: leave with the session's error.
func (s *loopSess) stopped() {
	if !s.gone {
		s.leave(s.c.stopError())
	}
}

// Event implements evloop.Handler.
func (s *loopSess) Event(fd int, events uint32) {
	if s.gone {
		return
	}
	s.then(s.event(fd, events))
}

// Panicked implements evloop.Handler: the session ends, on a goroutine,
// as after a panic in the goroutine relay.
func (s *loopSess) Panicked(v any) {
	s.leave(s.c.panicked("panic in loop relay", v))
}

// then finishes a step of the loop: leave on err (errLeaveLoop: for the
// goroutine relay to carry on) or a stop, else watch for what comes next.
func (s *loopSess) then(err error) {
	if s.gone {
		return
	}
	if err == nil && s.stopReq.Load() {
		err = s.c.stopError()
	}
	if err == nil {
		err = s.arm()
	}
	if err != nil {
		s.leave(err)
	}
}

func (s *loopSess) event(fd int, events uint32) error {
	c := s.c
	client := fd == s.cfd
	if events&evloop.Out != 0 {
		if client {
			c.flushToClient()
			if err := s.clientGone(); err != nil {
				return err
			}
		} else if err := s.flushUp(); err != nil {
			return err
		}
	}
	if events&(evloop.In|evloop.Hup|evloop.Error) != 0 {
		var err error
		switch {
		case s.wants(client)&evloop.In != 0 && client:
			err = s.readClient()
		case s.wants(client)&evloop.In != 0:
			err = s.readUpstream()
		case events&(evloop.Hup|evloop.Error) != 0:
			// A hang-up or error reported while this side is not read
			// (they are always reported, level-triggered): the goroutine
			// relay reads it when its turn comes.
			err = errLeaveLoop
		}
		// (Else readable as of before an earlier event of this batch
		// changed what is watched: read when watched again.)
		if err != nil {
			return err
		}
	}
	return s.pump()
}

// pump handles what is buffered from either peer.
func (s *loopSess) pump() error {
	if err := s.answers(); err != nil {
		return err
	}
	return s.requests()
}

// wants returns the events to watch a side for: a peer with bytes waiting
// to be written is watched for Out, and while one is, the other side is
// not read. While a max_rows cancel is on its way neither side is read,
// as the goroutine relay reads neither while it waits for the cancel: the
// server, whose rows past the cut would only be discarded, waits to write
// them instead of keeping the loop busy.
func (s *loopSess) wants(client bool) uint32 {
	c := s.c
	// (Answers held for the rest of a message, unflushed, are not
	// waiting for the client.)
	toClient := c.wsent < len(c.wbuf) && c.up.unflushed == 0
	toUp := s.usent < len(c.upBuf)
	var ev uint32
	if client {
		if !toUp && c.cancelling == nil && c.inflight.Load() < maxOwed {
			ev |= evloop.In
		}
		if toClient {
			ev |= evloop.Out
		}
	} else {
		if !toClient && c.cancelling == nil {
			ev |= evloop.In
		}
		if toUp {
			ev |= evloop.Out
		}
	}
	return ev
}

// maxOwed bounds the requests a session on a loop has forwarded and not
// seen answered before it stops reading the client: each is a request of
// some 230 bytes for a message that may be 5 (a Sync), and a client that
// pipelines without reading answers would otherwise have keyhole queue
// requests for all that the sockets' buffers toward and from the server
// hold (hundreds of MB). A client that writes more than this many
// messages before reading any answer waits, as it would once the
// server's own buffers filled.
const maxOwed = 1 << 16

// arm registers what wants says (no system call when unchanged).
func (s *loopSess) arm() error {
	if err := s.l.Modify(s.cfd, s.wants(true)); err != nil {
		return err
	}
	return s.l.Modify(s.ufd, s.wants(false))
}

func (s *loopSess) readClient() error {
	c := s.c
	n, e := s.read(0, c.clientRd, s.cfd, false)
	switch {
	case e == syscall.EAGAIN:
		return nil
	case e == syscall.ENOBUFS:
		return errLeaveLoop
	case e != 0:
		return c.clientReadError(&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", e)})
	case n == 0:
		return c.clientReadError(io.EOF)
	}
	return nil
}

func (s *loopSess) readUpstream() error {
	c := s.c
	n, e := s.read(1, c.upRd, s.ufd, true)
	switch {
	case e == syscall.EAGAIN:
		return nil
	case e != 0:
		return c.upstreamReadError(&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", e)})
	case n == 0:
		if c.upRd.buffered() > 0 {
			return c.upstreamReadError(io.ErrUnexpectedEOF)
		}
		return c.upstreamReadError(io.EOF)
	}
	return nil
}

// answers handles the upstream's whole messages (readUpstream's loop
// body) and writes the client what they give it.
func (s *loopSess) answers() error {
	c := s.c
	for c.upRd.complete() {
		typ, raw, err := c.upRd.next() // whole: no read
		if err == nil && !upstreamTypes[typ] {
			err = fmt.Errorf("unknown message type: %c", typ)
		}
		if err != nil {
			return c.upstreamReadError(err)
		}
		if err := c.answer(typ, raw); err != nil {
			return err
		}
		if c.up.unflushed >= flushAt {
			c.flushToClient()
		}
	}
	if c.upRd.headLen() < 0 {
		_, _, err := c.upRd.next() // its error, without a read
		return c.upstreamReadError(err)
	}
	// As on the goroutine relay: the rest of a message the server is
	// sending comes at once, and its answer goes in the same write.
	if c.up.unflushed > 0 && c.upRd.buffered() == 0 {
		c.flushToClient()
	}
	if err := s.clientGone(); err != nil {
		return err
	}
	if c.upRd.buffered() == 0 && c.upRd.buf != nil {
		c.upRd.shrink()
	}
	if c.copyIn.Load() {
		// The server waits for the client's COPY data: the goroutine
		// relay's.
		return errLeaveLoop
	}
	return nil
}

// clientGone ends the loop's stay once a write to the client failed: the
// goroutine relay says goodbye upstream and reads the answers still owed
// for the audit, as it does when its own write fails.
func (s *loopSess) clientGone() error {
	if s.c.clientDead.Load() {
		return fmt.Errorf("client write failed: %w", errClientGone)
	}
	return nil
}

// requests handles the client's whole messages (readClient's loop body)
// and writes upstream what they forward, unless a write upstream is still
// waiting or a max_rows cancel is on its way.
func (s *loopSess) requests() error {
	c := s.c
	for c.cancelling == nil && s.usent == len(c.upBuf) {
		if !c.clientRd.complete() {
			if n := c.clientRd.headLen(); n < 0 || n > readBufSize ||
				c.clientRd.maxBody > 0 && n-5 > c.clientRd.maxBody {
				// The goroutine relay reports it, or reserves memory
				// for it.
				return errLeaveLoop
			}
			break
		}
		for c.clientRd.complete() && len(c.upBuf) < flushAt {
			if n := c.clientRd.headLen(); n > readBufSize {
				return errLeaveLoop
			}
			rp := c.clientRd.rp
			typ, raw, err := c.clientRd.next() // whole and small: no read, no reservation
			if err != nil {
				return c.clientReadError(err)
			}
			if err := c.clientMessage(typ, raw); err != nil {
				if errors.Is(err, errLeaveLoop) {
					// Handled again, from the start, by the goroutine
					// relay.
					c.clientRd.rp = rp
				}
				return err
			}
		}
		if err := s.flushUp(); err != nil {
			return err
		}
	}
	if c.clientRd.buffered() == 0 && c.clientRd.buf != nil {
		c.clientRd.shrink()
	}
	return nil
}

// flushUp hands the staged requests to the upstream side and writes what
// was forwarded; what the upstream cannot take yet waits for Out.
func (s *loopSess) flushUp() error {
	c := s.c
	if n := c.staged.len(); n > 0 {
		// The upstream side is this goroutine too: the requests go
		// straight to its queue, behind those it has not taken yet.
		if c.sent.len() > 0 {
			c.sent.moveTo(&c.up.q)
		}
		c.staged.moveTo(&c.up.q)
		c.inflight.Add(int64(n))
	}
	if s.usent == len(c.upBuf) {
		return nil
	}
	n, e := s.l.Write(s.ufd, c.upBuf[s.usent:])
	switch {
	case e == syscall.EAGAIN:
		return nil
	case e != 0:
		return c.upWriteError(&net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", e)})
	}
	s.usent += n
	if s.usent == len(c.upBuf) {
		s.bufs.put(c.upBuf)
		c.upBuf, s.usent = nil, 0
	}
	return nil
}

// writeClient writes wbuf[wsent:] for flushClient: done once all is
// written (the client's write buffer then goes back, as an idle session
// keeps none).
func (s *loopSess) writeClient() (done bool, err error) {
	c := s.c
	n, e := s.l.Write(s.cfd, c.wbuf[c.wsent:])
	switch {
	case e == syscall.EAGAIN:
		return false, nil
	case e != 0:
		return true, &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", e)}
	}
	c.wsent += n
	if c.wsent < len(c.wbuf) {
		return false, nil
	}
	s.bufs.put(c.wbuf)
	c.wbuf = nil
	return true, nil
}

// cancelLater cancels the upstream statement after a max_rows cut without
// blocking the loop: the dial runs on a goroutine, and the client is not
// read until it is done (nor by the goroutine relay, should the session
// move there meanwhile).
func (s *loopSess) cancelLater() {
	c := s.c
	done := make(chan struct{})
	c.cancelling = done
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := c.cancelUpstream(ctx); err != nil {
			c.log.Warn("cancel upstream after max_rows", "err", err)
		}
		cancel()
		close(done)
		s.l.Post(func() {
			if s.gone {
				return
			}
			c.cancelling = nil
			s.then(s.pump())
		})
	}()
}

// leave hands the session to the goroutine relay: the sockets go back to
// the Go poller with what is buffered for and from each peer, and a new
// goroutine carries on (relay), or ends the session with err.
func (s *loopSess) leave(err error) {
	if s.gone {
		return
	}
	s.gone = true
	c := s.c
	fds := []int{s.cfd, s.ufd}
	var unsent [2][]byte // what the loop took for each peer and could not send
	for i, fd := range fds[:s.added] {
		unsent[i], _ = s.l.Remove(fd)
	}
	// What a peer has not taken yet moves to the front of its buffer,
	// where the goroutine relay writes from: first what the loop's Write
	// had taken.
	if len(unsent[0]) > 0 {
		c.wbuf, c.wsent = append(unsent[0], c.wbuf[c.wsent:]...), 0
	}
	if len(unsent[1]) > 0 {
		c.upBuf, s.usent = append(unsent[1], c.upBuf[s.usent:]...), 0
	}
	if s.usent > 0 {
		c.upBuf = c.upBuf[:copy(c.upBuf, c.upBuf[s.usent:])]
		s.usent = 0
	}
	if c.wsent > 0 {
		c.wbuf = c.wbuf[:copy(c.wbuf, c.wbuf[c.wsent:])]
		c.wsent = 0
	}
	// A session that ends because its client left says nothing more to
	// it: the client's socket is closed here instead of going back to the
	// Go poller (an Attach is a dup, fcntl, epoll_ctl and close, paid by
	// every session that ends on a loop), and c.client stays the closed
	// net.Conn that Detach left, as below.
	var cc net.Conn
	var cerr error
	clientGone := errors.Is(err, errClientGone)
	if clientGone {
		evloop.Close(s.cfd)
	} else {
		cc, cerr = evloop.Attach(s.cfd)
	}
	uc, uerr := evloop.Attach(s.ufd)
	if cerr != nil {
		evloop.Close(s.cfd)
	}
	if uerr != nil {
		evloop.Close(s.ufd)
	}
	c.clientRd.bufs, c.upRd.bufs = nil, nil
	c.mu.Lock()
	c.ev = nil
	// (A socket that could not be taken back stays the closed net.Conn
	// it was: using it fails, which ends the session.)
	if cerr == nil && !clientGone {
		c.client = cc
	}
	if uerr == nil {
		c.upConn = uc
	}
	switch {
	case c.socksClosed:
		_ = c.client.Close()
		_ = c.upConn.Close()
	case c.stopped:
		c.stopSocketsLocked()
	}
	c.mu.Unlock()
	c.clientRd.setReader(c.client)
	c.upRd.setReader(c.upConn)
	if err == nil && (cerr != nil || uerr != nil) {
		err = fatal(codeInternalError, "internal error", errors.Join(cerr, uerr))
	}
	if errors.Is(err, errLeaveLoop) {
		err = nil
	}
	if c.log.Enabled(context.Background(), slog.LevelDebug) {
		c.log.Debug("relay: back on a goroutine", "err", err)
	}
	go func() {
		if err != nil {
			// The session ends on this goroutine (the audit, the
			// upstream session's reset for reuse): its stack grows at
			// once.
			growStack()
		}
		c.relay(err)
	}()
}
