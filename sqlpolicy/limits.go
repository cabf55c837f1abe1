package sqlpolicy

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Limit names a resource limit a role puts on its agents' upstream
// sessions. Limits are dialect-neutral amounts; the analyzer of each
// dialect maps them to the upstream's settings (UpstreamSettings) and
// reports which setting changes a limit governs (Setting.Limit), so that a
// statement cannot raise or lift a limit.
type Limit string

const (
	// LimitStatementTimeout is the longest one statement may run.
	LimitStatementTimeout Limit = "statement_timeout"
	// LimitIdleInTransactionTimeout is the longest a transaction may stay
	// open without a statement running; past it the upstream ends the
	// session, releasing the locks the transaction held.
	LimitIdleInTransactionTimeout Limit = "idle_in_transaction_timeout"
	// LimitWorkMem is the memory one sort or hash step of a query may use
	// before it spills to disk.
	LimitWorkMem Limit = "work_mem"
	// LimitMaintenanceWorkMem is the memory of maintenance operations
	// (CREATE INDEX, VACUUM, ALTER TABLE ADD FOREIGN KEY).
	LimitMaintenanceWorkMem Limit = "maintenance_work_mem"
	// LimitTempBuffers is the memory a session may use for temporary
	// tables.
	LimitTempBuffers Limit = "temp_buffers"
)

// AllLimits lists every limit, in the order of docs/policy.md.
var AllLimits = []Limit{LimitStatementTimeout, LimitIdleInTransactionTimeout, LimitWorkMem, LimitMaintenanceWorkMem, LimitTempBuffers}

// Unlimited is the amount of a limit that does not cap anything: a role's
// `unlimited`, or a setting value that lifts the limit (Postgres
// statement_timeout = 0).
const Unlimited int64 = -1

// IsDuration reports whether the limit's amounts are durations
// (nanoseconds, a time.Duration); otherwise they are bytes.
func (l Limit) IsDuration() bool {
	return l == LimitStatementTimeout || l == LimitIdleInTransactionTimeout
}

// known reports whether l is one of Limits.
func (l Limit) known() bool {
	for _, k := range AllLimits {
		if k == l {
			return true
		}
	}
	return false
}

// DefaultLimits returns the limits of a role that does not set them:
// timeouts that bound what one agent can hold (a statement, locks in an
// idle transaction), and the memory Postgres gives every session out of
// the box, so that agents get no more than an untuned server's sessions.
func DefaultLimits() map[Limit]int64 {
	return map[Limit]int64{
		LimitStatementTimeout:         int64(5 * time.Minute),
		LimitIdleInTransactionTimeout: int64(2 * time.Minute),
		LimitWorkMem:                  4 << 20,
		LimitMaintenanceWorkMem:       64 << 20,
		LimitTempBuffers:              8 << 20,
	}
}

// Minimums of policy values: below them no upstream can enforce the limit
// (Postgres counts timeouts in milliseconds, where 0 would mean none).
const (
	minLimitDuration = time.Millisecond
	minLimitBytes    = 1 << 20
)

// Exceeds reports whether amount (Unlimited or a value in the limit's
// unit) goes past limit.
func Exceeds(amount, limit int64) bool {
	if limit == Unlimited {
		return false
	}
	return amount == Unlimited || amount > limit
}

// FormatLimit renders an amount of l for messages: "5m", "90s", "250ms",
// "64MB", "1536kB", "unlimited".
func FormatLimit(l Limit, amount int64) string {
	if amount == Unlimited {
		return "unlimited"
	}
	if l.IsDuration() {
		return formatDuration(time.Duration(amount))
	}
	return formatBytes(amount)
}

func formatDuration(d time.Duration) string {
	for _, u := range []struct {
		name string
		d    time.Duration
	}{{"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}, {"ms", time.Millisecond}, {"us", time.Microsecond}} {
		if d >= u.d && d%u.d == 0 {
			return strconv.FormatInt(int64(d/u.d), 10) + u.name
		}
	}
	return d.String()
}

func formatBytes(n int64) string {
	for _, u := range []struct {
		name string
		n    int64
	}{{"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"kB", 1 << 10}} {
		if n >= u.n && n%u.n == 0 {
			return strconv.FormatInt(n/u.n, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// parseLimit reads a policy value for l: "unlimited", a duration in Go
// syntax ("30s", "5m", "1h30m", "250ms") for timeouts, or a whole number
// of bytes with a unit for memory ("64MB", "512kB", "1GB"; multiples of
// 1024, as Postgres counts them; KB, KiB, MiB ... are accepted too).
func parseLimit(l Limit, s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "unlimited" {
		return Unlimited, nil
	}
	if l.IsDuration() {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("want a duration such as 30s, 5m or 1h, or unlimited; got %q", s)
		}
		if d < minLimitDuration {
			return 0, fmt.Errorf("%q is less than %s (write unlimited for no limit)", s, minLimitDuration)
		}
		return int64(d), nil
	}
	n, err := parseBytes(s)
	if err != nil {
		return 0, err
	}
	if n < minLimitBytes {
		return 0, fmt.Errorf("%q is less than 1MB (write unlimited for no limit)", s)
	}
	return n, nil
}

var byteUnits = map[string]int64{
	"B": 1, "kB": 1 << 10, "KB": 1 << 10, "KiB": 1 << 10, "MB": 1 << 20, "MiB": 1 << 20,
	"GB": 1 << 30, "GiB": 1 << 30, "TB": 1 << 40, "TiB": 1 << 40,
}

func parseBytes(s string) (int64, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	unit := strings.TrimSpace(s[i:])
	mult, ok := byteUnits[unit]
	if i == 0 || !ok {
		return 0, fmt.Errorf("want a size such as 64MB, 512kB or 1GB, or unlimited; got %q", s)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n * mult, nil
}

// LimitMapper is implemented by analyzers whose dialect can enforce a
// role's limits on the upstream session (pganalyze: startup parameters).
// Engine.UpstreamSettings uses it; an analyzer without it enforces no
// limit at connection time.
type LimitMapper interface {
	// UpstreamSettings returns the upstream settings, by name, that put
	// limits in force on a new session. Unlimited amounts map to no
	// setting (the server's own value stays).
	UpstreamSettings(limits map[Limit]int64) map[string]string
}
