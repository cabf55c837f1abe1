package pganalyze

import (
	"slices"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// Postgres evaluates some things over whole rows, or over other tables,
// that a statement's text does not name, and the statement's outcome
// (success or failure, the rows it returns or counts) then shows what it
// found. Those are reads of the columns involved, reported as such with
// Via = the relation the statement names, as for a view: the columns'
// labels (and their tables') apply as to any read, but the role needs no
// grant on them, since Postgres asks none.
//
//   - Foreign key checks. The RI triggers look the new or changed key of
//     a child row up in the parent (an INSERT, COPY FROM, MERGE INSERT,
//     or an UPDATE that sets a key column), and, for a DELETE or key
//     UPDATE of the parent, look for child rows referencing the old key.
//     They run as the table owner, so the session needs no privilege on
//     the other table, and the statement fails (23503) or not with what
//     they find: INSERT INTO signups (email) VALUES ('ada@example.com')
//     succeeds exactly when people.email holds that value. Under
//     CASCADE, SET NULL and SET DEFAULT the child rows are found the
//     same way (and their writes can fail on the child's constraints).
//     The looked-up key columns are read.
//   - Constraints over the updated row. An UPDATE computes the generated
//     columns, evaluates the CHECK constraints and compares the unique
//     and exclusion keys of the whole new row, which holds the row's old
//     values for every column the UPDATE does not set, and fails (23514,
//     22003, 23505, 23P01) or not with the result: UPDATE staff SET
//     credit_limit = n passes CHECK (credit_limit <= salary) exactly when
//     salary >= n. The columns of every generated column, CHECK
//     constraint and unique or exclusion index that reads a column the
//     update sets are read, and those of a NOT VALID CHECK constraint
//     on every update (an old row may violate it). An INSERT's new row
//     holds only the statement's values and the columns' defaults.
//   - Partitions. A partition holds exactly the rows of its parent whose
//     partition key falls in its bounds (the default partition: in no
//     other partition's), so reading, updating or deleting from a
//     partition (SELECT name FROM pay_high) filters the rows by the key:
//     its parent's partition key columns, and those of every partitioned
//     ancestor for a sub-partition, are read. Inserting into one only
//     checks the new row's values. EXPLAIN of a statement over a
//     partitioned table shows a row count per partition (exact under
//     ANALYZE): it reads the partition keys too.
//   - Row security. The rows a statement sees, and the new rows it may
//     write, are those the table's policies pass: their columns are read.

// constraintReads reports what a write of rel (the statement's table
// ref t) reads through the constraints Postgres checks on it. own is
// false for a write a foreign key action makes: it sets the child's key
// to the parent's new key (or NULL, or its default), which needs no
// lookup of its own.
func (w *walker) constraintReads(rel *catalog.Relation, t sqlpolicy.TableRef, own bool) {
	switch t.Action {
	case sqlpolicy.VerbInsert:
		if own {
			w.parentLookups(rel, t.Rel, false)
		}
	case sqlpolicy.VerbUpdate:
		if own {
			w.parentLookups(rel, t.Rel, true)
		}
		w.rowChecks(rel, t.Rel)
	}
}

// family returns rel, its partitioned ancestors (a partition is checked
// against the foreign keys declared on them) and its descendants (rows
// routed to partitions, or reached in children, are checked against
// theirs).
func (w *walker) family(rel *catalog.Relation) []*catalog.Relation {
	out := w.withDescendants(rel)
	for i := 0; i < len(out) && i < 10000; i++ {
		for _, p := range out[i].Parents {
			pr := w.cat.RelationQualified(p)
			if pr != nil && pr.Kind == catalog.KindPartitioned && !slices.Contains(out, pr) {
				out = append(out, pr)
			}
		}
	}
	return out
}

// parentLookups reports the foreign key lookups a write of rel makes in
// the tables it references: every foreign key for an insert, those
// whose columns it sets for an update.
func (w *walker) parentLookups(rel *catalog.Relation, written sqlpolicy.Rel, update bool) {
	for _, r := range w.family(rel) {
		for i := range r.ForeignKeys {
			fk := &r.ForeignKeys[i]
			if update && !w.updatesAny(written, fk.Columns) {
				continue
			}
			w.checkRead(sqlpolicy.Rel{Schema: fk.RefSchema, Name: fk.RefTable}, fk.RefColumns, written)
		}
	}
}

// referencing returns the foreign keys that reference rel, its
// descendants (a delete or update of the parent reaches their rows) or
// its partitioned ancestors (a foreign key referencing a partitioned
// table checks the rows of every partition).
func (w *walker) referencing(rel *catalog.Relation) []fkChild {
	var out []fkChild
	for _, r := range w.family(rel) {
		out = append(out, w.a.fkChildren()[sqlpolicy.Rel{Schema: r.Schema, Name: r.Name}]...)
	}
	return out
}

// checkRead reports cols of rel (and the columns the generated ones are
// computed from) as read by a check that a write of via makes.
func (w *walker) checkRead(rel sqlpolicy.Rel, cols []string, via sqlpolicy.Rel) {
	r := w.cat.Relation(rel.Schema, rel.Name)
	if r == nil {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownTable, Rel: rel,
			Detail: "a constraint of " + via.String() + " reads " + rel.String() + ", which is not in the catalog"})
		return
	}
	w.table(sqlpolicy.TableRef{Rel: rel, Mode: sqlpolicy.Read, Via: via})
	for _, c := range withGenerated(r, cols) {
		w.column(sqlpolicy.ColumnRef{Rel: rel, Column: c, Mode: sqlpolicy.Read, Via: via})
	}
}

// withGenerated returns names, each once, and for a generated column the
// columns it is computed from.
func withGenerated(rel *catalog.Relation, names []string) []string {
	var out []string
	add := func(n string) {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	for _, n := range names {
		add(n)
		if c := rel.Column(n); c != nil {
			for _, g := range rel.GeneratedFrom(c) {
				add(g.Name)
			}
		}
	}
	return out
}

// rowChecks reports the columns an UPDATE of rel (named written) reads
// through the generated columns, CHECK constraints and unique and
// exclusion indexes of the rows it updates that depend on a column it
// sets.
func (w *walker) rowChecks(rel *catalog.Relation, written sqlpolicy.Rel) {
	changed := map[string]bool{}
	for _, c := range w.st.Columns {
		if c.Mode == sqlpolicy.Write && c.Action == sqlpolicy.VerbUpdate && c.Rel == written {
			changed[c.Column] = true
		}
	}
	if len(changed) == 0 {
		return
	}
	anyChanged := func(cols []string) bool {
		return slices.ContainsFunc(cols, func(n string) bool { return changed[n] })
	}
	for _, r := range w.withDescendants(rel) {
		rr := sqlpolicy.Rel{Schema: r.Schema, Name: r.Name}
		// Postgres recomputes a stored generated column on every UPDATE
		// of its row, from the new row: one over a set column fails
		// (22003 ...) or not with the columns it is computed from.
		for _, c := range r.Columns {
			if len(c.GeneratedReads) > 0 && anyChanged(c.GeneratedReads) {
				w.checkRead(rr, append([]string{c.Name}, c.GeneratedReads...), written)
			}
		}
		for _, ch := range r.Checks {
			// Postgres evaluates every CHECK constraint on every updated
			// row (ExecConstraints): one a row satisfied before holds
			// unless a column it names changed, but a NOT VALID one may
			// have been violated all along, and then fails an UPDATE of
			// any column.
			if ch.NotValid || anyChanged(withGenerated(r, ch.Columns)) {
				w.checkRead(rr, ch.Columns, written)
			}
		}
		for _, k := range r.UniqueKeys {
			if anyChanged(withGenerated(r, k.Columns)) {
				w.checkRead(rr, k.Columns, written)
			}
		}
	}
}

// partitionKeyReads reports the partition key columns of rel's
// partitioned ancestors as read when the statement reads, updates or
// deletes from rel (t) itself: a partition holds only the rows whose key
// is in its bounds. A parent whose key the catalog does not record
// (a catalog file saved before it did) counts as keyed on every column.
func (w *walker) partitionKeyReads(rel *catalog.Relation, t sqlpolicy.TableRef) {
	if t.Mode == sqlpolicy.Write && t.Action == sqlpolicy.VerbInsert || len(rel.Parents) == 0 {
		return
	}
	via := t.Via
	if via == (sqlpolicy.Rel{}) {
		via = t.Rel
	}
	seen := map[*catalog.Relation]bool{}
	queue := []*catalog.Relation{rel}
	for i := 0; i < len(queue) && i < 10000; i++ {
		for _, p := range queue[i].Parents {
			pr := w.cat.RelationQualified(p)
			if pr == nil || pr.Kind != catalog.KindPartitioned || seen[pr] {
				continue
			}
			seen[pr] = true
			queue = append(queue, pr)
			keys := pr.Partitioning
			if len(keys) == 0 {
				keys = catalogColumnNames(pr)
			}
			// A partition's columns are its parent's, by name.
			for _, c := range keys {
				w.column(sqlpolicy.ColumnRef{Rel: t.Rel, Column: c, Mode: sqlpolicy.Read, Via: via})
			}
		}
	}
}

// explainPartitions reports, for EXPLAIN, the partition key columns of
// every partitioned table the explained statement reads or writes (and
// of those under it): the plan has a node per partition with its row
// count, estimated from each partition's statistics and, under ANALYZE,
// exact, so EXPLAIN ANALYZE SELECT name FROM pay WHERE name = 'Ada'
// shows which salary range Ada's row is in.
func (w *walker) explainPartitions(inner *sqlpolicy.Statement) {
	for _, t := range inner.Tables {
		rel := w.cat.Relation(t.Rel.Schema, t.Rel.Name)
		if rel == nil || rel.System {
			continue
		}
		via := t.Via
		if via == (sqlpolicy.Rel{}) {
			via = t.Rel
		}
		for _, r := range w.withDescendants(rel) {
			if r.Kind != catalog.KindPartitioned {
				continue
			}
			keys := r.Partitioning
			if len(keys) == 0 {
				keys = catalogColumnNames(r)
			}
			rr := sqlpolicy.Rel{Schema: r.Schema, Name: r.Name}
			w.table(sqlpolicy.TableRef{Rel: rr, Mode: sqlpolicy.Read, Via: via})
			for _, c := range keys {
				w.column(sqlpolicy.ColumnRef{Rel: rr, Column: c, Mode: sqlpolicy.Read, Via: via})
			}
		}
	}
}

// rowPolicyReads reports the columns the row security policies of rel
// that apply to t's use of it name, as read: a session subject to them
// (not the table's owner, without BYPASSRLS) reads, updates and deletes
// only the rows their USING expressions pass, and a new row must pass
// their WITH CHECK (42501 otherwise), so SELECT name FROM pay under
// USING (salary < 5000) lists exactly the people whose labelled salary
// is below 5000. keyhole does not know which sessions the policies
// apply to (their roles, the login's ownership): it reports them all.
// TRUNCATE is not subject to row security.
func (w *walker) rowPolicyReads(rel *catalog.Relation, t sqlpolicy.TableRef) {
	if len(rel.RowPolicies) == 0 {
		return
	}
	events := []string{"SELECT"}
	if t.Mode == sqlpolicy.Write {
		ev := rowEvents(t.Action)
		if ev == nil {
			// A write the analyzer did not classify: any policy.
			ev = []string{"INSERT", "UPDATE", "DELETE"}
		}
		events = ev
		if t.Action != sqlpolicy.VerbInsert {
			// The rows an UPDATE or DELETE (or RETURNING) reads pass
			// the SELECT policies too.
			events = append(slices.Clip(ev), "SELECT")
		}
	}
	via := t.Via
	if via == (sqlpolicy.Rel{}) {
		via = t.Rel
	}
	for _, p := range rel.RowPolicies {
		if !slices.ContainsFunc(p.Events, func(e string) bool { return slices.Contains(events, e) }) {
			continue
		}
		for _, c := range p.Reads {
			w.checkRead(sqlpolicy.Rel{Schema: c.Schema, Name: c.Table}, []string{c.Column}, via)
		}
	}
}
