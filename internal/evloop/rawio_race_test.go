//go:build race

package evloop

import (
	"runtime"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRaceSeesSocketOrder: what one goroutine did before writing to a
// socket happens, for the race detector, before what another does after
// Read got those bytes, and likewise for Write (without it every relay
// test that reads state a session keeps would report a race).
func TestRaceSeesSocketOrder(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	var shared int
	go func() {
		shared = 1
		_, _ = syscall.Write(fds[0], []byte{1})
	}()
	readOne := func(fd int) {
		var b [1]byte
		for {
			n, e := Read(fd, b[:])
			if e == syscall.EAGAIN {
				runtime.Gosched()
				continue
			}
			if e != 0 || n != 1 {
				t.Fatalf("read: %d, %v", n, e)
			}
			return
		}
	}
	readOne(fds[1])
	if shared != 1 {
		t.Fatal("the write before the bytes was not seen")
	}

	done := make(chan int)
	go func() {
		var b [1]byte
		for {
			if n, err := syscall.Read(fds[0], b[:]); n == 1 && err == nil {
				break
			}
			runtime.Gosched()
		}
		done <- shared
	}()
	shared = 2
	if n, e := writeNow(fds[1], []byte{2}); n != 1 || e != 0 {
		t.Fatalf("write: %d, %v", n, e)
	}
	if got := <-done; got != 2 {
		t.Fatalf("read %d after the bytes, want 2", got)
	}
}
