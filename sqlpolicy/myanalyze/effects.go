package myanalyze

import (
	"fmt"
	"slices"
	"strings"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// A write does more than its statement says when the written table has
// triggers or is referenced by foreign keys with referential actions:
//
//   - a trigger runs its body with its definer's privileges for every row
//     the write inserts, updates or deletes (REPLACE fires the INSERT and
//     the DELETE triggers, INSERT ... ON DUPLICATE KEY UPDATE the INSERT
//     and the UPDATE ones); what the body reads and writes is invisible in
//     the statement, so such writes are refused;
//   - a delete of a referenced row (DELETE, REPLACE) deletes the rows
//     referencing it under ON DELETE CASCADE and sets their foreign key
//     columns under SET NULL / SET DEFAULT; an update of a referenced key
//     column updates the referencing columns under ON UPDATE CASCADE, SET
//     NULL or SET DEFAULT. Those writes are reported as the statement's
//     own (the role needs the grants for them), transitively. MariaDB runs
//     no trigger for them (foreign key actions do not fire triggers).
//
// RESTRICT and NO ACTION write nothing (the statement fails instead).
//
// Foreign key checks read: InnoDB looks a new or changed child key up in
// the parent (an INSERT, REPLACE or upsert of the child, an UPDATE that
// sets a key column) and, under RESTRICT and NO ACTION, looks for child
// rows referencing a parent key a DELETE, REPLACE or key UPDATE removes;
// the statement fails (1452, 1451) or not with what it finds, and MariaDB
// asks no privilege on the other table for either. A role that may write
// the one table thus learns whether a value is in the other's key
// columns: those columns are reported as read with Via = the written
// table, so their labels (and the other table's) apply as to any read,
// while, as for a view, the role needs no grant on the other table.

// childKey is a foreign key of a child table, indexed by its parent.
type childKey struct {
	child *catalog.Relation
	fk    *catalog.ForeignKey
}

// indexForeignKeys maps every referenced table (schema.name as the
// catalog spells it) to the foreign keys that reference it.
func indexForeignKeys(cat *catalog.Catalog) map[sqlpolicy.Rel][]childKey {
	out := map[sqlpolicy.Rel][]childKey{}
	for _, rels := range cat.Relations {
		for _, r := range rels {
			for i := range r.ForeignKeys {
				fk := &r.ForeignKeys[i]
				parent := sqlpolicy.Rel{Schema: fk.RefSchema, Name: fk.RefTable}
				out[parent] = append(out[parent], childKey{child: r, fk: fk})
			}
		}
	}
	return out
}

// writeEffects adds what the statement's writes do beyond the statement:
// triggers (refused) and foreign key actions (reported as writes). It runs
// once the walk has reported every write, and iterates until cascades add
// nothing new.
func (w *walker) writeEffects() {
	cascaded := map[sqlpolicy.TableRef]bool{}
	for i := 0; i < len(w.st.Tables); i++ {
		t := w.st.Tables[i]
		if t.Mode != sqlpolicy.Write || t.Action == "" {
			continue
		}
		rel := w.cat.Relation(t.Rel.Schema, t.Rel.Name)
		if rel == nil || rel.Kind != catalog.KindTable {
			continue
		}
		if !cascaded[t] {
			w.triggers(rel, t.Action)
			// A cascaded write changes child keys to the parent's new
			// value (or NULL): no lookup of its own.
			w.parentChecks(rel, t.Action)
		}
		switch t.Action {
		case sqlpolicy.VerbUpdate:
			w.rowChecks(rel)
		case sqlpolicy.VerbInsert:
			w.insertKeyChecks(rel)
		}
		switch t.Action {
		case sqlpolicy.VerbDelete:
			for _, ck := range w.a.fkChildren[t.Rel] {
				w.fkAction(ck, ck.fk.OnDelete, cascaded, true)
			}
		case sqlpolicy.VerbUpdate:
			for _, ck := range w.a.fkChildren[t.Rel] {
				if w.updatesAny(t.Rel, ck.fk.RefColumns) {
					w.fkAction(ck, ck.fk.OnUpdate, cascaded, false)
				}
			}
		}
	}
}

// parentChecks reports the foreign key lookups a write of rel by action
// makes in the tables rel references: every foreign key for an insert,
// those whose columns an update sets.
func (w *walker) parentChecks(rel *catalog.Relation, action sqlpolicy.Verb) {
	for i := range rel.ForeignKeys {
		fk := &rel.ForeignKeys[i]
		if action == sqlpolicy.VerbDelete || action == sqlpolicy.VerbUpdate && !w.updatesAny(relOf(rel), fk.Columns) {
			continue
		}
		w.checkRead(sqlpolicy.Rel{Schema: fk.RefSchema, Name: fk.RefTable}, fk.RefColumns, relOf(rel))
	}
}

// checkRead reports cols of rel (and what generated ones are computed
// from) as read by a check a write of via makes.
func (w *walker) checkRead(rel sqlpolicy.Rel, cols []string, via sqlpolicy.Rel) {
	if r := w.cat.Relation(rel.Schema, rel.Name); r != nil {
		rel = relOf(r)
		cols = withGenerated(r, cols)
	}
	w.table(sqlpolicy.TableRef{Rel: rel, Mode: sqlpolicy.Read, Via: via})
	for _, c := range cols {
		w.column(sqlpolicy.ColumnRef{Rel: rel, Column: c, Mode: sqlpolicy.Read, Via: via})
	}
}

// rowChecks reports what an update of rel reads beyond its statement:
// MariaDB computes the generated columns over the updated row, evaluates
// the CHECK constraints on it and compares its unique keys with the other
// rows', and the update fails or not with the result (4025 CONSTRAINT
// failed, 1264 out of range, 1062 duplicate entry ...), so setting one
// column probes the row's others: UPDATE staff SET credit_limit = n
// passes CHECK (credit_limit <= salary) exactly when salary >= n. The
// columns of every generated column, CHECK constraint and unique key that
// depends on an updated column (or on a generated column that does) are
// reported as read, with Via = rel. An insert's new row holds only the
// statement's values and the columns' defaults; its keys are
// insertKeyChecks'.
func (w *walker) rowChecks(rel *catalog.Relation) {
	r := relOf(rel)
	changed := map[string]bool{}
	for _, c := range w.st.Columns {
		if c.Mode == sqlpolicy.Write && c.Action == sqlpolicy.VerbUpdate && c.Rel == r {
			changed[strings.ToLower(c.Column)] = true
		}
	}
	if len(changed) == 0 {
		return
	}
	// depends returns the columns expr names and whether one changed; an
	// expression keyhole's parser does not read may name any column (as
	// in baseCols).
	depends := func(expr string) ([]string, bool) {
		names, ok := w.a.exprColumns(expr)
		if !ok {
			names = allColumns(rel)
		}
		return names, slices.ContainsFunc(names, func(n string) bool { return changed[strings.ToLower(n)] })
	}
	read := func(names []string) { w.checkRead(r, names, r) }
	// Generated columns over generated columns: until nothing changes.
	for again := true; again; {
		again = false
		for _, c := range rel.Columns {
			if c.Generated == "" || changed[strings.ToLower(c.Name)] {
				continue
			}
			if names, ok := depends(c.Generated); ok {
				changed[strings.ToLower(c.Name)] = true
				read(names)
				again = true
			}
		}
	}
	for _, ch := range rel.Checks {
		if names, ok := depends(ch.Clause); ok {
			read(names)
		}
	}
	// A key that changes is compared whole with the other rows' (the
	// update fails on a conflict, 1062, whose message prints the whole
	// key: UPDATE members SET tenant = 2 shows the row's email under
	// UNIQUE (email, tenant)). An expression key part may name any
	// column.
	for _, k := range rel.UniqueKeys {
		if slices.Contains(k.Columns, "") {
			read(allColumns(rel))
			continue
		}
		if !slices.ContainsFunc(k.Columns, func(n string) bool { return changed[strings.ToLower(n)] }) {
			continue
		}
		read(k.Columns)
	}
}

// insertKeyChecks reports what an insert of rel reads beyond its
// statement: MariaDB compares the new row's primary and unique keys with
// every other row's, and on a conflict the insert fails (1062 Duplicate
// entry, printing the key), is skipped (INSERT IGNORE: 0 rows affected)
// or replaces the other row (REPLACE: 2). A key whose columns the
// statement sets compares only the statement's values; a column it
// leaves out gets its default (a constant, or an expression over the new
// row: DEFAULT (CONCAT(LOWER(name), '@example.com'))) or its generated
// value, and the conflict tells whether another row holds that value:
// under UNIQUE (patient, diagnosis) with diagnosis DEFAULT 'hiv', INSERT
// INTO visits (patient) VALUES (7) fails exactly when patient 7 has that
// diagnosis, and MariaDB asks no privilege on diagnosis for it. The
// columns of such a key are reported as read, with Via = rel, unless a
// column left out defaults to NULL, which equals no other row's value.
func (w *walker) insertKeyChecks(rel *catalog.Relation) {
	r := relOf(rel)
	set := map[string]bool{}
	for _, c := range w.st.Columns {
		if c.Mode == sqlpolicy.Write && c.Action == sqlpolicy.VerbInsert && c.Rel == r {
			set[strings.ToLower(c.Column)] = true
		}
	}
	col := func(name string) *catalog.Column {
		for _, c := range rel.Columns {
			if strings.EqualFold(c.Name, name) {
				return c
			}
		}
		return nil
	}
	for _, k := range rel.UniqueKeys {
		if slices.Contains(k.Columns, "") {
			// An expression key part may name any column.
			w.checkRead(r, allColumns(rel), r)
			continue
		}
		left, null := false, false
		for _, n := range k.Columns {
			if set[strings.ToLower(n)] {
				continue
			}
			left = true
			// MariaDB prints DEFAULT NULL as NULL (a string default
			// 'NULL' keeps its quotes).
			if c := col(n); c != nil && c.Generated == "" && strings.EqualFold(c.Default, "NULL") {
				null = true
			}
		}
		if left && !null {
			w.checkRead(r, k.Columns, r)
		}
	}
}

func allColumns(rel *catalog.Relation) []string {
	all := make([]string, len(rel.Columns))
	for i, c := range rel.Columns {
		all[i] = c.Name
	}
	return all
}

// withGenerated returns the columns of rel that names name (letter case
// aside), each once, and for a generated one the columns it is computed
// from: a value derived from a generated column shows them.
func withGenerated(rel *catalog.Relation, names []string) []string {
	var cols []string
	add := func(n string) {
		if !slices.Contains(cols, n) {
			cols = append(cols, n)
		}
	}
	for _, n := range names {
		for _, c := range rel.Columns {
			if !strings.EqualFold(c.Name, n) {
				continue
			}
			add(c.Name)
			for _, g := range rel.GeneratedFrom(c) {
				add(g.Name)
			}
		}
	}
	return cols
}

// triggers refuses a write of rel by action when rel has a trigger on that
// event.
func (w *walker) triggers(rel *catalog.Relation, action sqlpolicy.Verb) {
	for _, tr := range rel.Triggers {
		if !strings.EqualFold(tr.Event, string(action)) {
			continue
		}
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnsupported, Rel: relOf(rel),
			Detail: fmt.Sprintf("%s on %s fires trigger %s (%s %s), which runs with its definer's privileges and reads or writes what the statement does not show; keyhole does not model triggers",
				strings.ToUpper(string(action)), relOf(rel), tr.Name, tr.Timing, tr.Event)})
	}
}

// updatesAny reports whether the statement updates one of cols of rel.
func (w *walker) updatesAny(rel sqlpolicy.Rel, cols []string) bool {
	return slices.ContainsFunc(w.st.Columns, func(c sqlpolicy.ColumnRef) bool {
		return c.Mode == sqlpolicy.Write && c.Action == sqlpolicy.VerbUpdate && c.Rel == rel &&
			slices.ContainsFunc(cols, func(n string) bool { return strings.EqualFold(n, c.Column) })
	})
}

// fkAction reports the writes a referential action makes in the child
// table: CASCADE deletes its rows (on delete) or updates its key columns
// (on update); SET NULL and SET DEFAULT update its key columns.
func (w *walker) fkAction(ck childKey, action string, cascaded map[sqlpolicy.TableRef]bool, onDelete bool) {
	child := relOf(ck.child)
	switch strings.ToUpper(action) {
	case "CASCADE":
		if onDelete {
			t := sqlpolicy.TableRef{Rel: child, Mode: sqlpolicy.Write, Action: sqlpolicy.VerbDelete}
			w.cascade(t, cascaded)
			return
		}
	case "SET NULL", "SET DEFAULT":
	default:
		// RESTRICT, NO ACTION (and whatever else a server prints): the
		// statement fails when a child row references the key.
		w.checkRead(child, ck.fk.Columns, sqlpolicy.Rel{Schema: ck.fk.RefSchema, Name: ck.fk.RefTable})
		return
	}
	t := sqlpolicy.TableRef{Rel: child, Mode: sqlpolicy.Write, Action: sqlpolicy.VerbUpdate}
	w.cascade(t, cascaded)
	for _, c := range ck.fk.Columns {
		w.column(sqlpolicy.ColumnRef{Rel: child, Column: c, Mode: sqlpolicy.Write, Action: sqlpolicy.VerbUpdate})
	}
}

func (w *walker) cascade(t sqlpolicy.TableRef, cascaded map[sqlpolicy.TableRef]bool) {
	if !slices.Contains(w.st.Tables, t) {
		cascaded[t] = true
	}
	w.table(t)
}
