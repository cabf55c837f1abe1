package pgproxy

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tcpPair returns both ends of a loopback TCP connection: the pool's
// health check peeks at a real socket.
func tcpPair(t *testing.T) (near, far net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	near, err = net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	far = <-accepted
	require.NotNil(t, far)
	t.Cleanup(func() { _ = near.Close(); _ = far.Close() })
	return near, far
}

// closedByPool reports whether the pool ended its session as a client
// would: the far end reads a Terminate, then EOF.
func closedByPool(t *testing.T, far net.Conn) bool {
	t.Helper()
	_ = far.SetReadDeadline(time.Now().Add(2 * time.Second))
	b, err := io.ReadAll(far)
	return err == nil && bytes.Equal(b, terminateMsg)
}

func TestUpstreamPool(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	keyA, keyB := reuseKey{1}, reuseKey{2}
	kept := func(key reuseKey, nc net.Conn, keptAt time.Time) *keptSession {
		return &keptSession{key: key, addr: "db:5432", nc: nc, born: keptAt, kept: keptAt}
	}

	t.Run("newest first, by key, oldest evicted when full", func(t *testing.T) {
		p := newUpstreamPool(2, time.Minute, log)
		defer p.close()
		n1, f1 := tcpPair(t)
		n2, _ := tcpPair(t)
		n3, _ := tcpPair(t)
		now := time.Now()
		p.put(kept(keyA, n1, now.Add(-2*time.Second)))
		p.put(kept(keyA, n2, now.Add(-time.Second)))
		p.put(kept(keyB, n3, now))
		assert.True(t, closedByPool(t, f1), "the oldest was closed for the newest")
		assert.Nil(t, p.take(reuseKey{9}))
		assert.Same(t, n2, p.take(keyA).nc)
		assert.Nil(t, p.take(keyA))
		assert.Same(t, n3, p.take(keyB).nc)
	})

	t.Run("not handed out", func(t *testing.T) {
		p := newUpstreamPool(8, time.Minute, log)
		defer p.close()
		// The server closed it.
		n1, f1 := tcpPair(t)
		p.put(kept(keyA, n1, time.Now()))
		require.NoError(t, f1.Close())
		// The server sent something.
		n2, f2 := tcpPair(t)
		p.put(kept(keyA, n2, time.Now()))
		_, err := f2.Write([]byte("N"))
		require.NoError(t, err)
		// Idle too long.
		n3, _ := tcpPair(t)
		p.put(kept(keyA, n3, time.Now().Add(-2*time.Minute)))
		// Its lease ended.
		n4, _ := tcpPair(t)
		done := make(chan struct{})
		close(done)
		k4 := kept(keyA, n4, time.Now())
		k4.leaseDone = done
		p.put(k4)
		// Peeks see data only once it has arrived.
		require.Eventually(t, func() bool { return !socketQuiet(n1) && !socketQuiet(n2) }, 2*time.Second, 5*time.Millisecond)
		assert.Nil(t, p.take(keyA))
		assert.Zero(t, p.n)
	})

	t.Run("sweep and close", func(t *testing.T) {
		p := newUpstreamPool(8, 50*time.Millisecond, log)
		n1, f1 := tcpPair(t)
		p.put(kept(keyA, n1, time.Now()))
		assert.True(t, closedByPool(t, f1), "the sweep closed an idle session")
		n2, f2 := tcpPair(t)
		p.put(kept(keyB, n2, time.Now()))
		p.close()
		assert.True(t, closedByPool(t, f2), "close closed the kept session")
		n3, f3 := tcpPair(t)
		p.put(kept(keyB, n3, time.Now()))
		assert.True(t, closedByPool(t, f3), "a closed pool keeps nothing")
	})

	t.Run("evict", func(t *testing.T) {
		p := newUpstreamPool(8, time.Minute, log)
		defer p.close()
		n1, f1 := tcpPair(t)
		p.put(kept(keyA, n1, time.Now()))
		n2, _ := tcpPair(t)
		other := kept(keyB, n2, time.Now())
		other.addr = "other:5432"
		p.put(other)
		assert.Equal(t, 1, p.evict("db:5432"))
		assert.True(t, closedByPool(t, f1))
		assert.Same(t, n2, p.take(keyB).nc)
	})
}
