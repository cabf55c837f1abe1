package mysqlproxy_test

import (
	"encoding/binary"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/mysqlproxy"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// testRelay is the relay the wire tests run against: the server's default
// (event loops) unless KEYHOLE_TEST_RELAY names one. TestGoroutineRelay
// runs them again on goroutines.
var testRelay = mysqlproxy.Relay(os.Getenv("KEYHOLE_TEST_RELAY"))

// relayTests are the wire tests run against both relays: the protocol,
// the lifecycle, the audit of what runs, and real clients.
var relayTests = []string{
	"TestProtocolAbuse", "TestLocalInfileFromServer", "TestAuditClientGone", "TestAuditSessionEndedMidStatement",
	"TestAuditMatchesServerLog", "TestMariaDBCLI", "TestClients", "TestGoSQLDriver", "TestPreparedReexecuted",
	"TestTransactions", "TestMultiStatements", "TestMaxRows", "TestAudit", "TestDenialErrnos", "TestKill",
	"TestSessionEnds", "TestMaxConns", "TestMaxConnsPerAgent", "TestLoginFloodDoesNotLockAgentsOut", "TestShutdown", "TestPanicEndsOnlyItsConnection", "TestUpstreamLost",
	"TestShutdownDeadline", "TestCommandMemoryBounded", "TestBufferBudget", "TestCommands", "TestBadBytes",
	"TestLargePackets", "TestFieldListDeprecateEOF", "TestLoadDataLocalNeverNegotiated", "TestLongData",
	"TestFieldListDeniedNotAudited", "TestCommandSizes", "TestSessionSetup", "TestResetSetupFails",
	"TestRelayPipelined", "TestRelayClientNotReading", "TestRelayIdleSessions", "TestRelayDenialDecidedWithCheck",
}

// TestGoroutineRelay runs the wire tests again with the goroutine relay
// (in a child test process: the server's relay is chosen at start).
func TestGoroutineRelay(t *testing.T) {
	if testRelay != "" {
		t.Skip("this process runs the tests on one relay")
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^("+strings.Join(relayTests, "|")+")$", "-test.count=1")
	cmd.Env = append(os.Environ(), "KEYHOLE_TEST_RELAY="+string(mysqlproxy.RelayGoroutine))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the wire tests on the goroutine relay: %v\n%s", err, out)
	}
}

// TestRelayPipelined: commands a client sends without waiting for the
// answers (in one write) are answered in order, whole, each from sequence
// id 1, whatever each one is: a prepare and its execute, a statement the
// policy denies, one the loop hands to a goroutine (COM_INIT_DB), and
// COM_STMT_CLOSE, which has no answer.
func TestRelayPipelined(t *testing.T) {
	e := newEnv(t, envOpts{})
	r := e.dialRaw(t)
	r.login(e, "analyst-bot")
	id := r.prepare("SELECT id FROM orders WHERE id < ?")

	frame := func(payload []byte) []byte {
		n := len(payload)
		return append([]byte{byte(n), byte(n >> 8), byte(n >> 16), 0}, payload...)
	}
	exec := binary.LittleEndian.AppendUint32([]byte{0x17}, id)
	exec = append(exec, 0, 1, 0, 0, 0, 0, 1, 0x03, 0)
	exec = binary.LittleEndian.AppendUint32(exec, 4)
	var batch []byte
	batch = append(batch, frame(append([]byte{0x03}, "SELECT id FROM orders WHERE id = 7"...))...)
	batch = append(batch, frame(exec)...)
	batch = append(batch, frame(append([]byte{0x03}, "SELECT value FROM secrets"...))...)
	batch = append(batch, frame(append([]byte{0x02}, e.db.Name...))...)
	batch = append(batch, frame(binary.LittleEndian.AppendUint32([]byte{0x19}, id))...)
	batch = append(batch, frame(append([]byte{0x03}, "SELECT id FROM orders WHERE id = 9"...))...)
	_, err := r.nc.Write(batch)
	require.NoError(t, err)

	rows, last := r.readResult()
	assert.Equal(t, []string{"7"}, rows, "%q", last)
	n, last := r.readBinary()
	assert.Equal(t, 3, n, "%q", last)
	num, _, _, ok := sqlErr(r.read())
	assert.True(t, ok)
	assert.Contains(t, []uint16{1142, 1143}, num)
	p := r.read()
	assert.Equal(t, byte(0), p[0], "COM_INIT_DB: %q", p)
	rows, last = r.readResult()
	assert.Equal(t, []string{"9"}, rows, "%q", last)
	// The statement was closed: its id is unknown now.
	_, last = r.execute(id, 0, 1)
	num, _, _, ok = sqlErr(last)
	assert.True(t, ok)
	assert.EqualValues(t, 1243, num)
}

// TestRelayClientNotReading: a client that stops reading a large result
// set gets every row once it reads again (the relay waits for its socket
// rather than dropping or reordering anything), and the session goes on.
func TestRelayClientNotReading(t *testing.T) {
	e := newEnv(t, envOpts{})
	r := e.dialRaw(t)
	r.login(e, "analyst-bot")
	_ = r.nc.SetDeadline(time.Now().Add(60 * time.Second))
	r.command(append([]byte{0x03}, "SELECT id, pad FROM big ORDER BY id"...))
	// Not reading while the server sends ~21 MB: keyhole's writes to the
	// client fill its socket buffers and wait, so keyhole stops reading
	// the server, whose thread then waits writing to the network.
	require.Eventually(t, func() bool {
		var n int
		_ = e.direct().QueryRow("SELECT count(*) FROM information_schema.PROCESSLIST WHERE USER = ? AND INFO LIKE 'SELECT id, pad FROM big%' AND STATE = 'Writing to net'", e.upUser).Scan(&n)
		return n == 1
	}, 30*time.Second, 10*time.Millisecond, "the server never waited to write the result")
	p := r.read()
	require.Equal(t, byte(2), p[0], "column count: %q", p)
	for range 3 {
		r.read()
	}
	n := 0
	for {
		p = r.read()
		if p[0] == 0xfe && len(p) < 9 {
			break
		}
		n++
		if id := string(p[1 : 1+int(p[0])]); p[0] == 0xff || id != itoa(n) {
			t.Fatalf("row %d: %q", n, p)
		}
	}
	assert.Equal(t, 100000, n)
	rows, last := r.query("SELECT id FROM orders WHERE id = 3")
	assert.Equal(t, []string{"3"}, rows, "%q", last)
}

// TestRelayIdleSessions: on the loop relay an idle session holds no
// goroutine (the point of the loops); on the goroutine relay each holds one.
func TestRelayIdleSessions(t *testing.T) {
	e := newEnv(t, envOpts{})
	warm := e.dialRaw(t)
	warm.login(e, "analyst-bot")
	rows, _ := warm.query("SELECT id FROM orders WHERE id = 1")
	require.Equal(t, []string{"1"}, rows)

	const sessions = 30
	before := runtime.NumGoroutine()
	for range sessions {
		r := e.dialRaw(t)
		r.login(e, "analyst-bot")
		rows, last := r.query("SELECT id FROM orders WHERE id = 2")
		require.Equal(t, []string{"2"}, rows, "%q", last)
	}
	if testRelay == mysqlproxy.RelayGoroutine {
		assert.GreaterOrEqual(t, runtime.NumGoroutine()-before, sessions)
		return
	}
	// Goroutines of the logins and the driver's may still be ending.
	require.Eventually(t, func() bool { return runtime.NumGoroutine()-before < sessions/3 }, 5*time.Second, 20*time.Millisecond,
		"goroutines: %d before %d idle sessions, %d after", before, sessions, runtime.NumGoroutine())
}

// quietDecider is a Decider with CheckQuiet, as the gateway's is, counting
// what each is asked.
type quietDecider struct {
	sqlpolicy.Decider
	checks, quiet atomic.Int64
}

func (d *quietDecider) Check(p sqlpolicy.Principal, sql string, s sqlpolicy.Session) (*sqlpolicy.Decision, *sqlpolicy.Access) {
	d.checks.Add(1)
	return d.Decider.Check(p, sql, s)
}

func (d *quietDecider) CheckQuiet(p sqlpolicy.Principal, sql string, s sqlpolicy.Session) (*sqlpolicy.Decision, *sqlpolicy.Access) {
	d.quiet.Add(1)
	return d.Decider.Check(p, sql, s)
}

// TestRelayDenialDecidedWithCheck: with a Decider whose Check may open an
// access request (the gateway's), the loop decides with CheckQuiet and a
// statement it denies is decided again with Check, on a goroutine; the
// client gets the denial once and the audit has it once. The goroutine
// relay asks Check only.
func TestRelayDenialDecidedWithCheck(t *testing.T) {
	var d *quietDecider
	e := newEnv(t, envOpts{decider: func(real sqlpolicy.Decider) sqlpolicy.Decider {
		d = &quietDecider{Decider: real}
		return d
	}})
	r := e.dialRaw(t)
	r.login(e, "analyst-bot")
	d.checks.Store(0)
	d.quiet.Store(0)

	rows, last := r.query("SELECT id FROM orders WHERE id = 1")
	assert.Equal(t, []string{"1"}, rows, "%q", last)
	onLoop := testRelay != mysqlproxy.RelayGoroutine
	if onLoop {
		assert.EqualValues(t, 1, d.quiet.Load())
		assert.EqualValues(t, 0, d.checks.Load())
	} else {
		assert.EqualValues(t, 0, d.quiet.Load())
		assert.EqualValues(t, 1, d.checks.Load())
	}

	const denied = "SELECT value FROM secrets WHERE id = 1"
	_, last = r.query(denied)
	num, _, _, ok := sqlErr(last)
	require.True(t, ok, "%q", last)
	assert.Contains(t, []uint16{1142, 1143}, num)
	if onLoop {
		assert.EqualValues(t, 2, d.quiet.Load())
		assert.EqualValues(t, 1, d.checks.Load())
	} else {
		assert.EqualValues(t, 0, d.quiet.Load())
		assert.EqualValues(t, 2, d.checks.Load())
	}
	n := 0
	for _, ev := range e.audit.Events() {
		if ev.Kind == audit.KindStatement && ev.Decision == sqlpolicy.Deny && strings.Contains(ev.Statement, "secrets") {
			n++
		}
	}
	assert.Equal(t, 1, n, "denials audited")
	// The session goes on (back on the loop).
	rows, last = r.query("SELECT id FROM orders WHERE id = 2")
	assert.Equal(t, []string{"2"}, rows, "%q", last)
}
