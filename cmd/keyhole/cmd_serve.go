package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/gateway"
)

func init() {
	register("serve", "run the proxy: authenticate agents, decide and forward statements", runServe)
}

var serveUsage = `usage: keyhole serve [--config keyhole.yaml] [flags]

serve accepts agent connections on the Postgres and MySQL wire protocols,
decides every statement against the policy and forwards what is allowed to
the upstream database of the agent's role.

Without --config, --upstream, --policy, --token-key and --audit describe the
whole setup. --upstream URL is the single upstream every role uses, with the
URL's login as a static credential (password from the URL, else PGPASSWORD
or MYSQL_PWD); --upstream NAME=URL, repeated, configures upstreams that
roles pick by name (roles.ROLE.upstream in the policy). URL:
postgres://USER[:PASS]@HOST[:PORT]/DB[?sslmode=MODE], or mysql://... for a
MySQL or MariaDB upstream, whose agents connect to --listen-mysql.

Every flag can also be set as KEYHOLE_<FLAG> in the environment (e.g.
KEYHOLE_UPSTREAM, which keeps a DSN password out of the process list);
flags override the environment, which overrides the configuration file.

Signals: SIGHUP re-reads the upstreams' schemas and the policy (the policy
file alone is also reloaded when it changes); a policy that does not load
leaves the running one in force. SIGTERM or SIGINT stop accepting, end idle
sessions, let statements in flight finish for limits.shutdown_grace (` + config.DefaultShutdownGrace.String() + `),
flush the audit log and exit 0; a second signal exits at once.

Exit status: 0 after a clean shutdown, 2 when keyhole cannot start (bad
configuration or policy, upstream unreachable: it never serves without a
policy) or had to cut sessions at the end of the grace.

flags:
`

type serveFlags struct {
	config         string
	policy         string
	upstreams      upstreamFlags
	listenPostgres string
	listenMySQL    string
	admin          string
	pprof          bool
	tokenKey       string
	audit          string
	auditStdout    bool
	tlsCert        string
	tlsKey         string
	vaultAddr      string
	vaultMount     string
	logFormat      string
	logLevel       string
}

// upstreamFlags collects --upstream URL and repeated --upstream NAME=URL.
type upstreamFlags []string

func (u *upstreamFlags) String() string { return strings.Join(*u, ",") }
func (u *upstreamFlags) Set(v string) error {
	*u = append(*u, v)
	return nil
}

func runServe(args []string) int {
	var f serveFlags
	fs := flag.NewFlagSet("keyhole serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&f.config, "config", "", "keyhole.yaml `file`")
	fs.StringVar(&f.policy, "policy", "", "policy `file` (overrides policy.file)")
	fs.Var(&f.upstreams, "upstream", "upstream `URL` every role uses, or NAME=URL (repeatable) that roles pick by name; replaces the file's upstreams")
	fs.StringVar(&f.listenPostgres, "listen-postgres", "", "Postgres listen `addr` (default "+config.DefaultListenPostgres+")")
	fs.StringVar(&f.listenMySQL, "listen-mysql", "", "MySQL listen `addr` (needed with mysql:// upstreams; off by default)")
	fs.StringVar(&f.admin, "admin", "", "admin HTTP listen `addr` (/metrics, /healthz, /audit)")
	fs.BoolVar(&f.pprof, "pprof", false, "serve Go's profiler under /debug/pprof/ on the admin listener")
	fs.StringVar(&f.tokenKey, "token-key", "", "agent token verification key `file` (public or private Ed25519 PEM)")
	fs.StringVar(&f.audit, "audit", "", "audit log `file` (JSON lines)")
	fs.BoolVar(&f.auditStdout, "audit-stdout", false, "also write audit events to stdout")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "TLS certificate `file` presented to agents")
	fs.StringVar(&f.tlsKey, "tls-key", "", "TLS key `file`")
	fs.StringVar(&f.vaultAddr, "vault-addr", "", "Vault `URL`: upstream logins from its database secrets engine (token from VAULT_TOKEN)")
	fs.StringVar(&f.vaultMount, "vault-mount", "", "database secrets engine `mount` (default "+creds.DefaultVaultMount+")")
	fs.StringVar(&f.logFormat, "log-format", "", "log `format`: json or text (default "+config.DefaultLogFormat+")")
	fs.StringVar(&f.logLevel, "log-level", "", "log `level`: debug, info, warn, error (default "+config.DefaultLogLevel+")")
	// Precedence: flags, then KEYHOLE_<FLAG> environment variables, then
	// the configuration file (as cloud-sql-proxy does).
	var envErr error
	fs.VisitAll(func(fl *flag.Flag) {
		name := "KEYHOLE_" + strings.ToUpper(strings.ReplaceAll(fl.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok && envErr == nil {
			if err := fs.Set(fl.Name, v); err != nil {
				envErr = fmt.Errorf("%s: %w", name, err)
			}
		}
	})
	if envErr != nil {
		fmt.Fprintf(os.Stderr, "keyhole serve: %v\n", envErr)
		return exitError
	}
	// Flags replace what the environment set for a repeatable flag.
	envUpstreams := len(f.upstreams)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printServeUsage(os.Stdout, fs)
			return exitOK
		}
		fmt.Fprintf(os.Stderr, "keyhole serve: %v\n", err)
		printServeUsage(os.Stderr, fs)
		return exitError
	}
	if len(f.upstreams) > envUpstreams && envUpstreams > 0 {
		f.upstreams = f.upstreams[envUpstreams:]
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "keyhole serve: unexpected argument %q\n", fs.Arg(0))
		return exitError
	}
	cfg, err := serveConfig(f, os.Getenv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "keyhole serve: %v\n", err)
		return exitError
	}
	log := newLogger(cfg.Log)
	// What packages log through the default logger (JWKS fetches, the
	// admin handler) goes through the same handler: its format, level and
	// token redaction.
	slog.SetDefault(log)

	// SIGHUP's default action ends the process: catch it before the
	// (possibly slow) start, so a reload request then is queued.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// Once the first signal arrived, a second one ends the process at once.
	context.AfterFunc(ctx, stop)

	g, err := gateway.New(cfg, gateway.Options{Logger: log, Reload: hup})
	if err != nil {
		log.Error("keyhole failed", "err", err)
		return exitError
	}
	if err := g.Run(ctx); err != nil {
		log.Error("keyhole failed", "err", err)
		return exitError
	}
	return exitOK
}

func printServeUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, serveUsage)
	printFlags(w, fs)
}

// serveConfig merges the configuration file (if any) with the flags, which
// win, validates the result and reads secrets from the environment.
// Defaults are filled by gateway.New.
func serveConfig(f serveFlags, getenv func(string) string) (*config.Config, error) {
	cfg := &config.Config{}
	if f.config != "" {
		// Read, not Load: flags may supply what the file leaves out.
		c, err := config.Read(f.config)
		if err != nil {
			return nil, err
		}
		cfg = c
	} else {
		// Flags only: a development setup; a missing certificate is made up.
		cfg.TLS.GenerateSelfSigned = true
	}
	if len(f.upstreams) > 0 {
		ups, err := upstreamsFromFlags(f.upstreams, getenv)
		if err != nil {
			return nil, err
		}
		cfg.Upstreams = ups
		cfg.Overridden("upstreams")
		if f.vaultAddr == "" && cfg.Creds.Vault == nil {
			for name, u := range ups {
				if u.Login == nil && cfg.Creds.Static == nil {
					return nil, fmt.Errorf("--upstream %s: the URL needs a user (the static upstream login), or use Vault credentials", flagName(name))
				}
			}
		}
	}
	if f.vaultAddr != "" {
		v := cfg.Creds.Vault
		if v == nil {
			v = &config.Vault{}
		}
		v.Addr = f.vaultAddr
		cfg.Creds = config.Creds{Vault: v}
		cfg.Overridden("creds.vault.addr")
	}
	if f.vaultMount != "" {
		if cfg.Creds.Vault == nil {
			return nil, errors.New("--vault-mount needs --vault-addr or creds.vault")
		}
		cfg.Creds.Vault.Mount = f.vaultMount
	}
	if cfg.Creds.Vault != nil {
		// Vault hands out the logins: a URL's user is not used.
		for name, u := range cfg.Upstreams {
			u.Login = nil
			cfg.Upstreams[name] = u
		}
	}
	set := func(key string, dst *string, v string) {
		if v != "" {
			*dst = v
			cfg.Overridden(key)
		}
	}
	set("policy.file", &cfg.Policy.File, f.policy)
	set("listen.postgres", &cfg.Listen.Postgres, f.listenPostgres)
	set("listen.mysql", &cfg.Listen.MySQL, f.listenMySQL)
	set("listen.admin", &cfg.Listen.Admin, f.admin)
	if f.pprof {
		cfg.Listen.Pprof = true
	}
	set("identity.tokens.public_key_file", &cfg.Identity.Tokens.PublicKeyFile, f.tokenKey)
	set("audit.file", &cfg.Audit.File, f.audit)
	if f.auditStdout {
		cfg.Audit.Stdout = true
	}
	if f.tlsCert != "" || f.tlsKey != "" {
		cfg.TLS.CertFile, cfg.TLS.KeyFile = f.tlsCert, f.tlsKey
		cfg.TLS.GenerateSelfSigned = false
		cfg.Overridden("tls")
	}
	set("log.format", &cfg.Log.Format, f.logFormat)
	set("log.level", &cfg.Log.Level, f.logLevel)

	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.ResolveSecrets(getenv); err != nil {
		return nil, err
	}
	return cfg, nil
}

// upstreamsFromFlags parses --upstream values: one URL (the upstream ""
// every role uses) or any number of NAME=URL. Each URL's login is that
// upstream's static login, its password from the URL or the dialect's
// environment variable (PGPASSWORD, MYSQL_PWD).
func upstreamsFromFlags(vals []string, getenv func(string) string) (map[string]config.Upstream, error) {
	ups := map[string]config.Upstream{}
	for _, v := range vals {
		name, raw := "", v
		// NAME=URL: the '=' comes before the scheme's "://" (a URL's own
		// '=' is in its query).
		if i, j := strings.Index(v, "="), strings.Index(v, "://"); i > 0 && (j < 0 || i < j) {
			name, raw = v[:i], v[i+1:]
		}
		up, st, err := config.ParseUpstreamURL(raw)
		if err != nil {
			return nil, fmt.Errorf("--upstream %s: %w", flagName(name), err)
		}
		if _, dup := ups[name]; dup {
			return nil, fmt.Errorf("--upstream %s: given twice", flagName(name))
		}
		if st.User != "" {
			if st.Password.Empty() {
				st.Password = creds.NewSecret(getenv(config.PasswordEnv(up.Dialect)))
			}
			up.Login = st
		}
		ups[name] = up
	}
	if _, single := ups[""]; single && len(ups) > 1 {
		return nil, errors.New("--upstream: give one URL, or NAME=URL for each upstream, not both")
	}
	return ups, nil
}

func flagName(name string) string {
	if name == "" {
		return "URL"
	}
	return name + "=URL"
}

func newLogger(c config.Log) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	// RedactAttr: a token an agent sent as its user name is logged as [token].
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: audit.RedactAttr}
	var h slog.Handler
	if c.Format == "text" {
		h = slog.NewTextHandler(os.Stderr, opts)
	} else {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	return slog.New(h)
}
