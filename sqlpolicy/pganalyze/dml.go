package pganalyze

import (
	"fmt"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze/internal/pgparse"
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
// CTE) into an item; the caller adds it to the namespace where Postgres
// does. A view target is expanded: its base relations are written through
// it.
//
// action is the row action that writes the target (insert, update,
// delete, merge); the written relations are reported with it, and the
// item remembers them for alsoWrite.
func (w *walker) target(rv *pg.RangeVar, sc *scope, action sqlpolicy.Verb) *item {
	if rv == nil {
		w.unsupported("data-modifying statement without a target relation")
		return &item{unknown: true, cols: []outCol{{kind: colRun}}}
	}
	prevAction, prevCapture := w.action, w.capture
	var written []sqlpolicy.TableRef
	w.action, w.capture = action, &written
	it := w.rangeVar(rv, sc, sqlpolicy.Write, false)
	w.action, w.capture = prevAction, prevCapture
	if prevCapture != nil {
		*prevCapture = append(*prevCapture, written...)
	}
	for _, t := range written {
		if t.Mode == sqlpolicy.Write {
			it.writes = append(it.writes, t)
		}
	}
	return it
}

// alsoWrite reports the relations written through target it once more,
// for another row action (the update half of an upsert, the actions of a
// MERGE's WHEN clauses).
func (w *walker) alsoWrite(it *item, action sqlpolicy.Verb) {
	for _, t := range it.writes {
		t.Action, t.Merge = action, w.merging
		w.table(t)
	}
}

// writeCol reports a write of column name of the target (and, through a
// view, of the base columns behind it) by the row action action.
func (w *walker) writeCol(it *item, name string, action sqlpolicy.Verb) {
	if it.unknown {
		return
	}
	found, maybe := false, false
	for i := range it.cols {
		c := &it.cols[i]
		if c.kind == colRun {
			maybe = true
		}
		if c.kind != colNamed || c.name != name {
			continue
		}
		found = true
		for _, r := range c.lin {
			r.Mode, r.Action, r.Merge = sqlpolicy.Write, action, w.merging
			w.column(r)
		}
	}
	if !found && !maybe {
		w.unknownColumn(qualified(it.name, name))
	}
}

func (w *walker) writeAll(it *item, action sqlpolicy.Verb) {
	for i := range it.cols {
		for _, c := range it.cols[i].lin {
			c.Mode, c.Action, c.Merge = sqlpolicy.Write, action, w.merging
			w.column(c)
		}
	}
}

// setList analyzes UPDATE SET / ON CONFLICT DO UPDATE SET / MERGE UPDATE
// SET: the targets are written (by an update), the values read.
func (w *walker) setList(list []*pg.Node, it *item, sc *scope) {
	for _, n := range list {
		rt := n.GetResTarget()
		if rt == nil {
			w.unsupported("SET entry of kind %s", nodeName(n.Node))
			continue
		}
		// SET a[1] = x and SET comp.f = x write part of column a.
		w.writeCol(it, rt.Name, sqlpolicy.VerbUpdate)
		if rt.Val.GetSetToDefault() != nil && !it.unknown {
			w.fillDefaults(it, map[string]bool{rt.Name: true}, map[string]bool{rt.Name: true})
			w.linDefaults(it, rt.Name)
		}
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
	// The source query does not see the target table (transformInsertStmt
	// keeps it out of the namespace); every value it produces is
	// inserted, so all of its output is read.
	var src shape
	if s.SelectStmt != nil {
		src = w.query(s.SelectStmt, sc)
		w.readShape(nil, src)
	}
	it := w.target(s.Relation, sc, sqlpolicy.VerbInsert)
	if len(s.Cols) == 0 {
		w.writeAll(it, sqlpolicy.VerbInsert)
	}
	for _, c := range s.Cols {
		if rt := c.GetResTarget(); rt != nil {
			w.writeCol(it, rt.Name, sqlpolicy.VerbInsert)
		} else {
			w.unsupported("INSERT column of kind %s", nodeName(c.Node))
		}
	}
	w.insertDefaults(it, s.Cols, s.SelectStmt, valuesWidth(s.SelectStmt, src))
	// ON CONFLICT and RETURNING see the target only.
	sc.ns = []*item{it}
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
				w.expr(ie.Expr, sc, nil)
			}
			w.expr(inf.WhereClause, sc, nil)
		}
		if oc.Action == pg.OnConflictAction_ONCONFLICT_UPDATE {
			w.writeVerb(sqlpolicy.VerbUpdate)
			w.alsoWrite(it, sqlpolicy.VerbUpdate)
			// EXCLUDED is the row proposed for insertion; its columns are
			// the target's.
			ex := newItem("excluded", it.cols)
			sc.ns = []*item{it, ex}
			w.setList(oc.TargetList, it, sc)
			w.expr(oc.WhereClause, sc, nil)
			sc.ns = []*item{it}
		}
	}
	return w.targets(s.ReturningList, sc)
}

func (w *walker) update(s *pg.UpdateStmt, parent *scope) shape {
	w.writeVerb(sqlpolicy.VerbUpdate)
	sc := newScope(parent)
	w.with(s.WithClause, sc)
	it := w.target(s.Relation, sc, sqlpolicy.VerbUpdate)
	w.targetSource(it, s.FromClause, sc)
	w.setList(s.TargetList, it, sc)
	w.expr(s.WhereClause, sc, nil)
	return w.targets(s.ReturningList, sc)
}

// targetSource adds the target of an UPDATE or DELETE and its FROM/USING
// items to sc: the FROM items cannot refer to the target, even LATERAL
// (transformUpdateStmt marks it lateral-only and not lateral-OK); the
// other clauses see all.
func (w *walker) targetSource(it *item, from []*pg.Node, sc *scope) {
	it.lateralOnly, it.lateralOK = true, false
	sc.ns = append(sc.ns, it)
	w.fromClause(from, sc)
}

func (w *walker) delete(s *pg.DeleteStmt, parent *scope) shape {
	w.writeVerb(sqlpolicy.VerbDelete)
	sc := newScope(parent)
	w.with(s.WithClause, sc)
	it := w.target(s.Relation, sc, sqlpolicy.VerbDelete)
	w.targetSource(it, s.UsingClause, sc)
	w.expr(s.WhereClause, sc, nil)
	return w.targets(s.ReturningList, sc)
}

// merge analyzes MERGE as PostgreSQL 15 does (transformMergeStmt): the
// source sees no target; the join condition and WHEN MATCHED actions see
// both; WHEN NOT MATCHED actions see the source only. RETURNING and WHEN
// NOT MATCHED BY SOURCE are PostgreSQL 17 (refused; the latter's actions
// see the target only).
//
// The target is written by the MERGE as a whole (it needs the merge
// grant) and once more by each kind of action its WHEN clauses take
// (Merge set): a merge grant covers the INSERT and UPDATE actions, whose
// columns say which action writes them; a DELETE action needs the delete
// grant. The actions' row events (triggers, foreign key actions) are
// those of the kinds of action the MERGE names.
func (w *walker) merge(s *pg.MergeStmt, parent *scope) shape {
	w.writeVerb(sqlpolicy.VerbMerge)
	sc := newScope(parent)
	w.with(s.WithClause, sc)
	it := w.target(s.Relation, sc, sqlpolicy.VerbMerge)
	src, ns := w.fromItem(s.SourceRelation, sc)
	setLateral(ns, false, true)
	sc.ns = append(sc.ns, ns...)
	sc.ns = append(sc.ns, it)
	w.expr(s.JoinCondition, sc, nil)
	w.merging = true
	for _, n := range s.MergeWhenClauses {
		mw := n.GetMergeWhenClause()
		if mw == nil {
			w.unsupported("MERGE clause of kind %s", nodeName(n.Node))
			continue
		}
		bySource := mw.MatchKind == pg.MergeMatchKind_MERGE_WHEN_NOT_MATCHED_BY_SOURCE
		matched := mw.MatchKind == pg.MergeMatchKind_MERGE_WHEN_MATCHED || bySource
		if bySource {
			w.unsupported("MERGE ... WHEN NOT MATCHED BY SOURCE is not supported by PostgreSQL 15")
		}
		// setNamespaceForMergeWhen: the source's top item is visible by
		// name in MATCHED and NOT MATCHED [BY TARGET] actions, the target
		// in MATCHED and NOT MATCHED BY SOURCE ones.
		src.relVisible, src.colsVisible = !bySource, !bySource
		it.relVisible, it.colsVisible = matched, matched
		w.expr(mw.Condition, sc, nil)
		switch mw.CommandType {
		case pg.CmdType_CMD_UPDATE:
			w.alsoWrite(it, sqlpolicy.VerbUpdate)
			w.setList(mw.TargetList, it, sc)
		case pg.CmdType_CMD_INSERT:
			w.alsoWrite(it, sqlpolicy.VerbInsert)
			if len(mw.TargetList) == 0 {
				w.writeAll(it, sqlpolicy.VerbInsert)
			}
			for _, c := range mw.TargetList {
				if rt := c.GetResTarget(); rt != nil {
					w.writeCol(it, rt.Name, sqlpolicy.VerbInsert)
				}
			}
			for _, v := range mw.Values {
				w.expr(v, sc, nil)
			}
			w.mergeDefaults(it, mw)
		case pg.CmdType_CMD_DELETE:
			w.alsoWrite(it, sqlpolicy.VerbDelete)
		case pg.CmdType_CMD_NOTHING:
		default:
			w.unsupported("MERGE action %s", mw.CommandType)
		}
	}
	if len(s.ReturningList) > 0 {
		w.unsupported("MERGE ... RETURNING is not supported by PostgreSQL 15")
	}
	w.merging = false
	src.relVisible, src.colsVisible = true, true
	it.relVisible, it.colsVisible = true, true
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
		if len(w.writeVerbs) > 0 {
			// COPY (INSERT/UPDATE/DELETE ... RETURNING) TO, and a
			// data-modifying WITH in COPY's query, run their writes
			// (Postgres 15 refuses only MERGE there); the policy decides a
			// write under COPY by the copy grant, whatever its row action.
			w.unsupported("COPY over a data-modifying query: run the statement itself (with RETURNING)")
		}
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
	var it *item
	if mode == sqlpolicy.Write {
		it = w.target(s.Relation, sc, sqlpolicy.VerbInsert)
	} else {
		it = w.rangeVar(s.Relation, sc, mode, false)
	}
	sc.ns = []*item{it}
	cols := names(s.Attlist)
	for _, c := range cols {
		if mode == sqlpolicy.Write {
			w.writeCol(it, c, sqlpolicy.VerbInsert)
		} else {
			w.readCol(it, c, nil)
		}
	}
	if mode == sqlpolicy.Write && len(cols) > 0 && !it.unknown {
		supplied := make(map[string]bool, len(cols))
		for _, c := range cols {
			supplied[c] = true
		}
		w.fillDefaults(it, supplied, nil)
	}
	if len(cols) == 0 {
		if mode == sqlpolicy.Write {
			w.writeAll(it, sqlpolicy.VerbInsert)
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
			t.Action = w.action
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
		if len(vi.outs) == len(rel.Columns) && exact(vi.outs) {
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
	tree, err := pgparse.Parse(rel.Definition)
	if err != nil {
		return fail(fmt.Sprintf("definition of view %s does not parse: %s", rel, parseDetail(err)))
	}
	if len(tree.Stmts) != 1 {
		return fail(fmt.Sprintf("definition of view %s is not one query", rel))
	}
	var st sqlpolicy.Statement
	vw := &walker{a: w.a, cat: w.cat, path: w.a.path, st: &st, qualified: true,
		viewStack: append(w.viewStack[:len(w.viewStack):len(w.viewStack)], rel)}
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

// ---- column defaults ---------------------------------------------------

// defaultExpr is a parsed column default: the expression, or why it could
// not be parsed.
type defaultExpr struct {
	expr *pg.Node
	err  string
}

// defaultOf parses (once) the default expression of c.
func (a *Analyzer) defaultOf(c *catalog.Column) *defaultExpr {
	if v, ok := a.defaults.Load(c); ok {
		return v.(*defaultExpr)
	}
	d := &defaultExpr{}
	tree, err := pgparse.Parse("SELECT " + c.Default)
	switch {
	case err != nil:
		d.err = parseDetail(err)
	case len(tree.Stmts) != 1 || tree.Stmts[0].GetStmt().GetSelectStmt() == nil ||
		len(tree.Stmts[0].GetStmt().GetSelectStmt().TargetList) != 1 ||
		tree.Stmts[0].GetStmt().GetSelectStmt().TargetList[0].GetResTarget() == nil:
		d.err = "not one expression"
	default:
		d.expr = tree.Stmts[0].GetStmt().GetSelectStmt().TargetList[0].GetResTarget().Val
	}
	a.defaults.Store(c, d)
	return d
}

// defaulted reports what filling column c of rel with its default does:
// Postgres runs the default expression with the agent's privileges, so the
// sequences it advances are written (nextval needs a privilege on the
// sequence) and the functions it calls are called. Identity columns have
// no default expression: their sequence needs no privilege.
func (w *walker) defaulted(rel *catalog.Relation, c *catalog.Column) {
	for _, s := range c.Sequences {
		w.table(sqlpolicy.TableRef{Rel: sqlpolicy.ParseRel(s), Mode: sqlpolicy.Write})
	}
	if c.Default == "" {
		return
	}
	d := w.a.defaultOf(c)
	if d.expr == nil {
		w.unsupported("default of %s.%s does not parse: %s", rel, c.Name, d.err)
		return
	}
	// The catalog prints defaults with every name outside pg_catalog
	// qualified; resolve the rest there, whatever the session's path. The
	// literals come from the catalog, not the statement, and set-returning
	// or user functions in a default do not change the statement's shape.
	path, paths, lost, lit, flag := w.path, w.paths, w.pathLost, w.st.LiteralSensitive, w.funcFlag
	w.path, w.paths, w.pathLost = catalogOnlyPath, nil, false
	w.expr(d.expr, newScope(nil), nil)
	w.path, w.paths, w.pathLost, w.st.LiteralSensitive, w.funcFlag = path, paths, lost, lit, flag
}

var catalogOnlyPath = []string{"pg_catalog"}

// fillDefaults reports the defaults of the target's columns that the
// statement leaves to their default: every column not in supplied (nil:
// none supplied), and every column in explicit (DEFAULT in a VALUES list).
func (w *walker) fillDefaults(it *item, supplied, explicit map[string]bool) {
	for _, rel := range it.rels() {
		for _, c := range rel.Columns {
			if c.Default == "" && len(c.Sequences) == 0 {
				continue
			}
			if !supplied[c.Name] || explicit[c.Name] {
				w.defaulted(rel, c)
			}
		}
	}
}

// insertDefaults works out which columns an INSERT leaves to their
// defaults: the ones its column list omits (all for DEFAULT VALUES), and
// those given DEFAULT in a VALUES row. Without a column list the values
// fill the leading columns; n is the width of the source query (-1 when
// unknown: every column may be defaulted).
func (w *walker) insertDefaults(it *item, cols []*pg.Node, src *pg.Node, n int) {
	if it.unknown {
		return
	}
	var names []string
	if len(cols) > 0 {
		for _, c := range cols {
			if rt := c.GetResTarget(); rt != nil {
				names = append(names, rt.Name)
			}
		}
	} else if it.rel != nil && n > 0 {
		for i, c := range it.rel.Columns {
			if i >= n {
				break
			}
			names = append(names, c.Name)
		}
	}
	supplied := make(map[string]bool, len(names))
	for _, nm := range names {
		supplied[nm] = true
	}
	explicit := map[string]bool{}
	if sel := src.GetSelectStmt(); sel != nil {
		for _, row := range sel.ValuesLists {
			l := row.GetList()
			if l == nil {
				continue
			}
			for i, v := range l.Items {
				if v.GetSetToDefault() != nil && i < len(names) {
					explicit[names[i]] = true
				}
			}
		}
	}
	w.fillDefaults(it, supplied, explicit)
	w.baseDefaults(it, supplied, explicit)
}

// baseDefaults reports, for a view target, the defaults of the base
// relations' columns that no supplied view column fills: Postgres fills
// them with the base column's default (or the view column's, reported by
// fillDefaults), running it with the agent's privileges.
func (w *walker) baseDefaults(it *item, supplied, explicit map[string]bool) {
	if it.rel == nil || (it.rel.Kind != catalog.KindView && len(it.alts) == 0) {
		return
	}
	filled := map[sqlpolicy.ColumnRef]bool{}
	for i := range it.cols {
		if !supplied[it.cols[i].name] || explicit[it.cols[i].name] {
			continue
		}
		for _, c := range it.cols[i].lin {
			filled[sqlpolicy.ColumnRef{Rel: c.Rel, Column: c.Column}] = true
		}
	}
	for _, t := range it.writes {
		if t.Via == (sqlpolicy.Rel{}) {
			continue
		}
		rel := w.cat.Relation(t.Rel.Schema, t.Rel.Name)
		if rel == nil || rel.Kind == catalog.KindView {
			continue
		}
		for _, c := range rel.Columns {
			if (c.Default != "" || len(c.Sequences) > 0) && !filled[sqlpolicy.ColumnRef{Rel: t.Rel, Column: c.Name}] {
				w.defaulted(rel, c)
			}
		}
	}
}

// valuesWidth is the number of values in the shortest row of a VALUES
// source, the width of another source query's output, or -1.
func valuesWidth(src *pg.Node, sh shape) int {
	if src == nil {
		return 0 // DEFAULT VALUES
	}
	if sel := src.GetSelectStmt(); sel != nil && len(sel.ValuesLists) > 0 {
		n := -1
		for _, row := range sel.ValuesLists {
			if l := row.GetList(); l != nil && (n < 0 || len(l.Items) < n) {
				n = len(l.Items)
			}
		}
		return n
	}
	if !exact(sh.cols) {
		return -1
	}
	return len(sh.cols)
}

// mergeDefaults is insertDefaults for a MERGE's INSERT action.
func (w *walker) mergeDefaults(it *item, mw *pg.MergeWhenClause) {
	if it.unknown {
		return
	}
	supplied, explicit := map[string]bool{}, map[string]bool{}
	for i, c := range mw.TargetList {
		rt := c.GetResTarget()
		if rt == nil {
			continue
		}
		supplied[rt.Name] = true
		if i < len(mw.Values) && mw.Values[i].GetSetToDefault() != nil {
			explicit[rt.Name] = true
		}
	}
	if len(mw.TargetList) == 0 && it.rel != nil {
		// INSERT VALUES (...) without a column list fills the leading
		// columns; INSERT DEFAULT VALUES none.
		for i, c := range it.rel.Columns {
			if i < len(mw.Values) {
				supplied[c.Name] = true
				if mw.Values[i].GetSetToDefault() != nil {
					explicit[c.Name] = true
				}
			}
		}
	}
	w.fillDefaults(it, supplied, explicit)
}

// linDefaults reports the defaults of the base columns behind column name
// of a view target (SET v = DEFAULT through a view runs the base column's
// default when the view column has none).
func (w *walker) linDefaults(it *item, name string) {
	for i := range it.cols {
		if it.cols[i].name != name {
			continue
		}
		for _, c := range it.cols[i].lin {
			if c.Via == (sqlpolicy.Rel{}) {
				continue
			}
			if rel := w.cat.Relation(c.Rel.Schema, c.Rel.Name); rel != nil && rel.Kind != catalog.KindView {
				if col := rel.Column(c.Column); col != nil && (col.Default != "" || len(col.Sequences) > 0) {
					w.defaulted(rel, col)
				}
			}
		}
	}
}
