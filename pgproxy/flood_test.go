package pgproxy_test

import (
	"bytes"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
)

// A client that pipelines messages and never reads an answer gets
// backpressure, not a queue keyhole holds for it: each forwarded message
// keeps a request of some 230 bytes until answered, and 5-byte Syncs
// sent until the sockets' buffers toward and from the server were full
// took 336 MB on the loop relay. Not parallel: it measures the whole
// test process.
func TestPipelinedUnreadBounded(t *testing.T) {
	e := newEnv(t, envOpts{})
	r := e.raw(t)
	r.login(e, "analyst-bot")
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	chunk := bytes.Repeat(encode(&pgproto3.Sync{}), 20000)
	sent := 0
	for {
		// Until keyhole stops reading: the write then blocks.
		_ = r.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
		n, err := r.conn.Write(chunk)
		sent += n
		if err != nil {
			break
		}
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d Syncs sent; heap grew %d MB", sent/5, grown>>20)
	assert.Less(t, grown, int64(48<<20))
}
