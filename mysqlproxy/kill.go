package mysqlproxy

import (
	"context"
	"fmt"
	"time"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// An agent's KILL names a connection by the id keyhole's greeting gave it
// (what mysql_thread_id and CONNECTION_ID() return to the client), never
// the upstream's: the mysql CLI sends KILL QUERY <id> on a new connection
// when the user presses Ctrl-C, Connector/J's Statement.cancel does the
// same. Sent upstream as it is, the id would name some other thread. So
// keyhole never relays KILL: a KILL sent alone, of one of the agent's own
// connections, is carried out on that connection's upstream session; any
// other id gets the server's "unknown thread" error, whether or not
// another agent has a connection with it.

// ruleOwnConnection is the audit's rule for a KILL keyhole carried out.
const ruleOwnConnection = "own-connection"

// killOf returns the target of a text that is one KILL statement.
func killOf(acc *sqlpolicy.Access) *sqlpolicy.Kill {
	if acc == nil || len(acc.Statements) != 1 {
		return nil
	}
	return acc.Statements[0].Kill
}

func (c *conn) onKill(ctx context.Context, sql string, k *sqlpolicy.Kill, dec *sqlpolicy.Decision, start time.Time) error {
	target := c.srv.agentConn(k.ConnectionID, c.agent.Name)
	if target == nil {
		e := stmtErr(erNoSuchThread, "HY000", fmt.Sprintf("Unknown thread id: %d (keyhole: KILL takes the id keyhole gave one of agent %s's own connections in its greeting, which mysql_thread_id returns)", k.ConnectionID, c.agent.Name))
		c.auditStatement(sql, dec, start, e)
		return c.reply(e)
	}
	done := &sqlpolicy.Decision{Effect: sqlpolicy.Allow, Rule: ruleOwnConnection, Agent: c.agent.Name, Role: c.role,
		Redacted: dec.Redacted, Fingerprint: dec.Fingerprint}
	var e *sqlError
	switch {
	case k.Query && target == c:
		// The statement it would stop is this KILL.
	case k.Query:
		if err := target.killStatement(ctx); err != nil {
			c.log.Warn("KILL QUERY of the agent's connection", "target", target.id, "err", err)
			e = stmtErr(erUnknownError, "HY000", "keyhole: could not stop the statement upstream")
		}
	case target == c:
		// The server answers a KILL of the session itself with the error
		// that ends it.
		c.auditStatement(sql, done, start, nil)
		return errKilled
	default:
		target.stop(errKilled)
	}
	c.log.Info("KILL of the agent's own connection", "target", target.id, "query", k.Query)
	c.auditStatement(sql, done, start, e)
	if e != nil {
		return c.reply(e)
	}
	c.wbuf, c.seq = appendPacket(c.wbuf, c.seq, c.okPacket())
	return c.flushClientErr()
}

// okPacket is keyhole's own OK: nothing affected, the session's status.
func (c *conn) okPacket() []byte {
	c.mu.Lock()
	status := c.status
	c.mu.Unlock()
	p := []byte{0x00, 0, 0, byte(status), byte(status >> 8), 0, 0}
	if c.caps&clientSessionTrack != 0 {
		p = append(p, 0) // empty info, as a length-encoded string
	}
	return p
}

// agentConn returns the live connection with keyhole connection id id when
// agent has authenticated on it.
func (s *Server) agentConn(id uint64, agent string) *conn {
	if id > 0xffffffff {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.ids[uint32(id)]
	if c == nil || c.agentName() != agent {
		return nil
	}
	return c
}

// killStatement stops the statement the connection is running upstream,
// if any, on a side connection logged in as the same upstream user. A
// statement that ends meanwhile is not affected; like a kill sent to the
// server itself, one that starts meanwhile may be.
func (c *conn) killStatement(ctx context.Context) error {
	c.mu.Lock()
	if !c.busy || c.upThread == 0 || c.lease == nil || c.stopped {
		c.mu.Unlock()
		return nil
	}
	up, user, pw, thread := c.upstream, c.lease.User, c.lease.Password.Reveal(), c.upThread
	c.mu.Unlock()
	return c.srv.killQuery(ctx, up, user, pw, thread)
}
