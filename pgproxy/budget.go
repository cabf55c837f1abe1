package pgproxy

import (
	"errors"
	"sync"
	"time"
)

// memBudget bounds the bytes all client read buffers may hold beyond
// their base size at once, so that many connections announcing large
// messages cannot take the process's memory between them. A reader
// reserves a message's whole announced size before it reads the body (no
// two partly read messages can then wait on each other for memory) and
// allocates only as the bytes arrive.
type memBudget struct {
	mu    sync.Mutex
	avail int64
	// freed is closed and replaced whenever bytes are returned, waking
	// the readers waiting for them.
	freed chan struct{}
}

// errNoBufferMemory: the budget stayed exhausted for the whole wait.
var errNoBufferMemory = errors.New("no buffer memory available")

func newMemBudget(n int64) *memBudget {
	return &memBudget{avail: n, freed: make(chan struct{})}
}

// acquire takes n bytes, waiting up to wait for them, or until done is
// closed.
func (b *memBudget) acquire(n int64, wait time.Duration, done <-chan struct{}) error {
	var timer *time.Timer
	for {
		b.mu.Lock()
		if b.avail >= n {
			b.avail -= n
			b.mu.Unlock()
			return nil
		}
		freed := b.freed
		b.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
		}
		select {
		case <-freed:
		case <-timer.C:
			return errNoBufferMemory
		case <-done:
			return errNoBufferMemory
		}
	}
}

func (b *memBudget) release(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.avail += n
	close(b.freed)
	b.freed = make(chan struct{})
	b.mu.Unlock()
}

// available reports the unreserved bytes (for tests and logs).
func (b *memBudget) available() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.avail
}
