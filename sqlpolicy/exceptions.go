package sqlpolicy

import (
	"slices"

	"github.com/keyholedb/keyhole/catalog"
)

// Exception is one thing a reviewer approved for an agent for a while (a
// just-in-time grant): Verb on one relation, on the listed Columns only
// (nil: every column), and, on those columns (or on the relation as a
// whole), the role's deny_labels lifted for exactly the listed Labels.
//
// An exception adds to the agent's role and nothing else: the token scope
// still narrows, labels not listed still deny, problems, functions and
// settings are decided as before, and a label the policy marks never_grant
// stays denied whatever Labels says.
type Exception struct {
	Verb    Verb     `json:"verb"`
	Table   string   `json:"table"`
	Columns []string `json:"columns,omitempty"`
	Labels  []string `json:"labels,omitempty"`
	// Rule names the grant in the decision ("grant.grt_…").
	Rule string `json:"rule,omitempty"`
}

// ExceptionVerbs are the verbs an exception may grant: plain reads and
// row writes. DDL, locks, procedure calls, COPY and MERGE stay policy
// edits.
var ExceptionVerbs = []Verb{VerbSelect, VerbInsert, VerbUpdate, VerbDelete}

// Decide decides a whole text's Access for a principal; see DecideWith.
func (p *Policy) Decide(pr Principal, a *Access, cat *catalog.Catalog) *Decision {
	return p.DecideWith(pr, a, cat, nil)
}

// NeverGrantable reports whether label may never be granted to role by an
// exception: it matches the policy's never_grant or the role's, or it is
// catalog.InvalidLabel (a malformed comment label fails closed).
func (p *Policy) NeverGrantable(role *Role, label string) bool {
	if label == catalog.InvalidLabel {
		return true
	}
	for _, pat := range p.NeverGrant {
		if catalog.MatchLabel(pat, label) {
			return true
		}
	}
	if role != nil {
		for _, pat := range role.NeverGrant {
			if catalog.MatchLabel(pat, label) {
				return true
			}
		}
	}
	return false
}

// exceptionCovers is cover with the principal's exceptions: the role's
// rule, else an exception of a verb that could cover the access (for an
// upsert, every verb of allOf covered by the role or an exception).
func (dc *decider) exceptionCovers(anyOf, allOf []Verb, rel Rel) (string, bool) {
	if rule, ok := dc.cover(anyOf, allOf, rel); ok || len(dc.ex) == 0 {
		return rule, ok
	}
	for _, v := range anyOf {
		if e := dc.exception(v, rel); e != nil {
			return e.Rule, true
		}
	}
	if len(allOf) == 0 {
		return "", false
	}
	var rules []string
	for _, v := range allOf {
		if rule, ok := dc.grant(v, rel); ok {
			rules = append(rules, rule)
		} else if e := dc.exception(v, rel); e != nil {
			rules = append(rules, e.Rule)
		} else {
			return "", false
		}
	}
	return joinRules(rules), true
}

func joinRules(rules []string) string {
	out := ""
	for i, r := range rules {
		if i > 0 {
			out += ","
		}
		out += r
	}
	return out
}

// exception is the first exception granting v on rel.
func (dc *decider) exception(v Verb, rel Rel) *Exception {
	for i := range dc.ex {
		e := &dc.ex[i]
		if e.Verb == v && e.Table == rel.String() {
			return e
		}
	}
	return nil
}

// columnAllowedOrExcepted is columnAllowed, then an exception of a verb
// that could cover the access whose columns include col (recorded as an
// allowing rule, so the decision names the grant).
func (dc *decider) columnAllowedOrExcepted(c *check, anyOf, allOf []Verb, col ColumnRef) (bool, string, Verb) {
	ok, rule, v := dc.columnAllowed(anyOf, allOf, col)
	if ok || len(dc.ex) == 0 {
		return ok, rule, v
	}
	covers := func(v Verb) *Exception {
		for i := range dc.ex {
			e := &dc.ex[i]
			if e.Verb == v && e.Table == col.Rel.String() && (e.Columns == nil || slices.Contains(e.Columns, col.Column)) {
				return e
			}
		}
		return nil
	}
	for _, v := range anyOf {
		if e := covers(v); e != nil {
			c.allow(e.Rule)
			return true, "", ""
		}
	}
	if len(allOf) > 0 {
		var used []string
		for _, v := range allOf {
			if ok, _, _ := dc.columnAllowed([]Verb{v}, nil, col); ok {
				continue
			}
			e := covers(v)
			if e == nil {
				return ok, rule, v
			}
			used = append(used, e.Rule)
		}
		for _, r := range used {
			c.allow(r)
		}
		return true, "", ""
	}
	if rule == "" {
		// An exception covers the relation but not this column: say so
		// (column_not_allowed) rather than that nothing covers it.
		for _, v := range anyOf {
			if e := dc.exception(v, col.Rel); e != nil {
				return false, e.Rule, v
			}
		}
	}
	return ok, rule, v
}

// deniedLabel is denyPattern unless an exception of verb v on rel (and,
// for a column, one whose columns include it) lifts label, and the label
// is not never-grantable.
func (dc *decider) deniedLabel(c *check, v Verb, rel Rel, column, label string) (string, bool) {
	rule, ok := dc.denyPattern(label)
	if !ok || len(dc.ex) == 0 || dc.p.NeverGrantable(dc.role, label) {
		return rule, ok
	}
	for i := range dc.ex {
		e := &dc.ex[i]
		if e.Verb != v || e.Table != rel.String() || !slices.Contains(e.Labels, label) {
			continue
		}
		if column == "" || e.Columns == nil || slices.Contains(e.Columns, column) {
			c.allow(e.Rule)
			return "", false
		}
	}
	return rule, ok
}
