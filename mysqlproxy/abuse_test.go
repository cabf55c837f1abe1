package mysqlproxy_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/internal/testmy"
)

// TestProtocolAbuse: what an agent can send on the wire besides
// statements. Each gets an ERR packet with errno and SQLSTATE (and the
// session goes on) or one that ends it, never a hang, and another
// session is not affected.
func TestProtocolAbuse(t *testing.T) {
	e := newEnv(t, envOpts{rawStatements: true})
	bystander := e.dialRaw(t)
	bystander.login(e, "analyst-bot")
	login := func(caps uint32) *rawClient {
		r := e.dialRaw(t)
		r.greeting()
		r.write(r.handshakeResponse(caps|cConnectWithDB, 45, "analyst-bot", []byte(e.signer("analyst-bot", time.Hour)), e.db.Name, pluginClearText))
		p := r.read()
		require.Equal(t, byte(0), p[0], "login: %q", p)
		return r
	}
	alive := func(r *rawClient) {
		t.Helper()
		rows, last := r.query("SELECT 1")
		assert.Equal(t, []string{"1"}, rows, "%q", last)
	}

	t.Run("command with a sequence id other than 0", func(t *testing.T) {
		r := login(rawDefaultCaps)
		_, err := r.nc.Write(packet(3, []byte("\x03SELECT 1")...))
		require.NoError(t, err)
		assertErr(t, r.read(), 1156, "08S01")
		assert.True(t, r.closed())
	})
	t.Run("commands after COM_QUIT", func(t *testing.T) {
		r := login(rawDefaultCaps)
		const q = "INSERT INTO orders (id, item, amount) VALUES (501, 'after quit', 1)"
		_, err := r.nc.Write(append(cmd("\x01"), cmd("\x03"+q)...))
		require.NoError(t, err)
		assert.True(t, r.closed())
		assert.Zero(t, e.count("orders WHERE id = 501"))
	})
	t.Run("refused commands", func(t *testing.T) {
		r := login(rawDefaultCaps)
		for _, c := range [][]byte{
			append([]byte{0x11}, "root\x00\x00"...), // COM_CHANGE_USER
			{0x0c, 1, 0, 0, 0},                      // COM_PROCESS_KILL
			{0x0d},                                  // COM_DEBUG
			{0x08, 0},                               // COM_SHUTDOWN
			{0x12, 4, 0, 0, 0, 0, 0, 1, 0, 0, 0},    // COM_BINLOG_DUMP
			{0x15, 1, 0, 0, 0, 0, 0, 0},             // COM_REGISTER_SLAVE
			{0x1e, 0, 0, 0, 0, 0, 0},                // COM_BINLOG_DUMP_GTID
			{0xfa, 1, 0, 0, 0, 0, 0},                // COM_STMT_BULK_EXECUTE
			{0xfe, 0},                               // COM_MULTI
			{0x07, 0xff},                            // COM_REFRESH
		} {
			r.command(c)
			assertErr(t, r.read(), 1047, "08S01")
		}
		// Still keyhole's upstream login, not root.
		rows, _ := r.query("SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1)")
		assert.Equal(t, []string{e.upUser}, rows)
	})
	t.Run("COM_SET_OPTION turns multi-statements on; each statement is still decided", func(t *testing.T) {
		r := login(rawDefaultCaps &^ cMultiStmts)
		_, last := r.query("SELECT 1; SELECT 2")
		assertErr(t, last, 1064, "42000") // the server's: not enabled
		r.command([]byte{0x1b, 0, 0})     // MYSQL_OPTION_MULTI_STATEMENTS_ON
		require.Equal(t, byte(0xfe), r.read()[0])
		rows, _ := r.query("SELECT 1; SELECT 2")
		assert.Equal(t, []string{"1", "2"}, rows)
		_, last = r.query("SELECT id FROM orders WHERE id = 1; SELECT * FROM secrets")
		assertErr(t, last, 1142, "42000")
		r.command([]byte{0x1b, 1, 0}) // OFF
		require.Equal(t, byte(0xfe), r.read()[0])
		_, last = r.query("SELECT 1; SELECT 2")
		assertErr(t, last, 1064, "42000")
	})
	t.Run("COM_STMT_PREPARE of two statements", func(t *testing.T) {
		r := login(rawDefaultCaps)
		r.command(append([]byte{0x16}, "SELECT 1; SELECT 2"...))
		num, _, msg, ok := sqlErr(r.read())
		require.True(t, ok)
		assert.EqualValues(t, 1064, num, msg)
		r.command(append([]byte{0x16}, "SELECT 1; SELECT * FROM secrets"...))
		assertErr(t, r.read(), 1142, "42000")
		alive(r)
	})
	t.Run("compression asked for", func(t *testing.T) {
		// CLIENT_COMPRESS and CLIENT_ZSTD_COMPRESSION are never offered:
		// the session runs uncompressed.
		r := login(rawDefaultCaps | 1<<5 | 1<<26)
		alive(r)
	})
	t.Run("SSL request without TLS", func(t *testing.T) {
		r := e.dialRaw(t)
		r.greeting()
		b := binary.LittleEndian.AppendUint32(nil, rawDefaultCaps|cSSL)
		b = binary.LittleEndian.AppendUint32(b, 1<<24)
		r.write(append(append(b, 45), make([]byte, 23)...))
		assertErr(t, r.read(), 1043, "08S01")
		assert.True(t, r.closed())
	})
	t.Run("truncated length-encoded parameters", func(t *testing.T) {
		r := login(rawDefaultCaps)
		id := r.prepare("SELECT id FROM orders WHERE item = ?")
		head := binary.LittleEndian.AppendUint32([]byte{0x17}, id)
		head = append(head, 0, 1, 0, 0, 0, 0, 1, 0xfd, 0)
		for _, value := range [][]byte{
			{0xfc, 5},                     // 2-byte length, 1 byte sent
			{0xfe, 1, 2, 3},               // 8-byte length, 3 sent
			{0xfd, 0xff, 0xff, 0xff, 'x'}, // 16 MiB announced, 1 byte sent
			{},                            // no value at all
		} {
			// keyhole does not decode parameters (they cannot change the
			// decided text): the server answers, an error or a result,
			// and the session stays in step.
			r.command(append(append([]byte{}, head...), value...))
			_, last := r.readBinary()
			if num, state, msg, ok := sqlErr(last); ok {
				t.Logf("%x: %d %s %s", value, num, state, msg)
			} else {
				t.Logf("%x: %q", value, last)
			}
			alive(r)
		}
		alive(r)
	})
	t.Run("zero-length packet", func(t *testing.T) {
		r := login(rawDefaultCaps)
		_, err := r.nc.Write([]byte{0, 0, 0, 0})
		require.NoError(t, err)
		assertErr(t, r.read(), 1047, "08S01")
		assert.True(t, r.closed())
	})
	alive(bystander)
}

// TestLocalInfileFromServer: keyhole never negotiates CLIENT_LOCAL_FILES,
// so a real server never asks for a client file
// (TestLoadDataLocalNeverNegotiated). A server that asks anyway (here a
// peer between keyhole and MariaDB that answers one query with a LOCAL
// INFILE request for /etc/passwd) gets nothing: the request never
// reaches the client, the client gets 1148, the session ends, and the
// statement is audited with that error.
func TestLocalInfileFromServer(t *testing.T) {
	const trigger = "SELECT 'local infile please'"
	up := infilePeer(t, testmy.Addr(), trigger)
	e := newEnv(t, envOpts{upAddr: up, rawStatements: true})
	r := e.dialRaw(t)
	r.login(e, "analyst-bot")
	alive, _ := r.query("SELECT 1")
	require.Equal(t, []string{"1"}, alive)
	r.command(append([]byte{0x03}, trigger...))
	p := r.read()
	assertErr(t, p, 1148, "42000")
	assert.True(t, r.closed())
	assert.Equal(t, "1148/42000", e.statementEvent(t, trigger).ErrorCode)
}

// infilePeer relays between keyhole and the server at addr, except that it
// answers the COM_QUERY trigger itself with a LOCAL INFILE request.
func infilePeer(t *testing.T, addr, trigger string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s, err := net.Dial("tcp", addr)
				if err != nil {
					return
				}
				defer s.Close()
				var mu sync.Mutex // writes to c
				go func() {
					buf := make([]byte, 32<<10)
					for {
						n, err := s.Read(buf)
						if n > 0 {
							mu.Lock()
							_, _ = c.Write(buf[:n])
							mu.Unlock()
						}
						if err != nil {
							_ = c.Close()
							return
						}
					}
				}()
				for {
					var h [4]byte
					if _, err := io.ReadFull(c, h[:]); err != nil {
						return
					}
					p := make([]byte, int(h[0])|int(h[1])<<8|int(h[2])<<16)
					if _, err := io.ReadFull(c, p); err != nil {
						return
					}
					if h[3] == 0 && string(p) == "\x03"+trigger {
						mu.Lock()
						_, _ = c.Write(packet(1, append([]byte{0xfb}, "/etc/passwd"...)...))
						mu.Unlock()
						continue
					}
					if _, err := s.Write(append(h[:], p...)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestLockoutPerSource: failed secrets lock out the (address, agent) pair
// they came from, not the agent from another address; a valid token from
// the locked-out address is let in.
func TestLockoutPerSource(t *testing.T) {
	lim := identity.NewLimiter(identity.LockoutConfig{MaxFailures: 2, BaseDelay: time.Hour, MaxDelay: time.Hour})
	e := newEnv(t, envOpts{failures: lim})
	dial := func(from string) *rawClient {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		nc, err := d.DialContext(context.Background(), "tcp", e.addr)
		require.NoError(t, err)
		t.Cleanup(func() { _ = nc.Close() })
		_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
		return &rawClient{t: t, nc: nc}
	}
	secretLogin := func(from, agent, secret string) []byte {
		r := dial(from)
		r.greeting()
		r.write(r.handshakeResponse(rawDefaultCaps, 45, agent, nativeScramble(secret, r.scramble), "", pluginNative))
		return r.read()
	}
	for range 3 {
		assertErr(t, secretLogin("127.0.0.2", "secret-bot", "wrong"), 1045, "28000")
	}
	msg := assertErr(t, secretLogin("127.0.0.2", "secret-bot", e.secret), 1045, "28000")
	assert.Contains(t, msg, "try again in", "locked out from 127.0.0.2")
	assert.Equal(t, byte(0), secretLogin("127.0.0.1", "secret-bot", e.secret)[0], "not from 127.0.0.1")
	r := dial("127.0.0.2")
	r.login(e, "analyst-bot")
	var failed int
	for _, ev := range e.audit.Events() {
		if ev.Kind == audit.KindAuthFailed {
			failed++
		}
	}
	assert.Equal(t, 4, failed)
}

// TestSSLRequestTwice: a second SSL request inside TLS, or one in place
// of an auth switch answer, is not a handshake keyhole follows: 1043 or
// 1045, and the connection ends.
func TestSSLRequestTwice(t *testing.T) {
	serverTLS, _ := testTLS(t)
	e := newEnv(t, envOpts{tls: serverTLS})
	sslRequest := func() []byte {
		b := binary.LittleEndian.AppendUint32(nil, rawDefaultCaps|cSSL)
		b = binary.LittleEndian.AppendUint32(b, 1<<24)
		return append(append(b, 45), make([]byte, 23)...)
	}
	t.Run("inside TLS", func(t *testing.T) {
		r := e.dialRaw(t)
		r.greeting()
		r.write(sslRequest())
		tc := tls.Client(r.nc, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // test peer
		require.NoError(t, tc.Handshake())
		r.nc = tc
		r.write(sslRequest())
		assertErr(t, r.read(), 1043, "08S01")
		assert.True(t, r.closed())
	})
	t.Run("as the auth switch answer", func(t *testing.T) {
		r := e.dialRaw(t)
		r.greeting()
		r.write(r.handshakeResponse(rawDefaultCaps, 45, "secret-bot", []byte("x"), "", "dummy_plugin"))
		p := r.read()
		require.Equal(t, byte(0xfe), p[0], "auth switch: %q", p)
		r.write(sslRequest())
		assertErr(t, r.read(), 1045, "28000")
		assert.True(t, r.closed())
	})
}
