package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyholedb/keyhole/admin"
	"github.com/keyholedb/keyhole/approval"
	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/internal/evloop"
	"github.com/keyholedb/keyhole/internal/filestamp"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// catalogTimeout bounds reading one upstream's schema.
const catalogTimeout = time.Minute

// Options are what a configuration file cannot say.
type Options struct {
	// Logger is keyhole's log; nil means slog.Default().
	Logger *slog.Logger
	// Reload: every value received reloads the schemas and the policy, as
	// Reload does. keyhole serve passes its SIGHUP channel, registered
	// before New so that a SIGHUP during start-up is queued, not fatal.
	Reload <-chan os.Signal
	// WrapCreds, when set, wraps the credential source the front ends and
	// the catalog reader use (tests record the credentials handed out).
	// Revocation and health still reach the source itself.
	WrapCreds func(creds.Source) creds.Source
	// FrontEnds build the front end of a dialect (config.Dialect*) in
	// place of this build's own, or where this build has none: for a
	// program that embeds the gateway with a front end of its own, and
	// for tests.
	FrontEnds map[string]func(FrontEndConfig) (FrontEnd, error)
	// Catalogs, by upstream name, are used in place of reading those
	// upstreams' schemas (at start and at every reload): for a program
	// that decides against a catalog dump (keyhole catalog dump), and for
	// tests whose upstream is a scripted fake peer.
	Catalogs map[string]*catalog.Catalog
	// NewAnalyzer builds the analyzer of an upstream's dialect over its
	// catalog in place of the package's NewAnalyzer (analyzer options
	// keyhole.yaml does not set); it must return the analyzer type of the
	// dialect.
	NewAnalyzer func(dialect string, cat *catalog.Catalog) (sqlpolicy.Analyzer, error)
}

// Gateway is one running keyhole.
type Gateway struct {
	cfg  *config.Config
	log  *slog.Logger
	opts Options

	ups  map[string]*Upstream
	auth *identity.Auth
	base creds.Source // as built: revocation and health
	src  creds.Source // as the front ends use it (maybe wrapped)
	rec  audit.Recorder
	gen  atomic.Pointer[generation]
	// secretFiles watches the agents' verifier files (nil: none); only
	// the run loop uses it.
	secretFiles *fileWatch

	// approvals is just-in-time access and the console's index (the
	// store); see approvals.go.
	approvals *approval.Service

	fronts  []*running
	adminLn net.Listener
	adminS  *http.Server
	// metricsLn/metricsS serve /metrics and /healthz alone when
	// listen.metrics is set (admin.go).
	metricsLn net.Listener
	metricsS  *http.Server

	metrics  *admin.Metrics
	reloads  *prometheus.CounterVec
	reloadOK prometheus.Gauge

	// reloadMu serializes reloads and guards policyWatch.
	reloadMu    sync.Mutex
	policyWatch *fileWatch // the policy file (loaded: the version loaded or refused last)

	ctx    context.Context // cancelled when the gateway stops; bounds reloads
	cancel context.CancelFunc

	closers []func() error // undone in reverse order at the end
	started atomic.Bool
	stopReq chan context.Context
	// schemaChanged is signalled (router.SchemaChanged) when an agent's
	// DDL has taken effect: Run reads the catalogs again.
	schemaChanged chan struct{}
	done          chan struct{}
	runErr        error
}

// running is a front end and its listener.
type running struct {
	proto protocol
	fe    FrontEnd
	ln    net.Listener
}

// New checks cfg, fills its defaults, and builds and binds everything:
// upstream TLS, credentials, every upstream's catalog, the policy, agent
// authentication, audit sinks, the front ends and their listeners, the
// admin server. It never serves without a policy: anything that does not
// load is an error. cfg's secrets must be resolved (ResolveSecrets); New
// takes cfg over.
func New(cfg *config.Config, opts Options) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.ApplyDefaults()
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	g := &Gateway{cfg: cfg, log: opts.Logger, opts: opts, stopReq: make(chan context.Context, 1), done: make(chan struct{}),
		schemaChanged: make(chan struct{}, 1)}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	built := false
	defer func() {
		if !built {
			g.cancel()
			_ = g.closeAll()
		}
	}()
	if err := checkProtocols(cfg, opts.FrontEnds); err != nil {
		return nil, err
	}
	g.log.Info("keyhole starting", "config", cfg.Path, "policy", cfg.Policy.File, "listen_postgres", cfg.Listen.Postgres, "listen_mysql", cfg.Listen.MySQL, "admin", cfg.Listen.Admin)
	if cfg.Limits.Relay == config.RelayLoop {
		if n, mode, why := evloop.SharedMode(); mode == "" {
			g.log.Warn("event loops unavailable: sessions relay on goroutines", "err", why)
		} else if why != nil {
			g.log.Info("event loops", "loops", n, "io", mode, "io_uring_unused", why.Error())
		} else {
			g.log.Info("event loops", "loops", n, "io", mode)
		}
	}

	// Local files first: a bad certificate or key fails before any
	// upstream is contacted.
	tlsCfg, err := serverTLS(cfg.TLS, g.log)
	if err != nil {
		return nil, err
	}
	// Stamps before reading: a write meanwhile is a change at the polls.
	g.secretFiles = newFileWatch(cfg.Identity.SecretFiles())
	auth, authCleanup, err := buildAuth(cfg.Identity)
	if err != nil {
		return nil, err
	}
	g.auth = auth
	g.addCloser(func() error { authCleanup(); return nil })
	if g.ups, err = buildUpstreams(cfg); err != nil {
		return nil, err
	}
	for _, name := range slices.Sorted(maps.Keys(g.ups)) {
		u := g.ups[name]
		g.log.Info("upstream", "name", name, "dialect", u.Dialect, "addr", u.Addr, "database", u.Database, "sslmode", cfg.Upstreams[name].SSLMode)
	}
	if g.base, err = buildCreds(cfg, g.log); err != nil {
		return nil, err
	}
	g.addCloser(func() error {
		if err := g.base.Close(); err != nil {
			g.log.Warn("close credential source", "err", err)
		}
		return nil
	})
	g.src = g.base
	if opts.WrapCreds != nil {
		g.src = opts.WrapCreds(g.base)
	}

	cats, err := g.loadCatalogs(g.ctx)
	if err != nil {
		return nil, err
	}
	gen, err := g.loadGeneration(cats)
	if err != nil {
		return nil, err
	}
	g.gen.Store(gen)

	if g.rec, err = buildAudit(cfg.Audit, g.log); err != nil {
		return nil, err
	}
	g.addCloser(func() error {
		if err := g.rec.Close(); err != nil {
			g.log.Error("flush audit log", "err", err)
			return fmt.Errorf("flush audit log: %w", err)
		}
		return nil
	})
	if err := g.openApprovals(g.ctx); err != nil {
		return nil, err
	}

	g.metrics = admin.NewMetrics(nil)
	g.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyhole_policy_reloads_total",
		Help: "Policy reloads by result; after an error the running policy stays in force.",
	}, []string{"result"})
	g.reloadOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "keyhole_policy_reload_ok",
		Help: "1 when the policy in force is the file's current content, 0 after a failed reload.",
	})
	g.reloadOK.Set(1)
	g.metrics.Registry().MustRegister(g.reloads, g.reloadOK)
	// The catalogs were just read with credentials from the source.
	g.metrics.SetCredsHealthy(true)
	if v, ok := g.base.(*creds.Vault); ok {
		v.OnError(g.metrics.VaultError)
	}

	// One lockout for every front end: guessing an agent's secret over
	// MySQL counts against the same (address, agent) as over Postgres.
	limiter := identity.NewLimiter(cfg.Identity.Lockout)
	for _, p := range protocols {
		ups := map[string]Upstream{}
		for name, u := range g.ups {
			if u.Dialect == p.dialect {
				ups[name] = *u
			}
		}
		if len(ups) == 0 {
			continue
		}
		fe, err := p.builder(opts.FrontEnds)(FrontEndConfig{
			TLS:           tlsCfg,
			Decider:       g.decider(p.dialect),
			Auth:          auth,
			Limiter:       limiter,
			Creds:         g.src,
			Upstreams:     ups,
			Audit:         g.rec,
			Metrics:       g.metrics,
			Logger:        g.log,
			Limits:        cfg.Limits,
			RawStatements: cfg.Audit.RawStatements,
			Replica:       uint8(cfg.Cluster.Replica),
			ForwardCancel: g.forwardCancel,
		})
		if err != nil {
			return nil, err
		}
		ln, err := net.Listen("tcp", p.listen(cfg))
		if err != nil {
			_ = fe.Close()
			return nil, fmt.Errorf("%s: %w", p.key, err)
		}
		g.fronts = append(g.fronts, &running{proto: p, fe: fe, ln: ln})
	}
	if cfg.Listen.Admin != "" {
		if err := g.listenAdmin(tlsCfg); err != nil {
			return nil, err
		}
	}
	built = true
	return g, nil
}

// checkProtocols refuses what this build cannot serve rather than not
// listen where agents are told to connect. (That every dialect's
// upstreams have a listener, and the other way round, config.Validate
// checks.)
func checkProtocols(cfg *config.Config, builds map[string]func(FrontEndConfig) (FrontEnd, error)) error {
	for _, p := range protocols {
		if p.builder(builds) != nil {
			continue
		}
		var names []string
		for name, u := range cfg.Upstreams {
			if u.Dialect == p.dialect {
				names = append(names, fmt.Sprintf("%q", name))
			}
		}
		slices.Sort(names)
		switch {
		case p.listen(cfg) != "":
			return fmt.Errorf("%s: the %s front end is not part of this build: it cannot listen for agents of %s:// upstreams "+
				"(keyhole check, catalog dump, labels and vault roles work with them)", p.key, p.dialect, p.dialect)
		case len(names) > 0:
			return fmt.Errorf("upstreams %v: %s:// upstreams need the %s front end, which is not part of this build", names, p.dialect, p.dialect)
		}
	}
	return nil
}

func (g *Gateway) addCloser(f func() error) { g.closers = append(g.closers, f) }

// closeAll closes every front end, then what New opened, last first: the
// audit log is flushed after the last session ended, and the credential
// source (which revokes Vault leases) closes last.
func (g *Gateway) closeAll() error {
	var errs []error
	for _, r := range g.fronts {
		_ = r.ln.Close()
		_ = r.fe.Close()
	}
	if g.adminLn != nil {
		_ = g.adminLn.Close()
	}
	if g.metricsLn != nil {
		_ = g.metricsLn.Close()
	}
	for i := len(g.closers) - 1; i >= 0; i-- {
		errs = append(errs, g.closers[i]())
	}
	g.closers = nil
	return errors.Join(errs...)
}

// Addr is where the front end of dialect (config.DialectPostgres, ...)
// listens, or nil when it does not.
func (g *Gateway) Addr(dialect string) net.Addr {
	for _, r := range g.fronts {
		if r.proto.dialect == dialect {
			return r.ln.Addr()
		}
	}
	return nil
}

// AdminAddr is where the admin server listens, or nil when it is off.
func (g *Gateway) AdminAddr() net.Addr {
	if g.adminLn == nil {
		return nil
	}
	return g.adminLn.Addr()
}

// Run serves until ctx is done (then it shuts down gracefully within
// limits.shutdown_grace), Shutdown is called, or a listener fails. It
// returns nil after a clean shutdown, and an error when a listener failed
// or sessions had to be cut at the end of the grace.
func (g *Gateway) Run(ctx context.Context) error {
	if !g.started.CompareAndSwap(false, true) {
		return errors.New("gateway: Run called twice, or after Shutdown")
	}
	defer close(g.done)
	serveErr := make(chan error, len(g.fronts)+1)
	for _, r := range g.fronts {
		go func() { serveErr <- fmt.Errorf("%s front end: %w", r.proto.dialect, r.fe.Serve(r.ln)) }()
	}
	if g.adminS != nil {
		go func() {
			if err := g.adminS.Serve(g.adminLn); !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("admin: %w", err)
			}
		}()
	}
	if g.metricsS != nil {
		go func() {
			if err := g.metricsS.Serve(g.metricsLn); !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("metrics: %w", err)
			}
		}()
	}
	// One line that scripts and tests wait for.
	ready := []any{}
	for _, r := range g.fronts {
		ready = append(ready, r.proto.dialect, r.ln.Addr().String())
	}
	admin := ""
	if g.adminLn != nil {
		admin = g.adminLn.Addr().String()
	}
	g.log.Info("keyhole ready", append(ready, "admin", admin)...)

	var tick <-chan time.Time
	if g.cfg.Policy.ReloadInterval > 0 {
		t := time.NewTicker(g.cfg.Policy.ReloadInterval)
		defer t.Stop()
		tick = t.C
	}
	// The agents' credential files: revoked tokens and stored secrets.
	var credTick <-chan time.Time
	if g.auth.RevokedTokens() != nil || g.secretFiles != nil {
		t := time.NewTicker(credentialsPoll)
		defer t.Stop()
		credTick = t.C
	}
	var (
		runErr error
		sdCtx  context.Context
	)
	grace := func() context.Context {
		c, cancel := context.WithTimeout(context.Background(), g.cfg.Limits.ShutdownGrace)
		context.AfterFunc(c, cancel)
		return c
	}
	for sdCtx == nil {
		select {
		case <-ctx.Done():
			g.log.Info("shutting down: draining sessions", "grace", g.cfg.Limits.ShutdownGrace.String())
			sdCtx = grace()
		case c := <-g.stopReq:
			g.log.Info("shutting down: draining sessions")
			sdCtx = c
		case err := <-serveErr:
			runErr = err
			g.log.Error("listener failed; shutting down", "err", err)
			sdCtx = grace()
		case <-g.opts.Reload:
			_ = g.reload("SIGHUP", true)
			if g.secretFiles != nil {
				g.secretFiles.take()
				_ = g.reloadSecrets("SIGHUP")
			}
		case <-g.schemaChanged:
			_ = g.reload("schema change", true)
		case <-tick:
			if g.policyChanged() {
				_ = g.reload("file changed", false)
			}
		case <-credTick:
			g.endRevokedTokens()
			if g.secretFiles.changed() {
				_ = g.reloadSecrets("file changed")
			}
		}
	}
	g.cancel()
	if g.adminS != nil {
		_ = g.adminS.Shutdown(sdCtx)
	}
	if g.metricsS != nil {
		_ = g.metricsS.Shutdown(sdCtx)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(g.fronts))
	for i, r := range g.fronts {
		wg.Go(func() { errs[i] = r.fe.Shutdown(sdCtx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		g.log.Warn("sessions did not finish within the shutdown grace; closed them", "err", err)
		if runErr == nil {
			runErr = fmt.Errorf("shutdown: %w", err)
		}
	}
	if err := g.closeAll(); err != nil && runErr == nil {
		runErr = err
	}
	g.log.Info("keyhole stopped")
	g.runErr = runErr
	return runErr
}

// Shutdown stops a running gateway as Run does when its context ends, but
// with ctx's deadline for the sessions in flight, and waits for Run to
// return (its error is returned). A gateway that never ran is closed.
func (g *Gateway) Shutdown(ctx context.Context) error {
	if g.started.CompareAndSwap(false, true) {
		g.cancel()
		close(g.done)
		g.runErr = g.closeAll()
		return g.runErr
	}
	select {
	case g.stopReq <- ctx:
	default: // a shutdown is under way
	}
	select {
	case <-g.done:
		return g.runErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Reload re-reads every upstream's schema and the policy file, as SIGHUP
// does, and swaps in the new policy generation. On error the running one
// stays in force and the error says why.
func (g *Gateway) Reload() error { return g.reload("Reload", true) }

// ReloadPolicy re-reads the policy file against the running catalogs, as a
// change of the file does.
func (g *Gateway) ReloadPolicy() error { return g.reload("ReloadPolicy", false) }

// reload swaps in the policy file's current contents; withCatalog (SIGHUP)
// first reads the schemas again, so new tables and comment labels take
// effect. Anything that fails to load leaves the running catalogs and
// policy in place: failing closed here would lock every agent out because
// of a typo, and failing open is not an option.
func (g *Gateway) reload(why string, withCatalog bool) error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	if err := g.policyFileEmpty(); err != nil {
		g.log.Error("policy reload refused; keeping the running policy", "trigger", why, "err", err)
		g.reloads.WithLabelValues("error").Inc()
		g.reloadOK.Set(0)
		return err
	}
	old := g.gen.Load()
	cats, fresh := old.cats, false
	if withCatalog {
		c, err := g.loadCatalogs(g.ctx)
		if err != nil {
			g.log.Error("catalog reload failed; keeping the running catalog", "trigger", why, "err", err)
		} else {
			cats, fresh = c, true
		}
	}
	gen, err := g.loadGeneration(cats)
	if err != nil {
		g.log.Error("policy reload failed; keeping the running policy", "trigger", why, "err", err)
		g.reloads.WithLabelValues("error").Inc()
		g.reloadOK.Set(0)
		return err
	}
	g.gen.Store(gen)
	g.revoke(changedAgents(old, gen))
	g.reloads.WithLabelValues("ok").Inc()
	g.reloadOK.Set(1)
	g.log.Info("policy reloaded", "trigger", why, "file", g.cfg.Policy.File, "catalog_reloaded", fresh)
	return nil
}

// credentialsPoll is how often the open sessions are matched against
// tokens.revoked_file (which identity reads again when it changed), and
// the verifier files are looked at for a new version.
const credentialsPoll = time.Second

// reloadSecrets reads the agents' verifier files again and ends the
// sessions that logged in with a secret that changed or went. A file that
// does not load leaves every secret as it was.
func (g *Gateway) reloadSecrets(why string) error {
	changes, err := g.auth.ReloadSecrets()
	if err != nil {
		g.log.Error("agent secrets reload failed; keeping the running secrets", "trigger", why, "err", err)
		return err
	}
	g.log.Info("agent secrets reloaded", "trigger", why, "changed_scram", len(changes.SCRAM), "changed_mysql", len(changes.MySQL))
	if changes.Empty() {
		return nil
	}
	for _, f := range g.fronts {
		if e, ok := f.fe.(SecretEnder); ok {
			if n := e.EndSecrets(changes); n > 0 {
				g.log.Info("ended the sessions of changed agent secrets", "protocol", f.proto.dialect, "sessions", n)
			}
		}
	}
	return nil
}

// endRevokedTokens ends the open sessions of agents that logged in with a
// token revoked since: a revocation is for the sessions a leaked token
// opened too, not only for its next login.
func (g *Gateway) endRevokedTokens() {
	revoked := g.auth.RevokedTokens()
	for _, f := range g.fronts {
		if e, ok := f.fe.(TokenEnder); ok {
			if n := e.EndTokens(revoked); n > 0 {
				g.log.Info("ended the sessions of revoked agent tokens", "protocol", f.proto.dialect, "sessions", n)
			}
		}
	}
}

// revoke ends the upstream credentials and sessions of agents a reload
// removed or moved.
func (g *Gateway) revoke(agents []string) {
	for _, a := range agents {
		g.log.Info("ending the credentials and sessions of an agent the policy changed", "agent", a)
		if r, ok := g.base.(agentRevoker); ok {
			r.RevokeAgent(a)
		}
		for _, f := range g.fronts {
			if e, ok := f.fe.(AgentEnder); ok {
				e.EndAgent(a)
			}
		}
	}
}

// loadCatalogs reads every upstream's schema.
func (g *Gateway) loadCatalogs(ctx context.Context) (map[string]*catalog.Catalog, error) {
	cats := make(map[string]*catalog.Catalog, len(g.ups))
	for _, name := range slices.Sorted(maps.Keys(g.ups)) {
		if cat := g.opts.Catalogs[name]; cat != nil {
			cats[name] = cat
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, catalogTimeout)
		cat, err := loadCatalog(lctx, g.ups[name], g.src, g.cfg.Creds.Vault, g.log)
		cancel()
		if err != nil {
			return nil, err
		}
		// With static logins every session of the upstream logs in as the
		// catalog did, so the catalog's USAGE and "$user" are the
		// sessions' own. A wrapped or Vault source may hand sessions
		// other roles: the analyzer then treats both as unknown.
		if _, static := g.src.(staticLogins); static {
			cat.SessionsShareLogin = true
		}
		cats[name] = cat
	}
	return cats, nil
}

// loadGeneration reads the policy file against the catalogs and builds one
// engine per upstream. The file's stamp is taken before reading, so a
// write during the read is seen as a change at the next poll.
func (g *Gateway) loadGeneration(cats map[string]*catalog.Catalog) (*generation, error) {
	g.policyWatch = newFileWatch([]string{g.cfg.Policy.File})
	file := g.cfg.Policy.File
	// One upstream: the policy is checked against its catalog by
	// sqlpolicy itself. Several: the roles of each against their own.
	var only *catalog.Catalog
	if len(cats) == 1 {
		for _, c := range cats {
			only = c
		}
	}
	pol, warns, err := sqlpolicy.LoadPolicyFile(file, only)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	for _, w := range warns {
		g.log.Warn("policy warning", "warning", w.String())
	}
	// A role whose upstream keyhole does not know could never connect;
	// say so now rather than at an agent's first login.
	for _, name := range pol.RoleNames() {
		r := pol.Roles[name]
		if _, ok := route(cats, r.Upstream); !ok {
			return nil, fmt.Errorf("policy: role %s uses upstream %q, which is not configured (upstreams: %v)", name, r.Upstream, slices.Sorted(maps.Keys(cats)))
		}
	}
	if only == nil {
		ws, err := checkNames(pol, cats)
		for _, w := range ws {
			g.log.Warn("policy warning", "warning", w)
		}
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
	}
	engines, dialect := map[string]*sqlpolicy.Engine{}, map[string]string{}
	for name, cat := range cats {
		u := g.ups[name]
		newAnalyzer := NewAnalyzer
		if g.opts.NewAnalyzer != nil {
			newAnalyzer = g.opts.NewAnalyzer
		}
		an, err := newAnalyzer(u.Dialect, cat)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", u.label(), err)
		}
		engines[name] = sqlpolicy.NewEngine(pol, cat, an, sqlpolicy.EngineOptions{})
		dialect[name] = u.Dialect
	}
	return newGeneration(pol, cats, engines, dialect), nil
}

// policyFileEmpty refuses to reload from a policy file that holds nothing
// but white space. A running keyhole sees a file mid-write that way (an
// editor or a copy that truncates, then writes; the file watch polls), and
// a policy with no agents would end every session at once; an operator
// who means to deny every agent writes a policy that says so (roles and
// agents emptied). The file's stamp is taken, so the watch tries again
// once the file changes and does not repeat the error meanwhile.
func (g *Gateway) policyFileEmpty() error {
	w := newFileWatch([]string{g.cfg.Policy.File})
	data, err := os.ReadFile(g.cfg.Policy.File)
	if err != nil || len(bytes.TrimSpace(data)) > 0 {
		return nil // loadGeneration reports a file it cannot read
	}
	g.policyWatch = w
	return fmt.Errorf("policy: %s is empty (being written?); write a policy with no agents to deny every agent", g.cfg.Policy.File)
}

// statFile is a file's stamp; the zero stamp when it cannot be read (a
// later poll that can is a change).
func statFile(path string) filestamp.Stamp {
	st, _ := filestamp.Stat(path)
	return st
}

// policyChanged is the file watch's poll: whether the policy file holds a
// version other than the one loaded last that has settled, that is, the
// previous poll saw it too (fileWatch). A file being written in place (an
// editor, a copy or a template tool that truncates, then writes in
// pieces) can be valid YAML while cut short, and a policy cut before a
// rule or a deny_labels entry allows more than either version; waiting
// one poll interval for the writes to end keeps such a version from being
// loaded. A file replaced by a rename (the safe way) is whole at once and
// waits one interval too. An explicit reload (SIGHUP, ReloadPolicy) does
// not wait.
func (g *Gateway) policyChanged() bool {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	return g.policyWatch.changed()
}

// health is /healthz: keyhole is unhealthy when decisions cannot be
// recorded or upstream credentials cannot be had.
func (g *Gateway) health() error {
	if h, ok := g.rec.(healthChecker); ok {
		if err := h.Healthy(); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
	}
	if g.approvals != nil {
		if err := g.approvals.Healthy(); err != nil {
			return fmt.Errorf("approvals: %w", err)
		}
	}
	if h, ok := g.base.(healthChecker); ok {
		err := h.Healthy()
		g.metrics.SetCredsHealthy(err == nil)
		if err != nil {
			return fmt.Errorf("credentials: %w", err)
		}
	}
	return nil
}

func buildAudit(c config.Audit, log *slog.Logger) (audit.Recorder, error) {
	var recs []audit.Recorder
	if c.File != "" {
		r, err := audit.NewFileRecorder(c.File, audit.FileOptions{MaxBytes: c.MaxBytes, MaxBackups: c.Backups})
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		if !r.Rotates() {
			log.Info("audit file is not a regular file (a device, pipe or link): written through, not rotated", "path", c.File)
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

// fileWatch tells when a set of files holds a new version that has
// settled: a poll saw the same stamps as the poll before it (see
// policyChanged for why a version seen once is not loaded).
type fileWatch struct {
	paths        []string
	loaded, seen []filestamp.Stamp
}

// newFileWatch watches paths, taking their stamps now; nil for none.
func newFileWatch(paths []string) *fileWatch {
	if len(paths) == 0 {
		return nil
	}
	w := &fileWatch{paths: paths}
	w.take()
	return w
}

func (w *fileWatch) stamps() []filestamp.Stamp {
	out := make([]filestamp.Stamp, len(w.paths))
	for i, p := range w.paths {
		out[i] = statFile(p)
	}
	return out
}

// take records the files' versions as loaded (call it before reading
// them, so a write during the read is a change at the next polls).
func (w *fileWatch) take() {
	w.loaded = w.stamps()
	w.seen = w.loaded
}

// changed is a poll: true, once, when the files hold a settled version
// other than the one loaded, which it then records as loaded.
func (w *fileWatch) changed() bool {
	if w == nil {
		return false
	}
	now := w.stamps()
	settled := slices.Equal(now, w.seen)
	w.seen = now
	if settled && !slices.Equal(now, w.loaded) {
		w.loaded = now
		return true
	}
	return false
}
