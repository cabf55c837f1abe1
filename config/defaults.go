package config

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// ApplyDefaults fills every zero field that has a documented default. Call
// it after flags have been applied and before using the configuration.
func (c *Config) ApplyDefaults() {
	if c.Listen.Postgres == "" {
		c.Listen.Postgres = DefaultListenPostgres
	}
	for k, u := range c.Upstreams {
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
	if c.Limits.StartupTimeout == 0 {
		c.Limits.StartupTimeout = DefaultStartupTimeout
	}
	if c.Limits.MaxMessageSize == 0 {
		c.Limits.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.Limits.ShutdownGrace == 0 {
		c.Limits.ShutdownGrace = DefaultShutdownGrace
	}
	if c.Log.Format == "" {
		c.Log.Format = DefaultLogFormat
	}
	if c.Log.Level == "" {
		c.Log.Level = DefaultLogLevel
	}
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
	if s := c.Creds.Static; s != nil && s.PasswordEnv != "" && s.Password == "" {
		s.Password = getenv(s.PasswordEnv)
		if s.Password == "" {
			return &Error{File: c.Path, Key: "creds.static.password_env", Msg: fmt.Sprintf("environment variable %s is empty or unset", s.PasswordEnv)}
		}
	}
	return nil
}

// ParseUpstreamURL splits a postgres://[USER[:PASS]@]HOST[:PORT]/DB[?sslmode=MODE]
// URL (as given to keyhole serve --upstream) into an upstream and the
// static login it carries (User empty when the URL has none: with Vault
// credentials the login comes from Vault). Errors never contain the
// password.
func ParseUpstreamURL(raw string) (Upstream, *Static, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url errors quote the input, which may hold a password.
		return Upstream{}, nil, fmt.Errorf("%w: upstream URL does not parse", ErrInvalid)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return Upstream{}, nil, fmt.Errorf("%w: upstream URL scheme %q: want postgres://", ErrInvalid, u.Scheme)
	}
	host := u.Hostname()
	if host == "" {
		host = "127.0.0.1"
	}
	port := u.Port()
	if port == "" {
		port = DefaultUpstreamPGPort
	}
	var user, pw string
	if u.User != nil {
		user = u.User.Username()
		pw, _ = u.User.Password()
	}
	db := strings.TrimPrefix(u.Path, "/")
	if db == "" {
		db = user
	}
	up := Upstream{Addr: net.JoinHostPort(host, port), Database: db}
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
	}
	return up, &Static{User: user, Password: pw}, nil
}

// RedactURL returns the URL with its password replaced, for logs.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "[unparseable URL]"
	}
	return u.Redacted()
}
