// Package evloop runs the steady state of relayed sessions on event
// loops instead of goroutines: each Loop is one epoll instance served by
// one goroutine locked to its OS thread, and the sockets it serves are
// plain non-blocking file descriptors outside the Go runtime's network
// poller.
//
// Why: on the project's machine (a VM where every system call costs
// 1.5–2 µs of kernel entry and exit) a relay's CPU per round trip is
// mostly its system calls. A goroutine per session through net.Conn pays
// per round trip a read that finds nothing (the runtime reads first and
// parks on EAGAIN), the runtime's own epoll_pwait, and futex wake-ups
// handing goroutines between threads: 7.7–9.9 calls per pgbench
// transaction where PgBouncer (one thread, one epoll) makes 4.7–5.0. A
// loop reads a socket only when epoll reports it readable and wakes no
// other thread, so a round trip is its four reads and writes plus a share
// of one epoll_wait (internal/benchtools/epollrelay measures that floor).
//
// The contract:
//   - Detach takes a connected *net.TCPConn (anything else, e.g. TLS, is
//     refused) out of the Go poller and returns its socket as a
//     non-blocking descriptor; Attach gives one back as a net.Conn, for a
//     session that leaves the loop (the goroutine relay handles what the
//     loop does not).
//   - Add, Modify and Remove register descriptors level-triggered; they and
//     every Handler method run on the loop's goroutine only. Post is how
//     any other goroutine reaches a loop's sessions (a revocation, a timer,
//     a hand-over): the function runs on the loop between batches of
//     events.
//   - Read is one raw recvfrom(2) on a non-blocking descriptor: no
//     entersyscall/exitsyscall, never blocking. Loop.Write never blocks
//     either: in epoll mode it is one raw sendto(2); in io_uring mode
//     (below) it copies the bytes to the descriptor's send queue. Either
//     way it may take fewer bytes than offered, or none (EAGAIN), and the
//     handler then waits for Out. Remove hands back what Write took and
//     the socket did not.
//   - A handler must not block: no channel waits, no locks held by goroutines
//     that may themselves wait, no network calls. A panic in a handler is
//     recovered and reported to that handler's Panicked only.
//
// A loop that has just had events waits for the next ones in a raw
// epoll_pwait of up to 2 ms, keeping its P: through the runtime's wrapper
// sysmon takes the P of a thread in a system call away whenever another
// goroutine could use it, and the returning thread has to get one back
// (futex wake-ups, thread switches: 0.3 futex and 0.25 nanosleep calls per
// pgbench transaction under load). A stop-the-world interrupts a raw wait
// with its preemption signal (see Loop.wait). After 2 ms with no event the
// loop waits through the runtime's wrapper, holding no P, for as long as
// it is idle.
//
// io_uring mode (uring.go; Linux 6.15 or later, else epoll mode; the
// environment variable KEYHOLE_IO_URING=off turns it off): a loop's
// writes of one turn and its wait for the next events are one
// io_uring_enter. Write queues bytes; when the loop next waits, each
// queue becomes one IORING_OP_SEND with MSG_DONTWAIT (tried once, during
// the submission, never waiting in the kernel: sendto(2) on a non-blocking
// socket, batched) and the wait is an IORING_OP_EPOLL_WAIT on the same
// epoll instance, so level-triggered registrations behave as in epoll
// mode. A send that the socket took only in part leaves the rest queued
// and the loop watches Out for it itself; such a send ends the wait
// submitted with it at once (the turn's sends and the wait are one linked
// chain), so the rest never waits for an unrelated event. Reads: after a wait, the loop
// reads every reported socket whose handler is a ReadAheader watching In,
// all in a second io_uring_enter (IORING_OP_RECV with MSG_DONTWAIT, into
// the buffer the handler names), and hands each result to its handler
// before the turn's events. A turn is then two io_uring_enter calls
// whatever it carries, where epoll mode (and PgBouncer) make a read and a
// write per message and an epoll_wait. That pays under load, not when
// each wait brings one event: while a moving average of the events per
// wait is under 1.125 (one client, a quiet hour) a turn is an epoll mode
// turn instead — epoll_pwait, the handlers' own reads, and each Write sent
// at once while its descriptor's queue is empty — and a turn is never
// direct while the ring has a wait or sends in flight
// (KEYHOLE_IO_URING=ring keeps every turn on the ring).
package evloop
