package mysqlproxy

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeUpstream is a scripted MySQL 8 server for the login corners MariaDB
// does not produce: caching_sha2_password accounts (fast path, and full
// authentication with RSA key retrieval) and servers without
// CLIENT_DEPRECATE_EOF. It accepts one connection and runs script.
func fakeUpstream(t *testing.T, caps uint32, plugin string, script func(t *testing.T, c net.Conn, rd *reader, scramble []byte)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		scramble := []byte("0123456789abcdefghij")
		g := []byte{10}
		g = append(g, "8.0.36-fake\x00"...)
		g = binary.LittleEndian.AppendUint32(g, 77)
		g = append(g, scramble[:8]...)
		g = append(g, 0)
		g = binary.LittleEndian.AppendUint16(g, uint16(caps))
		g = append(g, 255)
		g = binary.LittleEndian.AppendUint16(g, serverStatusAutocommit)
		g = binary.LittleEndian.AppendUint16(g, uint16(caps>>16))
		g = append(g, 21)
		g = append(g, make([]byte, 10)...)
		g = append(append(g, scramble[8:]...), 0)
		g = append(append(g, plugin...), 0)
		out, _ := appendPacket(nil, 0, g)
		if _, err := c.Write(out); err != nil {
			return
		}
		if script != nil {
			script(t, c, newReader(c, 4096), scramble)
		}
	}()
	return ln.Addr().String()
}

// authData returns the user and auth response of a HandshakeResponse41.
func authData(t *testing.T, p []byte) (string, []byte, string) {
	caps := binary.LittleEndian.Uint32(p)
	user, i, ok := nulString(p, 32)
	assert.True(t, ok)
	var data []byte
	if caps&clientPluginAuthLenenc != 0 {
		data, i, ok = lenencString(p, i)
	} else {
		data, i, ok = p[i+1:i+1+int(p[i])], i+1+int(p[i]), true
	}
	assert.True(t, ok)
	if caps&clientConnectWithDB != 0 {
		_, i, _ = nulString(p, i)
	}
	plugin, _, _ := nulString(p, i)
	return string(user), data, string(plugin)
}

var okPacket = []byte{0, 0, 0, 2, 0, 0, 0}

const allCaps = relayCaps | handshakeCaps | clientSSL

func TestUpstreamLoginCachingSHA2(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if !assert.NoError(t, err) {
		return
	}
	const pw = "upstream-pw"
	tests := []struct {
		name   string
		script func(t *testing.T, c net.Conn, rd *reader, scramble []byte)
	}{
		{"fast path", func(t *testing.T, c net.Conn, rd *reader, scramble []byte) {
			p, seq, err := rd.readPayload(1 << 16)
			if !assert.NoError(t, err) {
				return
			}
			user, data, plugin := authData(t, p)
			assert.Equal(t, "vault-user", user)
			assert.Equal(t, pluginCachingSHA2, plugin)
			assert.Equal(t, scrambleSHA2(pw, scramble), data)
			out, next := appendPacket(nil, seq+1, []byte{1, sha2FastAuthOK})
			out, _ = appendPacket(out, next, okPacket)
			_, _ = c.Write(out)
		}},
		{"full authentication with the server's RSA key", func(t *testing.T, c net.Conn, rd *reader, scramble []byte) {
			_, seq, err := rd.readPayload(1 << 16)
			if !assert.NoError(t, err) {
				return
			}
			out, _ := appendPacket(nil, seq+1, []byte{1, sha2FullAuth})
			_, _ = c.Write(out)
			p, seq, err := rd.readPayload(1 << 16)
			if !assert.NoError(t, err) {
				return
			}
			if !assert.Equal(t, []byte{sha2RequestPublicKey}, p, "no TLS: keyhole asks for the key") {
				return
			}
			out, _ = appendPacket(nil, seq+1, append([]byte{1}, publicKeyPEM(key)...))
			_, _ = c.Write(out)
			p, seq, err = rd.readPayload(1 << 16)
			if !assert.NoError(t, err) {
				return
			}
			plain, err := rsa.DecryptOAEP(sha1.New(), rand.Reader, key, p, nil)
			if !assert.NoError(t, err) {
				return
			}
			for i := range plain {
				plain[i] ^= scramble[i%len(scramble)]
			}
			assert.Equal(t, pw+"\x00", string(plain))
			out, _ = appendPacket(nil, seq+1, okPacket)
			_, _ = c.Write(out)
		}},
		{"switched to mysql_native_password", func(t *testing.T, c net.Conn, rd *reader, scramble []byte) {
			_, seq, err := rd.readPayload(1 << 16)
			if !assert.NoError(t, err) {
				return
			}
			fresh := []byte("ABCDEFGHIJKLMNOPQRST")
			sw := append(append([]byte{0xfe}, pluginNative...), 0)
			sw = append(append(sw, fresh...), 0)
			out, _ := appendPacket(nil, seq+1, sw)
			_, _ = c.Write(out)
			p, seq, err := rd.readPayload(1 << 16)
			if !assert.NoError(t, err) {
				return
			}
			assert.Equal(t, scrambleNative(pw, fresh), p)
			out, _ = appendPacket(nil, seq+1, okPacket)
			_, _ = c.Write(out)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := fakeUpstream(t, allCaps, pluginCachingSHA2, tc.script)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			uc, err := login(ctx, loginRequest{up: Upstream{Addr: addr}, user: "vault-user", password: pw, caps: clientProtocol41 | clientDeprecateEOF, collation: 45})
			require.NoError(t, err)
			defer uc.nc.Close()
			assert.Equal(t, uint32(77), uc.g.threadID)
			assert.Equal(t, okPacket, uc.ok)
		})
	}
	t.Run("wrong password is the upstream's error", func(t *testing.T) {
		addr := fakeUpstream(t, allCaps, pluginNative, func(t *testing.T, c net.Conn, rd *reader, _ []byte) {
			_, seq, err := rd.readPayload(1 << 16)
			if !assert.NoError(t, err) {
				return
			}
			out, _ := appendPacket(nil, seq+1, (&sqlError{num: 1045, state: "28000", message: "Access denied for user 'vault-user'"}).packet(nil))
			_, _ = c.Write(out)
		})
		_, err := login(context.Background(), loginRequest{up: Upstream{Addr: addr}, user: "vault-user", password: "x", caps: clientProtocol41, collation: 45})
		var ue *upstreamError
		require.ErrorAs(t, err, &ue)
		assert.EqualValues(t, 1045, ue.num)
		assert.NotContains(t, wireError(upstreamUnavailable(err)).message, "vault-user", "the agent never sees the upstream's text")
	})
}

// An upstream without CLIENT_DEPRECATE_EOF (MySQL 5.6): the client is not
// offered it, and a login that asks for it anyway is refused.
func TestOfferFollowsUpstream(t *testing.T) {
	caps := uint32(allCaps &^ clientDeprecateEOF)
	addr := fakeUpstream(t, caps, pluginNative, nil)
	s := &Server{cfg: Config{Upstreams: map[string]Upstream{"": {Addr: addr}}}, limits: Limits{}.withDefaults(),
		ups: map[string]*upstreamInfo{}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	offered, _, version := s.offer(context.Background())
	assert.Zero(t, offered&clientDeprecateEOF)
	assert.NotZero(t, offered&clientMultiResults)
	assert.Equal(t, "8.0.36-fake", version)

	addr = fakeUpstream(t, caps, pluginNative, nil)
	_, err := login(context.Background(), loginRequest{up: Upstream{Addr: addr}, user: "u", caps: clientProtocol41 | clientDeprecateEOF, collation: 45})
	require.ErrorIs(t, err, errCapsChanged)
}
