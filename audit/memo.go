package audit

import (
	"time"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// An encoder is what Record encodes with: the line buffer, and memos of
// the encoded parts of the events it encoded last. A session's statement
// events differ mostly in time, duration and rows: its session fields, and
// often its statement and verdict, are the previous event's, so encoding
// them again (checking every byte for escaping) repeats the same work. A
// memo keeps the source strings and the bytes they encoded to, and is used
// only when the event's strings are equal to its sources, compared by
// content (equal pointers make that a length compare): so what a memo
// gives is what encoding would give, whatever the strings' origin.
//
// An encoder belongs to one goroutine at a time: Record takes one from
// encoders (a sync.Pool, so one per P in steady state, each P's sessions
// sharing its memos) and puts it back when done.
type encoder struct {
	line []byte

	// The second the last event's time fell in, in its location, as
	// RFC 3339 ("2026-12-06T17:33:08" then the zone, "Z" or "+05:30"): a
	// zone's offset changes only on a whole second, so a time in the same
	// second and location differs only in its fraction. loc is nil when
	// secText is not valid.
	sec     int64
	loc     *time.Location
	secText []byte

	kind      kindMemo
	sessions  [32]sessionMemo // by a hash of the session id
	statement statementMemo
	verdict   verdictMemo
}

// memoMax is the longest encoded part a memo keeps; a longer one (a big
// statement) is encoded each time rather than held on to.
const memoMax = 512

// keep copies the encoded part p into text, reusing its memory, and
// reports whether p was short enough to keep.
func keep(text *[]byte, p []byte) bool {
	if len(p) > memoMax {
		return false
	}
	*text = append((*text)[:0], p...)
	return true
}

// appendTime appends t in RFC 3339 with nanoseconds, as Time.AppendText
// (and so encoding/json) does, failing where it fails (and then, like
// AppendText, returning no slice).
func (e *encoder) appendTime(b []byte, t time.Time) ([]byte, error) {
	if e == nil {
		return t.AppendText(b)
	}
	sec, loc := t.Unix(), t.Location()
	if sec != e.sec || loc != e.loc {
		// Formatting fails for the same years and zone offsets whatever
		// the fraction, so the second formats if and only if t does.
		e.loc = nil
		text, err := time.Unix(sec, 0).In(loc).AppendText(e.secText[:0])
		if err != nil {
			return nil, err
		}
		e.sec, e.loc, e.secText = sec, loc, text
	}
	// Years 0 to 9999 (the ones that format) are four digits wide, so the
	// date and time are always 19 bytes.
	b = append(b, e.secText[:19]...)
	if ns := uint32(t.Nanosecond()); ns != 0 {
		b = appendFraction(b, ns)
	}
	return append(b, e.secText[19:]...), nil
}

// appendFraction appends ns (1 to 999999999) as RFC3339Nano does: a dot
// and nine digits without their trailing zeros.
func appendFraction(b []byte, ns uint32) []byte {
	var d [10]byte
	d[0] = '.'
	for i := 9; i > 0; i-- {
		d[i] = byte('0' + ns%10)
		ns /= 10
	}
	k := len(d)
	for d[k-1] == '0' {
		k--
	}
	return append(b, d[:k]...)
}

type kindMemo struct {
	src  Kind
	text []byte
}

func (m *kindMemo) appendKind(b []byte, k Kind) []byte {
	if len(m.text) > 0 && k == m.src {
		return append(b, m.text...)
	}
	n := len(b)
	b = appendKind(b, k)
	if keep(&m.text, b[n:]) {
		m.src = k
	}
	return b
}

type sessionMemo struct {
	session, protocol, client, agent, role, database, authMethod string
	text                                                         []byte
}

func (m *sessionMemo) is(ev *Event) bool {
	return len(m.text) > 0 && ev.Session == m.session && ev.Protocol == m.protocol &&
		ev.Client == m.client && ev.Agent == m.agent && ev.Role == m.role &&
		ev.Database == m.database && ev.AuthMethod == m.authMethod
}

func (e *encoder) appendSession(b []byte, ev *Event) []byte {
	m := &e.sessions[sessionSlot(ev.Session)]
	if m.is(ev) {
		return append(b, m.text...)
	}
	n := len(b)
	b = appendSession(b, ev)
	m.text = m.text[:0]
	if keep(&m.text, b[n:]) {
		m.session, m.protocol, m.client, m.agent = ev.Session, ev.Protocol, ev.Client, ev.Agent
		m.role, m.database, m.authMethod = ev.Role, ev.Database, ev.AuthMethod
	}
	return b
}

// sessionSlot hashes the session id (keyhole's are 16 hex digits; the
// approval service's "replica:" and an id) to an index in sessions.
func sessionSlot(s string) int {
	h := uint64(len(s))
	if len(s) >= 8 {
		h ^= load8(s[len(s)-8:])
	}
	return int(h * 0x9e3779b97f4a7c15 >> (64 - 5))
}

type statementMemo struct {
	statement, fingerprint string
	text                   []byte
}

func (m *statementMemo) appendStatement(b []byte, ev *Event) []byte {
	if len(m.text) > 0 && ev.Statement == m.statement && ev.Fingerprint == m.fingerprint {
		return append(b, m.text...)
	}
	n := len(b)
	b = appendStatement(b, ev)
	if len(b) == n {
		return b // nothing to remember: an event without a statement
	}
	m.text = m.text[:0]
	if keep(&m.text, b[n:]) {
		m.statement, m.fingerprint = ev.Statement, ev.Fingerprint
	}
	return b
}

// verdictMemo remembers verdicts of at most one reason, the usual number.
type verdictMemo struct {
	decision sqlpolicy.Effect
	rule     string
	reasons  int // 0 or 1
	reason   sqlpolicy.Reason
	text     []byte
}

func (m *verdictMemo) appendVerdict(b []byte, ev *Event) []byte {
	if len(ev.Reasons) > 1 {
		return appendVerdict(b, ev)
	}
	if len(m.text) > 0 && ev.Decision == m.decision && ev.Rule == m.rule && len(ev.Reasons) == m.reasons &&
		(m.reasons == 0 || ev.Reasons[0] == m.reason) {
		return append(b, m.text...)
	}
	n := len(b)
	b = appendVerdict(b, ev)
	if len(b) == n {
		return b
	}
	m.text = m.text[:0]
	if keep(&m.text, b[n:]) {
		m.decision, m.rule, m.reasons = ev.Decision, ev.Rule, len(ev.Reasons)
		m.reason = sqlpolicy.Reason{}
		if m.reasons == 1 {
			m.reason = ev.Reasons[0]
		}
	}
	return b
}
