package pgproxy

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"
)

// Phase 5: the relay. The client goroutine (this one) reads the client,
// decides, and forwards (client.go); the upstream goroutine reads the
// upstream, answers the client and audits what ran (upstream.go). Every
// message forwarded upstream that the server answers is queued as a
// request (queue.go) before its bytes leave, so the upstream goroutine
// matches each answer to its request by the protocol's rules alone.

// relay runs until either direction ends. When the client leaves, the
// upstream still answers what it was sent before keyhole's Terminate (an
// INSERT the client sent just before closing commits in Postgres): those
// answers are read and audited before the upstream connection closes.
func (c *conn) relay(ctx context.Context) error {
	quit := make(chan struct{})
	defer close(quit)
	go c.watch(quit)
	c.lastActive.Store(time.Now().UnixNano())
	if idle := c.srv.limits.IdleTimeout; idle > 0 {
		// Under mu: idleCheck re-arms the timer through c.idleTimer.
		c.mu.Lock()
		t := time.AfterFunc(idle, c.idleCheck)
		c.idleTimer = t
		c.mu.Unlock()
		defer t.Stop()
	}

	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		var err error
		func() {
			defer func() {
				if r := recover(); r != nil {
					c.log.Error("panic in upstream relay", "panic", r, "stack", string(debug.Stack()))
					err = fatal(codeInternalError, "internal error", fmt.Errorf("panic: %v", r))
				}
			}()
			err = c.readUpstream()
		}()
		c.stop(err)
	}()

	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				c.log.Error("panic in client relay", "panic", r, "stack", string(debug.Stack()))
				err = fatal(codeInternalError, "internal error", fmt.Errorf("panic: %v", r))
			}
		}()
		return c.readClient()
	}()
	if errors.Is(err, errClientGone) {
		c.goodbye()
		<-upDone
	}
	c.stop(err)
	<-upDone
	c.abandon()
	return err
}

// goodbye passes the client's departure on: Terminate after everything
// forwarded, which Postgres processes in order (rolling back a sync block
// the client left unfinished, as its own EOF would), then closes. The
// upstream goroutine is woken to decide whether any answer is still to
// come: after an error the server ignores Terminate until a Sync that will
// never arrive.
func (c *conn) goodbye() {
	c.mu.Lock()
	c.saidBye = true
	up := c.upConn
	c.mu.Unlock()
	c.upBuf = append(c.upBuf, terminateMsg...)
	_ = up.SetWriteDeadline(time.Now().Add(time.Second))
	_ = c.flushUp()
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
			c.auditExec(&r.exec, outcomeUnknown)
		}
		u.q.pop()
	}
}

// watch ends the session when its credentials are revoked or the agent's
// authority expires.
func (c *conn) watch(quit <-chan struct{}) {
	var expiry <-chan time.Time
	if !c.agent.Expires.IsZero() {
		t := time.NewTimer(time.Until(c.agent.Expires))
		defer t.Stop()
		expiry = t.C
	}
	select {
	case <-c.lease.Done:
		cause := error(nil)
		if c.lease.Cause != nil {
			cause = c.lease.Cause()
		}
		c.log.Warn("upstream credentials revoked; ending session", "cause", cause)
		c.stop(errRevoked)
	case <-expiry:
		c.log.Info("agent authorization expired; ending session")
		c.stop(errExpired)
	case <-quit:
	}
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
	since := time.Since(time.Unix(0, c.lastActive.Load()))
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
