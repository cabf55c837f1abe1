package identity

import "time"

// Hooks for the external tests: fixed clocks and the server nonce of the
// RFC 7677 test vector.

func NewSCRAMServerWithNonce(agent string, v Verifier, serverNonce string) SCRAMConversation {
	return newSCRAMServer(agent, v, serverNonce)
}

func NewAt(cfg Config, now func() time.Time) (*Auth, error) { return newAuthenticator(cfg, now) }

// LimiterSizes counts what l holds: sources and pairs of any kind.
func LimiterSizes(l *Limiter) (sources, pairs int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.sources {
		pairs += len(s.pairs)
	}
	return len(l.sources), pairs
}

func NewAuthErrorForTest(r Reason) error { return authErrf(r, "test") }
