// Package creds hands out upstream database credentials per (agent, role).
//
// Two sources implement Source:
//
//   - Static: one fixed user/password (from a DSN), for development and
//     for upstreams without Vault. Its leases never end.
//   - Vault: dynamic credentials from the Vault database secrets engine.
//     One lease per (agent, role) is shared by that agent's sessions,
//     renewed before it expires, replaced by a fresh one before its max TTL,
//     and revoked when the agent has had no session for a grace period, when
//     the agent is removed (RevokeAgent) and on Close.
//
// A lease revoked in Vault is noticed at its next renewal (Vault answers
// 400), so within RenewBefore (default a third of the TTL). keyhole's own
// token is renewed in the background too, since Vault revokes a token's
// leases with it.
//
// RolesForPolicy turns keyhole policy roles into Vault database role
// definitions whose GRANTs enforce the same table/verb/column/label limits
// in the database itself, so a leaked credential is no wider than the
// policy.
//
// No credential, token or Vault error text ever appears in a returned error,
// a log line or a Lease's Cause: errors wrap ErrUnavailable and logs carry a
// generic class (e.g. an HTTP status code) only.
package creds
