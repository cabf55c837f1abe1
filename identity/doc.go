// Package identity authenticates agents. An agent proves who it is with one
// of three methods:
//
//   - a signed agent token (JWT, EdDSA/Ed25519 from keyhole's own key, or
//     RSA/EC/Ed25519 from an external issuer's JWKS) sent as the password;
//   - SCRAM-SHA-256 (RFC 5802/7677) against a per-agent verifier stored in
//     Postgres format;
//   - a TLS client certificate whose single SPIFFE URI SAN maps to an agent.
//
// Every failure is an *AuthError (errors.Is ErrAuthFailed): its Reason says
// in client-safe words what was wrong with the credential the client sent
// (an expired, not-yet-valid, wrong-audience, badly signed, revoked or
// malformed token...), never a secret and never whether an agent exists;
// its wrapped detail is for logs and never contains a token, secret or
// verifier.
//
// A Limiter, shared by every front end, slows down guessing of secrets
// that can be guessed: per (source address, agent), with exponential
// backoff and bounded memory. Signed tokens are not limited.
//
// Admission (admission.go), per front end: a LoginGate bounds the
// connections still logging in, so that idle sockets never hold the slots
// logged-in sessions count against (past its bound it drops the oldest
// login of the source holding the most), and Sessions bounds the
// logged-in sessions, in all and per agent.
package identity
