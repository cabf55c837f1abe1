// Package identity authenticates agents. An agent proves who it is with one
// of three methods:
//
//   - a signed agent token (JWT, EdDSA/Ed25519 from keyhole's own key, or
//     RSA/EC/Ed25519 from an external issuer's JWKS) sent as the password;
//   - SCRAM-SHA-256 (RFC 5802/7677) against a per-agent verifier stored in
//     Postgres format;
//   - a TLS client certificate whose single SPIFFE URI SAN maps to an agent.
//
// Every failure wraps ErrAuthFailed; the wrapped detail is for logs and never
// contains a token, secret or verifier.
package identity
