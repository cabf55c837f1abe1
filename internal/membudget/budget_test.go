package membudget_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/internal/membudget"
)

func TestBudget(t *testing.T) {
	t.Parallel()
	b := membudget.New(100)
	require.NoError(t, b.Acquire(60, time.Second, nil))
	assert.EqualValues(t, 40, b.Available())

	// Too much for what is left: a waiter gets it once bytes come back.
	got := make(chan error, 1)
	go func() { got <- b.Acquire(70, time.Minute, nil) }()
	b.Release(30)
	require.NoError(t, <-got)
	assert.EqualValues(t, 0, b.Available())

	// A wait ends at its deadline, or when done is closed.
	assert.ErrorIs(t, b.Acquire(1, time.Millisecond, nil), membudget.ErrNoMemory)
	done := make(chan struct{})
	close(done)
	assert.ErrorIs(t, b.Acquire(1, time.Minute, done), membudget.ErrNoMemory)
	b.Release(100)
	assert.EqualValues(t, 100, b.Available())
}
