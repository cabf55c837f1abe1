package config

import (
	"time"

	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/identity"
)

// Defaults. A zero value in the file means these.
const (
	DefaultListenPostgres = "127.0.0.1:6432"
	DefaultVaultMount     = "database"
	DefaultVaultGrace     = 30 * time.Second
	DefaultAuditMaxBytes  = 100 << 20
	DefaultAuditBackups   = 5
	DefaultMaxConns       = 1000
	DefaultStartupTimeout = 10 * time.Second
	DefaultShutdownGrace  = 30 * time.Second
	DefaultMaxMessageSize = 64 << 20
	DefaultPolicyReload   = time.Second
	DefaultKubernetesJWT  = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	DefaultVaultTokenEnv  = "VAULT_TOKEN"
	DefaultLogFormat      = "json"
	DefaultLogLevel       = "info"
	DefaultUpstreamPGPort = "5432"
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
	// MySQL is reserved for the MySQL front end; empty = off.
	MySQL string `yaml:"mysql"`
	// Admin serves /metrics, /healthz and the audit page; empty = off.
	Admin string `yaml:"admin"`
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
// it by its key in Config.Upstreams.
type Upstream struct {
	// Addr is host:port.
	Addr string `yaml:"addr"`
	// Database is the database name keyhole logs in to.
	Database string `yaml:"database"`
	// SSLMode is disable, require, verify-ca or verify-full. Default:
	// disable for a loopback address, verify-full otherwise.
	SSLMode string `yaml:"sslmode"`
	// CAFile verifies the upstream's certificate (verify-ca,
	// verify-full); default: the system roots.
	CAFile string `yaml:"ca_file"`
	// ServerName overrides the name verified (verify-full); default: the
	// host of Addr.
	ServerName string `yaml:"server_name"`
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
	// ResolveSecrets; it is never read from or written to the file.
	Password string `yaml:"-"`
}

// Vault uses the database secrets engine: one dynamic login per agent and
// role, renewed while in use and revoked after. Its keys are
// creds.VaultConfig's (addr, mount, ca_cert, auth {method, approle,
// kubernetes}, roles, renew_before, grace, request_timeout); the Vault token
// comes from VAULT_TOKEN, never from the file.
type Vault struct {
	creds.VaultConfig `yaml:",inline"`
	// CatalogRole is the keyhole role whose Vault credential keyhole uses
	// to read the upstream's schema at start (default "keyhole-catalog",
	// mapped through roles like any role).
	CatalogRole string `yaml:"catalog_role"`
}

// Audit is where decisions are recorded. With neither File nor Stdout,
// keyhole refuses to start: every decision is audited.
type Audit struct {
	File string `yaml:"file"`
	// MaxBytes rotates the file when it grows past this size (default
	// 100 MiB); Backups is how many rotated files to keep (default 5).
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
	// ReloadInterval is how often the file's modification time is checked
	// (default 1s; SIGHUP reloads at once). Negative turns polling off.
	ReloadInterval time.Duration `yaml:"reload_interval"`
}

// Limits bound what a client can make keyhole hold. Zero means the
// default.
type Limits struct {
	MaxConns       int           `yaml:"max_conns"`
	StartupTimeout time.Duration `yaml:"startup_timeout"`
	// IdleTimeout closes a client connection idle this long; 0 = 1h.
	IdleTimeout    time.Duration `yaml:"idle_timeout"`
	MaxMessageSize int           `yaml:"max_message_size"`
	// ShutdownGrace is how long SIGTERM waits for sessions to finish
	// before closing them.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
}

// Log is keyhole's own log (stderr).
type Log struct {
	// Format is json (default) or text.
	Format string `yaml:"format"`
	// Level is debug, info (default), warn or error.
	Level string `yaml:"level"`
}
