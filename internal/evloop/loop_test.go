package evloop

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pair returns both ends of a loopback TCP connection.
func pair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	t.Cleanup(func() { client.Close() })
	return client, server
}

// echo is a handler that writes back what it reads, upper-casing nothing:
// the simplest session. A read of "panic" panics.
type echo struct {
	l      *Loop
	fd     int
	closed chan struct{}
	err    chan any
}

func (e *echo) Event(fd int, events uint32) {
	var buf [64]byte
	n, errno := Read(fd, buf[:])
	switch {
	case errno == syscall.EAGAIN:
		return
	case errno != 0 || n == 0:
		e.close()
		return
	}
	if bytes.Equal(buf[:n], []byte("panic")) {
		panic("asked to")
	}
	if w, errno := e.l.Write(fd, buf[:n]); errno != 0 || w != n {
		e.close()
	}
}

func (e *echo) Panicked(v any) {
	e.err <- v
	e.close()
}

func (e *echo) close() {
	_, _ = e.l.Remove(e.fd)
	Close(e.fd)
	close(e.closed)
}

func startEcho(t *testing.T, l *Loop, server net.Conn) *echo {
	t.Helper()
	fd, err := Detach(server)
	if err != nil {
		t.Fatal(err)
	}
	e := &echo{l: l, fd: fd, closed: make(chan struct{}), err: make(chan any, 1)}
	added := make(chan error, 1)
	l.Post(func() { added <- l.Add(fd, In, e) })
	if err := <-added; err != nil {
		t.Fatal(err)
	}
	return e
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != msg {
		t.Fatalf("echo %q, want %q", got, msg)
	}
}

func TestEchoAndPanicIsolation(t *testing.T) {
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	c1, s1 := pair(t)
	c2, s2 := pair(t)
	e1 := startEcho(t, l, s1)
	startEcho(t, l, s2)
	roundTrip(t, c1, "hello")
	roundTrip(t, c2, "world")

	// A panic in one session's handler ends that session only.
	if _, err := c1.Write([]byte("panic")); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-e1.err:
		if v != "asked to" {
			t.Fatalf("Panicked(%v)", v)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Panicked not called")
	}
	<-e1.closed
	_ = c1.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c1.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after the panic the client read %d, %v; want EOF", n, err)
	}
	roundTrip(t, c2, "still here")
}

func TestPostOrderAndFromLoop(t *testing.T) {
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		got []int
	)
	done := make(chan struct{})
	for i := range 100 {
		l.Post(func() {
			mu.Lock()
			got = append(got, i)
			mu.Unlock()
		})
	}
	// A function posted from the loop itself runs after the current ones.
	l.Post(func() { l.Post(func() { close(done) }) })
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("posted functions did not run")
	}
	mu.Lock()
	defer mu.Unlock()
	for i, v := range got {
		if v != i {
			t.Fatalf("posted functions ran out of order: %v", got)
		}
	}
	if len(got) != 100 {
		t.Fatalf("%d of 100 posted functions ran", len(got))
	}
}

func TestDetachAttach(t *testing.T) {
	c, s := pair(t)
	fd, err := Detach(s)
	if err != nil {
		t.Fatal(err)
	}
	// The detached descriptor is non-blocking: nothing to read is EAGAIN.
	if _, errno := Read(fd, make([]byte, 8)); errno != syscall.EAGAIN {
		t.Fatalf("read of an empty detached socket: %v, want EAGAIN", errno)
	}
	// Bytes the client sent while the socket was detached are there after
	// it is attached again.
	if _, err := c.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	s2, err := Attach(fd)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	_ = s2.SetDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 3)
	if _, err := io.ReadFull(s2, got); err != nil || string(got) != "abc" {
		t.Fatalf("attached read %q, %v", got, err)
	}
	if _, err := s2.Write([]byte("xyz")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "xyz" {
		t.Fatalf("client read %q, %v", got, err)
	}
}

func TestDetachRefusesTLS(t *testing.T) {
	c, _ := pair(t)
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	if _, err := Detach(tc); !errors.Is(err, ErrNotSocket) {
		t.Fatalf("Detach(TLS) = %v, want ErrNotSocket", err)
	}
}

func TestModifyAndRemove(t *testing.T) {
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	_, s := pair(t)
	fd, err := Detach(s)
	if err != nil {
		t.Fatal(err)
	}
	defer Close(fd)
	res := make(chan error, 1)
	l.Post(func() {
		e := &echo{l: l, fd: fd, closed: make(chan struct{}), err: make(chan any, 1)}
		if err := l.Add(fd, In, e); err != nil {
			res <- err
			return
		}
		if err := l.Modify(fd, In|Out); err != nil || l.Watching(fd) != In|Out {
			res <- errors.Join(err, errors.New("Watching does not report the new events"))
			return
		}
		if _, err := l.Remove(fd); err != nil {
			res <- err
			return
		}
		if err := l.Modify(fd, In); err == nil {
			res <- errors.New("Modify of a removed descriptor succeeded")
			return
		}
		res <- nil
	})
	if err := <-res; err != nil {
		t.Fatal(err)
	}
}

// onLoop runs f on l's goroutine and waits for it.
func onLoop[T any](l *Loop, f func() T) T {
	ch := make(chan T, 1)
	l.Post(func() { ch <- f() })
	return <-ch
}

// A loop waiting raw (holding its P) must not hold up a stop-the-world:
// the runtime's preemption signal ends the wait (EINTR) and the goroutine
// stops at its next call. The raw wait here would last a minute, so a
// garbage collection that had to wait it out fails the test.
func TestStopTheWorldInterruptsRawWait(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(loopCount() + 2))
	l, err := newLoop(60_000)
	if err != nil {
		t.Fatal(err)
	}
	client, server := pair(t)
	startEcho(t, l, server)
	roundTrip(t, client, "warm")
	if !onLoop(l, func() bool { return l.raw }) {
		t.Fatal("with a P to spare the loop should wait raw")
	}
	done := make(chan struct{})
	go func() {
		for range 20 {
			runtime.GC()
			roundTrip(t, client, "again") // back in a raw wait
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("garbage collections waited for the loop's raw epoll_pwait")
	}
}

// With no P to spare (GOMAXPROCS no more than the loops) a raw wait would
// keep every other goroutine waiting: the loop waits through the runtime.
func TestNoRawWaitWithoutSpareP(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	client, server := pair(t)
	startEcho(t, l, server)
	roundTrip(t, client, "one")
	if onLoop(l, func() bool { return l.raw }) {
		t.Fatal("GOMAXPROCS 1: the loop must not wait raw")
	}
	roundTrip(t, client, "two")
}
