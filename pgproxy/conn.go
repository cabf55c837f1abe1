package pgproxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// conn is one client connection and, after phase 4, its upstream session.
//
// Who touches what. Phases 1-4 run on the serve goroutine. In the relay
// (phase 5) the serve goroutine is the client goroutine (client.go: reads
// the client, decides, writes upstream); the upstream side (upstream.go:
// reads the upstream, writes the client, audits what ran) runs on the
// upstream goroutine while one runs (upReader), else on the client
// goroutine between its reads of the client (see relay.go). While an
// event loop relays the session (loop.go), both sides are the loop's
// goroutine and no other goroutine runs for it. Each field below is owned
// by one side unless it says otherwise; mu guards the few that cross, and
// is never held during blocking I/O, so stop and Shutdown never wait on a
// peer that does not read.
type conn struct {
	srv  *Server
	id   string
	log  *slog.Logger // its handler is logh
	logh connLog

	// Set before the relay and read-only during it.
	remoteIP   string
	remoteAddr string // for audit events
	// startupSlot counts the connection among those logging in until it
	// has authenticated (Server.logins); counted is set once it counts
	// among the logged-in sessions (Server.sessions).
	startupSlot             *identity.Login
	counted                 bool
	isTLS                   bool
	user, database, appName string
	params                  map[string]string // whitelisted session params passed upstream
	agent                   *identity.Agent
	role                    string
	upstream                Upstream
	upName                  string
	lease                   *creds.Lease
	// appPrefix is "keyhole:<agent>", the start of the upstream session's
	// application_name that the agent may not change.
	appPrefix string
	key       backendKey
	upRd      *msgReader

	// client is the agent's socket (the *tls.Conn after SSLRequest;
	// replaced under mu). wbuf gathers what is written to it until
	// flushClient: written by the serve goroutine before and after the
	// relay, by the upstream goroutine during it. On a loop, wbuf[:wsent]
	// is written already (the client could not take it all).
	client  net.Conn
	wbuf    []byte
	wsent   int
	wbufErr error // a message that could not be encoded; reported by flushClient

	// Client goroutine (the serve goroutine: phases 1-4, then readClient).
	clientRd *msgReader
	cmsgs    frontendMsgs
	authType uint32 // what a 'p' message answers
	upBuf    []byte // forwarded bytes, written upstream by flushUp
	staged   requestQueue
	stmts    nameTable[*prepared]
	portals  nameTable[*portal]
	// skipToSync: keyhole refused a message of this sync block; like the
	// server after an error, it discards the client's messages until Sync.
	skipToSync bool
	// purgeAt is the size of stmts or portals at which closed entries
	// are dropped.
	purgeAt int
	// syncs counts the Syncs forwarded so far.
	syncs uint64
	// agentChecked is clientRd.reads when checkAgent last found the agent
	// in good standing, and agentEpoch the decider's epoch then (0: none,
	// or a decider without epochs).
	agentChecked uint64
	agentEpoch   uint64

	// endsBlock: the last message forwarded was a Sync or a Query, so
	// the server answers everything sent without waiting for the client.
	endsBlock bool

	// Upstream side.
	up upstreamState

	// mu guards these.
	mu sync.Mutex
	// sent holds requests the client goroutine forwarded and the
	// upstream goroutine has not taken yet.
	sent     requestQueue
	upConn   net.Conn // set in phase 4
	upPID    uint32
	upKey    []byte
	txStatus byte // from the latest ReadyForQuery
	prepOnly bool // the last sync block only prepared a statement
	stopped  bool
	stopErr  error
	// saidBye is set once the client left and keyhole passed Terminate
	// on: the upstream's EOF that follows is the end keyhole asked for.
	saidBye  bool
	draining bool
	// stopCh is closed by stop: it ends waits that are not socket I/O.
	stopCh chan struct{}
	// idleTimer runs idleCheck; nil without an idle timeout.
	idleTimer *time.Timer
	// ev is the loop session while an event loop owns the sockets
	// (loop.go); nil while goroutines relay. Set and cleared under mu.
	ev *loopSess
	// socksClosed: closeSockets ran; sockets a loop hands back are closed
	// at once.
	socksClosed bool
	// upReader: an upstream goroutine runs (it owns the upstream side);
	// upDone is closed when the last one started has ended.
	upReader bool
	upDone   chan struct{}

	// Both relay goroutines and the idle timer, without a lock.
	// inflight counts requests forwarded and not yet answered (the
	// upstream goroutine publishes answers when its queue runs empty).
	inflight atomic.Int64
	// lastActive is when the client last sent bytes or was last answered
	// everything (monoNow): what the idle timeout measures.
	lastActive atomic.Int64
	copyIn     atomic.Bool // the upstream is in COPY FROM STDIN
	// copyEnds counts the CopyDone and CopyFail messages the client
	// goroutine forwarded; each request carries the count it was staged
	// at (request.copyEnd).
	copyEnds atomic.Uint64
	// copyOpened is 1 + the copyEnd of the newest COPY FROM STDIN the
	// server started (0: none, or no staged request can still be sent
	// inside it); under mu. See flushUpTo.
	copyOpened uint64
	// cancelHold is open while the upstream goroutine cancels a statement
	// past max_rows; the client goroutine writes nothing upstream until
	// it is closed (holdForCancel); under mu.
	cancelHold chan struct{}
	// clientDead: a write to the client failed; its answers are dropped
	// while the upstream's outcome is still read for the audit.
	clientDead atomic.Bool
	// waiting: the client goroutine waits (in settle) for the upstream
	// goroutine to learn the fate of a statement or portal; resolved
	// wakes it after each upstream message.
	waiting  atomic.Bool
	resolved chan struct{}

	// sessMu guards session: Check runs on the client goroutine, Apply on
	// the upstream goroutine.
	sessMu  sync.Mutex
	session sqlpolicy.Session

	// The relay, whichever goroutine or loop runs it.
	started time.Time
	// loopable: both sockets are plain TCP and the server relays such
	// sessions on loops.
	loopable bool
	// unwatch ends what watch started.
	unwatch func()
	// cancelling is closed when the cancel of a max_rows cut that a loop
	// started has landed; the client is not read before.
	cancelling chan struct{}

	// Upstream session reuse (reuse.go), set in phase 4 when it is on:
	// the key the session logs in under, what the client was greeted
	// with, the session probe's row, and when the backend logged in.
	reuseKey reuseKey
	greeting []byte
	probeRow [][]byte
	upBorn   time.Time
	// cancels counts cancel requests being forwarded to the upstream
	// (cancelUpstream); Add under mu while upPID is set.
	cancels sync.WaitGroup
}

func (s *Server) newConn(nc net.Conn) *conn {
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	addr := nc.RemoteAddr().String()
	ip := ""
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		ip = a.IP.String()
	} else if h, _, err := net.SplitHostPort(addr); err == nil {
		ip = h
	}
	c := &conn{
		srv:        s,
		id:         id,
		client:     nc,
		remoteIP:   ip,
		remoteAddr: addr,
		txStatus:   'I',
		// Nothing forwarded yet: the server is between blocks.
		endsBlock: true,
		purgeAt:   64,
		session:   s.cfg.Decider.NewSession(),
		stopCh:    make(chan struct{}),
		resolved:  make(chan struct{}, 1),
	}
	c.logh = connLog{c: c, h: s.log.Handler()}
	c.log = slog.New(&c.logh)
	return c
}

// connLog is the handler of a session's logger: the server's, adding the
// session's attributes (session, client, and once known user, agent and
// role) to each record it writes. A logger derived with With per session
// and per phase would copy the handler and format the attributes up front,
// garbage for every session and a few hundred bytes kept by every idle
// one, for lines that at the default level are mostly not written. The
// fields it reads are set before the relay and read-only during it.
type connLog struct {
	c *conn
	h slog.Handler
}

func (l *connLog) Enabled(ctx context.Context, level slog.Level) bool {
	return l.h.Enabled(ctx, level)
}

func (l *connLog) Handle(ctx context.Context, r slog.Record) error {
	c := l.c
	r.AddAttrs(slog.String("session", c.id), slog.String("client", c.remoteAddr))
	if c.user != "" {
		r.AddAttrs(slog.String("user", c.user))
	}
	if c.agent != nil {
		r.AddAttrs(slog.String("agent", c.agent.Name), slog.String("role", c.role))
	}
	return l.h.Handle(ctx, r)
}

func (l *connLog) WithAttrs(as []slog.Attr) slog.Handler {
	return &connLog{c: l.c, h: l.h.WithAttrs(as)}
}

func (l *connLog) WithGroup(name string) slog.Handler {
	return &connLog{c: l.c, h: l.h.WithGroup(name)}
}

// serve runs the connection's phases. It never panics: a panic ends only
// this connection.
//
// The goroutine relay runs below this frame until the session ends or
// moves to an event loop (then this goroutine ends), and an idle session
// on it is mostly its goroutine's stack, which the garbage collector
// halves only while less than a quarter of it is in use. So the audit
// events and the rest of the bookkeeping are built in opened and closed,
// not in this frame.
//
// ctx is the server's: Shutdown cancels it and closes the sockets of the
// sessions still open, which unblocks any read (no context or watcher of
// the session's own: an idle session would keep them).
func (c *conn) serve(ctx context.Context) {
	c.started = time.Now()
	if err := c.run(ctx); err != nil {
		c.end(err)
		return
	}
	c.startRelay()
	c.relay(nil)
}

// end sends the client the error that ended the session, audits the close
// and forgets the connection; whichever goroutine the session ends on
// calls it, once.
func (c *conn) end(err error) {
	if c.unwatch != nil {
		c.unwatch()
	}
	c.mu.Lock()
	t := c.idleTimer
	c.mu.Unlock()
	if t != nil {
		t.Stop()
	}
	c.closed(err, c.started)
	c.closeSockets()
	c.startupSlot.Done()
	if c.counted {
		c.srv.sessions.Release(c.agent.Name)
	}
	c.srv.forget(c)
}

// opened counts the new connection among those logging in and audits it.
func (c *conn) opened() {
	c.srv.metricsOpened()
	c.record(audit.Event{Kind: audit.KindConnect})
	c.log.Debug("connection accepted")
	c.startupSlot = c.srv.logins.Admit(c.remoteIP, func() {
		if m, ok := c.srv.cfg.Metrics.(LoginGateMetrics); ok {
			m.LoginDropped(protocolName)
		}
		c.stop(errLoginsCrowded())
	})
}

// errLoginsCrowded ends a connection the login gate dropped.
func errLoginsCrowded() error {
	return fatal(codeTooManyConnections, "too many connections are logging in; try again", nil)
}

// loggedIn moves an authenticated connection from the connections
// logging in to the sessions, which MaxConns and MaxPerAgent bound.
func (c *conn) loggedIn() error {
	if !c.startupSlot.Done() {
		return errLoginsCrowded() // dropped while it authenticated
	}
	// Postgres refuses with these right after the startup packet (the
	// second for a role's CONNECTION LIMIT); keyhole knows whether a
	// connection counts only once its agent has authenticated, where every
	// client expects an ErrorResponse too.
	switch c.srv.sessions.Take(c.agent.Name) {
	case identity.TooManySessions:
		return fatal(codeTooManyConnections, "sorry, too many clients already", nil)
	case identity.TooManyAgentSessions:
		return fatal(codeTooManyConnections, fmt.Sprintf("too many connections for agent %q (limits.max_conns_per_agent)", c.agent.Name), nil)
	}
	c.counted = true
	return nil
}

// panicked logs a recovered panic with its stack and returns the
// session's error for it.
func (c *conn) panicked(what string, r any) error {
	c.log.Error(what, "panic", r, "stack", string(debug.Stack()))
	return fatal(codeInternalError, "internal error", fmt.Errorf("panic: %v", r))
}

// closed sends the client the error that ended the connection (err, or
// what stopped it) and audits the close.
func (c *conn) closed(err error, started time.Time) {
	if se := c.stopError(); se != nil {
		err = se
	}
	c.finish(err)
	if c.clientRd != nil {
		c.clientRd.release()
	}
	c.srv.metricsClosed()
	ev := audit.Event{Kind: audit.KindClose, DurationMS: msSince(started)}
	if resp := wireError(err); resp != nil {
		ev.ErrorCode, ev.Error = resp.Code, resp.Message
	}
	c.record(ev)
}

// run runs phases 1-4 on a goroutine of their own, so that their deep
// stacks (TLS handshake, SCRAM, pgconn's login) end with that goroutine
// and the session's one long-lived goroutine, on which serve then runs
// the relay, stays small: an idle session is mostly that goroutine's
// stack. The connection is counted and audited (opened) there too: the
// metrics' label lookup alone grew serve's stack. A panic in the setup
// ends only this connection.
func (c *conn) run(ctx context.Context) error {
	var err error
	done := make(chan struct{})
	go func() {
		growStack() // the deep stacks above
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				err = c.panicked("panic in connection setup", r)
			}
		}()
		c.opened()
		err = c.setup(ctx)
	}()
	<-done
	return err
}

// setup runs phases 1-4.
func (c *conn) setup(ctx context.Context) error {
	deadline := time.Now().Add(c.srv.limits.StartupTimeout)
	if err := c.setClientDeadline(deadline); err != nil {
		return err
	}
	if err := c.startup(ctx); err != nil {
		return err
	}
	if err := c.authenticate(ctx, deadline); err != nil {
		return err
	}
	if err := c.loggedIn(); err != nil {
		return err
	}
	// Authenticated: the configured message size applies from here on.
	c.clientRd.maxBody = c.srv.limits.MaxMessageSize
	if err := c.credentials(ctx, deadline); err != nil {
		return err
	}
	if err := c.dialUpstream(ctx, deadline); err != nil {
		return err
	}
	return c.setClientDeadline(time.Time{})
}

// setClientDeadline sets the client socket's deadline unless the
// connection was stopped, whose deadline must stand.
func (c *conn) setClientDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return c.stopErr
	}
	_ = c.client.SetDeadline(t)
	return nil
}

// finish sends the client the one error that ended the connection.
func (c *conn) finish(err error) {
	resp := wireError(err)
	switch {
	case resp != nil:
		c.log.Info("connection ended", "code", resp.Code, "err", err)
		if c.clientDead.Load() {
			break
		}
		_ = c.client.SetWriteDeadline(time.Now().Add(time.Second))
		c.send(resp)
		_ = c.flushClient()
	case err != nil && !errors.Is(err, errClientGone):
		c.log.Info("connection ended", "err", err)
	default:
		c.log.Debug("connection closed")
	}
	if c.lease != nil {
		c.lease.Release()
	}
}

// closeSockets closes the session's sockets. While a loop owns them it
// does nothing: the loop is handing the session to a goroutine already
// (stop was called first), which closes them when it takes them.
func (c *conn) closeSockets() {
	c.mu.Lock()
	c.socksClosed = true
	client, up, onLoop := c.client, c.upConn, c.ev != nil
	c.mu.Unlock()
	if onLoop {
		return
	}
	_ = client.Close()
	if up != nil {
		_ = up.Close()
	}
}

// stop ends the connection from outside its goroutines (revoked lease,
// expiry, shutdown, idle timeout) or when one relay direction ends: it
// records err as the connection's error, closes the upstream and unblocks
// the client read so serve can send err and close.
func (c *conn) stop(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	c.stopped = true
	c.stopErr = err
	close(c.stopCh)
	if c.inflight.Load() > 0 && c.upPID != 0 {
		// Closing the socket does not stop a running statement (Postgres
		// notices a gone client only when it next writes); cancel it.
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := c.cancelUpstream(ctx); err != nil {
				c.log.Warn("cancel upstream statement of ended session", "err", err)
			}
		}()
	}
	if s := c.ev; s != nil {
		// The loop hands the session to a goroutine to end it, which
		// then stops its sockets (stopSocketsLocked).
		s.stopReq.Store(true)
		s.l.Post(s.stopped)
		return
	}
	c.stopSocketsLocked()
}

// stopSocketsLocked closes the upstream and unblocks the client read of a
// stopped session; the caller holds mu.
func (c *conn) stopSocketsLocked() {
	if c.upConn != nil {
		_ = c.upConn.Close()
	}
	_ = c.client.SetReadDeadline(time.Now())
	// A client that does not read must not hold the relay open.
	_ = c.client.SetWriteDeadline(time.Now().Add(time.Second))
}

func (c *conn) stopError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopErr
}

// idleLocked reports whether the session is between statements and
// outside a transaction, where a draining session may end.
func (c *conn) idleLocked() bool {
	return c.inflight.Load() == 0 && c.txStatus == 'I' && !c.prepOnly
}

// drain ends the session now if it is idle (or still starting up), else
// when the statement or transaction in flight completes.
func (c *conn) drain() {
	c.mu.Lock()
	c.draining = true
	idle := c.idleLocked() || c.upConn == nil
	c.mu.Unlock()
	if idle {
		c.stop(errShutdown)
		return
	}
	c.log.Info("draining: the session ends when its statement or transaction completes")
}

// --- phase 2: authenticate ---

var (
	// errTLSRequired: a cleartext password (a token) over a remote
	// connection without TLS would expose it on the network.
	errTLSRequired = errors.New("cleartext password over a non-TLS remote connection")
	// errAttemptAbandoned ends a limited attempt that tested no guess.
	errAttemptAbandoned = errors.New("authentication attempt abandoned")
)

// authenticate identifies the agent. A failure is recorded and converted
// once, by authError, into the client's error.
func (c *conn) authenticate(ctx context.Context, deadline time.Time) error {
	agent, method, err := c.verify(ctx, deadline)
	var pe *pgError
	if errors.As(err, &pe) || errors.Is(err, errClientGone) {
		// A protocol violation or a client that left: no credential was
		// judged.
		return err
	}
	if err == nil && agent == nil {
		err = identity.NewAuthError(identity.ReasonCredentials, errors.New("no agent"))
	}
	if err == nil {
		role, upName, ok := c.srv.cfg.Decider.Role(agent.Name)
		if !ok {
			// An agent the policy does not know fails like a wrong
			// credential, so a connection never tells which names the
			// policy has.
			err = identity.NewAuthError(identity.ReasonCredentials, fmt.Errorf("agent %q is not in the policy", agent.Name))
		} else {
			c.mu.Lock() // EndTokens reads agent from another goroutine
			c.agent, c.role, c.upName = agent, role, upName
			c.mu.Unlock()
		}
	}
	if err != nil {
		c.authFailed(method, err)
		return authError(c.user, err)
	}
	c.log.Info("agent authenticated", "method", method)
	c.record(audit.Event{Kind: audit.KindAuthOK, AuthMethod: string(method)})
	return nil
}

// verify runs the authentication method the client's connection calls
// for. Only SCRAM, whose secret can be guessed, goes through the limiter:
// a token's signature cannot be guessed, so a valid token is let in
// whatever failures came from its address before.
func (c *conn) verify(ctx context.Context, deadline time.Time) (*identity.Agent, identity.Method, error) {
	auth := c.srv.cfg.Auth
	if cert := c.spiffeCert(); cert != nil {
		agent, err := auth.Certificate(c.user, cert)
		return agent, identity.MethodMTLS, err
	}
	if conv, ok := auth.SCRAM(c.user); ok {
		ctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		attempt, err := c.srv.fails.Begin(ctx, c.remoteIP, c.user)
		if err != nil {
			return nil, identity.MethodSCRAM, err
		}
		// Ended whatever happens: a panic must neither count as a success
		// nor hold the attempt in flight for good.
		result := errAttemptAbandoned
		defer func() { attempt.Done(result) }()
		agent, err := c.scram(conv)
		result = err
		return agent, identity.MethodSCRAM, err
	}
	if !c.isTLS && !isLoopback(c.remoteIP) {
		return nil, identity.MethodToken, errTLSRequired
	}
	agent, err := c.cleartext()
	return agent, identity.MethodToken, err
}

// authError is the one ErrorResponse for a failed authentication:
// Postgres's 28P01 wording, followed for a token by what was wrong with
// it (identity.Reason's client text, never a secret, never whether an
// agent exists); 28000 for a lockout, a certificate, and a password
// refused in the clear; 08P01 for a malformed SCRAM message.
func authError(user string, err error) *pgError {
	failed := fmt.Sprintf("password authentication failed for user %q", user)
	if errors.Is(err, errTLSRequired) {
		return fatal(codeInvalidAuthSpec, "keyhole requires TLS for password authentication", err)
	}
	var ae *identity.AuthError
	if !errors.As(err, &ae) {
		return fatal(codeInvalidPassword, failed, err)
	}
	var e *pgError
	switch ae.Reason {
	case identity.ReasonCredentials:
		e = fatal(codeInvalidPassword, failed, err)
	case identity.ReasonRateLimited:
		e = fatal(codeInvalidAuthSpec, fmt.Sprintf("authentication refused for user %q: %s", user, ae.ClientMessage()), err)
	case identity.ReasonCertificate:
		e = fatal(codeInvalidAuthSpec, fmt.Sprintf("certificate authentication failed for user %q: %s", user, ae.ClientMessage()), err)
	case identity.ReasonSCRAMProtocol:
		e = fatal(codeProtocolViolation, ae.ClientMessage(), err)
	default:
		e = fatal(codeInvalidPassword, failed+": "+ae.ClientMessage(), err)
	}
	e.hint = ae.Reason.Hint()
	return e
}

// authFailed logs, counts and audits a failed authentication. err's text
// is identity's detail: it never holds a token or secret.
func (c *conn) authFailed(method identity.Method, err error) {
	if m := c.srv.cfg.Metrics; m != nil {
		m.AuthFailed(protocolName)
	}
	c.log.Warn("authentication failed", "method", method, "err", err)
	c.record(audit.Event{Kind: audit.KindAuthFailed, AuthMethod: string(method), Agent: c.user, Error: err.Error()})
}

// spiffeCert returns the verified client certificate if it carries a
// SPIFFE URI SAN.
func (c *conn) spiffeCert() *x509.Certificate {
	tc, ok := c.client.(*tls.Conn)
	if !ok {
		return nil
	}
	st := tc.ConnectionState()
	if len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return nil
	}
	cert := st.PeerCertificates[0]
	for _, u := range cert.URIs {
		if strings.EqualFold(u.Scheme, "spiffe") {
			return cert
		}
	}
	return nil
}

func (c *conn) receiveAuth() (pgproto3.FrontendMessage, error) {
	if err := c.flushClient(); err != nil {
		return nil, fmt.Errorf("send auth request: %w", errClientGone)
	}
	typ, raw, err := c.clientRd.next()
	var msg pgproto3.FrontendMessage
	if err == nil {
		msg, err = c.cmsgs.decode(typ, raw[5:], c.authType)
	}
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("client left during authentication: %w", errClientGone)
		}
		return nil, fatal(codeProtocolViolation, "invalid authentication message", err)
	}
	return msg, nil
}

func (c *conn) cleartext() (*identity.Agent, error) {
	c.send(&pgproto3.AuthenticationCleartextPassword{})
	c.authType = pgproto3.AuthTypeCleartextPassword
	msg, err := c.receiveAuth()
	if err != nil {
		return nil, err
	}
	pm, ok := msg.(*pgproto3.PasswordMessage)
	if !ok {
		return nil, fatal(codeProtocolViolation, fmt.Sprintf("expected password response, got %T", msg), nil)
	}
	return c.srv.cfg.Auth.Token(c.user, pm.Password)
}

func (c *conn) scram(conv identity.SCRAMConversation) (*identity.Agent, error) {
	const mech = "SCRAM-SHA-256"
	c.send(&pgproto3.AuthenticationSASL{AuthMechanisms: []string{mech}})
	c.authType = pgproto3.AuthTypeSASL
	msg, err := c.receiveAuth()
	if err != nil {
		return nil, err
	}
	init, ok := msg.(*pgproto3.SASLInitialResponse)
	if !ok {
		return nil, fatal(codeProtocolViolation, fmt.Sprintf("expected SASL initial response, got %T", msg), nil)
	}
	if init.AuthMechanism != mech {
		return nil, fatal(codeProtocolViolation, "client selected an invalid SASL authentication mechanism", nil)
	}
	data := slices.Clone(init.Data)
	for range 4 {
		reply, done, err := conv.Step(data)
		if err != nil {
			return nil, err
		}
		if done {
			c.send(&pgproto3.AuthenticationSASLFinal{Data: reply})
			return conv.Agent(), nil
		}
		c.send(&pgproto3.AuthenticationSASLContinue{Data: reply})
		c.authType = pgproto3.AuthTypeSASLContinue
		msg, err := c.receiveAuth()
		if err != nil {
			return nil, err
		}
		r, ok := msg.(*pgproto3.SASLResponse)
		if !ok {
			return nil, fatal(codeProtocolViolation, fmt.Sprintf("expected SASL response, got %T", msg), nil)
		}
		data = slices.Clone(r.Data)
	}
	return nil, fatal(codeProtocolViolation, "SCRAM exchange did not finish", nil)
}

func isLoopback(ip string) bool {
	a := net.ParseIP(ip)
	return a != nil && a.IsLoopback()
}

// --- audit and metrics ---

// record audits ev with the session's fields, stamped now unless the
// caller stamped it (a statement's event is stamped when its duration
// ends: one clock read for both).
func (c *conn) record(ev audit.Event) {
	r := c.srv.cfg.Audit
	if r == nil {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	ev.Session = c.id
	ev.Protocol = protocolName
	ev.Client = c.remoteAddr
	if ev.Agent == "" && c.agent != nil {
		ev.Agent = c.agent.Name
	}
	if ev.Role == "" {
		ev.Role = c.role
	}
	if ev.Database == "" {
		ev.Database = c.database
	}
	r.Record(ev)
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

// clockStart is where monoNow counts from.
var clockStart = time.Now()

// monoNow reads the monotonic clock, in nanoseconds since clockStart: one
// clock read where time.Now makes two (wall and monotonic). The idle
// timeout's activity stamps use it, taken twice per round trip, and a
// step of the wall clock does not move them.
func monoNow() int64 { return int64(time.Since(clockStart)) }

func msSince(t time.Time) float64 { return msBetween(t, time.Now()) }

// msBetween is the time from t to now in milliseconds, to the microsecond.
func msBetween(t, now time.Time) float64 { return float64(now.Sub(t).Microseconds()) / 1000 }

// growStack grows the calling goroutine's stack to 16 KiB in one step, at
// a goroutine's start, where the copy is one frame. A goroutine starts
// with the runtime's average stack size (a few KiB here: most of keyhole's
// goroutines are small) and doubles it whenever a call needs more, each
// time copying the stack and adjusting every frame on it: a session's
// set-up (login, upstream dial, audit, metrics) and its end (the upstream
// session's reset) grew their goroutines three or four times, 8 % of
// keyhole's CPU for a client that connects for one statement (perf,
// pgbench -C). 16 KiB is the largest size the runtime takes from its
// per-P stack caches (a 32 KiB stack is a heap span). Only for goroutines
// that end with their work: the session's long-lived one stays small.
//
//go:noinline
func growStack() {
	var pad [stackPad]byte
	touchPad(&pad)
}

// stackPad is growStack's frame: with the runtime's stack guard and the
// bytes in use it asks for a 16 KiB stack.
const stackPad = 14 << 10

// touchPad keeps growStack's frame: the compiler cannot drop an array
// whose address a call takes (and, as touchPad keeps no reference, the
// array does not escape to the heap).
//
//go:noinline
func touchPad(p *[stackPad]byte) byte { return p[0] }
