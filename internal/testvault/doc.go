// Package testvault runs a real Vault dev server for tests.
//
// Start launches bin/vault (built by scripts/vault.sh build; KEYHOLE_VAULT_BIN
// overrides the path) as `vault server -dev` on a free loopback port with a
// random root token, waits until it is unsealed, and stops it when the test
// ends. Without the binary the test is skipped, unless KEYHOLE_REQUIRE_VAULT
// is set (CI), in which case it fails.
//
// Dev mode keeps everything in memory, so a restarted server is a new,
// empty Vault. To test "Vault down, then back" put a Proxy between the code
// under test and the server and cut it: the server keeps its leases.
//
// The machine's Postgres trusts local TCP connections (pg_hba "trust"), so
// the passwords Vault generates are not checked at login there; tests that
// care compare them with the SCRAM verifier Postgres stores (VerifyPassword).
package testvault
