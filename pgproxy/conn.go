package pgproxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// Startup packet codes (protocol.sgml).
const (
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	cancelRequestCode = 80877102
	maxStartupPacket  = 10000
)

// conn is one client connection and, after phase 4, its upstream session.
type conn struct {
	srv *Server
	id  string
	log *slog.Logger

	// client is the agent's socket (the *tls.Conn after SSLRequest);
	// clientRd reads its messages after the startup packet, and wbuf
	// (under wmu) gathers what is written to it until flushClient.
	client     net.Conn
	clientRd   *msgReader
	cmsgs      frontendMsgs
	authType   uint32 // what a 'p' message answers
	wbuf       []byte
	wbufErr    error // a message that could not be encoded; reported by flushClient
	remoteIP   string
	remoteAddr string // for audit events
	isTLS      bool

	// Startup values.
	user, database, appName string
	params                  map[string]string // whitelisted session params passed upstream

	agent    *identity.Agent
	role     string
	upstream Upstream
	upName   string
	lease    *creds.Lease

	// upstream side, after hijack. upRd is read by the upstream goroutine;
	// upBuf gathers what the client goroutine forwards until flushUpstream.
	upConn net.Conn
	upRd   *msgReader
	upBuf  []byte
	upPID  uint32
	upKey  []byte
	key    backendKey

	// wmu serializes writes to the client (both relay goroutines write).
	wmu sync.Mutex
	// mu guards the relay state shared between the two relay goroutines
	// and the stop/drain machinery.
	mu       sync.Mutex
	pending  []*pending // what the upstream still owes, in order
	txStatus byte
	stopped  bool
	stopErr  error
	// saidBye is set once the client sent Terminate and keyhole passed it
	// on: the upstream's EOF that follows is the end keyhole asked for.
	saidBye  bool
	draining bool
	prepOnly bool // the last sync block only prepared a statement
	copyIn   bool // the upstream is in COPY FROM STDIN
	blockErr bool // the upstream failed the current sync block
	// lastMaxRows is the role's max_rows from the latest allowed decision.
	lastMaxRows int64

	// sessMu guards session: Check runs on the client goroutine, Apply on
	// the upstream goroutine.
	sessMu  sync.Mutex
	session sqlpolicy.Session

	// Extended-protocol state, client goroutine only.
	stmts      map[string]*prepared
	portals    map[string]*portal
	skipToSync bool
	unsynced   int
	closeOnce  sync.Once
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
	return &conn{
		srv:        s,
		id:         id,
		log:        s.log.With("session", id, "client", addr),
		client:     nc,
		remoteIP:   ip,
		remoteAddr: addr,
		txStatus:   'I',
		stmts:      make(map[string]*prepared),
		portals:    make(map[string]*portal),
		session:    s.cfg.Decider.NewSession(),
	}
}

// serve runs the connection's phases. It never panics: a panic ends only
// this connection.
func (c *conn) serve(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	// Cancelling the context closes the sockets, which unblocks any read.
	stopClose := context.AfterFunc(ctx, c.closeSockets)
	defer stopClose()
	defer c.closeSockets()

	c.srv.metricsOpened()
	c.record(audit.Event{Kind: audit.KindConnect})
	c.log.Debug("connection accepted")
	n := c.srv.nconns.Add(1)
	defer c.srv.nconns.Add(-1)
	started := time.Now()

	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				c.log.Error("panic in connection", "panic", r, "stack", string(debug.Stack()))
				err = fatal(codeInternalError, "internal error", fmt.Errorf("panic: %v", r))
			}
		}()
		return c.run(ctx, n > int64(c.srv.limits.MaxConns))
	}()
	if se := c.stopError(); se != nil {
		err = se
	}
	c.finish(err)
	c.srv.metricsClosed()
	ev := audit.Event{Kind: audit.KindClose, DurationMS: msSince(started)}
	if resp := wireError(err); resp != nil {
		ev.ErrorCode, ev.Error = resp.Code, resp.Message
	}
	c.record(ev)
}

func (c *conn) run(ctx context.Context, overLimit bool) error {
	deadline := time.Now().Add(c.srv.limits.StartupTimeout)
	if err := c.setClientDeadline(deadline); err != nil {
		return err
	}
	if err := c.startup(ctx); err != nil {
		return err
	}
	if overLimit {
		// Like Postgres, refuse after the startup packet, where every
		// client expects an ErrorResponse.
		return fatal(codeTooManyConnections, "sorry, too many clients already", nil)
	}
	if err := c.authenticate(ctx, deadline); err != nil {
		return err
	}
	if err := c.credentials(ctx, deadline); err != nil {
		return err
	}
	if err := c.dialUpstream(ctx, deadline); err != nil {
		return err
	}
	if err := c.setClientDeadline(time.Time{}); err != nil {
		return err
	}
	return c.relay(ctx)
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
		c.wmu.Lock()
		_ = c.client.SetWriteDeadline(time.Now().Add(time.Second))
		c.send(resp)
		_ = c.flushClient()
		c.wmu.Unlock()
	case err != nil && !errors.Is(err, errClientGone):
		c.log.Info("connection ended", "err", err)
	default:
		c.log.Debug("connection closed")
	}
	if c.lease != nil {
		c.lease.Release()
	}
}

func (c *conn) closeSockets() {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		client, up := c.client, c.upConn
		c.mu.Unlock()
		_ = client.Close()
		if up != nil {
			_ = up.Close()
		}
	})
}

// stop ends the connection from outside its goroutines (revoked lease,
// expiry, shutdown): it records err as the connection's error, closes the
// upstream and unblocks the client read so serve can send err and close.
func (c *conn) stop(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	c.stopped = true
	c.stopErr = err
	if len(c.pending) > 0 && c.upPID != 0 {
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
	return len(c.pending) == 0 && c.txStatus == 'I' && !c.prepOnly
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
	}
}

// --- phase 1: startup ---

// readStartupPacket reads one length-prefixed startup packet straight from
// the socket, so no bytes past it are buffered when TLS starts.
func (c *conn) readStartupPacket() (code uint32, body []byte, err error) {
	var hdr [4]byte
	if _, err := io.ReadFull(c.client, hdr[:]); err != nil {
		return 0, nil, fmt.Errorf("read startup packet: %w", errClientGone)
	}
	n := int(int32(binary.BigEndian.Uint32(hdr[:])))
	if n < 8 || n > maxStartupPacket {
		return 0, nil, fatal(codeProtocolViolation, "invalid length of startup packet", fmt.Errorf("length %d", n))
	}
	body = make([]byte, n-4)
	if _, err := io.ReadFull(c.client, body); err != nil {
		return 0, nil, fatal(codeProtocolViolation, "incomplete startup packet", err)
	}
	return binary.BigEndian.Uint32(body), body, nil
}

func (c *conn) startup(ctx context.Context) error {
	triedTLS, triedGSS := false, false
	for {
		code, body, err := c.readStartupPacket()
		if err != nil {
			return err
		}
		switch {
		case code == sslRequestCode && len(body) == 4 && !triedTLS:
			triedTLS = true
			if c.srv.cfg.TLS == nil {
				if _, err := c.client.Write([]byte{'N'}); err != nil {
					return fmt.Errorf("answer SSLRequest: %w", errClientGone)
				}
				continue
			}
			if _, err := c.client.Write([]byte{'S'}); err != nil {
				return fmt.Errorf("answer SSLRequest: %w", errClientGone)
			}
			tc := tls.Server(c.client, c.srv.cfg.TLS)
			if err := tc.HandshakeContext(ctx); err != nil {
				return fmt.Errorf("tls handshake: %w", errors.Join(errClientGone, err))
			}
			c.mu.Lock()
			c.client = tc
			c.mu.Unlock()
			c.isTLS = true
		case code == gssEncRequestCode && len(body) == 4 && !triedGSS:
			triedGSS = true
			if _, err := c.client.Write([]byte{'N'}); err != nil {
				return fmt.Errorf("answer GSSENCRequest: %w", errClientGone)
			}
		case code == cancelRequestCode:
			var cr pgproto3.CancelRequest
			if err := cr.Decode(body); err != nil {
				return fmt.Errorf("cancel request: %w", errClientGone)
			}
			c.srv.cancelRequest(cr.ProcessID, cr.SecretKey, c.log)
			return fmt.Errorf("cancel request handled: %w", errClientGone)
		case code>>16 == 3:
			return c.startupMessage(code, body)
		default:
			return fatal(codeProtocolViolation, fmt.Sprintf("unsupported frontend protocol %d.%d: server supports 3.0", code>>16, code&0xffff), nil)
		}
	}
}

// passedParams are client startup parameters passed to the upstream.
// Anything that changes how text is lexed or names resolve (options,
// search_path, client_encoding other than UTF8) is not.
var passedParams = map[string]bool{
	"datestyle": true, "extra_float_digits": true, "timezone": true, "intervalstyle": true,
}

func (c *conn) startupMessage(code uint32, body []byte) error {
	// pgproto3 only decodes 3.0 and 3.2; decode any 3.x as 3.0 and
	// negotiate down.
	b := slices.Clone(body)
	binary.BigEndian.PutUint32(b, 196608)
	var sm pgproto3.StartupMessage
	if err := sm.Decode(b); err != nil {
		return fatal(codeProtocolViolation, "invalid startup packet layout", err)
	}
	c.clientRd = newMsgReader(c.client, c.srv.limits.MaxMessageSize)

	var unrecognized []string
	c.params = make(map[string]string)
	for k, v := range sm.Parameters {
		lk := strings.ToLower(k)
		switch {
		case lk == "user":
			c.user = v
		case lk == "database":
			c.database = v
		case lk == "application_name":
			c.appName = v
		case lk == "replication":
			switch strings.ToLower(v) {
			case "", "false", "off", "no", "0":
			default:
				return fatal(codeFeatureUnsupported, "keyhole does not proxy replication connections", nil)
			}
		case lk == "options":
			if strings.TrimSpace(v) != "" {
				return fatal(codeFeatureUnsupported, "keyhole does not accept startup options; set session parameters with SET", nil)
			}
		case lk == "client_encoding":
			switch strings.ToUpper(strings.ReplaceAll(v, "-", "")) {
			case "UTF8", "UNICODE":
			default:
				return fatal(codeFeatureUnsupported, "keyhole supports only client_encoding UTF8", nil)
			}
		case strings.HasPrefix(lk, "_pq_."):
			unrecognized = append(unrecognized, k)
		case passedParams[lk]:
			c.params[k] = v
		default:
			c.log.Debug("startup parameter ignored", "name", k)
		}
	}
	if c.user == "" {
		return fatal(codeInvalidAuthSpec, "no PostgreSQL user name specified in startup packet", nil)
	}
	if c.database == "" {
		c.database = c.user
	}
	if code != 196608 || len(unrecognized) > 0 {
		slices.Sort(unrecognized)
		c.send(&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: unrecognized})
	}
	c.log = c.log.With("user", c.user)
	return nil
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
			c.agent, c.role, c.upName = agent, role, upName
		}
	}
	if err != nil {
		c.authFailed(method, err)
		return authError(c.user, err)
	}
	c.log = c.log.With("agent", agent.Name, "role", c.role)
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

// --- phase 3: credentials ---

func (c *conn) credentials(ctx context.Context, deadline time.Time) error {
	up, ok := c.srv.cfg.Upstreams[c.upName]
	if !ok {
		up, ok = c.srv.cfg.Upstreams[""]
	}
	if !ok {
		return fatal(codeUnableToConnect, "keyhole: no upstream configured for this role", fmt.Errorf("upstream %q", c.upName))
	}
	// An agent reaches its role's database only. Asking for another is
	// refused as a pg_hba.conf line naming one database refuses it: 28000,
	// whether or not that database exists (nothing the agent needs to
	// learn). A client that names none sends the user name (libpq) or
	// nothing (Postgres then uses the user name): both mean the role's.
	if up.Database != "" && c.database != up.Database && c.database != c.user {
		return fatal(codeInvalidAuthSpec, fmt.Sprintf("agent %q may not connect to database %q: its role %s uses database %q", c.user, c.database, c.role, up.Database), nil)
	}
	if up.Database != "" {
		c.database = up.Database
	}
	c.upstream = up
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	lease, err := c.srv.cfg.Creds.Acquire(ctx, creds.Request{Agent: c.agent.Name, Role: c.role, Upstream: c.upName})
	if err != nil || lease == nil {
		if m := c.srv.cfg.Metrics; m != nil {
			m.UpstreamError(protocolName)
		}
		return fatal(codeUnableToConnect, creds.ErrUnavailable.Error(), fmt.Errorf("acquire credentials: %w", err))
	}
	c.lease = lease
	return nil
}

// --- phase 4: dial upstream ---

func (c *conn) dialUpstream(ctx context.Context, deadline time.Time) error {
	db := c.upstream.Database
	if db == "" {
		db = c.database
	}
	u := url.URL{Scheme: "postgres", Host: c.upstream.Addr, Path: "/" + db, RawQuery: "sslmode=disable"}
	cfg, err := pgconn.ParseConfig(u.String())
	if err != nil {
		return fatal(codeUnableToConnect, "keyhole: upstream unavailable", fmt.Errorf("upstream config: %w", err))
	}
	cfg.User = c.lease.User
	cfg.Password = c.lease.Password.Reveal()
	cfg.Fallbacks = nil
	if c.upstream.TLS != nil {
		cfg.TLSConfig = c.upstream.TLS.Clone()
		if cfg.TLSConfig.ServerName == "" {
			cfg.TLSConfig.ServerName = cfg.Host
		}
	}
	cfg.RuntimeParams = map[string]string{"client_encoding": "UTF8"}
	maps.Copy(cfg.RuntimeParams, c.params)
	if c.appName != "" {
		cfg.RuntimeParams["application_name"] = c.appName
	}
	// The role's resource limits, as the session's defaults (what RESET
	// returns to); last, so that nothing the client sent replaces them.
	maps.Copy(cfg.RuntimeParams, c.srv.cfg.Decider.UpstreamSettings(c.agent.Name))
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		if m := c.srv.cfg.Metrics; m != nil {
			m.UpstreamError(protocolName)
		}
		// pgconn errors carry host, user and database but never the password.
		return fatal(codeUnableToConnect, "keyhole: upstream unavailable", fmt.Errorf("connect upstream %s: %w", c.upstream.Addr, err))
	}
	// SyncConn stops pgconn's background reader and drains its buffers,
	// so the relay can read the socket itself.
	if err := pc.SyncConn(ctx); err != nil {
		_ = pc.Close(ctx)
		return fatal(codeUnableToConnect, "keyhole: upstream unavailable", fmt.Errorf("sync upstream: %w", err))
	}
	hc, err := pc.Hijack()
	if err != nil {
		_ = pc.Close(ctx)
		return fatal(codeUnableToConnect, "keyhole: upstream unavailable", fmt.Errorf("hijack upstream: %w", err))
	}
	c.mu.Lock()
	c.upConn, c.upRd, c.upPID, c.upKey, c.txStatus = hc.Conn, newMsgReader(hc.Conn, 0), hc.PID, slices.Clone(hc.SecretKey), hc.TxStatus
	stopped := c.stopped
	c.mu.Unlock()
	if stopped {
		_ = hc.Conn.Close()
		return errShutdown
	}
	if err := c.srv.register(c); err != nil {
		return fatal(codeInternalError, "internal error", err)
	}
	c.log.Info("upstream session ready", "upstream", c.upName, "database", db)

	c.send(&pgproto3.AuthenticationOk{})
	c.authType = pgproto3.AuthTypeOk
	for _, k := range slices.Sorted(maps.Keys(hc.ParameterStatuses)) {
		c.send(&pgproto3.ParameterStatus{Name: k, Value: c.paramValue(k, hc.ParameterStatuses[k])})
	}
	c.send(&pgproto3.BackendKeyData{ProcessID: c.key.pid, SecretKey: c.key.secret})
	c.send(&pgproto3.ReadyForQuery{TxStatus: c.txStatus})
	if err := c.flushClient(); err != nil {
		return fmt.Errorf("send startup response: %w", errClientGone)
	}
	return nil
}

// paramValue hides the upstream login (a short-lived credential user)
// behind the name the agent connected as.
func (c *conn) paramValue(name, v string) string {
	if strings.EqualFold(name, "session_authorization") {
		return c.user
	}
	return v
}

// cancelUpstream sends a CancelRequest with the upstream's own key on a
// new connection to the upstream.
func (c *conn) cancelUpstream(ctx context.Context) error {
	c.mu.Lock()
	pid, key, up := c.upPID, c.upKey, c.upstream
	c.mu.Unlock()
	if pid == 0 {
		return nil
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", up.Addr)
	if err != nil {
		return fmt.Errorf("dial upstream for cancel: %w", err)
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Now()) })
	defer stop()
	if up.TLS != nil {
		var req [8]byte
		binary.BigEndian.PutUint32(req[0:], 8)
		binary.BigEndian.PutUint32(req[4:], sslRequestCode)
		if _, err := nc.Write(req[:]); err != nil {
			return fmt.Errorf("cancel sslrequest: %w", err)
		}
		var resp [1]byte
		if _, err := io.ReadFull(nc, resp[:]); err != nil {
			return fmt.Errorf("cancel sslrequest: %w", err)
		}
		if resp[0] != 'S' {
			return errors.New("cancel: upstream refused TLS")
		}
		cfg := up.TLS.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(up.Addr)
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("cancel tls: %w", err)
		}
		nc = tc
	}
	buf := make([]byte, 12+len(key))
	binary.BigEndian.PutUint32(buf[0:], uint32(len(buf)))
	binary.BigEndian.PutUint32(buf[4:], cancelRequestCode)
	binary.BigEndian.PutUint32(buf[8:], pid)
	copy(buf[12:], key)
	if _, err := nc.Write(buf); err != nil {
		return fmt.Errorf("send cancel: %w", err)
	}
	// The postmaster closes the connection after signalling the backend;
	// waiting for that orders the cancel before whatever we send next.
	_, _ = io.Copy(io.Discard, nc)
	return nil
}

// --- audit and metrics ---

func (c *conn) record(ev audit.Event) {
	r := c.srv.cfg.Audit
	if r == nil {
		return
	}
	ev.Time = time.Now()
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

func msSince(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }
