package mysqlproxy_test

import (
	"encoding/binary"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// logEntry is one command in MariaDB's general log.
type logEntry struct{ typ, text string }

// serverLog turns MariaDB's general log on (to its table as well) until
// the test ends, and returns a function listing, in order, the commands
// keyhole's upstream login (this test's own user) ran, leaving out the
// logins, keyhole's session setup and its KILL QUERY side connections.
// The settings are global: they are put back, and the table emptied if
// the log was off before.
func serverLog(t *testing.T, e *env) func() []logEntry {
	admin := testmyAdmin(t)
	var on int
	var output string
	require.NoError(t, admin.QueryRow("SELECT @@global.general_log, @@global.log_output").Scan(&on, &output))
	if !strings.Contains(output, "TABLE") {
		_, err := admin.Exec("SET GLOBAL log_output = ?", output+",TABLE")
		require.NoError(t, err)
	}
	_, err := admin.Exec("SET GLOBAL general_log = 1")
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = admin.Exec("SET GLOBAL general_log = ?", on)
		_, _ = admin.Exec("SET GLOBAL log_output = ?", output)
		if on == 0 {
			_, _ = admin.Exec("TRUNCATE mysql.general_log")
		}
	})
	return func() []logEntry {
		rows, err := admin.Query("SELECT command_type, CONVERT(argument USING utf8mb4) FROM mysql.general_log WHERE user_host LIKE ?", e.upUser+"[%")
		require.NoError(t, err)
		defer rows.Close()
		var out []logEntry
		for rows.Next() {
			var l logEntry
			require.NoError(t, rows.Scan(&l.typ, &l.text))
			switch {
			case l.typ == "Connect" || l.typ == "Quit":
			case l.typ == "Query" && (strings.HasPrefix(l.text, "SET SESSION ") || strings.HasPrefix(l.text, "SELECT @@SESSION.sql_mode") || strings.HasPrefix(l.text, "KILL QUERY ")):
			default:
				out = append(out, l)
			}
		}
		require.NoError(t, rows.Err())
		return out
	}
}

// prepare sends COM_STMT_PREPARE and reads the definitions (no
// DEPRECATE_EOF), returning the statement id.
func (r *rawClient) prepare(sql string) uint32 {
	r.t.Helper()
	r.command(append([]byte{0x16}, sql...))
	p := r.read()
	require.Equal(r.t, byte(0), p[0], "prepare %s: %q", sql, p)
	cols, params := int(binary.LittleEndian.Uint16(p[5:])), int(binary.LittleEndian.Uint16(p[7:]))
	for _, k := range []int{params, cols} {
		if k > 0 {
			for range k + 1 {
				r.read()
			}
		}
	}
	return binary.LittleEndian.Uint32(p[1:])
}

// execute sends COM_STMT_EXECUTE of id with flags and INT parameters and
// reads the binary result: the number of rows and the last packet.
func (r *rawClient) execute(id uint32, flags byte, params ...int32) (rows int, last []byte) {
	r.t.Helper()
	b := binary.LittleEndian.AppendUint32([]byte{0x17}, id)
	b = append(b, flags, 1, 0, 0, 0)
	if len(params) > 0 {
		b = append(b, make([]byte, (len(params)+7)/8)...)
		b = append(b, 1)
		for range params {
			b = append(b, 0x03, 0)
		}
		for _, v := range params {
			b = binary.LittleEndian.AppendUint32(b, uint32(v))
		}
	}
	r.command(b)
	return r.readBinary()
}

func (r *rawClient) readBinary() (rows int, last []byte) {
	r.t.Helper()
	p := r.read()
	if p[0] == 0x00 || p[0] == 0xff {
		return 0, p
	}
	for range int(p[0]) + 1 {
		r.read()
	}
	for {
		p = r.read()
		if p[0] == 0xfe && len(p) < 9 || p[0] == 0xff {
			return rows, p
		}
		rows++
	}
}

// TestAuditMatchesServerLog: every command that runs a statement on the
// server is in the audit, in the server's order, with its true outcome:
// plain and multi-statement queries, pipelined queries, an error in the
// middle of a result set, a result cut by max_rows, prepared statements
// executed with a cursor requested (keyhole runs them without one and
// refuses COM_STMT_FETCH), with long data, after COM_STMT_RESET, and
// COM_INIT_DB. The server's general log is the reference; a refused
// statement is audited and absent from it.
func TestAuditMatchesServerLog(t *testing.T) {
	e := newEnv(t, envOpts{maxRows: 5, rawStatements: true})
	log := serverLog(t, e)
	r := e.dialRaw(t)
	r.login(e, "analyst-bot")

	_, last := r.query("INSERT INTO orders (id, item, amount) VALUES (301, 'a', 1)")
	require.Equal(t, byte(0), last[0], "%q", last)
	rows, last := r.query("SELECT id FROM orders WHERE id = 301; INSERT INTO orders (id, item, amount) VALUES (302, 'b', 2)")
	assert.Equal(t, []string{"301"}, rows)
	require.Equal(t, byte(0), last[0], "%q", last)
	// The second row's subquery returns two rows: the server fails the
	// statement after sending the first.
	rows, last = r.query("SELECT o1.id, (SELECT o2.id FROM orders o2 WHERE o2.id <= o1.id) FROM orders o1 ORDER BY o1.id")
	assert.Equal(t, []string{"1"}, rows)
	assertErr(t, last, 1242, "21000")
	_, last = r.query("SELECT id FROM big")
	assertErr(t, last, 1104, "42000")
	_, last = r.query("SELECT * FROM secrets")
	assertErr(t, last, 1142, "42000")

	// Pipelined: three queries in one write, answered in order.
	var batch []byte
	for _, q := range []string{"SELECT 1", "INSERT INTO orders (id, item, amount) VALUES (303, 'c', 3)", "SELECT 2"} {
		batch = append(batch, cmd("\x03"+q)...)
	}
	_, err := r.nc.Write(batch)
	require.NoError(t, err)
	rows, _ = r.readResult()
	assert.Equal(t, []string{"1"}, rows)
	_, last = r.readResult()
	require.Equal(t, byte(0), last[0], "%q", last)
	rows, _ = r.readResult()
	assert.Equal(t, []string{"2"}, rows)

	// A cursor asked for: the rows come with the execute.
	sel := r.prepare("SELECT id, item FROM orders WHERE id <= ?")
	n, last := r.execute(sel, 1 /* CURSOR_TYPE_READ_ONLY */, 3)
	assert.Equal(t, 3, n)
	require.Equal(t, byte(0xfe), last[0])
	assert.Zero(t, binary.LittleEndian.Uint16(last[3:])&0x40, "no cursor was opened")
	r.command(binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32([]byte{0x1c}, sel), 10))
	assertErr(t, r.read(), 1047, "08S01")
	n, last = r.execute(sel, 0, 100)
	assert.Equal(t, 5, n, "max_rows: %q", last)
	assertErr(t, last, 1104, "42000")

	// Long data, then execute; reset, then execute.
	ins := r.prepare("INSERT INTO orders (id, item, amount) VALUES (?, ?, 7)")
	long := binary.LittleEndian.AppendUint16(binary.LittleEndian.AppendUint32([]byte{0x18}, ins), 1)
	r.command(append(long, "long-item"...))
	b := binary.LittleEndian.AppendUint32([]byte{0x17}, ins)
	b = append(b, 0, 1, 0, 0, 0, 0, 1, 0x03, 0, 0xfd, 0)
	r.command(binary.LittleEndian.AppendUint32(b, 304))
	require.Equal(t, byte(0), r.read()[0])
	r.command(binary.LittleEndian.AppendUint32([]byte{0x1a}, ins))
	require.Equal(t, byte(0), r.read()[0])
	r.command(append(long, "after-reset"...))
	r.command(binary.LittleEndian.AppendUint32(b, 305))
	require.Equal(t, byte(0), r.read()[0])

	r.command(append([]byte{0x02}, e.db.Name...))
	require.Equal(t, byte(0), r.read()[0])
	r.command([]byte{0x01})
	require.True(t, r.closed())

	var stmts []audit.Event
	require.Eventually(t, func() bool {
		evs := e.audit.Events()
		return len(evs) > 0 && evs[len(evs)-1].Kind == audit.KindClose
	}, 5*time.Second, 10*time.Millisecond)
	denied := 0
	for _, ev := range e.audit.Events() {
		switch {
		case ev.Kind != audit.KindStatement:
		case ev.Decision == sqlpolicy.Allow:
			stmts = append(stmts, ev)
		default:
			denied++
		}
	}
	assert.Equal(t, 1, denied)
	var ran []logEntry
	for _, l := range log() {
		if l.typ == "Query" || l.typ == "Execute" || l.typ == "Init DB" {
			ran = append(ran, l)
		}
	}
	require.Len(t, stmts, len(ran), "audit %v\nserver %v", stmts, ran)
	for i, l := range ran {
		ev := stmts[i]
		switch l.typ {
		case "Query":
			assert.Equal(t, l.text, ev.Statement)
		case "Execute":
			// The audit has the prepared text, the log the values.
			re := "^" + strings.ReplaceAll(regexp.QuoteMeta(ev.Statement), `\?`, ".*") + "$"
			assert.Regexp(t, re, l.text)
		case "Init DB":
			assert.Equal(t, "USE `"+l.text+"`", ev.Statement)
		}
	}
	codes := map[string]string{}
	for _, ev := range stmts {
		if ev.ErrorCode != "" {
			codes[ev.Statement] += ev.ErrorCode + " "
		}
	}
	assert.Equal(t, map[string]string{
		"SELECT o1.id, (SELECT o2.id FROM orders o2 WHERE o2.id <= o1.id) FROM orders o1 ORDER BY o1.id": "1242/21000 ",
		"SELECT id FROM big":                        "1104/42000 ",
		"SELECT id, item FROM orders WHERE id <= ?": "1104/42000 ",
	}, codes)
	for _, item := range []string{"long-item", "after-reset"} {
		var n int
		require.NoError(t, e.direct().QueryRow("SELECT count(*) FROM orders WHERE item = ?", item).Scan(&n))
		assert.Equal(t, 1, n, item)
	}
}
