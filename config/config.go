package config

import (
	"time"

	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/identity"
)

// Defaults of keyhole.yaml: a zero value in the file means these, and this
// is their only home (ApplyDefaults fills them; the gateway hands the
// filled values to the front ends). Defaults of sections owned by another
// package live there: creds.VaultConfig (creds.DefaultVaultMount,
// creds.DefaultGrace, ...) and identity.Config (identity.DefaultIssuer, ...).
const (
	DefaultListenPostgres    = "127.0.0.1:6432"
	DefaultAuditMaxBytes     = 100 << 20
	DefaultAuditBackups      = 5
	DefaultMaxConns          = 1000
	DefaultMaxStartups       = 256
	DefaultStartupTimeout    = 10 * time.Second
	DefaultShutdownGrace     = 30 * time.Second
	DefaultRelay             = RelayLoop
	DefaultMaxMessageSize    = 64 << 20
	DefaultIdleTimeout       = time.Hour // longer than any pool's idle check, shorter than forever
	DefaultUpstreamReuseMax  = 32
	DefaultUpstreamReuseIdle = 5 * time.Minute
	DefaultPolicyReload      = time.Second
	DefaultLogFormat         = "json"
	DefaultLogLevel          = "info"
	DefaultCatalogRole       = "keyhole-catalog"
	DefaultUpstreamPGPort    = "5432"
	DefaultUpstreamMySQLPort = "3306"
)

// Dialects an upstream URL can name (its scheme).
const (
	DialectPostgres = "postgres"
	DialectMySQL    = "mysql"
)

// Config is the whole keyhole.yaml.
type Config struct {
	Listen    Listen              `yaml:"listen"`
	TLS       TLS                 `yaml:"tls"`
	Upstreams map[string]Upstream `yaml:"upstreams"`
	// Identity is how agents authenticate (tokens, jwks, scram, spiffe);
	// see identity.Config for its keys.
	Identity identity.Config `yaml:"identity"`
	Creds    Creds           `yaml:"creds"`
	Audit    Audit           `yaml:"audit"`
	Policy   Policy          `yaml:"policy"`
	Limits   Limits          `yaml:"limits"`
	Log      Log             `yaml:"log"`
	// Store, Approvals, Console and Cluster: the reviewers' side
	// (config/approvals.go).
	Store     Store     `yaml:"store"`
	Approvals Approvals `yaml:"approvals"`
	Console   Console   `yaml:"console"`
	Cluster   Cluster   `yaml:"cluster"`

	// Path is the file the configuration was read from ("" when built
	// from flags only). Relative file names in the configuration are
	// resolved against its directory by Load.
	Path string `yaml:"-"`
	// lines maps dotted key paths to their line in the file, for errors;
	// overridden are keys whose value a flag replaced (see Overridden).
	lines      map[string]int
	overridden map[string]bool
}

// Listen is where keyhole accepts connections. An empty address turns
// that listener off, except Postgres, which defaults to
// DefaultListenPostgres.
type Listen struct {
	Postgres string `yaml:"postgres"`
	// MySQL is where the MySQL front end listens; empty = off. It is
	// required with mysql:// upstreams and refused without them; a build
	// without the MySQL front end refuses to start when it is set.
	MySQL string `yaml:"mysql"`
	// Admin serves /metrics, /healthz, the reviewers' console and its
	// API; empty = off.
	Admin string `yaml:"admin"`
	// Metrics, when set, serves /metrics and /healthz (unauthenticated)
	// on their own listener, and the admin listener serves only /healthz
	// besides the console.
	Metrics string `yaml:"metrics"`
	// Pprof also serves Go's profiler under /debug/pprof/ on the admin
	// listener (for performance work; off by default).
	Pprof bool `yaml:"pprof"`
}

// TLS is the certificate keyhole presents to agents.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile, when set, makes keyhole ask for and verify client
	// certificates against it (mTLS; SPIFFE identities).
	ClientCAFile string `yaml:"client_ca_file"`
	// GenerateSelfSigned makes keyhole generate an in-memory self-signed
	// certificate when no cert_file is given (development only). Without
	// it, a missing certificate is an error unless no listener needs one.
	GenerateSelfSigned bool `yaml:"generate_self_signed"`
}

// SSL modes for upstream connections, as libpq names them.
const (
	SSLDisable    = "disable"
	SSLRequire    = "require"     // encrypt, no verification
	SSLVerifyCA   = "verify-ca"   // verify the chain, not the name
	SSLVerifyFull = "verify-full" // verify chain and host name
)

// Upstream is one database keyhole forwards to. Roles in the policy name
// it by its key in Config.Upstreams (the name "" is the single upstream
// of --upstream URL, which every role uses).
type Upstream struct {
	// URL names the dialect, address and database:
	// postgres://HOST[:PORT]/DATABASE[?sslmode=MODE] (port 5432) or
	// mysql://HOST[:PORT]/DATABASE[?sslmode=MODE] (port 3306). sslmode is
	// disable, require, verify-ca or verify-full; default disable for a
	// loopback host, verify-full otherwise. In the file it carries no
	// login: that comes from creds.
	URL string `yaml:"url"`
	// CAFile verifies the upstream's certificate (verify-ca,
	// verify-full); default: the system roots.
	CAFile string `yaml:"ca_file"`
	// ServerName overrides the name verified (verify-full); default: the
	// URL's host.
	ServerName string `yaml:"server_name"`
	// CatalogRole is the keyhole role whose Vault credential reads this
	// upstream's schema; default creds.vault.catalog_role. Upstreams that
	// share a Vault must each have their own (a Vault role names one
	// database).
	CatalogRole string `yaml:"catalog_role"`

	// Dialect, Addr (host:port), Database and SSLMode come from URL
	// (ParseUpstreamURL; ApplyDefaults fills them for upstreams read from
	// the file and settles SSLMode's default).
	Dialect  string `yaml:"-"`
	Addr     string `yaml:"-"`
	Database string `yaml:"-"`
	SSLMode  string `yaml:"-"`
	// Login is the static login a --upstream URL carries; never read from
	// the file. It wins over creds.static for this upstream.
	Login *Static `yaml:"-"`
}

// Creds is where upstream logins come from: exactly one of Static and
// Vault.
type Creds struct {
	Static *Static `yaml:"static"`
	Vault  *Vault  `yaml:"vault"`
}

// Static is one fixed upstream login for every agent (development, or a
// database without Vault). The password comes from an environment
// variable, never from the file.
type Static struct {
	User        string `yaml:"user"`
	PasswordEnv string `yaml:"password_env"`
	// Password is set from a --upstream URL or from PasswordEnv by
	// ResolveSecrets; it is never read from or written to the file. A
	// creds.Secret, so that printing a Static or a Config (%+v, slog, a
	// panic value) shows [redacted].
	Password creds.Secret `yaml:"-"`
}

// Vault uses the database secrets engine: one dynamic login per agent and
// role, renewed while in use and revoked after. Its keys are
// creds.VaultConfig's (addr, mount, ca_cert, auth {method, approle,
// kubernetes}, roles, renew_before, grace, request_timeout), with creds'
// defaults; the Vault token comes from VAULT_TOKEN, never from the file.
type Vault struct {
	creds.VaultConfig `yaml:",inline"`
	// CatalogRole is the keyhole role whose Vault credential keyhole uses
	// to read an upstream's schema (default DefaultCatalogRole, mapped
	// through roles like any role); upstreams.NAME.catalog_role overrides
	// it per upstream. `keyhole vault roles --apply` writes it.
	CatalogRole string `yaml:"catalog_role"`
}

// Audit is where decisions are recorded. With neither File nor Stdout,
// keyhole refuses to start: every decision is audited.
type Audit struct {
	File string `yaml:"file"`
	// MaxBytes rotates the file when it grows past this size (default
	// 100 MiB); Backups is how many rotated files to keep (default 5). A
	// File that is not a regular file of its own (a device such as
	// /dev/stdout, a pipe, a symbolic link) is never rotated.
	MaxBytes int64 `yaml:"max_bytes"`
	Backups  int   `yaml:"backups"`
	// Stdout also writes events as JSON lines to standard output.
	Stdout bool `yaml:"stdout"`
	// RawStatements records statement texts with their literals; by
	// default literals are replaced with placeholders.
	RawStatements bool `yaml:"raw_statements"`
}

// Policy is the roles/labels/agents file (see sqlpolicy).
type Policy struct {
	File string `yaml:"file"`
	// ReloadInterval is how often the file is checked for a new version
	// (its times, size and inode; default 1s; SIGHUP reloads at once). A
	// new version is loaded once two polls in a row see it, so a file
	// still being written is not.
	// Negative turns polling off.
	ReloadInterval time.Duration `yaml:"reload_interval"`
}

// Relays (Limits.Relay).
const (
	RelayLoop      = "loop"
	RelayGoroutine = "goroutine"
)

// Limits bound what a client can make keyhole hold, per front end. Zero
// means the default.
type Limits struct {
	// MaxConns is the most concurrent logged-in client sessions (default
	// 1000); one more is refused once it has authenticated.
	MaxConns int `yaml:"max_conns"`
	// MaxConnsPerAgent is the most concurrent logged-in sessions of one
	// agent per front end (default 0: no bound but max_conns), so that one
	// agent whose sessions leak cannot take them all.
	MaxConnsPerAgent int `yaml:"max_conns_per_agent"`
	// MaxStartups is the most client connections still logging in
	// (accepted, not yet authenticated) per front end (default 256).
	// Past it, the oldest login of the source address (an IPv6 /64)
	// holding the most is dropped, so idle sockets opened by anyone who
	// can reach the port never lock agents out of max_conns.
	MaxStartups int `yaml:"max_startups"`
	// StartupTimeout bounds accept to ready for queries (default 10s).
	StartupTimeout time.Duration `yaml:"startup_timeout"`
	// IdleTimeout closes a client connection idle this long; 0 = 1h.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxMessageSize bounds one client message (default 64 MiB).
	MaxMessageSize int `yaml:"max_message_size"`
	// BufferMemory bounds the bytes all client connections together may
	// hold in read buffers for large messages (default 4 × MaxMessageSize):
	// a message that does not fit waits for room.
	BufferMemory int64 `yaml:"buffer_memory"`
	// ShutdownGrace is how long SIGTERM waits for sessions to finish
	// before closing them (default 30s).
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// Relay is how a session without TLS on either side is relayed once
	// logged in: "loop" (default; epoll loops shared by the sessions, no
	// goroutine while idle) or "goroutine" (a goroutine per session, as
	// TLS sessions always are). Both front ends.
	Relay string `yaml:"relay"`
	// UpstreamReuseMax is how many upstream Postgres sessions whose
	// clients left at a clean point (idle, outside a transaction) are
	// kept, reset with DISCARD ALL, for the next session of the same
	// agent that logs in exactly as they did (default 32; negative keeps
	// none). Postgres front end.
	UpstreamReuseMax int `yaml:"upstream_reuse_max"`
	// UpstreamReuseIdle is how long a kept upstream session waits for
	// reuse before it is closed (default 5m).
	UpstreamReuseIdle time.Duration `yaml:"upstream_reuse_idle"`
	// MaxPreparedPerSession bounds the named prepared statements one
	// session holds (and, Postgres, separately its named portals and
	// cursors); one more is refused (Postgres 54000, MySQL 1461) and the
	// session goes on (default 10000). Both front ends.
	MaxPreparedPerSession int `yaml:"max_prepared_per_session"`
}

// Log is keyhole's own log (stderr).
type Log struct {
	// Format is json (default) or text.
	Format string `yaml:"format"`
	// Level is debug, info (default), warn or error.
	Level string `yaml:"level"`
}
