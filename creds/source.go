package creds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// ErrUnavailable is returned (wrapped) when no credential can be had for a
// request: Vault unreachable, role missing, lease revoked. Its text is the
// only thing an agent ever sees of the cause (SQLSTATE 08001).
var ErrUnavailable = errors.New("upstream credentials unavailable")

// Secret is a credential value. It never prints, logs or marshals as
// itself: fmt (every verb, including the ones it has no method for), slog
// and encoding/json show "[redacted]". It holds the value behind a pointer
// because fmt, when a verb does not fit a value (say %s of a struct with a
// pointer field), prints that value by reflection without calling any of
// its methods: a string-kind Secret inside it came out as written, a
// pointer comes out as an address. Build one with NewSecret; the zero
// Secret is empty.
type Secret struct{ p *string }

// NewSecret wraps s.
func NewSecret(s string) Secret {
	if s == "" {
		return Secret{}
	}
	return Secret{p: &s}
}

const redacted = "[redacted]"

func (Secret) String() string               { return redacted }
func (Secret) GoString() string             { return redacted }
func (Secret) Format(f fmt.State, _ rune)   { _, _ = io.WriteString(f, redacted) }
func (Secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Reveal returns the secret value, for the one place that sends it upstream.
func (s Secret) Reveal() string {
	if s.p == nil {
		return ""
	}
	return *s.p
}

// Empty says whether the secret is "".
func (s Secret) Empty() bool { return s.p == nil || *s.p == "" }

// Request says whose credential is wanted.
type Request struct {
	Agent    string // agent name
	Role     string // keyhole role of the agent
	Upstream string // upstream name the role uses
}

// Lease is a credential in use by one session. Done is closed when the
// credential stops being valid (revoked, expired, agent removed); the
// session must then end. Release tells the source the session no longer
// needs it.
type Lease struct {
	User     string
	Password Secret
	// Done is closed when the credential is no longer valid; nil never closes.
	Done <-chan struct{}
	// Cause, when Done is closed, says why (for logs; contains no secret).
	Cause   func() error
	release func()
	recheck func(context.Context) bool
}

// NewLease builds a Lease for Source implementations.
func NewLease(user string, password Secret, done <-chan struct{}, cause func() error, release func()) *Lease {
	return &Lease{User: user, Password: password, Done: done, Cause: cause, release: release}
}

// WithRecheck gives the lease the source's check of its credential, which
// Recheck calls.
func (l *Lease) WithRecheck(check func(context.Context) bool) *Lease {
	l.recheck = check
	return l
}

// Recheck is for a session whose upstream refused the credential at login
// (wrong password, no such user): the credential may have been revoked
// behind the source's back (an operator revoking a Vault lease drops the
// database user at once; the source learns it only at its next renewal).
// Recheck asks the source now. It reports whether the lease has ended, in
// which case Done is closed and a new Acquire gets another credential; if
// not, the refusal had another cause. A source that cannot check says no.
func (l *Lease) Recheck(ctx context.Context) bool {
	if l == nil || l.recheck == nil {
		return false
	}
	return l.recheck(ctx)
}

// Release returns the lease to its source. Safe to call more than once.
func (l *Lease) Release() {
	if l != nil && l.release != nil {
		r := l.release
		l.release = nil
		r()
	}
}

// Source hands out upstream credentials per (agent, role).
type Source interface {
	Acquire(ctx context.Context, req Request) (*Lease, error)
	Close() error
}

// IndexLogin is the index of the first occurrence of login in s that no
// identifier character touches, or -1: where a server's error or notice
// text names the upstream login, which the proxies replace before an agent,
// the audit or the log sees it (a Vault-made name is for keyhole alone).
func IndexLogin(s, login string) int {
	for i := 0; ; {
		k := strings.Index(s[i:], login)
		if k < 0 {
			return -1
		}
		k += i
		end := k + len(login)
		if (k == 0 || !loginByte(s[k-1])) && (end == len(s) || !loginByte(s[end])) {
			return k
		}
		i = k + 1
	}
}

// loginByte reports whether c may be part of a login name next to one.
func loginByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '$' || c == '-' || c >= 0x80
}
