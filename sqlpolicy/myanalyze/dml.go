package myanalyze

import (
	"fmt"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// targetTable returns the single table of an INSERT's table clause.
func targetTable(tr *ast.TableRefsClause) *ast.TableName {
	if tr == nil || tr.TableRefs == nil || tr.TableRefs.Right != nil {
		return nil
	}
	switch x := tr.TableRefs.Left.(type) {
	case *ast.TableSource:
		tn, _ := x.Source.(*ast.TableName)
		return tn
	case *ast.TableName:
		return x
	}
	return nil
}

// targetColumn finds a target table's column (names are case-insensitive)
// and reports it written with the statement's row action.
func (w *walker) targetColumn(it *item, name string, action sqlpolicy.Verb) bool {
	for _, c := range it.rel.Columns {
		if strings.EqualFold(c.Name, name) {
			w.column(sqlpolicy.ColumnRef{Rel: relOf(it.rel), Column: c.Name, Mode: sqlpolicy.Write, Action: action})
			return true
		}
	}
	w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownColumn, Rel: relOf(it.rel), Column: name,
		Detail: fmt.Sprintf("column %s is not in %s", name, relOf(it.rel))})
	return false
}

// insert analyzes INSERT and REPLACE. REPLACE deletes the rows whose keys
// the new rows collide with before inserting, so it needs both the insert
// and the delete grant (as MariaDB asks INSERT and DELETE privileges). ON
// DUPLICATE KEY UPDATE makes it an upsert: its SET columns are written by
// the update action.
func (w *walker) insert(x *ast.InsertStmt) {
	st := w.st
	st.Verb, st.Command = sqlpolicy.VerbInsert, "INSERT"
	if x.IsReplace {
		st.Command = "REPLACE"
	}
	tn := targetTable(x.Table)
	if tn == nil {
		w.unsupported("INSERT target is not a single table")
		return
	}
	w.action = sqlpolicy.VerbInsert
	it := w.resolveTable(tn, nil, sqlpolicy.Write, false)
	w.action = ""
	if it == nil {
		return
	}
	if it.rel == nil {
		w.unsupported("INSERT into a WITH name")
		return
	}
	if x.IsReplace {
		w.table(sqlpolicy.TableRef{Rel: relOf(it.rel), Mode: sqlpolicy.Write, Action: sqlpolicy.VerbDelete})
	}
	if len(x.Columns) == 0 && !x.Setlist {
		for _, c := range it.rel.Columns {
			w.column(sqlpolicy.ColumnRef{Rel: relOf(it.rel), Column: c.Name, Mode: sqlpolicy.Write, Action: sqlpolicy.VerbInsert})
		}
	}
	for _, c := range x.Columns {
		if c.Table.O != "" && !strings.EqualFold(c.Table.O, it.alias) {
			w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownColumn, Column: c.Name.O,
				Detail: fmt.Sprintf("column %s is not of the INSERT target", columnText(c))})
			continue
		}
		w.targetColumn(it, c.Name.O, sqlpolicy.VerbInsert)
	}
	// A VALUES expression may name columns of the row being inserted
	// (MariaDB evaluates them left to right); reporting them as reads of
	// the target only ever adds.
	vsc := newScope(nil)
	vsc.addRef(leafRef(it))
	for _, row := range x.Lists {
		for _, e := range row {
			w.expr(e, vsc, nil, clauseWhere)
		}
	}
	var selCols []outCol
	if x.Select != nil {
		selCols = w.query(x.Select, nil, nil)
	}
	if len(x.OnDuplicate) == 0 {
		return
	}
	st.Upsert = true
	w.table(sqlpolicy.TableRef{Rel: relOf(it.rel), Mode: sqlpolicy.Write, Action: sqlpolicy.VerbUpdate})
	// The update clause sees the target's columns and, for INSERT ...
	// SELECT, the SELECT's output columns.
	usc := newScope(nil)
	usc.addRef(leafRef(it))
	if selCols != nil {
		sel := &item{cols: selCols}
		usc.addRef(leafRef(sel))
	}
	for _, a := range x.OnDuplicate {
		if a.Column.Table.O != "" && !strings.EqualFold(a.Column.Table.O, it.alias) {
			w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownColumn, Column: a.Column.Name.O,
				Detail: fmt.Sprintf("ON DUPLICATE KEY UPDATE column %s is not of the target", columnText(a.Column))})
			continue
		}
		w.targetColumn(it, a.Column.Name.O, sqlpolicy.VerbUpdate)
		w.defaultTarget(it.rel, a.Column.Name.O, a.Expr)
		w.expr(a.Expr, usc, nil, clauseWhere)
	}
}

// dmlFrom resolves the table references of an UPDATE or DELETE without
// reporting its plain tables yet: which of them are written is known only
// from the SET list or the DELETE target list. It returns the scope and
// the leaf items that name catalog tables.
func (w *walker) dmlFrom(tr *ast.TableRefsClause, ctes *cteEnv) *scope {
	sc := newScope(nil)
	sc.ctes = ctes
	if tr == nil || tr.TableRefs == nil {
		w.unsupported("UPDATE or DELETE without tables")
		return sc
	}
	w.deferTables = true
	r := w.fromRef(tr.TableRefs, sc)
	w.deferTables = false
	if r != nil {
		sc.addRef(r)
	}
	return sc
}

// finishTargets reports the deferred tables of an UPDATE/DELETE: written
// (with the row action) when targeted, read otherwise.
func (w *walker) finishTargets(sc *scope, targets map[*item]bool, action sqlpolicy.Verb) {
	for _, it := range sc.leaves {
		if it.rel == nil || !it.deferred {
			continue
		}
		if targets[it] {
			w.table(sqlpolicy.TableRef{Rel: relOf(it.rel), Mode: sqlpolicy.Write, Action: action})
			continue
		}
		w.relation(it.rel, sqlpolicy.Read)
	}
}

// update analyzes single- and multiple-table UPDATE.
func (w *walker) update(x *ast.UpdateStmt) {
	st := w.st
	st.Verb, st.Command = sqlpolicy.VerbUpdate, "UPDATE"
	ctes := w.with(x.With, nil)
	sc := w.dmlFrom(x.TableRefs, ctes)
	targets := map[*item]bool{}
	for _, a := range x.List {
		c := a.Column
		var hits []*item
		for _, it := range sc.leaves {
			if c.Table.O != "" && !matchItem(it, c.Schema.O, c.Table.O) {
				continue
			}
			if indexCol(it.cols, c.Name.O) >= 0 {
				hits = append(hits, it)
			}
		}
		if len(hits) == 0 {
			w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownColumn, Column: c.Name.O,
				Detail: fmt.Sprintf("SET column %s is in none of the UPDATE's tables", columnText(c))})
		}
		for _, it := range hits {
			if it.rel == nil || it.rel.Kind != catalog.KindTable {
				w.unsupported("UPDATE of a derived table, WITH name or view column %s", columnText(c))
				continue
			}
			targets[it] = true
			w.targetColumn(it, c.Name.O, sqlpolicy.VerbUpdate)
			w.defaultTarget(it.rel, c.Name.O, a.Expr)
		}
		w.expr(a.Expr, sc, nil, clauseWhere)
	}
	w.finishTargets(sc, targets, sqlpolicy.VerbUpdate)
	w.expr(x.Where, sc, nil, clauseWhere)
	if x.Order != nil {
		for _, by := range x.Order.Items {
			w.byItem(by, sc, nil, clauseWhere)
		}
	}
	w.limit(x.Limit, sc)
}

// delete analyzes single- and multiple-table DELETE.
func (w *walker) delete(x *ast.DeleteStmt) {
	st := w.st
	st.Verb, st.Command = sqlpolicy.VerbDelete, "DELETE"
	ctes := w.with(x.With, nil)
	sc := w.dmlFrom(x.TableRefs, ctes)
	targets := map[*item]bool{}
	if !x.IsMultiTable {
		for _, it := range sc.leaves {
			targets[it] = true
		}
	} else if x.Tables != nil {
		for _, tn := range x.Tables.Tables {
			found := false
			for _, it := range sc.leaves {
				// DELETE t FROM ... names a table by alias, or by name
				// (qualified or not) when it has none.
				if strings.EqualFold(it.alias, tn.Name.O) && (tn.Schema.O == "" || strings.EqualFold(it.db, tn.Schema.O)) {
					targets[it] = true
					found = true
				}
			}
			if !found {
				w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownTable, Rel: sqlpolicy.Rel{Schema: tn.Schema.O, Name: tn.Name.O},
					Detail: fmt.Sprintf("DELETE target %s is not in the FROM clause", tn.Name.O)})
			}
		}
	}
	for it := range targets {
		if it.rel == nil || it.rel.Kind != catalog.KindTable {
			w.unsupported("DELETE from a derived table, WITH name or view")
			delete(targets, it)
		}
	}
	w.finishTargets(sc, targets, sqlpolicy.VerbDelete)
	w.expr(x.Where, sc, nil, clauseWhere)
	if x.Order != nil {
		for _, by := range x.Order.Items {
			w.byItem(by, sc, nil, clauseWhere)
		}
	}
	w.limit(x.Limit, sc)
}
