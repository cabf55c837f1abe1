// Package e2e holds keyhole's end-to-end tests (in package e2e_test): they
// build the keyhole binary, start `keyhole serve` as a subprocess against a
// throwaway database on the local Postgres, and drive it with real clients
// — pgx (simple and extended protocol), lib/pq, psql, psycopg2, psycopg 3
// (named cursors, pipeline mode, COPY), asyncpg, node-postgres, postgres.js and pgbench — checking SQLSTATEs, the rows that stay in the
// database, the audit log and `keyhole audit`, policy reload (SIGHUP and
// file change), graceful shutdown, fail-closed startup, agent TLS / mTLS
// (SPIFFE) / SCRAM, upstream sslmodes, and Vault dynamic credentials from a
// real Vault dev server. mysql_test.go runs keyhole with a MariaDB upstream
// beside a Postgres one and drives its MySQL listener with go-sql-driver/mysql
// (text and binary prepared), the mariadb CLI (Ctrl-C included), PyMySQL and
// mysql2 (internal/e2e/mysql); drivers_test.go adds postgres.js, pgx
// batches, pgJDBC's batches, fetch-size portals and savepoints, and on the
// MySQL side mysql2's binary protocol and pool, MariaDB Connector/Node
// (bulk execution, JSON), Connector/J's batch options, mysqlclient, the
// mariadb CLI's source and binary mode, and mysqldump.
//
// Clients that are not Go modules, and bin/vault, come from
// scripts/setup.sh; a missing one fails its test with a message saying so.
package e2e
