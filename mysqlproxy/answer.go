package mysqlproxy

import (
	"context"
	"encoding/binary"
	"fmt"
)

// An answer is the upstream's response to one command, walked packet by
// packet. Both relays use it: the goroutine relay reads each packet and
// feeds it to step (relayAnswer); the loop relay feeds step whatever
// packets a readable event brought and resumes on the next event. What
// the walk learns (rows, errors, status flags, prepared statement ids) is
// kept in the answer and the conn, so a walk the loop began can be
// finished by a goroutine (see leaveLoop).
type answer struct {
	kind answerKind
	ctx  context.Context // for the KILL QUERY after max_rows

	// ansResults: the run being answered.
	r     *run
	phase uint8 // 0: a result's first packet; 1: column definitions; 2: rows
	defs  int   // column definitions still to come
	cont  bool  // the previous row packet was maxPayload long: this one continues it
	more  bool  // SERVER_MORE_RESULTS_EXISTS on the last OK or EOF

	// killed receives the outcome of the KILL QUERY started when max_rows
	// was exceeded (killAsync).
	killed chan error

	// ansPrepare: the statement, registered when its answer completes.
	stmt    *prepared
	begun   bool // the first packet is in
	pending int  // definition packets still to come

	// The packet being passed (loop relay, and a walk handed from the
	// loop to a goroutine): its payload bytes not yet consumed, whether
	// they go to the client, and whether it ends the answer.
	inPacket bool
	rest     int
	keep     bool
	last     bool
	done     bool // the last packet is in (the loop waits for the KILL QUERY)
	// errPkt: the packet step just kept is an upstream ERR, relayed with
	// the login scrubbed from its message (scrubErrPacket).
	errPkt bool
}

type answerKind uint8

const (
	// ansResults answers COM_QUERY and COM_STMT_EXECUTE: one or more
	// results (OK, ERR, or a result set), rows counted against max_rows.
	ansResults answerKind = iota
	// ansPrepare answers COM_STMT_PREPARE: an ERR, or an OK with the
	// statement id followed by its parameter and column definitions.
	ansPrepare
	// ansOne is a one-packet answer (OK, ERR, EOF or a string): COM_PING,
	// COM_STATISTICS, COM_SET_OPTION, COM_STMT_RESET.
	ansOne
)

// step decides what to do with the next packet of a (payload length n,
// head the start of its payload: all of it unless it is larger than
// maxKeptReadBuf): whether it goes to the client, and whether it ends the
// answer. Past max_rows the rest of a result set is dropped, and
// a.killed is set when the KILL QUERY must start (killAsync).
func (c *conn) step(a *answer, n int, h []byte) (keep, last bool, err error) {
	switch a.kind {
	case ansOne:
		if len(h) > 0 && (h[0] == 0x00 || h[0] == 0xfe) && n < maxPayload {
			c.noteOK(h)
		}
		a.errPkt = len(h) > 0 && h[0] == 0xff
		return true, true, nil
	case ansPrepare:
		if !a.begun {
			a.begun = true
			switch {
			case len(h) > 0 && h[0] == 0xff:
				a.stmt, a.errPkt = nil, true
				return true, true, nil
			case len(h) < 12 || h[0] != 0x00 || n >= maxPayload:
				return false, false, c.upstreamProtocol("COM_STMT_PREPARE response")
			}
			a.stmt.id = binary.LittleEndian.Uint32(h[1:])
			cols := int(binary.LittleEndian.Uint16(h[5:]))
			params := int(binary.LittleEndian.Uint16(h[7:]))
			for _, k := range []int{params, cols} {
				if k > 0 && c.caps&clientDeprecateEOF == 0 {
					k++ // the EOF after the definitions
				}
				a.pending += k
			}
			return true, a.pending == 0, nil
		}
		a.pending--
		return true, a.pending == 0, nil
	}
	r := a.r
	switch a.phase {
	case 0:
		switch {
		case len(h) == 0:
			return false, false, c.upstreamProtocol("empty result packet")
		case h[0] == 0x00 && n < maxPayload:
			return !r.cut, !c.endResult(a, h), nil
		case h[0] == 0xff:
			if !r.cut {
				r.err, a.errPkt = c.errFrom(h), true
			}
			if se := c.stopError(); se != nil {
				return false, false, se // stopped (stopStatement): the client gets why
			}
			return !r.cut, true, nil
		case h[0] == 0xfb:
			// LOCAL INFILE request: CLIENT_LOCAL_FILES is never negotiated,
			// so only a broken or hostile server sends one. It waits for
			// the file now: the session ends, the client never sees it.
			return false, false, errLocalInfile
		}
		cols, _, ok := lenenc(h, 0)
		if !ok || cols == 0 || cols > 0xffff {
			return false, false, c.upstreamProtocol("column count")
		}
		a.phase, a.defs = 1, int(cols)
		if c.caps&clientDeprecateEOF == 0 {
			a.defs++
		}
		return !r.cut, false, nil
	case 1:
		if len(h) > 0 && h[0] == 0xff {
			return false, false, c.upstreamProtocol("error inside column definitions")
		}
		if a.defs--; a.defs == 0 {
			a.phase, a.cont, r.stmtRows = 2, false, 0
		}
		return !r.cut, false, nil
	}
	if a.cont {
		a.cont = n == maxPayload
		return !r.cut, false, nil
	}
	if len(h) > 0 && h[0] == 0xff {
		if !r.cut {
			r.err, a.errPkt = c.errFrom(h), true
		}
		if se := c.stopError(); se != nil {
			return false, false, se
		}
		return !r.cut, true, nil
	}
	if len(h) > 0 && h[0] == 0xfe && n < maxPayload {
		// EOF, or OK under CLIENT_DEPRECATE_EOF: a row cannot start with
		// 0xfe unless it is at least 2^24-1 bytes long.
		a.phase = 0
		return !r.cut, !c.endResult(a, h), nil
	}
	a.cont = n == maxPayload
	r.rows++
	r.stmtRows++
	if !r.cut && r.maxRows > 0 && r.stmtRows > r.maxRows {
		r.cut = true
		r.rows--
		r.err = stmtErr(erTooBigSelect, "42000", fmt.Sprintf("keyhole: the statement returned more than %d rows, the limit of role %s (max_rows); add a LIMIT or narrow the WHERE clause", r.maxRows, c.role))
		c.log.Info("max_rows exceeded; killing upstream statement", "max_rows", r.maxRows)
		a.killed = c.killAsync(a.ctx)
	}
	if r.cut {
		r.rows = min(r.rows, r.maxRows)
	}
	return !r.cut, false, nil
}

// endResult notes the OK or EOF that ends one result and reports whether
// more results follow (SERVER_MORE_RESULTS_EXISTS).
func (c *conn) endResult(a *answer, h []byte) bool {
	info, _ := parseOK(h, c.caps)
	c.noteOK(h)
	a.more = info.status&serverMoreResultsExist != 0
	return a.more
}

// relayAnswer walks the rest of a's answer (goroutine relay), then
// completes it.
func (c *conn) relayAnswer(a *answer) error {
	return c.answered(a, c.walk(a))
}

func (c *conn) walk(a *answer) error {
	if a.done {
		return nil
	}
	if a.inPacket {
		// Begun on the loop: the rest of the packet it was passing.
		a.inPacket = false
		if err := c.consumeRest(a.rest, a.keep); err != nil {
			return err
		}
		if a.last {
			return nil
		}
	}
	for {
		n, h, err := c.upNext()
		if err != nil {
			return err
		}
		keep, last, err := c.step(a, n, h)
		if err != nil {
			return err
		}
		if keep && a.errPkt {
			a.errPkt = false
			keep = !c.relayScrubbed(n, h)
		}
		if keep {
			err = c.relayCur(n)
		} else {
			err = c.skipCur(n)
		}
		if err != nil || last {
			return err
		}
	}
}

// answered completes an answer whose walk ended with err (nil: the answer
// is all in): its effects on the session, the client's last bytes, the
// audit. A non-nil return ends the session.
func (c *conn) answered(a *answer, err error) error {
	switch a.kind {
	case ansResults:
		r := a.r
		if err != nil {
			return c.abortRun(r, err)
		}
		if a.killed != nil {
			// The kill must land before the client's next command, or it
			// could stop that one instead.
			if kerr := <-a.killed; kerr != nil {
				c.log.Warn("kill upstream statement after max_rows", "err", kerr)
			}
			a.killed = nil
		}
		if r.cut {
			c.wbuf, c.seq = appendPacket(c.wbuf, c.seq, r.err.packet(nil))
		}
		if err := c.flushClientErr(); err != nil {
			return c.abortRun(r, err)
		}
		c.finishRun(r)
		return nil
	case ansPrepare:
		if err != nil {
			return err
		}
		if st := a.stmt; st != nil {
			c.stmts[st.id] = st
			c.lastStmt, c.hasLastStmt = st.id, true
		}
		// Allowed statements are audited when they run, with their rows.
		return c.flushClientErr()
	}
	if err != nil {
		return err
	}
	return c.flushClientErr()
}
