package myanalyze

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// query analyzes a SELECT, a set operation or TABLE t whose enclosing
// query level is parent, and returns its output columns. When view is set
// the output columns' reads are only lineage (a view definition's select
// list); otherwise they are reported too.
func (w *walker) query(n ast.ResultSetNode, parent *scope, ctes *cteEnv) []outCol {
	return w.queryAs(n, parent, ctes, false)
}

func (w *walker) queryAs(n ast.ResultSetNode, parent *scope, ctes *cteEnv, view bool) []outCol {
	if !w.enter() {
		return nil
	}
	defer w.leave()
	// Tables of a nested query are never UPDATE/DELETE targets.
	saved := w.deferTables
	w.deferTables = false
	defer func() { w.deferTables = saved }()
	switch x := n.(type) {
	case *ast.SelectStmt:
		return w.selectStmt(x, parent, ctes, view)
	case *ast.SetOprStmt:
		return w.setOpr(x, parent, ctes, view)
	case *ast.SubqueryExpr:
		return w.queryAs(x.Query, parent, ctes, view)
	}
	w.unsupported("query of kind %T", n)
	return nil
}

// with analyzes a WITH clause into a new CTE environment. Like derived
// tables, a WITH query sees no enclosing query level (parent nil).
//
// A table name in the body of a WITH query is looked up in its own WITH
// clause only, unless that clause is attached directly to the body of
// another WITH query, whose clause is then searched too, and so on
// outward (MariaDB's st_select_lex::find_table_def_in_with_clauses stops
// at the first query that is not a WITH query's body). So in
//
//	WITH customers AS (SELECT 'x' AS ssn)
//	SELECT * FROM (WITH a AS (SELECT ssn FROM customers) SELECT * FROM a) d
//
// the inner customers is the table, not the outer WITH query: the body
// of a WITH query of a nested clause is analyzed in an environment that
// ends with its own clause.
func (w *walker) with(wc *ast.WithClause, env *cteEnv) *cteEnv {
	if wc == nil {
		return env
	}
	var parent *scope
	out := &cteEnv{parent: env}
	bodyParent := env
	if !w.bodyWiths[wc] {
		bodyParent = nil
	}
	// body is the environment the body of the WITH query analyzed next
	// resolves table names in: the WITH queries of this clause it may
	// name (those before it; with RECURSIVE also itself), then the
	// enclosing clauses only when this clause belongs to a WITH query's
	// body.
	body := func() *cteEnv { return &cteEnv{list: slices.Clip(out.list), parent: bodyParent} }
	if wc.IsRecursive {
		// MariaDB lets every query of a WITH RECURSIVE list name every
		// other (mutual recursion); keyhole resolves names in order, so a
		// forward reference would resolve to a table of the same name.
		for i, c := range wc.CTEs {
			refs := &tableNames{}
			c.Query.Accept(refs)
			for _, later := range wc.CTEs[i+1:] {
				if containsFold(refs.names, later.Name.O) {
					w.unsupported("WITH RECURSIVE query %s refers to %s, defined after it", c.Name.O, later.Name.O)
				}
			}
		}
	}
	for _, c := range wc.CTEs {
		entry := &cte{name: c.Name.O}
		w.markBodyWith(c.Query)
		// A WITH name is visible in the CTEs after it, and (WITH
		// RECURSIVE) in its own definition.
		if !wc.IsRecursive {
			entry.cols = renamed(w.query(c.Query, parent, body()), c.ColNameList, w, c.Name.O)
			out.list = append(out.list, entry)
			continue
		}
		// A recursive CTE reads its own output: start from the first
		// (non-recursive) term and re-analyze until the lineage of every
		// column stops growing.
		out.list = append(out.list, entry)
		env := body()
		entry.pending = true
		if so, ok := c.Query.Query.(*ast.SetOprStmt); ok && so.SelectList != nil && len(so.SelectList.Selects) > 0 {
			if first, ok := so.SelectList.Selects[0].(ast.ResultSetNode); ok {
				entry.cols = renamed(w.query(first, parent, env), c.ColNameList, w, c.Name.O)
			}
		} else {
			entry.cols = renamed(w.query(c.Query, parent, env), c.ColNameList, w, c.Name.O)
		}
		entry.pending = false
		stable := false
		for iter := 0; iter < 8 && !stable; iter++ {
			cols := renamed(w.query(c.Query, parent, env), c.ColNameList, w, c.Name.O)
			merged, grew := mergeCols(entry.cols, cols)
			entry.cols = merged
			stable = !grew
		}
		if !stable {
			var all []sqlpolicy.ColumnRef
			for _, col := range entry.cols {
				all = append(all, col.lin...)
			}
			for i := range entry.cols {
				entry.cols[i].lin = all
			}
		}
	}
	return out
}

// markBodyWith records the WITH clause attached directly to the body of a
// WITH query (q), whose own WITH queries may name the enclosing clauses'.
// A clause anywhere else (a derived table, a subquery, a parenthesized
// branch) is not recorded: its WITH queries see only their own clause,
// and a name only an enclosing clause defines is a table.
func (w *walker) markBodyWith(q *ast.SubqueryExpr) {
	if q == nil {
		return
	}
	var wc *ast.WithClause
	switch x := q.Query.(type) {
	case *ast.SelectStmt:
		wc = x.With
	case *ast.SetOprStmt:
		wc = x.With
	}
	if wc == nil {
		return
	}
	if w.bodyWiths == nil {
		w.bodyWiths = map[*ast.WithClause]bool{}
	}
	w.bodyWiths[wc] = true
}

// renamed applies a WITH or derived table column list: MariaDB requires
// exactly as many names as columns and renames them by position.
func renamed(cols []outCol, names []ast.CIStr, w *walker, what string) []outCol {
	if len(names) == 0 {
		return cols
	}
	if len(names) != len(cols) {
		w.unsupported("%s: column list of %d names for %d columns", what, len(names), len(cols))
	}
	out := make([]outCol, len(cols))
	copy(out, cols)
	for i := range out {
		if i < len(names) {
			out[i].name = names[i].O
		}
	}
	return out
}

// mergeCols merges two shapes position by position (set operation
// branches, recursive CTE iterations), reporting whether b added lineage.
func mergeCols(a, b []outCol) ([]outCol, bool) {
	out := make([]outCol, len(a))
	grew := false
	for i := range a {
		out[i].name = a[i].name
		lin := append([]sqlpolicy.ColumnRef(nil), a[i].lin...)
		if i < len(b) {
			for _, c := range b[i].lin {
				if !containsCol(lin, c) {
					lin = append(lin, c)
					grew = true
				}
			}
		}
		out[i].lin = lin
	}
	if len(b) > len(a) {
		out = append(out, b[len(a):]...)
		grew = true
	}
	return out, grew
}

func containsCol(lin []sqlpolicy.ColumnRef, c sqlpolicy.ColumnRef) bool {
	for _, d := range lin {
		if d == c {
			return true
		}
	}
	return false
}

// setOpr analyzes UNION / EXCEPT / INTERSECT.
func (w *walker) setOpr(s *ast.SetOprStmt, parent *scope, ctes *cteEnv, view bool) []outCol {
	ctes = w.with(s.With, ctes)
	if s.SelectList == nil {
		w.unsupported("empty set operation")
		return nil
	}
	cols, distinct := w.setList(s.SelectList, parent, ctes, view)
	if distinct {
		// UNION (distinct), EXCEPT and INTERSECT compare whole rows: the
		// result depends on every column.
		w.readCols(nil, cols)
	}
	w.setTail(s.OrderBy, s.Limit, cols, parent, ctes)
	return cols
}

func (w *walker) setList(l *ast.SetOprSelectList, parent *scope, ctes *cteEnv, view bool) ([]outCol, bool) {
	ctes = w.with(l.With, ctes)
	var cols []outCol
	distinct := false
	for i, n := range l.Selects {
		var part []outCol
		var op *ast.SetOprType
		switch x := n.(type) {
		case *ast.SelectStmt:
			part = w.queryAs(x, parent, ctes, view)
			op = x.AfterSetOperator
		case *ast.SetOprSelectList:
			var d bool
			part, d = w.setList(x, parent, ctes, view)
			distinct = distinct || d
			op = x.AfterSetOperator
		case *ast.SetOprStmt:
			part = w.queryAs(x, parent, ctes, view)
		default:
			w.unsupported("set operation branch of kind %T", n)
			continue
		}
		if i > 0 && op != nil && *op != ast.UnionAll {
			distinct = true
		}
		if i == 0 {
			cols = part
			continue
		}
		if len(part) != len(cols) {
			w.unsupported("set operation branches have %d and %d columns", len(cols), len(part))
		}
		cols, _ = mergeCols(cols, part)
	}
	w.setTail(l.OrderBy, l.Limit, cols, parent, ctes)
	return cols, distinct
}

// setTail analyzes the ORDER BY and LIMIT of a set operation: they see
// its output columns (and, through subqueries, the enclosing levels).
func (w *walker) setTail(ob *ast.OrderByClause, lim *ast.Limit, cols []outCol, parent *scope, ctes *cteEnv) {
	if ob == nil && lim == nil {
		return
	}
	sc := newScope(parent)
	sc.ctes = ctes
	sc.addRef(&ref{cols: cols})
	sc.aliases = cols
	if ob != nil {
		for _, by := range ob.Items {
			w.byItem(by, sc, cols, clauseOrder)
		}
	}
	w.limit(lim, sc)
}

func (w *walker) limit(l *ast.Limit, sc *scope) {
	if l == nil {
		return
	}
	w.expr(l.Count, sc, nil, clauseWhere)
	w.expr(l.Offset, sc, nil, clauseWhere)
}

// selectStmt analyzes one SELECT.
func (w *walker) selectStmt(s *ast.SelectStmt, parent *scope, ctes *cteEnv, view bool) []outCol {
	sc := newScope(parent)
	sc.inHaving = parent != nil && w.subClause == clauseHaving
	// Subqueries of this level set their own clause.
	savedClause := w.subClause
	w.subClause = clauseWhere
	defer func() { w.subClause = savedClause }()
	sc.ctes = w.with(s.With, ctes)
	if s.Kind != ast.SelectStmtKindSelect {
		// TABLE t and VALUES are MySQL 8 forms MariaDB 10.11 does not have
		// (its VALUES lists are not parsed by keyhole's parser either).
		w.unsupported("TABLE and VALUES statements are not modelled")
		return nil
	}
	if len(s.TableHints) > 0 {
		for _, h := range s.TableHints {
			switch {
			case strings.EqualFold(h.HintName.O, "set_var"):
				w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemSessionChange, Setting: "sql_mode",
					Detail: "SET_VAR optimizer hints change session settings for the statement"})
			case strings.EqualFold(h.HintName.O, "max_execution_time"):
				// MySQL runs the SELECT with this max_execution_time (ms);
				// MariaDB ignores optimizer hints.
				set := sqlpolicy.Setting{Name: "max_execution_time", Local: true}
				if n, ok := h.HintData.(uint64); ok {
					set.Value = strconv.FormatUint(n, 10)
				} else {
					set.Unknown = true
				}
				w.setting(set)
			}
		}
	}
	statsItems := w.statsItems
	if s.From != nil && s.From.TableRefs != nil {
		if r := w.fromRef(s.From.TableRefs, sc); r != nil {
			sc.addRef(r)
		}
	}
	if w.statsItems == statsItems+1 {
		if f, ok := w.statsNarrowing(s); ok {
			w.statsNarrowed = append(w.statsNarrowed, f)
		}
	}
	w.expr(s.Where, sc, nil, clauseWhere)
	cols := w.fields(s.Fields, sc, view)
	sc.aliases = cols
	if s.Distinct {
		// DISTINCT makes the row count depend on every output column.
		w.readCols(nil, cols)
	}
	if s.GroupBy != nil {
		for _, by := range s.GroupBy.Items {
			w.byItem(by, sc, cols, clauseGroup)
		}
	}
	if s.Having != nil {
		w.expr(s.Having.Expr, sc, nil, clauseHaving)
	}
	for i := range s.WindowSpecs {
		w.windowSpec(&s.WindowSpecs[i], sc)
	}
	if s.OrderBy != nil {
		for _, by := range s.OrderBy.Items {
			w.byItem(by, sc, cols, clauseOrder)
		}
	}
	w.limit(s.Limit, sc)
	if s.LockInfo != nil && s.LockInfo.LockType != ast.SelectLockNone {
		w.locking(s.LockInfo, sc)
	}
	if s.SelectIntoOpt != nil {
		switch s.SelectIntoOpt.Tp {
		case ast.SelectIntoVars:
			// INTO @var keeps values in the session, where only texts
			// decided by keyhole can read them.
		default:
			w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemFileAccess,
				Detail: "SELECT ... INTO OUTFILE/DUMPFILE writes a file on the database server"})
		}
	}
	return cols
}

// locking reports FOR UPDATE / LOCK IN SHARE MODE: row locks block other
// sessions.
func (w *walker) locking(li *ast.SelectLockInfo, sc *scope) {
	detail := "SELECT ... FOR UPDATE / LOCK IN SHARE MODE locks rows"
	any := false
	for _, it := range sc.leaves {
		if it.rel != nil {
			w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemLocking, Detail: detail, Rel: relOf(it.rel)})
			any = true
		}
	}
	if !any {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemLocking, Detail: detail})
	}
}

// fields analyzes a select list: `*`, `t.*` and `db.t.*` expand through
// the row types; every expression's reads are the lineage of its column.
func (w *walker) fields(fl *ast.FieldList, sc *scope, view bool) []outCol {
	if fl == nil {
		return nil
	}
	var cols []outCol
	for _, f := range fl.Fields {
		if f.WildCard != nil {
			ex := w.star(f.WildCard, sc)
			if !view {
				w.readCols(nil, ex)
			}
			cols = append(cols, ex...)
			continue
		}
		oc := outCol{name: f.AsName.O}
		if oc.name == "" {
			oc.name = exprName(f.Expr)
		}
		w.expr(f.Expr, sc, &oc.lin, clauseSelect)
		if !view {
			w.read(nil, oc.lin)
		}
		cols = append(cols, oc)
	}
	return cols
}

// exprName is the name MySQL gives an unaliased select-list column: the
// column name for a column reference, else the expression text (which no
// other name can match reliably, so it is left empty).
func exprName(e ast.ExprNode) string {
	if c, ok := e.(*ast.ColumnNameExpr); ok && c.Name != nil {
		return c.Name.Name.O
	}
	return ""
}

// star expands `*` (every top-level FROM entry's row type, in order) or
// `[db.]t.*` (that item's columns).
func (w *walker) star(wc *ast.WildCardField, sc *scope) []outCol {
	if wc.Table.O == "" {
		var cols []outCol
		for _, r := range sc.refs {
			cols = append(cols, r.cols...)
		}
		if len(sc.refs) == 0 {
			w.unsupported("* without a FROM clause")
		}
		return cols
	}
	var cols []outCol
	found := false
	for _, it := range sc.leaves {
		if matchItem(it, wc.Schema.O, wc.Table.O) {
			cols = append(cols, it.cols...)
			found = true
		}
	}
	if !found {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownTable, Rel: sqlpolicy.Rel{Schema: wc.Schema.O, Name: wc.Table.O},
			Detail: fmt.Sprintf("%s.* names no table of the FROM clause", wc.Table.O)})
	}
	return cols
}

// matchItem reports whether a qualifier [db.]t may name it: compared
// without letter case, which can only add candidates.
func matchItem(it *item, db, t string) bool {
	if db != "" {
		return it.table != "" && !it.aliased && strings.EqualFold(it.db, db) && strings.EqualFold(it.table, t)
	}
	return strings.EqualFold(it.alias, t)
}

// exactItem reports whether a qualifier [db.]t names it under the
// server's own comparison (find_field_in_table_ref: table_alias_charset):
// under lower_case_table_names=0 MariaDB compares aliases, table names
// and database names byte for byte, so `C.email` does not name an item
// aliased `c` and the search goes on to the enclosing query levels,
// where an item aliased `C` may be customers. With lower_case_table_names
// set (and always for information_schema) letter case does not matter.
func (w *walker) exactItem(it *item, db, t string) bool {
	fold := w.a.lowerNames
	if db != "" {
		fold = fold || isInfoSchema(db)
		return it.table != "" && !it.aliased && sameName(it.db, db, fold) && sameName(it.table, t, fold)
	}
	return sameName(it.alias, t, fold)
}

func sameName(a, b string, fold bool) bool {
	if fold {
		return strings.EqualFold(a, b)
	}
	return a == b
}

// byItem analyzes a GROUP BY or ORDER BY entry: a position refers to the
// select list; a bare name may be a select-list alias or a FROM column
// (MariaDB prefers the column in GROUP BY and the alias in ORDER BY): both
// are reported.
func (w *walker) byItem(by *ast.ByItem, sc *scope, cols []outCol, cl clause) {
	if by == nil {
		return
	}
	if pe, ok := by.Expr.(*ast.PositionExpr); ok {
		// Which column a position names depends on the number.
		w.st.LiteralSensitive = true
		if pe.P != nil {
			w.unsupported("parameterized ORDER BY position")
			return
		}
		if pe.N >= 1 && pe.N <= len(cols) {
			w.read(nil, cols[pe.N-1].lin)
			return
		}
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownColumn, Detail: fmt.Sprintf("position %d is not in the select list", pe.N)})
		return
	}
	w.expr(by.Expr, sc, nil, cl)
}

// windowSpec reports the columns a window partitions and orders by.
func (w *walker) windowSpec(ws *ast.WindowSpec, sc *scope) {
	if ws == nil {
		return
	}
	if ws.PartitionBy != nil {
		for _, by := range ws.PartitionBy.Items {
			w.expr(by.Expr, sc, nil, clauseWhere)
		}
	}
	if ws.OrderBy != nil {
		for _, by := range ws.OrderBy.Items {
			w.expr(by.Expr, sc, nil, clauseWhere)
		}
	}
	if ws.Frame != nil {
		w.expr(ws.Frame.Extent.Start.Expr, sc, nil, clauseWhere)
		w.expr(ws.Frame.Extent.End.Expr, sc, nil, clauseWhere)
	}
}

// fromRef analyzes one FROM tree node and returns it with its row type.
func (w *walker) fromRef(n ast.ResultSetNode, sc *scope) *ref {
	if n == nil {
		return nil
	}
	if !w.enter() {
		return nil
	}
	defer w.leave()
	switch x := n.(type) {
	case *ast.Join:
		return w.join(x, sc)
	case *ast.TableSource:
		return w.tableSource(x, sc)
	case *ast.TableName:
		it := w.resolveTable(x, sc, sqlpolicy.Read, true)
		if it == nil {
			return nil
		}
		return leafRef(it)
	}
	w.unsupported("FROM entry of kind %T", n)
	return nil
}

func (w *walker) tableSource(ts *ast.TableSource, sc *scope) *ref {
	if ts.Lateral {
		w.unsupported("LATERAL derived tables are not MariaDB syntax")
	}
	var it *item
	switch src := ts.Source.(type) {
	case *ast.TableName:
		it = w.resolveTable(src, sc, sqlpolicy.Read, true)
		if it == nil {
			return nil
		}
	case *ast.SelectStmt, *ast.SetOprStmt:
		// A derived table sees no enclosing query level in MariaDB (no
		// LATERAL): only the WITH names in effect.
		cols := w.query(src.(ast.ResultSetNode), nil, sc.ctes)
		it = &item{cols: renamed(cols, ts.ColumnNames, w, "derived table")}
		if ts.AsName.O == "" {
			w.unsupported("derived table without an alias")
		}
	case *ast.Join:
		// Parenthesized joins: ( t1 JOIN t2 ) — the parser keeps them as
		// a nested Join inside a TableSource.
		r := w.join(src, sc)
		if ts.AsName.O != "" {
			w.unsupported("alias on a parenthesized join")
		}
		return r
	default:
		w.unsupported("FROM entry of kind %T", ts.Source)
		return nil
	}
	if ts.AsName.O != "" {
		it.alias = ts.AsName.O
		it.aliased = true
	}
	if len(ts.ColumnNames) > 0 {
		if _, derived := ts.Source.(*ast.TableName); derived {
			w.unsupported("column aliases on a table reference")
		}
	}
	return leafRef(it)
}

// join analyzes a join: both operands, the USING / NATURAL columns
// (compared, so read on both sides) and the ON condition, which sees only
// the join's own operands and the enclosing query levels.
func (w *walker) join(j *ast.Join, sc *scope) *ref {
	left := w.fromRef(j.Left, sc)
	if j.Right == nil {
		return left
	}
	right := w.fromRef(j.Right, sc)
	if left == nil || right == nil {
		// A Problem is recorded already; keep what resolved visible so
		// names do not fall through to outer levels.
		out := &ref{}
		for _, r := range []*ref{left, right} {
			if r != nil {
				out.cols = append(out.cols, r.cols...)
				out.leaves = append(out.leaves, r.leaves...)
			}
		}
		return out
	}
	// Each join level copies the columns of its operands: charge them, so
	// a long comma join is refused as too complex instead of quadratic.
	if w.charge(len(left.cols) + len(right.cols) + len(left.leaves) + len(right.leaves)) {
		return nil
	}
	out := &ref{leaves: append(append([]*item{}, left.leaves...), right.leaves...)}
	if j.NaturalJoin || len(j.Using) > 0 {
		out.cols = w.coalesce(left, right, j)
	} else {
		out.cols = append(append([]outCol{}, left.cols...), right.cols...)
	}
	if j.On != nil {
		on := newScope(sc.parent)
		on.ctes = sc.ctes
		on.refs = []*ref{out}
		on.leaves = out.leaves
		w.expr(j.On.Expr, on, nil, clauseWhere)
	}
	return out
}

// coalesce builds the row type of a NATURAL or USING join as MariaDB's
// store_natural_using_join_columns does: the common columns first, in the
// first operand's order, then the first operand's other columns, then the
// second's; a RIGHT join takes its right operand as the first. The
// common columns carry both sides' lineage and are read (compared).
func (w *walker) coalesce(left, right *ref, j *ast.Join) []outCol {
	first, second := left, right
	if j.Tp == ast.RightJoin {
		first, second = right, left
	}
	var common []string
	if j.NaturalJoin {
		for _, c := range first.cols {
			if indexCol(second.cols, c.name) >= 0 && !containsFold(common, c.name) {
				common = append(common, c.name)
			}
		}
	} else {
		for _, u := range j.Using {
			if u.Schema.O != "" || u.Table.O != "" {
				w.unsupported("qualified USING column")
			}
			common = append(common, u.Name.O)
		}
	}
	var out []outCol
	for _, name := range common {
		var lin []sqlpolicy.ColumnRef
		found := 0
		for _, side := range []*ref{first, second} {
			hit := false
			for _, c := range side.cols {
				if strings.EqualFold(c.name, name) {
					lin = append(lin, c.lin...)
					hit = true
				}
			}
			if hit {
				found++
			}
		}
		if found < 2 {
			w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownColumn, Column: name,
				Detail: fmt.Sprintf("USING column %q is not in both operands", name)})
		}
		w.read(nil, lin)
		out = append(out, outCol{name: name, lin: lin})
	}
	// Columns of the first operand in its order: a common column is
	// placed where the first common one was (MariaDB lists common columns
	// in the first operand's order; USING (b, a) still yields a, b when
	// the first operand has a before b).
	ordered := make([]outCol, 0, len(out))
	for _, c := range first.cols {
		if i := indexCol(out, c.name); i >= 0 && indexCol(ordered, c.name) < 0 {
			ordered = append(ordered, out[i])
		}
	}
	for _, c := range out {
		if indexCol(ordered, c.name) < 0 {
			ordered = append(ordered, c)
		}
	}
	for _, side := range []*ref{first, second} {
		for _, c := range side.cols {
			if !containsFold(common, c.name) {
				ordered = append(ordered, c)
			}
		}
	}
	return ordered
}

func indexCol(cols []outCol, name string) int {
	for i, c := range cols {
		if strings.EqualFold(c.name, name) {
			return i
		}
	}
	return -1
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// tableNames collects the unqualified table names a query tree names.
type tableNames struct{ names []string }

func (v *tableNames) Enter(n ast.Node) (ast.Node, bool) {
	if t, ok := n.(*ast.TableName); ok && t.Schema.O == "" {
		v.names = append(v.names, t.Name.O)
	}
	return n, false
}

func (v *tableNames) Leave(n ast.Node) (ast.Node, bool) { return n, true }
