package sqlpolicy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/keyholedb/keyhole/catalog"
)

// Rule names that are not paths into the policy file.
const (
	RuleDefaultDeny  = "default-deny"
	RuleUnknownAgent = "agents"
	RuleNoDataAccess = "no-data-access" // statement touches no relation, column or non-built-in function
	RuleScope        = "token-scope"
	RuleInvalidLabel = "catalog.invalid_label"
)

// DecideWith decides a whole text's Access for a principal, with the
// principal's exceptions (just-in-time grants; nil for none). It is deny by
// default: every statement must pass (the first failing statement decides)
// and anything not allowed by a rule is denied. Decide knows no dialect:
// what is a system relation, a built-in function, a guarded setting or an
// upsert is the analyzer's judgement, written into the Access. cat
// supplies comment labels and relation kinds; it may be nil (then only
// the policy's own labels apply).
func (p *Policy) DecideWith(pr Principal, a *Access, cat *catalog.Catalog, ex []Exception) *Decision {
	d := &Decision{Agent: pr.Agent}
	role := p.Role(pr.Agent)
	if role == nil {
		d.Effect = Deny
		d.Rule = RuleUnknownAgent
		d.Reasons = []Reason{{Code: ReasonUnknownAgent, Rule: RuleUnknownAgent,
			Detail: fmt.Sprintf("agent %q is not in the policy", pr.Agent)}}
		render(d, nil, nil, cat)
		return d
	}
	d.Role = role.Name
	d.MaxRows = role.MaxRows
	dc := &decider{p: p, role: role, cat: cat, scope: pr.Scope, ex: ex}
	if a == nil {
		d.Effect = Deny
		d.Rule = RuleDefaultDeny
		d.Reasons = []Reason{{Code: ReasonProblem, Problem: ProblemUnsupported, Rule: RuleDefaultDeny, Detail: "no analysis"}}
		render(d, p, role, cat)
		return d
	}
	var allowed []string
	for i := range a.Statements {
		rules, reasons := dc.statement(&a.Statements[i], 0)
		if len(reasons) > 0 {
			d.Effect = Deny
			d.Reasons = reasons
			d.Rule = reasons[0].Rule
			render(d, p, role, cat)
			return d
		}
		allowed = rules
	}
	// A text with no statements (empty, or only comments: pgx's Ping sends
	// "-- ping") runs nothing upstream.
	if len(allowed) == 0 {
		allowed = []string{RuleNoDataAccess}
	}
	d.Effect = Allow
	d.Rule = strings.Join(allowed, ",")
	if catalogOnly(a) {
		// max_rows bounds how much data an agent takes per statement;
		// catalog reads return metadata, and tools' completion and
		// introspection queries return more rows than a data cap allows.
		d.MaxRows = 0
	}
	for _, r := range allowed {
		d.Reasons = append(d.Reasons, Reason{Code: ReasonAllowedByRule, Rule: r})
	}
	return d
}

type decider struct {
	p     *Policy
	role  *Role
	cat   *catalog.Catalog
	scope []Grant
	ex    []Exception
}

// maxNesting bounds PREPARE/EXPLAIN/EXECUTE nesting; the analyzer cannot
// produce more than a couple of levels, so deeper is treated as malformed.
const maxNesting = 8

// check accumulates the outcome of one statement.
type check struct {
	rules   []string
	reasons []Reason
	// deniedTables are relations already refused at table level, so their
	// columns add no more reasons.
	deniedTables []Rel
}

func (c *check) allow(rule string) {
	if !slices.Contains(c.rules, rule) {
		c.rules = append(c.rules, rule)
	}
}

func (c *check) deny(r Reason) {
	if r.Rule == "" {
		r.Rule = RuleDefaultDeny
	}
	if !slices.Contains(c.reasons, r) {
		c.reasons = append(c.reasons, r)
	}
}

// denied returns the statement's reasons. When the policy refuses the
// statement, reasons that say a name does not exist are left out: the
// answer is then the policy's refusal whichever names exist, so that
// naming a column of a relation the role may not use gives the same
// answer whether the column exists or not (no oracle for its columns).
func (c *check) denied() []Reason {
	if !slices.ContainsFunc(c.reasons, func(r Reason) bool { return !notFound(r) }) {
		return c.reasons
	}
	return slices.DeleteFunc(c.reasons, notFound)
}

// notFound reports a reason that says the statement names something that
// does not exist.
func notFound(r Reason) bool {
	if r.Code != ReasonProblem {
		return false
	}
	switch r.Problem {
	case ProblemUnknownTable, ProblemUnknownColumn, ProblemUnknownFunction, ProblemUnknownPrepared:
		return true
	}
	return false
}

func (dc *decider) statement(st *Statement, depth int) ([]string, []Reason) {
	c := &check{}
	if depth > maxNesting {
		c.deny(Reason{Code: ReasonProblem, Problem: ProblemTooComplex, Detail: "statement nesting too deep"})
		return nil, c.reasons
	}
	dc.problems(c, st)
	dc.settings(c, st)
	switch st.Verb {
	case VerbPrepare, VerbExecute, VerbExplain:
		// The inner statement is decided as if it ran directly (EXECUTE
		// runs it; the prepared text of PREPARE runs on a later EXECUTE,
		// which the analyzer resolves through the session). The outer
		// statement's own access (EXECUTE's parameter expressions can read
		// tables and call functions) is decided as well.
		dc.tables(c, st)
		dc.columns(c, st)
		dc.functions(c, st)
		inner := st.Prepared
		what := "prepared statement"
		if st.Verb == VerbExplain {
			inner = st.Explained
			what = "explained statement"
		}
		if inner == nil {
			if len(c.reasons) == 0 {
				c.deny(Reason{Code: ReasonProblem, Problem: ProblemUnsupported, Detail: "no analysis of the " + what})
			}
			return nil, c.denied()
		}
		if len(c.reasons) > 0 {
			return nil, c.denied()
		}
		rules, reasons := dc.statement(inner, depth+1)
		// The inner statement's reasons come first: dropping EXPLAIN would
		// not make a denied statement pass.
		if st.Verb == VerbExplain && !dc.role.Explain {
			reasons = append(reasons, Reason{Code: ReasonNoRule, Verb: VerbExplain,
				Rule: "roles." + dc.role.Name + ".explain", Detail: "EXPLAIN is not enabled for this role"})
		}
		if len(reasons) > 0 {
			return nil, reasons
		}
		for _, r := range rules {
			if r != RuleNoDataAccess || len(c.rules) == 0 {
				c.allow(r)
			}
		}
		return c.rules, nil
	case VerbDo:
		c.deny(Reason{Code: ReasonNoRule, Verb: VerbDo, Detail: "DO blocks run code the proxy cannot inspect"})
		return nil, c.denied()
	case VerbSelect, VerbInsert, VerbUpdate, VerbDelete, VerbMerge, VerbCopy, VerbDDL, VerbLock, VerbCall,
		VerbSet, VerbTransaction, VerbDeallocate, VerbUtility:
	default:
		if len(c.reasons) == 0 {
			c.deny(Reason{Code: ReasonProblem, Problem: ProblemUnsupported, Verb: st.Verb,
				Detail: fmt.Sprintf("statement kind %q is not modelled", st.Verb)})
		}
		return nil, c.denied()
	}
	dc.tables(c, st)
	dc.columns(c, st)
	dc.functions(c, st)
	switch st.Verb {
	case VerbDDL, VerbLock:
		if len(st.Tables) == 0 {
			c.deny(Reason{Code: ReasonNoRule, Verb: st.Verb,
				Detail: fmt.Sprintf("%s names no relation a grant could cover", commandOf(st))})
		}
	}
	if len(c.reasons) > 0 {
		return nil, c.denied()
	}
	if len(c.rules) == 0 {
		c.allow(RuleNoDataAccess)
	}
	return c.rules, nil
}

func commandOf(st *Statement) string {
	if st.Command != "" {
		return st.Command
	}
	return strings.ToUpper(string(st.Verb))
}

// problems denies every analyzer Problem except the two a rule can allow:
// a session change the role's settings list names, and row locking on a
// relation a lock grant covers.
func (dc *decider) problems(c *check, st *Statement) {
	for _, pr := range st.Problems {
		switch pr.Code {
		case ProblemSessionChange:
			if pr.Setting != "" && slices.Contains(dc.role.Settings, pr.Setting) {
				c.allow(fmt.Sprintf("roles.%s.settings[%s]", dc.role.Name, pr.Setting))
				continue
			}
			if pr.Setting != "" {
				c.deny(Reason{Code: ReasonSettingDenied, Setting: pr.Setting, Problem: pr.Code, Detail: pr.Detail,
					SettingKind: settingKind(st, pr.Setting)})
				continue
			}
		case ProblemLocking:
			if pr.Rel.Name != "" {
				if rule, ok := dc.grant(VerbLock, pr.Rel); ok {
					if dc.scope != nil && !scopeCovers(dc.scope, VerbLock, pr.Rel) {
						c.deny(Reason{Code: ReasonScopeDenied, Verb: VerbLock, Table: pr.Rel.String(), Rule: RuleScope})
						continue
					}
					c.allow(rule)
					continue
				}
			}
		}
		c.deny(Reason{Code: ReasonProblem, Problem: pr.Code, Detail: pr.Detail, Table: relString(pr.Rel),
			Column: pr.Column, Func: pr.Func, Setting: pr.Setting})
	}
}

// settingKind is the kind the analyzer gave a change of setting name in
// st.
func settingKind(st *Statement, name string) SettingKind {
	for _, set := range st.Settings {
		if set.Name == name && !set.Show && set.Kind != "" {
			return set.Kind
		}
	}
	return SettingUnknown
}

// settings denies changes past the role's limits and guarded settings
// (Setting.Guarded) changed without a Problem, so a change the analyzer
// judged guarded is denied even if it forgot the Problem; other settings
// (timezone, application_name ...) need no rule.
func (dc *decider) settings(c *check, st *Statement) {
	for _, set := range st.Settings {
		if set.Show {
			continue
		}
		if set.Limit != "" && !set.Reset {
			dc.limit(c, set)
		}
		if !set.Guarded {
			continue
		}
		if slices.ContainsFunc(st.Problems, func(p Problem) bool {
			return p.Code == ProblemSessionChange && p.Setting == set.Name
		}) {
			continue // decided in problems
		}
		if slices.Contains(dc.role.Settings, set.Name) {
			c.allow(fmt.Sprintf("roles.%s.settings[%s]", dc.role.Name, set.Name))
			continue
		}
		c.deny(Reason{Code: ReasonSettingDenied, Setting: set.Name, SettingKind: set.Kind,
			Detail: guardedDetail(set)})
	}
}

// guardedDetail says why a guarded setting change needs the role's leave.
func guardedDetail(set Setting) string {
	switch set.Kind {
	case SettingBehavior:
		return set.Name + " changes what statements do beyond what their text shows"
	case SettingRecording:
		return set.Name + " changes what the server logs or replicates of the session"
	}
	return set.Name + " changes the session's identity or how SQL is read"
}

// limit denies a change of a setting that asks for more than the role's
// limit of set.Limit, lifts it, or asks for an amount the analyzer could
// not read. A return to the default (RESET) is not checked: it goes back
// to the session's startup value, which keyhole set (UpstreamSettings).
func (dc *decider) limit(c *check, set Setting) {
	limit, ok := dc.role.Limits[set.Limit]
	if !ok {
		limit, ok = DefaultLimits()[set.Limit]
	}
	rule := fmt.Sprintf("roles.%s.limits.%s", dc.role.Name, set.Limit)
	r := Reason{Code: ReasonLimitExceeded, Setting: set.Name, Limit: set.Limit, Rule: rule}
	switch {
	case !ok:
		r.Rule = RuleDefaultDeny
		r.Detail = fmt.Sprintf("%s is the upstream's knob for limit %q, which keyhole does not know", set.Name, set.Limit)
	case limit == Unlimited:
		return
	case set.Unknown:
		r.Detail = fmt.Sprintf("keyhole cannot read the new value of %s, so it cannot tell whether it stays within the limit of %s",
			set.Name, FormatLimit(set.Limit, limit))
	case Exceeds(set.Amount, limit):
		r.Detail = fmt.Sprintf("%s = '%s' is %s, over the limit of %s", set.Name, set.Value,
			FormatLimit(set.Limit, set.Amount), FormatLimit(set.Limit, limit))
	default:
		return
	}
	if !slices.Contains(dc.role.LimitsSet, set.Limit) {
		r.Detail += " (keyhole's default)"
	}
	c.deny(r)
}

func relString(r Rel) string {
	if r.Name == "" {
		return ""
	}
	return r.String()
}

// isWriteVerb reports whether v is a DML verb that writes.
func isWriteVerb(v Verb) bool {
	return v == VerbInsert || v == VerbUpdate || v == VerbDelete || v == VerbMerge
}

// mergeDeleteDetail explains the denial of a MERGE's DELETE action.
const mergeDeleteDetail = "a MERGE's WHEN ... THEN DELETE action deletes rows, which needs a delete grant; a merge grant covers only its INSERT and UPDATE actions"

// indexOrderDetail, followed by the index's name, is the detail of a
// column refused only because the rows may come back in the order of an
// index holding it (ColumnRef.Order).
const indexOrderDetail = "the rows may come back in the order of index "

// upsertColumnsDetail explains column denials of upserts whose written
// columns the analyzer did not attribute to the insert or the update half:
// each must then be allowed by both the insert and the update grant.
const upsertColumnsDetail = "in an upsert (an INSERT that may update existing rows) every written column needs both the insert and the update grant"

// need returns the grant verbs that may cover access of mode m (by row
// action action, for writes; merge for one of a MERGE's own actions) to
// rel in st: any one of anyOf, or (for writes whose kind neither the
// action nor the verb tells) every one of allOf.
func (dc *decider) need(st *Statement, rel Rel, m Mode, action Verb, merge bool) (anyOf []Verb, allOf []Verb) {
	if m == Read {
		switch {
		case st.Verb == VerbCopy:
			return []Verb{VerbSelect, VerbCopy}, nil
		case st.Verb == VerbLock:
			return []Verb{VerbLock}, nil
		}
		// Every read needs select, also a read of the write target in
		// WHERE, SET a = a + 1, ON CONFLICT or RETURNING: a predicate
		// leaks by inference (the row count of UPDATE ... WHERE salary >
		// 100000), and it is what Postgres itself asks, so the grants
		// creds derives from the policy agree with the decision.
		return []Verb{VerbSelect}, nil
	}
	if r := dc.cat.Relation(rel.Schema, rel.Name); r != nil && r.Kind == catalog.KindSequence {
		// nextval/setval advance a sequence: Postgres asks UPDATE on it.
		return []Verb{VerbUpdate}, nil
	}
	switch {
	case st.Verb == VerbCopy && (action == "" || action == VerbInsert):
		// COPY FROM inserts rows, and so does COPY (INSERT ... RETURNING)
		// TO: the insert or the copy grant. Another write under COPY (its
		// query an UPDATE or DELETE ... RETURNING, or a data-modifying
		// WITH) needs the grant of its own kind, below.
		return []Verb{VerbInsert, VerbCopy}, nil
	case action == VerbMerge || merge && (action == VerbInsert || action == VerbUpdate):
		// A MERGE needs the merge grant on its target, which covers its
		// INSERT and UPDATE actions: its column list both the inserted
		// and the SET columns. A DELETE action deletes rows, which only
		// the delete grant allows (Postgres asks DELETE for it too).
		return []Verb{VerbMerge}, nil
	case st.Verb == VerbMerge && action == "":
		// A write of a MERGE statement the analyzer did not classify may
		// be any of its actions.
		return nil, []Verb{VerbMerge, VerbDelete}
	case action == VerbInsert || action == VerbUpdate || action == VerbDelete:
		// The analyzer says which row action writes it: an upsert's
		// inserted columns need the insert grant, its SET columns the
		// update grant; a data-modifying CTE needs the grant of its own
		// kind.
		return []Verb{action}, nil
	case st.Upsert:
		return nil, []Verb{VerbInsert, VerbUpdate}
	case isWriteVerb(st.Verb):
		return []Verb{st.Verb}, nil
	case st.Verb == VerbLock:
		return []Verb{VerbLock}, nil
	case st.Verb == VerbDDL || st.Verb == VerbUtility:
		return []Verb{VerbDDL}, nil
	}
	// A write inside a statement whose verb is not a write (a data-modifying
	// CTE under SELECT) that the analyzer did not classify: the verb does
	// not say whether it inserts, updates or deletes, so all three must be
	// granted.
	return nil, []Verb{VerbInsert, VerbUpdate, VerbDelete}
}

// grant returns the first rule of the role granting verb on rel.
func (dc *decider) grant(v Verb, rel Rel) (string, bool) {
	for i := range dc.role.Allow {
		r := &dc.role.Allow[i]
		if r.Verb != v {
			continue
		}
		for _, t := range r.Tables {
			if matchRelPattern(t.Pattern, rel) {
				return r.Name, true
			}
		}
	}
	return "", false
}

// cover returns the rule covering (anyOf, allOf) on rel.
func (dc *decider) cover(anyOf, allOf []Verb, rel Rel) (string, bool) {
	for _, v := range anyOf {
		if rule, ok := dc.grant(v, rel); ok {
			return rule, true
		}
	}
	if len(allOf) == 0 {
		return "", false
	}
	var rules []string
	for _, v := range allOf {
		rule, ok := dc.grant(v, rel)
		if !ok {
			return "", false
		}
		rules = append(rules, rule)
	}
	return strings.Join(rules, ","), true
}

// matchRelPattern matches "schema.name" or "schema.*" against rel without
// allocating.
func matchRelPattern(pattern string, rel Rel) bool {
	schema, name, ok := strings.Cut(pattern, ".")
	if !ok || schema != rel.Schema {
		return false
	}
	return name == "*" || name == rel.Name
}

func scopeCovers(scope []Grant, v Verb, rel Rel) bool {
	for _, g := range scope {
		if g.Verb != v {
			continue
		}
		for _, t := range g.Tables {
			if matchRelPattern(t, rel) {
				return true
			}
		}
	}
	return false
}

func scopeCoversAny(scope []Grant, anyOf, allOf []Verb, rel Rel) bool {
	for _, v := range anyOf {
		if scopeCovers(scope, v, rel) {
			return true
		}
	}
	if len(allOf) == 0 {
		return false
	}
	for _, v := range allOf {
		if !scopeCovers(scope, v, rel) {
			return false
		}
	}
	return true
}

func (dc *decider) tables(c *check, st *Statement) {
	for _, t := range st.Tables {
		anyOf, allOf := dc.need(st, t.Rel, t.Mode, t.Action, t.Merge)
		dc.relationLabels(c, t.Rel, reasonVerb(anyOf))
		if t.Via != (Rel{}) {
			// Reached through a view the statement names: the view's
			// grant decides; labels still apply (checked above and per
			// column).
			continue
		}
		if t.Mode == Read && t.System {
			if dc.role.Catalog {
				c.allow("roles." + dc.role.Name + ".catalog")
				continue
			}
		}
		rule, ok := dc.exceptionCovers(anyOf, allOf, t.Rel)
		if !ok {
			v := dc.deniedVerb(st, anyOf, allOf, t.Rel)
			if st.Verb == VerbCopy {
				v = VerbCopy
			}
			detail := fmt.Sprintf("no grant of %s on %s", verbList(anyOf, allOf), t.Rel)
			if t.Merge && t.Action == VerbDelete {
				detail = mergeDeleteDetail
			}
			c.deny(Reason{Code: ReasonNoRule, Verb: v, Table: t.Rel.String(), Detail: detail})
			c.deniedTables = append(c.deniedTables, t.Rel)
			continue
		}
		if dc.scope != nil && !scopeCoversAny(dc.scope, anyOf, allOf, t.Rel) {
			c.deny(Reason{Code: ReasonScopeDenied, Verb: reasonVerb(anyOf), Table: t.Rel.String(), Rule: RuleScope,
				Detail: fmt.Sprintf("the token scope grants no %s on %s", verbList(anyOf, allOf), t.Rel)})
			c.deniedTables = append(c.deniedTables, t.Rel)
			continue
		}
		c.allow(rule)
	}
}

func verbList(anyOf, allOf []Verb) string {
	if len(anyOf) > 0 {
		return joinVerbs(anyOf, " or ")
	}
	return joinVerbs(allOf, " and ")
}

func joinVerbs(vs []Verb, sep string) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = string(v)
	}
	return strings.Join(parts, sep)
}

// denyPattern returns the first deny pattern of the role matching label,
// and the rule naming it. Every role implicitly denies
// catalog.InvalidLabel: a comment with a malformed label fails closed.
func (dc *decider) denyPattern(label string) (string, bool) {
	for _, pat := range dc.role.DenyLabels {
		if catalog.MatchLabel(pat, label) {
			return fmt.Sprintf("roles.%s.deny_labels[%s]", dc.role.Name, pat), true
		}
	}
	if label == catalog.InvalidLabel {
		return RuleInvalidLabel, true
	}
	return "", false
}

// relationLabels denies any access to a relation labelled, as a whole, with
// a label the role denies (even count(*), which reads no column).
func (dc *decider) relationLabels(c *check, rel Rel, v Verb) {
	for _, l := range dc.p.ColumnLabels(dc.cat, rel, "") {
		if rule, ok := dc.deniedLabel(c, v, rel, "", l); ok {
			c.deny(Reason{Code: ReasonLabelDenied, Verb: v, Table: rel.String(), Label: l, Rule: rule})
			c.deniedTables = append(c.deniedTables, rel)
			return
		}
	}
}

// deniedVerb is the verb a no_rule Reason names: the first verb that
// could have covered the access, or, for an upsert, the grant it lacks.
func (dc *decider) deniedVerb(st *Statement, anyOf, allOf []Verb, rel Rel) Verb {
	if len(anyOf) == 0 && st.Upsert {
		for _, v := range allOf {
			if _, ok := dc.grant(v, rel); !ok {
				return v
			}
		}
	}
	return reasonVerb(anyOf)
}

// reasonVerb is the verb a Reason names: the first grant verb that could
// have covered the access (select for reads, the statement's write verb
// for writes), or empty for a write whose kind the statement does not tell
// (a data-modifying CTE under SELECT).
func reasonVerb(anyOf []Verb) Verb {
	if len(anyOf) > 0 {
		return anyOf[0]
	}
	return ""
}

func (dc *decider) columns(c *check, st *Statement) {
	for _, col := range st.Columns {
		if slices.Contains(c.deniedTables, col.Rel) {
			// Refused as a whole already: the column adds nothing, and
			// listing it would tell which columns the relation has.
			continue
		}
		anyOf, allOf := dc.need(st, col.Rel, col.Mode, col.Action, col.Merge)
		// Labels apply to every column read or written, however reached:
		// writing a column the role may not read would overwrite protected
		// data and can reveal it through constraint errors.
		labelled := false
		for _, l := range dc.p.ColumnLabels(dc.cat, col.Rel, col.Column) {
			if rule, ok := dc.deniedLabel(c, reasonVerb(anyOf), col.Rel, col.Column, l); ok {
				r := Reason{Code: ReasonLabelDenied, Verb: reasonVerb(anyOf), Table: col.Rel.String(),
					Column: col.Column, Label: l, Rule: rule}
				if col.Order != "" {
					r.Detail = indexOrderDetail + col.Order
				}
				c.deny(r)
				labelled = true
				break
			}
		}
		if labelled || col.Via != (Rel{}) {
			continue
		}
		if col.Mode == Read && col.System && dc.role.Catalog {
			continue
		}
		if ok, rule, v := dc.columnAllowedOrExcepted(c, anyOf, allOf, col); !ok {
			if rule == "" {
				// The analyzer listed a column of a relation it did not
				// list in Tables: decide at table level.
				c.deny(Reason{Code: ReasonNoRule, Verb: dc.deniedVerb(st, anyOf, allOf, col.Rel), Table: col.Rel.String(),
					Detail: fmt.Sprintf("no grant of %s on %s", verbList(anyOf, allOf), col.Rel)})
				c.deniedTables = append(c.deniedTables, col.Rel)
				continue
			}
			r := Reason{Code: ReasonColumnNotAllowed, Verb: v, Table: col.Rel.String(), Column: col.Column, Rule: rule}
			if st.Upsert && col.Mode == Write && col.Action == "" {
				r.Detail = upsertColumnsDetail
			}
			c.deny(r)
			continue
		}
		if dc.scope != nil && !scopeCoversAny(dc.scope, anyOf, allOf, col.Rel) {
			c.deny(Reason{Code: ReasonScopeDenied, Verb: reasonVerb(anyOf), Table: col.Rel.String(), Rule: RuleScope})
			c.deniedTables = append(c.deniedTables, col.Rel)
		}
	}
}

// columnAllowed reports whether some grant covering the column's relation
// lets it use the column. rule is the (first) covering rule, empty when no
// grant covers the relation at all; verb is the verb whose grant fell
// short.
func (dc *decider) columnAllowed(anyOf, allOf []Verb, col ColumnRef) (ok bool, rule string, verb Verb) {
	// try reports whether v's grants allow the column, and the first rule
	// of v covering the relation at all.
	try := func(v Verb) (bool, string) {
		first := ""
		for i := range dc.role.Allow {
			r := &dc.role.Allow[i]
			if r.Verb != v {
				continue
			}
			for _, t := range r.Tables {
				if !matchRelPattern(t.Pattern, col.Rel) {
					continue
				}
				if first == "" {
					first = r.Name
				}
				if t.Columns == nil || slices.Contains(t.Columns, col.Column) {
					return true, first
				}
			}
		}
		return false, first
	}
	if len(anyOf) > 0 {
		verb = anyOf[0]
		for _, v := range anyOf {
			ok, r := try(v)
			if ok {
				return true, "", ""
			}
			if rule == "" && r != "" {
				rule, verb = r, v
			}
		}
		return false, rule, verb
	}
	for _, v := range allOf {
		if ok, r := try(v); !ok {
			return false, r, v
		}
	}
	return true, "", ""
}

func (dc *decider) functions(c *check, st *Statement) {
	called, unresolved := false, false
	for i, f := range st.Functions {
		if f.Schema == "" {
			// The name did not resolve (the analyzer reports a Problem
			// too): a function that does not exist, not one the policy
			// refuses.
			c.deny(Reason{Code: ReasonProblem, Problem: ProblemUnknownFunction, Func: f.Name,
				Detail: fmt.Sprintf("function %s does not exist", f.Name)})
			unresolved = true
			continue
		}
		if invokedProcedure(st, i) {
			if rule, ok := dc.grant(VerbCall, Rel{Schema: f.Schema, Name: f.Name}); ok {
				if dc.scope != nil && !scopeCovers(dc.scope, VerbCall, Rel{Schema: f.Schema, Name: f.Name}) {
					c.deny(Reason{Code: ReasonScopeDenied, Verb: VerbCall, Func: f.String(), Rule: RuleScope})
					continue
				}
				c.allow(rule)
				called = true
				continue
			}
		}
		if f.Builtin {
			continue
		}
		if i := slices.IndexFunc(dc.role.Functions, func(p string) bool {
			return matchRelPattern(p, Rel{Schema: f.Schema, Name: f.Name})
		}); i >= 0 {
			c.allow(fmt.Sprintf("roles.%s.functions[%s]", dc.role.Name, dc.role.Functions[i]))
			continue
		}
		detail := fmt.Sprintf("%s is not built in and not listed under the role's functions", f)
		if f.Via != "" {
			detail += fmt.Sprintf("; %s runs it", f.Via)
		}
		c.deny(Reason{Code: ReasonFunctionDenied, Func: f.String(), Detail: detail})
	}
	if st.Verb == VerbCall && !called && !unresolved {
		c.deny(Reason{Code: ReasonNoRule, Verb: VerbCall, Detail: "no call grant covers the procedure"})
	}
}

// invokedProcedure reports whether st's i-th function is the procedure a
// CALL invokes, the only function a call grant covers: CALL p(get_ssn(1))
// runs get_ssn as any expression would, and a grant of call on public.*
// must not let it through. An analyzer that flags no function Procedure
// reports the procedure first.
func invokedProcedure(st *Statement, i int) bool {
	if st.Verb != VerbCall {
		return false
	}
	if slices.ContainsFunc(st.Functions, func(f FuncRef) bool { return f.Procedure }) {
		return st.Functions[i].Procedure
	}
	return i == 0
}

// catalogOnly reports whether every statement of a reads system catalogs
// and nothing else: at least one relation, every relation and column a
// system one, every function built in.
func catalogOnly(a *Access) bool {
	if len(a.Statements) == 0 {
		return false
	}
	for i := range a.Statements {
		st := &a.Statements[i]
		if st.Verb != VerbSelect || len(st.Tables) == 0 || st.Prepared != nil || st.Explained != nil {
			return false
		}
		for _, t := range st.Tables {
			if !t.System || t.Mode != Read {
				return false
			}
		}
		for _, c := range st.Columns {
			if !c.System || c.Mode != Read {
				return false
			}
		}
		for _, f := range st.Functions {
			if !f.Builtin {
				return false
			}
		}
	}
	return true
}
