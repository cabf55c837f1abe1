package mysqlproxy_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// panicCounter is a slog handler that counts records mentioning a panic,
// since a recovered panic only shows in the log.
type panicCounter struct {
	slog.Handler
	n *atomic.Int64
}

func (h panicCounter) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		h.n.Add(1)
	}
	return nil
}

func (h panicCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h panicCounter) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h panicCounter) WithGroup(string) slog.Handler            { return h }

// drain reads everything the server sends until it closes the connection,
// failing if that takes longer than a few seconds (a hang).
func drain(t *testing.T, nc net.Conn) {
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.ReadAll(nc)
	if errors.Is(err, syscall.ECONNRESET) {
		return
	}
	require.NoError(t, err, "server did not close the connection")
}

func packet(seq byte, payload ...byte) []byte {
	n := len(payload)
	return append([]byte{byte(n), byte(n >> 8), byte(n >> 16), seq}, payload...)
}

func cmd(payload string) []byte { return packet(0, []byte(payload)...) }

func FuzzClientCommands(f *testing.F) {
	f.Add(cmd("\x03SELECT 1"))
	f.Add(cmd("\x03SELECT * FROM secrets"))
	f.Add(append(cmd("\x16SELECT id, item FROM orders WHERE id = ?"), cmd("\x17\x01\x00\x00\x00\x00\x01\x00\x00\x00\x01\x03\x00\x01\x00\x00\x00")...))
	f.Add(cmd("\x17\xff\xff\xff\xff\x01\x01\x00\x00\x00"))
	f.Add(cmd("\x18\x01\x00\x00\x00\x00\x00data"))
	f.Add(cmd("\x04customers\x00"))
	f.Add(cmd("\x02mysql"))
	f.Add(cmd("\x11root\x00"))
	f.Add(cmd("\x1f"))
	f.Add(append(cmd("\x1f"), cmd("\x03SELECT @@max_statement_time")...))
	f.Add(cmd("\x03KILL QUERY 1"))
	f.Add(cmd("\x03KILL 4294967295"))
	f.Add(cmd("\x1b\x00\x00"))
	f.Add([]byte{0xff, 0xff, 0xff, 0, 3, 'S'})
	f.Add([]byte{0, 0, 0, 0})
	f.Add(cmd("\x01"))
	// The hardening pass (TestProtocolAbuse, TestAuditMatchesServerLog).
	prep := cmd("\x16SELECT id FROM orders WHERE item = ?")
	exec := func(params ...byte) []byte {
		return append(append([]byte{}, prep...), cmd(string(append([]byte("\x17\xff\xff\xff\xff\x00\x01\x00\x00\x00\x00\x01\xfd\x00"), params...)))...)
	}
	f.Add(packet(3, []byte("\x03SELECT 1")...))                                     // command not at sequence 0
	f.Add(append(cmd("\x01"), cmd("\x03INSERT INTO orders VALUES (9, 'q', 1)")...)) // after COM_QUIT
	f.Add(append(cmd("\x1b\x00\x00"), cmd("\x03SELECT 1; SELECT * FROM secrets")...))
	f.Add(cmd("\x16SELECT 1; SELECT 2"))
	f.Add(exec(0xfc, 5))
	f.Add(exec(0xfe, 1, 2, 3))
	f.Add(exec(0xfd, 0xff, 0xff, 0xff, 'x'))
	f.Add(exec())
	f.Add(append(append(append([]byte{}, prep...), cmd("\x18\xff\xff\xff\xff\x00\x00long")...), cmd("\x17\xff\xff\xff\xff\x01\x01\x00\x00\x00\x00\x01\xfd\x00\x00")...))
	f.Add(append(cmd("\x17\xff\xff\xff\xff\x01\x01\x00\x00\x00"), cmd("\x1c\xff\xff\xff\xff\x0a\x00\x00\x00")...))
	f.Add(cmd("\x0d"))
	f.Add(cmd("\xfa\x01\x00\x00\x00\x00\x00"))
	f.Add(cmd("\x11root\x00\x00"))
	f.Add(append(cmd("\x03SELECT 1"), append(cmd("\x03SELECT 2"), cmd("\x03SELECT 3")...)...)) // pipelined
	f.Add(append([]byte{0xff, 0xff, 0xff, 0, 3}, 'S'))                                         // a split payload cut short
	f.Add([]byte{0xff, 0xff, 0xff, 0, 3, 0, 0, 0, 2})                                          // continuation out of order

	var panics atomic.Int64
	e := newEnv(f, envOpts{logger: slog.New(panicCounter{n: &panics})})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := e.dialRaw(t)
		r.login(e, "analyst-bot")
		_, _ = r.nc.Write(data)
		// End of input: the server must answer what it got and close.
		_ = r.nc.(*net.TCPConn).CloseWrite()
		drain(t, r.nc)
		require.Zero(t, panics.Load(), "a connection panicked")
	})
}

func FuzzHandshake(f *testing.F) {
	resp := func(caps uint32, collation byte, user, auth, plugin string) []byte {
		b := binary.LittleEndian.AppendUint32(nil, caps)
		b = binary.LittleEndian.AppendUint32(b, 1<<24)
		b = append(b, collation)
		b = append(b, make([]byte, 23)...)
		b = append(append(b, user...), 0)
		b = append(append(b, byte(len(auth))), auth...)
		return packet(1, append(append(b, plugin...), 0)...)
	}
	f.Add(resp(rawDefaultCaps, 45, "analyst-bot", "x", pluginClearText))
	f.Add(resp(rawDefaultCaps, 28, "analyst-bot", "", pluginSHA2))
	f.Add(resp(rawDefaultCaps|cSSL, 45, "", "", ""))
	f.Add(resp(rawDefaultCaps, 45, "secret-bot", strings.Repeat("a", 20), pluginNative))
	f.Add(append(resp(rawDefaultCaps, 45, "analyst-bot", "", pluginNative), packet(3, 2)...))
	f.Add(packet(1, make([]byte, 32)...))
	f.Add([]byte{0xff, 0xff, 0xff, 1})
	f.Add([]byte{0x16, 0x03, 0x01, 0x02, 0x00})
	f.Add(resp(rawDefaultCaps|1<<5|1<<26, 45, "analyst-bot", "x", pluginClearText)) // compression asked for
	f.Add(resp(rawDefaultCaps|1<<7, 45, "analyst-bot", "x", pluginClearText))       // LOCAL_FILES asked for
	f.Add(append(resp(rawDefaultCaps, 45, "secret-bot", "x", "dummy"), packet(3, make([]byte, 32)...)...))
	f.Add([]byte{0xff, 0xff, 0xff, 1, 'a', 'b', 'c'}) // 16 MiB announced before authentication
	f.Add(append([]byte{0xff, 0x3f, 0, 1}, 'a'))      // 16 KiB - 1 announced, 1 byte sent

	var panics atomic.Int64
	e := newEnv(f, envOpts{logger: slog.New(panicCounter{n: &panics})})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := e.dialRaw(t)
		_, _ = r.nc.Write(data)
		_ = r.nc.(*net.TCPConn).CloseWrite()
		drain(t, r.nc)
		require.Zero(t, panics.Load(), "a connection panicked")
	})
}
