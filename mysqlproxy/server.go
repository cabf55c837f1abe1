package mysqlproxy

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/internal/membudget"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// Config configures a Server.
type Config struct {
	// TLS offers CLIENT_SSL when set. For mTLS set ClientAuth to
	// tls.VerifyClientCertIfGiven and ClientCAs.
	TLS *tls.Config
	// Decider decides every statement; its sessions must be the MySQL
	// analyzer's.
	Decider sqlpolicy.Decider
	// Auth checks agent tokens and certificates; when it also implements
	// identity.MySQLAuthenticator, agents with a stored MySQL verifier log
	// in with their secret.
	Auth  identity.Authenticator
	Creds creds.Source
	// Upstreams by name (the role's upstream); "" is the default used when
	// the role's name is missing.
	Upstreams map[string]Upstream
	// Limiter limits guessing of agent secrets per (address, agent); one
	// is shared by every front end. nil = a private one with the defaults.
	Limiter *identity.Limiter
	Audit   audit.Recorder // nil = none
	Metrics Metrics        // nil = none
	Logger  *slog.Logger   // nil = slog.Default()
	Limits  Limits
	// RawStatements audits raw SQL instead of the Decider.Redact text.
	RawStatements bool
	// RSAKey answers caching_sha2_password public key requests (a token
	// sent without TLS, from loopback only). RSA-OAEP-SHA1 carries at most
	// size/8-42 bytes: 470 with 4096 bits, enough for keyhole's tokens but
	// not every external issuer's (send those over TLS). nil = a 4096-bit
	// key generated in the background by New.
	RSAKey *rsa.PrivateKey
	// Relay is how sessions are relayed once set up: RelayLoop (the
	// default, "") or RelayGoroutine.
	Relay Relay
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

// Upstream is a MySQL or MariaDB server keyhole connects to.
type Upstream struct {
	Addr string // host:port
	// Database is the database a session starts in when the client names
	// none; "" = none.
	Database string
	// Databases, when set, are the only databases a client may name at
	// connect or select with COM_INIT_DB (USE in SQL text is the policy's
	// to decide). Empty = any database the policy allows.
	Databases []string
	TLS       *tls.Config // nil = no TLS
}

// Limits bound resource use. Zero values mean the defaults noted.
type Limits struct {
	MaxConns int // 0 = 1000 concurrent logged-in sessions (then 1040)
	// MaxStartups bounds the connections still logging in; past it the
	// oldest login of the source holding the most is dropped (see
	// identity.LoginGate). 0 = 256.
	MaxStartups    int
	MaxPerAgent    int           // 0 = no bound on one agent's sessions but MaxConns
	StartupTimeout time.Duration // 0 = 10s from accept to the client's OK packet
	// IdleTimeout ends, with 4031, a session that has sent nothing for
	// this long between commands (in a transaction or not); 0 =
	// config.DefaultIdleTimeout, negative = never.
	IdleTimeout time.Duration
	// MaxPacketSize bounds one client command, all its packets together
	// (the client's max_allowed_packet); 0 = 64 MiB. Before
	// authentication every packet is bounded by 16 KiB instead.
	MaxPacketSize int
	// BufferMemory bounds the bytes all client connections together may
	// hold for commands larger than 64 KiB: a command reserves its size
	// (a command split over several packets, whose total is not announced,
	// reserves MaxPacketSize) before its bytes are read, and waits for
	// room (up to 10s, then the session ends with 1041). 0 = 4 ×
	// MaxPacketSize; it must be at least MaxPacketSize.
	BufferMemory int64
	// ShutdownGrace bounds Shutdown when its context has no deadline; 0 = 30s.
	ShutdownGrace time.Duration
	// DialTimeout bounds connecting to the upstream (and its capability
	// probe and KILL QUERY side connections); 0 = 5s.
	DialTimeout time.Duration
	// MaxPrepared bounds the prepared statements (COM_STMT_PREPARE) one
	// session holds; past it a prepare is refused with 1461 (42000) and
	// the session goes on. 0 = 10000. (The server's own
	// max_prepared_stmt_count is one bound for all sessions together.)
	MaxPrepared int
}

// DefaultMaxPrepared is Limits.MaxPrepared's default.
const DefaultMaxPrepared = 10000

// withDefaults fills zeros with the defaults of keyhole.yaml's limits
// (package config, their one home); DialTimeout is this package's own.
func (l Limits) withDefaults() Limits {
	if l.MaxConns <= 0 {
		l.MaxConns = config.DefaultMaxConns
	}
	if l.MaxPrepared <= 0 {
		l.MaxPrepared = DefaultMaxPrepared
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
	if l.MaxPacketSize <= 0 {
		l.MaxPacketSize = config.DefaultMaxMessageSize
	}
	if l.BufferMemory <= 0 {
		l.BufferMemory = config.DefaultBufferMemory(l.MaxPacketSize)
	}
	if l.ShutdownGrace <= 0 {
		l.ShutdownGrace = config.DefaultShutdownGrace
	}
	if l.DialTimeout <= 0 {
		l.DialTimeout = defaultDialTimeout
	}
	return l
}

// defaultDialTimeout is Limits.DialTimeout's default.
const defaultDialTimeout = 5 * time.Second

// Server accepts MySQL client connections and relays them upstream.
type Server struct {
	cfg    Config
	limits Limits
	relay  Relay
	log    *slog.Logger
	fails  *identity.Limiter
	// logins bounds the connections still logging in (MaxStartups).
	logins *identity.LoginGate
	mysql  identity.MySQLAuthenticator // nil when Auth holds no MySQL verifiers
	// buffers is the memory budget of client commands (Limits.BufferMemory).
	buffers *membudget.Budget

	ctx    context.Context // parent of every connection; cancelled last in Shutdown
	cancel context.CancelFunc

	rsaReady chan struct{} // closed once rsaKey/rsaPEM/rsaErr are set
	rsaKey   *rsa.PrivateKey
	rsaPEM   []byte
	rsaErr   error

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	ids       map[uint32]*conn // keyhole connection id → connection
	draining  bool
	wg        sync.WaitGroup
	// sessions counts the logged-in sessions (MaxConns, MaxPerAgent).
	sessions *identity.Sessions

	upMu sync.Mutex
	ups  map[string]*upstreamInfo // what each upstream's greeting said
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("mysqlproxy: server closed")

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Decider == nil:
		return nil, errors.New("mysqlproxy: Config.Decider is required")
	case cfg.Auth == nil:
		return nil, errors.New("mysqlproxy: Config.Auth is required")
	case cfg.Creds == nil:
		return nil, errors.New("mysqlproxy: Config.Creds is required")
	case len(cfg.Upstreams) == 0:
		return nil, errors.New("mysqlproxy: Config.Upstreams is empty")
	}
	for name, u := range cfg.Upstreams {
		if _, _, err := net.SplitHostPort(u.Addr); err != nil {
			return nil, fmt.Errorf("mysqlproxy: upstream %q: address %q: %w", name, u.Addr, err)
		}
	}
	limits := cfg.Limits.withDefaults()
	relay := cfg.Relay
	switch relay {
	case "":
		relay = RelayLoop
	case RelayLoop, RelayGoroutine:
	default:
		return nil, fmt.Errorf("mysqlproxy: Config.Relay %q is not %q or %q", relay, RelayLoop, RelayGoroutine)
	}
	if limits.BufferMemory < int64(limits.MaxPacketSize) {
		return nil, fmt.Errorf("mysqlproxy: Limits.BufferMemory %d is less than MaxPacketSize %d", limits.BufferMemory, limits.MaxPacketSize)
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
	s := &Server{
		cfg:       cfg,
		limits:    limits,
		relay:     relay,
		buffers:   membudget.New(limits.BufferMemory),
		log:       log.With("component", "mysqlproxy"),
		fails:     fails,
		logins:    identity.NewLoginGate(limits.MaxStartups),
		sessions:  identity.NewSessions(limits.MaxConns, limits.MaxPerAgent),
		ctx:       ctx,
		cancel:    cancel,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
		ids:       make(map[uint32]*conn),
		ups:       make(map[string]*upstreamInfo),
	}
	if m, ok := cfg.Auth.(identity.MySQLAuthenticator); ok {
		s.mysql = m
	}
	s.rsaReady = make(chan struct{})
	if cfg.RSAKey != nil {
		s.rsaKey, s.rsaPEM = cfg.RSAKey, publicKeyPEM(cfg.RSAKey)
		close(s.rsaReady)
	} else {
		go func() {
			// A 4096-bit key takes a second or more to find.
			k, err := rsa.GenerateKey(rand.Reader, 4096)
			if err != nil {
				s.rsaErr = fmt.Errorf("generate RSA key: %w", err)
			} else {
				s.rsaKey, s.rsaPEM = k, publicKeyPEM(k)
			}
			close(s.rsaReady)
		}()
	}
	return s, nil
}

// Serve accepts connections on ln until Shutdown or Close (then it
// returns ErrServerClosed) or an accept error.
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
			return fmt.Errorf("mysqlproxy: accept: %w", err)
		}
		backoff = 0
		s.mu.Lock()
		if s.draining {
			s.mu.Unlock()
			_ = nc.Close()
			continue
		}
		c := s.newConnLocked(nc)
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go c.serve(s.ctx)
	}
}

// connDone forgets a connection that ended (conn.end).
func (s *Server) connDone(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	if s.ids[c.connID] == c {
		delete(s.ids, c.connID)
	}
	s.mu.Unlock()
	s.wg.Done()
}

// newConnLocked gives the connection a keyhole connection id (the
// greeting's, what CONNECTION_ID() would be to a client of a plain server)
// unique among the server's live connections.
func (s *Server) newConnLocked(nc net.Conn) *conn {
	var id uint32
	var b [4]byte
	for id == 0 || s.ids[id] != nil {
		_, _ = rand.Read(b[:])
		id = binary.LittleEndian.Uint32(b[:]) & 0x7fffffff
	}
	c := s.newConn(nc, id)
	s.ids[id] = c
	return c
}

// Shutdown stops accepting, lets statements in flight finish until ctx is
// done (or Limits.ShutdownGrace when ctx has no deadline), and ends every
// session with 1053: idle ones at once, busy ones when their command (or
// open transaction) completes or the deadline passes.
func (s *Server) Shutdown(ctx context.Context) error {
	conns := s.closeListeners()
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
	s.stopAll(errShutdown, done)
	return ctx.Err()
}

// Close ends every session at once with 1053 and stops accepting.
func (s *Server) Close() error {
	s.closeListeners()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	s.stopAll(errShutdown, done)
	return nil
}

func (s *Server) closeListeners() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.draining = true
	for ln := range s.listeners {
		_ = ln.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	return conns
}

// stopAll stops every connection with err and waits for them (done); the
// sockets of connections that do not finish promptly are closed by
// cancelling their contexts.
func (s *Server) stopAll(err error, done <-chan struct{}) {
	s.mu.Lock()
	for c := range s.conns {
		c.stop(err)
	}
	s.mu.Unlock()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		s.cancel()
		<-done
	}
	s.cancel()
}

// RevokeAgent ends every session of agent now (1045, "access revoked"),
// e.g. when its token or secret is revoked or it leaves the policy. It
// returns how many sessions it ended.
func (s *Server) RevokeAgent(agent string) int {
	return s.endSessions(func(a *identity.Agent) bool { return a.Name == agent }, errAgentRevoked)
}

// EndTokens ends every session whose agent logged in with a token whose
// id (jti) is in revoked (1045, "the agent token has been revoked"): a
// token revoked after a session began no longer speaks through it. It
// returns how many sessions it ended.
func (s *Server) EndTokens(revoked map[string]bool) int {
	if len(revoked) == 0 {
		return 0
	}
	return s.endSessions(func(a *identity.Agent) bool { return a.TokenID != "" && revoked[a.TokenID] }, errTokenRevoked)
}

// EndSecrets ends the sessions that logged in with a MySQL secret of an
// agent whose verifier changes.MySQL names (1045): a secret is rotated
// because it leaked, and what it opened must not outlive it.
func (s *Server) EndSecrets(changes identity.SecretChanges) int {
	if len(changes.MySQL) == 0 {
		return 0
	}
	return s.endSessions(func(a *identity.Agent) bool {
		return (a.Method == identity.MethodMySQLNative || a.Method == identity.MethodMySQLSHA2) && changes.MySQL[a.Name]
	}, errSecretChanged)
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

// rsa returns the key for caching_sha2_password public key requests,
// waiting for New's background generation if needed.
func (s *Server) rsa(ctx context.Context) (*rsa.PrivateKey, []byte, error) {
	select {
	case <-s.rsaReady:
		return s.rsaKey, s.rsaPEM, s.rsaErr
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

func (s *Server) metricsOpened() {
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.ConnectionOpened(protocolName)
	}
}

func (s *Server) metricsClosed() {
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.ConnectionClosed(protocolName)
	}
}

const protocolName = "mysql"
