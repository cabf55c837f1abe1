//go:build !race

package evloop

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sysRead and sysWrite are one raw recvfrom(2) and sendto(2) (see Read,
// Write; rawio_race.go has the race detector's). On a socket they are
// read(2) and write(2) without the file layer's work (position lock,
// access checks, fsnotify hooks), which PgBouncer avoids the same way;
// MSG_NOSIGNAL: a write to a reset connection gets EPIPE and no SIGPIPE.
func sysRead(fd int, p []byte) (int, syscall.Errno) {
	r, _, e := syscall.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), 0, 0, 0)
	return int(r), e
}

func sysWrite(fd int, p []byte) (int, syscall.Errno) {
	r, _, e := syscall.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), unix.MSG_NOSIGNAL, 0, 0)
	return int(r), e
}

// raceReleaseIO is for the race detector only (rawio_race.go).
func raceReleaseIO() {}

// raceAcquireIO is for the race detector only (rawio_race.go).
func raceAcquireIO() {}
