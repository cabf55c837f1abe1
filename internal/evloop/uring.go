package evloop

import (
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The io_uring mode (see doc.go): a loop turn's socket writes and its wait
// for events go to the kernel in one io_uring_enter. Kernel facts it rests
// on (Linux 6.15 or later; New falls back to epoll_pwait and direct writes
// where the ring cannot be set up or has no IORING_OP_EPOLL_WAIT):
//
//   - IORING_OP_SEND with MSG_DONTWAIT marks the request REQ_F_NOWAIT: the
//     kernel tries it once, during the submission, and completes it then —
//     with the bytes taken (possibly fewer than offered) or an error
//     (-EAGAIN when the socket's buffer is full). It never waits in the
//     kernel for room, so a send's buffer is the kernel's only while the
//     io_uring_enter that submits it runs, and sends to one socket cannot
//     overtake each other. That is sendto(2) on a non-blocking socket,
//     batched.
//   - IORING_OP_EPOLL_WAIT (6.15) is epoll_wait(2) on the loop's epoll
//     instance as a request: it completes, with the events written to the
//     loop's event array, when some are ready; level-triggered
//     registrations and their semantics are the epoll instance's own.
//   - A submission's completions are posted before io_uring_enter starts
//     waiting, and min_complete counts every completion the loop has not
//     consumed: with k sends submitted, waiting for k+1 completions waits
//     for the epoll wait (or a signal, or the timeout).
//   - A send the socket takes only in part, or not at all, must not wait
//     for some other event before the loop learns it and watches Out. So
//     a turn's sends and its epoll wait are one chain (IOSQE_IO_LINK),
//     the wait last, and the sends carry MSG_WAITALL: a stream socket's
//     send that takes less than offered then fails (its completion still
//     gives the bytes taken, io_sendrecv_fail; -EAGAIN when none), which
//     breaks the chain: the requests after it complete with -ECANCELED,
//     the epoll wait among them, and io_uring_enter returns at once. The
//     loop takes the short send's result and goes round again, watching
//     Out for it; the cancelled sends go with the next turn's. A chain's
//     later requests are issued as task work, which DEFER_TASKRUN runs in
//     the same io_uring_enter (GETEVENTS), so they too are done when it
//     returns. Sends submitted without the wait (a full ring) are not
//     linked: a link to nothing would send its tail to the io-wq
//     workers.
//   - With IORING_SETUP_DEFER_TASKRUN the epoll wait's completion work
//     runs only inside io_uring_enter(GETEVENTS) on the loop's thread
//     (SINGLE_ISSUER: the ring is created there), never by interrupting
//     the loop's other system calls.

const (
	sysIoUringSetup = 425
	sysIoUringEnter = 426

	opSend      = 26
	opRecv      = 27
	opEpollWait = 59

	setupSubmitAll    = 1 << 7
	setupSingleIssuer = 1 << 12
	setupDeferTaskrun = 1 << 13
	setupCQSize       = 1 << 3

	enterGetEvents = 1 << 0
	enterExtArg    = 1 << 3

	sqeIOLink = 1 << 2 // IOSQE_IO_LINK

	featSingleMMap = 1 << 0

	offSQRing = 0
	offSQEs   = 0x10000000

	// What a completion is for, in its user_data's upper half (the lower
	// half is a send's descriptor).
	tagWait = 1 << 32
	tagSend = 2 << 32
	tagRecv = 3 << 32
)

type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqringOffsets
	cqOff                                                                  cqringOffsets
}

// sqe and cqe are struct io_uring_sqe (64 bytes) and io_uring_cqe (16).
type sqe struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	opFlags     uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFdIn  int32
	addr3       uint64
	pad         uint64
}

type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

// getEventsArg is struct io_uring_getevents_arg (IORING_ENTER_EXT_ARG):
// here only for a wait's timeout.
type getEventsArg struct {
	sigmask   uint64
	sigmaskSz uint32
	pad       uint32
	ts        uint64 // *unix.Timespec
}

type ring struct {
	fd                     int
	sqHead, sqTail, sqMask *uint32
	sqArray                []uint32
	sqes                   []sqe
	cqHead, cqTail, cqMask *uint32
	cqes                   []cqe
	mem, sqeMem            []byte
}

// newRing sets up a ring on the calling thread, which must be the only one
// ever to submit to it (the loop's, locked).
func newRing() (*ring, error) {
	p := uringParams{flags: setupSingleIssuer | setupDeferTaskrun | setupSubmitAll | setupCQSize, cqEntries: 4 * ringEntries}
	fd, _, e := syscall.RawSyscall(sysIoUringSetup, uintptr(ringEntries), uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", e)
	}
	if p.features&featSingleMMap == 0 {
		unix.Close(int(fd))
		return nil, errors.New("io_uring: no IORING_FEAT_SINGLE_MMAP")
	}
	sqSize := int(p.sqOff.array + p.sqEntries*4)
	cqSize := int(p.cqOff.cqes + p.cqEntries*uint32(unsafe.Sizeof(cqe{})))
	mem, err := unix.Mmap(int(fd), offSQRing, max(sqSize, cqSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		unix.Close(int(fd))
		return nil, fmt.Errorf("io_uring: mmap rings: %w", err)
	}
	sqeMem, err := unix.Mmap(int(fd), offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(sqe{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		_ = unix.Munmap(mem)
		unix.Close(int(fd))
		return nil, fmt.Errorf("io_uring: mmap entries: %w", err)
	}
	base := unsafe.Pointer(&mem[0])
	at := func(off uint32) *uint32 { return (*uint32)(unsafe.Add(base, off)) }
	return &ring{
		fd:     int(fd),
		sqHead: at(p.sqOff.head), sqTail: at(p.sqOff.tail), sqMask: at(p.sqOff.ringMask),
		sqArray: unsafe.Slice(at(p.sqOff.array), p.sqEntries),
		sqes:    unsafe.Slice((*sqe)(unsafe.Pointer(&sqeMem[0])), p.sqEntries),
		cqHead:  at(p.cqOff.head), cqTail: at(p.cqOff.tail), cqMask: at(p.cqOff.ringMask),
		cqes: unsafe.Slice((*cqe)(unsafe.Add(base, p.cqOff.cqes)), p.cqEntries),
		mem:  mem, sqeMem: sqeMem,
	}, nil
}

func (r *ring) close() {
	_ = unix.Munmap(r.sqeMem)
	_ = unix.Munmap(r.mem)
	unix.Close(r.fd)
}

// queued is how many entries wait in the submission ring.
func (r *ring) queued() uint32 { return *r.sqTail - atomic.LoadUint32(r.sqHead) }

// full reports whether the submission ring has no free entry.
func (r *ring) full() bool { return r.queued() > *r.sqMask }

// next returns a zeroed free entry, published when the caller has filled
// it (release by publish). The ring must not be full.
func (r *ring) next() *sqe {
	tail := *r.sqTail
	i := tail & *r.sqMask
	r.sqArray[i] = i
	s := &r.sqes[i]
	*s = sqe{}
	return s
}

func (r *ring) publish() { atomic.StoreUint32(r.sqTail, *r.sqTail+1) }

// submit is io_uring_enter without a wait: it submits what is queued.
func (r *ring) submit() syscall.Errno {
	_, _, e := syscall.RawSyscall6(sysIoUringEnter, uintptr(r.fd), uintptr(r.queued()), 0, 0, 0, 0)
	return e
}

// setupRing gives l a ring when the kernel has what the mode needs; nil
// and the reason otherwise. It runs on the loop's locked thread, before
// the loop serves anything: it probes IORING_OP_EPOLL_WAIT with the
// loop's own eventfd made readable.
func setupRing(l *Loop) (*ring, error) {
	r, err := newRing()
	if err != nil {
		return nil, err
	}
	one := uint64(1)
	if _, err := unix.Write(l.wakefd, (*[8]byte)(unsafe.Pointer(&one))[:]); err != nil {
		r.close()
		return nil, fmt.Errorf("io_uring probe: %w", err)
	}
	s := r.next()
	s.opcode = opEpollWait
	s.fd = int32(l.epfd)
	s.addr = uint64(uintptr(unsafe.Pointer(&l.evs[0])))
	s.len = uint32(len(l.evs))
	s.userData = tagWait
	r.publish()
	_, _, e := syscall.RawSyscall6(sysIoUringEnter, uintptr(r.fd), 1, 1, enterGetEvents, 0, 0)
	var buf [8]byte
	_, _ = unix.Read(l.wakefd, buf[:])
	if e != 0 {
		r.close()
		return nil, fmt.Errorf("io_uring probe: io_uring_enter: %w", e)
	}
	head := *r.cqHead
	if head == atomic.LoadUint32(r.cqTail) {
		r.close()
		return nil, errors.New("io_uring probe: no completion")
	}
	res := r.cqes[head&*r.cqMask].res
	atomic.StoreUint32(r.cqHead, head+1)
	if res != 1 {
		r.close()
		return nil, fmt.Errorf("io_uring probe: IORING_OP_EPOLL_WAIT: %w", syscall.Errno(-res))
	}
	return r, nil
}

// ringEntries is the size of a loop's submission ring (a power of two;
// tests make it small so that a turn's requests overflow it).
var ringEntries uint32 = 256

// sendQ is what Write took for one descriptor and the kernel has not:
// buf[off:], sent at the end of the loop's turn.
type sendQ struct {
	buf    []byte
	off    int
	err    syscall.Errno // a failed send's: Write returns it from then on
	dirty  bool          // in Loop.dirty
	full   bool          // the socket took less than offered: sent on Out
	inRing bool          // a send of it is in the submission ring
}

func (q *sendQ) pending() int { return len(q.buf) - q.off }

// maxQueued bounds what Write takes for one descriptor that the kernel
// has not: past it Write returns EAGAIN and the handler waits for Out, as
// it does for a full socket.
const maxQueued = 256 << 10

// Send buffers are shared by a loop's sessions: one goes back to the
// loop's free list once its bytes are out, so an idle session holds none.
const (
	sendBufSize  = 16 << 10
	maxSpareBufs = 16
)

func (l *Loop) takeBuf(n int) []byte {
	if k := len(l.spare); k > 0 && n <= sendBufSize {
		b := l.spare[k-1]
		l.spare[k-1] = nil
		l.spare = l.spare[:k-1]
		return b
	}
	return make([]byte, 0, max(n, sendBufSize))
}

func (l *Loop) putBuf(b []byte) {
	if cap(b) == sendBufSize && len(l.spare) < maxSpareBufs {
		l.spare = append(l.spare, b[:0])
	}
}

// queueWrite is Write's io_uring mode: p's first bytes (up to maxQueued
// held for fd) are copied to fd's queue, to go out with the turn's other
// sends.
func (l *Loop) queueWrite(fd int, p []byte) (int, syscall.Errno) {
	q := &l.sends[fd]
	switch {
	case q.err != 0:
		return 0, q.err
	case q.inRing:
		return 0, unix.EAGAIN // (not between turns: see waitRing)
	}
	room := maxQueued - q.pending()
	if room <= 0 {
		return 0, unix.EAGAIN
	}
	p = p[:min(len(p), room)]
	if q.buf == nil {
		q.buf = l.takeBuf(len(p))
	} else if q.off > 0 && q.off >= len(q.buf)/2 {
		// What the socket took goes: a queue that never quite drains (a
		// long answer to a slow reader) must not grow without end.
		q.buf, q.off = q.buf[:copy(q.buf, q.buf[q.off:])], 0
	}
	q.buf = append(q.buf, p...)
	raceReleaseIO()
	if !q.dirty && !q.full {
		q.dirty = true
		l.dirty = append(l.dirty, int32(fd))
	}
	return len(p), 0
}

// takeDirty clears fd's dirty mark and reports whether its queue is to be
// sent now: it has bytes, no send of it is in the ring, the
// socket is not known full (Out will say), and fd is still registered.
func (l *Loop) takeDirty(fd int) (*sendQ, bool) {
	q := &l.sends[fd]
	q.dirty = false
	return q, !q.full && !q.inRing && q.pending() > 0 && l.handlers[fd] != nil
}

// queueSends puts a send of every dirty queue in the ring and returns how
// many are there (none is in flight after the io_uring_enter that submits
// it: MSG_DONTWAIT). A full ring is submitted and its completions handled
// on the way.
func (l *Loop) queueSends() int {
	n := 0
	for _, fd32 := range l.dirty {
		fd := int(fd32)
		q, ok := l.takeDirty(fd)
		if !ok {
			continue
		}
		if l.ring.full() {
			l.submitReap()
			n = 0
			if l.ring.full() {
				// (Submitted only in part; the rest waits for the turn's
				// wait.)
				q.dirty = true
				l.redirty = append(l.redirty, fd32)
				continue
			}
		}
		s := l.ring.next()
		s.opcode = opSend
		s.fd = int32(fd)
		s.addr = uint64(uintptr(unsafe.Pointer(&q.buf[q.off])))
		s.len = uint32(q.pending())
		s.opFlags = unix.MSG_NOSIGNAL | unix.MSG_DONTWAIT | unix.MSG_WAITALL
		s.userData = tagSend | uint64(fd)
		l.ring.publish()
		l.batch = append(l.batch, s)
		q.inRing = true
		n++
	}
	l.dirty, l.redirty = append(l.dirty[:0], l.redirty...), l.redirty[:0]
	return n
}

// sendQueued is queueSends for a direct turn: each dirty queue goes out
// with one sendto(2), its result taken as a ring send's would be.
func (l *Loop) sendQueued() {
	for _, fd32 := range l.dirty {
		fd := int(fd32)
		q, ok := l.takeDirty(fd)
		if !ok {
			continue
		}
		n, e := writeNow(fd, q.buf[q.off:])
		res := int32(n)
		if e != 0 {
			res = -int32(e)
		}
		l.sent(fd, res)
	}
	l.dirty = l.dirty[:0]
}

// reap handles every completion in the ring: a send's or a read-ahead's
// result, or the epoll wait's (its number of events goes to l.ready).
func (l *Loop) reap() {
	r := l.ring
	for {
		head := *r.cqHead
		if head == atomic.LoadUint32(r.cqTail) {
			return
		}
		c := r.cqes[head&*r.cqMask]
		atomic.StoreUint32(r.cqHead, head+1)
		switch c.userData &^ 0xffffffff {
		case tagWait:
			l.waiting = false
			switch e := syscall.Errno(-c.res); {
			case c.res >= 0:
				l.ready = int(c.res)
			case e == unix.EINTR || e == unix.EAGAIN || e == unix.ECANCELED:
				// (ECANCELED: a send before it in the chain was short.)
				l.ready = 0
			default:
				// EBADF/EINVAL: the loop's own state is broken.
				panic(fmt.Sprintf("evloop: IORING_OP_EPOLL_WAIT: %v", e))
			}
		case tagSend:
			l.sent(int(uint32(c.userData)), c.res)
		case tagRecv:
			l.readDone(int(uint32(c.userData)), c.res)
		}
	}
}

// sent takes a send's result: what the socket took leaves the queue; a
// socket that took less waits for Out; an error stays for Write to report
// (the socket's own events report it to the handler too: a reset or
// closed connection is EPOLLERR/EPOLLHUP).
func (l *Loop) sent(fd int, res int32) {
	if fd >= len(l.sends) {
		return
	}
	q := &l.sends[fd]
	q.inRing = false
	switch {
	case syscall.Errno(-res) == unix.ECANCELED:
		// Not tried: a send before it in the chain was short. It goes
		// with the next turn's.
		if !q.dirty && q.pending() > 0 {
			q.dirty = true
			l.dirty = append(l.dirty, int32(fd))
		}
		return
	case res >= 0:
		q.off += int(res)
		if q.pending() == 0 {
			l.putBuf(q.buf)
			q.buf, q.off = nil, 0
		} else {
			q.full = true
		}
	case syscall.Errno(-res) == unix.EAGAIN:
		q.full = true
	default:
		q.err = syscall.Errno(-res)
		l.putBuf(q.buf)
		q.buf, q.off = nil, 0
	}
	if l.handlers[fd] != nil {
		l.register(fd)
	}
}

// waitRing is wait in io_uring mode: one io_uring_enter submits the turn's
// sends and waits for the epoll wait's completion (raw, with a timeout of
// busyMS, or through the runtime), as wait does with epoll_pwait.
//
//go:noinline
func (l *Loop) waitRing() int {
	sends := l.queueSends()
	if n := l.ready; n >= 0 {
		// Events came while queueSends emptied a full ring: the sends go
		// now, the events are handled without waiting.
		l.ready = -1
		l.submitReap()
		if l.ready >= 0 {
			panic("evloop: two epoll waits completed")
		}
		return n
	}
	if l.waiting && sends > 0 || l.ring.full() {
		// The sends cannot be linked to the wait: one is in the ring
		// already (an earlier turn's io_uring_enter ended before it
		// did), or the sends take every entry. They go first, and the
		// loop takes their results before it waits.
		l.submitReap()
		sends = 0
	}
	if !l.waiting {
		for _, s := range l.batch {
			s.flags |= sqeIOLink
		}
		l.batch = l.batch[:0]
		s := l.ring.next()
		s.opcode = opEpollWait
		s.fd = int32(l.epfd)
		s.addr = uint64(uintptr(unsafe.Pointer(&l.evs[0])))
		s.len = uint32(len(l.evs))
		s.userData = tagWait
		l.ring.publish()
		l.waiting = true
	}
	minComplete := uintptr(sends + 1)
	var e syscall.Errno
	if l.raw {
		l.ts = unix.NsecToTimespec(int64(l.busyMS) * 1e6)
		l.arg.ts = uint64(uintptr(unsafe.Pointer(&l.ts)))
		_, _, e = syscall.RawSyscall6(sysIoUringEnter, uintptr(l.ring.fd), uintptr(l.ring.queued()), minComplete, enterGetEvents|enterExtArg, uintptr(unsafe.Pointer(&l.arg)), unsafe.Sizeof(l.arg))
	} else {
		_, _, e = syscall.Syscall6(sysIoUringEnter, uintptr(l.ring.fd), uintptr(l.ring.queued()), minComplete, enterGetEvents, 0, 0)
	}
	l.reap()
	if n := l.ready; n >= 0 {
		l.ready = -1
		if !l.raw {
			l.raw = spareP()
		}
		return n
	}
	switch e {
	case unix.ETIME:
		l.raw = false
	case 0, unix.EINTR, unix.EAGAIN, unix.EBUSY:
		// A signal (the runtime's preemption: run calls wait again, a
		// preemption point), or an error the submission hid (its result
		// is the number submitted): wait again.
	default:
		panic(fmt.Sprintf("evloop: io_uring_enter: %v", e))
	}
	return 0
}

// ReadAheader is a Handler that lets the loop read for it: in io_uring
// mode, after a wait, the loop reads every socket that epoll reported
// (In, Hup or Error) and whose handler watches In, all in one
// io_uring_enter (IORING_OP_RECV with MSG_DONTWAIT: one recv(2) each,
// tried once during the submission), instead of a recvfrom(2) per handler.
// Both methods run on the loop's goroutine, before the turn's events are
// handed out.
type ReadAheader interface {
	Handler
	// ReadBuf returns where the next read of fd is to go; empty: the
	// loop does not read fd (the handler reads it itself, or not).
	ReadBuf(fd int) []byte
	// ReadDone reports that read as Read would: n > 0 bytes, written to
	// the start of the slice ReadBuf returned; n == 0 with errno 0 at the
	// end of the stream; or an errno (EAGAIN: nothing was there). The
	// handler is to take this result as its next read of fd, in the
	// Event that follows or later.
	ReadDone(fd int, n int, errno syscall.Errno)
}

// readAhead reads, for their handlers, the sockets of the n events in
// l.evs that a ReadAheader watches for In.
func (l *Loop) readAhead(n int) {
	queued := false
	for i := 0; i < n; i++ {
		fd := int(l.evs[i].Fd)
		if fd == l.wakefd || fd >= len(l.handlers) || l.wants[fd]&In == 0 || l.evs[i].Events&(In|Hup|Error) == 0 {
			continue
		}
		ra, ok := l.handlers[fd].(ReadAheader)
		if !ok {
			continue
		}
		b := l.readBuf(ra, fd)
		if len(b) == 0 {
			continue
		}
		if l.ring.full() {
			l.submitReap()
		}
		s := l.ring.next()
		s.opcode = opRecv
		s.fd = int32(fd)
		s.addr = uint64(uintptr(unsafe.Pointer(&b[0])))
		s.len = uint32(min(len(b), 1<<30))
		s.opFlags = unix.MSG_DONTWAIT
		s.userData = tagRecv | uint64(fd)
		l.ring.publish()
		queued = true
	}
	if queued {
		l.submitReap()
		raceAcquireIO()
	}
}

// submitReap submits what the ring holds, unlinked, and takes the
// completions (all there: nothing in it waits in the kernel but an epoll
// wait).
func (l *Loop) submitReap() {
	l.batch = l.batch[:0]
	if e := l.ring.submit(); e != 0 && e != unix.EINTR && e != unix.EAGAIN && e != unix.EBUSY {
		panic(fmt.Sprintf("evloop: io_uring_enter: %v", e))
	}
	l.reap()
}

func (l *Loop) readBuf(ra ReadAheader, fd int) (b []byte) {
	defer func() {
		if r := recover(); r != nil {
			b = nil
			ra.Panicked(r)
		}
	}()
	return ra.ReadBuf(fd)
}

// readDone hands a read-ahead's result to fd's handler.
func (l *Loop) readDone(fd int, res int32) {
	if fd >= len(l.handlers) {
		return
	}
	ra, ok := l.handlers[fd].(ReadAheader)
	if !ok {
		return
	}
	n, errno := int(res), syscall.Errno(0)
	if res < 0 {
		n, errno = 0, syscall.Errno(-res)
	}
	defer func() {
		if r := recover(); r != nil {
			ra.Panicked(r)
		}
	}()
	ra.ReadDone(fd, n, errno)
}
