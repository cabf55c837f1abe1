package mysqlproxy_test

import (
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/internal/fixture"
)

// memory returns the process's live heap (after a GC) and resident set.
func memory(t *testing.T) (heap, rss int64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b, err := os.ReadFile("/proc/self/statm")
	require.NoError(t, err)
	pages, err := strconv.ParseInt(strings.Fields(string(b))[1], 10, 64)
	require.NoError(t, err)
	return int64(ms.HeapAlloc), pages * int64(os.Getpagesize())
}

// header is a packet header announcing n bytes with sequence id seq.
func header(n int, seq byte) []byte { return []byte{byte(n), byte(n >> 8), byte(n >> 16), seq} }

// debugLog is a logger whose lines the test reads (the budget's waits are
// logged at debug level).
func debugLog() (*slog.Logger, *fixture.SyncBuffer) {
	var b fixture.SyncBuffer
	return slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})), &b
}

// TestAnnouncedSizesDoNotTakeMemory: a MySQL header announces up to
// 16 MiB, and a payload of 16 MiB - 1 continues in the next packet.
// Connections that announce that much and send little make keyhole
// allocate nothing for it: before authentication anything over 16 KiB is
// refused at once (1043) and a legal size is read as it arrives; after it
// the announced size is reserved from the budget, not allocated. Not
// parallel: it measures the whole test process.
func TestAnnouncedSizesDoNotTakeMemory(t *testing.T) {
	logger, logs := debugLog()
	e := newEnv(t, envOpts{logger: logger})
	heap0, rss0 := memory(t)
	const flood = 40
	var held []*rawClient
	for range flood {
		// 16 MiB announced in the handshake response: refused.
		r := e.dialRaw(t)
		r.greeting()
		_, err := r.nc.Write(append(header(maxPayload, 1), "abc"...))
		require.NoError(t, err)
		assertErr(t, r.read(), 1043, "08S01")
		assert.True(t, r.closed())
		// 16 KiB - 1 announced, 3 bytes sent: read as it comes, held.
		r = e.dialRaw(t)
		r.greeting()
		_, err = r.nc.Write(append(header(16<<10-1, 1), "abc"...))
		require.NoError(t, err)
		held = append(held, r)
	}
	// After authentication: 16 MiB - 1 announced (a payload that goes on
	// in another packet), 100 bytes sent.
	for range flood {
		r := e.dialRaw(t)
		r.login(e, "analyst-bot")
		_, err := r.nc.Write(append(header(maxPayload, 0), "\x03SELECT "+strings.Repeat("x", 93)...))
		require.NoError(t, err)
		held = append(held, r)
	}
	// keyhole has read every authenticated header: each reserved its
	// command's size or waits for room.
	require.Eventually(t, func() bool {
		s := logs.String()
		return strings.Count(s, "reserves buffer memory")+strings.Count(s, "waits for buffer memory") >= flood
	}, 20*time.Second, 10*time.Millisecond)
	heap1, rss1 := memory(t)
	t.Logf("heap %d → %d KiB, rss %d → %d KiB, %d connections held", heap0>>10, heap1>>10, rss0>>10, rss1>>10, len(held))
	assert.Less(t, heap1-heap0, int64(8<<20), "heap grew by what the clients announced")
	assert.Less(t, rss1-rss0, rssBound(16<<20), "RSS grew by what the clients announced")
}

const maxPayload = 1<<24 - 1

// rssBound is n, or four times n under the race detector (its shadow
// memory grows with every allocation).
func rssBound(n int64) int64 {
	if raceEnabled {
		return 4 * n
	}
	return n
}

// TestCommandMemoryBounded: forty agents that each send a whole 8 MiB
// command at once hold at most the budget in keyhole at any time (without
// it, 320 MiB); each command is still answered, and the buffer is not
// kept after it. Not parallel: it measures the whole test process.
func TestCommandMemoryBounded(t *testing.T) {
	e := newEnv(t, envOpts{limits: config.Limits{MaxMessageSize: 8 << 20, BufferMemory: 16 << 20}})
	const flood, size = 40, 8<<20 - 16
	// One payload shared by every client, so the test's own side costs
	// 8 MiB: a comment the analyzer refuses (texts over 1 MiB), after
	// keyhole has read it whole.
	payload := []byte("\x03SELECT 1 /*" + strings.Repeat("m", size-14) + "*/")
	require.Len(t, payload, size)
	clients := make([]*rawClient, flood)
	for i := range clients {
		clients[i] = e.dialRaw(t)
		clients[i].login(e, "analyst-bot")
	}
	_, rss0 := memory(t)
	var wg sync.WaitGroup
	answers := make([][]byte, flood)
	// Header and payload are written separately (no per-client copy).
	for i, r := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = r.nc.Write(header(len(payload), 0))
			_, _ = r.nc.Write(payload)
			var h [4]byte
			if _, err := io.ReadFull(r.nc, h[:]); err != nil {
				return
			}
			p := make([]byte, int(h[0])|int(h[1])<<8|int(h[2])<<16)
			if _, err := io.ReadFull(r.nc, p); err == nil {
				answers[i] = p
			}
		}()
	}
	wg.Wait()
	_, rss1 := memory(t)
	t.Logf("rss %d → %d MiB", rss0>>20, rss1>>20)
	// Each command was read whole and refused by the analyzer (1142), or
	// found no room in the budget within its wait (1041: on a loaded
	// machine forty 8 MiB commands through a 16 MiB budget can take
	// longer than that).
	read := 0
	for i, p := range answers {
		num, _, msg, ok := sqlErr(p)
		require.True(t, ok, "client %d: %q", i, p)
		require.Contains(t, []uint16{1142, 1041}, num, msg)
		if num == 1142 {
			read++
		}
	}
	t.Logf("%d of %d commands read whole", read, flood)
	assert.Positive(t, read)
	// Budget 16 MiB, plus the garbage collector's headroom; without the
	// budget forty 8 MiB buffers are live at once.
	assert.Less(t, rss1-rss0, rssBound(120<<20), "RSS grew past the budget")
}

// TestBufferBudget: a command that does not fit the budget waits until
// another connection's command is read and its buffer released.
func TestBufferBudget(t *testing.T) {
	t.Parallel()
	logger, logs := debugLog()
	e := newEnv(t, envOpts{limits: config.Limits{MaxMessageSize: 1 << 20, BufferMemory: 2 << 20}, logger: logger})
	query := func(n int) []byte {
		q := "\x03SELECT " + strconv.Itoa(n) + " /*" + strings.Repeat("z", 1000<<10) + "*/"
		return append(header(len(q), 0), q...)
	}
	// Two connections hold the whole budget with half-sent commands.
	var holders []*rawClient
	var pending [][]byte
	for i := range 2 {
		r := e.dialRaw(t)
		r.login(e, "analyst-bot")
		msg := query(i)
		_, err := r.nc.Write(msg[:len(msg)/2])
		require.NoError(t, err)
		holders, pending = append(holders, r), append(pending, msg[len(msg)/2:])
	}
	require.Eventually(t, func() bool { return strings.Count(logs.String(), "reserves buffer memory") == 2 },
		10*time.Second, 10*time.Millisecond)
	// A third connection's command must wait for room.
	w := e.dialRaw(t)
	w.login(e, "analyst-bot")
	_, err := w.nc.Write(query(7))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "waits for buffer memory") },
		10*time.Second, 10*time.Millisecond)
	// The first holder completes its command: its budget comes back and
	// the waiting command is read and answered.
	_, err = holders[0].nc.Write(pending[0])
	require.NoError(t, err)
	rows, last := holders[0].readResult()
	assert.Equal(t, []string{"0"}, rows, "%q", last)
	rows, last = w.readResult()
	assert.Equal(t, []string{"7"}, rows, "%q", last)
	_, err = holders[1].nc.Write(pending[1])
	require.NoError(t, err)
	rows, last = holders[1].readResult()
	assert.Equal(t, []string{"1"}, rows, "%q", last)
}

// readResult reads the answer to a COM_QUERY like query does.
func (r *rawClient) readResult() (rows []string, last []byte) {
	r.t.Helper()
	for {
		p := r.read()
		if p[0] == 0xff {
			return rows, p
		}
		if p[0] != 0x00 {
			for range int(p[0]) + 1 { // definitions and EOF
				r.read()
			}
			for {
				p = r.read()
				if p[0] == 0xfe && len(p) < 9 || p[0] == 0xff {
					break
				}
				rows = append(rows, string(p[1:1+int(p[0])]))
			}
		}
		if p[0] == 0xff || moreResults(p) == 0 {
			return rows, p
		}
	}
}
