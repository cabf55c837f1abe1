package pgproxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/keyholedb/keyhole/internal/evloop"
)

// msgReader reads whole protocol messages (type byte, int32 length, body)
// from a socket into one reused buffer, so the relay can inspect the few
// messages it must and pass every message on as the bytes it received.
//
// A body is read incrementally: the buffer grows as bytes arrive, so a
// length announced but never sent costs nothing. A client reader also
// reserves every message larger than its base buffer from the server's
// memory budget before reading it, and returns the reservation when the
// buffer shrinks back.
//
// On a plain socket (raw is set) the reader reads with read(2) itself and
// gives its buffer back to readBufs whenever it is drained and the socket
// has nothing more: an idle session holds no read buffer.
type msgReader struct {
	r   io.Reader
	raw syscall.RawConn // r's socket, when it is one; nil for TLS
	// rawRead is m.readFD, bound once so that a read allocates nothing;
	// rk and rerr are its results.
	rawRead func(fd uintptr) bool
	rk      int
	rerr    error
	buf     []byte // nil while released
	// bufs is the loop's buffer cache while a loop reads the socket.
	bufs    *loopBufs
	rp, wp  int // unread bytes are buf[rp:wp]
	maxBody int // 0 = no limit

	// pre is a request for the peer that the next read writes (to preW,
	// the same socket) before it reads, and preErr the write's error; see
	// writeBeforeRead.
	pre    []byte
	preW   io.Writer
	preErr error

	// Client readers only (nil / zero for the upstream).
	budget   *memBudget
	reserved int64 // bytes of budget held: what buf may hold past readBufSize
	wait     time.Duration
	done     <-chan struct{} // ends a wait for budget (the connection stopped)
	// active is stamped with at (the idle timeout's measure of client
	// activity).
	active *atomic.Int64
	// reads counts the reads that returned bytes.
	reads uint64
	// at is when the last read that returned bytes returned, on monoNow's
	// scale: the messages it completed are taken up then (takenUp). One
	// clock read per read serves the idle stamp, the agent's expiry check
	// and the start and end of the statements it carries.
	at int64
	// wall: each read takes the full time.Now, kept in wallAt (the
	// upstream's reader: its answers' audit events carry their time).
	wall   bool
	wallAt time.Time
	// reserving is called before a message takes budget (wait: it has
	// to wait for it).
	reserving func(bytes int64, wait bool)
}

const (
	readBufSize = 8 << 10
	// maxKeptReadBuf bounds a buffer kept once drained; a larger one,
	// grown for one large message, is dropped and its budget returned.
	// COPY FROM STDIN data (pgx sends 64 KiB chunks) stays below it.
	maxKeptReadBuf = 128 << 10
)

func newMsgReader(r io.Reader, maxBody int) *msgReader {
	m := &msgReader{maxBody: maxBody}
	m.setReader(r)
	return m
}

// newUpstreamReader is the reader of an upstream session: no size limit
// (the server is trusted), and each read's full time kept (answeredAt).
func newUpstreamReader(r io.Reader) *msgReader {
	m := newMsgReader(r, 0)
	m.wall = true
	return m
}

// setReader makes the reader read r from now on (a socket a loop handed
// back), keeping what is buffered.
func (m *msgReader) setReader(r io.Reader) {
	m.r, m.raw, m.rawRead = r, nil, nil
	if sc, ok := r.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			m.raw, m.rawRead = raw, m.readFD
		}
	}
}

// readBufs keeps a few base-size buffers (read buffers, and the relay's
// write buffers) for the next session that needs one. It is bounded, so
// that buffers given back by sessions going idle return to the garbage
// collector instead of staying in a pool.
var readBufs = bufCache{max: 32}

type bufCache struct {
	mu   sync.Mutex
	free [][]byte
	max  int
}

// get returns a buffer of length readBufSize.
func (p *bufCache) get() []byte {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return b
	}
	p.mu.Unlock()
	return make([]byte, readBufSize)
}

// put takes b back unless it is not a base-size buffer or enough are kept.
// The caller no longer refers to b.
func (p *bufCache) put(b []byte) {
	if cap(b) != readBufSize {
		return
	}
	p.mu.Lock()
	if len(p.free) < p.max {
		p.free = append(p.free, b[:readBufSize])
	}
	p.mu.Unlock()
}

// loopBufs is a loop's own cache of base-size buffers, used only on the
// loop's goroutine, so without readBufs' lock: a session on a loop takes
// and gives back a buffer per peer and direction on every round trip (an
// idle session keeps none), and the most recently given back, still in
// the CPU's cache, is the next taken. A nil *loopBufs is readBufs.
type loopBufs struct {
	free [][]byte
}

// loopBufsMax is what a loop's cache keeps: a round trip of one session
// holds at most four buffers at once (both peers' reads and writes).
const loopBufsMax = 8

// loopBufsOf maps each *evloop.Loop to its *loopBufs.
var loopBufsOf sync.Map

func (s *loopBufs) get() []byte {
	if s == nil {
		return readBufs.get()
	}
	if n := len(s.free); n > 0 {
		b := s.free[n-1]
		s.free[n-1] = nil
		s.free = s.free[:n-1]
		return b
	}
	return readBufs.get()
}

// put takes b back, as bufCache.put does.
func (s *loopBufs) put(b []byte) {
	if s == nil || cap(b) != readBufSize {
		readBufs.put(b)
		return
	}
	if len(s.free) < loopBufsMax {
		s.free = append(s.free, b[:readBufSize])
		return
	}
	readBufs.put(b)
}

// buffered reports how many received bytes are not yet returned.
func (m *msgReader) buffered() int { return m.wp - m.rp }

// complete reports whether a whole message is buffered, so next will not
// block.
func (m *msgReader) complete() bool {
	n := m.wp - m.rp
	if n < 5 {
		return false
	}
	l := int(int32(binary.BigEndian.Uint32(m.buf[m.rp+1:])))
	return l >= 4 && n >= 1+l
}

// headLen returns the size, header included, of the message the buffer
// starts with: 0 while its header is incomplete, -1 when its length is
// invalid (next reports that).
func (m *msgReader) headLen() int {
	if m.wp-m.rp < 5 {
		return 0
	}
	l := int(int32(binary.BigEndian.Uint32(m.buf[m.rp+1:])))
	if l < 4 {
		return -1
	}
	return 1 + l
}

// readRaw reads once from fd, a non-blocking socket an event loop serves,
// into the buffer: no poller, and never a wait. It makes room for the
// message the buffer starts with, growing the buffer towards it as bytes
// come when grow is set (the upstream's reader); a client's message larger
// than the base buffer is left to the goroutine relay, which reserves
// memory for it, and with no room readRaw reports ENOBUFS.
func (m *msgReader) readRaw(fd int, grow bool) (int, syscall.Errno) {
	to, errno := m.readTarget(grow)
	if errno != 0 {
		return 0, errno
	}
	n, errno := evloop.Read(fd, to)
	m.readDone(n)
	return n, errno
}

// readTarget is where readRaw's read goes (buf[wp:], after making room),
// or ENOBUFS; the loop's read-ahead reads there too (loopSess.ReadBuf).
func (m *msgReader) readTarget(grow bool) ([]byte, syscall.Errno) {
	if m.buf == nil {
		m.buf = m.bufs.get()
	}
	need := max(m.headLen(), 5)
	if m.rp > 0 && m.rp+need > len(m.buf) {
		m.wp = copy(m.buf, m.buf[m.rp:m.wp])
		m.rp = 0
	}
	if m.wp == len(m.buf) {
		if !grow || need <= m.wp-m.rp {
			return nil, syscall.ENOBUFS
		}
		nb := make([]byte, min(need, 2*len(m.buf)))
		copy(nb, m.buf[:m.wp])
		m.buf = nb
	}
	return m.buf[m.wp:], 0
}

// readDone counts n bytes read to readTarget's slice as buffered.
func (m *msgReader) readDone(n int) {
	m.wp += n
	if n > 0 {
		m.stamp()
	}
}

// stamp counts a read that returned bytes and takes its time.
func (m *msgReader) stamp() {
	m.reads++
	if m.wall {
		m.wallAt = time.Now()
		m.at = int64(m.wallAt.Sub(clockStart))
	} else {
		m.at = monoNow()
	}
	if m.active != nil {
		m.active.Store(m.at)
	}
}

// takenUp is when the last read returned, for the messages it completed:
// a time whose monotonic reading is exact (durations from it are) and
// whose wall reading is derived from it; now before the first read.
func (m *msgReader) takenUp() time.Time {
	if m.reads == 0 {
		return time.Now()
	}
	return clockStart.Add(time.Duration(m.at))
}

// answeredAt is the time of the last read of a wall reader (the
// upstream's): when the answers it completed came; now before the first.
func (m *msgReader) answeredAt() time.Time {
	if m.reads == 0 || !m.wall {
		return time.Now()
	}
	return m.wallAt
}

// next returns the next message's type and its bytes, header included;
// msg is valid until the following call. A stream that ends mid-message
// gives io.ErrUnexpectedEOF, as pgproto3 does.
func (m *msgReader) next() (typ byte, msg []byte, err error) {
	if b := m.buf[m.rp:m.wp]; len(b) >= 5 {
		// A whole message is buffered that needs no reservation (it fits
		// the base buffer) and is within maxBody: what nextSlow returns,
		// without its calls.
		l := int(int32(binary.BigEndian.Uint32(b[1:5])))
		if l >= 4 && l < len(b) && l < readBufSize && (m.maxBody <= 0 || l-4 <= m.maxBody) {
			m.rp += 1 + l
			return b[0], b[:1+l], nil
		}
	}
	return m.nextSlow()
}

func (m *msgReader) nextSlow() (typ byte, msg []byte, err error) {
	if m.rp == m.wp && len(m.buf) > maxKeptReadBuf {
		m.shrink()
	}
	if err := m.fill(5); err != nil {
		return 0, nil, err
	}
	typ = m.buf[m.rp]
	l := int(int32(binary.BigEndian.Uint32(m.buf[m.rp+1:])))
	if l < 4 {
		return 0, nil, fmt.Errorf("invalid message length: %d", l)
	}
	if m.maxBody > 0 && l-4 > m.maxBody {
		return 0, nil, &pgproto3.ExceededMaxBodyLenErr{MaxExpectedBodyLen: m.maxBody, ActualBodyLen: l - 4}
	}
	if err := m.reserve(1 + l); err != nil {
		return 0, nil, err
	}
	if err := m.fill(1 + l); err != nil {
		return 0, nil, err
	}
	msg = m.buf[m.rp : m.rp+1+l]
	m.rp += 1 + l
	return typ, msg, nil
}

// reserve takes from the budget what a buffer of n bytes holds past the
// base size, unless already held.
func (m *msgReader) reserve(n int) error {
	if m.budget == nil {
		return nil
	}
	need := int64(n - readBufSize)
	if need <= m.reserved {
		return nil
	}
	if m.reserving != nil {
		m.reserving(need-m.reserved, m.budget.available() < need-m.reserved)
	}
	if err := m.budget.acquire(need-m.reserved, m.wait, m.done); err != nil {
		return fmt.Errorf("message of %d bytes: %w", n, err)
	}
	m.reserved = need
	return nil
}

// shrink drops a drained buffer (the next fill takes a base-size one)
// and returns its budget.
func (m *msgReader) shrink() {
	m.bufs.put(m.buf)
	m.buf, m.rp, m.wp = nil, 0, 0
	m.release()
}

// release returns the reader's budget; the connection calls it when it
// ends.
func (m *msgReader) release() {
	if m.budget != nil && m.reserved > 0 {
		m.budget.release(m.reserved)
		m.reserved = 0
	}
}

// fill makes at least n unread bytes available.
func (m *msgReader) fill(n int) error {
	if m.wp-m.rp >= n {
		return nil
	}
	if m.buf == nil {
		m.buf = m.bufs.get()
	}
	if m.rp > 0 && m.rp+n > len(m.buf) {
		m.wp = copy(m.buf, m.buf[m.rp:m.wp])
		m.rp = 0
	}
	for m.wp-m.rp < n {
		if m.wp == len(m.buf) {
			// Here rp is 0 and n exceeds the buffer: grow towards n as
			// the bytes come.
			nb := make([]byte, min(n, 2*len(m.buf)))
			copy(nb, m.buf[:m.wp])
			m.buf = nb
		}
		k, err := m.read()
		m.wp += k
		if k > 0 {
			m.stamp()
		}
		if err != nil {
			if m.wp-m.rp >= n {
				return nil
			}
			if errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// writeBeforeRead makes the next read write b to w, the reader's own
// socket, first: b is a request whose answer that read waits for. It
// reports false, and does nothing, unless the reader reads a plain socket
// with nothing buffered. b must stay untouched until the read.
//
// Written inside the read's RawConn.Read, the request costs no read that
// finds nothing: RawConn.Read resets the poller's readiness of the socket
// before it calls readFD, so readFD can write the request and wait for
// readiness without trying to read, and the answer, which can only come
// after the request, is announced by the poller whenever it comes. (A
// read that skipped its first try after a reset made by a later Read
// could miss bytes announced before that reset and wait forever.)
func (m *msgReader) writeBeforeRead(b []byte, w io.Writer) bool {
	if m.raw == nil || m.buffered() > 0 || len(b) == 0 {
		return false
	}
	m.pre, m.preW = b, w
	return true
}

// read reads once into buf[wp:]. On a socket it is read(2) the way the
// net package does it (EAGAIN: wait for the poller, which also honours
// deadlines and Close), except that while it waits a drained buffer is
// given back (shrink) and taken again when bytes come.
func (m *msgReader) read() (int, error) {
	if m.raw == nil {
		return m.r.Read(m.buf[m.wp:])
	}
	err := m.raw.Read(m.rawRead)
	if m.pre != nil || m.preErr != nil {
		// Unwritten (Read failed before calling readFD), or failed.
		werr := m.preErr
		m.pre, m.preW, m.preErr = nil, nil, nil
		if werr == nil {
			werr = err
		}
		if werr == nil {
			werr = errors.New("request not written")
		}
		return 0, werr
	}
	k, rerr := m.rk, m.rerr
	switch {
	case err != nil: // deadline or Close, as a *net.OpError
		return 0, err
	case rerr != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", rerr)}
	case k == 0:
		return 0, io.EOF
	}
	return k, nil
}

// readFD is read's RawConn callback: false (EAGAIN) makes RawConn.Read
// wait for the poller and call it again.
func (m *msgReader) readFD(fd uintptr) bool {
	if m.pre != nil {
		// See writeBeforeRead: the request first, then wait for the
		// answer without a read that would find nothing.
		b, w := m.pre, m.preW
		m.pre, m.preW = nil, nil
		if _, err := w.Write(b); err != nil {
			m.preErr = err
			return true
		}
		return false
	}
	if m.buf == nil {
		m.buf = m.bufs.get()
	}
	for {
		m.rk, m.rerr = syscall.Read(int(fd), m.buf[m.wp:])
		if m.rerr != syscall.EINTR {
			break
		}
	}
	if m.rerr != nil {
		m.rk = 0
	}
	if m.rerr == syscall.EAGAIN {
		if m.rp == m.wp {
			m.shrink()
		}
		return false
	}
	return true
}

// frontendMsgs are the decoded client messages of one connection, reused
// like pgproto3.Backend reuses its own: valid until the next message.
type frontendMsgs struct {
	query        pgproto3.Query
	parse        pgproto3.Parse
	bind         pgproto3.Bind
	describe     pgproto3.Describe
	execute      pgproto3.Execute
	close        pgproto3.Close
	sync         pgproto3.Sync
	flush        pgproto3.Flush
	copyData     pgproto3.CopyData
	copyDone     pgproto3.CopyDone
	copyFail     pgproto3.CopyFail
	functionCall pgproto3.FunctionCall
	terminate    pgproto3.Terminate
}

// decode decodes a client message of type typ with body body the way
// pgproto3.Backend.Receive does; auth picks the type of a 'p' message.
func (f *frontendMsgs) decode(typ byte, body []byte, auth uint32) (pgproto3.FrontendMessage, error) {
	var msg pgproto3.FrontendMessage
	switch typ {
	case 'B':
		msg = &f.bind
	case 'C':
		msg = &f.close
	case 'D':
		msg = &f.describe
	case 'E':
		msg = &f.execute
	case 'F':
		msg = &f.functionCall
	case 'f':
		msg = &f.copyFail
	case 'd':
		msg = &f.copyData
	case 'c':
		msg = &f.copyDone
	case 'H':
		msg = &f.flush
	case 'P':
		msg = &f.parse
	case 'p':
		switch auth {
		case pgproto3.AuthTypeSASL:
			msg = &pgproto3.SASLInitialResponse{}
		case pgproto3.AuthTypeSASLContinue, pgproto3.AuthTypeSASLFinal:
			msg = &pgproto3.SASLResponse{}
		default:
			msg = &pgproto3.PasswordMessage{}
		}
	case 'Q':
		msg = &f.query
	case 'S':
		msg = &f.sync
	case 'X':
		msg = &f.terminate
	default:
		return nil, fmt.Errorf("unknown message type: %c", typ)
	}
	if err := msg.Decode(body); err != nil {
		return nil, err
	}
	return msg, nil
}

// forget drops what the decoded msg refers to once it has been handled: a
// large Query's text, or a Bind's parameters (which point into the read
// buffer), must not stay reachable until the next message of the kind.
func (f *frontendMsgs) forget(msg pgproto3.FrontendMessage) {
	switch msg {
	case &f.query:
		f.query.String = ""
	case &f.parse:
		f.parse.Query = ""
	case &f.bind:
		clear(f.bind.Parameters)
		f.bind.Parameters = f.bind.Parameters[:0]
	case &f.copyData:
		f.copyData.Data = nil
	case &f.functionCall:
		clear(f.functionCall.Arguments)
		f.functionCall.Arguments = f.functionCall.Arguments[:0]
	}
}

// syncMsg and terminateMsg are the encoded Sync and Terminate.
var (
	syncMsg      = []byte{'S', 0, 0, 0, 4}
	terminateMsg = []byte{'X', 0, 0, 0, 4}
)

// upstreamTypes are the message types a Postgres server sends
// (pgproto3.Frontend.Receive knows them); anything else ends the session.
var upstreamTypes = func() (t [256]bool) {
	for _, b := range []byte("123AcCdDEGHIKnNRsStTVWZv") {
		t[b] = true
	}
	return t
}()

// send appends msg to the client write buffer; the caller holds wmu once
// the relay runs.
func (c *conn) send(msg pgproto3.BackendMessage) {
	if c.wbufErr != nil {
		return
	}
	b, err := msg.Encode(c.clientBuffer())
	if err != nil {
		c.wbufErr = err
		return
	}
	c.wbuf = b
}

// clientBuffer returns wbuf, taking a buffer from readBufs when it has
// none.
func (c *conn) clientBuffer() []byte {
	if c.wbuf == nil {
		c.wbuf = c.bufs().get()[:0]
	}
	return c.wbuf
}

// bufs is where the session's buffers come from: its loop's cache while
// on a loop, else readBufs (nil).
func (c *conn) bufs() *loopBufs {
	if s := c.ev; s != nil {
		return s.bufs
	}
	return nil
}

// flushClient writes the client write buffer; the caller holds wmu once
// the relay runs.
//
// On a loop the write does not wait: what the client cannot take yet
// stays in wbuf (from wsent on) and the loop writes it when the client
// is writable, reading no more answers meanwhile.
func (c *conn) flushClient() error {
	if err := c.wbufErr; err != nil {
		c.wbufErr, c.wbuf, c.wsent = nil, c.wbuf[:0], 0
		return fmt.Errorf("encode message: %w", err)
	}
	if len(c.wbuf) == 0 {
		return nil
	}
	var err error
	if s := c.ev; s != nil {
		var done bool
		if done, err = s.writeClient(); !done && err == nil {
			return nil
		}
	} else {
		_, err = c.client.Write(c.wbuf)
	}
	c.wsent = 0
	if cap(c.wbuf) > maxKeptWriteBuf {
		c.wbuf = nil
	} else {
		c.wbuf = c.wbuf[:0]
	}
	return err
}

const (
	// maxKeptWriteBuf bounds a write buffer kept between flushes.
	maxKeptWriteBuf = 64 << 10
	// flushAt is the buffered size past which a relay direction writes
	// without waiting for its peer to go quiet.
	flushAt = 32 << 10
)

// bodyLen is the body length pgproto3 encodes m with, for the messages
// whose Decode ignores trailing bytes.
func bodyLen(m pgproto3.FrontendMessage) (int, bool) {
	switch m := m.(type) {
	case *pgproto3.Parse:
		return len(m.Name) + 1 + len(m.Query) + 1 + 2 + 4*len(m.ParameterOIDs), true
	case *pgproto3.Bind:
		n := len(m.DestinationPortal) + 1 + len(m.PreparedStatement) + 1 + 2 + 2*len(m.ParameterFormatCodes) + 2 + 2 + 2*len(m.ResultFormatCodes)
		for _, p := range m.Parameters {
			n += 4 + len(p)
		}
		return n, true
	case *pgproto3.Execute:
		return len(m.Portal) + 1 + 4, true
	}
	return 0, false
}

// The scanners below read the fields the relay needs of a message it
// forwards as received, in place and without allocating. Each accepts a
// body only when pgproto3's Decode would accept it and would have read it
// to its last byte; anything else (malformed, or bytes after the last
// field) it rejects, and the caller decodes the message instead, so that
// errors and re-encoding stay pgproto3's.

// cstring splits b after its first NUL: the bytes before it and the rest.
func cstring(b []byte) (s, rest []byte, ok bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return nil, nil, false
	}
	return b[:i], b[i+1:], true
}

// scanBind returns a Bind's destination portal and source statement.
func scanBind(b []byte) (portal, stmt []byte, ok bool) {
	if portal, b, ok = cstring(b); !ok {
		return nil, nil, false
	}
	if stmt, b, ok = cstring(b); !ok {
		return nil, nil, false
	}
	// Parameter format codes, then the parameters (length -1 is NULL).
	if len(b) < 2 {
		return nil, nil, false
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if len(b) < 2*n+2 {
		return nil, nil, false
	}
	b = b[2*n:]
	n = int(binary.BigEndian.Uint16(b))
	b = b[2:]
	for range n {
		if len(b) < 4 {
			return nil, nil, false
		}
		l := int(int32(binary.BigEndian.Uint32(b)))
		b = b[4:]
		if l == -1 {
			continue
		}
		if l < 0 || len(b) < l {
			return nil, nil, false
		}
		b = b[l:]
	}
	// Result format codes, the last field.
	if len(b) < 2 {
		return nil, nil, false
	}
	n = int(binary.BigEndian.Uint16(b))
	if len(b) != 2+2*n {
		return nil, nil, false
	}
	return portal, stmt, true
}

// scanNamed returns the object type and name of a Describe or Close: a
// type byte and a name that ends the body.
func scanNamed(b []byte) (objType byte, name []byte, ok bool) {
	if len(b) < 2 || bytes.IndexByte(b[1:], 0) != len(b)-2 {
		return 0, nil, false
	}
	return b[0], b[1 : len(b)-1], true
}

// scanExecute returns an Execute's portal (its row limit, the last field,
// is the server's business).
func scanExecute(b []byte) (portal []byte, ok bool) {
	portal, rest, ok := cstring(b)
	if !ok || len(rest) != 4 {
		return nil, false
	}
	return portal, true
}
