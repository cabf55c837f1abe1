package pganalyze

import (
	"slices"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// fromClause adds the items of a FROM list to sc the way
// transformFromClause does: while the list is analyzed, the items of
// earlier entries are visible only to LATERAL subqueries and to
// functions; afterwards every item is.
func (w *walker) fromClause(list []*pg.Node, sc *scope) {
	for _, n := range list {
		_, ns := w.fromItem(n, sc)
		setLateral(ns, true, true)
		sc.ns = append(sc.ns, ns...)
	}
	setLateral(sc.ns, false, true)
}

// fromItem analyzes one FROM entry (transformFromClauseItem). It returns
// the item standing for the entry as a whole (top) and the items it adds
// to the namespace (ns), without adding them.
func (w *walker) fromItem(n *pg.Node, sc *scope) (top *item, ns []*item) {
	if n == nil || n.Node == nil {
		it := &item{unknown: true, cols: []outCol{{kind: colRun}}}
		return it, nil
	}
	if !w.enter() {
		it := &item{unknown: true, cols: []outCol{{kind: colRun}}}
		return it, nil
	}
	defer w.leave()
	switch x := n.Node.(type) {
	case *pg.Node_RangeVar:
		it := w.rangeVar(x.RangeVar, sc, sqlpolicy.Read, true)
		return it, []*item{it}
	case *pg.Node_JoinExpr:
		return w.join(x.JoinExpr, sc)
	case *pg.Node_RangeSubselect:
		it := w.subselect(x.RangeSubselect, sc)
		return it, []*item{it}
	case *pg.Node_RangeFunction:
		it := w.rangeFunction(x.RangeFunction, sc)
		return it, []*item{it}
	case *pg.Node_RangeTableSample:
		rts := x.RangeTableSample
		top, ns = w.fromItem(rts.Relation, sc)
		// The sampling arguments see neither the sampled relation nor the
		// earlier items of the FROM list (no LATERAL here).
		for _, a := range rts.Args {
			w.expr(a, sc, nil)
		}
		w.expr(rts.Repeatable, sc, nil)
		return top, ns
	case *pg.Node_RangeTableFunc:
		it := w.xmlTable(x.RangeTableFunc, sc)
		return it, []*item{it}
	}
	w.unsupported("FROM entry of kind %s", nodeName(n.Node))
	it := &item{unknown: true, cols: []outCol{{kind: colRun}}, relVisible: true, colsVisible: true, lateralOK: true}
	return it, []*item{it}
}

// subselect analyzes a subquery (or VALUES list) in FROM. Without
// LATERAL it cannot see the earlier items of its FROM list: names there
// resolve in outer levels (transformRangeSubselect).
func (w *walker) subselect(rs *pg.RangeSubselect, sc *scope) *item {
	if rs.Alias == nil {
		// PostgreSQL 15 requires the alias (16 made it optional).
		w.unsupported("subquery in FROM without an alias is not supported by PostgreSQL 15")
	}
	saved := sc.lateral
	sc.lateral = rs.Lateral
	sh := w.query(rs.Subquery, sc)
	sc.lateral = saved
	w.derived(sh)
	it := newItem("", sh.cols)
	if rs.Alias != nil {
		it.name = rs.Alias.Aliasname
		it.cols = aliasCols(sh.cols, names(rs.Alias.Colnames))
	}
	return it
}

// join analyzes a JOIN (the JoinExpr case of transformFromClauseItem):
// the right side sees the left side's items only through LATERAL; ON sees
// only the two sides (and outer levels); the join's columns are the
// merged USING/NATURAL columns, then the rest of the left side's, then the
// right side's; an alias hides the items inside.
func (w *walker) join(j *pg.JoinExpr, sc *scope) (*item, []*item) {
	ltop, lns := w.fromItem(j.Larg, sc)
	lateralOK := j.Jointype == pg.JoinType_JOIN_INNER || j.Jointype == pg.JoinType_JOIN_LEFT
	setLateral(lns, true, lateralOK)
	// Pushed in place: only sc holds sc.ns, and it gets saved back.
	saved := sc.ns
	sc.ns = append(sc.ns, lns...)
	rtop, rns := w.fromItem(j.Rarg, sc)
	sc.ns = saved

	my := make([]*item, 0, len(lns)+len(rns)+2)
	my = append(my, lns...)
	my = append(my, rns...)

	var using []string
	switch {
	case j.IsNatural && (!exact(ltop.cols) || !exact(rtop.cols)):
		// The common columns are unknown: count every column of both
		// sides as compared, and the join's columns as unknown.
		all := unionLin(append(append([]outCol(nil), ltop.cols...), rtop.cols...))
		w.read(nil, all)
		w.untypedOp("", "=")
		return w.joinItem(j, []outCol{{kind: colRun, lin: all}}, 0, my)
	case j.IsNatural:
		for _, l := range ltop.cols {
			for _, r := range rtop.cols {
				if l.name == r.name {
					using = append(using, l.name)
					break
				}
			}
		}
	default:
		using = names(j.UsingClause)
	}

	cols := w.joinCols(len(ltop.cols) + len(rtop.cols))
	var lUsed, rUsed []int
	for _, u := range using {
		li, lmaybe := colIndex(ltop.cols, u)
		ri, rmaybe := colIndex(rtop.cols, u)
		if (li < 0 && !lmaybe) || (ri < 0 && !rmaybe) {
			w.unknownColumn(u)
		}
		w.joinEquality(ltop, rtop, li, ri)
		// Both sides' columns are compared (and read) by the join; the
		// merged column is either of them.
		lin := sideLin(ltop.cols, li, nil)
		lin = sideLin(rtop.cols, ri, lin)
		w.read(nil, lin)
		cols = append(cols, outCol{name: u, lin: lin})
		lUsed = append(lUsed, li)
		rUsed = append(rUsed, ri)
	}
	if len(using) == 0 && j.Quals != nil {
		// The ON condition sees the two sides only (transformJoinOnClause).
		setLateral(my, false, true)
		sc.ns = my
		w.expr(j.Quals, sc, nil)
		sc.ns = saved
	}
	cols = appendRemaining(cols, ltop.cols, lUsed)
	cols = appendRemaining(cols, rtop.cols, rUsed)
	return w.joinItem(j, cols, len(using), my)
}

// joinCols returns an empty slice of capacity n for the columns of a
// join. In a statement they are carved from its scratch memory: a join's
// columns are only read during the walk (what the statement reports is
// copied out of them), and a three-table join's two arrays of them were
// a quarter of the bytes a novel statement allocated. The capacity is
// exactly n, so an append past it reallocates instead of overwriting.
func (w *walker) joinCols(n int) []outCol {
	if w.sc == nil {
		return make([]outCol, 0, n)
	}
	buf := w.sc.outCols
	if cap(buf)-len(buf) < n {
		// The full array stays with the joins that use it.
		buf = make([]outCol, 0, max(n, 2*cap(buf), 32))
	}
	w.sc.outCols = buf[:len(buf)+n]
	return buf[len(buf) : len(buf) : len(buf)+n]
}

// joinItem builds the item of a join from its columns and the items of
// its two sides (my), and returns the namespace the join exposes.
func (w *walker) joinItem(j *pg.JoinExpr, cols []outCol, nUsing int, my []*item) (*item, []*item) {
	jit := &item{name: "unnamed_join", colsVisible: true, lateralOK: true}
	if j.JoinUsingAlias != nil && nUsing <= len(cols) {
		// JOIN ... USING (...) AS x names the merged columns only, under
		// their USING names.
		ua := newItem(j.JoinUsingAlias.Aliasname, cols[:nUsing:nUsing])
		my = append(my, ua)
	}
	if j.Alias != nil {
		jit.name, jit.relVisible = j.Alias.Aliasname, true
		jit.cols = aliasCols(cols, names(j.Alias.Colnames))
		return jit, []*item{jit}
	}
	jit.cols = cols
	for _, it := range my {
		it.colsVisible = false
	}
	return jit, append(my, jit)
}

// colIndex finds the named column name in cols: its index (-1 when none
// is), and whether a run may hold it.
func colIndex(cols []outCol, name string) (int, bool) {
	idx, maybe := -1, false
	for i := range cols {
		switch {
		case cols[i].kind == colRun:
			maybe = true
		case cols[i].kind == colNamed && cols[i].name == name && idx < 0:
			idx = i
		}
	}
	return idx, maybe
}

// sideLin appends the lineage of column i of cols (or, when i < 0, of
// every run that may hold the column) to lin.
func sideLin(cols []outCol, i int, lin []sqlpolicy.ColumnRef) []sqlpolicy.ColumnRef {
	if i >= 0 {
		return append(lin[:len(lin):len(lin)], cols[i].lin...)
	}
	for k := range cols {
		if cols[k].kind == colRun {
			lin = append(lin[:len(lin):len(lin)], cols[k].lin...)
		}
	}
	return lin
}

// appendRemaining appends the columns of cols not merged by USING
// (extractRemainingColumns).
func appendRemaining(out, cols []outCol, used []int) []outCol {
	for i := range cols {
		merged := false
		for _, u := range used {
			if u == i {
				merged = true
				break
			}
		}
		if !merged {
			out = append(out, cols[i])
		}
	}
	return out
}

// fromFuncCols are built-in functions whose columns in FROM the analyzer
// knows: nil for a function returning a base type (one column, named
// after the alias or the function), else the names of its OUT
// parameters.
var fromFuncCols = map[string][]string{
	"generate_series": nil, "generate_subscripts": nil, "regexp_split_to_table": nil,
	"string_to_table": nil, "json_object_keys": nil, "jsonb_object_keys": nil, "jsonb_path_query": nil,
	"json_array_elements": nil, "json_array_elements_text": nil, "jsonb_array_elements": nil,
	"jsonb_array_elements_text": nil, "regexp_matches": nil, "pg_listening_channels": nil,
	"lower": nil, "upper": nil, "now": nil, "random": nil, "length": nil, "abs": nil, "unnest": nil,
	"json_each": {"key", "value"}, "json_each_text": {"key", "value"},
	"jsonb_each": {"key", "value"}, "jsonb_each_text": {"key", "value"},
	"pg_options_to_table": {"option_name", "option_value"},
	"pg_get_keywords":     {"word", "catcode", "barelabel", "catdesc", "baredesc"},
}

// rangeFunction analyzes a function (or ROWS FROM list) in FROM. Its
// arguments see the earlier items of the FROM list whether or not it says
// LATERAL (transformRangeFunction); they are reported (the output depends
// on them), and the output columns carry no lineage of their own. The
// columns are those of each function in turn (a column definition list,
// a known built-in's, or a run the analyzer cannot name), then
// ordinality, renamed by the alias list.
func (w *walker) rangeFunction(rf *pg.RangeFunction, sc *scope) *item {
	type fn struct {
		name string // FigureColname of the call
		cols []outCol
	}
	var fns []fn
	saved := sc.lateral
	sc.lateral = true
	for _, f := range rf.Functions {
		l := f.GetList()
		if l == nil || len(l.Items) == 0 {
			w.unsupported("FROM function of kind %s", nodeName(f.Node))
			fns = append(fns, fn{cols: []outCol{{kind: colRun}}})
			continue
		}
		call := l.Items[0]
		var coldefs []*pg.Node
		if len(l.Items) > 1 {
			if cdl := l.Items[1].GetList(); cdl != nil {
				coldefs = cdl.Items
			}
		}
		fc := call.GetFuncCall()
		if fc != nil && len(fc.Funcname) == 1 && len(fc.Args) > 1 && len(coldefs) == 0 && len(rf.Coldeflist) == 0 &&
			fc.Over == nil && fc.AggFilter == nil && len(fc.AggOrder) == 0 && !fc.AggStar && !fc.AggDistinct && !fc.FuncVariadic {
			if name, _ := strVal(fc.Funcname[0]); name == "unnest" {
				// unnest(a, b) in FROM is ROWS FROM (unnest(a), unnest(b))
				// with pg_catalog.unnest; each array's elements may be rows
				// unless it is a literal array.
				w.reportFunc("pg_catalog", "unnest", w.cat.Function("pg_catalog", "unnest"), fc, sc)
				for _, a := range fc.Args {
					w.expr(a, sc, nil)
					col := outCol{name: "unnest"}
					if !constArray(a) {
						col = outCol{kind: colRun}
					}
					fns = append(fns, fn{name: "unnest", cols: []outCol{col}})
				}
				continue
			}
		}
		w.expr(call, sc, nil)
		name, _ := w.figureColname(call)
		f := fn{name: name}
		if len(coldefs) == 0 && len(rf.Functions) == 1 {
			coldefs = rf.Coldeflist
		}
		switch {
		case len(coldefs) > 0:
			// A column definition list names every column of a function
			// returning record.
			for _, cd := range coldefs {
				if c := cd.GetColumnDef(); c != nil {
					f.cols = append(f.cols, outCol{name: c.Colname})
				}
			}
		case w.knownFromFunc(fc):
			if outs := fromFuncCols[name]; outs != nil {
				for _, o := range outs {
					f.cols = append(f.cols, outCol{name: o})
				}
			} else {
				// chooseScalarFunctionAlias: the alias when it is the
				// only function, else the function's name.
				col := name
				if len(rf.Functions) == 1 && rf.Alias != nil {
					col = rf.Alias.Aliasname
				}
				f.cols = []outCol{{name: col}}
			}
		default:
			f.cols = []outCol{{kind: colRun}}
		}
		fns = append(fns, f)
	}
	sc.lateral = saved
	it := newItem("", nil)
	if len(fns) > 0 {
		it.name = fns[0].name
	}
	for _, f := range fns {
		it.cols = append(it.cols, f.cols...)
	}
	if rf.Ordinality {
		it.cols = append(it.cols, outCol{name: "ordinality"})
	}
	if rf.Alias != nil {
		it.name = rf.Alias.Aliasname
		it.cols = aliasCols(it.cols, names(rf.Alias.Colnames))
	}
	return it
}

// knownFromFunc reports whether fc calls a built-in function whose
// columns in FROM fromFuncCols lists. unnest counts only over a literal
// array of constants, whose elements are of a base type: over anything
// else the elements may be rows, which have columns of their own.
func (w *walker) knownFromFunc(fc *pg.FuncCall) bool {
	if fc == nil || fc.FuncVariadic {
		return false
	}
	schema, name, ok := funcName(fc.Funcname)
	if !ok {
		return false
	}
	switch schema {
	case "":
		// Any function of the name outside pg_catalog may be the one
		// called (funcCandidates), with columns of its own.
		cands := w.funcCandidates(name)
		if len(cands) == 0 || slices.ContainsFunc(cands, func(f *catalogFunc) bool { return f.Schema != "pg_catalog" }) {
			return false
		}
	case "pg_catalog":
	default:
		return false
	}
	if name == "unnest" {
		return len(fc.Args) == 1 && constArray(fc.Args[0])
	}
	_, known := fromFuncCols[name]
	return known
}

// constArray reports whether n is an array of constants of built-in
// types: ARRAY[1, 2], ARRAY['a'::text], '{1,2}'::int[].
func constArray(n *pg.Node) bool {
	switch x := n.GetNode().(type) {
	case *pg.Node_AArrayExpr:
		for _, e := range x.AArrayExpr.Elements {
			if e.GetAConst() == nil && !constOfBuiltinType(e) {
				return false
			}
		}
		return true
	case *pg.Node_TypeCast:
		return constOfBuiltinType(n) && len(x.TypeCast.TypeName.GetArrayBounds()) > 0
	}
	return false
}

// constOfBuiltinType reports whether n is a constant cast to a type the
// grammar names in pg_catalog (int, numeric, varchar ... become
// pg_catalog.int4 and so on).
func constOfBuiltinType(n *pg.Node) bool {
	tc := n.GetTypeCast()
	if tc == nil || tc.Arg.GetAConst() == nil || tc.TypeName == nil {
		return false
	}
	ns := names(tc.TypeName.Names)
	return len(ns) == 2 && ns[0] == "pg_catalog"
}

// xmlTable analyzes XMLTABLE(...) in FROM; like a function, its
// expressions see the earlier items of the FROM list.
func (w *walker) xmlTable(t *pg.RangeTableFunc, sc *scope) *item {
	saved := sc.lateral
	sc.lateral = true
	w.expr(t.Docexpr, sc, nil)
	w.expr(t.Rowexpr, sc, nil)
	for _, ns := range t.Namespaces {
		w.expr(ns, sc, nil)
	}
	it := newItem("xmltable", nil)
	for _, c := range t.Columns {
		col := c.GetRangeTableFuncCol()
		if col == nil {
			w.unsupported("XMLTABLE column of kind %s", nodeName(c.Node))
			it.cols = append(it.cols, outCol{kind: colRun})
			continue
		}
		w.expr(col.Colexpr, sc, nil)
		w.expr(col.Coldefexpr, sc, nil)
		it.cols = append(it.cols, outCol{name: col.Colname})
	}
	sc.lateral = saved
	if t.Alias != nil {
		it.name = t.Alias.Aliasname
		it.cols = aliasCols(it.cols, names(t.Alias.Colnames))
	}
	return it
}
