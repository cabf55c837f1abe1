// Package vaulte2e holds the end-to-end tests of keyhole's Vault dynamic
// credentials (in package vaulte2e_test): a pgproxy.Server wired in
// process with the real policy engine and creds.NewVault, in front of a
// throwaway database on the local Postgres, with a real Vault dev server
// (internal/testvault) whose database roles come from creds.RolesForPolicy,
// driven by pgx connecting as agents with tokens.
//
// Run with KEYHOLE_REQUIRE_VAULT=1 so a missing bin/vault fails instead of
// skipping.
package vaulte2e
