package mysqlproxy_test

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/myanalyze"
)

// query sends COM_QUERY and reads the whole text-protocol response (the
// raw client does not negotiate DEPRECATE_EOF), returning the rows' first
// column over all result sets and the final packet.
func (r *rawClient) query(sql string) (rows []string, last []byte) {
	r.t.Helper()
	r.command(append([]byte{0x03}, sql...))
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
				n := int(p[0])
				rows = append(rows, string(p[1:1+n]))
			}
		}
		if p[0] == 0xff || moreResults(p) == 0 {
			return rows, p
		}
	}
}

// moreResults is SERVER_MORE_RESULTS_EXISTS of an EOF or OK packet.
func moreResults(p []byte) uint16 {
	if p[0] == 0xfe {
		return binary.LittleEndian.Uint16(p[3:]) & 8
	}
	i := 1
	for range 2 {
		if p[i] < 0xfb {
			i++
		} else {
			i += 1 + map[byte]int{0xfc: 2, 0xfd: 3, 0xfe: 8}[p[i]]
		}
	}
	return binary.LittleEndian.Uint16(p[i:]) & 8
}

func assertErr(t *testing.T, p []byte, num uint16, state string) string {
	t.Helper()
	gotNum, gotState, msg, ok := sqlErr(p)
	require.True(t, ok, "want ERR %d, got %q", num, p)
	assert.Equal(t, num, gotNum, msg)
	assert.Equal(t, state, gotState)
	return msg
}

func TestCommands(t *testing.T) {
	e := newEnv(t, envOpts{})
	r := e.dialRaw(t)
	r.login(e, "analyst-bot")
	sess := e.dec.lastSession()
	db, known := sess.Database()
	assert.Equal(t, e.db.Name, db, "connect database given to the analyzer session")
	assert.True(t, known)
	// The role's limits are in force (the server's default is none).
	rows, last := r.query("SELECT @@max_statement_time")
	assert.Equal(t, []string{"90.000000"}, rows)
	rows, _ = r.query("SELECT @@idle_transaction_timeout")
	assert.Equal(t, []string{"60"}, rows)

	rows, last = r.query("SELECT id FROM orders WHERE id <= 2; SELECT id, name FROM customers ORDER BY id")
	assert.Equal(t, []string{"1", "2", "1", "2"}, rows)
	assert.Equal(t, byte(0xfe), last[0])

	t.Run("COM_INIT_DB", func(t *testing.T) {
		// Not the upstream's database: refused, the session goes on.
		r.command(append([]byte{0x02}, "mysql"...))
		assertErr(t, r.read(), 1044, "42000")
		r.command(append([]byte{0x02}, e.db.Name...))
		require.Equal(t, byte(0x00), r.read()[0])
	})
	t.Run("COM_FIELD_LIST only readable columns", func(t *testing.T) {
		assert.Equal(t, []string{"id", "name"}, r.fieldList("customers"), "email is labelled pii.email")
	})
	t.Run("refused commands keep the session", func(t *testing.T) {
		for _, cmd := range [][]byte{
			{0x11, 'x', 0},           // COM_CHANGE_USER
			{0x0c, 1, 0, 0, 0},       // COM_PROCESS_KILL
			{0x12, 4, 0, 0, 0, 0, 0}, // COM_BINLOG_DUMP
			{0x1e, 0, 0, 0, 0},       // COM_BINLOG_DUMP_GTID
			{0x15, 1, 0, 0, 0},       // COM_REGISTER_SLAVE
			{0x08},                   // COM_SHUTDOWN
			{0x1c, 1, 0, 0, 0, 1, 0, 0, 0},
			{0x99},
		} {
			r.command(cmd)
			msg := assertErr(t, r.read(), 1047, "08S01")
			assert.Contains(t, msg, "keyhole")
		}
		rows, _ := r.query("SELECT 1")
		assert.Equal(t, []string{"1"}, rows)
	})
	t.Run("statement ids", func(t *testing.T) {
		// An id keyhole did not see prepared is refused like the server would.
		r.command([]byte{0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0})
		assertErr(t, r.read(), 1243, "HY000")
		r.command([]byte{0x17, 0xff, 0xff, 0xff, 0xff, 0, 1, 0, 0, 0})
		assertErr(t, r.read(), 1243, "HY000")
		r.command([]byte{0x1a, 7, 0, 0, 0})
		assertErr(t, r.read(), 1243, "HY000")
		// Prepare, then execute by MariaDB's "last prepared" id, with a cursor.
		r.command(append([]byte{0x16}, "SELECT id, item FROM orders WHERE id = 3"...))
		p := r.read()
		require.Equal(t, byte(0), p[0], "%q", p)
		id := binary.LittleEndian.Uint32(p[1:])
		cols := int(binary.LittleEndian.Uint16(p[5:]))
		for range cols + 1 {
			r.read()
		}
		r.command([]byte{0x17, 0xff, 0xff, 0xff, 0xff, 1 /* CURSOR_TYPE_READ_ONLY */, 1, 0, 0, 0})
		p = r.read()
		require.Equal(t, byte(2), p[0], "column count, %q", p)
		for range 3 {
			r.read() // two definitions, EOF
		}
		row := r.read()
		assert.Equal(t, byte(0), row[0], "binary row")
		eof := r.read()
		require.Equal(t, byte(0xfe), eof[0])
		assert.Zero(t, binary.LittleEndian.Uint16(eof[3:])&0x40, "no cursor was opened")
		r.command(binary.LittleEndian.AppendUint32([]byte{0x19}, id)) // COM_STMT_CLOSE: no answer
		r.command(append(binary.LittleEndian.AppendUint32([]byte{0x17}, id), 0, 1, 0, 0, 0))
		assertErr(t, r.read(), 1243, "HY000")
	})
	t.Run("statement prepared in another database", func(t *testing.T) {
		// MariaDB runs a prepared statement in the database it was
		// prepared in: after a change of database, keyhole would decide it
		// in the wrong one, so it asks for a new prepare.
		id := r.prepare("SELECT id FROM orders WHERE id = 1")
		execute := append(binary.LittleEndian.AppendUint32([]byte{0x17}, id), 0, 1, 0, 0, 0)
		_, last := r.query("USE information_schema")
		require.Equal(t, byte(0), last[0], "%q", last)
		r.command(execute)
		msg := assertErr(t, r.read(), 1243, "HY000")
		assert.Contains(t, msg, "prepare it again")
		_, last = r.query("USE " + e.db.Name)
		require.Equal(t, byte(0), last[0], "%q", last)
		r.command(execute)
		p := r.read()
		require.Equal(t, byte(1), p[0], "one column, %q", p)
		r.read() // definition
		r.read() // EOF
		assert.Equal(t, byte(0), r.read()[0], "binary row")
		require.Equal(t, byte(0xfe), r.read()[0])
		r.command(binary.LittleEndian.AppendUint32([]byte{0x19}, id))
	})
	t.Run("COM_PING COM_STATISTICS COM_RESET_CONNECTION", func(t *testing.T) {
		r.command([]byte{0x0e})
		assert.Equal(t, byte(0), r.read()[0])
		r.command([]byte{0x09})
		assert.Contains(t, string(r.read()), "Uptime")
		r.command(append([]byte{0x16}, "SELECT 1"...))
		p := r.read()
		require.Equal(t, byte(0), p[0])
		id := binary.LittleEndian.Uint32(p[1:])
		r.read()
		r.read()
		// An agent may lower its limits; a reset returns every session
		// variable to the server's global value, and keyhole sets the
		// role's again.
		_, last := r.query("SET max_statement_time = 5")
		require.Equal(t, byte(0), last[0], "%q", last)
		rows, _ := r.query("SELECT @@max_statement_time")
		assert.Equal(t, []string{"5.000000"}, rows)
		r.command([]byte{0x1f})
		assert.Equal(t, byte(0), r.read()[0])
		rows, _ = r.query("SELECT @@max_statement_time")
		assert.Equal(t, []string{"90.000000"}, rows)
		db, known := sess.Database()
		assert.Equal(t, e.db.Name, db)
		assert.True(t, known)
		// The reset dropped the upstream's statements; keyhole forgot them.
		r.command(append(binary.LittleEndian.AppendUint32([]byte{0x17}, id), 0, 1, 0, 0, 0))
		assertErr(t, r.read(), 1243, "HY000")
	})
	t.Run("COM_QUIT", func(t *testing.T) {
		r.command([]byte{0x01})
		assert.True(t, r.closed())
	})
}

func TestBadBytes(t *testing.T) {
	e := newEnv(t, envOpts{limits: config.Limits{MaxMessageSize: 1 << 20}})
	for name, send := range map[string][]byte{
		"short COM_STMT_EXECUTE": {5, 0, 0, 0, 0x17, 1, 0, 0, 0},
		"empty command":          {0, 0, 0, 0},
		"packet over the limit":  {0, 0, 0x20, 0, 0x03, 'S'},
		"16 MB announced":        {0xff, 0xff, 0xff, 0, 0x03},
	} {
		t.Run(name, func(t *testing.T) {
			r := e.dialRaw(t)
			r.login(e, "analyst-bot")
			_, err := r.nc.Write(send)
			require.NoError(t, err)
			p := r.read()
			num, state, _, ok := sqlErr(p)
			require.True(t, ok, "%q", p)
			assert.Contains(t, []uint16{1047, 1153}, num)
			assert.Equal(t, "08S01", state)
			assert.True(t, r.closed())
		})
	}
}

func TestLargePackets(t *testing.T) {
	admin := testmyAdmin(t)
	var old int64
	require.NoError(t, admin.QueryRow("SELECT @@global.max_allowed_packet").Scan(&old))
	_, err := admin.Exec("SET GLOBAL max_allowed_packet = 64 * 1024 * 1024")
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = admin.Exec("SET GLOBAL max_allowed_packet = ?", old) })

	// The analyzer refuses texts over 1 MiB by default.
	e := newEnv(t, envOpts{analyzer: myanalyze.Options{MaxBytes: 32 << 20}})
	big := strings.Repeat("k", 20<<20)
	q := "SELECT LENGTH('" + big + "')"
	db := e.open(e.cfg("analyst-bot"))
	ctx := context.Background()

	// Client → upstream: a 20 MB COM_QUERY travels as two packets.
	var n int
	require.NoError(t, db.QueryRowContext(ctx, q).Scan(&n))
	assert.Equal(t, 20<<20, n)
	// Upstream → client: a 20 MB row, and one of exactly 2^24-1 bytes
	// (followed by an empty packet).
	for _, size := range []int{20971520, 16777211} {
		var s string
		require.NoError(t, db.QueryRowContext(ctx, "SELECT REPEAT('y', "+itoa(size)+")").Scan(&s))
		assert.Equal(t, size, len(s))
	}
}

// fieldList sends COM_FIELD_LIST and returns the column names up to the
// terminating packet (EOF, or OK with header 0xfe under DEPRECATE_EOF).
func (r *rawClient) fieldList(table string) []string {
	r.t.Helper()
	r.command(append(append([]byte{0x04}, table...), 0))
	var names []string
	for {
		p := r.read()
		if p[0] == 0xfe {
			return names
		}
		require.NotEqual(r.t, byte(0xff), p[0], "%q", p)
		i := 0
		for range 4 {
			i += 1 + int(p[i])
		}
		names = append(names, string(p[i+1:i+1+int(p[i])]))
	}
}

func TestFieldListDeprecateEOF(t *testing.T) {
	e := newEnv(t, envOpts{})
	for _, caps := range []uint32{rawDefaultCaps | cConnectWithDB, rawDefaultCaps | cConnectWithDB | cDeprecateEOF} {
		r := e.dialRaw(t)
		r.greeting()
		r.write(r.handshakeResponse(caps, 45, "analyst-bot", []byte(e.signer("analyst-bot", time.Hour)), e.db.Name, pluginClearText))
		require.Equal(t, byte(0), r.read()[0])
		assert.Equal(t, []string{"id", "name"}, r.fieldList("customers"), "caps %#x", caps)
		// The session goes on after the list.
		r.command([]byte{0x0e})
		assert.Equal(t, byte(0), r.read()[0])
	}
}

// TestLoadDataLocalNeverNegotiated: even a LOAD DATA LOCAL the policy let
// through (here a decider allows it; the analyzer denies it) cannot read
// the agent's files: keyhole never negotiates CLIENT_LOCAL_FILES, so the
// server refuses the statement itself.
func TestLoadDataLocalNeverNegotiated(t *testing.T) {
	q := "LOAD DATA LOCAL INFILE '/etc/hostname' INTO TABLE orders"
	e := newEnv(t, envOpts{decider: func(d sqlpolicy.Decider) sqlpolicy.Decider { return allowing{d, []string{q}} }})
	r := e.dialRaw(t)
	r.greeting()
	// The client asks for LOCAL_FILES (1<<7); keyhole masks it.
	r.write(r.handshakeResponse(rawDefaultCaps|cConnectWithDB|1<<7, 45, "analyst-bot", []byte(e.signer("analyst-bot", time.Hour)), e.db.Name, pluginClearText))
	require.Equal(t, byte(0), r.read()[0])
	before := e.count("orders")
	_, last := r.query(q)
	num, _, msg, ok := sqlErr(last)
	require.True(t, ok, "want an ERR, got %q", last)
	assert.Contains(t, []uint16{1148, 4166}, num, msg)
	assert.Equal(t, before, e.count("orders"))
	rows, _ := r.query("SELECT 1")
	assert.Equal(t, []string{"1"}, rows)
}

// TestLongData: COM_STMT_SEND_LONG_DATA and COM_STMT_RESET reach the
// statement they name, and the execute that follows uses the data.
func TestLongData(t *testing.T) {
	e := newEnv(t, envOpts{})
	r := e.dialRaw(t)
	r.login(e, "analyst-bot")
	r.command(append([]byte{0x16}, "INSERT INTO orders (id, item, amount) VALUES (?, ?, ?)"...))
	p := r.read()
	require.Equal(t, byte(0), p[0], "%q", p)
	id := binary.LittleEndian.Uint32(p[1:])
	for range 3 + 1 { // three parameter definitions and EOF
		r.read()
	}
	longData := func(param uint16, data string) {
		b := binary.LittleEndian.AppendUint32([]byte{0x18}, id)
		b = binary.LittleEndian.AppendUint16(b, param)
		r.command(append(b, data...)) // no answer
	}
	execute := func(item int) []byte {
		b := binary.LittleEndian.AppendUint32([]byte{0x17}, id)
		b = append(b, 0, 1, 0, 0, 0) // no cursor, one iteration
		b = append(b, 0, 1)          // null bitmap, new parameters bound
		b = append(b, 0x03, 0, 0xfd, 0, 0xfd, 0)
		b = binary.LittleEndian.AppendUint32(b, uint32(item))
		// parameter 1 comes from long data
		b = append(b, 1, '7')
		r.command(b)
		return r.read()
	}
	longData(1, "long-")
	longData(1, "item")
	require.Equal(t, byte(0), execute(200)[0])
	var item string
	require.NoError(t, e.direct().QueryRow("SELECT item FROM orders WHERE id = 200").Scan(&item))
	assert.Equal(t, "long-item", item)

	// COM_STMT_RESET drops data sent but not used.
	longData(1, "dropped")
	r.command(binary.LittleEndian.AppendUint32([]byte{0x1a}, id))
	require.Equal(t, byte(0), r.read()[0])
	longData(1, "kept")
	require.Equal(t, byte(0), execute(201)[0])
	require.NoError(t, e.direct().QueryRow("SELECT item FROM orders WHERE id = 201").Scan(&item))
	assert.Equal(t, "kept", item)
}

// TestFieldListDeniedNotAudited: COM_FIELD_LIST of a table the role may not
// read — what the mysql CLI's completion sends for every table SHOW TABLES
// lists — is refused without an audit event; an allowed one is audited
// once, with the columns it listed as its rows, and the session goes on.
func TestFieldListDeniedNotAudited(t *testing.T) {
	e := newEnv(t, envOpts{})
	r := e.dialRaw(t)
	r.login(e, "analyst-bot")
	for _, table := range []string{"secrets", "no_such_table"} {
		r.command(append(append([]byte{0x04}, table...), 0))
		p := r.read()
		num, _, msg, ok := sqlErr(p)
		require.True(t, ok, "want ERR, got %q", p)
		assert.Contains(t, []uint16{1142, 1146}, num, msg)
	}
	assert.Equal(t, []string{"id", "name"}, r.fieldList("customers"), "email is labelled pii.email")
	r.command([]byte{0x0e})
	require.Equal(t, byte(0), r.read()[0])

	var stmts []audit.Event
	for _, ev := range e.audit.Events() {
		if ev.Kind == audit.KindStatement {
			stmts = append(stmts, ev)
		}
	}
	require.Len(t, stmts, 1, "%+v", stmts)
	assert.Contains(t, stmts[0].Statement, "customers")
	assert.Equal(t, sqlpolicy.Allow, stmts[0].Decision)
	assert.Equal(t, int64(2), stmts[0].Rows)
}

// TestCommandSizes: commands that keyhole writes itself while it arms the
// wait for the answer (up to 16 KiB framed) and larger ones written the
// ordinary way both get their answers, text and prepared.
func TestCommandSizes(t *testing.T) {
	e := newEnv(t, envOpts{})
	db := e.open(e.cfg("analyst-bot"))
	ctx := context.Background()
	for _, n := range []int{1, 16<<10 - 40, 16<<10 - 10, 16 << 10, 64 << 10} {
		q := "SELECT LENGTH('" + strings.Repeat("k", n) + "')"
		var got int
		require.NoError(t, db.QueryRowContext(ctx, q).Scan(&got), "text of %d", n)
		assert.Equal(t, n, got)
		require.NoError(t, db.QueryRowContext(ctx, "SELECT LENGTH(?)", strings.Repeat("p", n)).Scan(&got), "parameter of %d", n)
		assert.Equal(t, n, got)
	}
}
