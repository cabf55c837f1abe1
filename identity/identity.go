package identity

import (
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
}

// Principal is the agent as the decision engine sees it.
func (a *Agent) Principal() sqlpolicy.Principal {
	return sqlpolicy.Principal{Agent: a.Name, Scope: a.Scope}
}
