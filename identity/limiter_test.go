package identity_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/identity"
)

// clock is a settable time for a Limiter.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
func wrongProof() error                  { return identity.NewAuthErrorForTest(identity.ReasonCredentials) }
func protocolError() error               { return identity.NewAuthErrorForTest(identity.ReasonSCRAMProtocol) }
func limiter(c *clock, cfg identity.LockoutConfig) *identity.Limiter {
	cfg.Now = c.Now
	return identity.NewLimiter(cfg)
}

// try runs one attempt ending with result and returns Begin's error.
func try(t *testing.T, l *identity.Limiter, source, agent string, result error) error {
	t.Helper()
	a, err := l.Begin(context.Background(), source, agent)
	if err != nil {
		return err
	}
	a.Done(result)
	return nil
}

// lockedFor returns how long Begin says the pair is locked out (0: not).
func lockedFor(t *testing.T, l *identity.Limiter, source, agent string) time.Duration {
	t.Helper()
	a, err := l.Begin(context.Background(), source, agent)
	if err == nil {
		a.Done(errors.New("probe: no guess"))
		return 0
	}
	var ae *identity.AuthError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, identity.ReasonRateLimited, ae.Reason)
	require.Positive(t, ae.RetryAfter)
	return ae.RetryAfter
}

func TestLimiterBackoff(t *testing.T) {
	t.Parallel()
	c := newClock()
	l := limiter(c, identity.LockoutConfig{MaxFailures: 3, BaseDelay: time.Second, MaxDelay: 8 * time.Second})
	const src, agent = "10.0.0.1:5000", "alice"

	// Free failures, then 1s, 2s, 4s, 8s, 8s.
	for i := 1; i <= 2; i++ {
		require.NoError(t, try(t, l, src, agent, wrongProof()))
		assert.Zero(t, lockedFor(t, l, src, agent), "failure %d is free", i)
	}
	for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second} {
		require.NoError(t, try(t, l, src, agent, wrongProof()))
		assert.Equal(t, want, lockedFor(t, l, src, agent))
		c.Advance(want - time.Millisecond)
		assert.Equal(t, time.Millisecond, lockedFor(t, l, src, agent), "still locked just before the end")
		c.Advance(time.Millisecond)
		assert.Zero(t, lockedFor(t, l, src, agent))
	}

	// Nobody else is locked out: another agent from the same address,
	// the same agent from another address.
	for _, other := range []struct{ src, agent string }{
		{"10.0.0.1:6000", "bob"}, {"10.0.0.2:5000", agent}, {"[2001:db8:1:2::1]:5000", agent},
	} {
		require.NoError(t, try(t, l, src, agent, wrongProof()))
		assert.Zero(t, lockedFor(t, l, other.src, other.agent), "%s %s", other.src, other.agent)
		c.Advance(8 * time.Second)
	}
	assert.Equal(t, 8*time.Second, func() time.Duration {
		require.NoError(t, try(t, l, "10.0.0.1:7000", agent, wrongProof()))
		return lockedFor(t, l, src, agent)
	}(), "ports of one address are one source")
	c.Advance(8 * time.Second)

	// Attempts that tested no guess change nothing; a success resets.
	require.NoError(t, try(t, l, src, agent, protocolError()))
	require.NoError(t, try(t, l, src, agent, errors.New("client left")))
	assert.Zero(t, lockedFor(t, l, src, agent))
	require.NoError(t, try(t, l, src, agent, nil))
	assert.Zero(t, l.Len(), "a success forgets the pair")
	require.NoError(t, try(t, l, src, agent, wrongProof()))
	assert.Zero(t, lockedFor(t, l, src, agent), "free failures again after a success")
}

func TestLimiterSources(t *testing.T) {
	t.Parallel()
	c := newClock()
	l := limiter(c, identity.LockoutConfig{MaxFailures: 1, BaseDelay: time.Minute, MaxDelay: time.Minute})
	tests := []struct {
		name      string
		src, same string // same: counted as src
		other     string // counted apart
	}{
		{"ipv4 ports", "192.0.2.1:1", "192.0.2.1:2", "192.0.2.2:1"},
		{"ipv4 without port", "192.0.2.3", "192.0.2.3:9", "192.0.2.4"},
		{"ipv4-mapped ipv6", "[::ffff:192.0.2.5]:1", "192.0.2.5:2", "192.0.2.6:1"},
		{"ipv6 /64", "[2001:db8:0:1::1]:1", "[2001:db8:0:1:ffff::2]:1", "[2001:db8:0:2::1]:1"},
		{"ipv6 zone", "[fe80::1%eth0]:1", "[fe80::2%eth1]:1", "[fe80:0:0:1::1]:1"},
	}
	for _, tt := range tests {
		require.NoError(t, try(t, l, tt.src, "a", wrongProof()), tt.name)
		assert.Equal(t, time.Minute, lockedFor(t, l, tt.same, "a"), tt.name)
		assert.Zero(t, lockedFor(t, l, tt.other, "a"), tt.name)
	}
}

func TestLimiterForgets(t *testing.T) {
	t.Parallel()
	c := newClock()
	l := limiter(c, identity.LockoutConfig{MaxFailures: 2, BaseDelay: time.Second, MaxDelay: time.Minute})
	for range 4 {
		require.NoError(t, try(t, l, "10.0.0.1", "a", wrongProof()))
		c.Advance(time.Minute)
	}
	// The 4th failure locked for 4s; a minute after that ends the pair
	// is forgotten and has its free failures again.
	c.Advance(4 * time.Second)
	require.NoError(t, try(t, l, "10.0.0.1", "a", wrongProof()))
	assert.Zero(t, lockedFor(t, l, "10.0.0.1", "a"))
}

// TestLimiterInflight: concurrent attempts of one pair are limited to its
// free failures left, so a burst of connections does not multiply guesses.
func TestLimiterInflight(t *testing.T) {
	t.Parallel()
	c := newClock()
	l := limiter(c, identity.LockoutConfig{MaxFailures: 3, BaseDelay: time.Second, MaxDelay: time.Minute})
	ctx := context.Background()
	var held []*identity.Attempt
	for range 3 {
		a, err := l.Begin(ctx, "10.0.0.1", "a")
		require.NoError(t, err)
		held = append(held, a)
	}
	// A fourth waits; when its context ends it is refused.
	cctx, cancel := context.WithCancel(ctx)
	got := make(chan error, 1)
	go func() {
		a, err := l.Begin(cctx, "10.0.0.1", "a")
		if a != nil {
			a.Done(nil)
		}
		got <- err
	}()
	cancel()
	err := <-got
	r, _ := identity.ReasonOf(err)
	assert.Equal(t, identity.ReasonRateLimited, r)
	assert.ErrorIs(t, err, context.Canceled)

	// Another agent from the same source is not held up.
	b, err := l.Begin(ctx, "10.0.0.1", "b")
	require.NoError(t, err)
	b.Done(nil)

	// A waiter proceeds once attempts end and leave room for it (one
	// failure leaves room for 2 in flight).
	go func() {
		a, err := l.Begin(ctx, "10.0.0.1", "a")
		if a != nil {
			a.Done(wrongProof())
		}
		got <- err
	}()
	held[0].Done(wrongProof())
	held[1].Done(errors.New("client left"))
	require.NoError(t, <-got)
	held[2].Done(wrongProof())
	// Three failures now: locked out.
	assert.Equal(t, time.Second, lockedFor(t, l, "10.0.0.1", "a"))
	held[2].Done(nil) // a second Done does nothing
	assert.Equal(t, time.Second, lockedFor(t, l, "10.0.0.1", "a"))

	// After a lockout one attempt at a time.
	c.Advance(time.Second)
	one, err := l.Begin(ctx, "10.0.0.1", "a")
	require.NoError(t, err)
	tctx, tcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer tcancel()
	_, err = l.Begin(tctx, "10.0.0.1", "a")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	one.Done(wrongProof())
	assert.Equal(t, 2*time.Second, lockedFor(t, l, "10.0.0.1", "a"))
}

// TestLimiterSpray: one source spraying made-up agent names can neither
// grow memory past the bound nor get its lockout for a real agent undone.
func TestLimiterSpray(t *testing.T) {
	t.Parallel()
	c := newClock()
	cfg := identity.LockoutConfig{MaxFailures: 3, BaseDelay: time.Second, MaxDelay: time.Hour, MaxEntries: 1000}
	l := limiter(c, cfg)
	const attacker, victim = "203.0.113.7", "payroll-bot"

	// The attacker guesses the victim's secret to a 16s lockout, and
	// someone else on another address fails once for the same agent.
	for range 7 {
		require.NoError(t, try(t, l, attacker, victim, wrongProof()))
		c.Advance(l.Delay(7))
	}
	require.NoError(t, try(t, l, "198.51.100.1", victim, wrongProof()))
	c.Advance(time.Minute)

	// Then sprays 10,000 names, each failed as often as it is free.
	for i := range 10000 {
		name := fmt.Sprintf("made-up-%d", i)
		for range cfg.MaxFailures {
			_ = try(t, l, attacker, name, wrongProof())
		}
	}
	// One source holds at most 64 pairs, whatever it sprays.
	assert.LessOrEqual(t, l.Len(), 70)
	sources, pairs := identity.LimiterSizes(l)
	assert.LessOrEqual(t, sources+pairs, 70)

	// The source's pairs are all locked out: no guess at the victim (nor
	// at any name the source holds no pair for) until the first lockout
	// ends, not the free failure a forgotten pair would get.
	assert.Positive(t, lockedFor(t, l, attacker, victim))
	// Once the sprayed names' lockouts end, the victim's pair still counts
	// at least its 7 failures: the next one locks for 32s or more.
	c.Advance(l.Delay(cfg.MaxFailures))
	require.NoError(t, try(t, l, attacker, victim, wrongProof()))
	assert.GreaterOrEqual(t, lockedFor(t, l, attacker, victim), l.Delay(8))
	assert.Equal(t, 32*time.Second, l.Delay(8))

	// Even 200 names raised past the victim's count (waiting out each
	// lockout) push the victim's pair out only into the source's floor:
	// it comes back with at least its count for as long as the pair itself
	// would be remembered (MaxDelay after its lockout ended; five rounds
	// take 33 minutes).
	for level := 1; level <= 5; level++ {
		for i := range 200 {
			_ = try(t, l, attacker, fmt.Sprintf("patient-%d", i), wrongProof())
		}
		c.Advance(l.Delay(level + 8))
	}
	require.NoError(t, try(t, l, attacker, victim, wrongProof()))
	assert.GreaterOrEqual(t, lockedFor(t, l, attacker, victim), l.Delay(9))
	sources, pairs = identity.LimiterSizes(l)
	assert.LessOrEqual(t, sources+pairs, 70)

	// A spraying source costs its own new pairs their free failures.
	require.NoError(t, try(t, l, attacker, "someone-new", wrongProof()))
	assert.Positive(t, lockedFor(t, l, attacker, "someone-new"))

	// The other address still has its own count for the victim (one
	// failure: the next is free).
	require.NoError(t, try(t, l, "198.51.100.1", victim, wrongProof()))
	assert.Zero(t, lockedFor(t, l, "198.51.100.1", victim))
}

// TestLimiterSprayKeepsLockout: names sprayed from the source that holds
// a locked-out pair never end that lockout early. Evicting the locked
// pair (the oldest of those with the fewest failures) used to let its
// agent's next guess through at once, at the floor's level: one guess
// at the victim for every 65 failures at made-up names, with no waiting.
func TestLimiterSprayKeepsLockout(t *testing.T) {
	t.Parallel()
	c := newClock()
	cfg := identity.LockoutConfig{MaxFailures: 3, BaseDelay: time.Minute, MaxDelay: time.Hour, MaxEntries: 1000}
	l := limiter(c, cfg)
	const attacker, victim = "203.0.113.7", "payroll-bot"
	for range cfg.MaxFailures {
		require.NoError(t, try(t, l, attacker, victim, wrongProof()))
		c.Advance(time.Millisecond)
	}
	locked := lockedFor(t, l, attacker, victim)
	require.Positive(t, locked)
	// Every name as often as it is free, a millisecond apart: the
	// victim's pair is the oldest of those with the fewest failures.
	for i := range 500 {
		name := fmt.Sprintf("made-up-%d", i)
		for range cfg.MaxFailures {
			_ = try(t, l, attacker, name, wrongProof())
			c.Advance(time.Millisecond)
		}
	}
	left := lockedFor(t, l, attacker, victim)
	assert.Positive(t, left, "the victim's lockout ended early")
	assert.LessOrEqual(t, left, locked)
	sources, pairs := identity.LimiterSizes(l)
	assert.LessOrEqual(t, sources+pairs, 70)
	// Once the lockouts end, names are taken again.
	c.Advance(cfg.MaxDelay)
	require.NoError(t, try(t, l, attacker, "someone-new", wrongProof()))
}

// TestLimiterManySources: memory stays bounded when many sources fail,
// and the sources that failed least recently are the ones forgotten.
func TestLimiterManySources(t *testing.T) {
	t.Parallel()
	c := newClock()
	cfg := identity.LockoutConfig{MaxFailures: 1, BaseDelay: time.Hour, MaxDelay: time.Hour, MaxEntries: 500}
	l := limiter(c, cfg)
	for i := range 5000 {
		c.Advance(time.Millisecond)
		require.NoError(t, try(t, l, fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255), fmt.Sprintf("agent-%d", i%7), wrongProof()))
	}
	assert.LessOrEqual(t, l.Len(), cfg.MaxEntries)
	sources, pairs := identity.LimiterSizes(l)
	assert.LessOrEqual(t, sources+pairs, cfg.MaxEntries)
	assert.Positive(t, lockedFor(t, l, fmt.Sprintf("10.0.%d.%d", 4999>>8, 4999&255), "agent-1"), "the newest source is kept")
	assert.Zero(t, lockedFor(t, l, "10.0.0.0", "agent-0"), "the oldest source is forgotten")
}

func TestLimiterConcurrent(t *testing.T) {
	t.Parallel()
	c := newClock()
	l := limiter(c, identity.LockoutConfig{MaxFailures: 1000, MaxEntries: 100})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				src := fmt.Sprintf("10.1.%d.%d", g, i%40)
				a, err := l.Begin(context.Background(), src, fmt.Sprintf("a%d", i%3))
				if err != nil {
					continue
				}
				if i%5 == 0 {
					a.Done(nil)
				} else {
					a.Done(wrongProof())
				}
			}
		}()
	}
	wg.Wait()
	assert.LessOrEqual(t, l.Len(), 100)
	sources, pairs := identity.LimiterSizes(l)
	assert.LessOrEqual(t, sources+pairs, 100, "no attempt left in flight")
}

func TestLockoutConfig(t *testing.T) {
	t.Parallel()
	l := identity.NewLimiter(identity.LockoutConfig{})
	cfg := l.Config()
	assert.Equal(t, identity.DefaultLockoutMaxFailures, cfg.MaxFailures)
	assert.Equal(t, identity.DefaultLockoutBaseDelay, cfg.BaseDelay)
	assert.Equal(t, identity.DefaultLockoutMaxDelay, cfg.MaxDelay)
	assert.Equal(t, identity.DefaultLockoutMaxEntries, cfg.MaxEntries)
	assert.Equal(t, identity.DefaultLockoutMaxDelay, l.Delay(1000))

	for _, bad := range []string{
		"lockout: {max_failures: -1}",
		"lockout: {base_delay: -1s}",
		"lockout: {max_entries: -5}",
		"lockout: {base_delay: 10s, max_delay: 5s}",
		"lockout: {max_delay: 100ms}",
		"lockout: {max_fails: 3}",
	} {
		cfg, err := identity.ParseConfig([]byte(bad))
		if err == nil {
			_, err = identity.New(cfg)
		}
		assert.ErrorIs(t, err, identity.ErrConfig, bad)
	}
	good, err := identity.ParseConfig([]byte("lockout: {max_failures: 3, base_delay: 2s, max_delay: 1m, max_entries: 100}"))
	require.NoError(t, err)
	_, err = identity.New(good)
	require.NoError(t, err)
	assert.Equal(t, identity.LockoutConfig{MaxFailures: 3, BaseDelay: 2 * time.Second, MaxDelay: time.Minute, MaxEntries: 100}, good.Lockout)
}

// BenchmarkLimiterFailure: one failed attempt (Begin + Done) of a new
// (source, agent) pair in a full limiter; reports the heap each remembered
// entry takes.
func BenchmarkLimiterFailure(b *testing.B) {
	c := newClock()
	cfg := identity.LockoutConfig{MaxEntries: 1 << 16, Now: c.Now}
	l := identity.NewLimiter(cfg)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range cfg.MaxEntries / 2 {
		a, err := l.Begin(context.Background(), fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255), "agent")
		require.NoError(b, err)
		a.Done(wrongProof())
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perEntry := float64(after.HeapAlloc-before.HeapAlloc) / float64(l.Len())
	b.ResetTimer()
	for i := range b.N {
		a, err := l.Begin(context.Background(), fmt.Sprintf("172.16.%d.%d", (i>>8)&255, i&255), fmt.Sprint("agent-", i))
		if err != nil {
			continue
		}
		a.Done(wrongProof())
	}
	b.ReportMetric(perEntry, "B/entry")
}
