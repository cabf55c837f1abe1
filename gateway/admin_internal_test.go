package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAdminServerEndsIdleConnections: a client that keeps connections to
// the admin listener open without sending requests does not keep them for
// ever (each holds a file descriptor and a goroutine).
func TestAdminServerEndsIdleConnections(t *testing.T) {
	saved := adminTimeouts
	t.Cleanup(func() { adminTimeouts = saved })
	adminTimeouts.header, adminTimeouts.idle = 300*time.Millisecond, 300*time.Millisecond

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := adminServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Close() })

	// Kept alive after a request, then idle.
	idle, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer idle.Close()
	_, err = io.WriteString(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(idle)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	// Headers never finished.
	slow, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer slow.Close()
	_, err = io.WriteString(slow, "GET / HTTP/1.1\r\nHost: x\r\n")
	require.NoError(t, err)

	for name, nc := range map[string]net.Conn{"idle": idle, "slow": slow} {
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		var rd io.Reader = nc
		if name == "idle" {
			rd = br
		}
		_, err := io.Copy(io.Discard, rd)
		assert.NoError(t, err, "%s: the server closed it (EOF), not the test's deadline", name)
		assert.Less(t, time.Since(start), 4*time.Second, name)
	}
}
