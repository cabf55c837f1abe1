package approval

import (
	"fmt"
	"slices"
	"strings"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// Grantable is what a reviewer may grant so that a denied statement runs:
// one exception per verb and relation its reasons name (columns and
// labels merged). It is nil, with the reason why, when any reason is of a
// kind no grant lifts (problems, functions, settings, the token's scope,
// DDL and other verbs outside sqlpolicy.ExceptionVerbs) or names a label
// never grantable (never(label) true): granting the rest would not let
// the statement run, and the agent must not be told a reviewer could.
func Grantable(reasons []sqlpolicy.Reason, never func(label string) bool) ([]sqlpolicy.Exception, string) {
	var out []sqlpolicy.Exception
	find := func(v sqlpolicy.Verb, table string) *sqlpolicy.Exception {
		for i := range out {
			if out[i].Verb == v && out[i].Table == table {
				return &out[i]
			}
		}
		out = append(out, sqlpolicy.Exception{Verb: v, Table: table, Columns: []string{}})
		return &out[len(out)-1]
	}
	if len(reasons) == 0 {
		return nil, "the denial gives no reason a grant could lift"
	}
	for _, r := range reasons {
		if r.Code == sqlpolicy.ReasonAllowedByRule {
			continue
		}
		switch r.Code {
		case sqlpolicy.ReasonNoRule, sqlpolicy.ReasonColumnNotAllowed, sqlpolicy.ReasonLabelDenied:
		default:
			return nil, fmt.Sprintf("%s cannot be granted; only the policy can allow it", what(r))
		}
		if r.Table == "" || !slices.Contains(sqlpolicy.ExceptionVerbs, r.Verb) {
			return nil, fmt.Sprintf("%s cannot be granted (grants cover select, insert, update and delete on a table)", what(r))
		}
		if r.Code == sqlpolicy.ReasonLabelDenied && never(r.Label) {
			return nil, fmt.Sprintf("label %s is never granted (never_grant in the policy)", r.Label)
		}
		e := find(r.Verb, r.Table)
		switch r.Code {
		case sqlpolicy.ReasonNoRule:
			e.Columns = nil // the relation as a whole
		case sqlpolicy.ReasonColumnNotAllowed:
			addColumn(e, r.Column)
		case sqlpolicy.ReasonLabelDenied:
			addColumn(e, r.Column)
			if !slices.Contains(e.Labels, r.Label) {
				e.Labels = append(e.Labels, r.Label)
			}
		}
	}
	for i := range out {
		if out[i].Columns != nil {
			slices.Sort(out[i].Columns)
		}
		slices.Sort(out[i].Labels)
	}
	if len(out) == 0 {
		return nil, "the denial gives no reason a grant could lift"
	}
	return out, ""
}

// addColumn adds a column to e; a label on the whole relation (no column)
// covers it as a whole.
func addColumn(e *sqlpolicy.Exception, col string) {
	if e.Columns == nil {
		return
	}
	if col == "" {
		e.Columns = nil
		return
	}
	if !slices.Contains(e.Columns, col) {
		e.Columns = append(e.Columns, col)
	}
}

func what(r sqlpolicy.Reason) string {
	obj := r.Table
	if r.Column != "" {
		obj += "." + r.Column
	}
	switch {
	case r.Func != "":
		obj = "function " + r.Func
	case r.Setting != "":
		obj = "setting " + r.Setting
	case r.Problem != "":
		obj = string(r.Problem)
	}
	return strings.TrimSpace(fmt.Sprintf("%s %s", strings.ReplaceAll(string(r.Code), "_", " "), obj))
}

// Subset checks that want asks for no more than offered (a request's
// Grantable): every exception's verb and table are offered, its columns
// among the offered ones (any, when the offer is the whole relation) and
// its labels among the offered labels. A nil Columns asks for the whole
// relation and needs a whole-relation offer.
func Subset(want, offered []sqlpolicy.Exception) error {
	if len(want) == 0 {
		return fmt.Errorf("%w: the grant covers nothing", ErrInvalid)
	}
	for _, w := range want {
		var o *sqlpolicy.Exception
		for i := range offered {
			if offered[i].Verb == w.Verb && offered[i].Table == w.Table {
				o = &offered[i]
			}
		}
		if o == nil {
			return fmt.Errorf("%w: %s on %s was not requested", ErrInvalid, w.Verb, w.Table)
		}
		switch {
		case w.Columns == nil && o.Columns != nil:
			return fmt.Errorf("%w: the request names columns of %s, not all of it", ErrInvalid, w.Table)
		case w.Columns != nil && len(w.Columns) == 0:
			return fmt.Errorf("%w: no column of %s chosen", ErrInvalid, w.Table)
		}
		if o.Columns != nil {
			for _, c := range w.Columns {
				if !slices.Contains(o.Columns, c) {
					return fmt.Errorf("%w: column %s.%s was not requested", ErrInvalid, w.Table, c)
				}
			}
		}
		for _, l := range w.Labels {
			if !slices.Contains(o.Labels, l) {
				return fmt.Errorf("%w: label %s on %s was not requested", ErrInvalid, l, w.Table)
			}
		}
	}
	return nil
}
