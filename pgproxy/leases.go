package pgproxy

import (
	"sync"

	"github.com/keyholedb/keyhole/creds"
)

// leaseWatcher ends sessions when their lease's credentials are revoked,
// with one goroutine per lease being watched rather than one per session:
// creds hands the same Done channel to every session of an agent and role,
// and an idle session should cost no goroutine that only waits.
type leaseWatcher struct {
	mu      sync.Mutex
	watches map[<-chan struct{}]*leaseWatch
}

type leaseWatch struct {
	conns map[*conn]struct{}
	// quit ends the goroutine once no session watches the lease.
	quit chan struct{}
}

// watch calls c.revoked when l's Done closes, until the returned function
// is called. A lease whose Done is nil never ends.
func (w *leaseWatcher) watch(l *creds.Lease, c *conn) (unwatch func()) {
	if l == nil || l.Done == nil {
		return func() {}
	}
	done := l.Done
	w.mu.Lock()
	if w.watches == nil {
		w.watches = make(map[<-chan struct{}]*leaseWatch)
	}
	lw := w.watches[done]
	if lw == nil {
		lw = &leaseWatch{conns: make(map[*conn]struct{}), quit: make(chan struct{})}
		w.watches[done] = lw
		go w.run(done, lw)
	}
	lw.conns[c] = struct{}{}
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		delete(lw.conns, c)
		if len(lw.conns) == 0 && w.watches[done] == lw {
			delete(w.watches, done)
			close(lw.quit)
		}
	}
}

func (w *leaseWatcher) run(done <-chan struct{}, lw *leaseWatch) {
	select {
	case <-done:
	case <-lw.quit:
		return
	}
	w.mu.Lock()
	if w.watches[done] == lw {
		delete(w.watches, done)
	}
	conns := make([]*conn, 0, len(lw.conns))
	for c := range lw.conns {
		conns = append(conns, c)
	}
	w.mu.Unlock()
	for _, c := range conns {
		c.revoked()
	}
}
