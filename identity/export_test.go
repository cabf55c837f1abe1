package identity

import "time"

// Hooks for the external tests: fixed clocks and the server nonce of the
// RFC 7677 test vector.

func NewSCRAMServerWithNonce(agent string, v Verifier, serverNonce string) SCRAMConversation {
	return newSCRAMServer(agent, v, serverNonce)
}

func NewAt(cfg Config, now func() time.Time) (*Auth, error) { return newAuthenticator(cfg, now) }

func SetLimiterClock(l *FailureLimiter, now func() time.Time) { l.now = now }

func SetLimiterEntries(l *FailureLimiter, n int) { l.entries = n }
