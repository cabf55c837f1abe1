package mysqlproxy

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/identity"
)

// greet sends the HandshakeV10 greeting: keyhole's connection id, a fresh
// scramble, the offered flags and caching_sha2_password as the default
// plugin (every current driver speaks it; a client that answers in
// another plugin is switched).
func (c *conn) greet(ctx context.Context) error {
	relay, ext, version := c.srv.offer(ctx)
	c.offered = relay | handshakeCaps
	if ext != 0 {
		// As a MariaDB server greets: CLIENT_MYSQL unset, so that
		// clients read (and answer with) the extended flags.
		c.offered &^= clientLongPassword
		c.offeredExt = ext
	}
	if c.srv.cfg.TLS != nil {
		c.offered |= clientSSL
	}
	c.scramble = newScramble()
	b := []byte{10}
	b = append(append(b, version...), 0)
	b = binary.LittleEndian.AppendUint32(b, c.connID)
	b = append(b, c.scramble[:8]...)
	b = append(b, 0)
	b = binary.LittleEndian.AppendUint16(b, uint16(c.offered))
	b = append(b, 45) // utf8mb4_general_ci; the client's choice wins
	b = binary.LittleEndian.AppendUint16(b, serverStatusAutocommit)
	b = binary.LittleEndian.AppendUint16(b, uint16(c.offered>>16))
	b = append(b, 21)
	b = append(b, make([]byte, 6)...)
	b = binary.LittleEndian.AppendUint32(b, c.offeredExt)
	b = append(b, c.scramble[8:]...)
	b = append(b, 0)
	b = append(append(b, pluginCachingSHA2...), 0)
	c.seq = 0
	return c.writeAuth(b)
}

// newScramble returns 20 random bytes in 1..127 without '$': clients treat
// the scramble as a C string, and MySQL's own never holds NUL or '$'.
func newScramble() []byte {
	s := make([]byte, 20)
	_, _ = rand.Read(s)
	for i := range s {
		s[i] &= 0x7f
		if s[i] == 0 || s[i] == '$' {
			s[i] = 'k'
		}
	}
	return s
}

// writeAuth sends one handshake-phase packet with the next sequence id.
func (c *conn) writeAuth(payload []byte) error {
	out, next := appendPacket(nil, c.seq, payload)
	c.seq = next
	if _, err := c.client.Write(out); err != nil {
		return fmt.Errorf("write handshake: %w", errors.Join(errClientGone, err))
	}
	return nil
}

// readAuth reads one handshake-phase packet (at most maxPreAuthPacket).
func (c *conn) readAuth() ([]byte, error) {
	p, seq, err := c.crd.readPayload(maxPreAuthPacket)
	if err != nil {
		var tooBig *packetTooLargeError
		if errors.As(err, &tooBig) {
			return nil, fatalErr(erHandshake, "08S01", "Bad handshake", err)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("client left during the handshake: %w", errClientGone)
		}
		return nil, err
	}
	if seq != c.seq {
		return nil, fatalErr(erHandshake, "08S01", "Bad handshake", malformed("packet out of order"))
	}
	c.seq = seq + 1
	return p, nil
}

// handshakeResponse reads Protocol::HandshakeResponse41, after TLS when the
// client asks for it with an SSLRequest.
func (c *conn) handshakeResponse(ctx context.Context) error {
	p, err := c.readAuth()
	if err != nil {
		return err
	}
	if len(p) < 32 {
		return fatalErr(erHandshake, "08S01", "Bad handshake", malformed("short handshake response"))
	}
	caps := binary.LittleEndian.Uint32(p)
	if caps&clientSSL != 0 && len(p) == 32 {
		if c.srv.cfg.TLS == nil {
			return fatalErr(erHandshake, "08S01", "Bad handshake: keyhole does not offer TLS here", nil)
		}
		// A client sends its TLS ClientHello right after the SSL request,
		// so the reader may already hold its first bytes.
		raw := c.client
		if n := c.crd.buffered(); n > 0 {
			raw = &prefixConn{Conn: raw, prefix: append([]byte(nil), c.crd.buf[c.crd.rp:c.crd.wp]...)}
		}
		tc := tls.Server(raw, c.srv.cfg.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("tls handshake: %w", errors.Join(errClientGone, err))
		}
		c.mu.Lock()
		c.client = tc
		c.mu.Unlock()
		c.crd = newReader(tc, readBufSize)
		c.isTLS = true
		if p, err = c.readAuth(); err != nil {
			return err
		}
		if len(p) < 32 {
			return fatalErr(erHandshake, "08S01", "Bad handshake", malformed("short handshake response"))
		}
		caps = binary.LittleEndian.Uint32(p)
	} else if c.srv.cfg.TLS != nil && caps&clientSSL != 0 {
		return fatalErr(erHandshake, "08S01", "Bad handshake", malformed("SSL flag without an SSL request"))
	}
	if caps&clientProtocol41 == 0 {
		return fatalErr(erNotSupportedAuthMode, "08004", "keyhole needs a client of protocol 4.1 or later", nil)
	}
	c.caps = caps & c.offered
	if c.offeredExt != 0 && caps&clientLongPassword == 0 {
		c.extCaps = binary.LittleEndian.Uint32(p[28:]) & c.offeredExt
	}
	c.collation = p[8]
	cs, ok := clientCharset(c.collation)
	if !ok {
		if cs == "" {
			cs = fmt.Sprintf("collation id %d", c.collation)
		}
		return fatalErr(erUnknownCharset, "42000", fmt.Sprintf("keyhole refuses client character set %s: use utf8mb4", cs), nil)
	}
	i := 32
	user, i, ok := nulString(p, i)
	if !ok {
		return fatalErr(erHandshake, "08S01", "Bad handshake", malformed("user name"))
	}
	c.user = string(user)
	switch {
	case caps&clientPluginAuthLenenc != 0:
		c.authData, i, ok = lenencString(p, i)
	case caps&clientSecureConnection != 0:
		if i < len(p) && int(p[i]) <= len(p)-i-1 {
			c.authData, i, ok = p[i+1:i+1+int(p[i])], i+1+int(p[i]), true
		} else {
			ok = false
		}
	default:
		c.authData, i, ok = nulString(p, i)
	}
	if !ok {
		return fatalErr(erHandshake, "08S01", "Bad handshake", malformed("auth response"))
	}
	c.authData = append([]byte(nil), c.authData...)
	if caps&clientConnectWithDB != 0 && i < len(p) {
		db, next, ok := nulString(p, i)
		if !ok {
			return fatalErr(erHandshake, "08S01", "Bad handshake", malformed("database name"))
		}
		c.database, i = string(db), next
	}
	c.plugin = pluginNative
	if caps&clientPluginAuth != 0 && i < len(p) {
		name, next, ok := nulString(p, i)
		if !ok {
			name, next = p[i:], len(p)
		}
		c.plugin, i = string(name), next
	}
	if caps&clientConnectAttrs != 0 && i < len(p) {
		c.parseAttrs(p[i:])
	}
	c.log = c.log.With("user", c.user)
	return nil
}

// parseAttrs keeps the connection attributes worth passing upstream.
// Malformed attributes are ignored, as MySQL does.
func (c *conn) parseAttrs(p []byte) {
	all, _, ok := lenencString(p, 0)
	if !ok {
		return
	}
	for j := 0; j < len(all); {
		k, next, ok := lenencString(all, j)
		if !ok {
			return
		}
		v, next2, ok := lenencString(all, next)
		if !ok {
			return
		}
		j = next2
		if string(k) == "program_name" && len(v) <= 256 {
			c.program = string(v)
		}
	}
}

// --- phase 2: authenticate ---

func (c *conn) authenticate(ctx context.Context) error {
	agent, method, err := c.authAgent(ctx)
	var se *sqlError
	if errors.As(err, &se) || errors.Is(err, errClientGone) {
		if se != nil && se.num == erAccessDenied {
			c.authFailed(method, err)
		}
		return err
	}
	if err != nil || agent == nil {
		if err == nil {
			err = identity.ErrAuthFailed
		}
		c.authFailed(method, err)
		return accessDenied(authMessage(c.user, err), err)
	}
	role, upName, ok := c.srv.cfg.Decider.Role(agent.Name)
	if !ok {
		// Exactly a wrong secret's failure: no login tells which agents
		// the policy knows.
		err := identity.NewAuthError(identity.ReasonCredentials, fmt.Errorf("agent %q is not in the policy", agent.Name))
		c.authFailed(method, err)
		return accessDenied(authMessage(c.user, err), err)
	}
	c.mu.Lock()
	c.agent, c.role, c.upName = agent, role, upName
	c.mu.Unlock()
	c.log = c.log.With("agent", agent.Name, "role", role)
	c.log.Info("agent authenticated", "method", method)
	c.record(audit.Event{Kind: audit.KindAuthOK, AuthMethod: string(method)})
	return nil
}

// errAttemptAbandoned ends a limited attempt that tested no guess (a
// panic, a client that left): it neither counts nor resets.
var errAttemptAbandoned = errors.New("authentication attempt abandoned")

// authMessage is the 1045 text for a failed login: MySQL's own wording,
// followed by what identity says was wrong (an expired token, a lockout
// with its time left…), never a secret and never whether an agent exists.
func authMessage(user string, err error) string {
	msg := fmt.Sprintf("Access denied for agent '%s' (keyhole)", user)
	var ae *identity.AuthError
	if errors.As(err, &ae) && ae.Reason != identity.ReasonCredentials {
		msg += ": " + ae.ClientMessage()
		if h := ae.Reason.Hint(); h != "" {
			msg += ". " + h
		}
	}
	return msg
}

func (c *conn) authFailed(method identity.Method, err error) {
	if m := c.srv.cfg.Metrics; m != nil {
		m.AuthFailed(protocolName)
	}
	c.log.Warn("authentication failed", "method", method, "err", err)
	c.record(audit.Event{Kind: audit.KindAuthFailed, AuthMethod: string(method), Agent: c.user, Error: err.Error()})
}

// authAgent picks the method: a SPIFFE client certificate, else the
// agent's stored MySQL verifier (its secret), else a token sent whole.
func (c *conn) authAgent(ctx context.Context) (*identity.Agent, identity.Method, error) {
	auth := c.srv.cfg.Auth
	if cert := c.spiffeCert(); cert != nil {
		// The certificate proves the agent; the client's password
		// response (usually empty) is not looked at.
		a, err := auth.Certificate(c.user, cert)
		return a, identity.MethodMTLS, err
	}
	if c.srv.mysql != nil {
		if v, ok := c.srv.mysql.MySQLVerifier(c.user); ok {
			// A secret can be guessed: the attempt goes through the
			// lockout shared by every front end, per (address, agent).
			// Tokens and certificates cannot be guessed and never wait
			// on it.
			attempt, err := c.srv.fails.Begin(ctx, c.remoteIP, c.user)
			if err != nil {
				return nil, identity.MethodMySQLSHA2, err
			}
			result := errAttemptAbandoned
			defer func() { attempt.Done(result) }()
			a, method, err := c.secret(v)
			result = err
			return a, method, err
		}
	}
	if !c.isTLS && !isLoopback(c.remoteIP) {
		return nil, identity.MethodToken, accessDenied("keyhole requires TLS to send an agent token (or use the agent's secret)",
			fmt.Errorf("token over a non-TLS remote connection: %w", identity.ErrAuthFailed))
	}
	token, err := c.cleartext(ctx)
	if err != nil {
		return nil, identity.MethodToken, err
	}
	a, err := auth.Token(c.user, token)
	return a, identity.MethodToken, err
}

// secret checks the agent's secret against its stored verifier with
// whichever of mysql_native_password, caching_sha2_password (fast
// scramble) or a cleartext secret (TLS or loopback) the client uses.
func (c *conn) secret(v identity.MySQLVerifier) (*identity.Agent, identity.Method, error) {
	plugin, data := c.plugin, c.authData
	for switched := false; ; switched = true {
		switch {
		case plugin == pluginCachingSHA2 && len(data) == 32 && v.SHA2 != nil:
			a, err := v.VerifySHA2(c.user, c.scramble, data)
			if err != nil {
				return nil, identity.MethodMySQLSHA2, err
			}
			// fast_auth_success; the OK follows once the upstream is ready.
			return a, identity.MethodMySQLSHA2, c.writeAuth([]byte{0x01, sha2FastAuthOK})
		case plugin == pluginNative && len(data) == 20 && v.Native != nil:
			a, err := v.VerifyNative(c.user, c.scramble, data)
			return a, identity.MethodMySQLNative, err
		case plugin == pluginClear:
			if !c.isTLS && !isLoopback(c.remoteIP) {
				return nil, identity.MethodMySQLSHA2, accessDenied("keyhole requires TLS for mysql_clear_password", identity.ErrAuthFailed)
			}
			a, err := v.VerifyCleartext(c.user, strings.TrimSuffix(string(data), "\x00"))
			return a, identity.MethodMySQLSHA2, err
		case switched || plugin == pluginNative || plugin == pluginCachingSHA2:
			// An empty answer (no password) or one this verifier cannot
			// check. A client that named a plugin keyhole does not know
			// (libmariadb's dummy_fallback_auth when it could not load
			// caching_sha2_password in time) is switched below instead.
			if len(data) == 0 || len(data) == 1 && data[0] == 0 {
				return nil, identity.Method(plugin), fmt.Errorf("no secret sent: %w", identity.ErrAuthFailed)
			}
		}
		if switched {
			return nil, identity.Method(plugin), fmt.Errorf("client answered with %q: %w", plugin, identity.ErrAuthFailed)
		}
		want := pluginCachingSHA2
		if v.SHA2 == nil {
			want = pluginNative
		}
		var err error
		if plugin, data, err = c.switchPlugin(want); err != nil {
			return nil, identity.Method(want), err
		}
	}
}

// switchPlugin asks the client to authenticate with plugin (an
// AuthSwitchRequest with the same scramble) and returns its answer.
func (c *conn) switchPlugin(plugin string) (string, []byte, error) {
	if c.caps&clientPluginAuth == 0 {
		return "", nil, fatalErr(erNotSupportedAuthMode, "08004",
			"Client does not support authentication protocol requested by server; keyhole needs "+plugin, nil)
	}
	b := append([]byte{0xfe}, plugin...)
	b = append(b, 0)
	b = append(append(b, c.scramble...), 0)
	if err := c.writeAuth(b); err != nil {
		return "", nil, err
	}
	data, err := c.readAuth()
	if err != nil {
		return "", nil, err
	}
	return plugin, append([]byte(nil), data...), nil
}

// cleartext obtains a password sent whole: the token. mysql_clear_password
// sends it in the handshake; caching_sha2_password sends it after keyhole
// asks for full authentication (over TLS as is; without TLS, from
// loopback only, RSA-encrypted with keyhole's public key). A client that
// answered in any other plugin is switched to caching_sha2_password:
// mysql_native_password sends only a hash, which cannot carry a token.
func (c *conn) cleartext(ctx context.Context) (string, error) {
	plugin, data := c.plugin, c.authData
	switch plugin {
	case pluginClear:
		return strings.TrimSuffix(string(data), "\x00"), nil
	case pluginCachingSHA2:
	default:
		var err error
		if plugin, data, err = c.switchPlugin(pluginCachingSHA2); err != nil {
			return "", err
		}
		_ = data // the fast-path scramble: a token has no cached hash
	}
	if err := c.writeAuth([]byte{0x01, sha2FullAuth}); err != nil {
		return "", err
	}
	resp, err := c.readAuth()
	if err != nil {
		return "", err
	}
	if c.isTLS {
		return strings.TrimSuffix(string(resp), "\x00"), nil
	}
	if len(resp) == 1 && resp[0] == sha2RequestPublicKey {
		key, pemBytes, err := c.srv.rsa(ctx)
		if err != nil {
			return "", fatalErr(erUnknownError, "HY000", "keyhole: internal error", err)
		}
		if err := c.writeAuth(append([]byte{0x01}, pemBytes...)); err != nil {
			return "", err
		}
		if resp, err = c.readAuth(); err != nil {
			return "", err
		}
		return c.decryptPassword(key, resp)
	}
	if key, _, err := c.srv.rsa(ctx); err == nil && len(resp) == key.Size() {
		// A client configured with keyhole's public key sends the
		// encrypted password without asking for the key.
		if pw, err := c.decryptPassword(key, resp); err == nil {
			return pw, nil
		}
	}
	// A client that considers the channel safe (loopback) sends it as is.
	return strings.TrimSuffix(string(resp), "\x00"), nil
}

func (c *conn) decryptPassword(key *rsa.PrivateKey, ct []byte) (string, error) {
	plain, err := rsa.DecryptOAEP(sha1.New(), rand.Reader, key, ct, nil)
	if err != nil {
		return "", fmt.Errorf("decrypt password: %w", identity.ErrAuthFailed)
	}
	for i := range plain {
		plain[i] ^= c.scramble[i%len(c.scramble)]
	}
	return strings.TrimSuffix(string(plain), "\x00"), nil
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

// prefixConn reads prefix before the connection's own bytes.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}
