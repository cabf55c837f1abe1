package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// migrations are the schema versions, in order; version i+1 is
// migrations[i]. A released migration is never edited: a change is a new
// version. %AUTOID% is the backend's auto-incrementing key.
var migrations = []string{
	// 1: requests (blocked statement shapes per agent), grants, the
	// denial index, agents, sessions, replicas, logins, change counters.
	`
CREATE TABLE blocked (
	id          TEXT PRIMARY KEY,
	agent       TEXT NOT NULL,
	fingerprint TEXT NOT NULL,
	role        TEXT NOT NULL DEFAULT '',
	statement   TEXT NOT NULL DEFAULT '',
	rule        TEXT NOT NULL DEFAULT '',
	reasons     TEXT NOT NULL DEFAULT '[]',
	message     TEXT NOT NULL DEFAULT '',
	hint        TEXT NOT NULL DEFAULT '',
	purpose     TEXT NOT NULL DEFAULT '',
	grantable   TEXT NOT NULL DEFAULT '[]',
	why_not     TEXT NOT NULL DEFAULT '',
	status      TEXT NOT NULL,
	count       BIGINT NOT NULL DEFAULT 0,
	allowed     BIGINT NOT NULL DEFAULT 0,
	first_seen  BIGINT NOT NULL,
	last_seen   BIGINT NOT NULL,
	last_allowed BIGINT NOT NULL DEFAULT 0,
	decided_by  TEXT NOT NULL DEFAULT '',
	decided_at  BIGINT NOT NULL DEFAULT 0,
	note        TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX blocked_agent_fp ON blocked (agent, fingerprint);
CREATE INDEX blocked_status ON blocked (status, last_seen);
CREATE INDEX blocked_fp ON blocked (fingerprint);

CREATE TABLE blocked_reasons (
	block_id TEXT NOT NULL,
	code     TEXT NOT NULL DEFAULT '',
	verb     TEXT NOT NULL DEFAULT '',
	tbl      TEXT NOT NULL DEFAULT '',
	col      TEXT NOT NULL DEFAULT '',
	label    TEXT NOT NULL DEFAULT '',
	rule     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX blocked_reasons_id ON blocked_reasons (block_id);

CREATE TABLE grants (
	id           TEXT PRIMARY KEY,
	request_id   TEXT NOT NULL DEFAULT '',
	agent        TEXT NOT NULL,
	role         TEXT NOT NULL DEFAULT '',
	scope        TEXT NOT NULL,
	fingerprint  TEXT NOT NULL DEFAULT '',
	statement    TEXT NOT NULL DEFAULT '',
	access       TEXT NOT NULL DEFAULT '[]',
	purpose      TEXT NOT NULL DEFAULT '',
	approved_by  TEXT NOT NULL,
	note         TEXT NOT NULL DEFAULT '',
	created_at   BIGINT NOT NULL,
	expires_at   BIGINT NOT NULL,
	end_sessions INTEGER NOT NULL DEFAULT 0,
	revoked_at   BIGINT NOT NULL DEFAULT 0,
	revoked_by   TEXT NOT NULL DEFAULT '',
	revoke_note  TEXT NOT NULL DEFAULT '',
	ended        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX grants_expires ON grants (expires_at);
CREATE INDEX grants_agent ON grants (agent);

CREATE TABLE denials (
	id          %AUTOID%,
	at          BIGINT NOT NULL,
	block_id    TEXT NOT NULL,
	agent       TEXT NOT NULL,
	role        TEXT NOT NULL DEFAULT '',
	fingerprint TEXT NOT NULL,
	rule        TEXT NOT NULL DEFAULT '',
	session     TEXT NOT NULL DEFAULT '',
	client      TEXT NOT NULL DEFAULT '',
	protocol    TEXT NOT NULL DEFAULT '',
	dbname      TEXT NOT NULL DEFAULT '',
	replica     TEXT NOT NULL DEFAULT '',
	error_code  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX denials_at ON denials (at);
CREATE INDEX denials_fp ON denials (fingerprint, at);
CREATE INDEX denials_block ON denials (block_id, at);
CREATE INDEX denials_agent ON denials (agent, at);

CREATE TABLE agents (
	name        TEXT PRIMARY KEY,
	role        TEXT NOT NULL DEFAULT '',
	purpose     TEXT NOT NULL DEFAULT '',
	last_client TEXT NOT NULL DEFAULT '',
	last_seen   BIGINT NOT NULL
);

CREATE TABLE sessions (
	id         TEXT PRIMARY KEY,
	replica    TEXT NOT NULL,
	agent      TEXT NOT NULL,
	role       TEXT NOT NULL DEFAULT '',
	client     TEXT NOT NULL DEFAULT '',
	protocol   TEXT NOT NULL DEFAULT '',
	dbname     TEXT NOT NULL DEFAULT '',
	started_at BIGINT NOT NULL
);
CREATE INDEX sessions_agent ON sessions (agent);

CREATE TABLE replicas (
	id         TEXT PRIMARY KEY,
	addr       TEXT NOT NULL DEFAULT '',
	started_at BIGINT NOT NULL,
	heartbeat  BIGINT NOT NULL
);

CREATE TABLE logins (
	id_hash    TEXT PRIMARY KEY,
	username   TEXT NOT NULL,
	role       TEXT NOT NULL,
	method     TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL
);

CREATE TABLE counters (
	name    TEXT PRIMARY KEY,
	version BIGINT NOT NULL
);
INSERT INTO counters (name, version) VALUES ('grants', 1), ('feed', 1);
`,
	// 2: a console session remembers which password it was opened with
	// (admin: a changed password ends the sessions of the old one).
	`
ALTER TABLE logins ADD COLUMN secret_tag TEXT NOT NULL DEFAULT '';
`,
}

// SchemaVersion is the newest schema this build knows.
var SchemaVersion = len(migrations)

// migrate applies the migrations the database lacks, each in its own
// transaction, under a lock that serializes replicas starting together.
func (s *Store) migrate(ctx context.Context) error {
	for {
		done, err := s.migrateOne(ctx)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

func (s *Store) migrateOne(ctx context.Context) (done bool, err error) {
	err = s.tx(ctx, func(tx *sql.Tx) error {
		if s.kind == Postgres {
			// One migrator at a time across replicas; released at commit.
			if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(7343100901)"); err != nil {
				return fmt.Errorf("store: migration lock: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
			return fmt.Errorf("store: schema_migrations: %w", err)
		}
		var cur int
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&cur); err != nil {
			return fmt.Errorf("store: schema version: %w", err)
		}
		switch {
		case cur > SchemaVersion:
			return fmt.Errorf("store: the database's schema is version %d, newer than this keyhole's %d: upgrade keyhole", cur, SchemaVersion)
		case cur == SchemaVersion:
			done = true
			return nil
		}
		text := migrations[cur]
		auto := "INTEGER PRIMARY KEY AUTOINCREMENT"
		if s.kind == Postgres {
			auto = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
		}
		text = strings.ReplaceAll(text, "%AUTOID%", auto)
		for _, stmt := range strings.Split(text, ";") {
			if strings.TrimSpace(stmt) == "" {
				continue
			}
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("store: migration %d: %w", cur+1, err)
			}
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, cur+1, ms(s.now())); err != nil {
			return fmt.Errorf("store: migration %d: %w", cur+1, err)
		}
		return nil
	})
	return done, err
}
