package pganalyze

import (
	"fmt"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// query analyzes a query (SELECT, VALUES, or a data-modifying statement in
// WITH) whose outer query levels are parent, and returns its output. Reads
// in clauses other than the select list are reported; the select list's
// reads become the lineage of the output columns.
func (w *walker) query(n *pg.Node, parent *scope) shape {
	if n == nil || n.Node == nil {
		return shape{}
	}
	if !w.enter() {
		return shape{cols: []outCol{{kind: colRun}}}
	}
	defer w.leave()
	switch x := n.Node.(type) {
	case *pg.Node_SelectStmt:
		return w.selectStmt(x.SelectStmt, parent)
	case *pg.Node_InsertStmt:
		return w.insert(x.InsertStmt, parent)
	case *pg.Node_UpdateStmt:
		return w.update(x.UpdateStmt, parent)
	case *pg.Node_DeleteStmt:
		return w.delete(x.DeleteStmt, parent)
	case *pg.Node_MergeStmt:
		return w.merge(x.MergeStmt, parent)
	}
	w.unsupported("query of kind %s", nodeName(n.Node))
	return shape{cols: []outCol{{kind: colRun}}}
}

// with analyzes a WITH clause into sc.ctes. Each CTE of a plain WITH sees
// the ones before it; every CTE of a WITH RECURSIVE sees all of them
// (parse_cte.c).
func (w *walker) with(wc *pg.WithClause, sc *scope) {
	if wc == nil {
		return
	}
	var entries []*cte
	if wc.Recursive {
		for _, n := range wc.Ctes {
			ce := n.GetCommonTableExpr()
			if ce == nil {
				continue
			}
			// Until a CTE is analyzed, a reference to it from an earlier
			// one sees its alias names (or any name), without lineage:
			// its reads are reported when it is analyzed.
			e := &cte{name: ce.Ctename, sh: shape{cols: []outCol{{kind: colRun}}}}
			if len(ce.Aliascolnames) > 0 {
				e.sh.cols = nil
				for _, a := range names(ce.Aliascolnames) {
					e.sh.cols = append(e.sh.cols, outCol{name: a})
				}
			}
			entries = append(entries, e)
			sc.ctes = append(sc.ctes, e)
		}
	}
	i := 0
	for _, n := range wc.Ctes {
		c, ok := n.Node.(*pg.Node_CommonTableExpr)
		if !ok {
			w.unsupported("WITH entry of kind %s", nodeName(n.Node))
			continue
		}
		ce := c.CommonTableExpr
		var entry *cte
		if wc.Recursive {
			entry = entries[i]
			i++
		}
		if ce.Ctequery.GetMergeStmt() != nil {
			// PostgreSQL 15 has no MERGE in WITH (17 does, with RETURNING).
			w.unsupported("MERGE in WITH is not supported by PostgreSQL 15")
			continue
		}
		if !wc.Recursive {
			entry = &cte{name: ce.Ctename}
			entry.sh = w.query(ce.Ctequery, sc)
			entry.sh.cols = aliasCols(entry.sh.cols, names(ce.Aliascolnames))
			w.derived(entry.sh)
			w.cteExtras(ce, entry)
			sc.ctes = append(sc.ctes, entry)
			continue
		}
		// A recursive CTE reads its own output: start from the
		// non-recursive term and re-analyze until the lineage of every
		// column stops growing (values can move between columns from one
		// iteration to the next).
		seeded := false
		if sel := ce.Ctequery.GetSelectStmt(); sel != nil && sel.Op != pg.SetOperation_SETOP_NONE && sel.Larg != nil {
			entry.sh = w.selectStmt(sel.Larg, sc)
			entry.sh.cols = aliasCols(entry.sh.cols, names(ce.Aliascolnames))
			seeded = true
		}
		stable := false
		for iter := 0; iter < 8 && !stable; iter++ {
			sh := w.query(ce.Ctequery, sc)
			sh.cols = aliasCols(sh.cols, names(ce.Aliascolnames))
			if !seeded {
				// Not a UNION: its first analysis is its shape (the
				// placeholder only stood in for references before it).
				entry.sh, seeded = sh, true
				continue
			}
			if w.charge(lineageSize(sh) + lineageSize(entry.sh)) {
				break
			}
			merged, grew := mergeShapes(entry.sh, sh)
			entry.sh = merged
			stable = !grew
		}
		if !stable {
			// Conservatively let every column carry every column's inputs.
			all := unionLin(entry.sh.cols)
			cols := make([]outCol, len(entry.sh.cols))
			for j := range entry.sh.cols {
				cols[j] = entry.sh.cols[j]
				cols[j].lin = all
			}
			entry.sh.cols = cols
		}
		w.derived(entry.sh)
		w.cteExtras(ce, entry)
	}
}

// derived reports every column a CTE or derived table's select list reads,
// whether or not the outer query uses it. Postgres checks column
// privileges on every column the text names, and evaluates unused columns
// of a materialized CTE (an error there is an oracle on the value), so
// the lineage of derived outputs only ever adds precision to views, whose
// definitions the DBA controls.
func (w *walker) derived(sh shape) {
	w.readShape(nil, sh)
}

// cteExtras adds the columns SEARCH and CYCLE clauses compute from the
// CTE's own columns.
func (w *walker) cteExtras(ce *pg.CommonTableExpr, entry *cte) {
	var extra []string
	if s := ce.SearchClause; s != nil {
		extra = append(extra, s.SearchSeqColumn)
	}
	if c := ce.CycleClause; c != nil {
		extra = append(extra, c.CycleMarkColumn, c.CyclePathColumn)
		w.expr(c.CycleMarkValue, newScope(nil), nil)
		w.expr(c.CycleMarkDefault, newScope(nil), nil)
	}
	if len(extra) == 0 {
		return
	}
	all := unionLin(entry.sh.cols)
	cols := make([]outCol, len(entry.sh.cols), len(entry.sh.cols)+len(extra))
	copy(cols, entry.sh.cols)
	for _, e := range extra {
		cols = append(cols, outCol{name: e, lin: all})
	}
	entry.sh.cols = cols
	entry.extra = len(extra)
}

// mergeShapes combines the outputs of two branches of a set operation (or
// two iterations of a recursive CTE) position by position, reporting
// whether b added lineage a did not have. The names are a's (Postgres
// names a set operation's columns after its first branch). When either
// has columns the analyzer cannot count, every column carries all the
// lineage of both.
func mergeShapes(a, b shape) (shape, bool) {
	if !exact(a.cols) || !exact(b.cols) {
		before := len(unionLin(a.cols))
		all := unionLin(append(append([]outCol(nil), a.cols...), b.cols...))
		out := shape{cols: make([]outCol, len(a.cols))}
		for i := range a.cols {
			out.cols[i] = a.cols[i]
			out.cols[i].lin = all
		}
		if len(out.cols) == 0 {
			out.cols = []outCol{{kind: colRun, lin: all}}
		}
		return out, len(all) > before
	}
	out := shape{cols: make([]outCol, len(a.cols))}
	grew := false
	for i := range a.cols {
		out.cols[i].name = a.cols[i].name
		lin := a.cols[i].lin
		owned := false // lin may share its array with a's: copy before appending
		if i < len(b.cols) {
			for _, c := range b.cols[i].lin {
				if !containsCol(lin, c) {
					if !owned {
						lin = append(lin[:len(lin):len(lin)], c)
						owned = true
					} else {
						lin = append(lin, c)
					}
					grew = true
				}
			}
		}
		out.cols[i].lin = lin
	}
	if len(b.cols) > len(a.cols) {
		// Branches of different widths are a Postgres error; keep the
		// extra lineage anyway.
		out.cols = append(out.cols, b.cols[len(a.cols):]...)
		grew = true
	}
	return out, grew
}

func lineageSize(sh shape) int {
	n := len(sh.cols)
	for _, c := range sh.cols {
		n += len(c.lin)
	}
	return n
}

func containsCol(lin []sqlpolicy.ColumnRef, c sqlpolicy.ColumnRef) bool {
	for _, d := range lin {
		if d == c {
			return true
		}
	}
	return false
}

// selectStmt analyzes SELECT, VALUES and set operations.
func (w *walker) selectStmt(s *pg.SelectStmt, parent *scope) shape {
	if s == nil {
		return shape{}
	}
	if !w.enter() {
		return shape{cols: []outCol{{kind: colRun}}}
	}
	defer w.leave()
	sc := newScope(parent)
	w.with(s.WithClause, sc)
	if s.Op != pg.SetOperation_SETOP_NONE && s.Op != pg.SetOperation_SET_OPERATION_UNDEFINED {
		// Each branch is a query of its own below this level, whose
		// namespace is empty (transformSetOperationTree).
		l := w.selectStmt(s.Larg, sc)
		r := w.selectStmt(s.Rarg, sc)
		if w.charge(lineageSize(l) + lineageSize(r)) {
			return shape{cols: []outCol{{kind: colRun}}}
		}
		sh, _ := mergeShapes(l, r)
		if !(s.Op == pg.SetOperation_SETOP_UNION && s.All) {
			// UNION (distinct) removes duplicates and INTERSECT/EXCEPT
			// compare values: the result's size depends on every column,
			// so they count as read even when the outer query drops them.
			w.readShape(nil, sh)
		}
		// ORDER BY sees only the output columns, as unqualified names;
		// LIMIT and OFFSET see no column of this level.
		sc.ns = []*item{{cols: sh.cols, colsVisible: true, lateralOK: true}}
		w.sortClause(s.SortClause, sc, sh)
		sc.ns = nil
		w.expr(s.LimitCount, sc, nil)
		w.expr(s.LimitOffset, sc, nil)
		w.locking(s.LockingClause, sc)
		w.into(s.IntoClause)
		return sh
	}
	if len(s.ValuesLists) > 0 {
		sh := w.values(s.ValuesLists, sc)
		// ORDER BY of a VALUES list sees its columns (transformValuesClause).
		sc.ns = []*item{newItem("*VALUES*", sh.cols)}
		w.sortClause(s.SortClause, sc, sh)
		w.expr(s.LimitCount, sc, nil)
		w.expr(s.LimitOffset, sc, nil)
		w.locking(s.LockingClause, sc)
		w.into(s.IntoClause)
		return sh
	}
	w.fromClause(s.FromClause, sc)
	w.expr(s.WhereClause, sc, nil)
	sh := w.targets(s.TargetList, sc)
	if len(s.DistinctClause) > 0 {
		for _, d := range s.DistinctClause {
			if d != nil && d.Node != nil {
				w.orderExpr(d, sc, sh)
			}
		}
		// DISTINCT makes the row count depend on every output column.
		w.readShape(nil, sh)
	}
	w.groupClause(s.GroupClause, sc, sh)
	w.expr(s.HavingClause, sc, nil)
	for _, n := range s.WindowClause {
		if wd := n.GetWindowDef(); wd != nil {
			w.windowDef(wd, sc)
		} else {
			w.unsupported("WINDOW entry of kind %s", nodeName(n.Node))
		}
	}
	w.sortClause(s.SortClause, sc, sh)
	w.expr(s.LimitCount, sc, nil)
	w.expr(s.LimitOffset, sc, nil)
	w.locking(s.LockingClause, sc)
	w.into(s.IntoClause)
	return sh
}

// into records SELECT ... INTO newtable (handled as CREATE TABLE AS at the
// statement level; nested, it is a Postgres error).
func (w *walker) into(ic *pg.IntoClause) {
	if ic == nil {
		return
	}
	w.st.Verb = sqlpolicy.VerbDDL
	w.st.Command = "SELECT INTO"
	w.table(sqlpolicy.TableRef{Rel: w.ddlRel(ic.Rel), Mode: sqlpolicy.Write})
}

// values analyzes a VALUES list: its columns are column1, column2 ...;
// column i's lineage is every row's i-th expression. The rows see the
// level's (empty) namespace and the outer levels.
func (w *walker) values(rows []*pg.Node, sc *scope) shape {
	var sh shape
	for _, r := range rows {
		l := r.GetList()
		if l == nil {
			w.unsupported("VALUES row of kind %s", nodeName(r.Node))
			continue
		}
		for i, e := range l.Items {
			for len(sh.cols) <= i {
				sh.cols = append(sh.cols, outCol{name: fmt.Sprintf("column%d", len(sh.cols)+1)})
			}
			w.exprTarget(e, sc, &sh.cols[i].lin)
		}
	}
	return sh
}

// exprTarget walks an output expression into lin. A set-returning or
// non-built-in function in it makes the query's row count (or its errors)
// depend on the inputs, so those are reported even if the column is not
// used.
func (w *walker) exprTarget(e *pg.Node, sc *scope, lin *[]sqlpolicy.ColumnRef) {
	saved := w.funcFlag
	w.funcFlag = false
	start := len(*lin)
	w.expr(e, sc, lin)
	if w.funcFlag {
		w.read(nil, (*lin)[start:])
	}
	w.funcFlag = saved
}

// targets analyzes a select list (or RETURNING list).
func (w *walker) targets(list []*pg.Node, sc *scope) shape {
	var sh shape
	for _, n := range list {
		rt := n.GetResTarget()
		if rt == nil {
			w.unsupported("select list entry of kind %s", nodeName(n.Node))
			continue
		}
		if cr := rt.Val.GetColumnRef(); cr != nil {
			var buf [4]string
			if parts, star, ok := refParts(cr, buf[:]); ok && star {
				sh.cols = append(sh.cols, w.starCols(parts, sc)...)
				continue
			}
		}
		if ai := rt.Val.GetAIndirection(); ai != nil && len(ai.Indirection) > 0 {
			if _, star := ai.Indirection[len(ai.Indirection)-1].Node.(*pg.Node_AStar); star {
				sh.cols = append(sh.cols, w.indirectionStar(ai, sc)...)
				continue
			}
		}
		oc := outCol{name: rt.Name}
		w.exprTarget(rt.Val, sc, &oc.lin)
		if oc.name == "" {
			name, known := w.figureColname(rt.Val)
			if known {
				oc.name = name
			} else {
				oc.kind = colRun
			}
		}
		sh.cols = append(sh.cols, oc)
	}
	return sh
}

// indirectionStar expands (expr).* in a select list (ExpandIndirectionStar):
// the columns of an item for a whole-row reference, else the fields of
// a composite value, which the analyzer cannot name or count.
func (w *walker) indirectionStar(ai *pg.A_Indirection, sc *scope) []outCol {
	if len(ai.Indirection) == 1 {
		if it := w.wholeRow(ai.Arg, sc); it != nil {
			return it.cols
		}
	}
	inner := &pg.Node{Node: &pg.Node_AIndirection{AIndirection: &pg.A_Indirection{
		Arg: ai.Arg, Indirection: ai.Indirection[:len(ai.Indirection)-1]}}}
	if len(ai.Indirection) == 1 {
		inner = ai.Arg
	}
	c := outCol{kind: colRun}
	w.exprTarget(inner, sc, &c.lin)
	return []outCol{c}
}

// intConst returns the value of an integer constant node.
func intConst(n *pg.Node) (int, bool) {
	c := n.GetAConst()
	if c == nil {
		return 0, false
	}
	if i, ok := c.Val.(*pg.A_Const_Ival); ok && i.Ival != nil {
		return int(i.Ival.Ival), true
	}
	return 0, false
}

// singleName returns the name of an unqualified column reference.
func singleName(n *pg.Node) (string, bool) {
	cr := n.GetColumnRef()
	if cr == nil || len(cr.Fields) != 1 {
		return "", false
	}
	return strVal(cr.Fields[0])
}

// readPosition reads output column i (1-based) of sh: ORDER BY 2.
func (w *walker) readPosition(sh shape, i int) {
	for j := 0; j < i && j < len(sh.cols); j++ {
		if sh.cols[j].kind != colNamed {
			// Which column is i-th is unknown from here on.
			w.read(nil, unionLin(sh.cols[j:]))
			return
		}
	}
	if i >= 1 && i <= len(sh.cols) {
		w.read(nil, sh.cols[i-1].lin)
	}
}

// outputName reads the output columns of sh called name (the SQL92
// reading of ORDER BY and GROUP BY); maybe is set when a column the
// analyzer cannot name may be one.
func (w *walker) outputName(sh shape, name string) (matched, maybe bool) {
	for i := range sh.cols {
		c := &sh.cols[i]
		switch {
		case c.kind == colRun:
			w.read(nil, c.lin)
			maybe = true
		case c.kind == colNamed && c.name == name:
			w.read(nil, c.lin)
			matched = true
		}
	}
	return matched, maybe
}

// orderExpr analyzes one ORDER BY (or DISTINCT ON) expression
// (findTargetlistEntrySQL92): a position or an output column name refers
// to the select list, anything else is an expression over the FROM items.
func (w *walker) orderExpr(n *pg.Node, sc *scope, sh shape) {
	if i, ok := intConst(n); ok {
		w.readPosition(sh, i)
		return
	}
	if name, ok := singleName(n); ok {
		if matched, maybe := w.outputName(sh, name); matched && !maybe {
			return
		}
	}
	w.expr(n, sc, nil)
}

func (w *walker) sortClause(list []*pg.Node, sc *scope, sh shape) {
	for _, n := range list {
		sb := n.GetSortBy()
		if sb == nil {
			w.unsupported("ORDER BY entry of kind %s", nodeName(n.Node))
			continue
		}
		w.operatorName(sb.UseOp)
		w.untypedOperator(sb.UseOp)
		w.orderExpr(sb.Node, sc, sh)
	}
}

// groupClause analyzes GROUP BY: a position refers to the select list; a
// bare name to a column of this level's FROM items first, then to an
// output column, then to outer levels (findTargetlistEntrySQL92).
func (w *walker) groupClause(list []*pg.Node, sc *scope, sh shape) {
	for _, n := range list {
		if n == nil {
			continue
		}
		switch x := n.Node.(type) {
		case *pg.Node_GroupingSet:
			w.groupClause(x.GroupingSet.Content, sc, sh)
			continue
		case *pg.Node_List:
			w.groupClause(x.List.Items, sc, sh)
			continue
		}
		if i, ok := intConst(n); ok {
			w.readPosition(sh, i)
			continue
		}
		if name, ok := singleName(n); ok {
			if local, localMaybe := w.probeColumn(sc, name, true); !local {
				if matched, maybe := w.outputName(sh, name); matched && !maybe && !localMaybe {
					continue
				}
			}
		}
		w.expr(n, sc, nil)
	}
}

// windowDef reports the columns a window partitions and orders by: they
// decide the values of window functions, so they count as read. Window
// clauses see only the FROM items (SQL99 rules, no output names).
func (w *walker) windowDef(wd *pg.WindowDef, sc *scope) {
	if wd == nil {
		return
	}
	for _, p := range wd.PartitionClause {
		w.expr(p, sc, nil)
	}
	for _, o := range wd.OrderClause {
		if sb := o.GetSortBy(); sb != nil {
			w.operatorName(sb.UseOp)
			w.untypedOperator(sb.UseOp)
			w.expr(sb.Node, sc, nil)
		} else {
			w.expr(o, sc, nil)
		}
	}
	w.expr(wd.StartOffset, sc, nil)
	w.expr(wd.EndOffset, sc, nil)
}

// locking reports FOR UPDATE/SHARE: row locks block other sessions.
func (w *walker) locking(list []*pg.Node, sc *scope) {
	for _, n := range list {
		lc := n.GetLockingClause()
		if lc == nil {
			w.unsupported("locking clause of kind %s", nodeName(n.Node))
			continue
		}
		detail := "SELECT ... FOR UPDATE/SHARE locks rows"
		if len(lc.LockedRels) == 0 {
			any := false
			for _, it := range sc.ns {
				if it.rel != nil {
					w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemLocking, Detail: detail,
						Rel: sqlpolicy.Rel{Schema: it.rel.Schema, Name: it.rel.Name}})
					any = true
				}
			}
			if !any {
				w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemLocking, Detail: detail})
			}
			continue
		}
		for _, r := range lc.LockedRels {
			rv := r.GetRangeVar()
			if rv == nil {
				w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemLocking, Detail: detail})
				continue
			}
			rel := sqlpolicy.Rel{Schema: rv.Schemaname, Name: rv.Relname}
			var it *item
			for _, x := range sc.ns {
				if x.relVisible && x.name == rv.Relname {
					it = x
					break
				}
			}
			if it != nil && it.rel != nil && rv.Schemaname == "" {
				rel = sqlpolicy.Rel{Schema: it.rel.Schema, Name: it.rel.Name}
				for _, alt := range it.alts {
					w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemLocking, Detail: detail,
						Rel: sqlpolicy.Rel{Schema: alt.Schema, Name: alt.Name}})
				}
			} else if x := w.resolveRel(rv.Schemaname, rv.Relname); x != nil {
				rel = sqlpolicy.Rel{Schema: x.Schema, Name: x.Name}
			}
			w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemLocking, Detail: detail, Rel: rel})
		}
	}
}
