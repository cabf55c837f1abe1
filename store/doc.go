// Package store keeps what keyhole's reviewers work with: access requests
// (one per agent and statement shape), timed grants and their revocation,
// and the console's index of blocked statements, agents, sessions and
// replicas, plus reviewer logins.
//
// It is not the record of decisions: the audit log is. The store indexes
// what the console shows and holds what only reviewers create (grants),
// with retention (Prune).
//
// Two backends share one schema and one test suite: SQLite (embedded, the
// default: a file next to the audit log, through the cgo driver
// mattn/go-sqlite3, since keyhole needs cgo for pg_query anyway) and
// Postgres (for several replicas sharing requests and grants, through
// pgx). Open applies the schema migrations at start, each version once and
// in order, under a lock (Postgres: an advisory lock; SQLite: an immediate
// transaction), so replicas starting together migrate once; a database
// whose schema is newer than this build is refused.
//
// Times are stored as Unix milliseconds, lists as JSON text: the same
// columns on both backends.
package store
