package evloop

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Events as epoll reports them (level-triggered; EPOLLHUP and EPOLLERR are
// always reported, whether asked for or not).
const (
	In    = unix.EPOLLIN
	Out   = unix.EPOLLOUT
	Hup   = unix.EPOLLHUP | unix.EPOLLRDHUP
	Error = unix.EPOLLERR
)

// Handler is a session's side of a loop. Both methods run on the loop's
// goroutine. An event can be spurious (a descriptor number reused within
// one batch of events): a read that finds nothing (EAGAIN) is normal.
type Handler interface {
	// Event reports that fd, registered with this handler, has events
	// (a mask of In, Out, Hup, Error).
	Event(fd int, events uint32)
	// Panicked reports a panic recovered from Event; the handler ends its
	// session (closing what it registered). A panic here is not recovered.
	Panicked(v any)
}

// Loop is one epoll instance and the goroutine that serves it.
type Loop struct {
	epfd   int
	wakefd int // an eventfd: Post's wake-up

	// Loop goroutine only.
	handlers []Handler // by descriptor
	wants    []uint32  // events the handler watches, by descriptor
	reg      []uint32  // events registered with epoll: wants, and Out for a full send queue
	evs      []unix.EpollEvent
	running  []func()
	raw      bool // wait: the next wait starts raw
	busyMS   int  // wait: how long a raw wait lasts (busyWaitMS)

	// io_uring mode (uring.go); ring is nil in epoll mode, for the reason
	// in ringErr.
	ring    *ring
	ringErr error
	sends   []sendQ // by descriptor
	dirty   []int32 // descriptors whose queues have bytes for this turn's sends
	redirty []int32
	spare   [][]byte
	waiting bool   // an epoll wait is in the ring
	batch   []*sqe // this turn's sends in the ring, not yet submitted
	ready   int    // events of a completed epoll wait, not yet handed out (-1: none)
	arg     getEventsArg
	ts      unix.Timespec
	// direct: this turn waited with epoll_pwait and its writes go out at
	// once, as in epoll mode (a turn at low load: see wait); only when
	// adaptive.
	direct, adaptive bool
	// turns counts waits that returned events: [0] ring turns, [1]
	// direct ones (tests).
	turns [2]uint64
	// perTurn is a moving average of the events a wait returns, in
	// 1/256ths (io_uring mode's choice of a turn's kind).
	perTurn int

	mu     sync.Mutex
	posted []func()
}

// ErrNotSocket is Detach's answer for a connection that is not a plain
// socket (a TLS connection, a pipe): its session stays on goroutines.
var ErrNotSocket = errors.New("evloop: not a plain socket")

// New creates a loop and starts its goroutine, which runs for the life of
// the process. The loop works in io_uring mode where the kernel allows
// (see doc.go; KEYHOLE_IO_URING=off turns it off), else with epoll_pwait
// and direct writes.
func New() (*Loop, error) {
	return newLoop(busyWaitMS)
}

func newLoop(busyMS int) (*Loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("evloop: epoll_create1: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("evloop: eventfd: %w", err)
	}
	l := &Loop{epfd: epfd, wakefd: wakefd, evs: make([]unix.EpollEvent, 128), busyMS: busyMS, ready: -1, adaptive: adaptiveTurns}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wakefd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wakefd)
		return nil, fmt.Errorf("evloop: epoll_ctl: %w", err)
	}
	loopsStarted.Add(1)
	started := make(chan struct{})
	go l.run(started)
	<-started
	return l, nil
}

// URing reports whether the loop works in io_uring mode.
func (l *Loop) URing() bool { return l.ring != nil }

// SharedMode starts the shared loops (Next's) and reports how many there
// are and how they do their I/O: "io_uring", or "epoll" with the reason
// io_uring mode is not used (an old kernel, a seccomp profile that blocks
// it, KEYHOLE_IO_URING=off).
func SharedMode() (loops int, mode string, why error) {
	l, err := Next()
	if err != nil {
		return 0, "", err
	}
	if l.ring != nil {
		return len(shared.loops), "io_uring", nil
	}
	return len(shared.loops), "epoll", l.ringErr
}

// loopsStarted counts the process's loops (they run for its life).
var loopsStarted atomic.Int32

func loopCount() int { return int(loopsStarted.Load()) }

var shared struct {
	once  sync.Once
	loops []*Loop
	err   error
	mu    sync.Mutex
	next  int
}

// Next returns one of the process's shared loops, round robin; they are
// created on first use. There are GOMAXPROCS/2 of them (at least one):
// the database's own processes and the goroutines that remain (TLS
// sessions, the audit writer, logins) need the other CPUs.
func Next() (*Loop, error) {
	shared.once.Do(func() {
		n := max(1, runtime.GOMAXPROCS(0)/2)
		for range n {
			l, err := New()
			if err != nil {
				shared.err = err
				return
			}
			shared.loops = append(shared.loops, l)
		}
	})
	if len(shared.loops) == 0 {
		return nil, shared.err
	}
	shared.mu.Lock()
	l := shared.loops[shared.next%len(shared.loops)]
	shared.next++
	shared.mu.Unlock()
	return l, nil
}

// Add registers fd (non-blocking, owned by the caller) for events with h.
// Loop goroutine only.
func (l *Loop) Add(fd int, events uint32, h Handler) error {
	if fd < 0 {
		return fmt.Errorf("evloop: add: bad descriptor %d", fd)
	}
	for fd >= len(l.handlers) {
		l.handlers = append(l.handlers, nil)
		l.wants = append(l.wants, 0)
		l.reg = append(l.reg, 0)
		l.sends = append(l.sends, sendQ{})
	}
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("evloop: epoll_ctl add: %w", err)
	}
	l.handlers[fd], l.wants[fd], l.reg[fd] = h, events, events
	l.sends[fd] = sendQ{}
	return nil
}

// Modify changes the events fd is watched for; it makes no system call
// when they are what is registered. Loop goroutine only.
func (l *Loop) Modify(fd int, events uint32) error {
	if fd < 0 || fd >= len(l.handlers) || l.handlers[fd] == nil {
		return fmt.Errorf("evloop: modify: descriptor %d not registered", fd)
	}
	l.wants[fd] = events
	return l.register(fd)
}

// register brings fd's epoll registration to what its handler watches
// plus Out while fd's send queue waits for room; no system call when it is
// there already.
func (l *Loop) register(fd int) error {
	events := l.wants[fd]
	if l.sends[fd].full {
		events |= Out
	}
	if l.reg[fd] == events {
		return nil
	}
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	if _, _, e := syscall.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(l.epfd), unix.EPOLL_CTL_MOD, uintptr(fd), uintptr(unsafe.Pointer(&ev)), 0, 0); e != 0 {
		return fmt.Errorf("evloop: epoll_ctl mod: %w", e)
	}
	l.reg[fd] = events
	return nil
}

// Watching returns the events fd is registered for (0 when it is not).
// Loop goroutine only.
func (l *Loop) Watching(fd int) uint32 {
	if fd < 0 || fd >= len(l.handlers) || l.handlers[fd] == nil {
		return 0
	}
	return l.wants[fd]
}

// Remove unregisters fd; the caller still owns (and closes) it. Events
// already collected for fd in the current batch are not delivered. Bytes
// Write took for fd and the kernel has not are written now, as far as the
// socket takes them; what it does not take is returned, the caller's to
// send first (a session moving to a goroutine) or drop (one that ends).
// Loop goroutine only.
func (l *Loop) Remove(fd int) (unsent []byte, err error) {
	if fd < 0 || fd >= len(l.handlers) || l.handlers[fd] == nil {
		return nil, fmt.Errorf("evloop: remove: descriptor %d not registered", fd)
	}
	if l.ring != nil {
		q := &l.sends[fd]
		for q.pending() > 0 && q.err == 0 {
			n, e := writeNow(fd, q.buf[q.off:])
			if e != 0 {
				break
			}
			q.off += n
		}
		if q.err == 0 && q.pending() > 0 {
			unsent = append([]byte(nil), q.buf[q.off:]...)
		}
		l.putBuf(q.buf)
		*q = sendQ{dirty: q.dirty} // (still listed in dirty: skipped there)
	}
	l.handlers[fd], l.wants[fd], l.reg[fd] = nil, 0, 0
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil); err != nil {
		return unsent, fmt.Errorf("evloop: epoll_ctl del: %w", err)
	}
	return unsent, nil
}

// Post runs f on the loop's goroutine soon, after the current batch of
// events; posted functions run in the order posted. Safe from any
// goroutine, including the loop's own.
func (l *Loop) Post(f func()) {
	l.mu.Lock()
	wake := len(l.posted) == 0
	l.posted = append(l.posted, f)
	l.mu.Unlock()
	if wake {
		// The loop drains the eventfd before taking the queue, so a
		// non-empty queue always has a wake-up pending or being handled.
		one := uint64(1)
		_, _, _ = syscall.RawSyscall(unix.SYS_WRITE, uintptr(l.wakefd), uintptr(unsafe.Pointer(&one)), 8)
	}
}

func (l *Loop) run(started chan<- struct{}) {
	runtime.LockOSThread()
	switch {
	case !useRing:
		l.ringErr = errors.New("io_uring mode off")
	case !uringOn:
		l.ringErr = errors.New("KEYHOLE_IO_URING=off")
	default:
		l.ring, l.ringErr = setupRing(l) // (else epoll mode)
	}
	close(started)
	for {
		n := l.wait()
		if l.ring != nil && !l.direct {
			l.readAhead(n)
		}
		for i := 0; i < n; i++ {
			fd := int(l.evs[i].Fd)
			if fd == l.wakefd {
				l.runPosted()
				continue
			}
			if fd >= len(l.handlers) || l.handlers[fd] == nil {
				continue
			}
			events := l.evs[i].Events
			if l.ring != nil {
				if events = l.sendable(fd, events); events == 0 {
					continue
				}
			}
			l.dispatch(l.handlers[fd], fd, events)
		}
	}
}

// useRing: loops try io_uring mode (tests turn it off to cover both).
var useRing = true

// uringOn: loops try io_uring mode unless KEYHOLE_IO_URING=off.
var uringOn = os.Getenv("KEYHOLE_IO_URING") != "off"

// adaptiveTurns: io_uring mode loops make their turns at low load direct
// (see wait) unless KEYHOLE_IO_URING=ring, which keeps every turn on the
// ring (for comparisons; tests cover both).
var adaptiveTurns = os.Getenv("KEYHOLE_IO_URING") != "ring"

// sendable takes what fd's send queue makes of its events: Out on a full
// queue sends it again this turn. It returns the events for the handler:
// those it watches, and hang-ups and errors.
func (l *Loop) sendable(fd int, events uint32) uint32 {
	q := &l.sends[fd]
	if q.full && events&(Out|Hup|Error) != 0 {
		q.full = false
		if !q.dirty {
			q.dirty = true
			l.dirty = append(l.dirty, int32(fd))
		}
	}
	return events & (l.wants[fd] | Hup | Error)
}

// busyWaitMS is how long, in milliseconds, a loop waits for events in a
// raw epoll_pwait (keeping its P) before it waits through the runtime.
// Under load the next event comes within microseconds and the loop never
// gets there; an idle loop blocks for good after one such wait.
const busyWaitMS = 2

// wait returns the next batch of events. It waits in two ways:
//
//   - first a raw epoll_pwait of at most busyWaitMS: no entersyscall, so
//     the thread keeps its P. Through the runtime's wrapper a wait on a
//     busy loop costs more than the system call: sysmon sees the P in a
//     system call, takes it away (handoffp) whenever the other P is busy
//     or the loop readied a goroutine, and the returning thread must then
//     get a P back (futex wake-ups, a thread switch). Measured on pgbench
//     -S through a relay built this way (internal/benchtools/epollrelay,
//     -raw): futex and nanosleep calls per transaction 0.29/0.24 → 0.03/
//     0.01, context switches 1.27 → 0.78, as many as PgBouncer.
//   - then, after busyWaitMS with no event, an unbounded epoll_pwait
//     through the runtime's wrapper: an idle loop holds no P and makes no
//     wake-ups.
//
// A raw wait cannot hold up a garbage collection or a stop-the-world: the
// runtime asks a running goroutine to stop by setting its stack guard and
// signalling its thread (SIGURG, again every 100 µs until it stops), and
// epoll_pwait returns EINTR on any signal (never restarted, whatever
// SA_RESTART says). wait then returns no events and run's next call, to
// wait, meets the stack guard in its prologue: the goroutine stops there.
// With asynchronous preemption off (GODEBUG=asyncpreemptoff=1) no signal
// comes and such a stop waits out busyWaitMS at most.
//
// A raw wait needs a P to spare: with GOMAXPROCS no larger than the
// number of loops the other goroutines would wait for it, so then every
// wait goes through the runtime.
//
// In io_uring mode a turn at low load is an epoll mode turn (direct): a
// wait that returns one event at a time gains nothing from batching, and
// io_uring's two io_uring_enter calls per turn cost more there than the
// epoll_pwait, recvfrom and sendto of epoll mode (at one client, pgbench
// -S: about 3 µs more CPU and 12 µs more latency per transaction). The
// choice follows a moving average of the events per wait (below
// directBelow, 1.125: direct), and a turn is direct only when the ring has no
// epoll wait in flight (it would write to the same event array). What the
// last ring turn queued goes first, each queue with one sendto(2).
//
//go:noinline
func (l *Loop) wait() int {
	if l.ring != nil {
		l.direct = l.adaptive && l.perTurn < directBelow && !l.waiting && l.ready < 0
		if l.direct {
			l.sendQueued()
		} else {
			n := l.waitRing()
			l.countTurn(n, 0)
			return n
		}
	}
	n := l.waitEpoll()
	l.countTurn(n, 1)
	return n
}

// directBelow is the average events per wait (in 1/256ths) under which an
// io_uring mode loop makes its turns direct: 1.125, one event at a time
// with an occasional second. (At 1.5, eight pgbench clients' load, whose
// waits bring one event now and then, made a fifth of its messages go by
// direct turns and cost 4 µs more per transaction.)
const directBelow = 288

// countTurn folds a wait's events into perTurn (weight 1/8). A wait that
// returned nothing (a timeout, a signal) is no turn.
func (l *Loop) countTurn(n, kind int) {
	if n > 0 {
		l.perTurn += (min(n, 64)*256 - l.perTurn) / 8
		l.turns[kind]++
	}
}

// waitEpoll is wait with epoll_pwait (epoll mode, and io_uring mode's
// direct turns).
func (l *Loop) waitEpoll() int {
	if l.raw {
		r, _, e := syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(l.epfd), uintptr(unsafe.Pointer(&l.evs[0])), uintptr(len(l.evs)), uintptr(l.busyMS), 0, 0)
		switch {
		case e == unix.EINTR:
			return 0 // run calls wait again: a preemption point
		case e != 0:
			panic(fmt.Sprintf("evloop: epoll_pwait: %v", e))
		case r > 0:
			return int(r)
		}
	}
	for {
		r, _, e := syscall.Syscall6(unix.SYS_EPOLL_PWAIT, uintptr(l.epfd), uintptr(unsafe.Pointer(&l.evs[0])), uintptr(len(l.evs)), ^uintptr(0), 0, 0)
		if e == 0 {
			// Raw waits again, unless the process has no P to spare.
			l.raw = spareP()
			return int(r)
		}
		if e != unix.EINTR {
			// EBADF/EFAULT/EINVAL: the loop's own state is broken.
			panic(fmt.Sprintf("evloop: epoll_pwait: %v", e))
		}
	}
}

// spareP reports whether the process has a P for more than its loops.
func spareP() bool { return runtime.GOMAXPROCS(0) > loopCount() }

func (l *Loop) runPosted() {
	var buf [8]byte
	_, _, _ = syscall.RawSyscall(unix.SYS_READ, uintptr(l.wakefd), uintptr(unsafe.Pointer(&buf[0])), 8)
	l.mu.Lock()
	l.running, l.posted = l.posted, l.running[:0]
	l.mu.Unlock()
	for i, f := range l.running {
		l.running[i] = nil
		l.call(f)
	}
}

func (l *Loop) dispatch(h Handler, fd int, events uint32) {
	defer func() {
		if r := recover(); r != nil {
			h.Panicked(r)
		}
	}()
	h.Event(fd, events)
}

// call runs a posted function; a panic in it is a bug of whoever posted
// it, which must not take the loop's other sessions down.
func (l *Loop) call(f func()) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "evloop: panic in posted function: %v\n", r)
		}
	}()
	f()
}

// Read is one read(2) of a non-blocking descriptor: n > 0 bytes, or n == 0
// with errno 0 at end of stream, or an errno (EAGAIN: nothing to read).
func Read(fd int, p []byte) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	for {
		r, e := sysRead(fd, p)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return r, 0
	}
}

// Write writes to a non-blocking descriptor: it returns the bytes taken
// (possibly fewer than len(p)), or an errno (EAGAIN: nothing can be taken
// now, wait for Out; EPIPE, ECONNRESET: the peer is gone). Loop goroutine
// only. In epoll mode, or for a descriptor not registered with l, it is
// one sendto(2), and so it is in io_uring mode's direct turns (see wait)
// while fd's send queue is empty. Otherwise, in io_uring mode, the bytes
// are copied to fd's send queue, sent with the turn's other sends when the
// loop next waits; a failed send's error comes from the next Write (and
// the socket's events), and a queue the socket has not drained (maxQueued)
// takes nothing more until Out.
func (l *Loop) Write(fd int, p []byte) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	if l.ring != nil && fd >= 0 && fd < len(l.handlers) && l.handlers[fd] != nil {
		if q := &l.sends[fd]; !l.direct || q.pending() > 0 || q.inRing || q.err != 0 {
			return l.queueWrite(fd, p)
		}
	}
	return writeNow(fd, p)
}

// writeNow is one sendto(2) (MSG_NOSIGNAL: a write to a reset connection
// gets EPIPE and no SIGPIPE).
func writeNow(fd int, p []byte) (int, syscall.Errno) {
	for {
		r, e := sysWrite(fd, p)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return r, 0
	}
}

// Close closes a descriptor the loop served (after Remove).
func Close(fd int) {
	_ = unix.Close(fd)
}

// Detach takes c's socket out of the Go poller: it returns a non-blocking,
// close-on-exec duplicate of c's descriptor and closes c (which removes it
// from the poller; the socket stays open through the duplicate). c must be
// a plain socket connection with no read or write in progress; anything
// else (TLS) gets ErrNotSocket and is left open.
func Detach(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, ErrNotSocket
	}
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return -1, ErrNotSocket
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("evloop: detach: %w", err)
	}
	nfd, derr := -1, error(nil)
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, fmt.Errorf("evloop: detach: %w", err)
	}
	if derr != nil {
		return -1, fmt.Errorf("evloop: detach: dup: %w", derr)
	}
	// O_NONBLOCK belongs to the open file description, which the
	// duplicate shares with Go's descriptor (non-blocking already); set it
	// anyway rather than rely on how the runtime opened the socket.
	if err := unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return -1, fmt.Errorf("evloop: detach: %w", err)
	}
	_ = c.Close()
	return nfd, nil
}

// Attach returns fd to the Go poller as a net.Conn and closes fd (the
// connection holds its own duplicate). fd must not be registered with a
// loop.
func Attach(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "evloop")
	c, err := net.FileConn(f)
	_ = f.Close()
	if err != nil {
		return nil, fmt.Errorf("evloop: attach: %w", err)
	}
	return c, nil
}
