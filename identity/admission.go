package identity

import (
	"container/list"
	"sync"
)

// LoginGate bounds the connections of one front end that have not logged
// in yet: accepted, but still in the startup, TLS or authentication
// exchange. Such a connection costs its sender one TCP handshake, so a
// bound that also counted logged-in sessions (max_conns) would let anyone
// who can reach the port lock every agent out by holding idle sockets
// open until the startup timeout, and opening new ones. Logged-in
// sessions are counted apart (the front ends' MaxConns); the gate keeps
// the logins in flight within Max.
//
// A gate never refuses a new connection. When Max logins are in flight it
// drops one to make room: the oldest login of the source holding the most
// (ties go to the source whose oldest login is oldest). A source is an IP
// address, or the /64 of an IPv6 one, as for the Limiter. So a flood from
// few sources only ever drops its own connections, and a flood from many
// must open Max connections in the time one agent's login takes (a few
// milliseconds) to drop it.
//
// Safe for concurrent use.
type LoginGate struct {
	max int
	mu  sync.Mutex
	n   int    // logins counted
	seq uint64 // admission order
	// sources holds the logins in flight by source, oldest first.
	sources map[string]*gateSource
}

type gateSource struct {
	key    string
	logins list.List // of *Login
}

// Login is one connection counted by a LoginGate, until Done.
type Login struct {
	g     *LoginGate
	src   *gateSource
	elem  *list.Element
	seq   uint64
	evict func()
	ended bool // Done called, or dropped (under g.mu)
}

// NewLoginGate returns a gate that keeps at most limit logins in flight
// (at least one).
func NewLoginGate(limit int) *LoginGate {
	return &LoginGate{max: max(limit, 1), sources: map[string]*gateSource{}}
}

// Admit counts a new connection from source (an address, with or without
// its port) that has not logged in. evict is how the gate ends it when it
// must make room for another: it is called at most once, on another
// connection's goroutine, and must not block; the connection then ends
// on its own and still calls Done. The caller must call Done when the
// connection has logged in or ended.
func (g *LoginGate) Admit(source string, evict func()) *Login {
	key := sourcePrefix(source)
	g.mu.Lock()
	var dropped *Login
	if g.n >= g.max {
		dropped = g.pickLocked()
		g.removeLocked(dropped)
	}
	src := g.sources[key]
	if src == nil {
		src = &gateSource{key: key}
		g.sources[key] = src
	}
	g.seq++
	l := &Login{g: g, src: src, seq: g.seq, evict: evict}
	l.elem = src.logins.PushBack(l)
	g.n++
	g.mu.Unlock()
	if dropped != nil && dropped.evict != nil {
		dropped.evict()
	}
	return l
}

// pickLocked returns the login to drop: the oldest of the source holding
// the most, the source with the oldest login among equals.
func (g *LoginGate) pickLocked() *Login {
	var best *Login
	bestN := 0
	for _, s := range g.sources {
		n := s.logins.Len()
		if n == 0 {
			continue
		}
		oldest := s.logins.Front().Value.(*Login)
		if n > bestN || (n == bestN && oldest.seq < best.seq) {
			best, bestN = oldest, n
		}
	}
	return best
}

// removeLocked stops counting l.
func (g *LoginGate) removeLocked(l *Login) {
	if l.ended {
		return
	}
	l.ended = true
	l.src.logins.Remove(l.elem)
	if l.src.logins.Len() == 0 {
		delete(g.sources, l.src.key)
	}
	g.n--
}

// Done stops counting the connection: it logged in, or it ended. It may
// be called more than once, and after the gate dropped the connection.
// It reports whether the connection was still counted (false once the
// gate dropped it, whose evict has been or is being called).
func (l *Login) Done() bool {
	if l == nil {
		return false
	}
	g := l.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if l.ended {
		return false
	}
	g.removeLocked(l)
	return true
}

// InFlight returns the number of logins counted.
func (g *LoginGate) InFlight() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

// Sessions counts the logged-in sessions of one front end, in all and per
// agent, against their bounds (limits.max_conns and
// limits.max_conns_per_agent): one agent whose sessions leak (an agent in
// a loop that never closes its connections) must not take every session
// of the front end from the others. Safe for concurrent use.
type Sessions struct {
	max, perAgent int // perAgent 0: no bound per agent
	mu            sync.Mutex
	n             int
	byAgent       map[string]int
}

// SessionVerdict is Sessions.Take's answer.
type SessionVerdict int

const (
	SessionCounted       SessionVerdict = iota // counted; Release it when it ends
	TooManySessions                            // max sessions are logged in
	TooManyAgentSessions                       // the agent has perAgent sessions
)

// NewSessions returns counts bounded by limit sessions in all and
// perAgent per agent (0: no bound per agent).
func NewSessions(limit, perAgent int) *Sessions {
	return &Sessions{max: limit, perAgent: perAgent, byAgent: map[string]int{}}
}

// Take counts a new session of agent unless a bound refuses it; only a
// counted session may be released.
func (s *Sessions) Take(agent string) SessionVerdict {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.n >= s.max:
		return TooManySessions
	case s.perAgent > 0 && s.byAgent[agent] >= s.perAgent:
		return TooManyAgentSessions
	}
	s.n++
	s.byAgent[agent]++
	return SessionCounted
}

// Release stops counting a session of agent that Take counted.
func (s *Sessions) Release(agent string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n--
	if s.byAgent[agent]--; s.byAgent[agent] <= 0 {
		delete(s.byAgent, agent)
	}
}
