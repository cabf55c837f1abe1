package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/keyholedb/keyhole/creds"
)

// Defaults of the store, approvals, console and cluster sections.
const (
	DefaultStoreFile          = "keyhole.db"
	DefaultDenialRetention    = 30 * 24 * time.Hour
	DefaultHistoryRetention   = 365 * 24 * time.Hour
	DefaultMaxGrant           = 24 * time.Hour
	DefaultConsoleSession     = 12 * time.Hour
	DefaultProxyUserHeader    = "X-Forwarded-User"
	DefaultProxyGroupsHeader  = "X-Forwarded-Groups"
	DefaultProxyProtoHeader   = "X-Forwarded-Proto"
	maxReplicaNumber          = 127
	defaultSyncIntervalMillis = 200
)

// DefaultGrantDurations are the console's preset durations.
var DefaultGrantDurations = []time.Duration{15 * time.Minute, time.Hour, 24 * time.Hour}

// Store is where access requests, grants and the console's index live.
// In the file it is either a URL (`store: postgres://…`) or a mapping.
type Store struct {
	// URL is sqlite:PATH (the default: keyhole.db next to audit.file, or
	// next to keyhole.yaml without one) or postgres://USER@HOST/DB
	// ?sslmode=… for several replicas sharing requests and grants.
	URL string `yaml:"url"`
	// PasswordEnv names the environment variable holding the Postgres
	// password (never in the file).
	PasswordEnv string `yaml:"password_env"`
	// Password is resolved from PasswordEnv; never read from the file. A
	// creds.Secret, so that printing a Config shows [redacted].
	Password creds.Secret `yaml:"-"`
	// Retention: denials (the blocked-statement index; default 30 days)
	// and history (decided requests, ended grants; default 365 days).
	Retention Retention `yaml:"retention"`
	// SyncInterval is how often a replica looks for other replicas'
	// approvals and revocations (default 200ms).
	SyncInterval time.Duration `yaml:"sync_interval"`
}

// Retention is how long the store keeps what.
type Retention struct {
	Denials time.Duration `yaml:"denials"`
	History time.Duration `yaml:"history"`
}

// UnmarshalYAML accepts `store: URL` as well as the mapping, strictly.
func (s *Store) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		return n.Decode(&s.URL)
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: store: want a URL or a mapping", n.Line)
	}
	known := map[string]bool{"url": true, "password_env": true, "retention": true, "sync_interval": true}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !known[k.Value] {
			return fmt.Errorf("line %d: field %s not found in type config.Store", k.Line, k.Value)
		}
		if k.Value == "retention" {
			v := n.Content[i+1]
			for j := 0; j+1 < len(v.Content); j += 2 {
				if rk := v.Content[j].Value; rk != "denials" && rk != "history" {
					return fmt.Errorf("line %d: field %s not found in type config.Retention", v.Content[j].Line, rk)
				}
			}
		}
	}
	type plain Store
	return n.Decode((*plain)(s))
}

// Approvals configure just-in-time access requests and grants.
type Approvals struct {
	// Disabled: denials open no requests and nothing can be granted (the
	// console still reviews blocked statements).
	Disabled bool `yaml:"disabled"`
	// MaxDuration caps a grant (default 24h).
	MaxDuration time.Duration `yaml:"max_duration"`
	// Durations are the console's presets (default 15m, 1h, 24h); each at
	// most MaxDuration. A reviewer may also type a custom one.
	Durations []time.Duration `yaml:"durations"`
	// EndSessions: when a grant ends (expiry or revocation), the agent's
	// sessions that used it end too (default false: later statements are
	// refused, open sessions stay). A reviewer may choose per approval.
	EndSessions bool `yaml:"end_sessions"`
}

// Console configures the reviewers' console and API on the admin
// listener.
type Console struct {
	// UsersFile holds reviewers: name, role (viewer or approver), an
	// argon2id password hash and hashed API tokens (`keyhole reviewers`
	// writes it). Reloaded when it changes.
	UsersFile string `yaml:"users_file"`
	// SessionTTL is how long a console login lasts (default 12h).
	SessionTTL time.Duration `yaml:"session_ttl"`
	// ProxyAuth trusts an authenticating reverse proxy (oauth2-proxy …)
	// for who the reviewer is.
	ProxyAuth *ProxyAuth `yaml:"proxy_auth"`
	// TLS serves the admin listener over TLS with keyhole's certificate
	// (tls.cert_file); console cookies are then Secure.
	TLS bool `yaml:"tls"`
}

// ProxyAuth trusts identity headers set by a reverse proxy, only on
// connections from its addresses.
type ProxyAuth struct {
	// Trusted are the proxy's addresses (IPs or CIDRs); required. A
	// request from anywhere else that carries the headers is refused.
	Trusted []string `yaml:"trusted"`
	// UserHeader (default X-Forwarded-User) names the reviewer.
	UserHeader string `yaml:"user_header"`
	// GroupsHeader (default X-Forwarded-Groups) lists the reviewer's
	// groups, comma-separated.
	GroupsHeader string `yaml:"groups_header"`
	// Approvers and Viewers are groups (or user names) with that role; a
	// reviewer in neither is refused.
	Approvers []string `yaml:"approvers"`
	Viewers   []string `yaml:"viewers"`
}

// Cluster configures several replicas behind one address.
type Cluster struct {
	// Replica is this process's number, 1 to 127: it names the replica in
	// the store and is carried in the Postgres cancel keys it hands out,
	// so a CancelRequest that reaches another replica is forwarded here.
	// 0: a single keyhole (no forwarding).
	Replica int `yaml:"replica"`
	// Peers are the other replicas' Postgres listener addresses, by
	// replica number, for cancel forwarding.
	Peers map[int]string `yaml:"peers"`
}

// ReplicaName is the replica's id in the store ("" when not configured).
func (c *Cluster) ReplicaName() string {
	if c.Replica == 0 {
		return ""
	}
	return fmt.Sprintf("replica-%d", c.Replica)
}

// deviceFile reports an audit path whose directory is no place for the
// default store: a device, FIFO or socket (/dev/null; /dev/stdout when it
// is a pipe), or anything under /dev or /proc (/dev/stdout redirected to a
// file). The store would land in /dev, a file system in memory, and the
// console's requests and grants would go with the next reboot.
func deviceFile(path string) bool {
	abs, err := filepath.Abs(path)
	if err != nil {
		return false
	}
	for _, dir := range []string{"/dev/", "/proc/"} {
		if strings.HasPrefix(abs, dir) {
			return true
		}
	}
	fi, err := os.Stat(path)
	return err == nil && !fi.Mode().IsRegular()
}

func (c *Config) applyApprovalDefaults() {
	if c.Store.URL == "" {
		dir := "."
		switch {
		case c.Audit.File != "" && !deviceFile(c.Audit.File):
			dir = filepath.Dir(c.Audit.File)
		case c.Path != "":
			dir = filepath.Dir(c.Path)
		}
		c.Store.URL = "sqlite:" + filepath.Join(dir, DefaultStoreFile)
	}
	if c.Store.Retention.Denials == 0 {
		c.Store.Retention.Denials = DefaultDenialRetention
	}
	if c.Store.Retention.History == 0 {
		c.Store.Retention.History = DefaultHistoryRetention
	}
	if c.Store.SyncInterval == 0 {
		c.Store.SyncInterval = defaultSyncIntervalMillis * time.Millisecond
	}
	if c.Approvals.MaxDuration == 0 {
		c.Approvals.MaxDuration = DefaultMaxGrant
	}
	if len(c.Approvals.Durations) == 0 {
		for _, d := range DefaultGrantDurations {
			if d <= c.Approvals.MaxDuration {
				c.Approvals.Durations = append(c.Approvals.Durations, d)
			}
		}
	}
	if c.Console.SessionTTL == 0 {
		c.Console.SessionTTL = DefaultConsoleSession
	}
	if p := c.Console.ProxyAuth; p != nil {
		if p.UserHeader == "" {
			p.UserHeader = DefaultProxyUserHeader
		}
		if p.GroupsHeader == "" {
			p.GroupsHeader = DefaultProxyGroupsHeader
		}
	}
}

func (c *Config) resolveApprovalPaths(abs func(*string)) {
	abs(&c.Console.UsersFile)
	if strings.HasPrefix(c.Store.URL, "sqlite:") {
		p := strings.TrimPrefix(strings.TrimPrefix(c.Store.URL, "sqlite:"), "//")
		abs(&p)
		c.Store.URL = "sqlite:" + p
	}
}

func (c *Config) validateApprovals(bad func(key, format string, args ...any)) {
	if u := c.Store.URL; u != "" {
		switch {
		case strings.HasPrefix(u, "postgres://"), strings.HasPrefix(u, "postgresql://"):
			p, err := url.Parse(u)
			switch {
			case err != nil:
				bad("store.url", "does not parse")
			case p.User != nil:
				if _, has := p.User.Password(); has {
					bad("store.url", "carries a password: keyhole.yaml holds no credential (use store.password_env)")
				}
			}
		case strings.HasPrefix(u, "sqlite:"):
			if strings.TrimPrefix(strings.TrimPrefix(u, "sqlite:"), "//") == "" {
				bad("store.url", "sqlite: needs a file path")
			}
		default:
			bad("store.url", "%q: want sqlite:PATH or postgres://USER@HOST/DB", u)
		}
	}
	for k, d := range map[string]time.Duration{
		"store.retention.denials": c.Store.Retention.Denials, "store.retention.history": c.Store.Retention.History,
		"store.sync_interval": c.Store.SyncInterval, "approvals.max_duration": c.Approvals.MaxDuration,
		"console.session_ttl": c.Console.SessionTTL,
	} {
		if d < 0 {
			bad(k, "negative")
		}
	}
	if c.Store.SyncInterval > time.Second {
		bad("store.sync_interval", "%s: at most 1s (revocations must reach every replica within a second)", c.Store.SyncInterval)
	}
	maxD := c.Approvals.MaxDuration
	if maxD == 0 {
		maxD = DefaultMaxGrant
	}
	for i, d := range c.Approvals.Durations {
		if d <= 0 || d > maxD {
			bad(fmt.Sprintf("approvals.durations[%d]", i), "%s: want a positive duration of at most approvals.max_duration (%s)", d, maxD)
		}
	}
	if c.Console.TLS && c.Listen.Admin == "" {
		bad("console.tls", "needs listen.admin")
	}
	if c.Console.TLS && c.TLS.CertFile == "" && !c.TLS.GenerateSelfSigned {
		bad("console.tls", "needs tls.cert_file")
	}
	if p := c.Console.ProxyAuth; p != nil {
		if len(p.Trusted) == 0 {
			bad("console.proxy_auth.trusted", "required: the proxy's addresses (headers from anywhere else are refused)")
		}
		for i, t := range p.Trusted {
			if _, _, err := net.ParseCIDR(t); err != nil && net.ParseIP(t) == nil {
				bad(fmt.Sprintf("console.proxy_auth.trusted[%d]", i), "%q: want an IP address or a CIDR", t)
			}
		}
		if len(p.Approvers) == 0 && len(p.Viewers) == 0 {
			bad("console.proxy_auth", "set approvers or viewers: which groups may use the console")
		}
	}
	if c.Cluster.Replica < 0 || c.Cluster.Replica > maxReplicaNumber {
		bad("cluster.replica", "%d: want 1 to %d", c.Cluster.Replica, maxReplicaNumber)
	}
	for n, addr := range c.Cluster.Peers {
		key := fmt.Sprintf("cluster.peers.%d", n)
		switch {
		case n < 1 || n > maxReplicaNumber:
			bad(key, "replica number %d: want 1 to %d", n, maxReplicaNumber)
		case n == c.Cluster.Replica:
			bad(key, "is this replica (cluster.replica)")
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad(key, "address %q: want host:port", addr)
		}
	}
	if len(c.Cluster.Peers) > 0 && c.Cluster.Replica == 0 {
		bad("cluster.replica", "required with cluster.peers")
	}
	if c.Cluster.Replica != 0 && strings.HasPrefix(c.Store.URL, "sqlite:") && len(c.Cluster.Peers) > 0 {
		bad("store.url", "replicas share requests and grants through a postgres:// store, not SQLite")
	}
}

func (c *Config) resolveApprovalSecrets(getenv func(string) string) error {
	if e := c.Store.PasswordEnv; e != "" && c.Store.Password.Empty() {
		c.Store.Password = creds.NewSecret(getenv(e))
		if c.Store.Password.Empty() {
			return &Error{File: c.Path, Key: "store.password_env", Msg: fmt.Sprintf("environment variable %s is empty or unset", e)}
		}
	}
	return nil
}
