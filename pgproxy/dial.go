package pgproxy

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/keyholedb/keyhole/creds"
)

// Phases 3 and 4: credentials for the agent's upstream, and the upstream
// session they log in to.

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
		return fatal(codeUnableToConnect, creds.ErrUnavailable.Error(), fmt.Errorf("acquire credentials: %w", err))
	}
	c.lease = lease
	return nil
}

// --- phase 4: dial upstream ---

// dialUpstream logs in to the role's upstream with the lease and answers
// the client's startup: AuthenticationOk, the server's ParameterStatus
// values, keyhole's own BackendKeyData and ReadyForQuery.
func (c *conn) dialUpstream(ctx context.Context, deadline time.Time) error {
	db := c.upstream.Database
	if db == "" {
		db = c.database
	}
	var appName string
	appName, c.appPrefix = upstreamAppName(c.agent.Name, c.appName)
	params := c.startupParams(appName)
	mark := len(c.clientBuffer())
	adopted := false
	if c.srv.reuse.enabled() {
		c.reuseKey = c.reuseKeyFor(db, params)
		if k := c.srv.reuse.take(c.reuseKey); k != nil {
			switch err := c.adopt(k); {
			case errors.Is(err, errShutdown):
				return err
			case err != nil:
				c.log.Warn("kept upstream session not reused; logging in anew", "err", err)
			default:
				adopted = true
				c.log.Debug("upstream session reused", "backend_pid", k.pid)
			}
		}
	}
	if !adopted {
		if err := c.newUpstream(ctx, deadline, db, params, mark); err != nil {
			return err
		}
	}
	c.mu.Lock()
	stopped, txStatus := c.stopped, c.txStatus
	c.mu.Unlock()
	if stopped {
		// stop closed the upstream socket.
		return errShutdown
	}
	if err := c.srv.register(c); err != nil {
		return fatal(codeInternalError, "internal error", err)
	}
	c.log.Info("upstream session ready", "upstream", c.upName, "database", db, "reused", adopted)
	if rm, ok := c.srv.cfg.Metrics.(ReuseMetrics); ok {
		rm.UpstreamSessionStarted(protocolName, adopted)
	}

	c.authType = pgproto3.AuthTypeOk
	c.send(&pgproto3.BackendKeyData{ProcessID: c.key.pid, SecretKey: c.key.secret})
	c.send(&pgproto3.ReadyForQuery{TxStatus: txStatus})
	if err := c.flushClient(); err != nil {
		return fmt.Errorf("send startup response: %w", errClientGone)
	}
	return nil
}

// newUpstream logs a new upstream session in and probes it; c.wbuf[mark:]
// then holds the client's greeting (AuthenticationOk, ParameterStatus). A
// login the server refuses for lack of connection slots (53300) while
// reset sessions are kept for reuse closes those and tries again: they
// must not keep a new session out. A login refused for its credential
// (28P01, 28000) has the source check the lease (creds.Lease.Recheck): one
// revoked behind its back is replaced and the login tried once more.
func (c *conn) newUpstream(ctx context.Context, deadline time.Time, db string, params []string, mark int) error {
	password := c.lease.Password.Reveal()
	var err error
	rechecked := false
	for attempt := 0; ; attempt++ {
		if asciiOnly(password) {
			err = c.dialLogin(ctx, deadline, db, password, params)
		} else {
			err = c.dialPgconn(ctx, deadline, db, password, params)
		}
		if err != nil && !rechecked && refusedCredential(err) {
			rechecked = true
			if c.lease.Recheck(ctx) {
				c.log.Info("upstream refused the session's credential, which its source found revoked; logging in with a new one")
				c.dropUpConn()
				c.lease.Release()
				c.lease = nil
				if err := c.acquireLease(ctx, deadline); err != nil {
					return err
				}
				password = c.lease.Password.Reveal()
				continue
			}
		}
		if err == nil || attempt == 3 || !tooManyConnections(err) {
			break
		}
		if n := c.srv.reuse.evict(c.upstream.Addr); n == 0 && attempt == 0 {
			break
		} else if n > 0 {
			c.log.Info("upstream refused a login for lack of connection slots; closed the sessions kept for reuse", "closed", n)
		}
		c.dropUpConn()
		// The closed sessions' backends exit when they read the EOF.
		select {
		case <-time.After(time.Duration(50<<attempt) * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if errors.Is(err, errShutdown) {
		return err
	}
	if err == nil {
		if err = c.probeSession(deadline); err != nil {
			// The client learns only that the session could not start,
			// as for a failed login.
			c.wbuf = c.wbuf[:mark]
			c.mu.Lock()
			stopped := c.stopped
			c.mu.Unlock()
			if stopped {
				return errShutdown
			}
			if m := c.srv.cfg.Metrics; m != nil {
				m.UpstreamError(protocolName)
			}
			return fatal(codeUnableToConnect, "keyhole: the upstream session's starting state (search path) could not be read",
				fmt.Errorf("upstream %s: database=%s: %w", c.upstream.Addr, db, c.scrubErr(err)))
		}
		// An idle session holds no read buffer (see owed).
		if c.upRd.buffered() == 0 {
			c.upRd.shrink()
		}
	}
	if err != nil {
		if m := c.srv.cfg.Metrics; m != nil {
			m.UpstreamError(protocolName)
		}
		// The errors carry the database, never the password; the login
		// (pgconn's "user=", the server's texts) is scrubbed.
		return fatal(codeUnableToConnect, "keyhole: upstream unavailable",
			fmt.Errorf("connect upstream %s: database=%s: %w", c.upstream.Addr, db, c.scrubErr(err)))
	}
	c.noteGreeting(mark)
	return nil
}

// dropUpConn closes the upstream socket of a failed login.
func (c *conn) dropUpConn() {
	c.mu.Lock()
	nc := c.upConn
	c.upConn = nil
	c.mu.Unlock()
	if nc != nil {
		_ = nc.Close()
	}
}

// tooManyConnections reports whether a login failed with 53300 (the
// server's max_connections, or the role's or database's CONNECTION LIMIT).
func tooManyConnections(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == codeTooManyConnections
}

// refusedCredential reports whether a login failed for its user or
// password: 28P01 (password authentication failed) or 28000 (no such
// role, or no pg_hba.conf entry for it).
func refusedCredential(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == codeInvalidPassword || pe.Code == codeInvalidAuthSpec)
}

// startupParams are the upstream session's startup parameters, as name,
// value pairs: client_encoding UTF8, the client's passed parameters,
// application_name, and last the role's resource limits, as the session's
// defaults (what RESET returns to), so that nothing the client sent
// replaces them.
func (c *conn) startupParams(appName string) []string {
	settings := c.srv.cfg.Decider.UpstreamSettings(c.agent.Name)
	ps := make([]string, 0, 2*(2+len(c.params)+len(settings)))
	ps = setParam(ps, "client_encoding", "UTF8")
	for k, v := range c.params {
		ps = setParam(ps, k, v)
	}
	ps = setParam(ps, "application_name", appName)
	for k, v := range settings {
		ps = setParam(ps, k, v)
	}
	return ps
}

func setParam(ps []string, k, v string) []string {
	for i := 0; i < len(ps); i += 2 {
		if ps[i] == k {
			ps[i+1] = v
			return ps
		}
	}
	return append(ps, k, v)
}

// dialLogin connects to the upstream (TLS when configured) and logs in
// with keyhole's own login (login.go).
func (c *conn) dialLogin(ctx context.Context, deadline time.Time, db, password string, params []string) error {
	d := net.Dialer{Deadline: deadline}
	nc, err := d.DialContext(ctx, "tcp", c.upstream.Addr)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	// From here stop and closeSockets close the socket, which ends the
	// login; a context cancelled before the socket was known here is
	// seen below.
	c.mu.Lock()
	stopped := c.stopped
	if !stopped {
		c.upConn = nc
	}
	c.mu.Unlock()
	if stopped {
		_ = nc.Close()
		return errShutdown
	}
	if err := ctx.Err(); err != nil {
		_ = nc.Close()
		return err
	}
	_ = nc.SetDeadline(deadline)
	var rw net.Conn = nc
	var tc *tls.Conn
	if cfg := c.upstream.TLS; cfg != nil {
		if tc, err = startTLS(nc, cfg); err != nil {
			return fmt.Errorf("tls error: %w", err)
		}
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("tls error: %w", err)
		}
		c.mu.Lock()
		c.upConn = tc
		c.mu.Unlock()
		rw = tc
	}
	c.upRd = newUpstreamReader(rw)
	if err := c.login(rw, tc, c.lease.User, password, db, params); err != nil {
		return err
	}
	// An idle session holds no read buffer (see owed).
	if c.upRd.buffered() == 0 {
		c.upRd.shrink()
	}
	_ = nc.SetDeadline(time.Time{})
	return nil
}

// upCfgKey names a parsed upstream configuration.
type upCfgKey struct{ addr, db string }

// maxUpCfgs bounds Server.upCfgs: without Upstream.Database, clients name
// the database, and a configuration past the bound is parsed every time.
const maxUpCfgs = 64

// upstreamConfig returns a copy of pgconn's configuration for database db
// at addr, to be completed with the session's user, password, TLS and
// parameters. It is parsed once per address and database: ParseConfig
// also reads the environment, the service and password files and the OS
// user, several KiB of garbage per session, and nothing of it that a
// session uses changes while keyhole runs (the password and the rest
// come from the lease and the session).
func (s *Server) upstreamConfig(addr, db string) (*pgconn.Config, error) {
	k := upCfgKey{addr, db}
	s.upCfgMu.Lock()
	base := s.upCfgs[k]
	s.upCfgMu.Unlock()
	if base == nil {
		u := url.URL{Scheme: "postgres", Host: addr, Path: "/" + db, RawQuery: "sslmode=disable"}
		cfg, err := pgconn.ParseConfig(u.String())
		if err != nil {
			return nil, err
		}
		base = cfg
		s.upCfgMu.Lock()
		if s.upCfgs == nil {
			s.upCfgs = make(map[upCfgKey]*pgconn.Config)
		}
		if len(s.upCfgs) < maxUpCfgs {
			s.upCfgs[k] = base
		}
		s.upCfgMu.Unlock()
	}
	return base.Copy(), nil
}

// dialPgconn logs in through pgconn, for a password SCRAM would have to
// SASLprep (not ASCII; see login.go), and leaves the connection as
// dialLogin does.
func (c *conn) dialPgconn(ctx context.Context, deadline time.Time, db, password string, params []string) error {
	cfg, err := c.srv.upstreamConfig(c.upstream.Addr, db)
	if err != nil {
		return fmt.Errorf("upstream config: %w", err)
	}
	cfg.User = c.lease.User
	cfg.Password = password
	cfg.Fallbacks = nil
	cfg.TLSConfig = c.upstream.TLS
	cfg.RuntimeParams = make(map[string]string, len(params)/2)
	for i := 0; i < len(params); i += 2 {
		cfg.RuntimeParams[params[i]] = params[i+1]
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	// SyncConn stops pgconn's background reader and drains its buffers,
	// so the relay can read the socket itself.
	if err := pc.SyncConn(ctx); err != nil {
		_ = pc.Close(ctx)
		return fmt.Errorf("sync upstream: %w", err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		_ = pc.Close(ctx)
		return fmt.Errorf("hijack upstream: %w", err)
	}
	c.mu.Lock()
	stopped := c.stopped
	if !stopped {
		c.upConn, c.upPID, c.upKey, c.txStatus = hc.Conn, hc.PID, slices.Clone(hc.SecretKey), hc.TxStatus
	}
	c.mu.Unlock()
	if stopped {
		_ = hc.Conn.Close()
		return errShutdown
	}
	c.upRd = newUpstreamReader(hc.Conn)
	c.send(&pgproto3.AuthenticationOk{})
	for _, k := range slices.Sorted(maps.Keys(hc.ParameterStatuses)) {
		c.send(&pgproto3.ParameterStatus{Name: k, Value: c.paramValue(k, hc.ParameterStatuses[k])})
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

// upstreamAppName is the application_name of the upstream session:
// "keyhole:<agent>", then the client's own application_name, so that
// pg_stat_activity and the server log name the agent behind each session.
// Postgres keeps printable ASCII only (other bytes become '?') and shows
// at most NAMEDATALEN-1 (63) bytes; the agent comes first so that a long
// client name cannot push it out. prefix is what the agent may not change.
func upstreamAppName(agent, client string) (name, prefix string) {
	prefix = cleanAppName("keyhole:" + agent)
	if len(prefix) > maxAppName {
		prefix = prefix[:maxAppName]
	}
	name = prefix
	if client != "" {
		name += " " + cleanAppName(client)
	}
	if len(name) > maxAppName {
		name = name[:maxAppName]
	}
	return name, prefix
}

// maxAppName is what pg_stat_activity shows of application_name.
const maxAppName = 63

// cleanAppName is Postgres's pg_clean_ascii (15): application_name keeps
// printable ASCII and replaces every other byte with '?'.
func cleanAppName(s string) string {
	b := []byte(s)
	for i, ch := range b {
		if ch < 32 || ch > 126 {
			b[i] = '?'
		}
	}
	return string(b)
}

// cancelUpstream sends a CancelRequest with the upstream's own key on a
// new connection to the upstream.
func (c *conn) cancelUpstream(ctx context.Context) error {
	c.mu.Lock()
	pid, key, up := c.upPID, c.upKey, c.upstream
	if pid != 0 {
		// keepUpstream waits for this cancel to land before the
		// backend can serve another session.
		c.cancels.Add(1)
		defer c.cancels.Done()
	}
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
		tc, err := startTLS(nc, up.TLS) // its ServerName is set (New)
		if err != nil {
			return fmt.Errorf("cancel: %w", err)
		}
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
