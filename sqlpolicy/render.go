package sqlpolicy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/keyholedb/keyhole/catalog"
)

// Rendering turns a denial's first reason into the three wire texts. The
// message says what was refused, the detail names the rule, and the hint is
// written for an LLM agent that will retry: what it may use instead. Texts
// hold only names from the policy and the catalog and the analyzer's
// description of the agent's own statement; never a credential.

const msgPrefix = "keyhole: permission denied: "

// maxListed bounds the names listed in a hint.
const maxListed = 30

func render(d *Decision, p *Policy, role *Role, cat *catalog.Catalog) {
	if d.Effect != Deny || len(d.Reasons) == 0 {
		return
	}
	r := d.Reasons[0]
	roleName := d.Role
	d.Message = msgPrefix + message(r, roleName)
	d.Detail = detail(d)
	d.Hint = hint(d, r, p, role, cat)
}

func verbPhrase(v Verb) string {
	switch v {
	case VerbSelect:
		return "select from"
	case VerbInsert:
		return "insert into"
	case VerbUpdate:
		return "update"
	case VerbDelete:
		return "delete from"
	case VerbMerge:
		return "merge into"
	case VerbCopy:
		return "copy"
	case VerbDDL:
		return "run DDL on"
	case VerbLock:
		return "lock"
	case VerbCall:
		return "call"
	}
	return string(v) + " on"
}

func readWrite(v Verb) string {
	if v == VerbSelect {
		return "read"
	}
	return "write"
}

func message(r Reason, role string) string {
	switch r.Code {
	case ReasonUnknownAgent:
		return r.Detail
	case ReasonLabelDenied:
		if r.Column == "" {
			return fmt.Sprintf("table %s is labelled %s, which role %s may not %s", r.Table, r.Label, role, readWrite(r.Verb))
		}
		return fmt.Sprintf("column %s.%s is labelled %s, which role %s may not %s", r.Table, r.Column, r.Label, role, readWrite(r.Verb))
	case ReasonColumnNotAllowed:
		return fmt.Sprintf("role %s may not %s column %s.%s", role, readWrite(r.Verb), r.Table, r.Column)
	case ReasonNoRule:
		switch {
		case r.Table != "" && r.Verb == "":
			return fmt.Sprintf("role %s may not write to %s (a data-modifying WITH needs insert, update and delete grants on it)", role, r.Table)
		case r.Table != "":
			return fmt.Sprintf("role %s may not %s %s", role, verbPhrase(r.Verb), r.Table)
		case r.Verb == VerbExplain:
			return fmt.Sprintf("role %s may not run EXPLAIN", role)
		case r.Verb == VerbDo:
			return fmt.Sprintf("role %s may not run DO blocks", role)
		case r.Verb == VerbCall:
			return fmt.Sprintf("role %s may not call this procedure", role)
		}
		return fmt.Sprintf("role %s may not run this statement (%s)", role, r.Detail)
	case ReasonFunctionDenied:
		return fmt.Sprintf("role %s may not call function %s", role, r.Func)
	case ReasonSettingDenied:
		return fmt.Sprintf("role %s may not change setting %s", role, r.Setting)
	case ReasonScopeDenied:
		switch {
		case r.Func != "":
			return fmt.Sprintf("the agent's token scope does not allow calling %s", r.Func)
		case r.Table != "":
			return fmt.Sprintf("the agent's token scope does not allow %s on %s", r.Verb, r.Table)
		}
		return "the agent's token scope does not allow this statement"
	case ReasonProblem:
		if r.Detail != "" {
			return fmt.Sprintf("statement refused (%s): %s", r.Problem, r.Detail)
		}
		return fmt.Sprintf("statement refused (%s)", r.Problem)
	}
	return "statement not allowed"
}

func detail(d *Decision) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Denied by rule %s", d.Rule)
	if d.Role != "" {
		fmt.Fprintf(&b, " for agent %s (role %s)", d.Agent, d.Role)
	}
	b.WriteString(".")
	if len(d.Reasons) > 1 {
		b.WriteString(" All reasons:")
		for i, r := range d.Reasons {
			if i == maxListed {
				fmt.Fprintf(&b, " and %d more", len(d.Reasons)-i)
				break
			}
			b.WriteString(" ")
			b.WriteString(reasonShort(r))
			if i < len(d.Reasons)-1 {
				b.WriteString(";")
			}
		}
	}
	return b.String()
}

func reasonShort(r Reason) string {
	obj := r.Table
	if r.Column != "" {
		obj += "." + r.Column
	}
	switch {
	case r.Func != "":
		obj = r.Func
	case r.Setting != "" && obj == "":
		obj = r.Setting
	}
	s := string(r.Code)
	if r.Problem != "" && r.Code == ReasonProblem {
		s += "(" + string(r.Problem) + ")"
	}
	if obj != "" {
		s += " " + obj
	}
	if r.Label != "" {
		s += " [" + r.Label + "]"
	}
	return s
}

// hint tells the agent what it may do instead.
func hint(d *Decision, r Reason, p *Policy, role *Role, cat *catalog.Catalog) string {
	if role == nil {
		return "This agent is not in the keyhole policy, so no statement will be allowed; do not retry."
	}
	switch r.Code {
	case ReasonLabelDenied, ReasonColumnNotAllowed:
		rel := ParseRel(r.Table)
		if r.Column == "" {
			return fmt.Sprintf("Role %s may not use %s at all. %s", role.Name, r.Table, tablesHint(role, VerbSelect))
		}
		// Every column of this table the decision refused, to remove.
		var bad []string
		for _, x := range d.Reasons {
			if (x.Code == ReasonLabelDenied || x.Code == ReasonColumnNotAllowed) && x.Table == r.Table &&
				x.Column != "" && !slices.Contains(bad, x.Column) {
				bad = append(bad, x.Column)
			}
		}
		ok := usableColumns(p, role, cat, rel, r.Verb)
		rw := readWrite(r.Verb)
		remove := fmt.Sprintf("Remove %s from the query.", strings.Join(bad, ", "))
		if r.Verb == VerbSelect {
			remove = fmt.Sprintf("Remove %s from the query (and name columns instead of using * or whole-row references).",
				strings.Join(bad, ", "))
		}
		if r.Detail == upsertColumnsDetail {
			remove = "Keyhole checks every column an upsert writes against both grants; use a plain INSERT, or UPDATE for existing rows."
		}
		if len(ok) == 0 {
			return fmt.Sprintf("Role %s may not %s any column of %s. %s", role.Name, rw, r.Table, remove)
		}
		return fmt.Sprintf("You may %s %s columns: %s. %s", rw, r.Table, listNames(ok), remove)
	case ReasonNoRule:
		switch {
		case r.Verb == VerbExplain:
			return "Run the statement without EXPLAIN."
		case r.Verb == VerbDo:
			return "Run the statements directly instead of in a DO block."
		case r.Verb == VerbCall:
			return grantsHint(role, VerbCall, "call")
		case r.Verb == "":
			return "Write with a plain INSERT, UPDATE or DELETE statement instead of inside WITH. " + tablesHint(role, VerbSelect)
		}
		return tablesHint(role, r.Verb)
	case ReasonFunctionDenied:
		if len(role.Functions) == 0 {
			return fmt.Sprintf("Role %s may call built-in functions only; rewrite the query without %s.", role.Name, r.Func)
		}
		return fmt.Sprintf("Role %s may call built-in functions and: %s. Rewrite the query without %s.",
			role.Name, listNames(role.Functions), r.Func)
	case ReasonSettingDenied:
		return fmt.Sprintf("Do not change %s; keyhole keeps the session's setting. Schema-qualify names instead (e.g. public.orders).", r.Setting)
	case ReasonScopeDenied:
		return "The agent's token is limited to a narrower scope than its role; use only the tables the task was given."
	case ReasonProblem:
		return problemHint(r, role)
	}
	return ""
}

func problemHint(r Reason, role *Role) string {
	switch r.Problem {
	case ProblemUnparseable:
		return "The statement did not parse as PostgreSQL SQL; fix the syntax and retry."
	case ProblemTooComplex:
		return "The statement is too large or too deeply nested; split it into simpler statements."
	case ProblemUnknownTable:
		return "That relation does not exist or is not visible. " + tablesHint(role, VerbSelect)
	case ProblemUnknownColumn:
		return "A column does not exist in the relations in scope; check the column names (schema-qualify tables)."
	case ProblemUnknownFunction:
		return "That function is not known; use built-in functions."
	case ProblemDangerousFunc:
		return "That function is blocked because it reaches outside the data (files, server state, other sessions); rewrite the query without it."
	case ProblemDynamicSQL:
		return "Run the SQL directly instead of passing it as a string to a function."
	case ProblemDataCatalog:
		return "That system catalog holds data values or credentials and is blocked; query the tables themselves."
	case ProblemFileAccess:
		return "Server files and programs are not reachable; use COPY ... TO STDOUT / FROM STDIN."
	case ProblemUnknownPrepared:
		return "No statement of that name was prepared in this session; PREPARE it first."
	case ProblemLocking:
		return "Remove FOR UPDATE / FOR SHARE / LOCK TABLE; role " + role.Name + " may not lock that relation."
	case ProblemSessionChange:
		return "Do not change session settings that affect how SQL is read or resolved; schema-qualify names instead."
	case ProblemUnsupported:
		return "keyhole does not allow this kind of statement; express the task with plain SELECT/INSERT/UPDATE/DELETE."
	}
	return ""
}

// tablesHint lists what the role may use verb on.
func tablesHint(role *Role, v Verb) string {
	return grantsHint(role, v, verbPhrase(v))
}

func grantsHint(role *Role, v Verb, phrase string) string {
	var names []string
	for _, r := range role.Allow {
		if r.Verb != v && !(v == VerbCopy && (r.Verb == VerbSelect || r.Verb == VerbInsert)) {
			continue
		}
		for _, t := range r.Tables {
			if !slices.Contains(names, t.Pattern) {
				names = append(names, t.Pattern)
			}
		}
	}
	if len(names) == 0 {
		return fmt.Sprintf("Role %s may not %s anything.", role.Name, phrase)
	}
	return fmt.Sprintf("Role %s may %s: %s.", role.Name, phrase, listNames(names))
}

func listNames(names []string) string {
	if len(names) > maxListed {
		return strings.Join(names[:maxListed], ", ") + fmt.Sprintf(" and %d more", len(names)-maxListed)
	}
	return strings.Join(names, ", ")
}

// usableColumns lists the columns of rel the role may read (v select) or
// write: allowed by a grant's column list and carrying no denied label.
func usableColumns(p *Policy, role *Role, cat *catalog.Catalog, rel Rel, v Verb) []string {
	verbs := []Verb{v}
	if v == "" {
		verbs = []Verb{VerbInsert, VerbUpdate, VerbDelete}
	}
	all := false
	var listed []string
	for _, r := range role.Allow {
		if !slices.Contains(verbs, r.Verb) {
			continue
		}
		for _, t := range r.Tables {
			if !matchRelPattern(t.Pattern, rel) {
				continue
			}
			if t.Columns == nil {
				all = true
			}
			listed = append(listed, t.Columns...)
		}
	}
	var candidates []string
	if cr := cat.Relation(rel.Schema, rel.Name); cr != nil {
		for _, c := range cr.Columns {
			if all || slices.Contains(listed, c.Name) {
				candidates = append(candidates, c.Name)
			}
		}
	} else if !all {
		candidates = listed
	}
	dc := &decider{p: p, role: role, cat: cat}
	var out []string
	for _, c := range candidates {
		denied := false
		for _, l := range p.ColumnLabels(cat, rel, c) {
			if _, ok := dc.denyPattern(l); ok {
				denied = true
				break
			}
		}
		if !denied && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}
