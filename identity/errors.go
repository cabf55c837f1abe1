package identity

import (
	"errors"
	"fmt"
	"time"
)

// Reason is why authentication failed, as a stable machine-readable code.
// Every reason has a client-safe text (ClientText): it names what was wrong
// with the credential the client itself sent, never a secret, and never
// whether an agent exists.
type Reason string

const (
	// ReasonCredentials: the secret or proof was wrong, the agent is
	// unknown, or the agent is not in the policy. These look alike on
	// purpose: telling them apart would tell a guesser which agents exist.
	ReasonCredentials Reason = "credentials"
	// ReasonTokenMalformed: the password is not a well-formed agent token
	// (not a JWS, bad JSON, a required claim such as exp or jti missing,
	// a scope that does not parse).
	ReasonTokenMalformed Reason = "token_malformed"
	// ReasonTokenSignature: the signature does not verify, or no trusted
	// key matches its issuer, key id (kid) and algorithm.
	ReasonTokenSignature Reason = "token_signature"
	// ReasonTokenExpired: exp is past (beyond the leeway).
	ReasonTokenExpired Reason = "token_expired"
	// ReasonTokenNotYetValid: nbf or iat is in the future (beyond the
	// leeway).
	ReasonTokenNotYetValid Reason = "token_not_yet_valid"
	// ReasonTokenAudience: aud does not include the audience this keyhole
	// requires for the token's issuer.
	ReasonTokenAudience Reason = "token_audience"
	// ReasonTokenSubject: the token was issued for another agent than the
	// user name the client connected as (the client holds the token and
	// can read its subject, so saying so reveals nothing).
	ReasonTokenSubject Reason = "token_subject"
	// ReasonTokenRevoked: the token's jti is in the revocation list.
	ReasonTokenRevoked Reason = "token_revoked"
	// ReasonCertificate: the verified client certificate does not carry a
	// SPIFFE ID mapped to this agent.
	ReasonCertificate Reason = "certificate"
	// ReasonSCRAMProtocol: a SCRAM message was malformed or asked for
	// something keyhole does not offer (channel binding, an authorization
	// identity). No guess was tested.
	ReasonSCRAMProtocol Reason = "scram_protocol"
	// ReasonRateLimited: too many failed attempts for this agent from this
	// source; the attempt was refused without looking at the credential.
	ReasonRateLimited Reason = "rate_limited"
)

var clientTexts = map[Reason]string{
	ReasonCredentials:      "wrong credentials",
	ReasonTokenMalformed:   "the password is not a well-formed agent token",
	ReasonTokenSignature:   "the agent token's signature is invalid or its signing key is not trusted",
	ReasonTokenExpired:     "the agent token has expired",
	ReasonTokenNotYetValid: "the agent token is not valid yet",
	ReasonTokenAudience:    "the agent token is not meant for this keyhole (audience)",
	ReasonTokenSubject:     "the agent token was issued for another agent",
	ReasonTokenRevoked:     "the agent token has been revoked",
	ReasonCertificate:      "the client certificate does not identify this agent",
	ReasonSCRAMProtocol:    "malformed or unsupported SCRAM message",
	ReasonRateLimited:      "too many failed authentication attempts for this agent from this address",
}

var hints = map[Reason]string{
	ReasonTokenMalformed:   "Send the agent token (a JWT) as the password.",
	ReasonTokenSignature:   "Use a token signed by a key this keyhole trusts (its own token key, or a configured JWKS issuer).",
	ReasonTokenExpired:     "Get a new token for this agent.",
	ReasonTokenNotYetValid: "Check that the clocks of the token issuer and of keyhole agree.",
	ReasonTokenAudience:    "Get a token whose audience (aud) includes this keyhole.",
	ReasonTokenSubject:     "Connect with the agent name the token was issued for as the user name.",
	ReasonTokenRevoked:     "Get a new token for this agent.",
	ReasonRateLimited:      "Wait before trying again, and check the agent's secret.",
}

// Hint is advice for a client that failed for this reason ("" when there
// is none that would not help a guesser).
func (r Reason) Hint() string { return hints[r] }

// ClientText is the reason in words a client may see.
func (r Reason) ClientText() string {
	if s, ok := clientTexts[r]; ok {
		return s
	}
	return clientTexts[ReasonCredentials]
}

// AuthError is an authentication failure. Every error the identity package
// returns for a failed authentication is one (errors.As), and matches
// ErrAuthFailed (errors.Is).
//
// Front ends show the client Reason.ClientText (plus RetryAfter) only; the
// wrapped detail is for logs and audit. Neither ever holds a token, secret,
// proof or verifier; it may hold claim values such as a token's subject or
// jti, which identify but do not authenticate.
type AuthError struct {
	Reason Reason
	// RetryAfter is, for ReasonRateLimited, how long until the source may
	// try again for this agent (0 when unknown).
	RetryAfter time.Duration
	detail     error
}

// NewAuthError is a failure for reason r; detail (which may be nil) is for
// logs only. Front ends use it for failures they find themselves, e.g. an
// authenticated agent the policy does not know (ReasonCredentials).
func NewAuthError(r Reason, detail error) *AuthError { return &AuthError{Reason: r, detail: detail} }

func authErrf(r Reason, format string, args ...any) *AuthError {
	return &AuthError{Reason: r, detail: fmt.Errorf(format, args...)}
}

func (e *AuthError) Error() string {
	s := ErrAuthFailed.Error() + ": " + string(e.Reason)
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	if e.detail != nil {
		s += ": " + e.detail.Error()
	}
	return s
}

// Unwrap gives ErrAuthFailed and the detail (for errors.Is on, e.g., the
// jwt library's sentinel errors).
func (e *AuthError) Unwrap() []error {
	if e.detail == nil {
		return []error{ErrAuthFailed}
	}
	return []error{ErrAuthFailed, e.detail}
}

// ClientMessage is the text a front end may send the client.
func (e *AuthError) ClientMessage() string {
	s := e.Reason.ClientText()
	if e.Reason == ReasonRateLimited && e.RetryAfter > 0 {
		s += fmt.Sprintf("; try again in %s", roundUp(e.RetryAfter))
	}
	return s
}

// roundUp shows a wait in whole seconds, never less than it is.
func roundUp(d time.Duration) time.Duration {
	if r := d % time.Second; r != 0 {
		d += time.Second - r
	}
	return d
}

// ReasonOf returns the Reason of an authentication error, and false for an
// error that is not one.
func ReasonOf(err error) (Reason, bool) {
	var ae *AuthError
	if errors.As(err, &ae) {
		return ae.Reason, true
	}
	return "", false
}
