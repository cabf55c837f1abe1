package audit_test

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// Pieces random strings are made of: everything encoding/json escapes or
// passes through differently (quotes, backslash, HTML characters, control
// bytes, DEL, line and paragraph separators, multibyte runes, invalid and
// truncated UTF-8).
var stringPieces = []string{
	"a", "Z", "0", " ", "SELECT * FROM t WHERE x = $1", "\"", "\\", "/", "<", ">", "&", "'",
	"\x00", "\x01", "\x1f", "\b", "\f", "\n", "\r", "\t", "\x7f",
	"\u2028", "\u2029", "é", "漢", "😀", "\ufffd", "\xff", "\xc3", "\xe6\xbc", "\xed\xa0\x80",
}

func randString(r *rand.Rand) string {
	var sb strings.Builder
	for range r.IntN(12) {
		sb.WriteString(stringPieces[r.IntN(len(stringPieces))])
	}
	return sb.String()
}

func randFloat(r *rand.Rand) float64 {
	switch r.IntN(6) {
	case 0:
		return float64(r.IntN(10000))
	case 1:
		return r.Float64() * 1e-7 // exponent form, small
	case 2:
		return r.Float64() * 1e25 // exponent form, large
	case 3:
		return -r.Float64() * 1000
	case 4:
		return math.Float64frombits(r.Uint64()&^(0x7ff<<52) | uint64(r.IntN(0x7fe)+1)<<52) // any finite
	default:
		return r.Float64() * 100
	}
}

var zones = []*time.Location{
	time.UTC, time.FixedZone("", 0), time.FixedZone("A", 5*3600+30*60), time.FixedZone("B", -(9*3600 + 45*60 + 17)),
	time.FixedZone("C", 23*3600+59*60),
}

func randTime(r *rand.Rand) time.Time {
	// Years 0 to 9999, the range RFC 3339 can hold.
	lo := time.Date(0, 1, 2, 0, 0, 0, 0, time.UTC).UnixNano() / 1e9
	hi := time.Date(9999, 12, 30, 0, 0, 0, 0, time.UTC).Unix()
	t := time.Unix(lo+r.Int64N(hi-lo), r.Int64N(1e9))
	if r.IntN(3) == 0 {
		t = t.Truncate(time.Second) // no fraction
	}
	return t.In(zones[r.IntN(len(zones))])
}

var timeType = reflect.TypeFor[time.Time]()

// fill sets v (a field of Event or below) to a random value, leaving it
// zero with probability zero in [0,1) so that omitempty is exercised. A
// type it does not know fails the test: a field added to Event must be
// taught to the filler, and then the comparison shows whether appendEvent
// writes it.
func fill(t *testing.T, r *rand.Rand, v reflect.Value, path string, zero float64) {
	t.Helper()
	if r.Float64() < zero {
		return
	}
	switch {
	case v.Type() == timeType:
		v.Set(reflect.ValueOf(randTime(r)))
	case v.Kind() == reflect.String:
		v.SetString(randString(r))
	case v.Kind() == reflect.Int64 || v.Kind() == reflect.Int:
		v.SetInt(r.Int64() >> r.IntN(64) * int64(1-2*r.IntN(2)))
	case v.Kind() == reflect.Float64:
		v.SetFloat(randFloat(r))
	case v.Kind() == reflect.Struct:
		for i := range v.NumField() {
			f := v.Type().Field(i)
			require.True(t, f.IsExported(), "%s.%s: unexported fields are not encoded", path, f.Name)
			fill(t, r, v.Field(i), path+"."+f.Name, zero)
		}
	case v.Kind() == reflect.Slice:
		n := r.IntN(4)
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := range n {
			fill(t, r, s.Index(i), path+"[]", zero)
		}
		v.Set(s)
	default:
		t.Fatalf("%s: type %s is not known to the test; teach fill and appendEvent", path, v.Type())
	}
}

func marshalLine(t *testing.T, ev *audit.Event) []byte {
	t.Helper()
	want, err := json.Marshal(ev)
	require.NoError(t, err)
	return want
}

// The appender writes exactly what encoding/json writes, for events with
// any subset of fields set to any values.
func TestAppendEventMatchesJSON(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	encode := audit.NewEncoder() // Record's, with memos
	for i := range 5000 {
		var ev audit.Event
		fill(t, r, reflect.ValueOf(&ev).Elem(), "Event", float64(i%4)/4)
		want := marshalLine(t, &ev)
		got, err := audit.AppendEvent([]byte("prefix"), &ev)
		require.NoError(t, err)
		require.Equal(t, "prefix"+string(want), string(got), "event %#v", ev)
		got, err = encode([]byte("prefix"), &ev)
		require.NoError(t, err)
		require.Equal(t, "prefix"+string(want), string(got), "encoder, event %#v", ev)
	}
}

// fieldPaths lists every leaf field below typ, following slices.
func fieldPaths(typ reflect.Type, prefix []int, out *[][]int) {
	for i := range typ.NumField() {
		f := typ.Field(i)
		idx := append(append([]int(nil), prefix...), i)
		ft := f.Type
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			fieldPaths(ft.Elem(), append(idx, -1), out)
			continue
		}
		*out = append(*out, idx)
	}
}

// Every field of Event and of sqlpolicy.Reason, set alone, appears in the
// appender's output under its JSON name, exactly as encoding/json writes
// it. A field added to either struct and not to appendEvent fails here.
func TestAppendEventEncodesEveryField(t *testing.T) {
	t.Parallel()
	var paths [][]int
	fieldPaths(reflect.TypeFor[audit.Event](), nil, &paths)
	require.Greater(t, len(paths), 20, "Event and Reason fields")
	r := rand.New(rand.NewPCG(2, 3))
	for _, path := range paths {
		var ev audit.Event
		v := reflect.ValueOf(&ev).Elem()
		name := "Event"
		key := ""
		for _, i := range path {
			if i == -1 {
				s := reflect.MakeSlice(v.Type(), 1, 1)
				v.Set(s)
				v = v.Index(0)
				continue
			}
			f := v.Type().Field(i)
			name += "." + f.Name
			key, _, _ = strings.Cut(f.Tag.Get("json"), ",")
			require.NotEmpty(t, key, "%s has no json name", name)
			v = v.Field(i)
		}
		t.Run(name, func(t *testing.T) {
			for !isSet(v) {
				fill(t, r, v, name, 0)
			}
			want := marshalLine(t, &ev)
			got, err := audit.AppendEvent(nil, &ev)
			require.NoError(t, err)
			assert.Equal(t, string(want), string(got))
			assert.Contains(t, string(got), `"`+key+`":`)
		})
	}
}

func isSet(v reflect.Value) bool {
	if v.Kind() == reflect.String {
		return v.String() != "" // an empty random string would be omitted
	}
	if v.Kind() == reflect.Slice {
		return v.Len() > 0 // so would an empty list
	}
	return !v.IsZero()
}

// The appender fails where encoding/json fails, and leaves the buffer as
// it was.
func TestAppendEventErrors(t *testing.T) {
	t.Parallel()
	ok := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	cases := map[string]audit.Event{
		"year 10000":       {Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), Kind: audit.KindConnect},
		"year -1":          {Time: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC), Kind: audit.KindConnect},
		"zone offset 24h":  {Time: ok.In(time.FixedZone("X", 24*3600)), Kind: audit.KindConnect},
		"duration NaN":     {Time: ok, Kind: audit.KindStatement, DurationMS: math.NaN()},
		"duration +Inf":    {Time: ok, Kind: audit.KindStatement, DurationMS: math.Inf(1)},
		"duration -Inf":    {Time: ok, Kind: audit.KindStatement, DurationMS: math.Inf(-1)},
		"NaN with reasons": {Time: ok, Reasons: []sqlpolicy.Reason{{Code: "x"}}, DurationMS: math.NaN()},
	}
	for name, ev := range cases {
		t.Run(name, func(t *testing.T) {
			_, jerr := json.Marshal(&ev)
			require.Error(t, jerr, "encoding/json refuses it too")
			got, err := audit.AppendEvent([]byte("keep"), &ev)
			assert.Error(t, err)
			assert.Equal(t, "keep", string(got))
		})
	}
}

func FuzzAppendEvent(f *testing.F) {
	f.Add("SELECT 1", "roles.a.allow[0]", "public.t", 0.25, int64(3), int64(1700000000000000000))
	f.Add("\u2028<&>\xff\"\\", "", "", 1e-9, int64(-1), int64(0))
	f.Add("", "\x00\x1f\x7f", "é漢😀", 1e22, int64(math.MaxInt64), int64(-62135596800000000000/1000))
	f.Fuzz(func(t *testing.T, stmt, rule, table string, dur float64, rows, nanos int64) {
		ev := audit.Event{
			Time: time.Unix(0, nanos).UTC(), Kind: audit.KindStatement, Session: table, Statement: stmt,
			Rule: rule, DurationMS: dur, Rows: rows, Decision: sqlpolicy.Deny,
			Reasons: []sqlpolicy.Reason{{Code: sqlpolicy.ReasonCode(rule), Table: table, Detail: stmt}},
		}
		want, jerr := json.Marshal(&ev)
		got, err := audit.AppendEvent(nil, &ev)
		if jerr != nil {
			require.Error(t, err)
			return
		}
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))
	})
}

// The benchmarks' statement event is the line keyhole wrote for it, byte
// for byte, and what encoding/json writes.
func TestAppendEventPgbenchLine(t *testing.T) {
	t.Parallel()
	ev := pgbenchEvent()
	ev.Time = ev.Time.UTC()
	got, err := audit.AppendEvent(nil, &ev)
	require.NoError(t, err)
	assert.Equal(t, pgbenchLine, string(got))
	assert.Equal(t, string(marshalLine(t, &ev)), string(got))
}

// pick returns one of vs, each as a fresh copy half of the time: the
// encoder's memos compare strings by content, so an equal string at
// another address must hit as well as the same one.
func pick[S ~string](r *rand.Rand, vs ...S) S {
	v := vs[r.IntN(len(vs))]
	if r.IntN(2) == 0 {
		return S(strings.Clone(string(v)))
	}
	return v
}

// The encoder Record uses writes what encoding/json writes for a stream of
// events that share, or almost share, their parts with the ones before:
// memo hits, and misses by one field (often by one byte of it, at the same
// length), one reason field, one nanosecond, a zone, or an equal string at
// another address.
func TestEncoderMatchesJSON(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	nyc, err := time.LoadLocation("America/New_York")
	if err != nil {
		nyc = time.FixedZone("EST", -5*3600)
	}
	// 2026-03-08 07:00:00 UTC is 02:00 in New York, when it moves to EDT.
	dst := time.Date(2026, 3, 8, 6, 59, 59, 0, time.UTC)
	base := time.Date(2026, 12, 6, 17, 33, 8, 0, time.UTC)
	long := strings.Repeat("SELECT a, b, c FROM t WHERE x = $1 AND y <> $2; ", 20)
	reasons := [][]sqlpolicy.Reason{
		nil,
		{{Code: sqlpolicy.ReasonAllowedByRule, Rule: "roles.bench.allow[0].select"}},
		{{Code: sqlpolicy.ReasonAllowedByRule, Rule: "roles.bench.allow[1].select"}},
		{{Code: "allowed_by_rulE", Rule: "roles.bench.allow[0].select"}},
		{{Code: sqlpolicy.ReasonAllowedByRule, Rule: "roles.bench.allow[0].select", Detail: "<&>"}},
		{{Code: "table_denied", Table: "public.t"}, {Code: "column_denied", Column: "c"}},
	}
	// The allowed statement's reason with one more field set, each field
	// in turn: a memo of the plain reason must not be taken for it.
	for i := range reflect.TypeFor[sqlpolicy.Reason]().NumField() {
		rs := []sqlpolicy.Reason{{Code: sqlpolicy.ReasonAllowedByRule, Rule: "roles.bench.allow[0].select"}}
		if f := reflect.ValueOf(&rs[0]).Elem().Field(i); f.String() == "" {
			f.SetString("x")
			reasons = append(reasons, rs, reasons[1])
		}
	}
	encode := audit.NewEncoder()
	for i := range 20000 {
		ev := audit.Event{
			Kind:        pick(r, audit.KindStatement, audit.KindStatement, audit.KindConnect, "connecT", "<kind>"),
			Session:     pick(r, "f9efeaa5111796be", "f9efeaa5111796bf", "0000000000000000", "a", "", "replica:r1"),
			Protocol:    pick(r, "postgres", "mysql", ""),
			Client:      pick(r, "127.0.0.1:39762", "127.0.0.1:39763", ""),
			Agent:       pick(r, "bench-agent", "bench-agenT", "agent\u2028", ""),
			Role:        pick(r, "bench", "bencH", "bench2"),
			Database:    pick(r, "kh_prof", "kh_prof", "kh_proF", "", "db\n"),
			AuthMethod:  pick(r, "", "", "token"),
			Statement:   pick(r, "SELECT abalance FROM pgbench_accounts WHERE aid = $1;", "SELECT abalance FROM pgbench_accounts WHERE aid = $2;", "SELECT 1 WHERE 2 > 1", "", long),
			Fingerprint: pick(r, "d6f9f9407260ab6a", "d6f9f9407260ab6b", ""),
			Decision:    pick(r, sqlpolicy.Allow, sqlpolicy.Allow, sqlpolicy.Deny, ""),
			Rule:        pick(r, "roles.bench.allow[0].select", "roles.bench.allow[1].select", ""),
			Reasons:     reasons[r.IntN(len(reasons))],
			DurationMS:  float64(r.IntN(3000)) / 1000,
			Rows:        int64(r.IntN(3)),
		}
		switch r.IntN(10) {
		case 0:
			ev.Time = randTime(r)
		case 1:
			ev.Time = dst.Add(time.Duration(r.IntN(3e9))).In(nyc)
		case 2:
			ev.Time = base.Add(time.Duration(r.IntN(1e9))).In(zones[r.IntN(len(zones))])
		case 3:
			ev.Time = base.Add(time.Duration(r.IntN(10)) * 100 * time.Millisecond) // trailing zeros, none
		default:
			ev.Time = base.Add(time.Duration(r.IntN(1e9)))
		}
		want, jerr := json.Marshal(&ev)
		got, err := encode([]byte("prefix"), &ev)
		if jerr != nil {
			require.Error(t, err, "event %d", i)
			require.Equal(t, "prefix", string(got))
			continue
		}
		require.NoError(t, err, "event %d", i)
		require.Equal(t, "prefix"+string(want), string(got), "event %d: %#v", i, ev)
	}
}

// An encoder that failed on a time it cannot format still encodes the
// next times right.
func TestEncoderAfterError(t *testing.T) {
	t.Parallel()
	encode := audit.NewEncoder()
	ok := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, tm := range []time.Time{ok, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), ok, ok.In(time.FixedZone("X", 24*3600)), ok, ok.Add(time.Second)} {
		ev := audit.Event{Time: tm, Kind: audit.KindConnect, Session: "s"}
		want, jerr := json.Marshal(&ev)
		got, err := encode(nil, &ev)
		if jerr != nil {
			require.Error(t, err)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))
	}
}
