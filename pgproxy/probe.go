package pgproxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// Phase 4, after login: the session probe. Where upstream sessions do not
// log in as the catalog's login (Vault dynamic credentials), each starts
// in a state the catalog does not describe (its own search path, from role
// settings or from its USAGE on the schemas of the database's default),
// and the analyzer must learn it before deciding anything: the Decider's
// LoginProbe names one query, which keyhole runs as a simple
// Query before the client gets ReadyForQuery, and hands the one row to
// the session (sqlpolicy.ProbeLearner). With static logins there is no
// probe and no extra round trip.

// errProbe marks a failed session probe (the cause says why).
var errProbe = errors.New("session probe failed")

// maxProbeRow bounds the probe's DataRow: a search path of a few names.
const maxProbeRow = 64 << 10

// probeSession runs the session probe, if the agent's upstream needs one,
// on the logged-in upstream session (c.upConn, c.upRd) and reads its
// answer to the end: RowDescription, one DataRow, CommandComplete and
// ReadyForQuery, with NoticeResponse and ParameterStatus allowed between
// (ParameterStatus is relayed, as at login). An ErrorResponse, a row
// count other than one, or a row the session does not understand fails
// the session: deciding on the catalog's search path instead would decide
// on relations Postgres does not read.
func (c *conn) probeSession(deadline time.Time) error {
	q := c.srv.cfg.Decider.LoginProbe(c.agent.Name)
	if q == "" {
		return nil
	}
	learner, ok := c.session.(sqlpolicy.ProbeLearner)
	if !ok {
		return fmt.Errorf("%w: session %T cannot take the probe's answer", errProbe, c.session)
	}
	c.mu.Lock()
	up := c.upConn
	c.mu.Unlock()
	if up == nil {
		return fmt.Errorf("%w: no upstream connection", errProbe)
	}
	_ = up.SetDeadline(deadline)
	defer func() { _ = up.SetDeadline(time.Time{}) }()

	msg := appendCString(appendMsgHeader(make([]byte, 0, 6+len(q)), 'Q'), q)
	finishMsg(msg, 0)
	if _, err := up.Write(msg); err != nil {
		return fmt.Errorf("%w: write: %w", errProbe, err)
	}
	var row [][]byte
	rows := 0
	var failed error
	for {
		typ, raw, err := c.upRd.next()
		if err != nil {
			return fmt.Errorf("%w: read: %w", errProbe, err)
		}
		body := raw[5:]
		switch typ {
		case 'T', 'C', 'N':
		case 'D':
			rows++
			if len(body) > maxProbeRow {
				failed = fmt.Errorf("%w: a row of %d bytes", errProbe, len(body))
				continue
			}
			if row, err = dataRow(body); err != nil {
				failed = fmt.Errorf("%w: %w", errProbe, err)
			}
		case 'E':
			// The server skips to ReadyForQuery; keyhole ends the session
			// without reading it.
			return fmt.Errorf("%w: %w", errProbe, serverError(body))
		case 'S':
			name, _, _ := bytes.Cut(body, []byte{0})
			if bytes.EqualFold(name, sessionAuthorization) {
				c.send(&pgproto3.ParameterStatus{Name: string(name), Value: c.user})
			} else {
				c.wbuf = append(c.wbuf, raw...)
			}
		case 'Z':
			if len(body) != 1 {
				return fmt.Errorf("%w: malformed ReadyForQuery", errProbe)
			}
			c.mu.Lock()
			c.txStatus = body[0]
			c.mu.Unlock()
			switch {
			case failed != nil:
				return failed
			case rows != 1:
				return fmt.Errorf("%w: %d rows, want 1", errProbe, rows)
			case body[0] != 'I':
				return fmt.Errorf("%w: transaction status %q after the probe", errProbe, body[0])
			}
			c.sessMu.Lock()
			err := learner.LearnProbe(row)
			c.sessMu.Unlock()
			if err != nil {
				return fmt.Errorf("%w: %w", errProbe, err)
			}
			if c.srv.reuse.enabled() {
				// A later session on this backend learns the same row.
				c.probeRow = cloneRow(row)
			}
			return nil
		default:
			return fmt.Errorf("%w: unexpected message %q", errProbe, typ)
		}
	}
}

// dataRow splits a DataRow body into copies of its values (nil for NULL).
func dataRow(body []byte) ([][]byte, error) {
	if len(body) < 2 {
		return nil, errors.New("malformed DataRow")
	}
	n := int(binary.BigEndian.Uint16(body))
	body = body[2:]
	row := make([][]byte, 0, n)
	for range n {
		if len(body) < 4 {
			return nil, errors.New("malformed DataRow")
		}
		l := int32(binary.BigEndian.Uint32(body))
		body = body[4:]
		if l < 0 {
			row = append(row, nil)
			continue
		}
		if int(l) > len(body) {
			return nil, errors.New("malformed DataRow")
		}
		row = append(row, bytes.Clone(body[:l]))
		body = body[l:]
	}
	if len(body) != 0 {
		return nil, errors.New("malformed DataRow")
	}
	return row, nil
}
