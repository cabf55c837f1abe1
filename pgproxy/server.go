package pgproxy

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// Config configures a Server.
type Config struct {
	// TLS answers SSLRequest with 'S' when set (else 'N'). For mTLS set
	// ClientAuth to tls.VerifyClientCertIfGiven and ClientCAs.
	TLS     *tls.Config
	Decider sqlpolicy.Decider
	Auth    identity.Authenticator
	// Limiter slows down guessing of agent secrets (SCRAM); one is meant
	// to be shared by every front end. nil: one of this Server's own with
	// the default policy.
	Limiter *identity.Limiter
	Creds   creds.Source
	// Upstreams by name (the role's upstream); "" is the default used when
	// the role's name is missing.
	Upstreams map[string]Upstream
	Audit     audit.Recorder // nil = none
	Metrics   Metrics        // nil = none
	Logger    *slog.Logger   // nil = slog.Default()
	Limits    Limits
	// RawStatements audits raw SQL instead of the Decider.Redact text.
	RawStatements bool

	// --- replicas: cancel forwarding (gateway/cancel.go) ---

	// Replica, 1 to 127, is put in the top byte of every BackendKeyData
	// process id this server hands out; 0 (a single keyhole) leaves the
	// ids random.
	Replica uint8
	// ForwardCancel receives a CancelRequest whose key names another
	// replica (a load balancer sent the client's cancel connection
	// elsewhere); it delivers it to that replica. Nil drops such requests,
	// as unknown keys are.
	ForwardCancel func(replica uint8, pid uint32, secret []byte)
}

// Metrics is what the front end reports (admin.Metrics implements it).
type Metrics interface {
	ConnectionOpened(protocol string)
	ConnectionClosed(protocol string)
	AuthFailed(protocol string)
	StatementDecided(protocol string, effect sqlpolicy.Effect, rule string, latency time.Duration)
	UpstreamError(protocol string)
}

// LoginGateMetrics is what a Metrics may also implement (admin.Metrics
// does) to count the connections the login gate dropped (MaxStartups).
type LoginGateMetrics interface {
	LoginDropped(protocol string)
}

// ReuseMetrics is what a Metrics may also implement (admin.Metrics does)
// to report upstream session reuse (reuse.go): each session's start on a
// kept upstream session or a new login, and how many are kept.
type ReuseMetrics interface {
	UpstreamSessionStarted(protocol string, reused bool)
	UpstreamSessionsKept(protocol string, n int)
}

// Upstream is a Postgres server keyhole connects to.
type Upstream struct {
	Addr string // host:port
	// Database, when set, is the one database agents routed here reach:
	// a client asking for another is refused (28000); else the client's
	// database is used.
	Database string
	TLS      *tls.Config // nil = no TLS
}

// Limits bound resource use. Zero values mean the defaults noted.
type Limits struct {
	// The defaults have one home, package config (config.DefaultMaxConns,
	// ...), which keyhole.yaml's limits fill before the gateway hands
	// them over; a zero here means the same default.
	MaxConns int // 0 = 1000 concurrent logged-in sessions
	// MaxStartups bounds the connections still logging in; past it the
	// oldest login of the source holding the most is dropped (see
	// identity.LoginGate). 0 = 256.
	MaxStartups    int
	MaxPerAgent    int           // 0 = no bound on one agent's sessions but MaxConns
	StartupTimeout time.Duration // 0 = 10s from accept to ReadyForQuery
	// IdleTimeout ends, with 57P05, a session that has nothing in flight
	// and has sent nothing for this long (in a transaction or not);
	// 0 = 1h, negative = never.
	IdleTimeout time.Duration
	// MaxMessageSize bounds a client message body once the agent is
	// authenticated (before, 32 KiB); 0 = 64 MiB.
	MaxMessageSize int
	// BufferMemory bounds the bytes all client connections together may
	// hold in read buffers beyond 8 KiB each; a message that does not fit
	// waits for room (up to 10s, then the session ends with 53200).
	// 0 = 4 × MaxMessageSize; it must be at least MaxMessageSize.
	BufferMemory int64
	// ShutdownGrace bounds Shutdown when its context has no deadline; 0 = 30s.
	ShutdownGrace time.Duration
	// Relay is how a session with no TLS on either side is relayed once
	// logged in: config.RelayLoop ("" too: on the shared event loops of
	// internal/evloop, see loop.go) or config.RelayGoroutine (a goroutine
	// per session, as TLS sessions always are).
	Relay string
	// ReuseMax is how many upstream sessions whose clients left at a
	// clean point are kept, reset, for the next session that logs in
	// exactly as they did (reuse.go); 0 = 32, negative = none are kept.
	ReuseMax int
	// ReuseIdle is how long a kept upstream session waits for reuse;
	// 0 = 5m.
	ReuseIdle time.Duration
	// MaxNames bounds the named prepared statements, and separately the
	// named portals and cursors, one session holds (keyhole keeps a few
	// hundred bytes for each); past it the message that would create one
	// more is refused with 54000 and the session goes on. 0 = 10000.
	MaxNames int
}

// DefaultMaxNames is Limits.MaxNames's default.
const DefaultMaxNames = 10000

// bufferWait bounds how long a client message waits for buffer memory.
const bufferWait = 10 * time.Second

func (l Limits) withDefaults() Limits {
	if l.MaxConns <= 0 {
		l.MaxConns = config.DefaultMaxConns
	}
	if l.MaxStartups <= 0 {
		l.MaxStartups = config.DefaultMaxStartups
	}
	if l.StartupTimeout <= 0 {
		l.StartupTimeout = config.DefaultStartupTimeout
	}
	switch {
	case l.IdleTimeout == 0:
		l.IdleTimeout = config.DefaultIdleTimeout
	case l.IdleTimeout < 0:
		l.IdleTimeout = 0
	}
	if l.MaxMessageSize <= 0 {
		l.MaxMessageSize = config.DefaultMaxMessageSize
	}
	if l.BufferMemory <= 0 {
		l.BufferMemory = config.DefaultBufferMemory(l.MaxMessageSize)
	}
	if l.ShutdownGrace <= 0 {
		l.ShutdownGrace = config.DefaultShutdownGrace
	}
	if l.Relay == "" {
		l.Relay = config.DefaultRelay
	}
	if l.ReuseMax == 0 {
		l.ReuseMax = config.DefaultUpstreamReuseMax
	}
	if l.ReuseIdle <= 0 {
		l.ReuseIdle = config.DefaultUpstreamReuseIdle
	}
	if l.MaxNames <= 0 {
		l.MaxNames = DefaultMaxNames
	}
	return l
}

// Server accepts Postgres client connections and relays them upstream.
type Server struct {
	cfg    Config
	limits Limits
	log    *slog.Logger
	fails  *identity.Limiter // Config.Limiter or a default one
	// logins bounds the connections still logging in (MaxStartups).
	logins *identity.LoginGate
	// buffers is the memory budget of client read buffers.
	buffers *memBudget
	// leases ends sessions whose credentials are revoked.
	leases leaseWatcher
	// reuse keeps reset upstream sessions for reuse (reuse.go).
	reuse *upstreamPool

	ctx    context.Context // parent of every connection; cancelled last in Shutdown
	cancel context.CancelFunc

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	keys      map[uint32]*conn // keyhole BackendKeyData pid → connection
	draining  bool
	wg        sync.WaitGroup
	// sessions counts the logged-in sessions (MaxConns, MaxPerAgent).
	sessions *identity.Sessions

	// upCfgs holds the parsed upstream configurations (upstreamConfig).
	upCfgMu sync.Mutex
	upCfgs  map[upCfgKey]*pgconn.Config
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("pgproxy: server closed")

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Decider == nil:
		return nil, errors.New("pgproxy: Config.Decider is required")
	case cfg.Auth == nil:
		return nil, errors.New("pgproxy: Config.Auth is required")
	case cfg.Creds == nil:
		return nil, errors.New("pgproxy: Config.Creds is required")
	case len(cfg.Upstreams) == 0:
		return nil, errors.New("pgproxy: Config.Upstreams is empty")
	}
	ups := make(map[string]Upstream, len(cfg.Upstreams))
	for name, u := range cfg.Upstreams {
		host, _, err := net.SplitHostPort(u.Addr)
		if err != nil {
			return nil, fmt.Errorf("pgproxy: upstream %q: address %q: %w", name, u.Addr, err)
		}
		if u.TLS != nil && u.TLS.ServerName == "" {
			// The certificate must name the host dialled; set once here
			// rather than in a copy per session.
			u.TLS = u.TLS.Clone()
			u.TLS.ServerName = host
		}
		ups[name] = u
	}
	cfg.Upstreams = ups
	limits := cfg.Limits.withDefaults()
	if limits.Relay != config.RelayLoop && limits.Relay != config.RelayGoroutine {
		return nil, fmt.Errorf("pgproxy: Limits.Relay %q: want %s or %s", limits.Relay, config.RelayLoop, config.RelayGoroutine)
	}
	if limits.BufferMemory < int64(limits.MaxMessageSize) {
		return nil, fmt.Errorf("pgproxy: Limits.BufferMemory %d is less than MaxMessageSize %d", limits.BufferMemory, limits.MaxMessageSize)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	fails := cfg.Limiter
	if fails == nil {
		fails = identity.NewLimiter(identity.LockoutConfig{})
	}
	ctx, cancel := context.WithCancel(context.Background())
	log = log.With("component", "pgproxy")
	reuse := newUpstreamPool(limits.ReuseMax, limits.ReuseIdle, log)
	if rm, ok := cfg.Metrics.(ReuseMetrics); ok {
		reuse.report = func(n int) { rm.UpstreamSessionsKept(protocolName, n) }
	}
	return &Server{
		cfg:       cfg,
		limits:    limits,
		reuse:     reuse,
		buffers:   newMemBudget(limits.BufferMemory),
		log:       log,
		fails:     fails,
		logins:    identity.NewLoginGate(limits.MaxStartups),
		sessions:  identity.NewSessions(limits.MaxConns, limits.MaxPerAgent),
		ctx:       ctx,
		cancel:    cancel,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
		keys:      make(map[uint32]*conn),
	}, nil
}

// Serve accepts connections on ln until Shutdown (then it returns
// ErrServerClosed) or an accept error.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			draining := s.draining
			s.mu.Unlock()
			if draining {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept", "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("pgproxy: accept: %w", err)
		}
		backoff = 0
		c := s.newConn(nc)
		s.mu.Lock()
		if s.draining {
			s.mu.Unlock()
			_ = nc.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go c.serve(s.ctx)
	}
}

// EndTokens ends every session whose agent logged in with a token whose
// id (jti) is in revoked (28000, "the agent token has been revoked"): a
// token revoked after a session began no longer speaks through it. It
// returns how many sessions it ended.
func (s *Server) EndTokens(revoked map[string]bool) int {
	if len(revoked) == 0 {
		return 0
	}
	return s.endSessions(func(a *identity.Agent) bool { return a.TokenID != "" && revoked[a.TokenID] }, errTokenRevoked)
}

// EndSecrets ends the sessions that logged in with a SCRAM secret of an
// agent whose verifier changes.SCRAM names (28000): a secret is rotated
// because it leaked, and what it opened must not outlive it.
func (s *Server) EndSecrets(changes identity.SecretChanges) int {
	if len(changes.SCRAM) == 0 {
		return 0
	}
	return s.endSessions(func(a *identity.Agent) bool { return a.Method == identity.MethodSCRAM && changes.SCRAM[a.Name] }, errSecretChanged)
}

// EndAgent ends every session of agent now (28000, "agent is no longer
// allowed by the policy"): the gateway calls it when a reload removes the
// agent or changes its role. Without it such a session would end only at
// its next statement, keeping its upstream session meanwhile.
func (s *Server) EndAgent(agent string) int {
	return s.endSessions(func(a *identity.Agent) bool { return a.Name == agent }, errAgentRemoved)
}

// endSessions stops, with err, every logged-in session whose agent
// matches.
func (s *Server) endSessions(match func(*identity.Agent) bool, err error) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.conns {
		c.mu.Lock()
		a := c.agent
		hit := a != nil && !c.stopped && match(a)
		c.mu.Unlock()
		if hit {
			s.log.Info("ending session", "session", c.id, "agent", a.Name, "token_id", a.TokenID, "err", err)
			c.stop(err)
			n++
		}
	}
	return n
}

// forget drops an ended connection (conn.end).
func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	if c.key.pid != 0 && s.keys[c.key.pid] == c {
		delete(s.keys, c.key.pid)
	}
	s.mu.Unlock()
	s.wg.Done()
}

// Shutdown stops accepting, lets statements in flight finish until ctx is
// done (or Limits.ShutdownGrace when ctx has no deadline), and ends every
// session with 57P01: idle ones at once, busy ones when their statement
// completes or the deadline passes.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	for ln := range s.listeners {
		_ = ln.Close()
	}
	// Kept upstream sessions close now; sessions that end from here on
	// close theirs (put refuses them).
	s.reuse.close()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.drain()
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.limits.ShutdownGrace)
		defer cancel()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for c := range s.conns {
		c.stop(errShutdown)
	}
	s.mu.Unlock()
	// Stopped connections write their FATAL and close promptly; sockets
	// that do not drain are closed, and what sessions still wait on in
	// their setup (a credential request) is cancelled with the context.
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		s.cancel()
		s.mu.Lock()
		for c := range s.conns {
			c.closeSockets()
		}
		s.mu.Unlock()
		<-done
	}
	s.cancel()
	return ctx.Err()
}

// register gives c a fresh keyhole BackendKeyData.
func (s *Server) register(c *conn) error {
	var b [8]byte
	s.mu.Lock()
	defer s.mu.Unlock()
	for range 16 {
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("backend key: %w", err)
		}
		pid := binary.BigEndian.Uint32(b[:4]) & 0x7fffffff
		if r := s.cfg.Replica; r != 0 {
			pid = uint32(r&0x7f)<<24 | pid&0x00ffffff // replicas: see Config.Replica
		}
		if pid == 0 || s.keys[pid] != nil {
			continue
		}
		c.key = backendKey{pid: pid, secret: append([]byte(nil), b[4:]...)}
		s.keys[pid] = c
		return nil
	}
	return errors.New("backend key: no free pid")
}

// cancel forwards a client's CancelRequest to the upstream of the session
// the key belongs to. Unknown keys are ignored, as Postgres does.
func (s *Server) cancelRequest(pid uint32, secret []byte, log *slog.Logger) {
	s.mu.Lock()
	c := s.keys[pid]
	s.mu.Unlock()
	if c == nil && s.cfg.ForwardCancel != nil && s.cfg.Replica != 0 {
		// Replicas: a key of another replica goes to it (Config.Replica).
		if r := uint8(pid >> 24); r != 0 && r != s.cfg.Replica {
			s.cfg.ForwardCancel(r, pid, secret)
			return
		}
	}
	if c == nil || subtle.ConstantTimeCompare(c.key.secret, secret) != 1 {
		log.Info("cancel request with unknown key")
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	if err := c.cancelUpstream(ctx); err != nil {
		c.log.Warn("forward cancel request", "err", err)
		return
	}
	c.log.Info("cancel request forwarded upstream")
	log.Debug("cancel request forwarded", "target_session", c.id)
}

type backendKey struct {
	pid    uint32
	secret []byte
}
