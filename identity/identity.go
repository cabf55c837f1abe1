package identity

import (
	"crypto/x509"
	"errors"
	"time"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// Method is how an agent proved who it is.
type Method string

const (
	MethodToken Method = "token" // signed JWT as the cleartext password
	MethodSCRAM Method = "scram" // SCRAM-SHA-256 against a stored verifier
	MethodMTLS  Method = "mtls"  // client certificate with a SPIFFE URI SAN
)

// Agent is an authenticated agent.
type Agent struct {
	Name   string
	Method Method
	// Scope narrows the agent's role for this session (from its token);
	// nil does not narrow.
	Scope []sqlpolicy.Grant
	// Expires is when the session's authority ends (token expiry); zero
	// means no expiry.
	Expires time.Time
	// TokenID is the token's jti, for revocation checks and audit.
	TokenID string
	// Purpose is the token's purpose claim: the task the agent works on,
	// shown to reviewers; it never changes a decision.
	Purpose string
}

// Principal is the agent as the decision engine sees it.
func (a *Agent) Principal() sqlpolicy.Principal {
	return sqlpolicy.Principal{Agent: a.Name, Scope: a.Scope, Purpose: a.Purpose}
}

// ErrAuthFailed matches (errors.Is) every authentication failure, each an
// *AuthError whose Reason a client may see; its detail is for logs and
// audit only.
var ErrAuthFailed = errors.New("agent authentication failed")

// Authenticator checks agent credentials. The proxies pick the method from
// what the client offers: a verified client certificate with a SPIFFE URI
// SAN → Certificate; a user with a stored SCRAM verifier → SCRAM; otherwise
// a cleartext password (only over TLS or loopback) → Token. Failures are
// *AuthError values.
type Authenticator interface {
	// Token verifies a signed agent token presented as the password of user
	// (the token's subject must equal user) and returns the agent.
	Token(user, token string) (*Agent, error)
	// SCRAM starts a SCRAM-SHA-256 server conversation for user; ok is false
	// when the client should be asked for a token instead (user has no
	// stored verifier and tokens are configured).
	SCRAM(user string) (conv SCRAMConversation, ok bool)
	// Certificate maps a verified client certificate to an agent; user is
	// the name the client asked for and must match the mapped agent.
	Certificate(user string, cert *x509.Certificate) (*Agent, error)
}

// SCRAMConversation is the server side of one SCRAM-SHA-256 exchange
// (RFC 5802/7677) without channel binding.
type SCRAMConversation interface {
	// Step takes the client's next message (client-first, then
	// client-final) and returns the server's reply (server-first, then
	// server-final). done is true after the server-final message; err is
	// an *AuthError: ReasonCredentials for a wrong proof (a tested guess),
	// ReasonSCRAMProtocol for a message that tested none.
	Step(clientMessage []byte) (serverMessage []byte, done bool, err error)
	// Agent is the authenticated agent once done.
	Agent() *Agent
}
