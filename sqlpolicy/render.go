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

// SQLSTATEs of denials (Decision.SQLState).
const (
	SQLStateInsufficientPrivilege = "42501"
	SQLStateSyntaxError           = "42601"
	SQLStateUndefinedTable        = "42P01"
	SQLStateUndefinedColumn       = "42703"
	SQLStateUndefinedFunction     = "42883"
	SQLStateUndefinedPrepared     = "26000"
	SQLStateStatementTooComplex   = "54001"
)

func render(d *Decision, p *Policy, role *Role, cat *catalog.Catalog) {
	if d.Effect != Deny || len(d.Reasons) == 0 {
		return
	}
	r := d.Reasons[0]
	d.SQLState = sqlState(r)
	d.Message = msgPrefix + message(r, d.Role)
	d.Detail = detail(d)
	d.Hint = hint(d, r, p, role, cat)
}

// sqlState is the SQLSTATE of a denial decided by r. A statement that
// does not parse or names what does not exist gets the code the upstream
// would give it: drivers and agents branch on those (an ORM retries a
// query without a missing column, an agent looks a table up again). Every
// other refusal is 42501. Decide leaves not-found reasons out when the
// policy also refuses the statement, so a not-found code never reveals
// whether a relation the role may not use has some column.
func sqlState(r Reason) string {
	if r.Code == ReasonProblem {
		switch r.Problem {
		case ProblemUnparseable:
			return SQLStateSyntaxError
		case ProblemUnknownTable:
			return SQLStateUndefinedTable
		case ProblemUnknownColumn:
			return SQLStateUndefinedColumn
		case ProblemUnknownFunction:
			return SQLStateUndefinedFunction
		case ProblemUnknownPrepared:
			return SQLStateUndefinedPrepared
		case ProblemTooComplex:
			return SQLStateStatementTooComplex
		}
	}
	return SQLStateInsufficientPrivilege
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
		if idx, ok := strings.CutPrefix(r.Detail, indexOrderDetail); ok {
			return fmt.Sprintf("rows of %s may come back in the order of its index %s on %s, which is labelled %s: role %s may not read it, nor its order",
				r.Table, idx, r.Column, r.Label, role)
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
	case ReasonLimitExceeded:
		return fmt.Sprintf("role %s may not change %s: %s", role, r.Setting, r.Detail)
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

// hint tells the agent what it may do instead: specific to the refusal
// (the setting, function, relation or column it names) and actionable by
// an LLM agent that will retry.
func hint(d *Decision, r Reason, p *Policy, role *Role, cat *catalog.Catalog) string {
	if role == nil {
		return "This agent is not in the keyhole policy, so no statement will be allowed; do not retry."
	}
	switch r.Code {
	case ReasonLabelDenied, ReasonColumnNotAllowed:
		return columnsHint(d, r, p, role, cat)
	case ReasonNoRule:
		switch {
		case r.Verb == VerbExplain:
			return fmt.Sprintf("EXPLAIN is off for role %s (plans show row estimates); run the statement without EXPLAIN.", role.Name)
		case r.Verb == VerbDo:
			return "Run the statements of the DO block one by one: keyhole cannot check code inside DO."
		case r.Verb == VerbCall:
			return grantsHint(role, VerbCall, "call")
		case r.Detail == mergeDeleteDetail:
			return fmt.Sprintf("Role %s's merge grant covers a MERGE's INSERT and UPDATE actions only; leave out the WHEN ... THEN DELETE clauses (WHEN ... THEN DO NOTHING skips a row). %s",
				role.Name, tablesHint(role, VerbDelete))
		case r.Verb == "":
			return "Write with a plain INSERT, UPDATE or DELETE statement instead of inside WITH. " + tablesHint(role, VerbSelect)
		case r.Table == "" && (r.Verb == VerbDDL || r.Verb == VerbLock):
			return fmt.Sprintf("Only statements on relations a grant names can be allowed; %s that names no relation never is. %s",
				strings.ToUpper(string(r.Verb)), tablesHint(role, r.Verb))
		}
		return tablesHint(role, r.Verb)
	case ReasonFunctionDenied:
		if len(role.Functions) == 0 {
			return fmt.Sprintf("Role %s may call built-in functions only; rewrite the query without %s.", role.Name, r.Func)
		}
		return fmt.Sprintf("Role %s may call built-in functions and: %s. Rewrite the query without %s.",
			role.Name, listNames(role.Functions), r.Func)
	case ReasonSettingDenied:
		return settingHint(r, role)
	case ReasonLimitExceeded:
		limit, ok := role.Limits[r.Limit]
		if !ok {
			return fmt.Sprintf("Leave %s as keyhole set it when the session started.", r.Setting)
		}
		return fmt.Sprintf("Role %s may set %s to at most %s (%s); use a value within it, written as a literal with its unit, or leave %s as keyhole set it when the session started.",
			role.Name, r.Setting, FormatLimit(r.Limit, limit), limitWhat(r.Limit), r.Setting)
	case ReasonScopeDenied:
		what := "this statement"
		switch {
		case r.Func != "":
			what = "calling " + r.Func
		case r.Table != "":
			what = fmt.Sprintf("%s on %s", r.Verb, r.Table)
		}
		return fmt.Sprintf("The agent's token allows less than its role, and %s is outside it; use only the tables the token's task names.", what)
	case ReasonProblem:
		return problemHint(r, role, cat)
	}
	return ""
}

// columnsHint is the hint of a refused relation or column: what the role
// may read or write of it instead.
func columnsHint(d *Decision, r Reason, p *Policy, role *Role, cat *catalog.Catalog) string {
	rel := ParseRel(r.Table)
	if r.Label == catalog.InvalidLabel {
		return fmt.Sprintf("A database comment gives %s a malformed keyhole label, so keyhole protects it until a DBA fixes the comment; leave it out of the query.",
			qualified(r.Table, r.Column))
	}
	if r.Column == "" {
		v := r.Verb
		if v == "" {
			v = VerbSelect
		}
		return fmt.Sprintf("Role %s may not use %s at all (it is labelled %s). %s", role.Name, r.Table, r.Label, tablesHint(role, v))
	}
	if idx, ok := strings.CutPrefix(r.Detail, indexOrderDetail); ok {
		return indexOrderHint(r, idx, cat)
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
}

// indexOrderHint is the hint for a column refused only because the rows
// may come back in the order of index idx, which holds it: the two ways to
// fix their order, by the primary key.
func indexOrderHint(r Reason, idx string, cat *catalog.Catalog) string {
	rel := ParseRel(r.Table)
	var pk []string
	if cr := cat.Relation(rel.Schema, rel.Name); cr != nil {
		for _, ix := range cr.Indexes {
			if strings.EqualFold(ix.Name, "PRIMARY") {
				pk = ix.Columns
			}
		}
	}
	s := fmt.Sprintf("The query does not name %s, but the server may return the rows in the order of index %s, which holds it. Read the table through its primary key (FROM %s USE INDEX (PRIMARY))",
		r.Column, idx, rel.Name)
	if len(pk) == 0 || slices.Contains(pk, "") {
		return s + "."
	}
	return fmt.Sprintf("%s or, in a query of this table alone, sort the rows by it (ORDER BY %s).", s, strings.Join(pk, ", "))
}

// settingHint says, per kind of refused setting change, what to do
// instead.
func settingHint(r Reason, role *Role) string {
	var s string
	switch r.SettingKind {
	case SettingResolution:
		s = fmt.Sprintf("Leave %s as it is and schema-qualify names instead (e.g. %s).", r.Setting, exampleRelation(role))
	case SettingIdentity:
		s = fmt.Sprintf("keyhole runs every statement as this agent, under its own credentials; %s cannot change who the session is. Run the statement without it.", r.Setting)
	case SettingLexing:
		s = fmt.Sprintf("keyhole parses SQL with %s at the value the session started with; leave it unchanged and write literals that read the same under it.", r.Setting)
	case SettingBehavior:
		s = fmt.Sprintf("%s changes what statements do beyond what keyhole can check (such as skipping triggers); leave it unchanged.", r.Setting)
	case SettingRecording:
		s = fmt.Sprintf("%s changes what the server logs or replicates of this session; keyhole keeps that record whole. Leave it unchanged.", r.Setting)
	default:
		s = fmt.Sprintf("keyhole lets agents change only settings it knows to be harmless, and %s is not one of them; leave it unchanged.", r.Setting)
	}
	if len(role.Settings) > 0 {
		s += fmt.Sprintf(" Role %s may also change: %s.", role.Name, listNames(role.Settings))
	}
	return s
}

// exampleRelation is a relation the role may read, written with its
// schema, for hints about qualifying names.
func exampleRelation(role *Role) string {
	for _, r := range role.Allow {
		for _, t := range r.Tables {
			if r.Verb != VerbCall && !strings.HasSuffix(t.Pattern, ".*") {
				return t.Pattern
			}
			if schema, ok := strings.CutSuffix(t.Pattern, ".*"); ok && r.Verb != VerbCall {
				return schema + ".<table>"
			}
		}
	}
	return "schema.table"
}

// limitWhat says what a limit bounds, for hints.
func limitWhat(l Limit) string {
	switch l {
	case LimitStatementTimeout:
		return "the longest a statement may run; split long work into smaller statements"
	case LimitIdleInTransactionTimeout:
		return "the longest a transaction may wait between statements; keep transactions short"
	case LimitWorkMem:
		return "memory per sort or hash step; larger steps spill to disk"
	case LimitMaintenanceWorkMem:
		return "memory for index builds and maintenance"
	case LimitTempBuffers:
		return "memory for temporary tables"
	}
	return string(l)
}

func problemHint(r Reason, role *Role, cat *catalog.Catalog) string {
	switch r.Problem {
	case ProblemUnparseable:
		return "Fix the syntax error the message describes and send the statement again."
	case ProblemTooComplex:
		return "Split the statement into simpler ones: fewer nested subqueries, fewer references to the same CTE, a shorter text."
	case ProblemUnsupported:
		return "keyhole does not run this kind of statement (the message says which); do the task with plain SELECT, INSERT, UPDATE or DELETE. " +
			tablesHint(role, VerbSelect)
	case ProblemUnknownTable:
		name := "That relation"
		if r.Table != "" {
			name = "Relation " + r.Table
		}
		return name + " does not exist; check the name and write it with its schema (a relation created a moment ago is known once keyhole has read the schema again, which it does when the DDL commits: retry shortly). " + tablesHint(role, VerbSelect)
	case ProblemUnknownColumn:
		s := "A column the statement names does not exist in the relations in scope; check the name, and qualify it with its table (t.column)."
		if role.Catalog {
			s += " information_schema.columns lists each relation's columns."
		}
		return s
	case ProblemUnknownFunction:
		name := "That function"
		if r.Func != "" {
			name = "Function " + r.Func
		}
		return name + " does not exist with these argument types; check the name, add casts to the arguments, or use a built-in function."
	case ProblemDangerousFunc:
		if r.Setting != "" {
			return fmt.Sprintf("Setting %s shows the server's files, commands or credentials and is never readable; leave it out.", r.Setting)
		}
		return fmt.Sprintf("%s is refused for every role because it reaches outside the data (server files or state, other sessions, sleeping); rewrite the query without it.",
			orDefault(r.Func, "That function"))
	case ProblemDynamicSQL:
		return fmt.Sprintf("Run the SQL directly: keyhole cannot check SQL text or relation names passed to %s as a string.", orDefault(r.Func, "a function"))
	case ProblemDataCatalog:
		switch {
		case r.Setting != "":
			return "Read standard settings one at a time by name; custom settings (names with a dot) and listings of every setting are refused because they often hold secrets."
		case r.Column != "":
			return fmt.Sprintf("Leave out %s.%s: it holds settings, credentials or connection strings. The other columns of %s are readable.", r.Table, r.Column, r.Table)
		case r.Table != "":
			return fmt.Sprintf("Reading %s this way is refused for every role: it holds data values, secrets or other sessions' activity (the message says whether a narrower read works). Table and column definitions stay readable; query the tables themselves for data.", r.Table)
		}
		return "That catalog holds data values, secrets or other sessions' activity; query the tables themselves."
	case ProblemFileAccess:
		if cat != nil && cat.Dialect == "mysql" {
			return "Server and client files are out of reach (LOAD DATA, LOAD_FILE, SELECT ... INTO OUTFILE); send data with INSERT ... VALUES and read it with SELECT over the connection."
		}
		return "Server files and programs are out of reach; send and receive data over the connection instead (COPY ... FROM STDIN / TO STDOUT)."
	case ProblemUnknownPrepared:
		return "No statement of that name was prepared in this session (prepared statements do not outlive their connection); PREPARE it first."
	case ProblemLocking:
		if r.Table == "" {
			return fmt.Sprintf("%s takes a lock that outlives the statement and can block other agents; coordinate without it.", orDefault(r.Func, "The statement"))
		}
		return fmt.Sprintf("Remove FOR UPDATE / FOR SHARE / LOCK TABLE on %s. %s", r.Table, grantsHint(role, VerbLock, "lock"))
	case ProblemSessionChange:
		if r.Func != "" {
			return fmt.Sprintf("Pass %s the setting's name as a literal string, so keyhole can check which setting changes.", r.Func)
		}
		return fmt.Sprintf("keyhole cannot tell what the names resolve to after the session's search path changed; schema-qualify them (e.g. %s), or PREPARE the statement again.",
			exampleRelation(role))
	}
	return ""
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
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
// write: allowed by a grant's column list, carrying no denied label and,
// for a generated column, computed from no column with one.
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
	dc := &decider{p: p, role: role, cat: cat}
	denied := func(c string) bool {
		for _, l := range p.ColumnLabels(cat, rel, c) {
			if _, ok := dc.denyPattern(l); ok {
				return true
			}
		}
		return false
	}
	var candidates []string
	if cr := cat.Relation(rel.Schema, rel.Name); cr != nil {
		for _, c := range cr.Columns {
			// A generated column reveals the columns it is computed from
			// (the analyzer reads them with it).
			if (all || slices.Contains(listed, c.Name)) && !slices.ContainsFunc(cr.GeneratedFrom(c), func(src *catalog.Column) bool { return denied(src.Name) }) {
				candidates = append(candidates, c.Name)
			}
		}
	} else if !all {
		candidates = listed
	}
	var out []string
	for _, c := range candidates {
		if !denied(c) && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}
