// Package membudget bounds the memory that the client read buffers of a
// front end may hold at once, so that many connections announcing large
// messages cannot take the process's memory between them. The Postgres
// and MySQL front ends share it (limits.buffer_memory).
package membudget

import (
	"errors"
	"sync"
	"time"
)

// Budget is a number of bytes that readers reserve before they read a
// large message and return when its buffer is released. A reader reserves
// what a message may need before it reads the body (no two partly read
// messages can then wait on each other for memory) and allocates only as
// the bytes arrive.
type Budget struct {
	mu    sync.Mutex
	avail int64
	// freed is closed and replaced whenever bytes are returned, waking
	// the readers waiting for them.
	freed chan struct{}
}

// ErrNoMemory: the budget stayed exhausted for the whole wait.
var ErrNoMemory = errors.New("no buffer memory available")

// New returns a budget of n bytes.
func New(n int64) *Budget {
	return &Budget{avail: n, freed: make(chan struct{})}
}

// Acquire takes n bytes, waiting up to wait for them, or until done is
// closed.
func (b *Budget) Acquire(n int64, wait time.Duration, done <-chan struct{}) error {
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
			return ErrNoMemory
		case <-done:
			return ErrNoMemory
		}
	}
}

// Release returns n bytes.
func (b *Budget) Release(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.avail += n
	close(b.freed)
	b.freed = make(chan struct{})
	b.mu.Unlock()
}

// Available reports the unreserved bytes (for tests and logs).
func (b *Budget) Available() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.avail
}
