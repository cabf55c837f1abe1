package mysqlproxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/internal/evloop"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/myanalyze"
)

// conn is one client connection and, after phase 4, its upstream session.
// One goroutine runs it (MySQL's protocol is one command, one response);
// stop is the only entry from outside.
type conn struct {
	srv    *Server
	id     string // session id in logs and audit
	connID uint32 // keyhole's connection id, sent in the greeting
	log    *slog.Logger

	client     net.Conn // the *tls.Conn after an SSL request
	crd        *reader
	wbuf       []byte // gathered for the client until flushClient
	remoteIP   string
	remoteAddr string
	isTLS      bool
	// startupSlot counts the connection among those logging in until it
	// has authenticated (Server.logins); counted is set once it counts
	// among the logged-in sessions (Server.sessions).
	startupSlot *identity.Login
	counted     bool

	// Handshake.
	seq       byte   // next sequence id in the handshake phase
	offered   uint32 // flags in the greeting
	caps      uint32 // flags negotiated with the client
	scramble  []byte
	collation byte
	user      string
	database  string // the client's database at connect, then the current one
	setupSET  bool   // appendSetup sent a SET SESSION before setupQuery
	plugin    string
	authData  []byte
	program   string

	// MariaDB's extended flags: in the greeting, and negotiated.
	offeredExt, extCaps uint32

	agent    *identity.Agent
	role     string
	upName   string
	upstream Upstream
	// agentEpoch is the decider's epoch when checkAgent last found the
	// agent mapped to role and upName (0: none, or no epochs).
	agentEpoch uint64
	lease      *creds.Lease

	// Upstream session.
	upConn   net.Conn
	upRaw    syscall.RawConn // upConn's, when it is plain TCP (see request)
	raw      rawRequest      // request's callback state
	rawStep  func(fd uintptr) bool
	urd      *reader
	upBuf    []byte
	upThread uint32 // the upstream's connection id, for KILL QUERY
	status   uint16 // the upstream's last server status flags

	// mu guards what stop, drain and RevokeAgent read or set from other
	// goroutines.
	mu       sync.Mutex
	stopped  bool
	stopErr  error
	draining bool
	busy     bool // a command is in flight upstream
	// idleDeadline is the client read deadline idlePoint last set.
	idleDeadline time.Time
	// done is closed by stop once the relay has begun (useBudget).
	done chan struct{}
	// lost is the error of a failed write to the client (clientLost).
	lost error

	session sqlpolicy.Session
	stmts   map[uint32]*prepared // by the upstream's statement id
	// lastStmt is the id of the statement the last COM_STMT_PREPARE created,
	// when that prepare succeeded (MariaDB's statement id -1).
	lastStmt    uint32
	hasLastStmt bool

	// Set by serve for the connection's life (end uses them).
	ctx       context.Context
	cancel    context.CancelFunc
	stopClose func() bool
	stopWatch func()
	started   time.Time

	// loop is the loop that owns the session (c.mu; see loop.go); lp is
	// its state there, touched by the loop's goroutine only, and nil while
	// a goroutine relays the session.
	loop *evloop.Loop
	lp   *loopState
	// offLoop: the goroutine relay serves one command before the session
	// may go back to a loop (the one that made it leave).
	offLoop bool
}

func (s *Server) newConn(nc net.Conn, connID uint32) *conn {
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
		connID:     connID,
		log:        s.log.With("session", id, "client", addr),
		client:     nc,
		crd:        newReader(nc, readBufSize),
		remoteIP:   ip,
		remoteAddr: addr,
		stmts:      make(map[uint32]*prepared),
		session:    s.cfg.Decider.NewSession(),
	}
}

// serve runs the connection's phases:
//
//  1. greet and read the handshake response (TLS on an SSL request);
//  2. authenticate the agent;
//  3. acquire upstream credentials for its role;
//  4. log in upstream with the flags negotiated with the client, then
//     send the client its OK;
//  5. relay commands until either side ends.
//
// The first error ends the connection and becomes one ERR packet
// (wireError). It never panics: a panic ends only this connection. A
// session the relay moved to a loop (see loop.go) outlives serve's
// goroutine; end finishes it, on whichever goroutine it ends.
func (c *conn) serve(parent context.Context) {
	c.ctx, c.cancel = context.WithCancel(parent)
	// Cancelling the context closes the sockets, which unblocks any read.
	c.stopClose = context.AfterFunc(c.ctx, c.closeSockets)

	c.srv.metricsOpened()
	c.record(audit.Event{Kind: audit.KindConnect})
	c.log.Debug("connection accepted")
	c.startupSlot = c.srv.logins.Admit(c.remoteIP, func() {
		if m, ok := c.srv.cfg.Metrics.(LoginGateMetrics); ok {
			m.LoginDropped(protocolName)
		}
		c.stop(errLoginsCrowded())
	})
	c.started = time.Now()

	err := c.protect(func() error { return c.run(c.ctx) })
	if errors.Is(err, errOnLoop) {
		return
	}
	c.end(err)
}

// protect runs f, turning a panic into the error that ends the connection.
func (c *conn) protect(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("panic in connection", "panic", r, "stack", string(debug.Stack()))
			err = fatalErr(erUnknownError, "HY000", "keyhole: internal error", fmt.Errorf("panic: %v", r))
		}
	}()
	return f()
}

// end finishes the connection that err ended: the client gets its error,
// the lease is released, the close is audited and the sockets closed.
func (c *conn) end(err error) {
	if c.stopWatch != nil {
		c.stopWatch()
	}
	c.crd.release()
	if se := c.stopError(); se != nil {
		err = se
	}
	c.finish(err)
	c.srv.metricsClosed()
	ev := audit.Event{Kind: audit.KindClose, DurationMS: msSince(c.started)}
	if e := wireError(err); e != nil {
		ev.ErrorCode, ev.Error = e.code(), e.message
	}
	c.record(ev)
	c.stopClose()
	c.closeSockets()
	c.cancel()
	c.startupSlot.Done()
	if c.counted {
		c.srv.sessions.Release(c.agent.Name)
	}
	c.srv.connDone(c)
}

// errLoginsCrowded ends a connection the login gate dropped.
func errLoginsCrowded() error {
	return fatalErr(erConCount, "08004", "Too many connections are logging in; try again", nil)
}

// loggedIn moves an authenticated connection from the connections
// logging in to the sessions, which MaxConns and MaxPerAgent bound. (MySQL refuses a
// connection past max_connections in place of its greeting; keyhole only
// knows who counts once the agent authenticated, and answers the
// handshake response with the same 1040.)
func (c *conn) loggedIn() error {
	if !c.startupSlot.Done() {
		return errLoginsCrowded() // dropped while it authenticated
	}
	switch c.srv.sessions.Take(c.agent.Name) {
	case identity.TooManySessions:
		return fatalErr(erConCount, "08004", "Too many connections", nil)
	case identity.TooManyAgentSessions:
		// MariaDB's answer past a user's max_user_connections.
		return fatalErr(erTooManyUserConns, "42000", fmt.Sprintf("Agent '%s' has more than 'max_conns_per_agent' active connections", c.agent.Name), nil)
	}
	c.counted = true
	return nil
}

func (c *conn) run(ctx context.Context) error {
	deadline := time.Now().Add(c.srv.limits.StartupTimeout)
	if err := c.setClientDeadline(deadline); err != nil {
		return err
	}
	if err := c.greet(ctx); err != nil {
		return err
	}
	if err := c.handshakeResponse(ctx); err != nil {
		return err
	}
	if err := c.authenticate(ctx); err != nil {
		return err
	}
	if err := c.loggedIn(); err != nil {
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
	c.stopWatch = c.watch()
	c.useBudget()
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

// finish sends the client the one error that ended the connection. Its
// sequence id follows whatever the client sent last: the handshake
// phase's counter, or the command's.
func (c *conn) finish(err error) {
	e := wireError(err)
	switch {
	case e != nil:
		c.log.Info("connection ended", "code", e.num, "err", err)
		_ = c.client.SetWriteDeadline(time.Now().Add(time.Second))
		c.wbuf = c.wbuf[:0]
		c.wbuf, _ = appendPacket(c.wbuf, c.seq, e.packet(nil))
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

// closeSockets closes the connection's sockets. On a loop the net.Conns
// are the closed ones Detach left, and this does nothing: the loop closes
// what it holds when the session leaves it (stop ends it there).
func (c *conn) closeSockets() {
	c.mu.Lock()
	client, up := c.client, c.upConn
	c.mu.Unlock()
	_ = client.Close()
	if up != nil {
		_ = up.Close()
	}
}

func (c *conn) agentName() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.agent == nil {
		return ""
	}
	return c.agent.Name
}

// stop ends the connection from outside its goroutine (revoked lease,
// expiry, shutdown, RevokeAgent): it records err as the connection's
// error, stops the upstream statement in flight, closes the upstream and
// unblocks the client read so serve sends err and closes. A session on a
// loop is stopped there (loopStop).
func (c *conn) stop(err error) {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	c.stopped = true
	c.stopErr = err
	if c.done != nil {
		close(c.done)
	}
	if l := c.loop; l != nil {
		c.mu.Unlock()
		l.Post(c.posted(c.loopStop))
		return
	}
	c.stopSockets()
	c.mu.Unlock()
}

// stopSockets is stop's work on the sockets of a session on a goroutine
// (c.mu held).
func (c *conn) stopSockets() {
	if c.busy && c.upThread != 0 && c.lease != nil && c.upConn != nil {
		c.stopStatement()
	} else if c.upConn != nil {
		_ = c.upConn.Close()
	}
	_ = c.client.SetReadDeadline(time.Now())
	// A client that does not read must not hold the connection open.
	_ = c.client.SetWriteDeadline(time.Now().Add(time.Second))
}

func (c *conn) stopError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopErr
}

// drain ends the session now if it is idle (or still starting up), else
// when the command in flight, and any open transaction, completes.
func (c *conn) drain() {
	c.mu.Lock()
	c.draining = true
	idle := c.upConn == nil || (!c.busy && c.status&serverStatusInTrans == 0)
	c.mu.Unlock()
	if idle {
		c.stop(errShutdown)
	}
}

// --- phase 3: credentials ---

func (c *conn) credentials(ctx context.Context, deadline time.Time) error {
	up, ok := c.srv.cfg.Upstreams[c.upName]
	if !ok {
		up, ok = c.srv.cfg.Upstreams[""]
	}
	if !ok {
		// The role's upstream is of another dialect, or missing.
		return fatalErr(erUnknownError, "HY000", "keyhole: no MySQL upstream configured for this role", fmt.Errorf("upstream %q", c.upName))
	}
	c.upstream = up
	if c.database == "" {
		c.database = up.Database
	}
	if c.database != "" {
		// The database named at connect is decided like COM_INIT_DB.
		if e := c.checkDatabase(c.database); e != nil {
			return fatalErr(e.num, e.state, e.message, nil)
		}
		if dec, _ := c.decide(myanalyze.InitDBText(c.database), time.Now()); !dec.Allowed() {
			e := databaseError(dec)
			return fatalErr(e.num, e.state, e.message, nil)
		}
	}
	return c.acquireLease(ctx, deadline)
}

// acquireLease gets the session's credential from the source.
func (c *conn) acquireLease(ctx context.Context, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	lease, err := c.srv.cfg.Creds.Acquire(ctx, creds.Request{Agent: c.agent.Name, Role: c.role, Upstream: c.upName})
	if err != nil || lease == nil {
		if m := c.srv.cfg.Metrics; m != nil {
			m.UpstreamError(protocolName)
		}
		return fatalErr(erUnknownError, "HY000", "keyhole: "+creds.ErrUnavailable.Error(), fmt.Errorf("acquire credentials: %w", err))
	}
	c.mu.Lock()
	c.lease = lease
	c.mu.Unlock()
	return nil
}

// --- phase 4: dial upstream ---

func (c *conn) dialUpstream(ctx context.Context, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	attrs := [][2]string{{"_client_name", "keyhole"}, {"keyhole_session", c.id}}
	if c.program != "" {
		attrs = append(attrs, [2]string{"program_name", c.program})
	}
	req := loginRequest{
		up: c.upstream, user: c.lease.User, password: c.lease.Password.Reveal(), db: c.database,
		caps: c.caps, extCaps: c.extCaps, collation: c.collation, attrs: attrs,
	}
	uc, err := login(ctx, req)
	// A login refused for its credential (1045, or 1698 which MariaDB
	// also answers for a user that no longer exists) has the source check
	// the lease (creds.Lease.Recheck): one revoked behind its back (an
	// operator revoking the Vault lease drops the user at once) is
	// replaced and the login tried once more.
	var ue *upstreamError
	if errors.As(err, &ue) && (ue.num == erAccessDenied || ue.num == erAccessDeniedNoPassword) && c.lease.Recheck(ctx) {
		c.log.Info("upstream refused the session's credential, which its source found revoked; logging in with a new one")
		c.mu.Lock()
		old := c.lease
		c.lease = nil
		c.mu.Unlock()
		old.Release()
		if err := c.acquireLease(ctx, deadline); err != nil {
			return err
		}
		req.user, req.password = c.lease.User, c.lease.Password.Reveal()
		uc, err = login(ctx, req)
	}
	if uc != nil {
		c.srv.seen(c.upName, uc.g)
	} else if errors.Is(err, errCapsChanged) {
		// The next greeting offers what the upstream has now.
		c.srv.upMu.Lock()
		delete(c.srv.ups, c.upName)
		c.srv.upMu.Unlock()
	}
	if err != nil {
		if m := c.srv.cfg.Metrics; m != nil {
			m.UpstreamError(protocolName)
		}
		// Login errors name the upstream user and host: scrubbed for the log.
		return upstreamUnavailable(fmt.Errorf("login upstream %s: %w", c.upstream.Addr, c.scrubUpstream(err)))
	}
	info, _ := parseOK(uc.ok, c.caps)
	if tc, ok := uc.nc.(*net.TCPConn); ok {
		c.upRaw, _ = tc.SyscallConn()
	}
	c.mu.Lock()
	c.upConn, c.urd, c.upThread, c.status = uc.nc, uc.rd, uc.g.threadID, info.status
	stopped := c.stopped
	c.mu.Unlock()
	if stopped {
		_ = uc.nc.Close()
		return c.stopError()
	}
	// The role's limits, and what the analyzer must know of the session,
	// in one round trip before the client's first command.
	if c.upBuf, err = c.appendSetup(c.upBuf[:0]); err != nil {
		return err
	}
	if err := c.flushUpstream(); err != nil {
		return upstreamUnavailable(fmt.Errorf("set up upstream session: %w", err))
	}
	if err := c.readSetup(ctx); err != nil {
		return err
	}
	c.log.Info("upstream session ready", "upstream", c.upName, "database", c.database, "thread", uc.g.threadID)
	// The upstream's own OK (status flags, session state) is the client's.
	c.wbuf, c.seq = appendPacket(c.wbuf[:0], c.seq, uc.ok)
	if err := c.flushClient(); err != nil {
		return fmt.Errorf("send OK: %w", errClientGone)
	}
	return nil
}

// mySession is what the proxy tells the MySQL analyzer's session
// (*myanalyze.Session) besides the texts it decides: the server's sql_mode
// and client character set, which decide how text is lexed, and the
// current database, which unqualified names resolve in.
type mySession interface {
	SetSQLMode(mode string) error
	SetClientCharset(cs string) error
	SetDatabase(db string)
}

// setupQuery reads back, on a new or reset upstream session, what the
// analyzer's session needs (see readSetup).
const setupQuery = "SELECT @@SESSION.sql_mode, @@SESSION.character_set_client, DATABASE()"

// appendSetup appends the commands that set an upstream session up, at
// connect and after COM_RESET_CONNECTION (which returns every session
// variable to its global value): SET SESSION of the role's resource limits
// (Decider.UpstreamSettings), when it has any, then setupQuery. The server
// answers pipelined commands in order, so they cost one round trip.
func (c *conn) appendSetup(dst []byte) ([]byte, error) {
	set, err := c.limitsText()
	if err != nil {
		return dst, fatalErr(erUnknownError, "HY000", "keyhole: internal error", err)
	}
	c.setupSET = set != ""
	if c.setupSET {
		dst, _ = appendPacket(dst, 0, append([]byte{comQuery}, set...))
	}
	dst, _ = appendPacket(dst, 0, append([]byte{comQuery}, setupQuery...))
	return dst, nil
}

// limitsText is the SET SESSION statement of the agent's role's upstream
// settings, names sorted, or "" when there are none. Names and values come
// from the analyzer (variable names, plain numbers); anything else is a
// bug, and no session starts without its limits.
func (c *conn) limitsText() (string, error) {
	settings := c.srv.cfg.Decider.UpstreamSettings(c.agent.Name)
	if len(settings) == 0 {
		return "", nil
	}
	names := make([]string, 0, len(settings))
	for name, v := range settings {
		if !isVarName(name) || !isNumber(v) {
			return "", fmt.Errorf("upstream setting %q is not a variable name and a number", name)
		}
		names = append(names, name)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString("SET SESSION ")
	for i, name := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(name)
		b.WriteString(" = ")
		b.WriteString(settings[name])
	}
	return b.String(), nil
}

func isVarName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if ch := s[i]; ch != '_' && (ch < 'a' || ch > 'z') && (ch < '0' || ch > '9') {
			return false
		}
	}
	return true
}

func isNumber(s string) bool {
	digits, dot := 0, false
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case ch >= '0' && ch <= '9':
			digits++
		case ch == '.' && !dot && digits > 0:
			dot = true
		default:
			return false
		}
	}
	return digits > 0 && s[len(s)-1] != '.'
}

// readSetup reads the answers to appendSetup's commands and hands the
// analyzer's session the upstream's sql_mode, client character set and
// current database. A refused limit, or a mode or character set keyhole
// cannot lex safely, ends the session: it would run without the role's
// limits, or have every text refused.
func (c *conn) readSetup(ctx context.Context) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.upConn.SetReadDeadline(dl)
		defer func() { _ = c.upConn.SetReadDeadline(time.Time{}) }()
	}
	if c.setupSET {
		p, _, err := c.urd.readPayload(maxPreAuthPacket)
		if err != nil {
			return c.upstreamReadError(err)
		}
		if len(p) > 0 && p[0] == 0xff {
			return fatalErr(erUnknownError, "HY000", "keyhole: the upstream refused the role's resource limits", c.scrubUpstream(parseErrPacket(p)))
		}
	}
	row, err := c.upstreamRow(3)
	if err != nil {
		if se := c.stopError(); se != nil {
			return se
		}
		var ue *upstreamError
		if errors.As(err, &ue) {
			return fatalErr(erUnknownError, "HY000", "keyhole: could not read the upstream session's settings", c.scrubUpstream(err))
		}
		return c.upstreamReadError(err)
	}
	sess, ok := c.session.(mySession)
	if !ok {
		return fatalErr(erUnknownError, "HY000", "keyhole: internal error", fmt.Errorf("decider sessions are %T, not the MySQL analyzer's", c.session))
	}
	mode, cs, db := row[0], row[1], row[2]
	if mode == nil || cs == nil {
		return upstreamUnavailable(errors.New("upstream reports no sql_mode or character_set_client"))
	}
	if err := sess.SetSQLMode(*mode); err != nil {
		return fatalErr(erUnknownError, "HY000", fmt.Sprintf("keyhole: the upstream session's sql_mode (%s) changes how SQL text is read in a way keyhole does not model", *mode), err)
	}
	if err := sess.SetClientCharset(*cs); err != nil {
		return fatalErr(erUnknownCharset, "42000", fmt.Sprintf("keyhole: the upstream session's client character set %s is not supported (use utf8mb4)", *cs), err)
	}
	c.database = ""
	if db != nil {
		c.database = *db
	}
	// No database (NULL) is a known state too: unqualified names then
	// resolve nowhere, as on the server.
	sess.SetDatabase(c.database)
	return nil
}

// upstreamRow reads a result set of one row of ncols text columns (NULL
// is nil) outside the relay, with the client's capability flags.
func (c *conn) upstreamRow(ncols int) ([]*string, error) {
	var row []*string
	for phase, defs := 0, 0; ; {
		p, _, err := c.urd.readPayload(maxPreAuthPacket)
		if err != nil {
			return nil, err
		}
		if len(p) == 0 {
			return nil, malformed("empty packet")
		}
		if p[0] == 0xff {
			return nil, parseErrPacket(p)
		}
		switch {
		case phase == 0: // column count
			if n, _, ok := lenenc(p, 0); !ok || n != uint64(ncols) {
				return nil, malformed("unexpected column count")
			}
			phase, defs = 1, ncols
			if c.caps&clientDeprecateEOF == 0 {
				defs++ // the EOF after the definitions
			}
		case phase == 1: // column definitions
			if defs--; defs == 0 {
				phase = 2
			}
		case p[0] == 0xfe && len(p) < 9: // end of rows
			info, _ := parseOK(p, c.caps)
			c.mu.Lock()
			c.status = info.status
			c.mu.Unlock()
			if row == nil {
				return nil, malformed("no row")
			}
			return row, nil
		default:
			if row != nil {
				return nil, malformed("more than one row")
			}
			row = make([]*string, ncols)
			for i, j := 0, 0; i < ncols; i++ {
				if j < len(p) && p[j] == 0xfb {
					j++
					continue
				}
				v, next, ok := lenencString(p, j)
				if !ok {
					return nil, malformed("row")
				}
				s := string(v)
				row[i], j = &s, next
			}
		}
	}
}

// checkDatabase refuses a database outside the upstream's list.
func (c *conn) checkDatabase(db string) *sqlError {
	if len(c.upstream.Databases) == 0 || slices.Contains(c.upstream.Databases, db) {
		return nil
	}
	return stmtErr(erDBAccessDenied, "42000", fmt.Sprintf("keyhole: database '%s' is not served to agent '%s' (upstream %s serves %v)", db, c.user, c.upName, c.upstream.Databases))
}

// --- audit ---

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

func msSince(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }

func isLoopback(ip string) bool {
	a := net.ParseIP(ip)
	return a != nil && a.IsLoopback()
}
