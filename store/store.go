package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "github.com/mattn/go-sqlite3"    // database/sql driver "sqlite3"
)

// Errors the store returns (wrapped).
var (
	// ErrNotFound: no request, grant or login of that id.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the request or grant is not in a state that allows the
	// change (approving a declined-then-approved request, revoking an
	// expired grant).
	ErrConflict = errors.New("conflict")
)

// Kind is a backend.
type Kind string

const (
	SQLite   Kind = "sqlite"
	Postgres Kind = "postgres"
)

// Store is an open store. It is safe for concurrent use.
type Store struct {
	db        *sql.DB
	kind      Kind
	now       func() time.Time
	maxOpen   int
	maxShapes int
}

// Bounds on what one agent's denials keep in the store, whatever it sends
// (Options.MaxOpenPerAgent, MaxShapesPerAgent).
const (
	// DefaultMaxOpenPerAgent: an agent's pending requests. A new shape
	// beyond it is kept as blocked (not approvable) and says why: an
	// agent sending many distinct denied statements cannot drown the
	// reviewers.
	DefaultMaxOpenPerAgent = 50
	// DefaultMaxShapesPerAgent: an agent's blocked shapes (nothing
	// approvable). A new one beyond it replaces the agent's least recently
	// seen: the rows an agent can make are bounded, the recent ones kept.
	DefaultMaxShapesPerAgent = 1000
)

// Options tune Open.
type Options struct {
	// Password, for a Postgres URL without one (from an environment
	// variable named in keyhole.yaml).
	Password string
	// Now replaces time.Now (tests).
	Now func() time.Time
	// MaxOpenPerAgent and MaxShapesPerAgent bound each agent's pending
	// requests and blocked shapes (0: the defaults).
	MaxOpenPerAgent, MaxShapesPerAgent int
}

// ParseURL tells the backend of a store URL and its driver data source:
// postgres://… (or postgresql://) for Postgres; sqlite:PATH, sqlite://PATH
// or a plain file path for SQLite.
func ParseURL(raw string) (Kind, string, error) {
	switch {
	case strings.HasPrefix(raw, "postgres://"), strings.HasPrefix(raw, "postgresql://"):
		if _, err := url.Parse(raw); err != nil {
			return "", "", errors.New("store URL does not parse")
		}
		return Postgres, raw, nil
	case strings.HasPrefix(raw, "sqlite://"):
		return SQLite, strings.TrimPrefix(raw, "sqlite://"), nil
	case strings.HasPrefix(raw, "sqlite:"):
		return SQLite, strings.TrimPrefix(raw, "sqlite:"), nil
	case strings.Contains(raw, "://"):
		return "", "", fmt.Errorf("store URL scheme: want postgres:// or sqlite:")
	case raw == "":
		return "", "", errors.New("store URL is empty")
	}
	return SQLite, raw, nil
}

// Open opens (creating a SQLite file if needed) and migrates the store.
func Open(ctx context.Context, rawURL string, opts Options) (*Store, error) {
	kind, src, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	var db *sql.DB
	switch kind {
	case Postgres:
		if opts.Password != "" {
			u, _ := url.Parse(src)
			if u.User != nil {
				u.User = url.UserPassword(u.User.Username(), opts.Password)
				src = u.String()
			}
		}
		db, err = sql.Open("pgx", src)
		if err == nil {
			db.SetMaxOpenConns(8)
			db.SetConnMaxIdleTime(5 * time.Minute)
		}
	case SQLite:
		if src == "" {
			return nil, errors.New("store: sqlite path is empty")
		}
		abs, aerr := filepath.Abs(src)
		if aerr != nil {
			return nil, fmt.Errorf("store: %w", aerr)
		}
		// WAL: readers never wait for the writer; busy_timeout: writers
		// of other connections wait rather than fail; _txlock=immediate:
		// a transaction takes the write lock when it starts, so two
		// read-then-write transactions cannot deadlock.
		// A new database is made readable by its owner only, as the audit
		// file is: it holds who asked to run what, and the reviewers'
		// notes. (SQLite gives its -wal and -shm files the database's
		// mode; an empty file is an empty database.)
		if f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
			_ = f.Close()
		}
		dsn := "file:" + abs + "?_busy_timeout=10000&_journal_mode=WAL&_synchronous=NORMAL&_foreign_keys=1&_txlock=immediate"
		db, err = sql.Open("sqlite3", dsn)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open: %w", err)
	}
	s := &Store{db: db, kind: kind, now: opts.Now, maxOpen: opts.MaxOpenPerAgent, maxShapes: opts.MaxShapesPerAgent}
	if s.now == nil {
		s.now = time.Now
	}
	if s.maxOpen <= 0 {
		s.maxOpen = DefaultMaxOpenPerAgent
	}
	if s.maxShapes <= 0 {
		s.maxShapes = DefaultMaxShapesPerAgent
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: connect: %w", err)
	}
	if err := s.migrate(pctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// Kind is the store's backend.
func (s *Store) Kind() Kind { return s.kind }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Ping checks the database answers (health checks).
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// q rewrites ? placeholders into Postgres's $n. The store's SQL has no ?
// anywhere else.
func (s *Store) q(query string) string {
	if s.kind != Postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}

func (s *Store) exec(ctx context.Context, x execer, query string, args ...any) (sql.Result, error) {
	return x.ExecContext(ctx, s.q(query), args...)
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// tx runs f in a transaction, committing when it returns nil.
func (s *Store) tx(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// NewID returns prefix followed by 16 random base32 characters (80 bits).
func NewID(prefix string) string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return prefix + strings.ToLower(b32.EncodeToString(b[:]))
}
