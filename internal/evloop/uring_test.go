package evloop

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// newTestLoop returns a loop in the mode asked for; io_uring mode is
// skipped, with the reason, on a kernel without it.
func newTestLoop(t *testing.T, uring bool) *Loop {
	t.Helper()
	defer func(old, on bool) { useRing, uringOn = old, on }(useRing, uringOn)
	useRing, uringOn = uring, uring
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if uring && !l.URing() {
		_, why := onLoopPair(l, func() (*ring, error) { return setupRing(l) })
		t.Skipf("no io_uring mode here: %v", why)
	}
	return l
}

func onLoopPair[A, B any](l *Loop, f func() (A, B)) (A, B) {
	type ab struct {
		a A
		b B
	}
	r := onLoop(l, func() ab { a, b := f(); return ab{a, b} })
	return r.a, r.b
}

// bothModes runs f on a loop in each mode: epoll, io_uring with every
// turn on the ring, and io_uring as it runs by default (direct turns at
// low load).
func bothModes(t *testing.T, f func(t *testing.T, l *Loop)) {
	for _, m := range []struct {
		name            string
		uring, adaptive bool
	}{{"epoll", false, false}, {"io_uring", true, false}, {"io_uring-adaptive", true, true}} {
		t.Run(m.name, func(t *testing.T) {
			l := newTestLoop(t, m.uring)
			if l.URing() != m.uring {
				t.Skip("mode not available")
			}
			onLoop(l, func() bool { l.adaptive = m.adaptive; return true })
			f(t, l)
		})
	}
}

func TestEchoBothModes(t *testing.T) {
	bothModes(t, func(t *testing.T, l *Loop) {
		c1, s1 := pair(t)
		c2, s2 := pair(t)
		startEcho(t, l, s1)
		startEcho(t, l, s2)
		for range 50 {
			roundTrip(t, c1, "hello")
			roundTrip(t, c2, "world")
		}
	})
}

// streamer writes total bytes (a counting pattern) to its socket as fast
// as the loop lets it: whatever Write does not take is offered again on
// Out. stop asks it to Remove its socket and hand over what the loop did
// not send.
type streamer struct {
	l       *Loop
	fd      int
	total   int
	written int
	eagains int
	maxCap  int // the largest send queue buffer seen (io_uring mode)
	// doneWants is what the streamer watches once all is written.
	doneWants uint32
	chunk     []byte
	done      chan []byte // on Remove: the unsent bytes
}

func pattern(from, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((from + i) % 251)
	}
	return b
}

func (s *streamer) Event(fd int, events uint32) { s.pump() }

func (s *streamer) pump() {
	for s.written < s.total {
		n := min(len(s.chunk), s.total-s.written)
		copy(s.chunk, pattern(s.written, n))
		k, e := s.l.Write(s.fd, s.chunk[:n])
		if q := s.l.sends[s.fd]; cap(q.buf) > s.maxCap {
			s.maxCap = cap(q.buf)
		}
		if e == syscall.EAGAIN {
			s.eagains++
			_ = s.l.Modify(s.fd, Out)
			return
		}
		if e != 0 {
			panic(e)
		}
		s.written += k
	}
	_ = s.l.Modify(s.fd, s.doneWants)
}

func (s *streamer) Panicked(v any) { panic(v) }

// startStreamer starts, on l, a streamer of total bytes to the server end
// of a new connected pair, watching watch, and returns the peer's end.
// small gives both ends small socket buffers (16 KiB): a send queue
// cannot fit in them.
func startStreamer(t *testing.T, l *Loop, total int, watch uint32, small bool) (net.Conn, *streamer) {
	t.Helper()
	c, srv := pair(t)
	fd, err := Detach(srv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Close(fd) })
	if small {
		_ = c.(*net.TCPConn).SetReadBuffer(16 << 10)
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 16<<10); err != nil {
			t.Fatal(err)
		}
	}
	s := &streamer{l: l, fd: fd, total: total, chunk: make([]byte, 48<<10), done: make(chan []byte, 1)}
	l.Post(func() {
		if err := l.Add(fd, watch, s); err != nil {
			panic(err)
		}
		s.pump()
	})
	return c, s
}

func (s *streamer) stop() {
	// More Writes until one takes nothing: epoll mode fills the socket,
	// io_uring mode queues up to maxQueued, and Remove, before any send,
	// must send what the socket takes and hand the rest back.
	for {
		n := min(len(s.chunk), s.total-s.written)
		copy(s.chunk, pattern(s.written, n))
		k, _ := s.l.Write(s.fd, s.chunk[:n])
		if k == 0 {
			break
		}
		s.written += k
	}
	unsent, err := s.l.Remove(s.fd)
	if err != nil {
		panic(err)
	}
	s.done <- unsent
}

// A peer that reads slowly gets every byte, in order: the loop's send
// queue fills, Write says EAGAIN, and Out brings the rest.
func TestWriteBackPressure(t *testing.T) {
	bothModes(t, func(t *testing.T, l *Loop) {
		c, s := startStreamer(t, l, 8<<20, Out, false)
		_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
		got := make([]byte, 0, s.total)
		buf := make([]byte, 7000)
		for len(got) < s.total {
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("after %d bytes: %v", len(got), err)
			}
			got = append(got, buf[:n]...)
			if len(got) < 1<<20 {
				time.Sleep(time.Millisecond) // a slow reader is the point: the queue fills
			}
		}
		if !bytes.Equal(got, pattern(0, s.total)) {
			t.Fatal("the bytes arrived changed or out of order")
		}
		if onLoop(l, func() int { return s.eagains }) == 0 {
			t.Fatal("Write never pushed back on a slow reader")
		}
		// The queue holds at most maxQueued unsent bytes; its buffer must
		// not grow with what was sent through it.
		if c := onLoop(l, func() int { return s.maxCap }); c > 4*maxQueued {
			t.Fatalf("a send queue's buffer grew to %d bytes for a %d-byte stream", c, s.total)
		}
	})
}

// Remove hands back what Write took and the socket did not: the peer's
// bytes followed by those are exactly what was written.
func TestRemoveReturnsUnsent(t *testing.T) {
	bothModes(t, func(t *testing.T, l *Loop) {
		// Small socket buffers: the queue cannot fit in them.
		c, s := startStreamer(t, l, 64<<20, Out, true)
		// Nobody reads: the socket and the queue fill up, and the writer
		// stops.
		deadline := time.Now().Add(10 * time.Second)
		for last := -1; ; {
			// A poll with a deadline: "the writer stopped" is the absence
			// of progress, which no event announces.
			time.Sleep(50 * time.Millisecond)
			now := onLoop(l, func() int { return s.written })
			if now == last && onLoop(l, func() int { return s.eagains }) > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the writer never stopped on a full socket")
			}
			last = now
		}
		l.Post(s.stop)
		unsent := <-s.done
		written := onLoop(l, func() int { return s.written })
		// (Direct turns write as epoll mode does: a full socket takes
		// nothing more and nothing is queued.)
		if l.URing() && !onLoop(l, func() bool { return l.adaptive }) && len(unsent) == 0 {
			t.Fatal("io_uring mode: a full queue's bytes were not handed back")
		}
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		got := make([]byte, 0, written)
		buf := make([]byte, 64<<10)
		for len(got)+len(unsent) < written {
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("read %d of %d: %v", len(got), written-len(unsent), err)
			}
			got = append(got, buf[:n]...)
		}
		got = append(got, unsent...)
		if len(got) != written || !bytes.Equal(got, pattern(0, written)) {
			t.Fatalf("socket bytes + unsent = %d bytes, want the %d written, in order", len(got), written)
		}
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if n, err := c.Read(buf); n > 0 || err == io.EOF {
			t.Fatalf("more than was written arrived (%d, %v)", n, err)
		}
	})
}

// A send to a peer that reset the connection fails; Write reports it.
func TestWriteAfterReset(t *testing.T) {
	bothModes(t, func(t *testing.T, l *Loop) {
		c, srv := pair(t)
		fd, err := Detach(srv)
		if err != nil {
			t.Fatal(err)
		}
		defer Close(fd)
		if err := onLoop(l, func() error { return l.Add(fd, 0, ignore{}) }); err != nil {
			t.Fatal(err)
		}
		_ = c.(*net.TCPConn).SetLinger(0)
		c.Close() // RST
		// Poll: the reset reaches the socket soon, not at once.
		var last syscall.Errno
		for range 100 {
			last = onLoop(l, func() syscall.Errno {
				_, e := l.Write(fd, []byte("x"))
				return e
			})
			if last != 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if last != syscall.EPIPE && last != syscall.ECONNRESET {
			t.Fatalf("Write to a reset connection: %v, want EPIPE or ECONNRESET", last)
		}
	})
}

// ignore is a handler that does nothing with its events.
type ignore struct{}

func (ignore) Event(int, uint32) {}
func (ignore) Panicked(v any)    { panic(v) }

// aheadEcho is echo as a ReadAheader: its reads come from the loop's
// read-ahead when there is one.
type aheadEcho struct {
	echo
	buf    [64]byte
	ahead  bool // a read-ahead result waits
	n      int
	errno  syscall.Errno
	aheads int // read-aheads taken
}

func (e *aheadEcho) ReadBuf(fd int) []byte { return e.buf[:] }

func (e *aheadEcho) ReadDone(fd int, n int, errno syscall.Errno) {
	e.ahead, e.n, e.errno = true, n, errno
}

func (e *aheadEcho) Event(fd int, events uint32) {
	n, errno := e.n, e.errno
	if e.ahead {
		e.ahead = false
		e.aheads++
	} else {
		n, errno = Read(fd, e.buf[:])
	}
	switch {
	case errno == syscall.EAGAIN:
		return
	case errno != 0 || n == 0:
		e.close()
		return
	}
	if w, errno := e.l.Write(fd, e.buf[:n]); errno != 0 || w != n {
		e.close()
	}
}

// In io_uring mode a ReadAheader's reads are the loop's: one
// io_uring_enter reads every ready socket; the bytes, and the end of the
// stream, reach the handler as from its own reads.
func TestReadAhead(t *testing.T) {
	bothModes(t, func(t *testing.T, l *Loop) {
		c, e := startAheadEcho(t, l)
		for i := range 100 {
			roundTrip(t, c, "message "+string(rune('a'+i%26)))
		}
		c.Close()
		select {
		case <-e.closed:
		case <-time.After(5 * time.Second):
			t.Fatal("the end of the stream did not reach the handler")
		}
		aheads, adaptive := onLoopPair(l, func() (int, bool) { return e.aheads, l.adaptive })
		switch {
		case l.URing() && !adaptive && aheads < 100:
			t.Fatalf("io_uring mode: %d of 101 reads were read-aheads", aheads)
		case l.URing() && adaptive && aheads > 10:
			// One round trip at a time: the turns are direct, and the
			// handler reads for itself.
			t.Fatalf("io_uring mode, one event per turn: %d of 101 reads were read-aheads", aheads)
		case !l.URing() && aheads != 0:
			t.Fatalf("epoll mode read ahead (%d)", aheads)
		}
	})
}

// aheadEchoClients starts n aheadEcho sessions on l and returns their
// clients.
func aheadEchoClients(t *testing.T, l *Loop, n int) []net.Conn {
	t.Helper()
	clients := make([]net.Conn, n)
	for i := range clients {
		clients[i], _ = startAheadEcho(t, l)
	}
	return clients
}

// startAheadEcho starts an aheadEcho session on l and returns its client
// and its handler.
func startAheadEcho(t *testing.T, l *Loop) (net.Conn, *aheadEcho) {
	t.Helper()
	c, srv := pair(t)
	fd, err := Detach(srv)
	if err != nil {
		t.Fatal(err)
	}
	e := &aheadEcho{echo: echo{l: l, fd: fd, closed: make(chan struct{}), err: make(chan any, 1)}}
	if err := onLoop(l, func() error { return l.Add(fd, In, e) }); err != nil {
		t.Fatal(err)
	}
	return c, e
}

// burst has every client write before any reads (the loop sees them all
// ready in the same turns), then checks each echo.
func burst(t *testing.T, clients []net.Conn, round int) {
	t.Helper()
	for i, c := range clients {
		if _, err := c.Write([]byte{byte(i), byte(round)}); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range clients {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got := make([]byte, 2)
		if _, err := io.ReadFull(c, got); err != nil || got[0] != byte(i) || got[1] != byte(round) {
			t.Fatalf("session %d round %d: %v %v", i, round, got, err)
		}
	}
}

// More sessions than the ring has entries, all busy at once: a turn's
// sends and read-aheads overflow the submission ring and go in parts
// (queueSends, readAhead), and every byte still arrives.
func TestManySessionsOverflowTheRing(t *testing.T) {
	defer func(n uint32) { ringEntries = n }(ringEntries)
	ringEntries = 16
	bothModes(t, func(t *testing.T, l *Loop) {
		clients := aheadEchoClients(t, l, 200)
		for round := range 5 {
			burst(t, clients, round)
		}
	})
}

// A send the socket takes only in part must not wait for some other
// event: here the writer's bytes all fit in its send queue, so it watches
// nothing once Write took them, and nothing else happens on the loop (no
// raw, timed waits either: GOMAXPROCS 1). The rest must still go out as
// the peer reads.
func TestPartialSendWithNothingElseToDo(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	bothModes(t, func(t *testing.T, l *Loop) {
		// Socket buffers far smaller than what is written: the first
		// send takes part of it.
		c, s := startStreamer(t, l, maxQueued/2, 0, true)
		// The peer reads only once the first send is surely over. A sleep,
		// not a poll of the loop: asking the loop anything (Post) wakes it,
		// and that wake-up is the unrelated event the stall waits for.
		time.Sleep(100 * time.Millisecond)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got := make([]byte, 0, s.total)
		buf := make([]byte, 64<<10)
		for len(got) < s.total {
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("after %d of %d bytes: %v", len(got), s.total, err)
			}
			got = append(got, buf[:n]...)
		}
		if !bytes.Equal(got, pattern(0, s.total)) {
			t.Fatal("the bytes arrived changed or out of order")
		}
	})
}

// A queue that never quite drains — a long stream to a reader slower than
// the writer, through small socket buffers — keeps its buffer bounded:
// what the socket took is dropped from its front, not kept.
func TestSlowReaderQueueStaysBounded(t *testing.T) {
	l := newTestLoop(t, true)
	if !l.URing() {
		t.Skip("no io_uring mode")
	}
	c, s := startStreamer(t, l, 4<<20, Out, true)
	_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
	got := make([]byte, 0, s.total)
	buf := make([]byte, 16<<10)
	for len(got) < s.total {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("after %d bytes: %v", len(got), err)
		}
		got = append(got, buf[:n]...)
		time.Sleep(200 * time.Microsecond) // a slow reader is the point
	}
	if !bytes.Equal(got, pattern(0, s.total)) {
		t.Fatal("the bytes arrived changed or out of order")
	}
	if c := onLoop(l, func() int { return s.maxCap }); c > 4*maxQueued {
		t.Fatalf("the send queue's buffer grew to %d bytes for a %d-byte stream", c, s.total)
	}
}

// An io_uring mode loop switches between direct turns (one event at a
// time) and ring turns (many sessions ready at once) as the load changes,
// and no byte is lost, changed or reordered on the way.
func TestAdaptiveTurnsSwitch(t *testing.T) {
	l := newTestLoop(t, true)
	if !l.URing() {
		t.Skip("no io_uring mode")
	}
	onLoop(l, func() bool { l.adaptive = true; return true })
	const sessions = 40
	clients := aheadEchoClients(t, l, sessions)
	turns := func() [2]uint64 { return onLoop(l, func() [2]uint64 { return l.turns }) }
	sequential := func() {
		for i := range 50 {
			roundTrip(t, clients[i%sessions], "one at a time "+string(rune('a'+i%26)))
		}
	}

	sequential()
	t0 := turns()
	if t0[1] == 0 {
		t.Fatalf("one round trip at a time made no direct turn (turns %v)", t0)
	}
	for round := range 20 {
		burst(t, clients, round)
	}
	t1 := turns()
	if t1[0] == t0[0] {
		t.Fatalf("bursts of %d sessions made no ring turn (turns %v, then %v)", sessions, t0, t1)
	}
	sequential()
	if t2 := turns(); t2[1] == t1[1] {
		t.Fatalf("after the bursts, one round trip at a time made no direct turn (turns %v, then %v)", t1, t2)
	}
}
