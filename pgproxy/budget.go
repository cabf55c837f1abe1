package pgproxy

import (
	"time"

	"github.com/keyholedb/keyhole/internal/membudget"
)

// memBudget bounds the bytes all client read buffers may hold beyond
// their base size at once (Limits.BufferMemory); the type is shared with
// the MySQL front end (internal/membudget).
type memBudget struct{ b *membudget.Budget }

// errNoBufferMemory: the budget stayed exhausted for the whole wait.
var errNoBufferMemory = membudget.ErrNoMemory

func newMemBudget(n int64) *memBudget { return &memBudget{membudget.New(n)} }

func (m *memBudget) acquire(n int64, wait time.Duration, done <-chan struct{}) error {
	return m.b.Acquire(n, wait, done)
}

func (m *memBudget) release(n int64) { m.b.Release(n) }

func (m *memBudget) available() int64 { return m.b.Available() }
