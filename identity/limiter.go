package identity

import (
	"net"
	"sync"
	"time"
)

// DefaultLimiterEntries bounds how many sources a FailureLimiter tracks.
const DefaultLimiterEntries = 10000

// FailureLimiter counts authentication failures per source address in a
// fixed window and refuses a source once it reaches max failures, until its
// window ends. Memory is bounded: at most DefaultLimiterEntries sources are
// tracked; when full, expired entries go first, then the oldest window.
// Safe for concurrent use.
type FailureLimiter struct {
	max     int
	window  time.Duration
	entries int
	now     func() time.Time

	mu   sync.Mutex
	seen map[string]*failWindow
}

type failWindow struct {
	start time.Time
	count int
}

// NewFailureLimiter allows max failures per source per window. max <= 0
// disables limiting (Allow always true).
func NewFailureLimiter(max int, window time.Duration) *FailureLimiter {
	return &FailureLimiter{max: max, window: window, entries: DefaultLimiterEntries, now: time.Now, seen: map[string]*failWindow{}}
}

// sourceKey strips a port, so "10.0.0.1:5555" and "10.0.0.1" count together.
func sourceKey(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// Allow reports whether source may try to authenticate now.
func (l *FailureLimiter) Allow(source string) bool {
	if l == nil || l.max <= 0 {
		return true
	}
	key := sourceKey(source)
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.seen[key]
	if !ok {
		return true
	}
	if l.now().Sub(w.start) >= l.window {
		delete(l.seen, key)
		return true
	}
	return w.count < l.max
}

// Fail records one failed authentication from source.
func (l *FailureLimiter) Fail(source string) {
	if l == nil || l.max <= 0 {
		return
	}
	key := sourceKey(source)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if w, ok := l.seen[key]; ok && now.Sub(w.start) < l.window {
		w.count++
		return
	}
	if len(l.seen) >= l.entries {
		l.evictLocked(now)
	}
	l.seen[key] = &failWindow{start: now, count: 1}
}

// Reset forgets source, e.g. after it authenticated.
func (l *FailureLimiter) Reset(source string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	delete(l.seen, sourceKey(source))
	l.mu.Unlock()
}

// Len is the number of tracked sources.
func (l *FailureLimiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.seen)
}

func (l *FailureLimiter) evictLocked(now time.Time) {
	var oldestKey string
	var oldest time.Time
	for k, w := range l.seen {
		if now.Sub(w.start) >= l.window {
			delete(l.seen, k)
			continue
		}
		if oldestKey == "" || w.start.Before(oldest) {
			oldestKey, oldest = k, w.start
		}
	}
	if len(l.seen) >= l.entries && oldestKey != "" {
		delete(l.seen, oldestKey)
	}
}
