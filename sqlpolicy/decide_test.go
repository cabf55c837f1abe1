package sqlpolicy_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/internal/fixture"
	sp "github.com/keyholedb/keyhole/sqlpolicy"
)

// decidePolicy is the design's policy with more roles, one agent each.
const decidePolicy = fixture.PolicyRoles + `  support:
    upstream: shop
    allow:
      - select: {public.customers: [id, name, email, ssn]}
      - select: [public.orders, public.customer_view]
      - update: {public.orders: [status]}
      - insert: [public.customers]
      - lock: [public.orders]
      - call: [public.refund]
      - copy: [public.order_items]
    functions: [public.my_fn]
    settings: [search_path]
    deny_labels: [pii.ssn]
    explain: true
  writer:
    allow:
      - update: [public.orders]
      - delete: [public.orders]
  auditor:
    allow:
      - select: [public.*]
    catalog: false
  upserter:
    allow:
      - insert: [public.orders]
      - update: {public.orders: [total, status]}
      - update: [public.order_seq]
      - select: {public.orders: [id]}
  merger:
    allow:
      - merge: {public.orders: [status]}
` + fixture.PolicyAgents + `  upsert-bot: {role: upserter}
  merge-bot: {role: merger}
  helpdesk: {role: support}
  writer-bot: {role: writer}
  auditor-bot: {role: auditor}
`

func rel(s string) sp.Rel { return sp.ParseRel(s) }

func read(table string, cols ...string) ([]sp.TableRef, []sp.ColumnRef) {
	ts := []sp.TableRef{{Rel: rel(table), Mode: sp.Read}}
	var cs []sp.ColumnRef
	for _, c := range cols {
		cs = append(cs, sp.ColumnRef{Rel: rel(table), Column: c, Mode: sp.Read})
	}
	return ts, cs
}

func sel(table string, cols ...string) sp.Statement {
	ts, cs := read(table, cols...)
	return sp.Statement{Verb: sp.VerbSelect, Command: "SELECT", Tables: ts, Columns: cs, ReturnsRows: true}
}

func access(sts ...sp.Statement) *sp.Access { return &sp.Access{Statements: sts} }

// mergeStmt is a MERGE into public.orders (written as a whole, Action
// merge) that also makes writes.
func mergeStmt(writes []sp.TableRef, cols ...sp.ColumnRef) sp.Statement {
	return sp.Statement{Verb: sp.VerbMerge, Command: "MERGE",
		Tables:  append([]sp.TableRef{{Rel: rel("public.orders"), Mode: sp.Write, Action: sp.VerbMerge}}, writes...),
		Columns: cols}
}

// system marks st's relations as the analyzer marks system catalogs.
func system(st sp.Statement) sp.Statement {
	for i := range st.Tables {
		st.Tables[i].System = true
	}
	for i := range st.Columns {
		st.Columns[i].System = true
	}
	return st
}

func TestDecide(t *testing.T) {
	t.Parallel()
	cat := testCatalog()
	p := mustPolicy(t, decidePolicy, cat)

	joinOrdersCustomers := sel("public.orders", "id", "total")
	ts, cs := read("public.customers", "id", "name")
	joinOrdersCustomers.Tables = append(joinOrdersCustomers.Tables, ts...)
	joinOrdersCustomers.Columns = append(joinOrdersCustomers.Columns, cs...)

	insertSelect := sp.Statement{Verb: sp.VerbInsert, Command: "INSERT",
		Tables: []sp.TableRef{{Rel: rel("public.orders"), Mode: sp.Write}, {Rel: rel("public.customers"), Mode: sp.Read}},
		Columns: []sp.ColumnRef{
			{Rel: rel("public.orders"), Column: "customer_id", Mode: sp.Write},
			{Rel: rel("public.customers"), Column: "id", Mode: sp.Read},
		}}
	insertSelectEmail := insertSelect
	insertSelectEmail.Columns = append([]sp.ColumnRef{{Rel: rel("public.customers"), Column: "email", Mode: sp.Read}}, insertSelect.Columns...)

	update := func(set string, returning bool, extra ...sp.ColumnRef) sp.Statement {
		st := sp.Statement{Verb: sp.VerbUpdate, Command: "UPDATE", ReturnsRows: returning,
			Tables: []sp.TableRef{{Rel: rel("public.orders"), Mode: sp.Write}, {Rel: rel("public.orders"), Mode: sp.Read}},
			Columns: append([]sp.ColumnRef{
				{Rel: rel("public.orders"), Column: set, Mode: sp.Write},
				{Rel: rel("public.orders"), Column: "id", Mode: sp.Read},
			}, extra...)}
		return st
	}
	viewSSN := sp.Statement{Verb: sp.VerbSelect, Command: "SELECT", ReturnsRows: true,
		Tables: []sp.TableRef{{Rel: rel("public.customer_view"), Mode: sp.Read},
			{Rel: rel("public.customers"), Mode: sp.Read, Via: rel("public.customer_view")}},
		Columns: []sp.ColumnRef{{Rel: rel("public.customers"), Column: "ssn", Mode: sp.Read, Via: rel("public.customer_view")}}}
	viewID := viewSSN
	viewID.Columns = []sp.ColumnRef{{Rel: rel("public.customers"), Column: "id", Mode: sp.Read, Via: rel("public.customer_view")}}

	problem := func(code sp.ProblemCode, mod func(*sp.Problem)) sp.Statement {
		pr := sp.Problem{Code: code, Detail: "detail of " + string(code)}
		if mod != nil {
			mod(&pr)
		}
		return sp.Statement{Verb: sp.VerbSelect, Command: "SELECT", Problems: []sp.Problem{pr}}
	}
	withFuncs := func(st sp.Statement, fs ...sp.FuncRef) sp.Statement {
		st.Functions = fs
		return st
	}
	explain := func(inner sp.Statement, analyze bool) sp.Statement {
		return sp.Statement{Verb: sp.VerbExplain, Command: "EXPLAIN", Explained: &inner, ExplainAnalyze: analyze, ReturnsRows: true}
	}
	prepare := func(inner sp.Statement) sp.Statement {
		return sp.Statement{Verb: sp.VerbPrepare, Command: "PREPARE", PrepareName: "s1", Prepared: &inner}
	}
	copyStmt := func(table string, m sp.Mode) sp.Statement {
		return sp.Statement{Verb: sp.VerbCopy, Command: "COPY", Tables: []sp.TableRef{{Rel: rel(table), Mode: m}},
			Columns: []sp.ColumnRef{{Rel: rel(table), Column: "id", Mode: m}}}
	}
	copyWrite := func(table string, action sp.Verb) sp.Statement {
		st := copyStmt(table, sp.Write)
		st.Tables[0].Action = action
		st.Columns[0].Action = action
		return st
	}
	lower := sp.FuncRef{Schema: "pg_catalog", Name: "lower", Builtin: true}
	myFn := sp.FuncRef{Schema: "public", Name: "my_fn"}
	refund := sp.FuncRef{Schema: "public", Name: "refund"}

	cases := []struct {
		name   string
		agent  string
		scope  []sp.Grant
		access *sp.Access
		effect sp.Effect
		code   sp.ReasonCode // first reason (deny) or "" for allow
		rule   string
		check  func(t *testing.T, d *sp.Decision)
	}{
		{name: "select allowed columns", agent: "sales-summarizer", access: access(sel("public.orders", "id", "total")),
			effect: sp.Allow, rule: "roles.analyst.allow[0].select"},
		{name: "join of two granted tables", agent: "sales-summarizer", access: access(joinOrdersCustomers),
			effect: sp.Allow, rule: "roles.analyst.allow[0].select"},
		{name: "labelled column", agent: "sales-summarizer", access: access(sel("public.customers", "id", "email")),
			effect: sp.Deny, code: sp.ReasonLabelDenied, rule: "roles.analyst.deny_labels[pii.*]",
			check: func(t *testing.T, d *sp.Decision) {
				assert.Equal(t, "keyhole: permission denied: column public.customers.email is labelled pii.email, which role analyst may not read", d.Message)
				assert.Equal(t, "You may read public.customers columns: id, name, created_at. Remove email from the query (and name columns instead of using * or whole-row references).", d.Hint)
				assert.Contains(t, d.Detail, "roles.analyst.deny_labels[pii.*]")
				assert.Equal(t, "public.customers", d.Reasons[0].Table)
				assert.Equal(t, "email", d.Reasons[0].Column)
				assert.Equal(t, "pii.email", d.Reasons[0].Label)
				assert.Equal(t, 1000, d.MaxRows)
			}},
		{name: "star expands to every labelled column", agent: "sales-summarizer",
			access: access(sel("public.customers", "id", "name", "email", "ssn", "created_at", "notes")),
			effect: sp.Deny, code: sp.ReasonLabelDenied, rule: "roles.analyst.deny_labels[pii.*]",
			check: func(t *testing.T, d *sp.Decision) {
				require.Len(t, d.Reasons, 3)
				assert.Equal(t, "pii.free_text", d.Reasons[2].Label, "catalog comment label")
				assert.Contains(t, d.Hint, "Remove email, ssn, notes from the query")
			}},
		{name: "catalog comment label", agent: "sales-summarizer", access: access(sel("public.customers", "notes")),
			effect: sp.Deny, code: sp.ReasonLabelDenied, rule: "roles.analyst.deny_labels[pii.*]"},
		{name: "whole-table label without columns (count(*))", agent: "auditor-bot", access: access(sel("public.secrets")),
			effect: sp.Allow, rule: "roles.auditor.allow[0].select"},
		{name: "whole-table label denied", agent: "sales-summarizer", access: access(sel("public.secrets")),
			effect: sp.Deny, code: sp.ReasonLabelDenied, rule: "roles.analyst.deny_labels[secret]",
			check: func(t *testing.T, d *sp.Decision) {
				assert.Equal(t, "keyhole: permission denied: table public.secrets is labelled secret, which role analyst may not read", d.Message)
				assert.Equal(t, sp.ReasonNoRule, d.Reasons[1].Code)
			}},
		{name: "table without grant", agent: "sales-summarizer", access: access(sel("public.order_items", "sku")),
			effect: sp.Deny, code: sp.ReasonNoRule, rule: sp.RuleDefaultDeny,
			check: func(t *testing.T, d *sp.Decision) {
				assert.Equal(t, "keyhole: permission denied: role analyst may not select from public.order_items", d.Message)
				assert.Equal(t, "Role analyst may select from: public.orders, public.customers.", d.Hint)
				assert.Len(t, d.Reasons, 1, "columns of a refused table add no reasons")
			}},
		{name: "invalid catalog label fails closed", agent: "auditor-bot", access: access(sel("public.legacy", "blob")),
			effect: sp.Deny, code: sp.ReasonLabelDenied, rule: sp.RuleInvalidLabel},
		{name: "insert granted", agent: "sales-summarizer", access: access(sp.Statement{Verb: sp.VerbInsert, Command: "INSERT",
			Tables:  []sp.TableRef{{Rel: rel("public.orders"), Mode: sp.Write}},
			Columns: []sp.ColumnRef{{Rel: rel("public.orders"), Column: "total", Mode: sp.Write}}}),
			effect: sp.Allow, rule: "roles.analyst.allow[1].insert"},
		{name: "insert select reads need select", agent: "sales-summarizer", access: access(insertSelect),
			effect: sp.Allow, rule: "roles.analyst.allow[1].insert,roles.analyst.allow[0].select"},
		{name: "insert select of a labelled column", agent: "sales-summarizer", access: access(insertSelectEmail),
			effect: sp.Deny, code: sp.ReasonLabelDenied, rule: "roles.analyst.deny_labels[pii.*]"},
		{name: "update without grant", agent: "sales-summarizer", access: access(update("status", false)),
			effect: sp.Deny, code: sp.ReasonNoRule,
			check: func(t *testing.T, d *sp.Decision) {
				assert.Equal(t, sp.VerbUpdate, d.Reasons[0].Verb)
				assert.Equal(t, "keyhole: permission denied: role analyst may not update public.orders", d.Message)
				assert.Equal(t, "Role analyst may not update anything.", d.Hint)
			}},
		{name: "update without WHERE", agent: "writer-bot", access: access(sp.Statement{Verb: sp.VerbUpdate, Command: "UPDATE",
			Tables:  []sp.TableRef{{Rel: rel("public.orders"), Mode: sp.Write}},
			Columns: []sp.ColumnRef{{Rel: rel("public.orders"), Column: "status", Mode: sp.Write}}}),
			effect: sp.Allow, rule: "roles.writer.allow[0].update"},
		{name: "update WHERE reads need select, as in Postgres", agent: "writer-bot",
			access: access(update("status", false)), effect: sp.Deny, code: sp.ReasonNoRule,
			check: func(t *testing.T, d *sp.Decision) {
				assert.Equal(t, "keyhole: permission denied: role writer may not select from public.orders", d.Message)
			}},
		{name: "update WHERE reads with select", agent: "helpdesk",
			access: access(update("status", false)), effect: sp.Allow, rule: "roles.support.allow[2].update,roles.support.allow[1].select"},
		{name: "upsert reading a column outside the select list", agent: "upsert-bot", access: access(sp.Statement{Verb: sp.VerbInsert,
			Command: "INSERT ... ON CONFLICT DO UPDATE", Upsert: true,
			Tables:  []sp.TableRef{{Rel: rel("public.orders"), Mode: sp.Write}},
			Columns: []sp.ColumnRef{{Rel: rel("public.orders"), Column: "total", Mode: sp.Write}, {Rel: rel("public.orders"), Column: "status", Mode: sp.Read}}}),
			effect: sp.Deny, code: sp.ReasonColumnNotAllowed, rule: "roles.upserter.allow[3].select"},
		{name: "update RETURNING needs select on the target", agent: "writer-bot",
			access: access(update("status", true)), effect: sp.Deny, code: sp.ReasonNoRule,
			check: func(t *testing.T, d *sp.Decision) { assert.Equal(t, sp.VerbSelect, d.Reasons[0].Verb) }},
		{name: "update of a column outside the column list", agent: "helpdesk", access: access(update("total", false)),
			effect: sp.Deny, code: sp.ReasonColumnNotAllowed, rule: "roles.support.allow[2].update",
			check: func(t *testing.T, d *sp.Decision) {
				assert.Equal(t, "keyhole: permission denied: role support may not write column public.orders.total", d.Message)
				assert.Contains(t, d.Hint, "You may write public.orders columns: status.")
			}},
		{name: "update WHERE reading a labelled column of another table", agent: "helpdesk",
			access: access(update("status", false, sp.ColumnRef{Rel: rel("public.customers"), Column: "ssn", Mode: sp.Read})),
			effect: sp.Deny, code: sp.ReasonLabelDenied, rule: "roles.support.deny_labels[pii.ssn]"},
		{name: "column list", agent: "helpdesk", access: access(sel("public.customers", "id", "created_at")),
			effect: sp.Deny, code: sp.ReasonColumnNotAllowed, rule: "roles.support.allow[0].select",
			check: func(t *testing.T, d *sp.Decision) {
				assert.Equal(t, "keyhole: permission denied: role support may not read column public.customers.created_at", d.Message)
				assert.Contains(t, d.Hint, "You may read public.customers columns: id, name, email. Remove created_at")
			}},
		{name: "label beats column list", agent: "helpdesk", access: access(sel("public.customers", "ssn")),
			effect: sp.Deny, code: sp.ReasonLabelDenied, rule: "roles.support.deny_labels[pii.ssn]"},
		{name: "write of a labelled column", agent: "helpdesk", access: access(sp.Statement{Verb: sp.VerbInsert, Command: "INSERT",
			Tables:  []sp.TableRef{{Rel: rel("public.customers"), Mode: sp.Write}},
			Columns: []sp.ColumnRef{{Rel: rel("public.customers"), Column: "name", Mode: sp.Write}, {Rel: rel("public.customers"), Column: "ssn", Mode: sp.Write}}}),
			effect: sp.Deny, code: sp.ReasonLabelDenied,
			check: func(t *testing.T, d *sp.Decision) {
				assert.Equal(t, "keyhole: permission denied: column public.customers.ssn is labelled pii.ssn, which role support may not write", d.Message)
			}},
		{name: "view granted, labelled column through it", agent: "helpdesk", access: access(viewSSN),
			effect: sp.Deny, code: sp.ReasonLabelDenied, rule: "roles.support.deny_labels[pii.ssn]"},
		{name: "view granted, base table not granted directly", agent: "helpdesk", access: access(viewID),
			effect: sp.Allow, rule: "roles.support.allow[1].select"},
		{name: "view not granted", agent: "sales-summarizer", access: access(viewID),
			effect: sp.Deny, code: sp.ReasonNoRule},
		{name: "unparseable", agent: "sales-summarizer", access: access(sp.Statement{Command: "UNKNOWN",
			Problems: []sp.Problem{{Code: sp.ProblemUnparseable, Detail: `syntax error at or near "SELEC"`}}}),
			effect: sp.Deny, code: sp.ReasonProblem, rule: sp.RuleDefaultDeny,
			check: func(t *testing.T, d *sp.Decision) {
				require.Len(t, d.Reasons, 1)
				assert.Equal(t, sp.ProblemUnparseable, d.Reasons[0].Problem)
				assert.Equal(t, `keyhole: permission denied: statement refused (unparseable): syntax error at or near "SELEC"`, d.Message)
			}},
		{name: "dangerous function always denied", agent: "helpdesk",
			access: access(problem(sp.ProblemDangerousFunc, func(p *sp.Problem) { p.Func = "pg_catalog.pg_read_file" })),
			effect: sp.Deny, code: sp.ReasonProblem},
		{name: "session change allowed by settings", agent: "helpdesk",
			access: access(sp.Statement{Verb: sp.VerbSet, Command: "SET", LiteralSensitive: true,
				Settings: []sp.Setting{{Name: "search_path", Value: "public", Guarded: true}},
				Problems: []sp.Problem{{Code: sp.ProblemSessionChange, Setting: "search_path"}}}),
			effect: sp.Allow, rule: "roles.support.settings[search_path]"},
		{name: "session change denied", agent: "sales-summarizer",
			access: access(sp.Statement{Verb: sp.VerbSet, Command: "SET",
				Settings: []sp.Setting{{Name: "search_path", Value: "evil", Guarded: true}},
				Problems: []sp.Problem{{Code: sp.ProblemSessionChange, Setting: "search_path"}}}),
			effect: sp.Deny, code: sp.ReasonSettingDenied,
			check: func(t *testing.T, d *sp.Decision) {
				assert.Equal(t, "keyhole: permission denied: role analyst may not change setting search_path", d.Message)
			}},
		{name: "identity setting without a problem is still guarded", agent: "sales-summarizer",
			access: access(sp.Statement{Verb: sp.VerbSet, Command: "RESET", Settings: []sp.Setting{{Name: "session_authorization", Reset: true, Guarded: true}}}),
			effect: sp.Deny, code: sp.ReasonSettingDenied},
		{name: "lexing setting without a problem is still guarded", agent: "sales-summarizer",
			access: access(sp.Statement{Verb: sp.VerbSet, Command: "SET", Settings: []sp.Setting{{Name: "standard_conforming_strings", Value: "off", Guarded: true}}}),
			effect: sp.Deny, code: sp.ReasonSettingDenied},
		{name: "unguarded setting change needs no rule", agent: "sales-summarizer",
			access: access(sp.Statement{Verb: sp.VerbSet, Command: "SET", Settings: []sp.Setting{{Name: "client_encoding", Value: "UNICODE"}}}),
			effect: sp.Allow},
		{name: "multibyte client encoding without a problem is still guarded", agent: "sales-summarizer",
			access: access(sp.Statement{Verb: sp.VerbSet, Command: "SET", Settings: []sp.Setting{{Name: "client_encoding", Value: "SJIS", Guarded: true}}}),
			effect: sp.Deny, code: sp.ReasonSettingDenied},
		{name: "guarded setting listed in settings", agent: "helpdesk",
			access: access(sp.Statement{Verb: sp.VerbSet, Command: "SET", Settings: []sp.Setting{{Name: "search_path", Value: "public", Guarded: true}}}),
			effect: sp.Allow, rule: "roles.support.settings[search_path]"},
		{name: "reset of search_path to the login default", agent: "sales-summarizer",
			access: access(sp.Statement{Verb: sp.VerbUtility, Command: "DISCARD ALL", DeallocateAll: true,
				Settings: []sp.Setting{{Name: "search_path", Reset: true}, {Name: "all", Reset: true}}}),
			effect: sp.Allow, rule: sp.RuleNoDataAccess},
		{name: "SHOW of a guarded setting", agent: "sales-summarizer",
			access: access(sp.Statement{Verb: sp.VerbSet, Command: "SHOW", ReturnsRows: true, Settings: []sp.Setting{{Name: "search_path", Show: true}}}),
			effect: sp.Allow, rule: sp.RuleNoDataAccess},
		{name: "upsert needs update too", agent: "sales-summarizer", access: access(sp.Statement{Verb: sp.VerbInsert,
			Command: "INSERT ... ON CONFLICT DO UPDATE", Upsert: true,
			Tables:  []sp.TableRef{{Rel: rel("public.orders"), Mode: sp.Write}},
			Columns: []sp.ColumnRef{{Rel: rel("public.orders"), Column: "total", Mode: sp.Write}}}),
			effect: sp.Deny, code: sp.ReasonNoRule,
			check: func(t *testing.T, d *sp.Decision) {
				assert.Equal(t, "keyhole: permission denied: role analyst may not update public.orders", d.Message)
			}},
		{name: "upsert with insert and update grants", agent: "upsert-bot", access: access(sp.Statement{Verb: sp.VerbInsert,
			Command: "INSERT ... ON CONFLICT DO UPDATE", Upsert: true,
			Tables:  []sp.TableRef{{Rel: rel("public.orders"), Mode: sp.Write}},
			Columns: []sp.ColumnRef{{Rel: rel("public.orders"), Column: "total", Mode: sp.Write}, {Rel: rel("public.orders"), Column: "id", Mode: sp.Read}}}),
			effect: sp.Allow, rule: "roles.upserter.allow[0].insert,roles.upserter.allow[1].update"},
		{name: "upsert writing a column outside the update list", agent: "upsert-bot", access: access(sp.Statement{Verb: sp.VerbInsert,
			Command: "INSERT ... ON CONFLICT DO UPDATE", Upsert: true,
			Tables:  []sp.TableRef{{Rel: rel("public.orders"), Mode: sp.Write}},
			Columns: []sp.ColumnRef{{Rel: rel("public.orders"), Column: "customer_id", Mode: sp.Write}}}),
			effect: sp.Deny, code: sp.ReasonColumnNotAllowed, rule: "roles.upserter.allow[1].update",
			check: func(t *testing.T, d *sp.Decision) {
				assert.Equal(t, sp.VerbUpdate, d.Reasons[0].Verb)
				assert.Contains(t, d.Hint, "You may write public.orders columns: total, status.")
			}},
		{name: "merge update action with a merge grant", agent: "merge-bot", access: access(mergeStmt(
			[]sp.TableRef{{Rel: rel("public.orders"), Mode: sp.Write, Action: sp.VerbUpdate, Merge: true}},
			sp.ColumnRef{Rel: rel("public.orders"), Column: "status", Mode: sp.Write, Action: sp.VerbUpdate, Merge: true})),
			effect: sp.Allow, rule: "roles.merger.allow[0].merge"},
		{name: "merge delete action needs delete", agent: "merge-bot", access: access(mergeStmt(
			[]sp.TableRef{{Rel: rel("public.orders"), Mode: sp.Write, Action: sp.VerbUpdate, Merge: true},
				{Rel: rel("public.orders"), Mode: sp.Write, Action: sp.VerbDelete, Merge: true}},
			sp.ColumnRef{Rel: rel("public.orders"), Column: "status", Mode: sp.Write, Action: sp.VerbUpdate, Merge: true})),
			effect: sp.Deny, code: sp.ReasonNoRule,
			check: func(t *testing.T, d *sp.Decision) {
				assert.Equal(t, sp.VerbDelete, d.Reasons[0].Verb)
				assert.Equal(t, "keyhole: permission denied: role merger may not delete from public.orders", d.Message)
				assert.Contains(t, d.Hint, "leave out the WHEN ... THEN DELETE clauses")
				assert.Contains(t, d.Hint, "Role merger may not delete from anything.")
			}},
		{name: "merge delete action: a delete grant does not stand for merge", agent: "writer-bot", access: access(mergeStmt(
			[]sp.TableRef{{Rel: rel("public.orders"), Mode: sp.Write, Action: sp.VerbDelete, Merge: true}})),
			effect: sp.Deny, code: sp.ReasonNoRule,
			check: func(t *testing.T, d *sp.Decision) {
				assert.Equal(t, sp.VerbMerge, d.Reasons[0].Verb, "the delete grant does not stand for the merge grant")
				assert.Len(t, d.Reasons, 1)
			}},
		{name: "delete in WITH of a MERGE needs delete", agent: "merge-bot", access: access(mergeStmt(
			[]sp.TableRef{{Rel: rel("public.orders"), Mode: sp.Write, Action: sp.VerbDelete}})),
			effect: sp.Deny, code: sp.ReasonNoRule,
			check: func(t *testing.T, d *sp.Decision) { assert.Equal(t, sp.VerbDelete, d.Reasons[0].Verb) }},
		{name: "upsert by action: inserted column outside the update list", agent: "upsert-bot", access: access(sp.Statement{Verb: sp.VerbInsert,
			Command: "INSERT ... ON CONFLICT DO UPDATE", Upsert: true,
			Tables: []sp.TableRef{{Rel: rel("public.orders"), Mode: sp.Write, Action: sp.VerbInsert},
				{Rel: rel("public.orders"), Mode: sp.Write, Action: sp.VerbUpdate}},
			Columns: []sp.ColumnRef{{Rel: rel("public.orders"), Column: "customer_id", Mode: sp.Write, Action: sp.VerbInsert},
				{Rel: rel("public.orders"), Column: "status", Mode: sp.Write, Action: sp.VerbUpdate}}}),
			effect: sp.Allow, rule: "roles.upserter.allow[0].insert,roles.upserter.allow[1].update"},
		{name: "upsert by action: SET column outside the update list", agent: "upsert-bot", access: access(sp.Statement{Verb: sp.VerbInsert,
			Command: "INSERT ... ON CONFLICT DO UPDATE", Upsert: true,
			Tables: []sp.TableRef{{Rel: rel("public.orders"), Mode: sp.Write, Action: sp.VerbInsert},
				{Rel: rel("public.orders"), Mode: sp.Write, Action: sp.VerbUpdate}},
			Columns: []sp.ColumnRef{{Rel: rel("public.orders"), Column: "customer_id", Mode: sp.Write, Action: sp.VerbUpdate}}}),
			effect: sp.Deny, code: sp.ReasonColumnNotAllowed, rule: "roles.upserter.allow[1].update",
			check: func(t *testing.T, d *sp.Decision) {
				assert.Equal(t, sp.VerbUpdate, d.Reasons[0].Verb)
				assert.Empty(t, d.Reasons[0].Detail, "the column's action is known: no both-grants detail")
			}},
		{name: "upsert by action: update half without an update grant", agent: "sales-summarizer", access: access(sp.Statement{Verb: sp.VerbInsert,
			Command: "INSERT ... ON CONFLICT DO UPDATE", Upsert: true,
			Tables: []sp.TableRef{{Rel: rel("public.orders"), Mode: sp.Write, Action: sp.VerbInsert},
				{Rel: rel("public.orders"), Mode: sp.Write, Action: sp.VerbUpdate}},
			Columns: []sp.ColumnRef{{Rel: rel("public.orders"), Column: "status", Mode: sp.Write, Action: sp.VerbUpdate}}}),
			effect: sp.Deny, code: sp.ReasonNoRule,
			check: func(t *testing.T, d *sp.Decision) {
				assert.Equal(t, sp.VerbUpdate, d.Reasons[0].Verb)
			}},
		{name: "delete in a CTE needs delete, not the outer insert", agent: "upsert-bot", access: access(sp.Statement{Verb: sp.VerbInsert,
			Command: "INSERT",
			Tables: []sp.TableRef{{Rel: rel("public.orders"), Mode: sp.Write, Action: sp.VerbInsert},
				{Rel: rel("public.orders"), Mode: sp.Write, Action: sp.VerbDelete}}}),
			effect: sp.Deny, code: sp.ReasonNoRule,
			check: func(t *testing.T, d *sp.Decision) {
				assert.Equal(t, sp.VerbDelete, d.Reasons[0].Verb)
			}},
		{name: "merge target needs a merge grant whatever the column actions", agent: "upsert-bot", access: access(sp.Statement{Verb: sp.VerbMerge,
			Command: "MERGE",
			Tables:  []sp.TableRef{{Rel: rel("public.orders"), Mode: sp.Write, Action: sp.VerbMerge}},
			Columns: []sp.ColumnRef{{Rel: rel("public.orders"), Column: "status", Mode: sp.Write, Action: sp.VerbUpdate}}}),
			effect: sp.Deny, code: sp.ReasonNoRule,
			check: func(t *testing.T, d *sp.Decision) {
				assert.Equal(t, sp.VerbMerge, d.Reasons[0].Verb)
			}},
		{name: "nextval needs update on the sequence", agent: "upsert-bot", access: access(sp.Statement{Verb: sp.VerbSelect,
			Command: "SELECT", ReturnsRows: true, LiteralSensitive: true, Functions: []sp.FuncRef{{Schema: "pg_catalog", Name: "now", Builtin: true}},
			Tables: []sp.TableRef{{Rel: rel("public.order_seq"), Mode: sp.Write}}}),
			effect: sp.Allow, rule: "roles.upserter.allow[2].update"},
		{name: "nextval without update on the sequence", agent: "sales-summarizer", access: access(sp.Statement{Verb: sp.VerbSelect,
			Command: "SELECT", ReturnsRows: true, Tables: []sp.TableRef{{Rel: rel("public.order_seq"), Mode: sp.Write}}}),
			effect: sp.Deny, code: sp.ReasonNoRule,
			check: func(t *testing.T, d *sp.Decision) {
				assert.Equal(t, "keyhole: permission denied: role analyst may not update public.order_seq", d.Message)
			}},
		{name: "harmless setting", agent: "sales-summarizer",
			access: access(sp.Statement{Verb: sp.VerbSet, Command: "SET", Settings: []sp.Setting{{Name: "statement_timeout", Value: "5s"}}}),
			effect: sp.Allow, rule: sp.RuleNoDataAccess},
		{name: "FOR UPDATE with a lock grant", agent: "helpdesk", access: access(func() sp.Statement {
			st := sel("public.orders", "id")
			st.Problems = []sp.Problem{{Code: sp.ProblemLocking, Rel: rel("public.orders")}}
			return st
		}()), effect: sp.Allow, rule: "roles.support.allow[4].lock,roles.support.allow[1].select"},
		{name: "FOR UPDATE without a lock grant", agent: "sales-summarizer", access: access(func() sp.Statement {
			st := sel("public.orders", "id")
			st.Problems = []sp.Problem{{Code: sp.ProblemLocking, Rel: rel("public.orders")}}
			return st
		}()), effect: sp.Deny, code: sp.ReasonProblem},
		{name: "LOCK TABLE with a lock grant", agent: "helpdesk", access: access(sp.Statement{Verb: sp.VerbLock, Command: "LOCK TABLE",
			Tables: []sp.TableRef{{Rel: rel("public.orders"), Mode: sp.Write}}}), effect: sp.Allow, rule: "roles.support.allow[4].lock"},
		{name: "LOCK TABLE without a lock grant", agent: "sales-summarizer", access: access(sp.Statement{Verb: sp.VerbLock, Command: "LOCK TABLE",
			Tables: []sp.TableRef{{Rel: rel("public.orders"), Mode: sp.Write}}}), effect: sp.Deny, code: sp.ReasonNoRule},
		{name: "system catalog read", agent: "sales-summarizer", access: access(system(sel("pg_catalog.pg_class", "relname"))),
			effect: sp.Allow, rule: "roles.analyst.catalog"},
		{name: "system catalog read with catalog: false", agent: "auditor-bot", access: access(system(sel("pg_catalog.pg_class", "relname"))),
			effect: sp.Deny, code: sp.ReasonNoRule},
		{name: "data catalog", agent: "sales-summarizer",
			access: access(problem(sp.ProblemDataCatalog, func(p *sp.Problem) { p.Rel = rel("pg_catalog.pg_statistic") })),
			effect: sp.Deny, code: sp.ReasonProblem},
		{name: "built-in function", agent: "sales-summarizer", access: access(withFuncs(sel("public.orders", "status"), lower)),
			effect: sp.Allow},
		{name: "listed function", agent: "helpdesk", access: access(withFuncs(sel("public.orders", "status"), myFn)),
			effect: sp.Allow, rule: "roles.support.allow[1].select,roles.support.functions[public.my_fn]"},
		{name: "unlisted function", agent: "sales-summarizer", access: access(withFuncs(sel("public.orders", "status"), myFn)),
			effect: sp.Deny, code: sp.ReasonFunctionDenied,
			check: func(t *testing.T, d *sp.Decision) {
				assert.Equal(t, "keyhole: permission denied: role analyst may not call function public.my_fn", d.Message)
			}},
		{name: "unresolved function", agent: "helpdesk", access: access(withFuncs(sel("public.orders", "status"), sp.FuncRef{Name: "mystery"})),
			effect: sp.Deny, code: sp.ReasonProblem, check: func(t *testing.T, d *sp.Decision) {
				// Denied even when the analyzer reports no Problem for it: a
				// function that did not resolve does not exist (42883).
				assert.Equal(t, sp.ProblemUnknownFunction, d.Reasons[0].Problem)
				assert.Equal(t, "42883", d.SQLState)
			}},
		{name: "call granted", agent: "helpdesk", access: access(sp.Statement{Verb: sp.VerbCall, Command: "CALL", Functions: []sp.FuncRef{refund}}),
			effect: sp.Allow, rule: "roles.support.allow[5].call"},
		{name: "call grant covers only the invoked procedure", agent: "helpdesk",
			access: access(sp.Statement{Verb: sp.VerbCall, Command: "CALL", Functions: []sp.FuncRef{
				{Schema: "public", Name: "refund", Procedure: true}, {Schema: "public", Name: "refund"}}}),
			effect: sp.Deny, code: sp.ReasonFunctionDenied},
		{name: "call of an analyzer that flags no procedure: the first function", agent: "helpdesk",
			access: access(sp.Statement{Verb: sp.VerbCall, Command: "CALL", Functions: []sp.FuncRef{
				{Schema: "public", Name: "audit"}, refund}}),
			effect: sp.Deny, code: sp.ReasonFunctionDenied},
		{name: "call not granted", agent: "sales-summarizer", access: access(sp.Statement{Verb: sp.VerbCall, Command: "CALL", Functions: []sp.FuncRef{refund}}),
			effect: sp.Deny, code: sp.ReasonFunctionDenied},
		{name: "transaction", agent: "sales-summarizer", access: access(sp.Statement{Verb: sp.VerbTransaction, Command: "BEGIN"}),
			effect: sp.Allow, rule: sp.RuleNoDataAccess},
		{name: "deallocate", agent: "sales-summarizer", access: access(sp.Statement{Verb: sp.VerbDeallocate, Command: "DEALLOCATE", DeallocateAll: true}),
			effect: sp.Allow, rule: sp.RuleNoDataAccess},
		{name: "DO block", agent: "helpdesk", access: access(sp.Statement{Verb: sp.VerbDo, Command: "DO"}),
			effect: sp.Deny, code: sp.ReasonNoRule},
		{name: "DDL without grant", agent: "auditor-bot", access: access(sp.Statement{Verb: sp.VerbDDL, Command: "DROP TABLE",
			Tables: []sp.TableRef{{Rel: rel("public.orders"), Mode: sp.Write}}}),
			effect: sp.Deny, code: sp.ReasonNoRule,
			check: func(t *testing.T, d *sp.Decision) { assert.Equal(t, sp.VerbDDL, d.Reasons[0].Verb) }},
		{name: "DDL naming no relation", agent: "auditor-bot", access: access(sp.Statement{Verb: sp.VerbDDL, Command: "CREATE SCHEMA"}),
			effect: sp.Deny, code: sp.ReasonNoRule},
		{name: "unknown verb", agent: "auditor-bot", access: access(sp.Statement{Verb: "frobnicate"}),
			effect: sp.Deny, code: sp.ReasonProblem},
		{name: "COPY TO counts as select", agent: "sales-summarizer", access: access(copyStmt("public.orders", sp.Read)),
			effect: sp.Allow, rule: "roles.analyst.allow[0].select"},
		{name: "COPY FROM counts as insert", agent: "sales-summarizer", access: access(copyStmt("public.orders", sp.Write)),
			effect: sp.Allow, rule: "roles.analyst.allow[1].insert"},
		{name: "copy grant covers both directions", agent: "helpdesk", access: access(copyStmt("public.order_items", sp.Write)),
			effect: sp.Allow, rule: "roles.support.allow[6].copy"},
		{name: "COPY FROM without grant", agent: "auditor-bot", access: access(copyStmt("public.orders", sp.Write)),
			effect: sp.Deny, code: sp.ReasonNoRule},
		// COPY (DELETE FROM t RETURNING ...) TO STDOUT deletes: the copy
		// or insert grant does not cover it, the delete grant does.
		{name: "COPY over a DELETE needs delete", agent: "helpdesk", access: access(copyWrite("public.order_items", sp.VerbDelete)),
			effect: sp.Deny, code: sp.ReasonNoRule},
		{name: "COPY over an UPDATE needs update", agent: "sales-summarizer", access: access(copyWrite("public.orders", sp.VerbUpdate)),
			effect: sp.Deny, code: sp.ReasonNoRule},
		{name: "COPY over a DELETE with the delete grant", agent: "writer-bot", access: access(copyWrite("public.orders", sp.VerbDelete)),
			effect: sp.Allow, rule: "roles.writer.allow[1].delete"},
		{name: "COPY over an INSERT is an insert", agent: "helpdesk", access: access(copyWrite("public.order_items", sp.VerbInsert)),
			effect: sp.Allow, rule: "roles.support.allow[6].copy"},
		{name: "writable CTE needs insert, update and delete", agent: "writer-bot", access: access(sp.Statement{Verb: sp.VerbSelect,
			Command: "SELECT", ReturnsRows: true, Tables: []sp.TableRef{{Rel: rel("public.orders"), Mode: sp.Write}}}),
			effect: sp.Deny, code: sp.ReasonNoRule},
		{name: "explain of an allowed statement", agent: "helpdesk", access: access(explain(sel("public.orders", "id"), true)),
			effect: sp.Allow, rule: "roles.support.allow[1].select"},
		{name: "explain of a denied statement", agent: "helpdesk", access: access(explain(sel("public.customers", "ssn"), false)),
			effect: sp.Deny, code: sp.ReasonLabelDenied},
		{name: "explain not enabled", agent: "sales-summarizer", access: access(explain(sel("public.orders", "id"), false)),
			effect: sp.Deny, code: sp.ReasonNoRule, rule: "roles.analyst.explain",
			check: func(t *testing.T, d *sp.Decision) {
				assert.Equal(t, "keyhole: permission denied: role analyst may not run EXPLAIN", d.Message)
			}},
		{name: "explain not enabled, inner denied: inner reason first", agent: "sales-summarizer",
			access: access(explain(sel("public.customers", "email"), false)),
			effect: sp.Deny, code: sp.ReasonLabelDenied,
			check: func(t *testing.T, d *sp.Decision) {
				assert.Equal(t, sp.VerbExplain, d.Reasons[len(d.Reasons)-1].Verb)
			}},
		{name: "prepare decides the inner statement", agent: "sales-summarizer", access: access(prepare(sel("public.orders", "id"))),
			effect: sp.Allow, rule: "roles.analyst.allow[0].select"},
		{name: "prepare of a denied statement", agent: "sales-summarizer", access: access(prepare(sel("public.customers", "ssn"))),
			effect: sp.Deny, code: sp.ReasonLabelDenied},
		{name: "execute decides the prepared statement", agent: "sales-summarizer", access: access(func() sp.Statement {
			inner := sel("public.customers", "email")
			return sp.Statement{Verb: sp.VerbExecute, Command: "EXECUTE", ExecuteName: "s1", Prepared: &inner}
		}()), effect: sp.Deny, code: sp.ReasonLabelDenied},
		{name: "execute parameters are decided too", agent: "sales-summarizer", access: access(func() sp.Statement {
			inner := sel("public.orders", "id")
			_, cs := read("public.customers", "ssn")
			ts, _ := read("public.customers")
			return sp.Statement{Verb: sp.VerbExecute, Command: "EXECUTE", ExecuteName: "s1", Prepared: &inner, Tables: ts, Columns: cs}
		}()), effect: sp.Deny, code: sp.ReasonLabelDenied},
		{name: "execute with allowed parameters", agent: "sales-summarizer", access: access(func() sp.Statement {
			inner := sel("public.orders", "id")
			return sp.Statement{Verb: sp.VerbExecute, Command: "EXECUTE", ExecuteName: "s1", Prepared: &inner,
				Functions: []sp.FuncRef{lower}}
		}()), effect: sp.Allow, rule: "roles.analyst.allow[0].select"},
		{name: "execute of an unknown name", agent: "sales-summarizer", access: access(sp.Statement{Verb: sp.VerbExecute,
			Command: "EXECUTE", ExecuteName: "nope", Problems: []sp.Problem{{Code: sp.ProblemUnknownPrepared}}}),
			effect: sp.Deny, code: sp.ReasonProblem},
		{name: "execute without analysis", agent: "sales-summarizer", access: access(sp.Statement{Verb: sp.VerbExecute, Command: "EXECUTE"}),
			effect: sp.Deny, code: sp.ReasonProblem},
		{name: "every statement must pass", agent: "sales-summarizer",
			access: access(sel("public.orders", "id"), sel("public.customers", "ssn")),
			effect: sp.Deny, code: sp.ReasonLabelDenied},
		{name: "empty text", agent: "sales-summarizer", access: access(), effect: sp.Allow, rule: sp.RuleNoDataAccess},
		{name: "unknown agent", agent: "mallory", access: access(sel("public.orders", "id")),
			effect: sp.Deny, code: sp.ReasonUnknownAgent,
			check: func(t *testing.T, d *sp.Decision) {
				assert.Empty(t, d.Role)
				assert.Contains(t, d.Message, `agent "mallory" is not in the policy`)
			}},
		{name: "scope allows", agent: "sales-summarizer", scope: []sp.Grant{{Verb: sp.VerbSelect, Tables: []string{"public.orders"}}},
			access: access(sel("public.orders", "id")), effect: sp.Allow},
		{name: "scope narrows the role", agent: "sales-summarizer", scope: []sp.Grant{{Verb: sp.VerbSelect, Tables: []string{"public.orders"}}},
			access: access(sel("public.customers", "id")), effect: sp.Deny, code: sp.ReasonScopeDenied, rule: sp.RuleScope},
		{name: "scope cannot widen the role", agent: "sales-summarizer", scope: []sp.Grant{{Verb: sp.VerbSelect, Tables: []string{"public.*"}}},
			access: access(sel("public.order_items", "sku")), effect: sp.Deny, code: sp.ReasonNoRule},
		{name: "empty scope allows no table", agent: "sales-summarizer", scope: []sp.Grant{},
			access: access(sel("public.orders", "id")), effect: sp.Deny, code: sp.ReasonScopeDenied},
		{name: "scope leaves catalog reads alone", agent: "sales-summarizer", scope: []sp.Grant{},
			access: access(system(sel("pg_catalog.pg_class", "relname"))), effect: sp.Allow},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := p.Decide(sp.Principal{Agent: tc.agent, Scope: tc.scope}, tc.access, cat)
			require.NotNil(t, d)
			assert.Equal(t, tc.effect, d.Effect, "reasons: %+v", d.Reasons)
			assert.Equal(t, tc.agent, d.Agent)
			if tc.effect == sp.Deny {
				require.NotEmpty(t, d.Reasons)
				assert.Equal(t, tc.code, d.Reasons[0].Code, "reasons: %+v", d.Reasons)
				assert.Equal(t, d.Reasons[0].Rule, d.Rule)
				assert.NotEmpty(t, d.Message)
				assert.NotEmpty(t, d.Detail)
				assert.NotEmpty(t, d.Hint)
			} else {
				assert.Empty(t, d.Message)
				for _, r := range d.Reasons {
					assert.Equal(t, sp.ReasonAllowedByRule, r.Code)
				}
			}
			if tc.rule != "" {
				assert.Equal(t, tc.rule, d.Rule)
			}
			if tc.check != nil {
				tc.check(t, d)
			}
		})
	}
}

func TestDecideWithoutCatalog(t *testing.T) {
	t.Parallel()
	p := mustPolicy(t, fixture.Policy, nil)
	pr := sp.Principal{Agent: "sales-summarizer"}
	// Policy labels still apply; functions the analyzer marks built in need no rule.
	d := p.Decide(pr, access(sel("public.customers", "email")), nil)
	assert.Equal(t, sp.Deny, d.Effect)
	d = p.Decide(pr, access(withFuncsOnly(sel("public.orders", "id"), sp.FuncRef{Schema: "pg_catalog", Name: "lower", Builtin: true})), nil)
	assert.Equal(t, sp.Allow, d.Effect)
	d = p.Decide(pr, access(withFuncsOnly(sel("public.orders", "id"), sp.FuncRef{Schema: "public", Name: "lower"})), nil)
	assert.Equal(t, sp.Deny, d.Effect)
	d = p.Decide(pr, nil, nil)
	assert.Equal(t, sp.Deny, d.Effect)
}

func withFuncsOnly(st sp.Statement, fs ...sp.FuncRef) sp.Statement {
	st.Functions = fs
	return st
}
