package myanalyze

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/opcode"
	"github.com/pingcap/tidb/pkg/parser/test_driver"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// limitVar is a session variable that is the server's knob for a
// sqlpolicy.Limit: its unit, its range (values outside it are clamped by
// the server, with a warning), and whether it takes a fraction.
type limitVar struct {
	limit sqlpolicy.Limit
	unit  time.Duration
	max   int64 // in unit
	frac  bool
}

// limitVars are the timeout variables of both servers. Each server
// rejects the other's (ER_UNKNOWN_SYSTEM_VARIABLE), so marking all of
// them is exact for either:
//
//   - MariaDB max_statement_time: seconds, a decimal with microsecond
//     precision, 0 = none, every statement (not those inside stored
//     routines);
//   - MariaDB idle_transaction_timeout, idle_readonly_transaction_timeout,
//     idle_write_transaction_timeout: whole seconds, 0 = none; past it
//     the server ends the session of a transaction left open;
//   - MySQL max_execution_time: whole milliseconds, 0 = none, read-only
//     SELECT only (MariaDB has no such variable).
//
// A value below 0 is clamped to 0, which lifts the limit.
var limitVars = map[string]limitVar{
	"max_statement_time":                {limit: sqlpolicy.LimitStatementTimeout, unit: time.Second, max: 31536000, frac: true},
	"idle_transaction_timeout":          {limit: sqlpolicy.LimitIdleInTransactionTimeout, unit: time.Second, max: 31536000},
	"idle_readonly_transaction_timeout": {limit: sqlpolicy.LimitIdleInTransactionTimeout, unit: time.Second, max: 31536000},
	"idle_write_transaction_timeout":    {limit: sqlpolicy.LimitIdleInTransactionTimeout, unit: time.Second, max: 31536000},
	"max_execution_time":                {limit: sqlpolicy.LimitStatementTimeout, unit: time.Millisecond, max: math.MaxUint32},
}

// UpstreamSettings implements sqlpolicy.LimitMapper: the session variables
// that put the role's limits in force, to be set with SET SESSION name =
// value right after login (and again after COM_RESET_CONNECTION, which
// returns every session variable to its global value). Values are plain
// numbers, valid SQL as they are.
//
// MariaDB (the default, and whenever the catalog's server version says
// MariaDB): max_statement_time in seconds (microsecond precision) and
// idle_transaction_timeout in whole seconds. MySQL: max_execution_time in
// milliseconds, which bounds SELECT only; MySQL has no idle transaction
// timeout. Memory limits map to nothing: neither server has a per-step
// sort/hash budget like Postgres work_mem (sort_buffer_size,
// join_buffer_size and tmp_table_size are sized differently and already
// bounded by the server's own maximums).
//
// An amount is rounded down to the variable's unit, to at least one unit
// (0 would lift the limit), and to the variable's maximum.
func (a *Analyzer) UpstreamSettings(limits map[sqlpolicy.Limit]int64) map[string]string {
	out := map[string]string{}
	mysqlServer := a.cat.Version != "" && !strings.Contains(strings.ToLower(a.cat.Version), "mariadb")
	for l, amount := range limits {
		if amount == sqlpolicy.Unlimited {
			continue
		}
		switch {
		case l == sqlpolicy.LimitStatementTimeout && mysqlServer:
			out["max_execution_time"] = strconv.FormatInt(clampUnits(amount, limitVars["max_execution_time"]), 10)
		case l == sqlpolicy.LimitStatementTimeout:
			// Microseconds, printed as seconds with a fraction.
			us := min(max(amount/int64(time.Microsecond), 1), 31536000*1_000_000)
			out["max_statement_time"] = strconv.FormatFloat(float64(us)/1e6, 'f', -1, 64)
		case l == sqlpolicy.LimitIdleInTransactionTimeout && !mysqlServer:
			out["idle_transaction_timeout"] = strconv.FormatInt(clampUnits(amount, limitVars["idle_transaction_timeout"]), 10)
		}
	}
	return out
}

func clampUnits(amount int64, v limitVar) int64 {
	return min(max(amount/int64(v.unit), 1), v.max)
}

// classifyLimit marks a change of a limit variable with its limit and the
// amount it asks for. SET var = DEFAULT is not a return to the session's
// start (as RESET is on Postgres): MySQL and MariaDB take the global value,
// which keyhole does not know, so it is an unknown amount too.
func classifyLimit(set *sqlpolicy.Setting) {
	lv, ok := limitVars[set.Name]
	if !ok || set.Show {
		return
	}
	set.Limit = lv.limit
	if set.Reset {
		set.Reset, set.Unknown = false, true
		return
	}
	if set.Unknown {
		return
	}
	amount, ok := lv.amount(set.Value)
	if !ok {
		set.Unknown = true
		return
	}
	set.Amount = amount
}

// amount reads a numeric literal's text as the server stores it: clamped
// to the variable's range, integer variables refuse a fraction (ok
// false), max_statement_time keeps the nearest microsecond; 0 lifts the limit.
func (lv limitVar) amount(text string) (int64, bool) {
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsNaN(f) {
		return 0, false
	}
	if !lv.frac && f != math.Trunc(f) {
		return 0, false
	}
	f = min(max(f, 0), float64(lv.max))
	var ns int64
	if lv.frac {
		ns = int64(math.Round(f*1e6)) * int64(time.Microsecond)
	} else {
		ns = int64(f) * int64(lv.unit)
	}
	if ns == 0 {
		return sqlpolicy.Unlimited, true
	}
	return ns, true
}

// numericLiteral returns the text of a number literal (an integer, a
// decimal or a float, with a sign); ok is false for anything else,
// strings and hex literals included.
func numericLiteral(e ast.ExprNode) (string, bool) {
	switch x := e.(type) {
	case *test_driver.ValueExpr:
		switch v := x.GetValue().(type) {
		case int64:
			return strconv.FormatInt(v, 10), true
		case uint64:
			return strconv.FormatUint(v, 10), true
		case float64:
			return strconv.FormatFloat(v, 'g', -1, 64), true
		case *test_driver.MyDecimal:
			return v.String(), true
		}
	case *ast.UnaryOperationExpr:
		s, ok := numericLiteral(x.V)
		switch {
		case !ok:
		case x.Op == opcode.Plus:
			return s, true
		case x.Op == opcode.Minus && strings.HasPrefix(s, "-"):
			return s[1:], true
		case x.Op == opcode.Minus:
			return "-" + s, true
		}
	}
	return "", false
}
