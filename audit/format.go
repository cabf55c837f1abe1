package audit

import (
	"strings"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// FormatReason renders one reason for people: the code, what it is about
// (verb, table.column, label, function, setting, problem), the rule and
// the detail, e.g.
//
//	label_denied public.customers.ssn label=pii.ssn rule=roles.analyst.deny_labels[pii.*]
func FormatReason(r sqlpolicy.Reason) string {
	parts := []string{string(r.Code)}
	if r.Verb != "" {
		parts = append(parts, string(r.Verb))
	}
	switch {
	case r.Table != "" && r.Column != "":
		parts = append(parts, r.Table+"."+r.Column)
	case r.Table != "":
		parts = append(parts, r.Table)
	case r.Column != "":
		parts = append(parts, r.Column)
	}
	for _, kv := range [][2]string{
		{"label", r.Label}, {"function", r.Func}, {"setting", r.Setting},
		{"problem", string(r.Problem)}, {"rule", r.Rule},
	} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+"="+kv[1])
		}
	}
	s := strings.Join(parts, " ")
	if r.Detail != "" {
		s += ": " + r.Detail
	}
	return s
}
