package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Login is a reviewer's console session. The session token itself is
// never stored: IDHash is its SHA-256.
type Login struct {
	IDHash string
	User   string
	Role   string
	Method string // "password" or "proxy"
	// SecretTag identifies the credential the session was opened with
	// (admin: a digest of the reviewer's password hash); "" for none.
	SecretTag string
	Created   time.Time
	Expires   time.Time
}

// CreateLogin stores a console session.
func (s *Store) CreateLogin(ctx context.Context, l Login) error {
	if _, err := s.db.ExecContext(ctx, s.q(`INSERT INTO logins (id_hash, username, role, method, secret_tag, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)`),
		l.IDHash, l.User, l.Role, l.Method, l.SecretTag, ms(l.Created), ms(l.Expires)); err != nil {
		return fmt.Errorf("store: create login: %w", err)
	}
	return nil
}

// Login returns the unexpired console session of that hash.
func (s *Store) Login(ctx context.Context, idHash string) (*Login, error) {
	var l Login
	var created, expires int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT id_hash, username, role, method, secret_tag, created_at, expires_at FROM logins WHERE id_hash = ? AND expires_at > ?`),
		idHash, ms(s.now())).Scan(&l.IDHash, &l.User, &l.Role, &l.Method, &l.SecretTag, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("login: %w", ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: login: %w", err)
	}
	l.Created, l.Expires = fromMS(created), fromMS(expires)
	return &l, nil
}

// DeleteLogin ends a console session.
func (s *Store) DeleteLogin(ctx context.Context, idHash string) error {
	if _, err := s.db.ExecContext(ctx, s.q(`DELETE FROM logins WHERE id_hash = ?`), idHash); err != nil {
		return fmt.Errorf("store: delete login: %w", err)
	}
	return nil
}

// DeleteLoginsOf ends every console session of a user (its password or
// role changed, or it was removed).
func (s *Store) DeleteLoginsOf(ctx context.Context, user string) error {
	if _, err := s.db.ExecContext(ctx, s.q(`DELETE FROM logins WHERE username = ?`), user); err != nil {
		return fmt.Errorf("store: delete logins: %w", err)
	}
	return nil
}
