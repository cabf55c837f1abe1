package creds

import (
	"context"
	"errors"
	"fmt"
	"net/url"
)

// Static is a Source that hands every request the same user and password.
// Its leases never end (Done is nil). It is meant for development and for
// upstreams that have no Vault; production deployments use Vault so that
// keyhole never holds a long-lived password.
type Static struct {
	User     string
	Password Secret
}

var _ Source = (*Static)(nil)

// ErrNoUser is returned by StaticFromDSN when the DSN names no user.
var ErrNoUser = errors.New("dsn has no user")

// StaticFromDSN builds a Static from the userinfo of a postgres:// or
// mysql:// style URL DSN ("postgres://user:pass@host/db"). The password
// may be empty (trust or peer authentication upstream). Errors never
// contain the DSN, since it may carry the password.
func StaticFromDSN(dsn string) (*Static, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		// url.Error embeds the input; drop it.
		return nil, fmt.Errorf("parse static credential dsn: invalid URL")
	}
	if u.User == nil || u.User.Username() == "" {
		return nil, fmt.Errorf("static credential dsn: %w", ErrNoUser)
	}
	pw, _ := u.User.Password()
	return &Static{User: u.User.Username(), Password: NewSecret(pw)}, nil
}

// Acquire returns a lease with the static user and password.
func (s *Static) Acquire(ctx context.Context, _ Request) (*Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("acquire static credential: %w", err)
	}
	if s == nil || s.User == "" {
		return nil, fmt.Errorf("static credential has no user: %w", ErrUnavailable)
	}
	return NewLease(s.User, s.Password, nil, func() error { return nil }, nil), nil
}

// Close does nothing; static credentials are not revoked.
func (s *Static) Close() error { return nil }
