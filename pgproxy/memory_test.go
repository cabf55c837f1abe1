package pgproxy_test

import (
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	rtmetrics "runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/internal/fixture"
)

// header is a message header announcing a body of n bytes.
func header(typ byte, n int) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(n+4))
	return b
}

// memory returns the process's live heap (after a GC) and resident set.
func memory(t *testing.T) (heap, rss uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b, err := os.ReadFile("/proc/self/statm")
	require.NoError(t, err)
	f := strings.Fields(string(b))
	pages, err := strconv.ParseUint(f[1], 10, 64)
	require.NoError(t, err)
	return ms.HeapAlloc, pages * uint64(os.Getpagesize())
}

// Connections that announce huge messages and send little do not make
// keyhole allocate what they announce: before authentication nothing
// over 32 KiB is accepted, after it bodies are read as they arrive, and
// a legitimate large message still works. Not parallel: it measures the
// whole test process.
func TestAnnouncedLengthsDoNotTakeMemory(t *testing.T) {
	var logs fixture.SyncBuffer
	e := newEnv(t, envOpts{logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	heap0, rss0 := memory(t)

	// Before authentication: 64 MiB is refused at once, 30 KiB is read
	// as it comes.
	const flood = 100
	for _, announce := range []int{64 << 20, 30 << 10} {
		for range flood {
			r := e.raw(t)
			r.fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
				Parameters: map[string]string{"user": "analyst-bot", "database": e.db.Name}})
			require.NoError(t, r.fe.Flush())
			require.IsType(t, &pgproto3.AuthenticationCleartextPassword{}, r.recv())
			_, err := r.conn.Write(append(header('p', announce), "eyJhbGciOi"...))
			require.NoError(t, err)
			if announce > 32<<10 {
				er, ok := r.recv().(*pgproto3.ErrorResponse)
				require.True(t, ok)
				assert.Equal(t, "08P01", er.Code)
			}
		}
	}
	// After authentication: 3 × 60 MiB announced, 100 bytes sent.
	for range 3 {
		r := e.raw(t)
		r.login(e, "analyst-bot")
		_, err := r.conn.Write(append(header('Q', 60<<20), strings.Repeat("x", 100)...))
		require.NoError(t, err)
	}
	// keyhole has read the three headers and reserved what they announce.
	require.Eventually(t, func() bool {
		n := 0
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "reserves buffer memory") && strings.Contains(l, "bytes="+strconv.Itoa(60<<20+5-8<<10)) {
				n++
			}
		}
		return n == 3
	}, 10*time.Second, 10*time.Millisecond)
	heap1, rss1 := memory(t)
	t.Logf("heap %d → %d MiB, rss %d → %d MiB", heap0>>20, heap1>>20, rss0>>20, rss1>>20)
	assert.Less(t, int64(heap1)-int64(heap0), int64(48<<20), "heap grew by what the clients announced")
	assert.Less(t, int64(rss1)-int64(rss0), int64(128<<20), "RSS grew by what the clients announced")

	// A legitimate large message after authentication works, and its
	// buffer is not kept. (Written by hand: a driver would keep its own
	// 20 MiB write buffer in this process.)
	r := e.raw(t)
	r.login(e, "analyst-bot")
	msg := encode(&pgproto3.Parse{Query: "SELECT length($1::text)"},
		&pgproto3.Bind{ParameterFormatCodes: []int16{0}, Parameters: [][]byte{[]byte(strings.Repeat("y", 20<<20))}},
		&pgproto3.Execute{}, &pgproto3.Sync{})
	_, err := r.conn.Write(msg)
	require.NoError(t, err)
	msg = nil
	var length string
	for _, m := range r.until(&pgproto3.ReadyForQuery{}) {
		if dr, ok := m.(*pgproto3.DataRow); ok {
			length = string(dr.Values[0])
		}
	}
	assert.Equal(t, strconv.Itoa(20<<20), length)
	heap2, _ := memory(t)
	t.Logf("heap after a 20 MiB message: %d MiB", heap2>>20)
	assert.Less(t, int64(heap2)-int64(heap1), int64(16<<20), "the 20 MiB buffer was released")
}

// The memory all connections may hold in read buffers is bounded: a
// message that does not fit waits until another connection's message is
// read and its buffer released.
func TestBufferBudget(t *testing.T) {
	t.Parallel()
	var logs fixture.SyncBuffer
	e := newEnv(t, envOpts{
		limits: config.Limits{MaxMessageSize: 1 << 20, BufferMemory: 2 << 20},
		logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	query := func(n int) []byte {
		q := "SELECT " + strconv.Itoa(n) + " /*" + strings.Repeat("z", 1000<<10) + "*/"
		b, err := (&pgproto3.Query{String: q}).Encode(nil)
		require.NoError(t, err)
		return b
	}
	// Two connections hold the whole budget with half-sent messages.
	var holders []*rawClient
	var pending [][]byte
	for i := range 2 {
		r := e.raw(t)
		r.login(e, "analyst-bot")
		msg := query(i)
		_, err := r.conn.Write(msg[:len(msg)/2])
		require.NoError(t, err)
		holders, pending = append(holders, r), append(pending, msg[len(msg)/2:])
	}
	// A third connection's message must wait for room.
	w := e.raw(t)
	w.login(e, "analyst-bot")
	before := strings.Count(logs.String(), "waits for buffer memory")
	_, err := w.conn.Write(query(7))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return strings.Count(logs.String(), "waits for buffer memory") > before },
		10*time.Second, 10*time.Millisecond)
	// The first holder completes its message: its budget comes back and
	// the waiting message is read.
	_, err = holders[0].conn.Write(pending[0])
	require.NoError(t, err)
	assert.Empty(t, errorsIn(holders[0].until(&pgproto3.ReadyForQuery{})))
	msgs := w.until(&pgproto3.ReadyForQuery{})
	assert.Empty(t, errorsIn(msgs))
	var got string
	for _, m := range msgs {
		if dr, ok := m.(*pgproto3.DataRow); ok {
			got = string(dr.Values[0])
		}
	}
	assert.Equal(t, "7", got)
	_, err = holders[1].conn.Write(pending[1])
	require.NoError(t, err)
	assert.Empty(t, errorsIn(holders[1].until(&pgproto3.ReadyForQuery{})))
}

// idleClient logs in as agent and runs one statement with a hand-driven
// client that then keeps nothing but its socket, so that what the test
// process retains per session is keyhole's.
func idleClient(t *testing.T, e *env, agent string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", e.addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	require.NoError(t, nc.SetDeadline(time.Now().Add(20*time.Second)))
	send := func(msg pgproto3.FrontendMessage) {
		_, err := nc.Write(encode(msg))
		require.NoError(t, err)
	}
	until := func(want byte) {
		var hdr [5]byte
		for {
			_, err := io.ReadFull(nc, hdr[:])
			require.NoError(t, err)
			body := make([]byte, binary.BigEndian.Uint32(hdr[1:])-4)
			_, err = io.ReadFull(nc, body)
			require.NoError(t, err)
			require.NotEqual(t, byte('E'), hdr[0], "error: %q", body)
			if hdr[0] == want {
				return
			}
		}
	}
	send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": agent, "database": e.db.Name}})
	until('R')
	send(&pgproto3.PasswordMessage{Password: e.signer(agent, time.Hour)})
	until('Z')
	send(&pgproto3.Query{String: "SELECT id FROM orders WHERE id = 1"})
	until('Z')
	require.NoError(t, nc.SetDeadline(time.Time{}))
	return nc
}

// runtimeMemory is, after two collections, the live heap, the goroutine
// stacks and the number of goroutines.
func runtimeMemory() (heap, stacks, goroutines uint64) {
	runtime.GC()
	runtime.GC()
	s := []rtmetrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/stacks:bytes"},
		{Name: "/sched/goroutines:goroutines"},
	}
	rtmetrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64()
}

// settled is runtimeMemory once the number of goroutines stays the same
// between two readings 100ms apart.
func settled(t *testing.T) (heap, stacks, goroutines uint64) {
	t.Helper()
	_, _, prev := runtimeMemory()
	for range 50 {
		time.Sleep(100 * time.Millisecond) // a poll: goroutines ending
		heap, stacks, goroutines = runtimeMemory()
		if goroutines == prev {
			return heap, stacks, goroutines
		}
		prev = goroutines
	}
	t.Fatalf("goroutines never settled (%d)", goroutines)
	return
}

// An idle session holds a few KiB of heap and, on the goroutine relay,
// one goroutine with a 4 KiB stack; on the loop relay none
// (docs/performance.md, "What an idle session holds"). The bounds are what
// a session held when this test was written, with some room: a new
// per-session buffer, timer, context or goroutine, or a frame in the idle
// call chain that keeps the stack at 8 KiB, fails it. Not parallel: it
// measures the whole test process.
func TestIdleSessionMemory(t *testing.T) {
	e := newEnv(t, envOpts{noAuditCopy: true})
	// A first session makes the one-time allocations (catalog index,
	// decision cache entry, buffer caches).
	_ = idleClient(t, e, "analyst-bot").Close()
	const n = 40
	conns := make([]net.Conn, 0, n)
	heap0, stacks0, g0 := settled(t)
	for range n {
		conns = append(conns, idleClient(t, e, "analyst-bot"))
	}
	// The setup goroutines end shortly after the last ReadyForQuery.
	heap1, stacks1, g1 := settled(t)
	perSession := func(a, b uint64) float64 { return (float64(b) - float64(a)) / n }
	heap, stack, gs := perSession(heap0, heap1), perSession(stacks0, stacks1), perSession(g0, g1)
	t.Logf("per idle session: heap %.0f B, stack %.0f B, goroutines %.2f", heap, stack, gs)
	maxGoroutines, maxStack := 1.0, 4.5*1024 // one, with a 4 KiB stack
	if testRelay == config.RelayLoop {
		// None; the stacks of the process's other goroutines move by
		// some KiB between two readings (±0.8 KiB per session seen).
		maxGoroutines, maxStack = 0, 2048
	}
	assert.LessOrEqual(t, gs, maxGoroutines, "goroutines per idle session")
	if !raceEnabled {
		assert.LessOrEqual(t, stack, maxStack, "stack per idle session")
	}
	assert.LessOrEqual(t, heap, float64(idleHeapBound), "live heap per idle session")
	runtime.KeepAlive(conns)
}

// idleHeapBound is the live heap an idle session may hold, keyhole's side
// and the test client's socket.
const idleHeapBound = 9 << 10
