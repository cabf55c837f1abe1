package pganalyze

import (
	"fmt"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// writeVerb records the kind of a data-modifying statement.
func (w *walker) writeVerb(v sqlpolicy.Verb) {
	for _, x := range w.writeVerbs {
		if x == v {
			return
		}
	}
	w.writeVerbs = append(w.writeVerbs, v)
}

// target resolves the relation a data-modifying statement writes (never a
// CTE) and adds it to sc. A view target is expanded: its base relations
// are written through it.
func (w *walker) target(rv *pg.RangeVar, sc *scope) *item {
	if rv == nil {
		it := &item{unknown: true}
		w.unsupported("data-modifying statement without a target relation")
		return it
	}
	return w.rangeVar(rv, sc, sqlpolicy.Write, false)
}

// writeCol reports a write of column name of the target (and, through a
// view, of the base columns behind it).
func (w *walker) writeCol(it *item, name string) {
	if it.unknown {
		return
	}
	found := false
	for i := range it.cols {
		if it.cols[i].name != name {
			continue
		}
		found = true
		for _, c := range it.cols[i].lin {
			c.Mode = sqlpolicy.Write
			w.column(c)
		}
	}
	if !found && !it.open {
		w.unknownColumn(qualified(it.name, name))
	}
}

func (w *walker) writeAll(it *item) {
	for i := range it.cols {
		for _, c := range it.cols[i].lin {
			c.Mode = sqlpolicy.Write
			w.column(c)
		}
	}
}

// setList analyzes UPDATE SET / ON CONFLICT DO UPDATE SET / MERGE UPDATE
// SET: the targets are written, the values read.
func (w *walker) setList(list []*pg.Node, it *item, sc *scope) {
	for _, n := range list {
		rt := n.GetResTarget()
		if rt == nil {
			w.unsupported("SET entry of kind %s", nodeName(n.Node))
			continue
		}
		// SET a[1] = x and SET comp.f = x write part of column a.
		w.writeCol(it, rt.Name)
		for _, ind := range rt.Indirection {
			if ai := ind.GetAIndices(); ai != nil {
				w.expr(ai.Lidx, sc, nil)
				w.expr(ai.Uidx, sc, nil)
			}
		}
		if m := rt.Val.GetMultiAssignRef(); m != nil {
			// SET (a, b) = (SELECT ...) repeats the source for every
			// target column.
			if m.Colno <= 1 {
				w.expr(m.Source, sc, nil)
			}
			continue
		}
		w.expr(rt.Val, sc, nil)
	}
}

func (w *walker) insert(s *pg.InsertStmt, parent *scope) shape {
	w.writeVerb(sqlpolicy.VerbInsert)
	sc := newScope(parent)
	w.with(s.WithClause, sc)
	// The source query does not see the target table; every value it
	// produces is inserted, so all of its output is read.
	if s.SelectStmt != nil {
		w.readShape(nil, w.query(s.SelectStmt, sc))
	}
	tsc := newScope(sc)
	it := w.target(s.Relation, tsc)
	if len(s.Cols) == 0 {
		w.writeAll(it)
	}
	for _, c := range s.Cols {
		if rt := c.GetResTarget(); rt != nil {
			w.writeCol(it, rt.Name)
		} else {
			w.unsupported("INSERT column of kind %s", nodeName(c.Node))
		}
	}
	if oc := s.OnConflictClause; oc != nil {
		if inf := oc.Infer; inf != nil {
			for _, e := range inf.IndexElems {
				ie := e.GetIndexElem()
				if ie == nil {
					w.unsupported("ON CONFLICT target of kind %s", nodeName(e.Node))
					continue
				}
				if ie.Name != "" {
					w.readCol(it, ie.Name, nil)
				}
				w.expr(ie.Expr, tsc, nil)
			}
			w.expr(inf.WhereClause, tsc, nil)
		}
		if oc.Action == pg.OnConflictAction_ONCONFLICT_UPDATE {
			w.writeVerb(sqlpolicy.VerbUpdate)
			// EXCLUDED is the row proposed for insertion; its columns are
			// the target's.
			ex := &item{name: "excluded", cols: it.cols, open: it.open, unknown: it.unknown, hiddenByJoin: true}
			usc := newScope(sc)
			usc.items = []*item{it, ex}
			w.setList(oc.TargetList, it, usc)
			w.expr(oc.WhereClause, usc, nil)
		}
	}
	return w.targets(s.ReturningList, tsc)
}

func (w *walker) update(s *pg.UpdateStmt, parent *scope) shape {
	w.writeVerb(sqlpolicy.VerbUpdate)
	sc := newScope(parent)
	w.with(s.WithClause, sc)
	it := w.target(s.Relation, sc)
	for _, f := range s.FromClause {
		w.fromItem(f, sc)
	}
	w.setList(s.TargetList, it, sc)
	w.expr(s.WhereClause, sc, nil)
	return w.targets(s.ReturningList, sc)
}

func (w *walker) delete(s *pg.DeleteStmt, parent *scope) shape {
	w.writeVerb(sqlpolicy.VerbDelete)
	sc := newScope(parent)
	w.with(s.WithClause, sc)
	w.target(s.Relation, sc)
	for _, f := range s.UsingClause {
		w.fromItem(f, sc)
	}
	w.expr(s.WhereClause, sc, nil)
	return w.targets(s.ReturningList, sc)
}

func (w *walker) merge(s *pg.MergeStmt, parent *scope) shape {
	w.writeVerb(sqlpolicy.VerbMerge)
	sc := newScope(parent)
	w.with(s.WithClause, sc)
	it := w.target(s.Relation, sc)
	w.fromItem(s.SourceRelation, sc)
	w.expr(s.JoinCondition, sc, nil)
	for _, n := range s.MergeWhenClauses {
		mw := n.GetMergeWhenClause()
		if mw == nil {
			w.unsupported("MERGE clause of kind %s", nodeName(n.Node))
			continue
		}
		w.expr(mw.Condition, sc, nil)
		switch mw.CommandType {
		case pg.CmdType_CMD_UPDATE:
			w.setList(mw.TargetList, it, sc)
		case pg.CmdType_CMD_INSERT:
			if len(mw.TargetList) == 0 {
				w.writeAll(it)
			}
			for _, c := range mw.TargetList {
				if rt := c.GetResTarget(); rt != nil {
					w.writeCol(it, rt.Name)
				}
			}
			for _, v := range mw.Values {
				w.expr(v, sc, nil)
			}
		case pg.CmdType_CMD_DELETE, pg.CmdType_CMD_NOTHING:
		default:
			w.unsupported("MERGE action %s", mw.CommandType)
		}
	}
	return w.targets(s.ReturningList, sc)
}

// copyStmt analyzes COPY. Only STDIN/STDOUT are modelled: a server file or
// program runs with the server's rights.
func (w *walker) copyStmt(s *pg.CopyStmt) {
	w.st.Verb = sqlpolicy.VerbCopy
	w.st.Command = "COPY"
	switch {
	case s.IsProgram:
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemFileAccess, Detail: "COPY ... PROGRAM runs a command on the database server"})
	case s.Filename != "":
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemFileAccess, Detail: "COPY to or from a server file"})
	}
	sc := newScope(nil)
	if s.Query != nil {
		if s.IsFrom {
			w.unsupported("COPY (query) FROM")
			return
		}
		w.readShape(nil, w.query(s.Query, sc))
		w.st.ReturnsRows = true
		return
	}
	if s.Relation == nil {
		w.unsupported("COPY without a relation or query")
		return
	}
	mode := sqlpolicy.Read
	if s.IsFrom {
		mode = sqlpolicy.Write
		w.writeVerb(sqlpolicy.VerbCopy)
	} else {
		w.st.ReturnsRows = true
	}
	it := w.rangeVar(s.Relation, sc, mode, false)
	cols := names(s.Attlist)
	for _, c := range cols {
		if mode == sqlpolicy.Write {
			w.writeCol(it, c)
		} else {
			w.readCol(it, c, nil)
		}
	}
	if len(cols) == 0 {
		if mode == sqlpolicy.Write {
			w.writeAll(it)
		} else {
			w.readItem(nil, it)
		}
	}
	w.expr(s.WhereClause, sc, nil)
}

// ---- views -----------------------------------------------------------

// viewInfo is the cached analysis of a view definition.
type viewInfo struct {
	tables    []sqlpolicy.TableRef
	columns   []sqlpolicy.ColumnRef
	functions []sqlpolicy.FuncRef
	problems  []sqlpolicy.Problem
	lit       bool
	outs      []outCol // one per view column, lineage with Via unset
}

// view reports the access a view's definition makes (with Via = the view)
// and returns the view's columns, each carrying the view column itself and
// the base columns behind it.
func (w *walker) view(rel *catalog.Relation, mode sqlpolicy.Mode) []outCol {
	r := sqlpolicy.Rel{Schema: rel.Schema, Name: rel.Name}
	vi := w.viewInfo(rel)
	for _, t := range vi.tables {
		t.Via = r
		if mode == sqlpolicy.Write {
			t.Mode = sqlpolicy.Write
		}
		w.table(t)
	}
	for _, c := range vi.columns {
		c.Via = r
		w.column(c)
	}
	for _, f := range vi.functions {
		w.fn(f)
	}
	for _, p := range vi.problems {
		w.problem(p)
	}
	if vi.lit {
		w.st.LiteralSensitive = true
	}
	cols := make([]outCol, len(rel.Columns))
	for i, c := range rel.Columns {
		var inner []sqlpolicy.ColumnRef
		if len(vi.outs) == len(rel.Columns) {
			inner = vi.outs[i].lin
		} else {
			// The definition's output does not line up with the catalog's
			// columns: every column may carry any base column.
			for _, o := range vi.outs {
				inner = append(inner, o.lin...)
			}
		}
		lin := make([]sqlpolicy.ColumnRef, 0, 1+len(inner))
		lin = append(lin, sqlpolicy.ColumnRef{Rel: r, Column: c.Name, Mode: sqlpolicy.Read})
		for _, b := range inner {
			b.Via = r
			lin = append(lin, b)
		}
		cols[i] = outCol{name: c.Name, lin: lin}
	}
	return cols
}

// viewInfo analyzes (once) the definition of a view, resolving names with
// the catalog's search path, which pg_get_viewdef qualified names against.
func (w *walker) viewInfo(rel *catalog.Relation) *viewInfo {
	if v, ok := w.a.views.Load(rel); ok {
		return v.(*viewInfo)
	}
	for _, r := range w.viewStack {
		if r == rel {
			return &viewInfo{problems: []sqlpolicy.Problem{{Code: sqlpolicy.ProblemUnsupported,
				Detail: fmt.Sprintf("view %s is defined through itself", rel), Rel: sqlpolicy.Rel{Schema: rel.Schema, Name: rel.Name}}}}
		}
	}
	if len(w.viewStack) >= maxViewDepth {
		return &viewInfo{problems: []sqlpolicy.Problem{{Code: sqlpolicy.ProblemTooComplex,
			Detail: "views nest too deeply", Rel: sqlpolicy.Rel{Schema: rel.Schema, Name: rel.Name}}}}
	}
	vi := w.analyzeView(rel)
	if len(w.viewStack) == 0 {
		w.a.views.Store(rel, vi)
	}
	return vi
}

func (w *walker) analyzeView(rel *catalog.Relation) (vi *viewInfo) {
	vr := sqlpolicy.Rel{Schema: rel.Schema, Name: rel.Name}
	fail := func(detail string) *viewInfo {
		return &viewInfo{problems: []sqlpolicy.Problem{{Code: sqlpolicy.ProblemUnsupported, Detail: detail, Rel: vr}}}
	}
	if rel.Definition == "" {
		return fail(fmt.Sprintf("view %s has no definition in the catalog", rel))
	}
	tree, err := pg.Parse(rel.Definition)
	if err != nil {
		return fail(fmt.Sprintf("definition of view %s does not parse: %s", rel, parseDetail(err)))
	}
	if len(tree.Stmts) != 1 {
		return fail(fmt.Sprintf("definition of view %s is not one query", rel))
	}
	var st sqlpolicy.Statement
	vw := &walker{a: w.a, cat: w.cat, path: w.a.path, st: &st, viewStack: append(w.viewStack[:len(w.viewStack):len(w.viewStack)], rel)}
	defer func() {
		if r := recover(); r != nil {
			vi = fail(fmt.Sprintf("internal error while analyzing view %s: %v", rel, r))
		}
	}()
	sh := vw.query(tree.Stmts[0].GetStmt(), nil)
	if len(vw.writeVerbs) > 0 || st.Verb != "" {
		st.Problems = append(st.Problems, sqlpolicy.Problem{Code: sqlpolicy.ProblemUnsupported,
			Detail: fmt.Sprintf("definition of view %s is not a plain query", rel), Rel: vr})
	}
	return &viewInfo{
		tables:    st.Tables,
		columns:   st.Columns,
		functions: st.Functions,
		problems:  st.Problems,
		lit:       st.LiteralSensitive,
		outs:      sh.cols,
	}
}
