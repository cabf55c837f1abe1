package audit

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
)

// safe8 must agree with jsonSafe on every byte value at every position.
func TestSafe8MatchesTable(t *testing.T) {
	safe := func(c byte) bool { return c < 0x80 && jsonSafe[c] }
	for pos := range 8 {
		for v := range 256 {
			w := []byte("abcdefgh")
			w[pos] = byte(v)
			if got := safe8(binary.LittleEndian.Uint64(w)); got != safe(byte(v)) {
				t.Fatalf("byte 0x%02x at %d: safe8 %v, table %v", v, pos, got, safe(byte(v)))
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 1 << 20 {
		x := r.Uint64()
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], x)
		want := true
		for _, c := range w {
			want = want && safe(c)
		}
		if got := safe8(x); got != want {
			t.Fatalf("%q: safe8 %v, table %v", w, got, want)
		}
	}
}

// plain must agree with jsonSafe for every byte value at every position of
// strings of every length its word reads treat differently (the padded
// short ones, the overlapping halves, whole and overlapping last words).
func TestPlainMatchesTable(t *testing.T) {
	safe := func(c byte) bool { return c < 0x80 && jsonSafe[c] }
	if !plain("") {
		t.Fatal(`plain("") is false`)
	}
	for n := 1; n <= 33; n++ {
		for pos := range n {
			for v := range 256 {
				w := []byte("abcdefghijklmnopqrstuvwxyz0123456789"[:n])
				w[pos] = byte(v)
				if got := plain(string(w)); got != safe(byte(v)) {
					t.Fatalf("len %d, byte 0x%02x at %d: plain %v, table %v", n, v, pos, got, safe(byte(v)))
				}
			}
		}
	}
	r := rand.New(rand.NewPCG(5, 6))
	for range 1 << 18 {
		w := make([]byte, r.IntN(40))
		for i := range w {
			w[i] = byte(0x20 + r.IntN(0x60)) // mostly safe: one bad byte among many
		}
		want := true
		for _, c := range w {
			want = want && safe(c)
		}
		if got := plain(string(w)); got != want {
			t.Fatalf("%q: plain %v, table %v", w, got, want)
		}
	}
}

// The thousandths fast path writes what strconv's shortest format writes.
func TestAppendFloatThousandths(t *testing.T) {
	check := func(n int64) {
		f := float64(n) / 1000
		got := string(appendFloat(nil, f))
		want := strconv.FormatFloat(f, 'f', -1, 64)
		if got != want {
			t.Fatalf("%d/1000: got %s, want %s", n, got, want)
		}
	}
	for n := range int64(200000) {
		check(n)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 1 << 20 {
		check(r.Int64N(1e15))
		check(r.Int64N(1e9))
	}
	for _, f := range []float64{0.0005, 0.1234, 1e12, 1e12 - 0.001, math.Nextafter(0.087, 1)} {
		got := string(appendFloat(nil, f))
		if want := strconv.FormatFloat(f, 'f', -1, 64); got != want {
			t.Fatalf("%v: got %s, want %s", f, got, want)
		}
	}
}

// appendFraction writes the fraction RFC3339Nano writes, for every count
// of trailing zeros.
func TestAppendFraction(t *testing.T) {
	check := func(ns uint32) {
		got := string(appendFraction(nil, ns))
		want := time.Unix(0, int64(ns)).UTC().Format(".999999999")
		if got != want {
			t.Fatalf("%d ns: got %q, want %q", ns, got, want)
		}
	}
	r := rand.New(rand.NewPCG(7, 8))
	for range 1 << 16 {
		ns := uint32(r.IntN(1e9-1) + 1)
		for p := uint32(1); p <= 1e8; p *= 10 {
			if v := ns / p * p; v != 0 {
				check(v)
			}
		}
	}
	for _, ns := range []uint32{1, 9, 10, 99999, 100000, 999999999, 100000000, 500000000} {
		check(ns)
	}
}

// appendInt writes what strconv writes.
func TestAppendInt(t *testing.T) {
	for _, n := range []int64{math.MinInt64, -100, -99, -10, -9, -1, 0, 1, 9, 10, 11, 99, 100, 101, 1000, math.MaxInt64} {
		if got, want := string(appendInt([]byte("x"), n)), "x"+strconv.FormatInt(n, 10); got != want {
			t.Fatalf("%d: got %s, want %s", n, got, want)
		}
	}
	for n := int64(-300); n < 300; n++ {
		if got, want := string(appendInt(nil, n)), strconv.FormatInt(n, 10); got != want {
			t.Fatalf("%d: got %s, want %s", n, got, want)
		}
	}
}
