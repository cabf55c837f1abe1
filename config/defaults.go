package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/keyholedb/keyhole/creds"
)

// ApplyDefaults fills every zero field that has a documented default and
// the fields of each upstream that come from its URL. Call it after
// Validate (and after flags have been applied), before using the
// configuration.
func (c *Config) ApplyDefaults() {
	if c.Listen.Postgres == "" {
		c.Listen.Postgres = DefaultListenPostgres
	}
	for k, u := range c.Upstreams {
		if p, _, err := ParseUpstreamURL(u.URL); err == nil {
			u.Dialect, u.Addr, u.Database = p.Dialect, p.Addr, p.Database
			if u.SSLMode == "" {
				u.SSLMode = p.SSLMode
			}
			if u.CAFile == "" && p.CAFile != "" {
				u.CAFile = p.CAFile
				// Like ca_file, a file's sslrootcert is relative to the
				// file; a flag's to the working directory.
				if !filepath.IsAbs(u.CAFile) && c.Path != "" && !c.isOverridden("upstreams") {
					u.CAFile = filepath.Join(filepath.Dir(c.Path), u.CAFile)
				}
			}
		}
		if u.SSLMode == "" {
			u.SSLMode = DefaultSSLMode(u.Addr)
		}
		c.Upstreams[k] = u
	}
	if c.Audit.MaxBytes == 0 {
		c.Audit.MaxBytes = DefaultAuditMaxBytes
	}
	if c.Audit.Backups == 0 {
		c.Audit.Backups = DefaultAuditBackups
	}
	if c.Policy.ReloadInterval == 0 {
		c.Policy.ReloadInterval = DefaultPolicyReload
	}
	if c.Limits.MaxConns == 0 {
		c.Limits.MaxConns = DefaultMaxConns
	}
	if c.Limits.MaxStartups == 0 {
		c.Limits.MaxStartups = DefaultMaxStartups
	}
	if c.Limits.StartupTimeout == 0 {
		c.Limits.StartupTimeout = DefaultStartupTimeout
	}
	if c.Limits.MaxMessageSize == 0 {
		c.Limits.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.Limits.BufferMemory == 0 {
		c.Limits.BufferMemory = DefaultBufferMemory(c.Limits.MaxMessageSize)
	}
	if c.Limits.IdleTimeout == 0 {
		c.Limits.IdleTimeout = DefaultIdleTimeout
	}
	if c.Limits.ShutdownGrace == 0 {
		c.Limits.ShutdownGrace = DefaultShutdownGrace
	}
	if c.Limits.Relay == "" {
		c.Limits.Relay = DefaultRelay
	}
	if c.Limits.UpstreamReuseMax == 0 {
		c.Limits.UpstreamReuseMax = DefaultUpstreamReuseMax
	}
	if c.Limits.UpstreamReuseIdle == 0 {
		c.Limits.UpstreamReuseIdle = DefaultUpstreamReuseIdle
	}
	if c.Log.Format == "" {
		c.Log.Format = DefaultLogFormat
	}
	if c.Log.Level == "" {
		c.Log.Level = DefaultLogLevel
	}
	c.applyApprovalDefaults()
}

// CatalogRole is the keyhole role whose Vault credential reads the schema
// of the named upstream: its catalog_role, else creds.vault.catalog_role,
// else DefaultCatalogRole.
func (c *Config) CatalogRole(upstream string) string {
	if r := c.Upstreams[upstream].CatalogRole; r != "" {
		return r
	}
	if v := c.Creds.Vault; v != nil && v.CatalogRole != "" {
		return v.CatalogRole
	}
	return DefaultCatalogRole
}

// DefaultSSLMode is the upstream sslmode used when none is configured:
// disable for a loopback address (the local development database), and
// verify-full for anything else, so that a credential never crosses a
// network in the clear by default.
func DefaultSSLMode(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return SSLDisable
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return SSLDisable
	}
	return SSLVerifyFull
}

// ResolveSecrets reads the secrets the configuration names from the
// environment (getenv is os.Getenv outside tests). A named variable that is
// unset or empty is an error: keyhole does not start with a half-configured
// credential. Error messages name the variable, never its value.
func (c *Config) ResolveSecrets(getenv func(string) string) error {
	if s := c.Creds.Static; s != nil && s.PasswordEnv != "" && s.Password.Empty() {
		s.Password = creds.NewSecret(getenv(s.PasswordEnv))
		if s.Password.Empty() {
			return &Error{File: c.Path, Key: "creds.static.password_env", Msg: fmt.Sprintf("environment variable %s is empty or unset", s.PasswordEnv)}
		}
	}
	return c.resolveApprovalSecrets(getenv)
}

// ParseUpstreamURL splits an upstream URL,
// postgres://[USER[:PASS]@]HOST[:PORT]/DB[?sslmode=MODE&sslrootcert=FILE]
// or the same with mysql://, into an upstream (its URL without the login)
// and the static login it carries (User empty when the URL has none: with
// Vault credentials the login comes from Vault). A Postgres URL without a
// database names the user's, as libpq does. SSLMode stays empty when the
// URL does not set it (ApplyDefaults settles it). Errors never contain the
// password.
func ParseUpstreamURL(raw string) (Upstream, *Static, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url errors quote the input, which may hold a password.
		return Upstream{}, nil, fmt.Errorf("%w: upstream URL does not parse", ErrInvalid)
	}
	var dialect, port string
	switch u.Scheme {
	case "postgres", "postgresql":
		dialect, port = DialectPostgres, DefaultUpstreamPGPort
	case "mysql", "mariadb":
		dialect, port = DialectMySQL, DefaultUpstreamMySQLPort
	default:
		return Upstream{}, nil, fmt.Errorf("%w: upstream URL scheme %q: want postgres:// or mysql://", ErrInvalid, u.Scheme)
	}
	if u.Opaque != "" {
		return Upstream{}, nil, fmt.Errorf("%w: upstream URL: want %s://HOST[:PORT]/DATABASE", ErrInvalid, u.Scheme)
	}
	host := u.Hostname()
	if host == "" {
		host = "127.0.0.1"
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n <= 0 || n > 65535 {
			return Upstream{}, nil, fmt.Errorf("%w: upstream URL port %q", ErrInvalid, p)
		}
		port = p
	}
	var user, pw string
	if u.User != nil {
		user = u.User.Username()
		pw, _ = u.User.Password()
	}
	db := strings.TrimPrefix(u.Path, "/")
	if db == "" && dialect == DialectPostgres {
		db = user
	}
	if strings.Contains(db, "/") {
		return Upstream{}, nil, fmt.Errorf("%w: upstream URL path %q: want one database name", ErrInvalid, u.Path)
	}
	up := Upstream{Dialect: dialect, Addr: net.JoinHostPort(host, port), Database: db}
	keep := url.Values{}
	for k, vs := range u.Query() {
		v := vs[len(vs)-1]
		switch k {
		case "sslmode":
			switch v {
			case SSLDisable, SSLRequire, SSLVerifyCA, SSLVerifyFull:
				up.SSLMode = v
			default:
				return Upstream{}, nil, fmt.Errorf("%w: upstream URL sslmode %q: want disable, require, verify-ca or verify-full", ErrInvalid, v)
			}
		case "sslrootcert":
			up.CAFile = v
		default:
			return Upstream{}, nil, fmt.Errorf("%w: upstream URL parameter %q not supported", ErrInvalid, k)
		}
		keep.Set(k, v)
	}
	clean := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawQuery: keep.Encode()}
	up.URL = clean.String()
	return up, &Static{User: user, Password: creds.NewSecret(pw)}, nil
}

// DefaultBufferMemory is limits.buffer_memory's default: room for four
// messages of the largest size at once.
func DefaultBufferMemory(maxMessageSize int) int64 { return 4 * int64(maxMessageSize) }
