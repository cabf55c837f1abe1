package identity_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/keyholedb/keyhole/identity"
)

func TestFailureLimiter(t *testing.T) {
	t.Parallel()
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	l := identity.NewFailureLimiter(3, time.Minute)
	identity.SetLimiterClock(l, func() time.Time { return time.Unix(0, now.Load()) })

	for i := 0; i < 3; i++ {
		assert.True(t, l.Allow("10.0.0.1:5000"))
		l.Fail("10.0.0.1:5000")
	}
	assert.False(t, l.Allow("10.0.0.1:6000"), "ports of one host count together")
	assert.True(t, l.Allow("10.0.0.2"))

	now.Add(int64(time.Minute))
	assert.True(t, l.Allow("10.0.0.1"), "window over")

	l.Fail("10.0.0.3")
	l.Reset("10.0.0.3")
	assert.Equal(t, 0, l.Len())

	off := identity.NewFailureLimiter(0, time.Minute)
	off.Fail("x")
	assert.True(t, off.Allow("x"))
}

func TestFailureLimiterBounded(t *testing.T) {
	t.Parallel()
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	l := identity.NewFailureLimiter(1, time.Minute)
	identity.SetLimiterClock(l, func() time.Time { return time.Unix(0, now.Load()) })
	identity.SetLimiterEntries(l, 100)
	for i := range 1000 {
		now.Add(int64(time.Millisecond))
		l.Fail(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	assert.LessOrEqual(t, l.Len(), 100)
	assert.False(t, l.Allow("10.0.3.231"), "the newest source is still tracked")
}

func TestFailureLimiterConcurrent(t *testing.T) {
	t.Parallel()
	l := identity.NewFailureLimiter(1000, time.Minute)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				src := fmt.Sprintf("10.1.%d.%d", g, i%10)
				l.Allow(src)
				l.Fail(src)
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, 80, l.Len())
}
