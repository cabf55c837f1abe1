//go:build race

package evloop

import (
	"errors"
	"syscall"
)

// Under the race detector a loop reads and writes through package
// syscall, whose Read and Write tell the detector that what is written to
// a descriptor happens before it is read (as for every net.Conn): raw
// system calls would hide that, and what a peer in the same process sent
// before its bytes arrived would seem to race with what the loop does on
// reading them. Not for speed.
func sysRead(fd int, p []byte) (int, syscall.Errno) {
	n, err := syscall.Read(fd, p)
	return n, errno(err)
}

func sysWrite(fd int, p []byte) (int, syscall.Errno) {
	n, err := syscall.Write(fd, p)
	return n, errno(err)
}

func errno(err error) syscall.Errno {
	var e syscall.Errno
	if err != nil && !errors.As(err, &e) {
		return syscall.EIO
	}
	return e
}

// raceReleaseIO tells the detector, as syscall.Write does before writing,
// that what the loop did so far happens before what a reader of the
// socket does after reading: in io_uring mode the bytes go out in a later
// io_uring_enter, which the detector does not see. syscall.Write of
// nothing to descriptor -1 does that release and fails (EBADF).
func raceReleaseIO() {
	_, _ = syscall.Write(-1, nil)
}

// raceAcquireIO is the reading side's counterpart, after the loop's
// read-ahead (io_uring reads the detector does not see): syscall.Read
// acquires only after a read that succeeded, and a read of nothing from
// /dev/null succeeds.
func raceAcquireIO() {
	_, _ = syscall.Read(raceDevNull, nil)
}

var raceDevNull, _ = syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
