// Command epollrelay is the floor of a Go relay for scripts/bench.sh: like
// naiverelay it copies bytes both ways to one upstream and understands
// nothing of the protocol, but without the Go runtime's network poller or
// a goroutine per connection. Each loop is one goroutine locked to its OS
// thread that owns a listener (SO_REUSEPORT, so the kernel spreads the
// clients over the loops) and an epoll instance, and moves bytes between
// raw non-blocking sockets with read(2)/write(2) or splice(2). With one
// loop (the default) it is built like PgBouncer: one thread, one epoll.
//
// What it costs above PgBouncer is what Go itself costs a relay (the
// system call wrappers' entersyscall/exitsyscall, the runtime's own
// threads); what keyhole costs above it is the price of goroutines, the
// netpoller and of parsing, deciding and auditing.
//
//	epollrelay -listen 127.0.0.1:7000 -upstream 127.0.0.1:5432 [-loops 1] [-raw] [-edge] [-splice]
//
// -raw makes every system call of the loop with RawSyscall: no
// entersyscall/exitsyscall, so the runtime never learns the thread is
// blocked in epoll_wait. That is safe here only because the loop allocates
// nothing after its set-up (no garbage collection needs to stop it) and
// because epoll_wait then waits at most 50 ms, so a stop-the-world the
// runtime might still start is held up that long at most.
//
// (An -uring variant, which batched a loop turn's writes and its wait into
// one io_uring_enter, measured what fewer system calls would save; it is
// gone now that internal/evloop's io_uring mode does that for keyhole.
// docs/performance.md keeps its figures.)
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

var (
	raw    = flag.Bool("raw", false, "make the loop's system calls with RawSyscall (no entersyscall/exitsyscall)")
	edge   = flag.Bool("edge", false, "edge-triggered epoll (read until EAGAIN) instead of level-triggered")
	splice = flag.Bool("splice", false, "move bytes with splice(2) through a pipe per direction instead of read/write")
	bufSz  = flag.Int("buf", 16<<10, "read buffer per direction, bytes")
)

// half is one direction of a relayed connection: bytes read from src are
// written to dst. What could not be written yet waits in buf[off:n] (or,
// with -splice, in the pipe: pending bytes), and src is not read again
// until it has gone.
type half struct {
	src, dst int
	buf      []byte
	off, n   int
	pipe     [2]int // -splice: read end, write end
	pending  int    // -splice: bytes in the pipe
	peer     *half  // the other direction
	eofSeen  bool
}

type pair struct {
	up, down half // up: client -> upstream; down: upstream -> client
	closed   bool
}

type loop struct {
	epfd  int
	lfd   int
	upTo  unix.SockaddrInet4
	fds   map[int]*half // by src fd: the half that reads it; by dst: found via peer
	evs   []unix.EpollEvent
	wants map[int]uint32
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "listen `addr`")
	upstream := flag.String("upstream", "127.0.0.1:5432", "upstream `addr`")
	loops := flag.Int("loops", 1, "event loops, each on its own locked OS thread")
	flag.Parse()

	la, err := sockaddr(*listen)
	if err != nil {
		log.Fatal(err)
	}
	ua, err := sockaddr(*upstream)
	if err != nil {
		log.Fatal(err)
	}
	// Bind the first listener to learn the port (when 0 is asked for).
	first, err := listener(la)
	if err != nil {
		log.Fatal(err)
	}
	sa, err := unix.Getsockname(first)
	if err != nil {
		log.Fatal(err)
	}
	la.Port = sa.(*unix.SockaddrInet4).Port
	lfds := []int{first}
	for i := 1; i < *loops; i++ {
		fd, err := listener(la)
		if err != nil {
			log.Fatal(err)
		}
		lfds = append(lfds, fd)
	}
	fmt.Fprintf(os.Stdout, "listening %s:%d\n", net.IP(la.Addr[:]), la.Port)
	done := make(chan struct{})
	for _, fd := range lfds {
		l := newLoop(fd, *ua)
		go func() {
			runtime.LockOSThread()
			l.run()
			done <- struct{}{}
		}()
	}
	<-done
}

func sockaddr(s string) (*unix.SockaddrInet4, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return nil, err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, err
	}
	ip := net.ParseIP(host).To4()
	if ip == nil {
		return nil, fmt.Errorf("%s: not an IPv4 address", host)
	}
	a := &unix.SockaddrInet4{Port: p}
	copy(a.Addr[:], ip)
	return a, nil
}

func listener(a *unix.SockaddrInet4) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	if err := unix.Bind(fd, a); err != nil {
		return -1, err
	}
	if err := unix.Listen(fd, 1024); err != nil {
		return -1, err
	}
	return fd, nil
}

func newLoop(lfd int, up unix.SockaddrInet4) *loop {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		log.Fatal(err)
	}
	l := &loop{epfd: epfd, lfd: lfd, upTo: up, fds: map[int]*half{}, evs: make([]unix.EpollEvent, 128), wants: map[int]uint32{}}
	l.ctl(unix.EPOLL_CTL_ADD, lfd, unix.EPOLLIN)
	return l
}

func (l *loop) ctl(op, fd int, events uint32) {
	if *edge && fd != l.lfd {
		events |= unix.EPOLLET
	}
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	if err := unix.EpollCtl(l.epfd, op, fd, &ev); err != nil {
		log.Printf("epoll_ctl %d: %v", fd, err)
	}
	l.wants[fd] = events
}

// want sets the events fd is watched for, with a system call only when
// they change.
func (l *loop) want(fd int, events uint32) {
	if *edge {
		return // edge-triggered fds are registered once for both.
	}
	if l.wants[fd] != events {
		l.ctl(unix.EPOLL_CTL_MOD, fd, events)
	}
}

func (l *loop) run() {
	for {
		n := l.wait()
		for i := 0; i < n; i++ {
			ev := l.evs[i]
			fd := int(ev.Fd)
			if fd == l.lfd {
				l.accept()
				continue
			}
			h := l.fds[fd]
			if h == nil {
				continue
			}
			// Writable: the half writing to fd (the peer of fd's reader)
			// may flush what waits.
			// Edge-triggered, its source may hold bytes no new edge
			// will announce: read on.
			if ev.Events&unix.EPOLLOUT != 0 && h.peer.n+h.peer.pending > 0 {
				if l.flush(h.peer) && *edge {
					l.pump(h.peer)
				}
			}
			if ev.Events&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR) != 0 && l.fds[fd] != nil {
				l.pump(h)
			}
		}
	}
}

func (l *loop) wait() int {
	if !*raw {
		for {
			n, err := unix.EpollWait(l.epfd, l.evs, -1)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				log.Fatal(err)
			}
			return n
		}
	}
	for {
		r, _, e := syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(l.epfd), uintptr(unsafe.Pointer(&l.evs[0])), uintptr(len(l.evs)), 50, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			log.Fatal(e)
		}
		return int(r)
	}
}

func (l *loop) accept() {
	for {
		cfd, _, err := unix.Accept4(l.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			if err != unix.EAGAIN && err != unix.EINTR {
				log.Print(err)
			}
			return
		}
		// A blocking connect to the upstream: set-up cost, not the relay's.
		ufd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			err = unix.Connect(ufd, &l.upTo)
		}
		if err == nil {
			err = unix.SetNonblock(ufd, true)
		}
		if err != nil {
			log.Print(err)
			unix.Close(cfd)
			if ufd >= 0 {
				unix.Close(ufd)
			}
			continue
		}
		for _, fd := range []int{cfd, ufd} {
			_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		}
		p := &pair{}
		p.up = half{src: cfd, dst: ufd, peer: &p.down}
		p.down = half{src: ufd, dst: cfd, peer: &p.up}
		for _, h := range []*half{&p.up, &p.down} {
			if *splice {
				var fds [2]int
				if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
					log.Fatal(err)
				}
				h.pipe = fds
			} else {
				h.buf = make([]byte, *bufSz)
			}
			l.fds[h.src] = h
		}
		ev := uint32(unix.EPOLLIN)
		if *edge {
			ev |= unix.EPOLLOUT
		}
		l.ctl(unix.EPOLL_CTL_ADD, cfd, ev)
		l.ctl(unix.EPOLL_CTL_ADD, ufd, ev)
	}
}

// sys makes a read, write or splice system call, raw or not.
func sys(trap, a1, a2, a3, a4, a5, a6 uintptr) (int, syscall.Errno) {
	var r uintptr
	var e syscall.Errno
	if *raw {
		r, _, e = syscall.RawSyscall6(trap, a1, a2, a3, a4, a5, a6)
	} else {
		r, _, e = syscall.Syscall6(trap, a1, a2, a3, a4, a5, a6)
	}
	if e != 0 {
		return -1, e
	}
	return int(r), 0
}

// pump reads h.src while what it read can be written on at once: once in
// level-triggered mode (epoll reports the socket again if more is there),
// until EAGAIN in edge-triggered mode.
func (l *loop) pump(h *half) {
	for {
		if h.n > h.off || h.pending > 0 {
			return // blocked on the writer; EPOLLOUT of dst resumes it.
		}
		var n int
		var e syscall.Errno
		if *splice {
			n, e = sys(unix.SYS_SPLICE, uintptr(h.src), 0, uintptr(h.pipe[1]), 0, 1<<16, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		} else {
			n, e = sys(unix.SYS_READ, uintptr(h.src), uintptr(unsafe.Pointer(&h.buf[0])), uintptr(len(h.buf)), 0, 0, 0)
		}
		if e == unix.EAGAIN || e == unix.EINTR {
			return
		}
		if e != 0 || n == 0 {
			l.closePair(h)
			return
		}
		if *splice {
			h.pending = n
		} else {
			h.off, h.n = 0, n
		}
		if !l.flush(h) {
			return
		}
		if !*edge {
			return
		}
	}
}

// flush writes what h holds to h.dst; it reports whether all of it went.
// While bytes wait, h.dst is watched for EPOLLOUT and h.src is not read.
func (l *loop) flush(h *half) bool {
	for h.n > h.off || h.pending > 0 {
		var n int
		var e syscall.Errno
		if *splice {
			n, e = sys(unix.SYS_SPLICE, uintptr(h.pipe[0]), 0, uintptr(h.dst), 0, uintptr(h.pending), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		} else {
			n, e = sys(unix.SYS_WRITE, uintptr(h.dst), uintptr(unsafe.Pointer(&h.buf[h.off])), uintptr(h.n-h.off), 0, 0, 0)
		}
		if e == unix.EAGAIN {
			l.want(h.src, l.wants[h.src]&^unix.EPOLLIN)
			l.want(h.dst, l.wants[h.dst]|unix.EPOLLOUT)
			return false
		}
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			l.closePair(h)
			return false
		}
		if *splice {
			h.pending -= n
		} else {
			h.off += n
		}
	}
	h.off, h.n = 0, 0
	l.want(h.src, l.wants[h.src]|unix.EPOLLIN)
	if l.wants[h.dst]&unix.EPOLLOUT != 0 {
		l.want(h.dst, l.wants[h.dst]&^unix.EPOLLOUT)
	}
	return true
}

// closePair closes both sockets of h's connection: a relay for pgbench
// needs no half-close (the client's Terminate ends the session).
func (l *loop) closePair(h *half) {
	for _, x := range []*half{h, h.peer} {
		if l.fds[x.src] == nil {
			continue
		}
		delete(l.fds, x.src)
		delete(l.wants, x.src)
		unix.Close(x.src)
		if *splice {
			unix.Close(x.pipe[0])
			unix.Close(x.pipe[1])
		}
	}
}
