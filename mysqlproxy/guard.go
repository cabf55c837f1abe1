package mysqlproxy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keyholedb/keyhole/internal/membudget"
)

// What bounds an authenticated session beyond the policy: the memory its
// commands may hold, the framing of every command, and the audit of a
// command whose answer does not complete.

// bufferWait bounds how long a client command waits for buffer memory.
const bufferWait = 10 * time.Second

// useBudget makes the client reader reserve large payloads from the
// server's budget (Limits.BufferMemory) from now on. Before
// authentication no packet may exceed maxPreAuthPacket, which the reader's
// own buffer covers.
func (c *conn) useBudget() {
	c.mu.Lock()
	c.done = make(chan struct{})
	if c.stopped {
		close(c.done)
	}
	c.mu.Unlock()
	rd := c.crd
	rd.budget, rd.wait, rd.done = c.srv.buffers, bufferWait, c.done
	rd.reserving = func(n int64, wait bool) {
		if wait {
			c.log.Debug("command waits for buffer memory", "bytes", n)
		} else {
			c.log.Debug("command reserves buffer memory", "bytes", n)
		}
	}
}

// readCommand reads the client's next command: a payload of at most
// Limits.MaxPacketSize whose first packet has sequence id 0, as the server
// requires (a client whose counter is off would misread every answer).
// Once a write to the client failed, the session ends here.
func (c *conn) readCommand() ([]byte, byte, error) {
	if c.lost != nil {
		return nil, 0, fmt.Errorf("client write: %w", errors.Join(errClientGone, c.lost))
	}
	_, seq, err := c.crd.header()
	if err == nil && seq != 0 {
		return nil, seq, errOutOfOrder
	}
	var p []byte
	if err == nil {
		p, seq, err = c.crd.readPayload(c.srv.limits.MaxPacketSize)
	}
	if err != nil {
		if errors.Is(err, membudget.ErrNoMemory) {
			if se := c.stopError(); se != nil {
				return nil, 0, se
			}
			return nil, 0, fmt.Errorf("%w: %w", errNoMemory, err)
		}
		return nil, 0, c.clientReadError(err)
	}
	return p, seq, nil
}

// clientLost records a failed write to the client. The command in flight
// may already have run upstream (a client that sends a write and closes at
// once), so keyhole reads its answer to the end and audits the server's
// outcome; the statement, if it is still running, is stopped so that a
// long result set is not read in full for nobody.
func (c *conn) clientLost(err error) {
	c.lost = err
	c.log.Info("client write failed; the answer of the command in flight is read for the audit", "err", err)
	c.mu.Lock()
	uc, l := c.upConn, c.loop
	c.mu.Unlock()
	go func() {
		if err := c.killStatement(c.srv.ctx); err != nil {
			// Without the kill the rest could be endless: give it up.
			c.log.Warn("stop the statement of a client that left", "err", err)
			switch {
			case l != nil:
				l.Post(c.posted(c.loopAbandon))
			case uc != nil:
				_ = uc.Close()
			}
		}
	}()
}

// abortRun audits a run whose answer did not arrive whole (the upstream
// was lost, the session was stopped or killed, the server broke the
// protocol): the statement reached the server, so it is in the audit,
// with the error that ended the session when the server reported none.
// Its effects on the session are not applied (the session ends).
func (c *conn) abortRun(r *run, err error) error {
	if r.err == nil {
		if r.err = wireError(err); r.err == nil {
			r.err = errLost
		}
	}
	c.finishRun(r)
	return err
}

// answerGrace bounds how long a stopped session waits for the answer of
// its statement once the statement was killed upstream.
const answerGrace = 2 * time.Second

// stopStatement ends the statement in flight of a session that stop
// ended (c.mu held). Closing the upstream socket would not stop it (the
// server notices a gone client only when it next writes), and would lose
// its outcome: the statement might still commit with the audit saying it
// failed. So no further command can be sent (the write side is shut), the
// statement is killed on a side connection, and the relay reads the
// server's answer, which arrives promptly after the kill (the statement
// interrupted, or done just before), for the audit; the socket closes
// only if the kill fails or the answer does not come within answerGrace.
func (c *conn) stopStatement() {
	up, user, pw, thread, uc := c.upstream, c.lease.User, c.lease.Password.Reveal(), c.upThread, c.upConn
	if cw, ok := uc.(writeCloser); !ok || cw.CloseWrite() != nil {
		_ = uc.Close()
	}
	go func() {
		if err := c.srv.killQuery(context.Background(), up, user, pw, thread); err != nil {
			c.log.Warn("stop upstream statement of ended session", "err", err)
			_ = uc.Close()
			return
		}
		_ = uc.SetReadDeadline(time.Now().Add(answerGrace))
	}()
}

// writeCloser is a connection whose write side can be shut on its own
// (*net.TCPConn, *tls.Conn).
type writeCloser interface{ CloseWrite() error }
