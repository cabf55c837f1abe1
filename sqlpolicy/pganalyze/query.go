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
		return shape{open: true}
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
	return shape{open: true}
}

// with analyzes a WITH clause into sc.ctes.
func (w *walker) with(wc *pg.WithClause, sc *scope) {
	if wc == nil {
		return
	}
	for _, n := range wc.Ctes {
		c, ok := n.Node.(*pg.Node_CommonTableExpr)
		if !ok {
			w.unsupported("WITH entry of kind %s", nodeName(n.Node))
			continue
		}
		ce := c.CommonTableExpr
		entry := &cte{name: ce.Ctename}
		if !wc.Recursive {
			entry.sh = w.query(ce.Ctequery, sc)
			entry.sh.cols = renameNames(entry.sh.cols, ce.Aliascolnames)
			w.derived(entry.sh)
			w.cteExtras(ce, entry)
			sc.ctes = append(sc.ctes, entry)
			continue
		}
		// A recursive CTE reads its own output: start from the
		// non-recursive term and re-analyze until the lineage of every
		// column stops growing (values can move between columns from one
		// iteration to the next).
		if sel := ce.Ctequery.GetSelectStmt(); sel != nil && sel.Op != pg.SetOperation_SETOP_NONE && sel.Larg != nil {
			entry.sh = w.selectStmt(sel.Larg, sc)
		} else {
			entry.sh = shape{open: true}
		}
		entry.sh.cols = renameNames(entry.sh.cols, ce.Aliascolnames)
		sc.ctes = append(sc.ctes, entry)
		stable := false
		for iter := 0; iter < 8 && !stable; iter++ {
			sh := w.query(ce.Ctequery, sc)
			sh.cols = renameNames(sh.cols, ce.Aliascolnames)
			if w.charge(lineageSize(sh) + lineageSize(entry.sh)) {
				break
			}
			merged, grew := mergeShapes(entry.sh, sh)
			entry.sh = merged
			stable = !grew
		}
		if !stable {
			// Conservatively let every column carry every column's inputs.
			var all []sqlpolicy.ColumnRef
			for _, c := range entry.sh.cols {
				all = append(all, c.lin...)
			}
			all = dedupLin(all)
			for i := range entry.sh.cols {
				entry.sh.cols[i].lin = all
			}
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
		w.expr(c.CycleMarkValue, nil, nil)
		w.expr(c.CycleMarkDefault, nil, nil)
	}
	if len(extra) == 0 {
		return
	}
	var all []sqlpolicy.ColumnRef
	for _, c := range entry.sh.cols {
		all = append(all, c.lin...)
	}
	cols := make([]outCol, len(entry.sh.cols), len(entry.sh.cols)+len(extra))
	copy(cols, entry.sh.cols)
	for _, e := range extra {
		cols = append(cols, outCol{name: e, lin: all})
	}
	entry.sh.cols = cols
}

// renameNames renames the first columns after a list of String nodes.
func renameNames(cols []outCol, ns []*pg.Node) []outCol {
	if len(ns) == 0 {
		return cols
	}
	return renameCols(cols, &pg.Alias{Colnames: ns})
}

// mergeShapes combines the outputs of two branches of a set operation (or
// two iterations of a recursive CTE) position by position, reporting
// whether b added lineage a did not have.
func mergeShapes(a, b shape) (shape, bool) {
	out := shape{open: a.open || b.open, cols: make([]outCol, len(a.cols))}
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
		for _, c := range b.cols[len(a.cols):] {
			out.cols = append(out.cols, c)
		}
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

func dedupLin(lin []sqlpolicy.ColumnRef) []sqlpolicy.ColumnRef {
	out := lin[:0:0]
	for _, c := range lin {
		if !containsCol(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// selectStmt analyzes SELECT, VALUES and set operations.
func (w *walker) selectStmt(s *pg.SelectStmt, parent *scope) shape {
	if s == nil {
		return shape{}
	}
	if !w.enter() {
		return shape{open: true}
	}
	defer w.leave()
	sc := newScope(parent)
	w.with(s.WithClause, sc)
	if s.Op != pg.SetOperation_SETOP_NONE && s.Op != pg.SetOperation_SET_OPERATION_UNDEFINED {
		l := w.selectStmt(s.Larg, sc)
		r := w.selectStmt(s.Rarg, sc)
		if w.charge(lineageSize(l) + lineageSize(r)) {
			return shape{open: true}
		}
		sh, _ := mergeShapes(l, r)
		if !(s.Op == pg.SetOperation_SETOP_UNION && s.All) {
			// UNION (distinct) removes duplicates and INTERSECT/EXCEPT
			// compare values: the result's size depends on every column,
			// so they count as read even when the outer query drops them.
			w.readShape(nil, sh)
		}
		// ORDER BY and LIMIT of a set operation see its output columns.
		osc := newScope(sc)
		osc.items = []*item{{cols: sh.cols, open: sh.open}}
		w.sortClause(s.SortClause, osc, sh)
		w.expr(s.LimitCount, osc, nil)
		w.expr(s.LimitOffset, osc, nil)
		w.locking(s.LockingClause, sc)
		w.into(s.IntoClause)
		return sh
	}
	if len(s.ValuesLists) > 0 {
		sh := w.values(s.ValuesLists, sc)
		osc := newScope(sc)
		osc.items = []*item{{cols: sh.cols}}
		w.sortClause(s.SortClause, osc, sh)
		w.expr(s.LimitCount, osc, nil)
		w.expr(s.LimitOffset, osc, nil)
		return sh
	}
	for _, f := range s.FromClause {
		w.fromItem(f, sc)
	}
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

// values analyzes a VALUES list: column i's lineage is every row's i-th
// expression.
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
		if cr := rt.Val.GetColumnRef(); cr != nil && len(cr.Fields) > 0 {
			if _, ok := cr.Fields[len(cr.Fields)-1].Node.(*pg.Node_AStar); ok {
				parts := names(cr.Fields[:len(cr.Fields)-1])
				cols, open := w.starCols(parts, sc)
				sh.cols = append(sh.cols, cols...)
				sh.open = sh.open || open
				continue
			}
		}
		oc := outCol{name: rt.Name}
		if oc.name == "" {
			oc.name = colName(rt.Val)
		}
		w.exprTarget(rt.Val, sc, &oc.lin)
		sh.cols = append(sh.cols, oc)
	}
	return sh
}

// colName is the name Postgres gives an unnamed output column
// (FigureColname), for the common cases.
func colName(n *pg.Node) string {
	if n == nil {
		return "?column?"
	}
	switch x := n.Node.(type) {
	case *pg.Node_ColumnRef:
		f := x.ColumnRef.Fields
		if len(f) > 0 {
			if s, ok := strVal(f[len(f)-1]); ok {
				return s
			}
		}
	case *pg.Node_AIndirection:
		ind := x.AIndirection.Indirection
		for i := len(ind) - 1; i >= 0; i-- {
			if s, ok := strVal(ind[i]); ok {
				return s
			}
		}
		return colName(x.AIndirection.Arg)
	case *pg.Node_FuncCall:
		f := x.FuncCall.Funcname
		if len(f) > 0 {
			if s, ok := strVal(f[len(f)-1]); ok {
				return s
			}
		}
	case *pg.Node_TypeCast:
		if _, ok := x.TypeCast.Arg.GetNode().(*pg.Node_AConst); !ok {
			return colName(x.TypeCast.Arg)
		}
		if tn := x.TypeCast.TypeName; tn != nil && len(tn.Names) > 0 {
			if s, ok := strVal(tn.Names[len(tn.Names)-1]); ok {
				return s
			}
		}
	case *pg.Node_CollateClause:
		return colName(x.CollateClause.Arg)
	case *pg.Node_CaseExpr:
		return "case"
	case *pg.Node_SubLink:
		switch x.SubLink.SubLinkType {
		case pg.SubLinkType_EXISTS_SUBLINK:
			return "exists"
		case pg.SubLinkType_ARRAY_SUBLINK:
			return "array"
		case pg.SubLinkType_EXPR_SUBLINK:
			if sel := x.SubLink.Subselect.GetSelectStmt(); sel != nil && len(sel.TargetList) == 1 {
				if rt := sel.TargetList[0].GetResTarget(); rt != nil {
					if rt.Name != "" {
						return rt.Name
					}
					return colName(rt.Val)
				}
			}
		}
	case *pg.Node_AArrayExpr:
		return "array"
	case *pg.Node_RowExpr:
		return "row"
	case *pg.Node_CoalesceExpr:
		return "coalesce"
	case *pg.Node_MinMaxExpr:
		if x.MinMaxExpr.Op == pg.MinMaxOp_IS_GREATEST {
			return "greatest"
		}
		return "least"
	case *pg.Node_SqlvalueFunction:
		return sqlValueName(x.SqlvalueFunction.Op)
	case *pg.Node_XmlExpr:
		return "xml"
	}
	return "?column?"
}

func sqlValueName(op pg.SQLValueFunctionOp) string {
	switch op {
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_DATE:
		return "current_date"
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_TIME, pg.SQLValueFunctionOp_SVFOP_CURRENT_TIME_N:
		return "current_time"
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP, pg.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP_N:
		return "current_timestamp"
	case pg.SQLValueFunctionOp_SVFOP_LOCALTIME, pg.SQLValueFunctionOp_SVFOP_LOCALTIME_N:
		return "localtime"
	case pg.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP, pg.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP_N:
		return "localtimestamp"
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_ROLE:
		return "current_role"
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_USER:
		return "current_user"
	case pg.SQLValueFunctionOp_SVFOP_USER:
		return "user"
	case pg.SQLValueFunctionOp_SVFOP_SESSION_USER:
		return "session_user"
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_CATALOG:
		return "current_catalog"
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_SCHEMA:
		return "current_schema"
	}
	return "?column?"
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

// orderExpr analyzes one ORDER BY (or DISTINCT ON) expression: a position
// or an output column name refers to the select list, anything else is an
// expression over the FROM items.
func (w *walker) orderExpr(n *pg.Node, sc *scope, sh shape) {
	if i, ok := intConst(n); ok {
		if i >= 1 && i <= len(sh.cols) {
			w.read(nil, sh.cols[i-1].lin)
		}
		return
	}
	if name, ok := singleName(n); ok {
		found := false
		for _, c := range sh.cols {
			if c.name == name {
				w.read(nil, c.lin)
				found = true
			}
		}
		if found {
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
		w.orderExpr(sb.Node, sc, sh)
	}
}

// groupClause analyzes GROUP BY: a position refers to the select list; a
// bare name to an input column first, then to an output column.
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
			if i >= 1 && i <= len(sh.cols) {
				w.read(nil, sh.cols[i-1].lin)
			}
			continue
		}
		if name, ok := singleName(n); ok {
			if _, _, found := lookupColumn(sc, name); !found {
				matched := false
				for _, c := range sh.cols {
					if c.name == name {
						w.read(nil, c.lin)
						matched = true
					}
				}
				if matched {
					continue
				}
			}
		}
		w.expr(n, sc, nil)
	}
}

// windowDef reports the columns a window partitions and orders by: they
// decide the values of window functions, so they count as read.
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
			for _, it := range sc.items {
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
			if it := findItem(sc, rv.Relname); it != nil && it.rel != nil && rv.Schemaname == "" {
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

// fromItem analyzes one FROM entry, adding its items to sc, and returns
// the items it added at its top (for JOIN ... USING/NATURAL).
func (w *walker) fromItem(n *pg.Node, sc *scope) []*item {
	if n == nil || n.Node == nil {
		return nil
	}
	if !w.enter() {
		return nil
	}
	defer w.leave()
	switch x := n.Node.(type) {
	case *pg.Node_RangeVar:
		return []*item{w.rangeVar(x.RangeVar, sc, sqlpolicy.Read, true)}
	case *pg.Node_JoinExpr:
		return w.join(x.JoinExpr, sc)
	case *pg.Node_RangeSubselect:
		rs := x.RangeSubselect
		// The subquery sees the items before it (LATERAL; without LATERAL
		// Postgres refuses such references, so allowing them only ever
		// over-reports).
		sh := w.query(rs.Subquery, sc)
		w.derived(sh)
		it := &item{cols: renameCols(sh.cols, rs.Alias), open: sh.open}
		if rs.Alias != nil {
			it.name = rs.Alias.Aliasname
		}
		sc.items = append(sc.items, it)
		return []*item{it}
	case *pg.Node_RangeFunction:
		return []*item{w.rangeFunction(x.RangeFunction, sc)}
	case *pg.Node_RangeTableSample:
		rts := x.RangeTableSample
		its := w.fromItem(rts.Relation, sc)
		for _, a := range rts.Args {
			w.expr(a, sc, nil)
		}
		w.expr(rts.Repeatable, sc, nil)
		return its
	case *pg.Node_RangeTableFunc:
		return []*item{w.xmlTable(x.RangeTableFunc, sc)}
	}
	w.unsupported("FROM entry of kind %s", nodeName(n.Node))
	it := &item{unknown: true}
	sc.items = append(sc.items, it)
	return []*item{it}
}

// join analyzes a JOIN: both sides, USING/NATURAL columns (read on both
// sides) and the ON condition.
func (w *walker) join(j *pg.JoinExpr, sc *scope) []*item {
	left := w.fromItem(j.Larg, sc)
	right := w.fromItem(j.Rarg, sc)
	var using []string
	if j.IsNatural {
		if anyOpen(left) || anyOpen(right) {
			// The common columns are unknown: count every column of both
			// sides as compared.
			for _, it := range left {
				w.readItem(nil, it)
			}
			for _, it := range right {
				w.readItem(nil, it)
			}
		}
		using = commonNames(left, right)
	} else {
		using = names(j.UsingClause)
	}
	var usingCols []outCol
	for _, u := range using {
		var lin []sqlpolicy.ColumnRef
		found := 0
		for _, side := range [2][]*item{left, right} {
			hit := false
			for _, it := range side {
				for i := range it.cols {
					if it.cols[i].name == u {
						lin = append(lin[:len(lin):len(lin)], it.cols[i].lin...)
						hit = true
					}
				}
			}
			if hit || anyOpen(side) {
				found++
			}
		}
		if found < 2 {
			w.unknownColumn(u)
		}
		w.read(nil, lin)
		usingCols = append(usingCols, outCol{name: u, lin: lin})
	}
	w.expr(j.Quals, sc, nil)
	all := make([]*item, 0, len(left)+len(right))
	all = append(all, left...)
	all = append(all, right...)
	if j.JoinUsingAlias != nil {
		sc.items = append(sc.items, &item{name: j.JoinUsingAlias.Aliasname, cols: usingCols, hiddenByJoin: true})
	}
	if j.Alias == nil {
		return all
	}
	it := &item{name: j.Alias.Aliasname}
	for _, x := range all {
		if !x.hiddenByJoin {
			it.cols = append(it.cols, x.cols...)
			it.open = it.open || x.open || x.unknown
		}
		x.hiddenByJoin = true
	}
	it.cols = renameCols(it.cols, j.Alias)
	sc.items = append(sc.items, it)
	return []*item{it}
}

func anyOpen(its []*item) bool {
	for _, it := range its {
		if it.open || it.unknown {
			return true
		}
	}
	return false
}

// commonNames lists the column names both sides of a NATURAL join have.
func commonNames(left, right []*item) []string {
	var out []string
	for _, l := range left {
		for _, c := range l.cols {
			if contains(out, c.name) {
				continue
			}
			for _, r := range right {
				if hasCol(r, c.name) {
					out = append(out, c.name)
					break
				}
			}
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// scalarFromFuncs are built-in functions returning a base type (no OUT
// parameters): in FROM, their one column is named after the alias, or the
// function when there is none. unnest counts only with one argument.
var scalarFromFuncs = map[string]bool{
	"generate_series": true, "generate_subscripts": true, "unnest": true, "regexp_split_to_table": true,
	"string_to_table": true, "json_object_keys": true, "jsonb_object_keys": true, "jsonb_path_query": true,
	"regexp_matches": true, "pg_listening_channels": true, "lower": true, "upper": true, "now": true,
	"current_date": true, "random": true, "length": true, "abs": true, "coalesce": true,
}

// rangeFunction analyzes a function in FROM. Its arguments are reported
// (the function's output depends on them); its output columns carry no
// lineage of their own. Unless the analyzer knows the function's columns
// (a column definition list, or a built-in returning a base type), the
// item is open.
func (w *walker) rangeFunction(rf *pg.RangeFunction, sc *scope) *item {
	it := &item{open: true}
	var fname string
	var cols []string
	defs := false
	scalar := len(rf.Functions) == 1
	for _, f := range rf.Functions {
		l := f.GetList()
		if l == nil || len(l.Items) == 0 {
			w.unsupported("FROM function of kind %s", nodeName(f.Node))
			scalar = false
			continue
		}
		w.expr(l.Items[0], sc, nil)
		if fname == "" {
			fname = colName(l.Items[0])
		}
		if fc := l.Items[0].GetFuncCall(); fc == nil || !scalarFromFuncs[fname] || (fname == "unnest" && len(fc.Args) != 1) {
			scalar = false
		} else if f := w.resolveFunc(firstSchema(fc.Funcname), fname); f == nil || f.Schema != "pg_catalog" {
			scalar = false
		}
		if len(l.Items) > 1 {
			if cdl := l.Items[1].GetList(); cdl != nil {
				for _, cd := range cdl.Items {
					if c := cd.GetColumnDef(); c != nil {
						cols = append(cols, c.Colname)
						defs = true
					}
				}
			}
		}
	}
	for _, cd := range rf.Coldeflist {
		if c := cd.GetColumnDef(); c != nil {
			cols = append(cols, c.Colname)
			defs = true
		}
	}
	it.name = fname
	var aliasCols []string
	if rf.Alias != nil {
		it.name = rf.Alias.Aliasname
		aliasCols = names(rf.Alias.Colnames)
	}
	switch {
	case defs:
		// A column definition list names every column of a function
		// returning record.
		it.open = false
	case scalar:
		it.open = false
		cols = []string{it.name}
	}
	if rf.Ordinality {
		cols = append(cols, "ordinality")
	}
	// Alias column names rename the first columns.
	for i, n := range aliasCols {
		if i < len(cols) {
			cols[i] = n
		} else {
			cols = append(cols, n)
		}
	}
	for _, c := range cols {
		it.cols = append(it.cols, outCol{name: c})
	}
	sc.items = append(sc.items, it)
	return it
}

func firstSchema(ns []*pg.Node) string {
	schema, _, _ := funcName(ns)
	return schema
}

// xmlTable analyzes XMLTABLE(...) in FROM.
func (w *walker) xmlTable(t *pg.RangeTableFunc, sc *scope) *item {
	w.expr(t.Docexpr, sc, nil)
	w.expr(t.Rowexpr, sc, nil)
	for _, ns := range t.Namespaces {
		w.expr(ns, sc, nil)
	}
	it := &item{name: "xmltable"}
	if t.Alias != nil {
		it.name = t.Alias.Aliasname
	}
	for _, c := range t.Columns {
		col := c.GetRangeTableFuncCol()
		if col == nil {
			w.unsupported("XMLTABLE column of kind %s", nodeName(c.Node))
			continue
		}
		w.expr(col.Colexpr, sc, nil)
		w.expr(col.Coldefexpr, sc, nil)
		it.cols = append(it.cols, outCol{name: col.Colname})
	}
	it.cols = renameCols(it.cols, t.Alias)
	sc.items = append(sc.items, it)
	return it
}
