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

func (c *conn) dialUpstream(ctx context.Context, deadline time.Time) error {
	db := c.upstream.Database
	if db == "" {
		db = c.database
	}
	cfg, err := c.srv.upstreamConfig(c.upstream.Addr, db)
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
	cfg.RuntimeParams["application_name"], c.appPrefix = upstreamAppName(c.agent.Name, c.appName)
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
