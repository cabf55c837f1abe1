package audit

import (
	"errors"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// appendEvent appends ev as one JSON object, byte for byte what
// encoding/json's Marshal makes of it (field order, omitempty, HTML-safe
// string escaping, float format), without reflection or allocation. It
// fails where Marshal fails: a time that RFC 3339 cannot represent, a
// duration that is NaN or infinite. On error b is returned unchanged.
//
// A field added to Event or sqlpolicy.Reason must be added here too:
// TestAppendEventMatchesJSON fills every field by reflection and compares
// with encoding/json, so a forgotten one fails the test.
func appendEvent(b []byte, ev *Event) ([]byte, error) {
	return (*encoder)(nil).appendEvent(b, ev)
}

// appendEvent is the package's appendEvent, taking the parts that repeat
// from event to event from e's memos when e is not nil (see encoder).
func (e *encoder) appendEvent(b []byte, ev *Event) ([]byte, error) {
	b0 := len(b)
	b = append(b, `{"time":"`...)
	t, err := e.appendTime(b, ev.Time)
	if err != nil {
		return b[:b0], err
	}
	b = t
	if e != nil {
		b = e.kind.appendKind(b, ev.Kind)
		b = e.appendSession(b, ev)
		b = e.appendStatement(b, ev)
		b = e.appendVerdict(b, ev)
	} else {
		b = appendKind(b, ev.Kind)
		b = appendSession(b, ev)
		b = appendStatement(b, ev)
		b = appendVerdict(b, ev)
	}
	return appendRest(b, b0, ev)
}

// appendKind appends the time's closing quote and the kind.
func appendKind(b []byte, k Kind) []byte {
	return appendField(b, `","kind":`, string(k))
}

// appendSession appends the fields that stay the same for a session.
func appendSession(b []byte, ev *Event) []byte {
	b = appendField(b, `,"session":`, ev.Session)
	b = appendOpt(b, `,"protocol":`, ev.Protocol)
	b = appendOpt(b, `,"client":`, ev.Client)
	b = appendOpt(b, `,"agent":`, ev.Agent)
	b = appendOpt(b, `,"role":`, ev.Role)
	b = appendOpt(b, `,"database":`, ev.Database)
	return appendOpt(b, `,"auth_method":`, ev.AuthMethod)
}

// appendStatement appends the statement and its fingerprint.
func appendStatement(b []byte, ev *Event) []byte {
	b = appendOpt(b, `,"statement":`, ev.Statement)
	return appendOpt(b, `,"fingerprint":`, ev.Fingerprint)
}

// appendVerdict appends the decision, its rule and its reasons.
func appendVerdict(b []byte, ev *Event) []byte {
	b = appendOpt(b, `,"decision":`, string(ev.Decision))
	b = appendOpt(b, `,"rule":`, ev.Rule)
	if len(ev.Reasons) > 0 {
		b = append(b, `,"reasons":[`...)
		for i := range ev.Reasons {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendReason(b, &ev.Reasons[i])
		}
		b = append(b, ']')
	}
	return b
}

// appendRest appends the fields after the reasons and closes the object;
// on error it returns b[:b0].
func appendRest(b []byte, b0 int, ev *Event) ([]byte, error) {
	if ev.DurationMS != 0 {
		if math.IsNaN(ev.DurationMS) || math.IsInf(ev.DurationMS, 0) {
			return b[:b0], errors.New("audit: duration_ms is not a finite number")
		}
		b = append(b, `,"duration_ms":`...)
		b = appendFloat(b, ev.DurationMS)
	}
	if ev.Rows != 0 {
		b = append(b, `,"rows":`...)
		b = appendInt(b, ev.Rows)
	}
	if len(ev.ErrorCode)|len(ev.Error)|len(ev.Outcome)|len(ev.Request)|len(ev.Grant)|len(ev.Reviewer)|
		len(ev.Note)|len(ev.Purpose)|len(ev.Scope)|len(ev.Access) == 0 && ev.Expires.IsZero() {
		return append(b, '}'), nil // a statement that succeeded: none of the rest
	}
	b = appendOpt(b, `,"error_code":`, ev.ErrorCode)
	b = appendOpt(b, `,"error":`, ev.Error)
	b = appendOpt(b, `,"outcome":`, ev.Outcome)
	b = appendOpt(b, `,"request":`, ev.Request)
	b = appendOpt(b, `,"grant":`, ev.Grant)
	b = appendOpt(b, `,"reviewer":`, ev.Reviewer)
	b = appendOpt(b, `,"note":`, ev.Note)
	b = appendOpt(b, `,"purpose":`, ev.Purpose)
	b = appendOpt(b, `,"grant_scope":`, ev.Scope)
	if len(ev.Access) > 0 {
		b = append(b, `,"access":[`...)
		for i := range ev.Access {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendException(b, &ev.Access[i])
		}
		b = append(b, ']')
	}
	if !ev.Expires.IsZero() {
		b = append(b, `,"expires":"`...)
		t, err := ev.Expires.AppendText(b)
		if err != nil {
			return b[:b0], err
		}
		b = append(t, '"')
	}
	return append(b, '}'), nil
}

func appendException(b []byte, e *sqlpolicy.Exception) []byte {
	b = appendField(b, `{"verb":`, string(e.Verb))
	b = appendField(b, `,"table":`, e.Table)
	b = appendStrings(b, `,"columns":`, e.Columns)
	b = appendStrings(b, `,"labels":`, e.Labels)
	b = appendOpt(b, `,"rule":`, e.Rule)
	return append(b, '}')
}

// appendStrings appends an omitempty list of strings.
func appendStrings(b []byte, key string, ss []string) []byte {
	if len(ss) == 0 {
		return b
	}
	b = append(b, key...)
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

func appendReason(b []byte, r *sqlpolicy.Reason) []byte {
	b = appendField(b, `{"code":`, string(r.Code))
	b = appendOpt(b, `,"verb":`, string(r.Verb))
	b = appendOpt(b, `,"table":`, r.Table)
	b = appendOpt(b, `,"column":`, r.Column)
	b = appendOpt(b, `,"label":`, r.Label)
	b = appendOpt(b, `,"function":`, r.Func)
	b = appendOpt(b, `,"setting":`, r.Setting)
	b = appendOpt(b, `,"problem":`, string(r.Problem))
	b = appendOpt(b, `,"rule":`, r.Rule)
	b = appendOpt(b, `,"detail":`, r.Detail)
	b = appendOpt(b, `,"setting_kind":`, string(r.SettingKind))
	b = appendOpt(b, `,"limit":`, string(r.Limit))
	return append(b, '}')
}

// appendOpt appends an omitempty string field: key (with its leading comma
// and colon) and value, or nothing when s is empty.
func appendOpt(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	return appendField(b, key, s)
}

// appendFloat formats f as encoding/json does (ES6 number-to-string): %f
// in [1e-6, 1e21), otherwise exponent form without a padded exponent.
func appendFloat(b []byte, f float64) []byte {
	if n, ok := thousandths(f); ok {
		return appendThousandths(b, n)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-07 → e-7
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// thousandths returns n when f is the double nearest to n/1000 for a
// whole n in [1, 1e15): what a duration in whole microseconds, as
// milliseconds, is.
func thousandths(f float64) (int64, bool) {
	if !(f >= 0.001 && f < 1e12) {
		return 0, false
	}
	n := int64(f*1000 + 0.5)
	return n, float64(n)/1000 == f
}

// appendThousandths appends n/1000 in decimal, without trailing zeros in
// the fraction. For n below 1e15 that is the shortest decimal that reads
// back as float64(n)/1000, which is what strconv's shortest format (and so
// encoding/json) writes: a decimal of at most 15 significant digits reads
// back exactly, so two different ones never give the same double, and no
// shorter decimal than n/1000 can.
func appendThousandths(b []byte, n int64) []byte {
	b = appendInt(b, n/1000)
	frac := n % 1000
	if frac == 0 {
		return b
	}
	switch {
	case frac%100 == 0:
		return append(b, '.', byte('0'+frac/100))
	case frac%10 == 0:
		return append(b, '.', byte('0'+frac/100), byte('0'+frac/10%10))
	}
	return append(b, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
}

// appendInt is strconv.AppendInt(b, n, 10), without its call for the
// one- and two-digit numbers durations and row counts mostly are.
func appendInt(b []byte, n int64) []byte {
	switch {
	case n >= 0 && n < 10:
		return append(b, byte('0'+n))
	case n >= 10 && n < 100:
		return append(b, digitPairs[2*n], digitPairs[2*n+1])
	}
	return strconv.AppendInt(b, n, 10)
}

const hexDigits = "0123456789abcdef"

// jsonSafe[c] is true for the ASCII bytes encoding/json writes as they are
// (with HTML escaping on, as Marshal has it): printable, and not one of
// " \ < > &.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// unsafe8 has the high bit of a byte set where x holds a byte that
// encoding/json does not write as it is (see jsonSafe): so x is safe when
// unsafe8(x)&highs == 0. The flags are only exact as a whole: a flagged
// byte can flag the bytes above it too.
func unsafe8(x uint64) uint64 {
	// A byte b below n sets its high bit in b - n when b and n are below
	// 0x80 (x's own high bits flag the rest); a byte equal to c becomes 0
	// in x ^ c, and a zero byte z sets its high bit in (z - 1) &^ z. A
	// borrow crosses into the next byte only from a byte already flagged.
	// < and > differ only in bit 1, " and & only in bit 2, so setting that
	// bit first tests two bytes at once; no other byte becomes > or & so.
	bad := x | (x - 0x20*ones)
	y := (x | 0x02*ones) ^ ('>' * ones)
	bad |= (y - ones) &^ y
	y = (x | 0x04*ones) ^ ('&' * ones)
	bad |= (y - ones) &^ y
	y = x ^ ('\\' * ones)
	bad |= (y - ones) &^ y
	return bad
}

// safe8 reports whether all eight bytes of x are ones encoding/json writes
// as they are (jsonSafe): ASCII, not a control byte, none of " \ < > &.
func safe8(x uint64) bool { return unsafe8(x)&highs == 0 }

// load8 is the first eight bytes of s, little-endian (one load).
func load8(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// load4 is the first four bytes of s, little-endian (one load).
func load4(s string) uint64 {
	_ = s[3]
	return uint64(uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24)
}

// plain reports whether encoding/json writes every byte of s as it is, so
// that s needs only its quotes. It reads s in words without a byte loop:
// the last word overlaps the one before when len(s) is not a multiple of
// eight, a string of four to seven bytes is two overlapping halves, and a
// shorter one is its bytes padded with 'a'.
func plain(s string) bool {
	n := len(s)
	var bad uint64
	switch {
	case n >= 8:
		i := 0
		for ; i+8 <= n; i += 8 {
			bad |= unsafe8(load8(s[i:]))
		}
		if i < n {
			bad |= unsafe8(load8(s[n-8:]))
		}
	case n >= 4:
		bad = unsafe8(load4(s) | load4(s[n-4:])<<32)
	case n > 0:
		// s[0], s[n/2], s[n-1] are all of s's one to three bytes.
		bad = unsafe8(0x6161616161000000 | uint64(s[0]) | uint64(s[n>>1])<<8 | uint64(s[n-1])<<16)
	}
	return bad&highs == 0
}

// appendString appends s as a JSON string the way encoding/json does:
// short escapes for \b \f \n \r \t, \u00XX for other control bytes and for
// < > &, \ufffd for each byte of invalid UTF-8, and \u2028 \u2029 escaped.
func appendString(b []byte, s string) []byte {
	if !plain(s) {
		return appendEscaped(b, s)
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendField appends key (with its leading comma and colon) and s as a
// JSON string.
func appendField(b []byte, key, s string) []byte {
	b = append(b, key...)
	if !plain(s) {
		return appendEscaped(b, s)
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendEscaped is appendString for a string with bytes to escape.
func appendEscaped(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		// Eight bytes at a time while none needs escaping (most text).
		if i+8 <= len(s) && safe8(load8(s[i:i+8])) {
			i += 8
			continue
		}
		if c := s[i]; c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are valid in JSON but end lines in JavaScript.
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
