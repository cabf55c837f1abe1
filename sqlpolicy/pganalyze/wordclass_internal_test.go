package pganalyze

import (
	"strings"
	"testing"
)

// TestWordClass checks wordClass against the keywords it knows, in every
// case mix, and words that differ from one by a byte or by a byte too
// many or too few.
func TestWordClass(t *testing.T) {
	t.Parallel()
	type class struct {
		flags uint8
		lit   byte
	}
	want := map[string]class{
		"select": {wDML | wSign, 0},
		"insert": {wDML, 0}, "update": {wDML, 0}, "delete": {wDML, 0}, "with": {wDML, 0},
		"where": {wSign, 0}, "and": {wSign, 0}, "or": {wSign, 0}, "then": {wSign, 0}, "else": {wSign, 0},
		"when": {wSign, 0}, "case": {wSign, 0}, "limit": {wSign, 0}, "offset": {wSign, 0}, "having": {wSign, 0},
		"between": {wSign, 0}, "returning": {wSign, 0}, "distinct": {wSign, 0}, "like": {wSign, 0},
		"ilike": {wSign, 0}, "on": {wSign, 0},
		"not": {wIsNot | wSign, 0}, "is": {wIsNot, 0},
		"true": {0, litTrue}, "false": {0, litFalse}, "null": {0, litNull},
	}
	check := func(w string, c class) {
		t.Helper()
		if f, l := wordClass(w); f != c.flags || l != c.lit {
			t.Errorf("wordClass(%q) = %d, %q; want %d, %q", w, f, l, c.flags, c.lit)
		}
	}
	for kw, c := range want {
		check(kw, c)
		check(strings.ToUpper(kw), c)
		mixed := []byte(kw)
		for i := 0; i < len(mixed); i += 2 {
			mixed[i] -= 'a' - 'A'
		}
		check(string(mixed), c)
		for i := range len(kw) {
			for _, b := range []byte{kw[i] ^ 0x20 ^ 0x40, '_', '$', '0', kw[i] + 1} {
				w := kw[:i] + string(b) + kw[i+1:]
				if _, ok := want[strings.ToLower(w)]; !ok {
					check(w, class{})
				}
			}
		}
		for _, w := range []string{kw + "s", kw + "_", "_" + kw, kw[1:], kw[:len(kw)-1]} {
			if _, ok := want[strings.ToLower(w)]; !ok {
				check(w, class{})
			}
		}
	}
	for _, w := range []string{"", "a", "abalance", "pgbench_accounts", "returnin", "returnings", "xreturning"} {
		check(w, class{})
	}
}
