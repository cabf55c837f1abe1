package mysqlproxy_test

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Capability flags and plugins, spelled out for the raw client.
const (
	cLongPassword   = 1 << 0
	cConnectWithDB  = 1 << 3
	cProtocol41     = 1 << 9
	cSSL            = 1 << 11
	cTransactions   = 1 << 13
	cSecure         = 1 << 15
	cMultiStmts     = 1 << 16
	cMultiResults   = 1 << 17
	cPluginAuth     = 1 << 19
	cLenencAuth     = 1 << 21
	cDeprecateEOF   = 1 << 24
	rawDefaultCaps  = cLongPassword | cProtocol41 | cTransactions | cSecure | cMultiResults | cPluginAuth | cLenencAuth | cMultiStmts
	pluginNative    = "mysql_native_password"
	pluginSHA2      = "caching_sha2_password"
	pluginClearText = "mysql_clear_password"
)

// rawClient speaks the MySQL protocol byte by byte, for handshake and
// protocol corners no driver produces.
type rawClient struct {
	t        testing.TB
	nc       net.Conn
	seq      byte
	caps     uint32 // the server's
	scramble []byte
	connID   uint32
	version  string
}

func (e *env) dialRaw(t testing.TB) *rawClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawClient{t: t, nc: nc}
}

// greeting reads and parses the server greeting.
func (r *rawClient) greeting() {
	r.t.Helper()
	p := r.read()
	require.Equal(r.t, byte(10), p[0], "greeting: %q", p)
	i := 1
	for p[i] != 0 {
		i++
	}
	r.version = string(p[1:i])
	i++
	r.connID = binary.LittleEndian.Uint32(p[i:])
	i += 4
	r.scramble = append([]byte{}, p[i:i+8]...)
	i += 9
	r.caps = uint32(binary.LittleEndian.Uint16(p[i:]))
	i += 2
	r.caps |= uint32(binary.LittleEndian.Uint16(p[i+3:])) << 16
	i += 16
	r.scramble = append(r.scramble, p[i:i+12]...)
}

func (r *rawClient) read() []byte {
	r.t.Helper()
	var h [4]byte
	_, err := io.ReadFull(r.nc, h[:])
	require.NoError(r.t, err)
	n := int(h[0]) | int(h[1])<<8 | int(h[2])<<16
	p := make([]byte, n)
	_, err = io.ReadFull(r.nc, p)
	require.NoError(r.t, err)
	r.seq = h[3] + 1
	return p
}

func (r *rawClient) write(payload []byte) {
	r.t.Helper()
	n := len(payload)
	b := append([]byte{byte(n), byte(n >> 8), byte(n >> 16), r.seq}, payload...)
	r.seq++
	_, err := r.nc.Write(b)
	require.NoError(r.t, err)
}

// command sends a command packet (sequence 0).
func (r *rawClient) command(payload []byte) {
	r.seq = 0
	r.write(payload)
}

func (r *rawClient) handshakeResponse(caps uint32, collation byte, user string, auth []byte, db, plugin string) []byte {
	b := binary.LittleEndian.AppendUint32(nil, caps)
	b = binary.LittleEndian.AppendUint32(b, 1<<24)
	b = append(b, collation)
	b = append(b, make([]byte, 23)...)
	b = append(append(b, user...), 0)
	switch n := len(auth); {
	case caps&cLenencAuth != 0 && n >= 0xfb:
		b = append(b, 0xfc, byte(n), byte(n>>8))
	default:
		b = append(b, byte(n))
	}
	b = append(b, auth...)
	if caps&cConnectWithDB != 0 {
		b = append(append(b, db...), 0)
	}
	return append(append(b, plugin...), 0)
}

// login authenticates with the token sent whole (mysql_clear_password;
// keyhole accepts it from loopback) and returns after the OK.
func (r *rawClient) login(e *env, agent string) {
	r.t.Helper()
	p := r.loginReply(e, agent)
	require.Equal(r.t, byte(0), p[0], "login: %q", p)
}

// loginReply sends login's handshake response and returns the server's
// answer to it.
func (r *rawClient) loginReply(e *env, agent string) []byte {
	r.t.Helper()
	r.greeting()
	r.write(r.handshakeResponse(rawDefaultCaps|cConnectWithDB, 45, agent, []byte(e.signer(agent, time.Hour)), e.db.Name, pluginClearText))
	return r.read()
}

// sqlErr decodes an ERR packet.
func sqlErr(p []byte) (num uint16, state, msg string, ok bool) {
	if len(p) < 9 || p[0] != 0xff {
		return 0, "", "", false
	}
	return binary.LittleEndian.Uint16(p[1:]), string(p[4:9]), string(p[9:]), true
}

// closed reports whether the server closed the connection (after
// everything it sent was read).
func (r *rawClient) closed() bool {
	_ = r.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(r.nc)
	return len(b) == 0 && (err == nil || errors.Is(err, syscall.ECONNRESET))
}

func nativeScramble(pw string, scramble []byte) []byte {
	s1 := sha1.Sum([]byte(pw))
	s2 := sha1.Sum(s1[:])
	m := sha1.Sum(append(append([]byte{}, scramble...), s2[:]...))
	for i := range m {
		m[i] ^= s1[i]
	}
	return m[:]
}

func sha2Scramble(pw string, scramble []byte) []byte {
	s1 := sha256.Sum256([]byte(pw))
	s2 := sha256.Sum256(s1[:])
	m := sha256.Sum256(append(s2[:], scramble...))
	for i := range m {
		m[i] ^= s1[i]
	}
	return m[:]
}
