package mysqlproxy_test

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/mysqlproxy"
)

// A session may hold at most Limits.MaxPrepared prepared statements
// (keyhole keeps each for the session's life): one more prepare gets 1461
// (42000), and the session goes on.
func TestPreparedStatementsBounded(t *testing.T) {
	e := newEnv(t, envOpts{})
	r := e.dialRaw(t)
	r.login(e, "analyst-bot")
	max := mysqlproxy.DefaultMaxPrepared

	// prepare pipelines n COM_STMT_PREPAREs of SELECT 1 and returns the
	// statement ids.
	prepare := func(n int) []uint32 {
		t.Helper()
		var out []byte
		for range n {
			p := append([]byte{0x16}, "SELECT 1"...)
			out = append(out, byte(len(p)), 0, 0, 0)
			out = append(out, p...)
		}
		_, err := r.nc.Write(out)
		require.NoError(t, err)
		var ids []uint32
		for range n {
			p := r.read()
			require.Equal(t, byte(0), p[0], "%q", p)
			ids = append(ids, binary.LittleEndian.Uint32(p[1:]))
			r.read() // the column definition
			r.read() // EOF
		}
		return ids
	}
	var ids []uint32
	for len(ids) < max {
		ids = append(ids, prepare(min(500, max-len(ids)))...)
	}
	r.command(append([]byte{0x16}, "SELECT 1"...))
	assertErr(t, r.read(), 1461, "42000")

	// Closing one makes room.
	r.command(binary.LittleEndian.AppendUint32([]byte{0x19}, ids[0]))
	id := prepare(1)[0]
	r.command(append([]byte{0x16}, "SELECT 2"...))
	assertErr(t, r.read(), 1461, "42000")

	// In step with the server: a statement still runs.
	r.command(append(binary.LittleEndian.AppendUint32([]byte{0x17}, id), 0, 1, 0, 0, 0))
	p := r.read()
	require.Equal(t, byte(1), p[0], "%q", p) // one column
	r.read()                                 // definition
	r.read()                                 // EOF
	row := r.read()
	assert.Equal(t, byte(0), row[0], "binary row %q", row)
	assert.Equal(t, byte(0xfe), r.read()[0])
	rows, last := r.query("SELECT id FROM orders WHERE id = 3")
	assert.Equal(t, []string{"3"}, rows)
	assert.NotEqual(t, byte(0xff), last[0])
}
