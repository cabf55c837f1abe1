// Package vaulte2e holds the end-to-end tests of keyhole's Vault dynamic
// credentials (in package vaulte2e_test): a gateway.Gateway in process,
// configured like keyhole serve with creds.vault, in front of a throwaway
// database on the local Postgres, with a real Vault dev server
// (internal/testvault) whose database roles are what `keyhole vault roles
// --apply` writes (creds.RolesForPolicy and gateway.CatalogVaultRole),
// driven by pgx connecting as agents with tokens. Policy changes go
// through the gateway's Reload, as SIGHUP does. mysql_test.go does the
// same for a MariaDB upstream behind the MySQL front end, with Vault's
// mysql-database-plugin and go-sql-driver/mysql.
//
// Run with KEYHOLE_REQUIRE_VAULT=1 so a missing bin/vault fails instead of
// skipping.
package vaulte2e
