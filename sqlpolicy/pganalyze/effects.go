package pganalyze

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// A statement does more than its text says when the relations it reads or
// writes carry code of their own (catalog.Relation's Triggers, Rules,
// ForeignKeys and Calls). keyhole's upstream login usually holds more
// privileges than the agent's role, so whatever such code reads or writes
// with the session's privileges is as much the statement's as its own
// expressions:
//
//   - a trigger runs its function (and its WHEN condition) with the
//     session's privileges, for each row (FOR EACH ROW) or once even when
//     no row is written (FOR EACH STATEMENT); UPDATE OF triggers only
//     when the UPDATE sets one of their columns. Its functions are
//     reported as functions the statement calls (FuncRef.Via says which
//     trigger), so the role must allow them like any user function;
//   - check constraints, generated columns, index expressions, domain
//     constraints and defaults, and row security policies run their user
//     functions on the events the catalog lists: reported the same way;
//   - a rule's actions run with the relation owner's privileges in place
//     of or besides the statement (never for COPY): refused, since what
//     they do is not modelled;
//   - a delete of a referenced row deletes the rows referencing it under
//     ON DELETE CASCADE and sets their keys under SET NULL / SET DEFAULT;
//     an update of a referenced key column updates the referencing
//     columns under ON UPDATE CASCADE, SET NULL or SET DEFAULT. Postgres
//     runs those as the referencing table's owner, so no privilege of the
//     session is checked; they are reported as the statement's own writes
//     (the role needs grants for them), transitively, and the triggers,
//     rules and calls of the tables they write count too (the cascaded
//     statements fire them).

// fkChild is a foreign key of a child table, indexed by its parent.
type fkChild struct {
	child *catalog.Relation
	fk    *catalog.ForeignKey
}

// catalogIndex is what the analyzer looks up for every statement, built
// once from the catalog.
type catalogIndex struct {
	// fks maps every referenced relation to the foreign keys that
	// reference it.
	fks map[sqlpolicy.Rel][]fkChild
	// multiFuncs are the function names more than one schema has (only
	// those can resolve to another schema's function than the first).
	multiFuncs map[string]bool
	// userOps are the operator names some user operator has.
	userOps map[string]bool
	// missing are the columns with a value in pg_attribute.attmissingval
	// (catalog.Column.HasMissing), sorted, as reads through pg_attribute.
	missing []sqlpolicy.ColumnRef
}

func (a *Analyzer) index() *catalogIndex {
	a.idxOnce.Do(func() {
		x := &catalogIndex{fks: map[sqlpolicy.Rel][]fkChild{}, multiFuncs: map[string]bool{}, userOps: map[string]bool{}}
		for _, rels := range a.cat.Relations {
			for _, r := range rels {
				for i := range r.ForeignKeys {
					fk := &r.ForeignKeys[i]
					parent := sqlpolicy.Rel{Schema: fk.RefSchema, Name: fk.RefTable}
					x.fks[parent] = append(x.fks[parent], fkChild{child: r, fk: fk})
				}
				for _, col := range r.Columns {
					if col.HasMissing {
						x.missing = append(x.missing, sqlpolicy.ColumnRef{Rel: sqlpolicy.Rel{Schema: r.Schema, Name: r.Name},
							Column: col.Name, Mode: sqlpolicy.Read, Via: attMissingVal.Rel})
					}
				}
			}
		}
		slices.SortFunc(x.missing, func(a, b sqlpolicy.ColumnRef) int {
			return cmp.Or(cmp.Compare(a.Rel.Schema, b.Rel.Schema), cmp.Compare(a.Rel.Name, b.Rel.Name), cmp.Compare(a.Column, b.Column))
		})
		seen := map[string]bool{}
		for _, fs := range a.cat.Functions {
			for name := range fs {
				if seen[name] {
					x.multiFuncs[name] = true
				}
				seen[name] = true
			}
		}
		for _, ops := range a.cat.Operators {
			for name, list := range ops {
				for _, op := range list {
					schema, fn, _ := strings.Cut(op.Function, ".")
					if f := a.cat.Function(schema, fn); f == nil || !f.Builtin {
						x.userOps[name] = true
					}
				}
			}
		}
		a.idx = x
	})
	return a.idx
}

// fkChildren maps every referenced relation to the foreign keys that
// reference it.
func (a *Analyzer) fkChildren() map[sqlpolicy.Rel][]fkChild { return a.index().fks }

// rowEvents are the trigger, rule and implicit call events of a row
// action. A MERGE's target is reported once more per kind of action its
// WHEN clauses take (TableRef.Merge), which carries the events; an
// upsert's update half is reported as an update of its own.
func rowEvents(action sqlpolicy.Verb) []string {
	switch action {
	case sqlpolicy.VerbInsert:
		return []string{"INSERT"}
	case sqlpolicy.VerbUpdate:
		return []string{"UPDATE"}
	case sqlpolicy.VerbDelete:
		return []string{"DELETE"}
	case sqlpolicy.VerbMerge:
		// The target as a whole: the join reads it (row security's
		// SELECT policies); its actions bring their own events.
		return []string{}
	}
	return nil
}

// effects adds what the statement's reads and writes run beyond its text.
// It runs once the walk has reported every table, and goes on until the
// cascaded writes it adds add nothing new.
func (w *walker) effects() {
	if w.st.Verb == sqlpolicy.VerbDDL {
		// Event triggers fire on DDL and run their functions with the
		// session's privileges (conservatively: on every DDL statement).
		for _, et := range w.cat.EventTriggers {
			for _, f := range et.Functions {
				w.implicitFunc(f, fmt.Sprintf("event trigger %s (%s)", et.Name, et.Event))
			}
		}
	}
	if len(w.st.Tables) == 0 {
		return
	}
	truncate := w.st.Command == "TRUNCATE TABLE"
	done := map[sqlpolicy.TableRef]bool{}
	// The statement's own tables; those after them are added here
	// (foreign key actions and the reads of constraints.go).
	own := len(w.st.Tables)
	for i := 0; i < len(w.st.Tables); i++ {
		t := w.st.Tables[i]
		if done[t] {
			continue
		}
		done[t] = true
		rel := w.cat.Relation(t.Rel.Schema, t.Rel.Name)
		if rel == nil || rel.System {
			continue
		}
		if !truncate || t.Mode == sqlpolicy.Read {
			w.partitionKeyReads(rel, t)
			w.rowPolicyReads(rel, t)
		}
		if t.Mode == sqlpolicy.Read {
			// Row security policies filter the rows a statement reads.
			w.implicitCalls(rel, []string{"SELECT"})
			continue
		}
		if truncate && t.Mode == sqlpolicy.Write {
			// TRUNCATE fires TRUNCATE triggers; with CASCADE it truncates
			// the tables whose foreign keys reference the table too.
			for _, r := range w.withDescendants(rel) {
				w.triggers(r, t.Rel, []string{"TRUNCATE"})
			}
			if w.truncateCascade {
				for _, ck := range w.a.fkChildren()[t.Rel] {
					// Every column of it is emptied, as of the table
					// named (ddlTarget).
					w.ddlTarget(&pg.RangeVar{Schemaname: ck.child.Schema, Relname: ck.child.Name})
				}
			}
			continue
		}
		events := rowEvents(t.Action)
		if events == nil {
			continue
		}
		w.rules(rel, t.Rel, events)
		w.constraintReads(rel, t, i < own)
		// Rows routed to partitions, or reached in inheritance children,
		// fire the children's triggers and run their constraints too; an
		// UPDATE that moves a row to another partition deletes it from
		// one and inserts it into the other, firing those triggers.
		childEvents := events
		if rel.Kind == catalog.KindPartitioned && slices.Contains(events, "UPDATE") {
			childEvents = []string{"INSERT", "UPDATE", "DELETE"}
		}
		for _, r := range w.withDescendants(rel) {
			ev := events
			if r != rel {
				ev = childEvents
			}
			w.triggers(r, t.Rel, ev)
			// Row security's SELECT policies apply to the rows an UPDATE
			// or DELETE (or RETURNING) reads as well.
			w.implicitCalls(r, append(ev[:len(ev):len(ev)], "SELECT"))
		}
		if slices.Contains(events, "DELETE") {
			for _, ck := range w.referencing(rel) {
				w.fkAction(ck, ck.fk.OnDelete, true)
			}
		}
		if slices.Contains(events, "UPDATE") {
			for _, ck := range w.referencing(rel) {
				if w.updatesAny(t.Rel, ck.fk.RefColumns) {
					w.fkAction(ck, ck.fk.OnUpdate, false)
				}
			}
		}
	}
}

// withDescendants returns rel and its partitions and inheritance
// children, transitively.
func (w *walker) withDescendants(rel *catalog.Relation) []*catalog.Relation {
	out := []*catalog.Relation{rel}
	for i := 0; i < len(out) && i < 10000; i++ {
		for _, c := range out[i].Children {
			schema, name, _ := strings.Cut(c, ".")
			if cr := w.cat.Relation(schema, name); cr != nil && !slices.Contains(out, cr) {
				out = append(out, cr)
			}
		}
	}
	return out
}

// triggers reports the functions of rel's triggers that events fire; an
// UPDATE OF trigger fires when the statement updates one of its columns
// in written (the relation the statement names: a partition's columns
// are its parent's).
func (w *walker) triggers(rel *catalog.Relation, written sqlpolicy.Rel, events []string) {
	r := sqlpolicy.Rel{Schema: rel.Schema, Name: rel.Name}
	for _, tr := range rel.Triggers {
		if !slices.Contains(events, tr.Event) {
			continue
		}
		if tr.Event == "UPDATE" && len(tr.Columns) > 0 && !w.updatesAny(written, tr.Columns) {
			continue
		}
		via := fmt.Sprintf("trigger %s on %s", tr.Name, r)
		if len(tr.Functions) == 0 {
			w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnsupported, Rel: r,
				Detail: fmt.Sprintf("%s on %s fires %s, whose function the catalog does not name", tr.Event, r, via)})
		}
		for _, f := range tr.Functions {
			w.implicitFunc(f, via)
		}
	}
}

// rules refuses a write that fires a rule of rel. COPY FROM runs no rules.
func (w *walker) rules(rel *catalog.Relation, r sqlpolicy.Rel, events []string) {
	if w.st.Verb == sqlpolicy.VerbCopy {
		return
	}
	for _, ru := range rel.Rules {
		if !slices.Contains(events, ru.Event) {
			continue
		}
		kind := "ALSO"
		if ru.Instead {
			kind = "INSTEAD"
		}
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnsupported, Rel: r,
			Detail: fmt.Sprintf("%s on %s fires rule %s (DO %s), whose actions run with the table owner's privileges "+
				"and read or write what the statement does not show; keyhole does not model rules", ru.Event, r, ru.Name, kind)})
	}
}

// implicitCalls reports the functions rel's constraints, generated
// columns, indexes, domains and row security policies run on events.
func (w *walker) implicitCalls(rel *catalog.Relation, events []string) {
	for _, c := range rel.Calls {
		if slices.ContainsFunc(c.Events, func(e string) bool { return slices.Contains(events, e) }) {
			w.implicitFunc(c.Function, fmt.Sprintf("%s of %s.%s", c.Source, rel.Schema, rel.Name))
		}
	}
}

// implicitFunc reports a call of function schema.name that via runs.
func (w *walker) implicitFunc(qualifiedName, via string) {
	schema, name, ok := strings.Cut(qualifiedName, ".")
	if !ok {
		schema, name = "", qualifiedName
	}
	w.fn(sqlpolicy.FuncRef{Schema: schema, Name: name, Via: via})
	if w.cat.Function(schema, name) == nil {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownFunction, Func: qualifiedName,
			Detail: fmt.Sprintf("%s runs function %s, which is not in the catalog", via, qualifiedName)})
	}
}

// updatesAny reports whether the statement updates one of cols of rel.
func (w *walker) updatesAny(rel sqlpolicy.Rel, cols []string) bool {
	return slices.ContainsFunc(w.st.Columns, func(c sqlpolicy.ColumnRef) bool {
		return c.Mode == sqlpolicy.Write && c.Action == sqlpolicy.VerbUpdate && c.Rel == rel && slices.Contains(cols, c.Column)
	})
}

// fkAction reports the writes a referential action makes in the child
// table: CASCADE deletes its rows (on delete) or updates its key columns
// (on update); SET NULL and SET DEFAULT update its key columns, SET
// DEFAULT with their defaults.
func (w *walker) fkAction(ck fkChild, action string, onDelete bool) {
	child := sqlpolicy.Rel{Schema: ck.child.Schema, Name: ck.child.Name}
	// Whatever the action, Postgres finds the child rows by their key
	// columns, as the table owner; under RESTRICT and NO ACTION the
	// statement fails (23503) when there are any, under the others the
	// writes it makes in them can fail (constraints.go).
	w.checkRead(child, ck.fk.Columns, sqlpolicy.Rel{Schema: ck.fk.RefSchema, Name: ck.fk.RefTable})
	switch action {
	case "CASCADE":
		if onDelete {
			w.table(sqlpolicy.TableRef{Rel: child, Mode: sqlpolicy.Write, Action: sqlpolicy.VerbDelete})
			return
		}
	case "SET NULL", "SET DEFAULT":
	default:
		return
	}
	for _, c := range ck.fk.Columns {
		w.column(sqlpolicy.ColumnRef{Rel: child, Column: c, Mode: sqlpolicy.Write, Action: sqlpolicy.VerbUpdate})
		if action == "SET DEFAULT" {
			if col := ck.child.Column(c); col != nil {
				w.defaulted(ck.child, col)
			}
		}
	}
	w.table(sqlpolicy.TableRef{Rel: child, Mode: sqlpolicy.Write, Action: sqlpolicy.VerbUpdate})
}
