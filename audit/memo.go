package audit

import (
	"slices"
	"time"
	"unsafe"

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

	// Each memo table is indexed by a hash of one of its sources, so that
	// the sessions that share a P (and their statements and rules) do not
	// keep replacing one another's memos.
	kind       kindMemo
	sessions   [32]sessionMemo   // by session id
	statements [16]statementMemo // by fingerprint
	verdicts   [8]verdictMemo    // by rule
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
	hi, lo := ns/1e5, ns%1e5 // 4 and 5 digits
	d[1], d[2] = digitPairs[hi/100*2], digitPairs[hi/100*2+1]
	d[3], d[4] = digitPairs[hi%100*2], digitPairs[hi%100*2+1]
	d[5] = byte('0' + lo/1e4)
	lo %= 1e4
	d[6], d[7] = digitPairs[lo/100*2], digitPairs[lo/100*2+1]
	d[8], d[9] = digitPairs[lo%100*2], digitPairs[lo%100*2+1]
	k := len(d)
	for d[k-1] == '0' {
		k--
	}
	// One copy of all ten bytes (array stores, not a memmove call), then
	// the trailing zeros cut off.
	n := len(b)
	if cap(b)-n < len(d) {
		b = slices.Grow(b, len(d))
	}
	*(*[10]byte)(b[n : n+len(d)]) = d
	return b[:n+k]
}

// digitPairs is "00" "01" … "99".
var digitPairs = func() (t [200]byte) {
	for i := range 100 {
		t[2*i], t[2*i+1] = byte('0'+i/10), byte('0'+i%10)
	}
	return t
}()

// same is a == b, without a call when a and b are the same bytes (a
// memo's source and the next event's field, usually) or empty.
func same(a, b string) bool {
	return len(a) == len(b) && (len(a) == 0 || unsafe.StringData(a) == unsafe.StringData(b) || a == b)
}

// onlyCodeAndRule reports whether r has no field set but Code and Rule.
func onlyCodeAndRule(r *sqlpolicy.Reason) bool {
	return len(r.Verb)|len(r.Table)|len(r.Column)|len(r.Label)|len(r.Func)|len(r.Setting)|
		len(r.Problem)|len(r.Detail)|len(r.SettingKind)|len(r.Limit) == 0
}

// sameReason is *a == *b, field by field with same.
func sameReason(a, b *sqlpolicy.Reason) bool {
	if onlyCodeAndRule(a) && onlyCodeAndRule(b) {
		// An allowed statement's reason: one length test for the rest.
		return same(string(a.Code), string(b.Code)) && same(a.Rule, b.Rule)
	}
	return same(string(a.Code), string(b.Code)) && same(a.Rule, b.Rule) && same(string(a.Verb), string(b.Verb)) &&
		same(a.Table, b.Table) && same(a.Column, b.Column) && same(a.Label, b.Label) && same(a.Func, b.Func) &&
		same(a.Setting, b.Setting) && same(string(a.Problem), string(b.Problem)) && same(a.Detail, b.Detail) &&
		same(string(a.SettingKind), string(b.SettingKind)) && same(string(a.Limit), string(b.Limit))
}

type kindMemo struct {
	src  Kind
	text []byte
}

func (m *kindMemo) appendKind(b []byte, k Kind) []byte {
	if len(m.text) > 0 && same(string(k), string(m.src)) {
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
	return len(m.text) > 0 && same(ev.Session, m.session) && same(ev.Protocol, m.protocol) &&
		same(ev.Client, m.client) && same(ev.Agent, m.agent) && same(ev.Role, m.role) &&
		same(ev.Database, m.database) && same(ev.AuthMethod, m.authMethod)
}

func (e *encoder) appendSession(b []byte, ev *Event) []byte {
	m := &e.sessions[slot(ev.Session)%uint(len(e.sessions))]
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

// slot hashes s, its length and its last eight bytes (the varying end of
// session ids, fingerprints and rule names), to an index of a memo table.
func slot(s string) uint {
	h := uint64(len(s))
	if len(s) >= 8 {
		h ^= load8(s[len(s)-8:])
	} else if len(s) > 0 {
		h ^= uint64(s[0])<<8 | uint64(s[len(s)-1])<<16
	}
	return uint(h * 0x9e3779b97f4a7c15 >> 32)
}

// statementMemo keeps a copy of its sources rather than the strings: a
// raw statement's text can be a slice of a client's whole message, which
// the memo would otherwise keep alive.
type statementMemo struct {
	src  []byte // statement then fingerprint
	n    int    // the statement's length in src
	text []byte
}

func (e *encoder) appendStatement(b []byte, ev *Event) []byte {
	m := &e.statements[slot(ev.Fingerprint)%uint(len(e.statements))]
	if len(m.text) > 0 && len(ev.Statement) == m.n && len(ev.Statement)+len(ev.Fingerprint) == len(m.src) &&
		string(m.src[:m.n]) == ev.Statement && string(m.src[m.n:]) == ev.Fingerprint {
		return append(b, m.text...)
	}
	n := len(b)
	b = appendStatement(b, ev)
	if len(b) == n {
		return b // nothing to remember: an event without a statement
	}
	m.text = m.text[:0]
	if keep(&m.text, b[n:]) {
		m.src = append(append(m.src[:0], ev.Statement...), ev.Fingerprint...)
		m.n = len(ev.Statement)
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

func (e *encoder) appendVerdict(b []byte, ev *Event) []byte {
	if len(ev.Reasons) > 1 {
		return appendVerdict(b, ev)
	}
	m := &e.verdicts[slot(ev.Rule)%uint(len(e.verdicts))]
	if len(m.text) > 0 && same(string(ev.Decision), string(m.decision)) && same(ev.Rule, m.rule) &&
		len(ev.Reasons) == m.reasons && (m.reasons == 0 || sameReason(&ev.Reasons[0], &m.reason)) {
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
