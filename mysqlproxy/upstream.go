package mysqlproxy

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"time"
)

// greeting is an upstream's Protocol::HandshakeV10.
type greeting struct {
	version   string
	threadID  uint32
	scramble  []byte // 20 bytes
	caps      uint32
	extCaps   uint32 // MariaDB's extended flags (0 when bit 0 is set)
	collation byte
	status    uint16
	plugin    string
}

// upstreamError is an ERR packet from the upstream during login; it is
// logged, never shown to the agent (it names the upstream user).
type upstreamError struct {
	num     uint16
	state   string
	message string
}

func (e *upstreamError) Error() string {
	return fmt.Sprintf("upstream error %d (%s): %s", e.num, e.state, e.message)
}

func parseErrPacket(p []byte) *upstreamError {
	e := &upstreamError{state: "HY000"}
	if len(p) >= 3 {
		e.num = binary.LittleEndian.Uint16(p[1:])
		rest := p[3:]
		if len(rest) >= 6 && rest[0] == '#' {
			e.state, rest = string(rest[1:6]), rest[6:]
		}
		e.message = string(rest)
	}
	return e
}

// errCapsChanged: the upstream no longer has a flag negotiated with the
// client (it was replaced by another server version since its greeting
// was last seen).
var errCapsChanged = errors.New("upstream lacks a capability negotiated with the client")

func parseGreeting(p []byte) (greeting, error) {
	var g greeting
	if len(p) > 0 && p[0] == 0xff {
		return g, parseErrPacket(p)
	}
	if len(p) < 1 || p[0] != 10 {
		return g, malformed("upstream greeting is not protocol 10")
	}
	v, i, ok := nulString(p, 1)
	if !ok || i+4+8+1+2 > len(p) {
		return g, malformed("short upstream greeting")
	}
	g.version = string(v)
	g.threadID = binary.LittleEndian.Uint32(p[i:])
	i += 4
	g.scramble = slices.Clone(p[i : i+8])
	i += 9 // part 1 and a filler
	g.caps = uint32(binary.LittleEndian.Uint16(p[i:]))
	i += 2
	if i+16 > len(p) {
		return g, malformed("upstream greeting without plugin data")
	}
	g.collation = p[i]
	g.status = binary.LittleEndian.Uint16(p[i+1:])
	g.caps |= uint32(binary.LittleEndian.Uint16(p[i+3:])) << 16
	dataLen := int(p[i+5])
	if g.caps&clientLongPassword == 0 {
		g.extCaps = binary.LittleEndian.Uint32(p[i+12:])
	}
	i += 16 // charset, status, upper caps, data length, 10 reserved
	n := max(13, dataLen-8)
	if i+n > len(p) {
		n = len(p) - i
	}
	part2 := p[i : i+n]
	i += n
	if len(part2) > 12 {
		part2 = part2[:12]
	}
	g.scramble = append(g.scramble, part2...)
	if len(g.scramble) != 20 {
		return g, malformed("upstream scramble is not 20 bytes")
	}
	if g.caps&clientPluginAuth != 0 && i < len(p) {
		name, _, ok := nulString(p, i)
		if !ok {
			name = p[i:] // servers before 5.5.10 omit the NUL
		}
		g.plugin = string(name)
	}
	return g, nil
}

// upstreamInfo is what an upstream's last greeting said, for the next
// client greeting.
type upstreamInfo struct {
	caps    uint32
	extCaps uint32
	version string
	ok      bool // a greeting was read; else the probe failed at probed
	probed  time.Time
}

// reprobeAfter is how long a failed probe's conservative guess stands.
const reprobeAfter = 30 * time.Second

// offer returns the relay flags, MariaDB extended relay flags and server
// version to greet a client with: the flags every configured upstream has (the client's upstream is
// not known until it authenticates), and the default upstream's version.
// An upstream whose greeting was never seen is probed (connect, read the
// greeting, close): once per process, and again after a failure.
func (s *Server) offer(ctx context.Context) (caps, extCaps uint32, version string) {
	names := make([]string, 0, len(s.cfg.Upstreams))
	for name := range s.cfg.Upstreams {
		names = append(names, name)
	}
	sort.Strings(names)
	now := time.Now()
	for _, name := range names {
		s.upMu.Lock()
		info := s.ups[name]
		s.upMu.Unlock()
		if info != nil && (info.ok || now.Sub(info.probed) < reprobeAfter) {
			continue
		}
		g, err := s.probe(ctx, s.cfg.Upstreams[name])
		s.upMu.Lock()
		if err != nil {
			s.log.Warn("upstream probe failed", "upstream", name, "err", err)
			if s.ups[name] == nil || !s.ups[name].ok {
				s.ups[name] = &upstreamInfo{probed: now}
			}
		} else {
			s.ups[name] = &upstreamInfo{caps: g.caps, extCaps: g.extCaps, version: g.version, ok: true, probed: now}
		}
		s.upMu.Unlock()
	}
	caps, extCaps = relayCaps, relayExtCaps
	s.upMu.Lock()
	defer s.upMu.Unlock()
	for _, name := range names {
		info := s.ups[name]
		if info == nil || !info.ok {
			caps &= conservativeCaps
			extCaps = 0
			continue
		}
		caps &= info.caps
		extCaps &= info.extCaps
		if version == "" || name == "" {
			version = info.version
		}
	}
	if d := s.ups[""]; d != nil && d.ok {
		version = d.version
	}
	if version == "" {
		version = "8.0.0-keyhole"
	}
	return caps, extCaps, version
}

// seen records an upstream's greeting from a login.
func (s *Server) seen(name string, g greeting) {
	s.upMu.Lock()
	s.ups[name] = &upstreamInfo{caps: g.caps, extCaps: g.extCaps, version: g.version, ok: true, probed: time.Now()}
	s.upMu.Unlock()
}

func (s *Server) probe(ctx context.Context, up Upstream) (greeting, error) {
	ctx, cancel := context.WithTimeout(ctx, s.limits.DialTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", up.Addr)
	if err != nil {
		return greeting{}, fmt.Errorf("dial %s: %w", up.Addr, err)
	}
	defer nc.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	rd := newReader(nc, 1024)
	p, _, err := rd.readPayload(maxPreAuthPacket)
	if err != nil {
		return greeting{}, fmt.Errorf("read greeting from %s: %w", up.Addr, err)
	}
	return parseGreeting(p)
}

// loginRequest is one upstream login.
type loginRequest struct {
	up        Upstream
	user      string
	password  string
	db        string
	caps      uint32 // relay flags negotiated with the client
	extCaps   uint32 // MariaDB extended relay flags negotiated with the client
	collation byte
	attrs     [][2]string
}

// upstreamConn is a logged-in upstream session.
type upstreamConn struct {
	nc net.Conn
	rd *reader
	g  greeting
	ok []byte // the final OK packet's payload
}

// login connects to the upstream and authenticates as req.user. The
// upstream must have every flag in req.caps and req.extCaps
// (errCapsChanged otherwise).
func login(ctx context.Context, req loginRequest) (*upstreamConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", req.up.Addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", req.up.Addr, err)
	}
	uc := &upstreamConn{nc: nc, rd: newReader(nc, readBufSize)}
	if err := uc.handshake(ctx, req); err != nil {
		_ = uc.nc.Close()
		return nil, err
	}
	return uc, nil
}

func (uc *upstreamConn) handshake(ctx context.Context, req loginRequest) error {
	stop := context.AfterFunc(ctx, func() { _ = uc.nc.SetDeadline(time.Now()) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = uc.nc.SetDeadline(dl)
	}
	defer func() { _ = uc.nc.SetDeadline(time.Time{}) }()

	p, seq, err := uc.rd.readPayload(maxPreAuthPacket)
	if err != nil {
		return fmt.Errorf("read greeting: %w", err)
	}
	g, err := parseGreeting(p)
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	uc.g = g
	need := req.caps&relayCaps | clientProtocol41 | clientSecureConnection | clientPluginAuth
	if g.caps&need != need {
		return fmt.Errorf("%w: has %#x, needs %#x", errCapsChanged, g.caps, need)
	}
	extCaps := req.extCaps & relayExtCaps
	if g.extCaps&extCaps != extCaps {
		return fmt.Errorf("%w: has MariaDB %#x, needs %#x", errCapsChanged, g.extCaps, extCaps)
	}
	caps := req.caps&relayCaps | clientLongPassword | clientProtocol41 | clientSecureConnection | clientPluginAuth
	if extCaps != 0 {
		caps &^= clientLongPassword // CLIENT_MYSQL unset: MariaDB reads extCaps
	}
	// filler is the handshake response's 23 reserved bytes, MariaDB's
	// extended flags in the last 4.
	filler := binary.LittleEndian.AppendUint32(make([]byte, 19), extCaps)
	caps |= g.caps & (clientPluginAuthLenenc | clientConnectAttrs)
	if req.db != "" {
		if g.caps&clientConnectWithDB == 0 {
			return errors.New("upstream does not take a database at connect")
		}
		caps |= clientConnectWithDB
	}
	seq++
	isTLS := false
	if req.up.TLS != nil {
		if g.caps&clientSSL == 0 {
			return errors.New("upstream does not offer TLS")
		}
		caps |= clientSSL
		var b []byte
		b = binary.LittleEndian.AppendUint32(b, caps)
		b = binary.LittleEndian.AppendUint32(b, maxPayload)
		b = append(b, req.collation)
		b = append(b, filler...)
		out, next := appendPacket(nil, seq, b)
		if _, err := uc.nc.Write(out); err != nil {
			return fmt.Errorf("send SSL request: %w", err)
		}
		seq = next
		cfg := req.up.TLS.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(req.up.Addr)
		}
		tc := tls.Client(uc.nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("upstream TLS: %w", err)
		}
		uc.nc, uc.rd = tc, newReader(tc, readBufSize)
		isTLS = true
	}

	plugin := g.plugin
	authResp, plugin, err := authResponse(plugin, req.password, g.scramble, isTLS)
	if err != nil {
		return err
	}
	b := binary.LittleEndian.AppendUint32(nil, caps)
	b = binary.LittleEndian.AppendUint32(b, maxPayload)
	b = append(b, req.collation)
	b = append(b, filler...)
	b = append(append(b, req.user...), 0)
	if caps&clientPluginAuthLenenc != 0 {
		b = appendLenencString(b, string(authResp))
	} else {
		if len(authResp) > 255 {
			return errors.New("auth response too long")
		}
		b = append(append(b, byte(len(authResp))), authResp...)
	}
	if caps&clientConnectWithDB != 0 {
		b = append(append(b, req.db...), 0)
	}
	b = append(append(b, plugin...), 0)
	if caps&clientConnectAttrs != 0 {
		var a []byte
		for _, kv := range req.attrs {
			a = appendLenencString(a, kv[0])
			a = appendLenencString(a, kv[1])
		}
		b = appendLenencString(b, string(a))
	}
	out, _ := appendPacket(nil, seq, b)
	if _, err := uc.nc.Write(out); err != nil {
		return fmt.Errorf("send handshake response: %w", err)
	}
	scramble := g.scramble
	var pubKey *rsa.PublicKey
	for range 8 {
		p, seq, err = uc.rd.readPayload(maxPreAuthPacket)
		if err != nil {
			return fmt.Errorf("read auth response: %w", err)
		}
		if len(p) == 0 {
			return malformed("empty auth packet from upstream")
		}
		var reply []byte
		switch p[0] {
		case 0x00:
			uc.ok = slices.Clone(p)
			return nil
		case 0xff:
			return parseErrPacket(p)
		case 0xfe: // AuthSwitchRequest
			name, i, ok := nulString(p, 1)
			if !ok {
				return malformed("auth switch request")
			}
			data := p[i:]
			if len(data) > 0 && data[len(data)-1] == 0 {
				data = data[:len(data)-1]
			}
			if len(data) < 20 {
				return malformed("auth switch scramble")
			}
			scramble = slices.Clone(data[:20])
			if reply, plugin, err = authResponse(string(name), req.password, scramble, isTLS); err != nil {
				return err
			}
			if plugin != string(name) {
				return fmt.Errorf("upstream asks for auth plugin %q, which keyhole does not speak", name)
			}
		case 0x01: // AuthMoreData
			switch {
			case plugin == pluginCachingSHA2 && len(p) == 2 && p[1] == sha2FastAuthOK:
				continue
			case plugin == pluginCachingSHA2 && len(p) == 2 && p[1] == sha2FullAuth:
				if isTLS {
					reply = append([]byte(req.password), 0)
				} else if pubKey != nil {
					if reply, err = encryptPassword(req.password, scramble, pubKey); err != nil {
						return err
					}
				} else {
					reply = []byte{sha2RequestPublicKey}
				}
			case plugin == pluginCachingSHA2 && pubKey == nil:
				k, err := parsePublicKey(p[1:])
				if err != nil {
					return err
				}
				pubKey = k
				if reply, err = encryptPassword(req.password, scramble, pubKey); err != nil {
					return err
				}
			default:
				return malformed("unexpected AuthMoreData from upstream")
			}
		default:
			return malformed("unexpected packet during upstream login")
		}
		out, _ := appendPacket(nil, seq+1, reply)
		if _, err := uc.nc.Write(out); err != nil {
			return fmt.Errorf("send auth data: %w", err)
		}
	}
	return errors.New("upstream authentication exchange too long")
}

// authResponse computes the first auth response for plugin; an unknown
// plugin gets a mysql_native_password response (the server then switches).
func authResponse(plugin, password string, scramble []byte, isTLS bool) ([]byte, string, error) {
	switch plugin {
	case pluginCachingSHA2:
		return scrambleSHA2(password, scramble), plugin, nil
	case pluginClear:
		if !isTLS {
			return nil, plugin, errors.New("upstream asks for mysql_clear_password without TLS")
		}
		return append([]byte(password), 0), plugin, nil
	case pluginNative:
		return scrambleNative(password, scramble), plugin, nil
	}
	return scrambleNative(password, scramble), pluginNative, nil
}

// scrambleNative is mysql_native_password's response:
// SHA1(pw) XOR SHA1(scramble + SHA1(SHA1(pw))).
func scrambleNative(password string, scramble []byte) []byte {
	if password == "" {
		return nil
	}
	s1 := sha1.Sum([]byte(password))
	s2 := sha1.Sum(s1[:])
	h := sha1.New()
	h.Write(scramble[:20])
	h.Write(s2[:])
	m := h.Sum(nil)
	for i := range m {
		m[i] ^= s1[i]
	}
	return m
}

// scrambleSHA2 is caching_sha2_password's fast response:
// SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + scramble).
func scrambleSHA2(password string, scramble []byte) []byte {
	if password == "" {
		return nil
	}
	s1 := sha256.Sum256([]byte(password))
	s2 := sha256.Sum256(s1[:])
	h := sha256.New()
	h.Write(s2[:])
	h.Write(scramble[:20])
	m := h.Sum(nil)
	for i := range m {
		m[i] ^= s1[i]
	}
	return m
}

// encryptPassword is caching_sha2_password's RSA exchange: (pw + NUL) XOR
// the scramble, RSA-OAEP with SHA-1 (MySQL 8.0.5+).
func encryptPassword(password string, scramble []byte, key *rsa.PublicKey) ([]byte, error) {
	plain := append([]byte(password), 0)
	for i := range plain {
		plain[i] ^= scramble[i%len(scramble)]
	}
	out, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, key, plain, nil)
	if err != nil {
		return nil, fmt.Errorf("encrypt password for upstream: %w", err)
	}
	return out, nil
}

func parsePublicKey(b []byte) (*rsa.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, malformed("upstream public key is not PEM")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("upstream public key: %w", err)
	}
	rk, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("upstream public key is not RSA")
	}
	return rk, nil
}

func publicKeyPEM(k *rsa.PrivateKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// killQuery stops the statement running in upstream thread id, on a side
// connection logged in as the same (short-lived) user: MySQL lets a user
// kill its own threads' statements.
func (s *Server) killQuery(ctx context.Context, up Upstream, user, password string, thread uint32) error {
	ctx, cancel := context.WithTimeout(ctx, s.limits.DialTimeout)
	defer cancel()
	uc, err := login(ctx, loginRequest{up: up, user: user, password: password, caps: clientProtocol41 | clientTransactions, collation: 45})
	if err != nil {
		return fmt.Errorf("kill query: login: %w", err)
	}
	defer uc.nc.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = uc.nc.SetDeadline(dl)
	}
	q := append([]byte{comQuery}, "KILL QUERY "+strconv.FormatUint(uint64(thread), 10)...)
	out, _ := appendPacket(nil, 0, q)
	if _, err := uc.nc.Write(out); err != nil {
		return fmt.Errorf("kill query: %w", err)
	}
	p, _, err := uc.rd.readPayload(maxPreAuthPacket)
	if err != nil {
		return fmt.Errorf("kill query: %w", err)
	}
	if len(p) > 0 && p[0] == 0xff {
		return fmt.Errorf("kill query: %w", parseErrPacket(p))
	}
	out, _ = appendPacket(nil, 0, []byte{comQuit})
	_, _ = uc.nc.Write(out)
	return nil
}
