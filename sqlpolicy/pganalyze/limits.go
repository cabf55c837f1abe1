package pganalyze

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// gucUnit is the base unit of an integer setting: what a value without a
// unit counts.
type gucUnit uint8

const (
	unitMS     gucUnit = iota + 1 // milliseconds (GUC_UNIT_MS)
	unitKB                        // kilobytes (GUC_UNIT_KB)
	unitBlocks                    // pages of BLCKSZ bytes (GUC_UNIT_BLOCKS)
)

// blockSize is BLCKSZ, the size of a page: Postgres's default build, which
// keyhole assumes when it reads a temp_buffers value without a unit.
const blockSize = 8192

// intMax is INT_MAX: integer settings are C ints.
const intMax = math.MaxInt32

// limitSetting is a Postgres setting that is the upstream's knob for a
// sqlpolicy.Limit: its base unit and the range Postgres accepts (values
// outside it are rejected by the server, so they change nothing).
type limitSetting struct {
	limit    sqlpolicy.Limit
	unit     gucUnit
	min, max int64
	// zeroOff: 0 turns the limit off (timeouts).
	zeroOff bool
}

// limitSettings maps the Postgres settings that enforce a role's limits.
// Ranges are Postgres 15's (guc.c ConfigureNamesInt; MAX_KILOBYTES is
// INT_MAX on 64-bit builds).
var limitSettings = map[string]limitSetting{
	"statement_timeout":                   {limit: sqlpolicy.LimitStatementTimeout, unit: unitMS, min: 0, max: intMax, zeroOff: true},
	"idle_in_transaction_session_timeout": {limit: sqlpolicy.LimitIdleInTransactionTimeout, unit: unitMS, min: 0, max: intMax, zeroOff: true},
	"work_mem":                            {limit: sqlpolicy.LimitWorkMem, unit: unitKB, min: 64, max: intMax},
	"maintenance_work_mem":                {limit: sqlpolicy.LimitMaintenanceWorkMem, unit: unitKB, min: 1024, max: intMax},
	"temp_buffers":                        {limit: sqlpolicy.LimitTempBuffers, unit: unitBlocks, min: 100, max: intMax / 2},
}

// settingFor returns the Postgres setting that enforces l.
func settingFor(l sqlpolicy.Limit) (string, limitSetting) {
	for name, ls := range limitSettings {
		if ls.limit == l {
			return name, ls
		}
	}
	return "", limitSetting{}
}

// UpstreamSettings implements sqlpolicy.LimitMapper: each limit as the
// startup parameter that enforces it. Postgres applies startup parameters
// as the session's defaults, so RESET, SET ... TO DEFAULT, RESET ALL and
// DISCARD ALL return to them. Amounts are rounded down to the setting's
// unit (a timeout to at least 1ms, since 0 would turn it off) and kept
// within the range Postgres accepts, which would otherwise refuse the
// login.
func (a *Analyzer) UpstreamSettings(limits map[sqlpolicy.Limit]int64) map[string]string {
	out := make(map[string]string, len(limits))
	for l, amount := range limits {
		name, ls := settingFor(l)
		if name == "" || amount == sqlpolicy.Unlimited {
			continue
		}
		switch ls.unit {
		case unitMS:
			out[name] = strconv.FormatInt(clamp(amount/int64(time.Millisecond), max(ls.min, 1), ls.max), 10)
		case unitKB:
			out[name] = strconv.FormatInt(clamp(amount/1024, ls.min, ls.max), 10) + "kB"
		case unitBlocks:
			// In kB, so that a server built with another page size
			// converts it to its own pages.
			out[name] = strconv.FormatInt(clamp(amount/blockSize, ls.min, ls.max)*(blockSize/1024), 10) + "kB"
		}
	}
	return out
}

func clamp(v, lo, hi int64) int64 {
	return min(max(v, lo), hi)
}

// classifyLimit marks a change of a setting that enforces a limit with the
// limit and the amount the value asks for, read exactly as Postgres reads
// it. A value Postgres would reject, or one the analyzer cannot read, is
// Unknown: the decision cannot compare it with the limit, so it refuses.
func classifyLimit(set *sqlpolicy.Setting) {
	ls, ok := limitSettings[set.Name]
	if !ok || set.Show || set.Reset {
		return
	}
	set.Limit = ls.limit
	if set.Unknown {
		return
	}
	amount, ok := ls.amount(set.Value)
	if !ok {
		set.Unknown = true
		return
	}
	set.Amount = amount
}

// amount converts a value of the setting to the limit's unit
// (nanoseconds or bytes), or sqlpolicy.Unlimited for a value that turns a
// timeout off; ok is false for values Postgres rejects.
func (ls limitSetting) amount(value string) (int64, bool) {
	v, ok := parseGUCInt(value, ls.unit)
	if !ok || v < ls.min || v > ls.max {
		return 0, false
	}
	if v == 0 && ls.zeroOff {
		return sqlpolicy.Unlimited, true
	}
	switch ls.unit {
	case unitMS:
		return v * int64(time.Millisecond), true
	case unitKB:
		return v * 1024, true
	case unitBlocks:
		return v * blockSize, true
	}
	return 0, false
}

// unitConversion is one row of Postgres's unit conversion tables
// (guc.c): a unit and how many base units it is.
type unitConversion struct {
	unit       string
	multiplier float64
}

// Conversion tables per base unit, greatest unit first, as in guc.c.
var (
	timeUnitsMS = []unitConversion{
		{"d", 1000 * 60 * 60 * 24}, {"h", 1000 * 60 * 60}, {"min", 1000 * 60}, {"s", 1000}, {"ms", 1}, {"us", 1.0 / 1000},
	}
	memoryUnitsKB = []unitConversion{
		{"TB", 1024.0 * 1024.0 * 1024.0}, {"GB", 1024.0 * 1024.0}, {"MB", 1024.0}, {"kB", 1}, {"B", 1.0 / 1024.0},
	}
	memoryUnitsBlocks = []unitConversion{
		{"TB", (1024.0 * 1024.0 * 1024.0) / (blockSize / 1024)}, {"GB", (1024.0 * 1024.0) / (blockSize / 1024)},
		{"MB", 1024.0 / (blockSize / 1024)}, {"kB", 1.0 / (blockSize / 1024)}, {"B", 1.0 / blockSize},
	}
)

// maxUnitLen is MAX_UNIT_LEN: units are at most 3 characters.
const maxUnitLen = 3

// parseGUCInt reads an integer setting's value the way Postgres's
// parse_int does: a C strtol number (decimal, 0x hex, 0 octal, with
// leading white space and a sign), re-read as a C strtod float when it
// stops at '.', 'e' or 'E' or overflows; optional white space and a unit
// (case-sensitive: us ms s min h d, or B kB MB GB TB) with trailing white
// space; the value converted to the base unit with the rounding of
// convert_to_base_unit, then rounded half to even (rint) and checked
// against the int range.
func parseGUCInt(value string, unit gucUnit) (int64, bool) {
	val, end, ok := cStrtol(value)
	if !ok || (end < len(value) && (value[end] == '.' || value[end] == 'e' || value[end] == 'E')) {
		val, end, ok = cStrtod(value)
		if !ok {
			return 0, false
		}
	}
	if end == 0 || math.IsNaN(val) {
		return 0, false
	}
	for end < len(value) && cIsSpace(value[end]) {
		end++
	}
	if end < len(value) {
		var ok bool
		if val, ok = convertToBaseUnit(val, value[end:], unit); !ok {
			return 0, false
		}
	}
	val = math.RoundToEven(val)
	if val > math.MaxInt32 || val < math.MinInt32 {
		return 0, false
	}
	return int64(val), true
}

// convertToBaseUnit is guc.c's convert_to_base_unit: the unit is the
// characters up to white space (at most maxUnitLen), followed only by
// white space; a fractional value is rounded to the nearest multiple of
// the next smaller unit.
func convertToBaseUnit(val float64, rest string, unit gucUnit) (float64, bool) {
	n := 0
	for n < len(rest) && !cIsSpace(rest[n]) && n < maxUnitLen {
		n++
	}
	u := rest[:n]
	for _, c := range []byte(rest[n:]) {
		if !cIsSpace(c) {
			return 0, false
		}
	}
	var table []unitConversion
	switch unit {
	case unitMS:
		table = timeUnitsMS
	case unitKB:
		table = memoryUnitsKB
	case unitBlocks:
		table = memoryUnitsBlocks
	default:
		return 0, false
	}
	for i, row := range table {
		if row.unit != u {
			continue
		}
		v := val * row.multiplier
		if i+1 < len(table) {
			next := table[i+1].multiplier
			v = math.RoundToEven(v/next) * next
		}
		return v, true
	}
	return 0, false
}

// cIsSpace is C isspace in the C locale.
func cIsSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// cStrtol is C strtol(s, &end, 0) on a 64-bit long: the value as a float,
// the index where parsing stopped (0 when there were no digits), and ok
// false on overflow (ERANGE).
func cStrtol(s string) (val float64, end int, ok bool) {
	i := 0
	for i < len(s) && cIsSpace(s[i]) {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	base := uint64(10)
	switch {
	case i+2 < len(s) && s[i] == '0' && (s[i+1] == 'x' || s[i+1] == 'X') && digitValue(s[i+2]) < 16:
		base = 16
		i += 2
	case i < len(s) && s[i] == '0':
		base = 8
	}
	start := i
	var acc uint64
	overflow := false
	for i < len(s) {
		d := digitValue(s[i])
		if d >= base {
			break
		}
		if acc > (math.MaxUint64-d)/base {
			overflow = true
		} else {
			acc = acc*base + d
		}
		i++
	}
	if i == start {
		return 0, 0, true
	}
	limit := uint64(math.MaxInt64)
	if neg {
		limit++
	}
	if overflow || acc > limit {
		return 0, i, false
	}
	v := float64(acc)
	if neg {
		v = -v
	}
	return v, i, true
}

func digitValue(c byte) uint64 {
	switch {
	case c >= '0' && c <= '9':
		return uint64(c - '0')
	case c >= 'a' && c <= 'z':
		return uint64(c-'a') + 10
	case c >= 'A' && c <= 'Z':
		return uint64(c-'A') + 10
	}
	return 99
}

// cStrtod is C strtod(s, &end): leading white space, a sign, then
// "inf"/"infinity"/"nan" (any case), a hexadecimal float (0x digits,
// optional fraction, optional p exponent) or a decimal float (digits,
// optional fraction, optional e exponent, which counts only when digits
// follow it). end is 0 when nothing was read; ok is false when the value
// is out of range (ERANGE): too large, or so small that it underflows to
// a subnormal number or to zero (glibc's strtod sets ERANGE for both).
func cStrtod(s string) (val float64, end int, ok bool) {
	i := 0
	for i < len(s) && cIsSpace(s[i]) {
		i++
	}
	numStart := i
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	lower := strings.ToLower(s[i:])
	switch {
	case strings.HasPrefix(lower, "infinity"):
		i += len("infinity")
		return math.Inf(1), i, true
	case strings.HasPrefix(lower, "inf"):
		i += len("inf")
		return math.Inf(1), i, true
	case strings.HasPrefix(lower, "nan"):
		return math.NaN(), i + 3, true
	}
	hex := i+2 < len(s) && s[i] == '0' && (s[i+1] == 'x' || s[i+1] == 'X') &&
		(digitValue(s[i+2]) < 16 || (s[i+2] == '.' && i+3 < len(s) && digitValue(s[i+3]) < 16))
	isDigit := func(c byte) bool { return digitValue(c) < 10 }
	expChar := byte('e')
	if hex {
		i += 2
		isDigit = func(c byte) bool { return digitValue(c) < 16 }
		expChar = 'p'
	}
	digits := 0
	for i < len(s) && isDigit(s[i]) {
		i++
		digits++
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && isDigit(s[i]) {
			i++
			digits++
		}
	}
	if digits == 0 {
		return 0, 0, true
	}
	mantEnd := i
	if i < len(s) && (s[i]|0x20) == expChar {
		j := i + 1
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		k := j
		for k < len(s) && s[k] >= '0' && s[k] <= '9' {
			k++
		}
		if k > j {
			i = k
		}
	}
	text := s[numStart:i]
	if hex && i == mantEnd {
		text += "p0"
	}
	v, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return 0, i, false
	}
	if a := math.Abs(v); (a != 0 && a < minNormal) || (a == 0 && nonZeroMantissa(s[numStart:mantEnd])) {
		return 0, i, false
	}
	return v, i, true
}

// minNormal is the smallest positive normal float64 (DBL_MIN).
const minNormal = 0x1p-1022

// nonZeroMantissa reports whether a float's mantissa text has a digit
// other than 0 (after any 0x prefix).
func nonZeroMantissa(m string) bool {
	m = strings.TrimLeft(m, "+-")
	if len(m) > 1 && m[0] == '0' && (m[1] == 'x' || m[1] == 'X') {
		m = m[2:]
	}
	return strings.Trim(m, "0.") != ""
}
