package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyholedb/keyhole/admin"
	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/pgproxy"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

func init() {
	register("serve", "run the proxy: authenticate agents, decide and forward statements", runServe)
}

const serveUsage = `usage: keyhole serve [--config keyhole.yaml] [flags]

serve accepts agent connections on the Postgres wire protocol, decides every
statement against the policy and forwards what is allowed to the upstream.
Without --config, --upstream, --policy, --token-key and --audit describe a
single-upstream setup in which every role uses the upstream and its login
(the DSN's user and password, or PGPASSWORD).

Every flag can also be set as KEYHOLE_<FLAG> in the environment (e.g.
KEYHOLE_UPSTREAM, which keeps a DSN password out of the process list);
flags override the environment, which overrides the configuration file.

Signals: SIGHUP re-reads the upstream's schema and the policy (the policy
file alone is also reloaded when it changes); a policy that does not load
leaves the running one in force. SIGTERM or SIGINT stop accepting, end idle
sessions, let statements in flight finish for limits.shutdown_grace (30s),
flush the audit log and exit 0; a second signal exits at once.

Exit status: 0 after a clean shutdown, 2 when keyhole cannot start (bad
configuration or policy, upstream unreachable: it never serves without a
policy) or had to cut sessions at the end of the grace.

flags:
`

type serveFlags struct {
	config         string
	policy         string
	upstream       string
	listenPostgres string
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

func runServe(args []string) int {
	var f serveFlags
	fs := flag.NewFlagSet("keyhole serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&f.config, "config", "", "keyhole.yaml `file`")
	fs.StringVar(&f.policy, "policy", "", "policy `file` (overrides policy.file)")
	fs.StringVar(&f.upstream, "upstream", "", "single upstream `URL` postgres://USER[:PASS]@HOST:PORT/DB[?sslmode=...] used by every role, with its login as a static credential")
	fs.StringVar(&f.listenPostgres, "listen-postgres", "", "Postgres listen `addr` (default "+config.DefaultListenPostgres+")")
	fs.StringVar(&f.admin, "admin", "", "admin HTTP listen `addr` (/metrics, /healthz, /audit)")
	fs.BoolVar(&f.pprof, "pprof", false, "serve Go's profiler under /debug/pprof/ on the admin listener")
	fs.StringVar(&f.tokenKey, "token-key", "", "agent token verification key `file` (public or private Ed25519 PEM)")
	fs.StringVar(&f.audit, "audit", "", "audit log `file` (JSON lines)")
	fs.BoolVar(&f.auditStdout, "audit-stdout", false, "also write audit events to stdout")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "TLS certificate `file` presented to agents")
	fs.StringVar(&f.tlsKey, "tls-key", "", "TLS key `file`")
	fs.StringVar(&f.vaultAddr, "vault-addr", "", "Vault `URL`: upstream logins from its database secrets engine (token from VAULT_TOKEN)")
	fs.StringVar(&f.vaultMount, "vault-mount", "", "database secrets engine `mount` (default database)")
	fs.StringVar(&f.logFormat, "log-format", "", "log format: json or text (default json)")
	fs.StringVar(&f.logLevel, "log-level", "", "log level: debug, info, warn, error (default info)")
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
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printServeUsage(fs)
			return exitOK
		}
		fmt.Fprintf(os.Stderr, "keyhole serve: %v\n", err)
		printServeUsage(fs)
		return exitError
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "keyhole serve: unexpected argument %q\n", fs.Arg(0))
		return exitError
	}
	cfg, err := serveConfig(f)
	if err != nil {
		fmt.Fprintf(os.Stderr, "keyhole serve: %v\n", err)
		return exitError
	}
	log := newLogger(cfg.Log)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("keyhole failed", "err", err)
		return exitError
	}
	return exitOK
}

func printServeUsage(fs *flag.FlagSet) {
	fmt.Fprint(os.Stderr, serveUsage)
	fs.SetOutput(os.Stderr)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// serveConfig merges the configuration file (if any) with the flags, which
// win, validates the result, reads secrets from the environment and fills
// defaults.
func serveConfig(f serveFlags) (*config.Config, error) {
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
	if f.upstream != "" {
		up, st, err := config.ParseUpstreamURL(f.upstream)
		if err != nil {
			return nil, fmt.Errorf("--upstream: %w", err)
		}
		cfg.Upstreams = map[string]config.Upstream{"": up}
		cfg.Overridden("upstreams")
		if f.vaultAddr == "" && cfg.Creds.Vault == nil {
			if st.User == "" {
				return nil, errors.New("--upstream: the URL needs a user (the static upstream login), or use Vault credentials")
			}
			if st.Password == "" {
				st.Password = os.Getenv("PGPASSWORD")
			}
			cfg.Creds = config.Creds{Static: st}
			cfg.Overridden("creds")
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
	set := func(key string, dst *string, v string) {
		if v != "" {
			*dst = v
			cfg.Overridden(key)
		}
	}
	set("policy.file", &cfg.Policy.File, f.policy)
	set("listen.postgres", &cfg.Listen.Postgres, f.listenPostgres)
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
	if cfg.Listen.MySQL != "" {
		// Refuse rather than silently not listen where agents are told to connect.
		return nil, errors.New("listen.mysql: the MySQL front end is not part of this build")
	}
	if cfg.TLS.CertFile == "" && !cfg.TLS.GenerateSelfSigned {
		return nil, errors.New("tls: set cert_file and key_file (or --tls-cert/--tls-key), or generate_self_signed: true for development")
	}
	if err := cfg.ResolveSecrets(os.Getenv); err != nil {
		return nil, err
	}
	cfg.ApplyDefaults()
	return cfg, nil
}

func newLogger(c config.Log) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if c.Format == "text" {
		h = slog.NewTextHandler(os.Stderr, opts)
	} else {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	return slog.New(h)
}

// server is one running keyhole: what serve builds and tears down.
type server struct {
	cfg     *config.Config
	log     *slog.Logger
	cat     *catalog.Catalog // in force; replaced only with a policy that loaded against it
	ups     map[string]pgproxy.Upstream
	src     creds.Source
	holder  *sqlpolicy.Holder
	metrics *admin.Metrics
	// reloads and reloadOK report policy reloads (keyhole serve owns them).
	reloads  *prometheus.CounterVec
	reloadOK prometheus.Gauge

	reloadMu   sync.Mutex
	policyStat fileStamp
}

// serve runs keyhole until ctx is cancelled (SIGTERM/SIGINT), then shuts
// down gracefully. Every resource opened here is closed before it returns.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger) (err error) {
	s := &server{cfg: cfg, log: log}
	// SIGHUP's default action ends the process: catch it from the start,
	// so a reload request during startup is queued, not fatal.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	log.Info("keyhole starting", "config", cfg.Path, "policy", cfg.Policy.File, "listen_postgres", cfg.Listen.Postgres, "admin", cfg.Listen.Admin)

	tlsCfg, err := serverTLS(cfg.TLS, log)
	if err != nil {
		return err
	}
	upstreams, err := buildUpstreams(cfg.Upstreams)
	if err != nil {
		return err
	}
	for name, u := range cfg.Upstreams {
		log.Info("upstream", "name", name, "addr", u.Addr, "database", u.Database, "sslmode", u.SSLMode)
	}
	src, err := buildCreds(cfg, log)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := src.Close(); cerr != nil {
			log.Warn("close credential source", "err", cerr)
		}
	}()

	loadCtx, cancel := context.WithTimeout(ctx, time.Minute)
	s.ups, s.src = upstreams, src
	s.cat, err = loadCatalog(loadCtx, cfg, upstreams, src, log)
	cancel()
	if err != nil {
		return err
	}
	eng, err := s.loadPolicy(s.cat)
	if err != nil {
		return err
	}
	s.holder = sqlpolicy.NewHolder(eng)

	auth, authCleanup, err := buildAuth(cfg.Identity)
	if err != nil {
		return err
	}
	defer authCleanup()
	if cfg.TLS.ClientCAFile != "" {
		pool, err := readCertPool(cfg.TLS.ClientCAFile)
		if err != nil {
			return fmt.Errorf("tls.client_ca_file: %w", err)
		}
		tlsCfg.ClientCAs = pool
		tlsCfg.ClientAuth = tls.VerifyClientCertIfGiven
	}

	rec, err := buildAudit(cfg.Audit)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := rec.Close(); cerr != nil {
			log.Error("flush audit log", "err", cerr)
			if err == nil {
				err = fmt.Errorf("flush audit log: %w", cerr)
			}
		}
	}()

	s.metrics = admin.NewMetrics(nil)
	s.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyhole_policy_reloads_total",
		Help: "Policy reloads by result; after an error the running policy stays in force.",
	}, []string{"result"})
	s.reloadOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "keyhole_policy_reload_ok",
		Help: "1 when the policy in force is the file's current content, 0 after a failed reload.",
	})
	s.reloadOK.Set(1)
	s.metrics.Registry().MustRegister(s.reloads, s.reloadOK)
	// The catalog was just read with a credential from src.
	s.metrics.SetCredsHealthy(true)
	proxy, err := pgproxy.New(pgproxy.Config{
		TLS:       tlsCfg,
		Decider:   s.holder,
		Auth:      auth,
		Creds:     src,
		Upstreams: upstreams,
		Audit:     rec,
		Metrics:   s.metrics,
		Logger:    log,
		Limits: pgproxy.Limits{
			MaxConns:       cfg.Limits.MaxConns,
			StartupTimeout: cfg.Limits.StartupTimeout,
			IdleTimeout:    cfg.Limits.IdleTimeout,
			MaxMessageSize: cfg.Limits.MaxMessageSize,
			ShutdownGrace:  cfg.Limits.ShutdownGrace,
		},
		RawStatements: cfg.Audit.RawStatements,
	})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Listen.Postgres)
	if err != nil {
		return fmt.Errorf("listen postgres: %w", err)
	}
	var adminSrv *http.Server
	var adminLn net.Listener
	if cfg.Listen.Admin != "" {
		adminLn, err = net.Listen("tcp", cfg.Listen.Admin)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen admin: %w", err)
		}
		adminSrv = &http.Server{
			Handler: admin.Handler(admin.HandlerOptions{
				Metrics:   s.metrics,
				AuditFile: cfg.Audit.File,
				Health:    func() error { return s.health(rec) },
				Pprof:     cfg.Listen.Pprof,
			}),
			ReadHeaderTimeout: 10 * time.Second,
		}
	}

	serveErr := make(chan error, 2)
	go func() { serveErr <- proxy.Serve(ln) }()
	if adminSrv != nil {
		go func() {
			if err := adminSrv.Serve(adminLn); !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("admin: %w", err)
			}
		}()
	}
	// One line that scripts and tests wait for.
	log.Info("keyhole ready", "postgres", ln.Addr().String(), "admin", addrOf(adminLn))

	var tick <-chan time.Time
	if cfg.Policy.ReloadInterval > 0 {
		t := time.NewTicker(cfg.Policy.ReloadInterval)
		defer t.Stop()
		tick = t.C
	}

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			// A second SIGTERM/SIGINT now ends the process at once.
			signal.Reset(syscall.SIGTERM, syscall.SIGINT)
			log.Info("shutting down: draining sessions (a second signal exits at once)", "grace", cfg.Limits.ShutdownGrace.String())
			break loop
		case err := <-serveErr:
			runErr = err
			log.Error("listener failed; shutting down", "err", err)
			break loop
		case <-hup:
			s.reload(ctx, "SIGHUP", true)
		case <-tick:
			if s.policyChanged() {
				s.reload(ctx, "file changed", false)
			}
		}
	}

	sdCtx, cancel := context.WithTimeout(context.Background(), cfg.Limits.ShutdownGrace)
	defer cancel()
	if adminSrv != nil {
		_ = adminSrv.Shutdown(sdCtx)
	}
	if err := proxy.Shutdown(sdCtx); err != nil && !errors.Is(err, pgproxy.ErrServerClosed) {
		log.Warn("sessions did not finish within the shutdown grace; closed them", "err", err)
		if runErr == nil {
			runErr = fmt.Errorf("shutdown: %w", err)
		}
	}
	log.Info("keyhole stopped")
	return runErr
}

func upstreamNames(ups map[string]pgproxy.Upstream) string {
	names := make([]string, 0, len(ups))
	for n := range ups {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// fileStamp identifies a version of a file for change polling.
type fileStamp struct {
	mod  time.Time
	size int64
}

func statFile(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size()}
}

func (s *server) policyChanged() bool {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	return statFile(s.cfg.Policy.File) != s.policyStat
}

// loadPolicy reads the policy file against the catalog and builds an
// engine. The file's stamp is taken before reading, so a write during the
// read is seen as a change at the next poll.
func (s *server) loadPolicy(cat *catalog.Catalog) (*sqlpolicy.Engine, error) {
	s.reloadMu.Lock()
	s.policyStat = statFile(s.cfg.Policy.File)
	s.reloadMu.Unlock()
	pol, warns, err := sqlpolicy.LoadPolicyFile(s.cfg.Policy.File, cat)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	for _, w := range warns {
		s.log.Warn("policy warning", "warning", w.String())
	}
	// A role whose upstream keyhole does not know could never connect;
	// say so now rather than at an agent's first login.
	if _, ok := s.ups[""]; !ok {
		for _, name := range pol.RoleNames() {
			r := pol.Roles[name]
			if _, ok := s.ups[r.Upstream]; !ok {
				return nil, fmt.Errorf("policy: role %s uses upstream %q, which is not configured (upstreams: %s)", name, r.Upstream, upstreamNames(s.ups))
			}
		}
	}
	return sqlpolicy.NewEngine(pol, cat, pganalyze.New(cat, pganalyze.Options{}), sqlpolicy.EngineOptions{}), nil
}

// reload swaps in the policy file's current contents; with catalog (on
// SIGHUP) it first reads the upstream's schema again, so new tables and
// comment labels take effect. Anything that fails to load leaves the
// running catalog and policy in place: failing closed here would lock every
// agent out because of a typo, and failing open is not an option.
func (s *server) reload(ctx context.Context, why string, withCatalog bool) {
	cat, fresh := s.cat, false
	if withCatalog {
		lctx, cancel := context.WithTimeout(ctx, time.Minute)
		c, err := loadCatalog(lctx, s.cfg, s.ups, s.src, s.log)
		cancel()
		if err != nil {
			s.log.Error("catalog reload failed; keeping the running catalog", "trigger", why, "err", err)
		} else {
			cat, fresh = c, true
		}
	}
	eng, err := s.loadPolicy(cat)
	if err != nil {
		s.log.Error("policy reload failed; keeping the running policy", "trigger", why, "err", err)
		s.reloads.WithLabelValues("error").Inc()
		s.reloadOK.Set(0)
		return
	}
	s.cat = cat
	old := s.holder.Swap(eng)
	s.revokeChanged(old, eng)
	s.reloads.WithLabelValues("ok").Inc()
	s.reloadOK.Set(1)
	s.log.Info("policy reloaded", "trigger", why, "file", s.cfg.Policy.File, "catalog_reloaded", fresh)
}

// revokeChanged ends the upstream credentials of agents that the new
// policy removed or moved to another role, so their open sessions end
// instead of running on with authority they no longer have.
func (s *server) revokeChanged(old, cur *sqlpolicy.Engine) {
	r, ok := s.src.(interface{ RevokeAgent(agent string) })
	if !ok || old == nil {
		return
	}
	for name, a := range old.Policy().Agents {
		if n, still := cur.Policy().Agents[name]; !still || n.Role != a.Role {
			s.log.Info("revoking the upstream credentials of a changed agent", "agent", name, "old_role", a.Role)
			r.RevokeAgent(name)
		}
	}
}

// serverTLS returns the certificate agents see: the configured one, or a
// self-signed one made in memory for development.
func serverTLS(c config.TLS, log *slog.Logger) (*tls.Config, error) {
	var cert tls.Certificate
	var err error
	if c.CertFile != "" {
		cert, err = tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
	} else {
		cert, err = selfSignedCert()
		if err != nil {
			return nil, fmt.Errorf("tls: generate self-signed certificate: %w", err)
		}
		log.Warn("no TLS certificate configured: generated a self-signed one in memory (development only; agents cannot verify it)")
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

func selfSignedCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return tls.Certificate{}, err
	}
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "keyhole (self-signed)"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if host != "" {
		tmpl.DNSNames = append(tmpl.DNSNames, host)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func readCertPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificates", path)
	}
	return pool, nil
}

// buildUpstreams turns the configured upstreams into pgproxy's, with the
// TLS client configuration their sslmode asks for.
func buildUpstreams(ups map[string]config.Upstream) (map[string]pgproxy.Upstream, error) {
	out := make(map[string]pgproxy.Upstream, len(ups))
	for name, u := range ups {
		tc, err := upstreamTLS(u)
		if err != nil {
			return nil, fmt.Errorf("upstream %q: %w", name, err)
		}
		out[name] = pgproxy.Upstream{Addr: u.Addr, Database: u.Database, TLS: tc}
	}
	return out, nil
}

func upstreamTLS(u config.Upstream) (*tls.Config, error) {
	if u.SSLMode == config.SSLDisable {
		return nil, nil
	}
	host, _, _ := net.SplitHostPort(u.Addr)
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if u.ServerName != "" {
		tc.ServerName = u.ServerName
	}
	if u.CAFile != "" {
		pool, err := readCertPool(u.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		tc.RootCAs = pool
	}
	switch u.SSLMode {
	case config.SSLRequire:
		tc.InsecureSkipVerify = true // libpq's require: encryption without verification
	case config.SSLVerifyCA:
		// Verify the chain but not the name, as libpq's verify-ca does.
		tc.InsecureSkipVerify = true
		roots := tc.RootCAs
		tc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			certs := make([]*x509.Certificate, len(raw))
			for i, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return err
				}
				certs[i] = c
			}
			if len(certs) == 0 {
				return errors.New("upstream sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range certs[1:] {
				inter.AddCert(c)
			}
			_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
			return err
		}
	}
	return tc, nil
}

func buildCreds(cfg *config.Config, log *slog.Logger) (creds.Source, error) {
	if st := cfg.Creds.Static; st != nil {
		return &creds.Static{User: st.User, Password: creds.Secret(st.Password)}, nil
	}
	src, err := creds.NewVault(cfg.Creds.Vault.VaultConfig, log)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	return src, nil
}

// loadCatalog reads the upstream's schema as keyhole's own upstream login
// (the static login, or a Vault credential of the catalog role). Problems
// the DBA should fix, such as a malformed label in a column comment (that
// column is then denied to every role), are logged as warnings.
func loadCatalog(ctx context.Context, cfg *config.Config, ups map[string]pgproxy.Upstream, src creds.Source, log *slog.Logger) (*catalog.Catalog, error) {
	if len(ups) != 1 {
		return nil, fmt.Errorf("upstreams: %d configured; this version decides against one upstream's catalog", len(ups))
	}
	var name string
	var up pgproxy.Upstream
	for name, up = range ups {
	}
	lease, err := src.Acquire(ctx, creds.Request{Agent: "(keyhole catalog)", Role: catalogRole(cfg), Upstream: name})
	if err != nil {
		return nil, fmt.Errorf("catalog: upstream login: %w", err)
	}
	defer lease.Release()
	host, port, _ := net.SplitHostPort(up.Addr)
	pc, err := pgx.ParseConfig("")
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	pc.Host, pc.Database, pc.User = host, up.Database, lease.User
	fmt.Sscan(port, &pc.Port)
	pc.Password = lease.Password.Reveal()
	pc.TLSConfig = up.TLS
	pc.Fallbacks = nil
	// ParseConfig read the PG* environment; PGOPTIONS (a search_path, say)
	// must not change how keyhole sees the schema.
	pc.RuntimeParams = map[string]string{"application_name": "keyhole-catalog"}
	conn, err := pgx.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("catalog: connect upstream %q at %s as %s: %w", name, up.Addr, lease.User, scrubSecret(err, lease.Password.Reveal()))
	}
	defer conn.Close(context.Background())
	loaded, err := catalog.InspectPostgres(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	for _, w := range loaded.Warnings {
		log.Warn("catalog", "upstream", name, "warning", w)
	}
	return loaded.Catalog, nil
}

// catalogRole is the keyhole role whose credential reads the schema.
func catalogRole(cfg *config.Config) string {
	if v := cfg.Creds.Vault; v != nil && v.CatalogRole != "" {
		return v.CatalogRole
	}
	return "keyhole-catalog"
}

// scrubSecret drops an error's text if it contains the secret.
func scrubSecret(err error, secret string) error {
	if secret != "" && strings.Contains(err.Error(), secret) {
		return errors.New("connection failed (details withheld: they contained the credential)")
	}
	return err
}

// buildAuth builds the agent authenticator. A private key given as the
// token key (handy in development: the file keyhole token mint signs with)
// is reduced to its public half, kept in a temporary file for the
// authenticator to read; cleanup removes it.
func buildAuth(c identity.Config) (auth identity.Authenticator, cleanup func(), err error) {
	cleanup = func() {}
	if f := c.Tokens.PublicKeyFile; f != "" {
		if _, perr := identity.ReadPublicKeyFile(f); perr != nil {
			priv, err := identity.ReadPrivateKeyFile(f)
			if err != nil {
				return nil, cleanup, fmt.Errorf("identity: token key: %w", perr)
			}
			pub, err := writePublicKey(priv)
			if err != nil {
				return nil, cleanup, fmt.Errorf("identity: token key: %w", err)
			}
			cleanup = func() { os.Remove(pub) }
			c.Tokens.PublicKeyFile = pub
		}
	}
	a, err := identity.New(c)
	if err != nil {
		cleanup()
		return nil, func() {}, fmt.Errorf("identity: %w", err)
	}
	return a, cleanup, nil
}

func writePublicKey(priv ed25519.PrivateKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp("", "keyhole-token-*.pub")
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := pem.Encode(f, &pem.Block{Type: "PUBLIC KEY", Bytes: der}); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// health is /healthz: keyhole is unhealthy when decisions cannot be
// recorded or upstream credentials cannot be had. Error texts carry no
// secret (both packages promise generic classes only).
func (s *server) health(rec audit.Recorder) error {
	type healthy interface{ Healthy() error }
	if h, ok := rec.(healthy); ok {
		if err := h.Healthy(); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
	}
	if h, ok := s.src.(healthy); ok {
		err := h.Healthy()
		s.metrics.SetCredsHealthy(err == nil)
		if err != nil {
			return fmt.Errorf("credentials: %w", err)
		}
	}
	return nil
}

func buildAudit(c config.Audit) (audit.Recorder, error) {
	var recs []audit.Recorder
	if c.File != "" {
		r, err := audit.NewFileRecorder(c.File, audit.FileOptions{MaxBytes: c.MaxBytes, MaxBackups: c.Backups})
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		recs = append(recs, r)
	}
	if c.Stdout {
		recs = append(recs, audit.NewWriterRecorder(os.Stdout))
	}
	if len(recs) == 1 {
		return recs[0], nil
	}
	return audit.Tee(recs...), nil
}
