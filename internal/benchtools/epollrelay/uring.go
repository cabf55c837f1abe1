package main

// -uring: the relay with its socket writes and its wait batched through
// io_uring. Every socket (and the listener) has a multishot POLL_ADD
// armed; a half's write is an IORING_OP_SEND queued in the submission
// ring; and one io_uring_enter per loop turn submits every queued send and
// waits for the next completions. Reads stay recvfrom(2) calls: a
// transaction through the relay then costs its two reads and a share of
// one io_uring_enter, where the epoll relay (and PgBouncer) make two
// reads, two writes and a share of one epoll_wait. An experiment: it shows
// what batching the system calls would save on this machine.

import (
	"log"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	sysIoUringSetup = 425
	sysIoUringEnter = 426

	opPollAdd    = 6
	opPollRemove = 7
	opSend       = 26

	setupSingleIssuer = 1 << 12
	setupDeferTaskrun = 1 << 13
	enterGetEvents    = 1
	pollAddMulti      = 1
	sqeCQESkipSuccess = 1 << 6
	cqeFMore          = 1 << 1

	offSQRing = 0
	offSQEs   = 0x10000000
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

type ring struct {
	fd                     int
	sqHead, sqTail, sqMask *uint32
	sqArray                []uint32
	sqes                   []sqe
	cqHead, cqTail, cqMask *uint32
	cqes                   []cqe
	queued                 uint32 // SQEs written since the last enter
}

func newRing(entries uint32) *ring {
	var p uringParams
	p.flags = setupSingleIssuer | setupDeferTaskrun
	p.cqEntries = entries * 4
	p.flags |= 1 << 4 // IORING_SETUP_CQSIZE
	fd, _, e := syscall.Syscall(sysIoUringSetup, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		log.Fatalf("io_uring_setup: %v", e)
	}
	sqSize := int(p.sqOff.array + p.sqEntries*4)
	cqSize := int(p.cqOff.cqes + p.cqEntries*uint32(unsafe.Sizeof(cqe{})))
	size := max(sqSize, cqSize) // IORING_FEAT_SINGLE_MMAP
	mem, err := unix.Mmap(int(fd), offSQRing, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		log.Fatalf("mmap ring: %v", err)
	}
	sqeMem, err := unix.Mmap(int(fd), offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(sqe{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		log.Fatalf("mmap sqes: %v", err)
	}
	base := unsafe.Pointer(&mem[0])
	at := func(off uint32) *uint32 { return (*uint32)(unsafe.Add(base, off)) }
	r := &ring{
		fd:     int(fd),
		sqHead: at(p.sqOff.head), sqTail: at(p.sqOff.tail), sqMask: at(p.sqOff.ringMask),
		sqArray: unsafe.Slice(at(p.sqOff.array), p.sqEntries),
		sqes:    unsafe.Slice((*sqe)(unsafe.Pointer(&sqeMem[0])), p.sqEntries),
		cqHead:  at(p.cqOff.head), cqTail: at(p.cqOff.tail), cqMask: at(p.cqOff.ringMask),
		cqes: unsafe.Slice((*cqe)(unsafe.Add(base, p.cqOff.cqes)), p.cqEntries),
	}
	return r
}

// get returns a free SQE (submitting what is queued when the ring is full).
func (r *ring) get() *sqe {
	tail := *r.sqTail
	if tail-atomic.LoadUint32(r.sqHead) > *r.sqMask {
		r.enter(0)
		tail = *r.sqTail
	}
	i := tail & *r.sqMask
	r.sqArray[i] = i
	s := &r.sqes[i]
	*s = sqe{}
	atomic.StoreUint32(r.sqTail, tail+1)
	r.queued++
	return s
}

// enter submits the queued SQEs and waits for at least wait completions.
func (r *ring) enter(wait uint32) {
	for {
		var flags uintptr
		if wait > 0 {
			flags = enterGetEvents
		}
		n, _, e := syscall.RawSyscall6(sysIoUringEnter, uintptr(r.fd), uintptr(r.queued), uintptr(wait), flags, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			log.Fatalf("io_uring_enter: %v", e)
		}
		r.queued -= uint32(n)
		return
	}
}

const (
	udPoll   = 1 << 32
	udSend   = 2 << 32
	udRemove = 3 << 32
)

func (l *loop) armPoll(fd int) {
	s := l.ring.get()
	s.opcode = opPollAdd
	s.fd = int32(fd)
	s.len = pollAddMulti
	s.opFlags = unix.POLLIN
	s.userData = udPoll | uint64(fd)
}

// queueSend queues h's bytes for h.dst. They are copied to the loop's
// send arena and the send posts no completion when it succeeds
// (IOSQE_CQE_SKIP_SUCCESS: with MSG_WAITALL a short send is a failure and
// does post one), so that a loop turn's sends cost no completions to reap
// and the next io_uring_enter waits for the next poll completion, not for
// the sends. The arena is reused circularly: a send still in flight after
// sendArena bytes of later sends would be overwritten — never the case
// for pgbench's small messages, which the kernel sends at submission;
// this is a measuring tool, not a relay to run.
func (l *loop) queueSend(h *half) {
	n := h.n - h.off
	if l.arenaAt+n > len(l.arena) {
		l.arenaAt = 0
	}
	b := l.arena[l.arenaAt : l.arenaAt+n]
	l.arenaAt += n
	copy(b, h.buf[h.off:h.n])
	s := l.ring.get()
	s.opcode = opSend
	s.flags = sqeCQESkipSuccess
	s.fd = int32(h.dst)
	s.addr = uint64(uintptr(unsafe.Pointer(&b[0])))
	s.len = uint32(n)
	s.opFlags = unix.MSG_NOSIGNAL | unix.MSG_WAITALL
	s.userData = udSend | uint64(h.src)
	h.off, h.n = 0, 0
}

const sendArena = 4 << 20

// closing cancels x's poll, which holds the socket open.
func (l *loop) closing(x *half) {
	s := l.ring.get()
	s.opcode = opPollRemove
	s.addr = udPoll | uint64(x.src)
	s.userData = udRemove
}

func (l *loop) runUring() {
	l.ring = newRing(256)
	l.arena = make([]byte, sendArena)
	l.armPoll(l.lfd)
	for {
		l.ring.enter(1)
		for {
			head := *l.ring.cqHead
			if head == atomic.LoadUint32(l.ring.cqTail) {
				break
			}
			c := l.ring.cqes[head&*l.ring.cqMask]
			atomic.StoreUint32(l.ring.cqHead, head+1)
			l.complete(c)
		}
	}
}

func (l *loop) complete(c cqe) {
	fd := int(c.userData & 0xffffffff)
	switch c.userData &^ 0xffffffff {
	case udPoll:
		if fd == l.lfd {
			l.accept()
		} else if h := l.fds[fd]; h != nil {
			l.pumpUring(h)
		}
		if c.flags&cqeFMore == 0 && (fd == l.lfd || l.fds[fd] != nil) {
			l.armPoll(fd) // the multishot poll ended (an overflow): again
		}
	case udSend:
		// Only a failed or short send completes (see queueSend).
		if h := l.fds[fd]; h != nil {
			l.closePair(h)
		}
	}
}

// pumpUring reads h.src and queues what it read, until a read is short: a
// full buffer may have left bytes behind, which no new poll completion
// would announce.
func (l *loop) pumpUring(h *half) {
	for l.recvOnce(h) {
	}
}

func (l *loop) recvOnce(h *half) bool {
	n, e := sys(unix.SYS_RECVFROM, uintptr(h.src), uintptr(unsafe.Pointer(&h.buf[0])), uintptr(len(h.buf)), 0, 0, 0)
	if e == unix.EAGAIN || e == unix.EINTR {
		return false
	}
	if e != 0 || n == 0 {
		l.closePair(h)
		return false
	}
	h.off, h.n = 0, n
	l.queueSend(h)
	return n == len(h.buf)
}
