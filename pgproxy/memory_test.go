package pgproxy_test

import (
	"encoding/binary"
	"log/slog"
	"os"
	"runtime"
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
