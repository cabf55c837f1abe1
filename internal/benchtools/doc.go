// Package benchtools holds the small programs scripts/bench.sh builds and
// runs next to keyhole: naiverelay (the simplest Go proxy: two io.Copy
// goroutines per connection, a baseline for what relaying alone costs),
// epollrelay (the floor of a Go relay: raw sockets on one epoll loop, no
// goroutine per connection, no netpoller) and idleconns (holds idle
// sessions open to measure resident memory per session). They are
// measurement tools, not part of keyhole.
package benchtools
