package pgproxy

import (
	"errors"
	"net"
	"time"

	"github.com/keyholedb/keyhole/config"
)

// Phase 5: the relay, on goroutines (this file) or, for a session with
// no TLS, on an event loop in its steady state (loop.go); both handle
// messages with the same functions. The client goroutine reads the client,
// decides, and forwards (client.go); the upstream side reads the
// upstream, answers the client and audits what ran (upstream.go). Every
// message forwarded upstream that the server answers is queued as a
// request (queue.go) before its bytes leave, so the upstream side matches
// each answer to its request by the protocol's rules alone.
//
// Who reads the upstream. While nothing is owed, nobody: an idle session
// is one goroutine blocked on the client. When the client's batch ends
// with a Sync or a Query (the server then answers everything sent without
// waiting for more from the client), the client goroutine reads the
// answers itself, relays them and only then reads the client again: one
// goroutine, and one write each way, per round trip. Otherwise (a batch
// ending in Flush or mid-block, pipelining, COPY, a write that could fill
// the socket while answers are owed) an upstream goroutine reads until
// nothing is owed, so that the server can never block writing answers
// while keyhole blocks writing to it.

// startRelay starts what watches the session for the relay's whole life,
// whichever goroutine or loop relays it: revocation and expiry (watch),
// and the idle timer.
func (c *conn) startRelay() {
	c.unwatch = c.watch()
	c.lastActive.Store(monoNow())
	if idle := c.srv.limits.IdleTimeout; idle > 0 {
		// Under mu: idleCheck re-arms the timer through c.idleTimer.
		c.mu.Lock()
		c.idleTimer = time.AfterFunc(idle, c.idleCheck)
		c.mu.Unlock()
	}
	_, plainClient := c.client.(*net.TCPConn)
	_, plainUp := c.upConn.(*net.TCPConn)
	c.loopable = c.srv.limits.Relay == config.RelayLoop && plainClient && plainUp
}

// relay runs the goroutine relay, on this goroutine, from where the
// session is until it ends (then it ends the session) or moves to an
// event loop (readClient returns errOnLoop; this goroutine then ends).
// err, when set, is why a loop handed the session over to end it.
//
// When the client leaves, the upstream still answers what it was sent
// before keyhole's Terminate (an INSERT the client sent just before
// closing commits in Postgres): those answers are read and audited before
// the upstream connection closes.
func (c *conn) relay(err error) {
	if err == nil {
		if ch := c.cancelling; ch != nil {
			// A loop's max_rows cut: its cancel lands before the
			// client's next message is read.
			select {
			case <-ch:
			case <-c.stopCh:
			}
			c.cancelling = nil
		}
		if len(c.wbuf) > 0 {
			// Answers a loop could not write yet.
			c.flushToClient()
		}
		err = c.readClient()
		if errors.Is(err, errOnLoop) {
			return
		}
	}
	c.end(c.relayEnd(err))
}

// relayEnd stops the relay once either direction ended with err. A panic
// ends only this connection: readClient recovers its own (so the session
// is still stopped and audited here), this function the rest.
func (c *conn) relayEnd(err error) (rerr error) {
	defer func() {
		if r := recover(); r != nil {
			rerr = c.panicked("panic in connection", r)
		}
	}()
	if errors.Is(err, errClientGone) && !c.keepUpstream() {
		c.goodbye()
		c.waitReader()
	}
	c.stop(err)
	c.waitReader()
	c.abandon()
	return err
}

// startReaderLocked starts the upstream goroutine; the caller holds mu
// and has checked that none runs. It reads until nothing is owed.
func (c *conn) startReaderLocked() {
	c.upReader = true
	done := make(chan struct{})
	c.upDone = done
	go func() {
		defer close(done)
		var err error
		func() {
			defer func() {
				if r := recover(); r != nil {
					err = c.panicked("panic in upstream relay", r)
				}
			}()
			err = c.readUpstream(false)
		}()
		if err != nil {
			c.stop(err)
			c.mu.Lock()
			c.upReader = false
			c.mu.Unlock()
		}
	}()
}

// ensureReader starts the upstream goroutine unless one runs.
func (c *conn) ensureReader() {
	c.mu.Lock()
	if !c.upReader {
		c.startReaderLocked()
	}
	c.mu.Unlock()
}

// waitReader waits until the last upstream goroutine started has ended.
func (c *conn) waitReader() {
	c.mu.Lock()
	done := c.upDone
	c.mu.Unlock()
	if done != nil {
		<-done
	}
}

// goodbye passes the client's departure on: Terminate after everything
// forwarded, which Postgres processes in order (rolling back a sync block
// the client left unfinished, as its own EOF would), then closes. The
// upstream goroutine is woken to decide whether any answer is still to
// come: after an error the server ignores Terminate until a Sync that will
// never arrive. (When nothing is owed no upstream goroutine runs, and
// none is needed.)
func (c *conn) goodbye() {
	c.mu.Lock()
	c.saidBye = true
	up := c.upConn
	c.mu.Unlock()
	c.upBuf = append(c.upBuffer(), terminateMsg...)
	_ = up.SetWriteDeadline(time.Now().Add(time.Second))
	_ = c.flushUp()
	if c.inflight.Load() > 0 {
		c.ensureReader()
	}
	// Answers still go to a client that only closed its sending side, as
	// Postgres sends them; one that does not read must not hold them up.
	_ = c.client.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_ = up.SetReadDeadline(time.Now())
}

// abandon audits the runs the session ended without an answer for (the
// upstream connection was lost or closed under them): they were sent, so
// they may have run. Runs the server skipped after an error did not, nor
// did what was still staged (its bytes never left). Both relay goroutines
// have ended.
func (c *conn) abandon() {
	u := &c.up
	c.mu.Lock()
	c.sent.moveTo(&u.q)
	c.mu.Unlock()
	skipping := u.skipping
	for r := u.q.front(); r != nil; r = u.q.front() {
		switch {
		case r.kind == reqSync:
			skipping = false
		case skipping:
		case r.kind == reqExecute || r.kind == reqQuery:
			c.auditExec(&r.exec, outcomeUnknown, time.Now())
		}
		u.q.pop()
	}
}

// watch ends the session when its credentials are revoked or the agent's
// authority expires, without a goroutine of its own: a timer for the
// expiry, and the server's one watcher per lease (leases are shared by
// the sessions of an agent and role). It returns what stops watching.
func (c *conn) watch() (stop func()) {
	var t *time.Timer
	if !c.agent.Expires.IsZero() {
		t = time.AfterFunc(time.Until(c.agent.Expires), func() {
			c.log.Info("agent authorization expired; ending session")
			c.stop(errExpired)
		})
	}
	unwatch := c.srv.leases.watch(c.lease, c)
	return func() {
		if t != nil {
			t.Stop()
		}
		unwatch()
	}
}

// revoked ends the session: its lease's credentials are no longer valid.
func (c *conn) revoked() {
	cause := error(nil)
	if c.lease.Cause != nil {
		cause = c.lease.Cause()
	}
	c.log.Warn("upstream credentials revoked; ending session", "cause", cause)
	c.stop(errRevoked)
}

// idleCheck runs on the idle timer: one timer per session, re-armed from
// here, so the relay itself sets no deadline and arms no timer per
// message. A session with a request in flight (a long statement, a COPY)
// is not idle; otherwise it is idle since the client last sent bytes or
// was last answered everything.
func (c *conn) idleCheck() {
	idle := c.srv.limits.IdleTimeout
	if c.inflight.Load() > 0 || c.copyIn.Load() {
		c.log.Debug("idle timer: a request is in flight")
		c.rearmIdle(idle)
		return
	}
	since := time.Duration(monoNow() - c.lastActive.Load())
	if since >= idle {
		c.log.Info("idle timeout; ending session", "idle", since.Round(time.Millisecond))
		c.stop(errIdle)
		return
	}
	c.rearmIdle(idle - since)
}

func (c *conn) rearmIdle(d time.Duration) {
	c.mu.Lock()
	if !c.stopped && c.idleTimer != nil {
		c.idleTimer.Reset(d)
	}
	c.mu.Unlock()
}

// outcome qualifies a statement event (audit.Event.Outcome).
type outcome string

const (
	outcomeDone      outcome = ""
	outcomeSuspended outcome = "suspended"
	outcomeUnknown   outcome = "unknown"
)
