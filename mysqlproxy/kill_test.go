package mysqlproxy_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// TestKill: an agent's KILL names its connections by the ids keyhole's
// greetings gave them (what the mysql CLI sends on Ctrl-C, from a new
// connection). keyhole carries it out on that connection's upstream
// session; an id that is not one of the same agent's connections gets the
// server's "unknown thread" error and changes nothing.
func TestKill(t *testing.T) {
	e := newEnv(t, envOpts{})
	const q = "SELECT id FROM big LIMIT 1"
	// blocked starts q on a new connection of agent, where it waits for
	// the table lock until killed.
	blocked := func(agent string) *rawClient {
		r := e.dialRaw(t)
		r.login(e, agent)
		before := e.running(q)
		r.command(append([]byte{0x03}, q...))
		require.Eventually(t, func() bool { return e.running(q) == before+1 }, 10*time.Second, 10*time.Millisecond)
		return r
	}
	killer := e.dialRaw(t)
	killer.login(e, "analyst-bot")
	kill := func(r *rawClient, sql string) []byte {
		_, last := r.query(sql)
		return last
	}

	unlock := e.lockTable("big")
	victim := blocked("analyst-bot")

	t.Run("another agent's connection", func(t *testing.T) {
		other := e.dialRaw(t)
		other.login(e, "other-bot")
		for _, sql := range []string{fmt.Sprintf("KILL QUERY %d", victim.connID), fmt.Sprintf("KILL %d", victim.connID)} {
			assertErr(t, kill(other, sql), 1094, "HY000")
		}
		assert.Equal(t, 1, e.running(q), "the statement still runs")
	})
	t.Run("unknown id", func(t *testing.T) {
		assertErr(t, kill(killer, "KILL QUERY 4294967295"), 1094, "HY000")
		assertErr(t, kill(killer, "KILL QUERY 99999999999"), 1094, "HY000")
	})
	t.Run("not alone in the text", func(t *testing.T) {
		msg := assertErr(t, kill(killer, fmt.Sprintf("SELECT 1; KILL QUERY %d", victim.connID)), 1142, "42000")
		assert.Contains(t, msg, "KILL")
		assert.Equal(t, 1, e.running(q))
	})
	t.Run("KILL QUERY of the agent's own connection", func(t *testing.T) {
		last := kill(killer, fmt.Sprintf("KILL QUERY %d", victim.connID))
		require.Equal(t, byte(0), last[0], "OK, %q", last)
		assertErr(t, victim.read(), 1317, "70100") // query execution was interrupted
		require.Eventually(t, func() bool { return e.running(q) == 0 }, 10*time.Second, 10*time.Millisecond)
		unlock()
		rows, _ := victim.query("SELECT count(*) FROM orders")
		assert.Equal(t, []string{"20"}, rows, "the connection goes on")
	})
	t.Run("KILL QUERY of itself", func(t *testing.T) {
		last := kill(killer, fmt.Sprintf("KILL QUERY %d", killer.connID))
		require.Equal(t, byte(0), last[0], "%q", last)
		rows, _ := killer.query("SELECT 1")
		assert.Equal(t, []string{"1"}, rows, "the statement it stops is the KILL: the next one runs")
	})
	t.Run("KILL CONNECTION", func(t *testing.T) {
		last := kill(killer, fmt.Sprintf("KILL CONNECTION %d", victim.connID))
		require.Equal(t, byte(0), last[0], "%q", last)
		assertErr(t, victim.read(), 1927, "70100")
		assert.True(t, victim.closed())
	})
	t.Run("KILL of itself", func(t *testing.T) {
		assertErr(t, kill(killer, fmt.Sprintf("KILL %d", killer.connID)), 1927, "70100")
		assert.True(t, killer.closed())
	})

	var kills []audit.Event
	require.Eventually(t, func() bool {
		kills = kills[:0]
		for _, ev := range e.audit.Events() {
			if ev.Kind == audit.KindStatement && ev.Rule == "own-connection" {
				kills = append(kills, ev)
			}
		}
		return len(kills) == 4
	}, 5*time.Second, 10*time.Millisecond)
	for _, ev := range kills {
		assert.Equal(t, sqlpolicy.Allow, ev.Decision)
		assert.NotContains(t, ev.Statement, fmt.Sprint(victim.connID), "audited redacted")
	}
}
