package identity

import (
	"container/list"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Lockout defaults (LockoutConfig zero values).
const (
	DefaultLockoutMaxFailures = 5
	DefaultLockoutBaseDelay   = time.Second
	DefaultLockoutMaxDelay    = 15 * time.Minute
	DefaultLockoutMaxEntries  = 1 << 16
	// pairsPerSource bounds the agents one source is remembered failing
	// for; past it the source's pairs with the fewest failures are folded
	// into its floor (see Limiter).
	pairsPerSource = 64
)

// LockoutConfig is the policy of a Limiter. Zero values mean the defaults.
type LockoutConfig struct {
	// MaxFailures consecutive failures of a (source, agent) pair go
	// without delay; failure n ≥ MaxFailures locks the pair out for
	// BaseDelay·2^(n−MaxFailures), at most MaxDelay. Defaults 5, 1s, 15m.
	MaxFailures int           `yaml:"max_failures,omitempty" json:"max_failures,omitempty"`
	BaseDelay   time.Duration `yaml:"base_delay,omitempty" json:"base_delay,omitempty"`
	MaxDelay    time.Duration `yaml:"max_delay,omitempty" json:"max_delay,omitempty"`
	// MaxEntries bounds what is remembered (pairs with failures, and
	// sources), at most about 360 bytes each (23 MB at the default 65536).
	MaxEntries int `yaml:"max_entries,omitempty" json:"max_entries,omitempty"`
	// Now is the limiter's clock (nil: time.Now), for tests.
	Now func() time.Time `yaml:"-" json:"-"`
}

func (c LockoutConfig) validate() error {
	switch {
	case c.MaxFailures < 0:
		return errors.New("max_failures must not be negative")
	case c.BaseDelay < 0 || c.MaxDelay < 0:
		return errors.New("delays must not be negative")
	case c.MaxEntries < 0:
		return errors.New("max_entries must not be negative")
	}
	if d := c.withDefaults(); c.MaxDelay != 0 && c.MaxDelay < d.BaseDelay {
		return fmt.Errorf("max_delay %s is below base_delay %s", c.MaxDelay, d.BaseDelay)
	}
	return nil
}

func (c LockoutConfig) withDefaults() LockoutConfig {
	if c.MaxFailures <= 0 {
		c.MaxFailures = DefaultLockoutMaxFailures
	}
	if c.BaseDelay <= 0 {
		c.BaseDelay = DefaultLockoutBaseDelay
	}
	if c.MaxDelay <= 0 {
		c.MaxDelay = max(DefaultLockoutMaxDelay, c.BaseDelay)
	}
	c.MaxDelay = max(c.MaxDelay, c.BaseDelay)
	if c.MaxEntries <= 0 {
		c.MaxEntries = DefaultLockoutMaxEntries
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Limiter slows down guessing of secrets that can be guessed (SCRAM
// verifiers, per-agent secrets, cleartext passwords checked against a
// verifier). One Limiter is shared by every front end. Signed tokens are
// not limited: a signature cannot be guessed, so a valid token gets in
// whatever the limiter says about its source.
//
// Failures count per (source, agent) pair: one source's failures for one
// agent never lock out another agent, nor the same agent from another
// source. A source is an IP address; an IPv6 address counts per /64,
// which one host usually holds whole. Unknown agent names count exactly
// like known ones, so the limiter's answers do not tell which exist.
//
// Backoff: failure n ≥ MaxFailures of a pair (consecutive, that is since
// its last success) locks the pair out for BaseDelay·2^(n−MaxFailures), up
// to MaxDelay. Attempts while locked out are refused without looking at
// the credential and do not count. Attempts in flight count too: a pair
// may have as many in flight as it has failures left before a lockout (one
// once locked out before), and more wait for one to end, so opening many
// connections at once does not multiply the guesses a lockout allows.
//
// Memory is bounded. A pair is forgotten MaxDelay after its lockout ended
// (after its last failure, before any lockout). A source keeps at most 64
// pairs with failures; past that the pair with the fewest failures (the
// oldest of them) whose lockout has ended is dropped, and its failure
// count raises the source's floor: every pair of that source counts its
// failures from at least the floor until the floor ages out like a pair.
// So spraying made-up agent names from one source never lowers the count
// of any pair of that source (an evicted pair comes back at its level),
// and costs the sprayer's other pairs their free failures. A pair that is
// locked out is never dropped, since a new pair for its agent would not
// be: while all of a source's 64 pairs are locked out (or in flight), the
// source is refused for every agent it holds no pair for, until the first
// of those lockouts ends. Such a source has failed for 64 agent names;
// agents that log in with signed tokens are not limited, from it or any
// other. At most MaxEntries pairs and sources are kept over all sources;
// past that the source that failed least recently is forgotten whole
// (only many sources, each limited on its own, can do that).
//
// Safe for concurrent use.
type Limiter struct {
	cfg       LockoutConfig
	maxLevel  int // failure count past which the delay no longer grows
	perSource int

	mu      sync.Mutex
	sources map[string]*sourceState
	lru     list.List // sources with failures or a floor, least recently failed first
	entries int       // sources in lru plus their pairs with failures
}

type agentKey [sha256.Size]byte // a digest: fixed size whatever the name's length

type sourceState struct {
	prefix     string
	pairs      map[agentKey]*pairState
	failing    int       // pairs with failures
	floor      int       // least failure count of every pair (evicted pairs' levels)
	floorUntil time.Time // latest lockout among the evicted pairs
	elem       *list.Element
}

type pairState struct {
	src      *sourceState
	key      agentKey
	failures int       // consecutive, capped at maxLevel
	last     time.Time // last failure
	until    time.Time // locked out until
	inflight int
	wake     chan struct{} // closed when an attempt ends; nil when nobody waits
}

// NewLimiter returns a Limiter with cfg's policy; out-of-range values are
// replaced by the defaults (identity.New reports them as errors).
func NewLimiter(cfg LockoutConfig) *Limiter {
	cfg = cfg.withDefaults()
	l := &Limiter{cfg: cfg, sources: map[string]*sourceState{}}
	l.maxLevel = cfg.MaxFailures
	for d := cfg.BaseDelay; d < cfg.MaxDelay; d *= 2 {
		l.maxLevel++
	}
	// One source alone never makes the limiter forget other sources.
	l.perSource = max(1, min(pairsPerSource, cfg.MaxEntries/4))
	return l
}

// Config is the limiter's policy, defaults filled in.
func (l *Limiter) Config() LockoutConfig { return l.cfg }

// Delay is the lockout that failure number n (consecutive) starts.
func (l *Limiter) Delay(n int) time.Duration {
	if n < l.cfg.MaxFailures {
		return 0
	}
	d := l.cfg.BaseDelay
	for range n - l.cfg.MaxFailures {
		if d >= l.cfg.MaxDelay {
			break
		}
		d *= 2
	}
	return min(d, l.cfg.MaxDelay)
}

// sourcePrefix reduces a source address (with or without port) to what is
// counted: the IP, or the /64 of an IPv6 address.
func sourcePrefix(source string) string {
	host := source
	if h, _, err := net.SplitHostPort(source); err == nil {
		host = h
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.String()
	}
	return addr.String()
}

// Begin starts an attempt by source to authenticate as agent with a
// guessable secret. While the pair is locked out it returns an *AuthError
// with ReasonRateLimited and the time left; while the pair has as many
// attempts in flight as it may, it waits for one to end (and returns the
// same error, without a time, if ctx ends first). The caller must end the
// attempt with Done.
func (l *Limiter) Begin(ctx context.Context, source, agent string) (*Attempt, error) {
	prefix, key := sourcePrefix(source), agentKey(sha256.Sum256([]byte(agent)))
	for {
		l.mu.Lock()
		now := l.cfg.Now()
		src := l.sources[prefix]
		if src == nil {
			src = &sourceState{prefix: prefix, pairs: map[agentKey]*pairState{}}
			l.sources[prefix] = src
		}
		p := src.pairs[key]
		if p != nil && l.pairForgotten(p, now) {
			l.dropPair(p)
			p = nil
		}
		if p != nil && now.Before(p.until) {
			err := &AuthError{Reason: ReasonRateLimited, RetryAfter: p.until.Sub(now),
				detail: fmt.Errorf("locked out after %d consecutive failures", p.failures)}
			l.mu.Unlock()
			return nil, err
		}
		if p == nil {
			if wait, full := l.full(src, now); full {
				err := &AuthError{Reason: ReasonRateLimited, RetryAfter: wait,
					detail: fmt.Errorf("the source has %d agents locked out", src.failing)}
				l.mu.Unlock()
				return nil, err
			}
			p = &pairState{src: src, key: key}
			src.pairs[key] = p
		}
		if p.inflight < max(1, l.cfg.MaxFailures-l.level(p, now)) {
			p.inflight++
			l.mu.Unlock()
			return &Attempt{l: l, p: p}, nil
		}
		if p.wake == nil {
			p.wake = make(chan struct{})
		}
		wake := p.wake
		l.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, &AuthError{Reason: ReasonRateLimited,
				detail: fmt.Errorf("waiting for attempts in flight: %w", ctx.Err())}
		}
	}
}

// level is p's failure count as the backoff sees it: its own, or its
// source's floor if higher. Callers hold mu.
func (l *Limiter) level(p *pairState, now time.Time) int {
	src := p.src
	if src.floor > 0 && !now.Before(src.floorUntil.Add(l.cfg.MaxDelay)) {
		src.floor, src.floorUntil = 0, time.Time{}
	}
	return max(p.failures, src.floor)
}

func (l *Limiter) pairForgotten(p *pairState, now time.Time) bool {
	return p.failures > 0 && p.inflight == 0 && !now.Before(p.until.Add(l.cfg.MaxDelay))
}

// dropPair removes p (nothing in flight). Callers hold mu.
func (l *Limiter) dropPair(p *pairState) {
	if p.failures > 0 {
		p.src.failing--
		l.entries--
	}
	delete(p.src.pairs, p.key)
}

// tidy removes src when it holds nothing worth keeping. Callers hold mu.
func (l *Limiter) tidy(src *sourceState) {
	if len(src.pairs) > 0 || src.floor > 0 {
		return
	}
	if src.elem != nil {
		l.lru.Remove(src.elem)
		src.elem = nil
		l.entries--
	}
	delete(l.sources, src.prefix)
}

// Len is how many entries (sources with failures, and their pairs with
// failures) the limiter remembers; at most MaxEntries.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.entries
}

// Attempt is one authentication attempt, from Limiter.Begin to Done.
type Attempt struct {
	l    *Limiter
	p    *pairState
	done bool
}

// Done ends the attempt with the authentication's result: nil is a success
// (the pair's failures are forgotten); an *AuthError with
// ReasonCredentials is a failed guess and counts; any other error tested
// no guess (a malformed message, a client that left) and changes nothing.
// Later calls do nothing.
func (a *Attempt) Done(err error) {
	l := a.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if a.done {
		return
	}
	a.done = true
	p, src := a.p, a.p.src
	p.inflight--
	switch r, _ := ReasonOf(err); {
	case err == nil:
		if p.failures > 0 {
			src.failing--
			l.entries--
		}
		p.failures, p.until = 0, time.Time{}
	case r == ReasonCredentials:
		l.fail(p)
	}
	if p.wake != nil {
		close(p.wake)
		p.wake = nil
	}
	if p.failures == 0 && p.inflight == 0 && src.pairs[p.key] == p {
		delete(src.pairs, p.key)
	}
	l.tidy(src)
}

// fail records one failed guess of p. Callers hold mu.
func (l *Limiter) fail(p *pairState) {
	now := l.cfg.Now()
	src := p.src
	n := min(l.level(p, now)+1, l.maxLevel)
	if p.failures == 0 {
		src.failing++
		l.entries++
	}
	p.failures, p.last, p.until = n, now, now.Add(l.Delay(n))
	if src.elem == nil {
		src.elem = l.lru.PushBack(src)
		l.entries++
	} else {
		l.lru.MoveToBack(src.elem)
	}
	for src.failing > l.perSource && l.evictPair(src, now) {
	}
	for l.entries > l.cfg.MaxEntries && l.evictSource(src) {
	}
}

// full reports whether src holds as many pairs with failures as it may
// and none of them can be evicted (each is locked out or in flight), and
// how long until the first lockout among them ends (at least a second
// when none is locked out: attempts in flight end sooner). A new pair of
// src must then wait. Callers hold mu.
func (l *Limiter) full(src *sourceState, now time.Time) (time.Duration, bool) {
	if src.failing < l.perSource {
		return 0, false
	}
	var first time.Time
	for _, p := range src.pairs {
		switch {
		case p.failures == 0:
		case evictable(p, now):
			return 0, false
		case now.Before(p.until) && (first.IsZero() || p.until.Before(first)):
			first = p.until
		}
	}
	if first.IsZero() {
		return time.Second, true
	}
	return first.Sub(now), true
}

// evictable: p has failures, nothing in flight and no lockout running.
func evictable(p *pairState, now time.Time) bool {
	return p.failures > 0 && p.inflight == 0 && !now.Before(p.until)
}

// evictPair drops one idle pair with failures of src whose lockout has
// ended: a forgotten one, else the one with the fewest failures that
// failed first, whose level then raises the source's floor. A locked-out
// pair is kept: its agent's next guess must wait it out, and a new pair
// would not. Callers hold mu.
func (l *Limiter) evictPair(src *sourceState, now time.Time) bool {
	var victim *pairState
	for _, p := range src.pairs {
		if !evictable(p, now) {
			continue
		}
		if l.pairForgotten(p, now) {
			l.dropPair(p)
			return true
		}
		if victim == nil || p.failures < victim.failures ||
			p.failures == victim.failures && p.last.Before(victim.last) {
			victim = p
		}
	}
	if victim == nil {
		return false
	}
	src.floor = max(src.floor, victim.failures)
	if victim.until.After(src.floorUntil) {
		src.floorUntil = victim.until
	}
	l.dropPair(victim)
	return true
}

// evictSource forgets the source that failed least recently, other than
// keep, with nothing in flight. Callers hold mu.
func (l *Limiter) evictSource(keep *sourceState) bool {
next:
	for e := l.lru.Front(); e != nil; e = e.Next() {
		src := e.Value.(*sourceState)
		if src == keep {
			continue
		}
		for _, p := range src.pairs {
			if p.inflight > 0 {
				continue next
			}
		}
		for _, p := range src.pairs {
			l.dropPair(p)
		}
		src.floor = 0
		l.tidy(src)
		return true
	}
	return false
}
