package myanalyze

import (
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/opcode"

	"github.com/keyholedb/keyhole/catalog"
)

// Where the order of a scan cannot show. indexOrder counts a table's
// indexes as read because the rows, or what is computed from them in
// turn, come back in the order of the index the server reads. A plain
// SELECT of one base table (no join, subquery, view, partitioning, set
// operation or WITH) shows no such order when:
//
//   - it matches at most one row: WHERE names every column of the
//     primary key or of a unique index equal to a literal of the
//     column's kind (integer for an integer column, a string for a
//     string one; a unique index holds one row per value, NULL never
//     equals);
//   - it returns one row computed by order-insensitive aggregates (no
//     GROUP BY, every column outside WHERE inside COUNT, SUM or AVG of
//     an integer or decimal column, MIN or MAX of an integer, decimal or
//     temporal one: no float rounding, no ties between values that
//     compare equal but print apart);
//   - or its ORDER BY lists plain columns that include every column of
//     the primary key (not NULL, unique: a total order), with no
//     GROUP BY, DISTINCT, aggregate or window function. The key's
//     columns must be integers or decimals: a filesort compares only
//     the first max_sort_length bytes of a string (which the session may
//     lower), and keyhole has checked no other kind against the server.
//
// In the last two, every expression must be a plain function of its row:
// RAND(1), UUID_SHORT(), SYSDATE(6) or @n := @n + 1 take a value per
// row in the order the server reads the rows (before a filesort), so
// they leak that order through the values or through which rows WHERE
// keeps. A unique index whose columns may be NULL does not order
// totally (NULLs tie), and the catalog does not say which are NOT NULL:
// only the primary key counts for ORDER BY. Each form is checked against
// MariaDB 10.11 by TestIndexOrder.

// orderFixed is the base table whose scan order the statement n cannot
// show, or nil.
func (w *walker) orderFixed(n ast.StmtNode) *catalog.Relation {
	s, ok := n.(*ast.SelectStmt)
	if !ok || s.Kind != ast.SelectStmtKindSelect || s.With != nil || s.From == nil || s.From.TableRefs == nil ||
		s.From.TableRefs.Right != nil || s.Fields == nil {
		return nil
	}
	ts, ok := s.From.TableRefs.Left.(*ast.TableSource)
	if !ok {
		return nil
	}
	tn, ok := ts.Source.(*ast.TableName)
	if !ok || len(tn.PartitionNames) > 0 {
		return nil
	}
	db := tn.Schema.O
	if db == "" {
		db = w.db
	}
	rel := w.lookupRel(db, tn.Name.O)
	if rel == nil || rel.Kind == catalog.KindView || len(rel.Partitioning) > 0 || len(w.scans) != 1 ||
		w.scans[rel] == nil || w.scans[rel].items != 1 {
		return nil
	}
	t := orderTable{rel: rel, db: db, name: tn.Name.O}
	if ts.AsName.O != "" {
		t.name = ts.AsName.O
	}
	if t.oneRow(s.Where) {
		return rel
	}
	if s.GroupBy != nil || s.Having != nil || s.Distinct || len(s.WindowSpecs) > 0 {
		return nil
	}
	var nodes []ast.Node
	for _, f := range s.Fields.Fields {
		if f.WildCard != nil {
			nodes = append(nodes, f)
			continue
		}
		nodes = append(nodes, f.Expr)
	}
	if s.Where != nil && !pureRow(s.Where) {
		return nil
	}
	// One row of aggregates.
	agg := true
	for _, f := range s.Fields.Fields {
		if f.WildCard != nil || !t.aggregateOnly(f.Expr) {
			agg = false
		}
	}
	if agg {
		return rel
	}
	// A total ORDER BY.
	if s.OrderBy == nil {
		return nil
	}
	for _, nd := range nodes {
		if !pureRow(nd) {
			return nil
		}
	}
	named := map[string]bool{}
	for _, it := range s.OrderBy.Items {
		c, ok := it.Expr.(*ast.ColumnNameExpr)
		if !ok {
			return nil
		}
		if c.Name.Table.O == "" {
			// An unqualified name is a select list alias first:
			// SELECT ssn AS id ... ORDER BY id orders by ssn.
			for _, f := range s.Fields.Fields {
				if strings.EqualFold(f.AsName.O, c.Name.Name.O) {
					return nil
				}
			}
		}
		if col := t.column(c); col != nil {
			named[strings.ToLower(col.Name)] = true
		}
	}
	for _, ix := range rel.Indexes {
		if !strings.EqualFold(ix.Name, "PRIMARY") || len(ix.Columns) == 0 {
			continue
		}
		for _, c := range ix.Columns {
			if c == "" || !named[strings.ToLower(c)] || !exactType(columnType(rel, c)) {
				return nil
			}
		}
		return rel
	}
	return nil
}

// orderTable is the FROM item orderFixed looks at: its table, database
// and the name that qualifies its columns.
type orderTable struct {
	rel      *catalog.Relation
	db, name string
}

// column is the table's column a name refers to, or nil.
func (t orderTable) column(c *ast.ColumnNameExpr) *catalog.Column {
	if c.Name.Schema.O != "" && !strings.EqualFold(c.Name.Schema.O, t.db) ||
		c.Name.Table.O != "" && !strings.EqualFold(c.Name.Table.O, t.name) {
		return nil
	}
	for i := range t.rel.Columns {
		if strings.EqualFold(t.rel.Columns[i].Name, c.Name.Name.O) {
			return t.rel.Columns[i]
		}
	}
	return nil
}

// oneRow reports whether where keeps at most one row: its top-level AND
// sets every column of the primary key or of a unique index equal to a
// literal of the column's kind.
func (t orderTable) oneRow(where ast.ExprNode) bool {
	eq := map[string]bool{}
	var conj func(e ast.ExprNode)
	conj = func(e ast.ExprNode) {
		switch x := e.(type) {
		case *ast.ParenthesesExpr:
			conj(x.Expr)
		case *ast.BinaryOperationExpr:
			switch x.Op {
			case opcode.LogicAnd:
				conj(x.L)
				conj(x.R)
			case opcode.EQ:
				for _, p := range [][2]ast.ExprNode{{x.L, x.R}, {x.R, x.L}} {
					c, ok := p[0].(*ast.ColumnNameExpr)
					if !ok {
						continue
					}
					col := t.column(c)
					if col != nil && literalOfKind(p[1], col.Type) {
						eq[strings.ToLower(col.Name)] = true
					}
				}
			}
		}
	}
	if where == nil {
		return false
	}
	conj(where)
	for _, ix := range t.rel.Indexes {
		if !ix.Unique && !strings.EqualFold(ix.Name, "PRIMARY") || len(ix.Columns) == 0 {
			continue
		}
		all := true
		for _, c := range ix.Columns {
			if c == "" || !eq[strings.ToLower(c)] {
				all = false
			}
		}
		if all {
			return true
		}
	}
	return false
}

// literalOfKind reports whether e is a literal that compares with a
// column of type typ value for value: an integer with an integer column,
// a string with a string column. Anything else converts (a string
// column = 5 matches '5', '05' and '5x'), and a hex or bit literal is a
// binary string.
func literalOfKind(e ast.ExprNode, typ string) bool {
	v, ok := e.(ast.ValueExpr)
	if !ok {
		return false
	}
	if _, param := e.(ast.ParamMarkerExpr); param {
		return false
	}
	switch v.GetValue().(type) {
	case int64, uint64:
		return intType(typ)
	case string:
		t := strings.ToLower(typ)
		return strings.HasPrefix(t, "varchar") || strings.HasPrefix(t, "char")
	}
	return false
}

// intType reports whether a column's COLUMN_TYPE is an integer type.
func intType(typ string) bool {
	t := strings.ToLower(typ)
	for _, p := range []string{"tinyint", "smallint", "mediumint", "int", "bigint"} {
		if strings.HasPrefix(t, p) && (len(t) == len(p) || t[len(p)] == '(' || t[len(p)] == ' ') {
			return true
		}
	}
	return false
}

// columnType is the type of rel's column name, or "".
func columnType(rel *catalog.Relation, name string) string {
	for _, c := range rel.Columns {
		if strings.EqualFold(c.Name, name) {
			return c.Type
		}
	}
	return ""
}

// exactType reports whether typ is an integer or decimal type: sums and
// averages of its values do not depend on the order they are added in.
func exactType(typ string) bool {
	t := strings.ToLower(typ)
	return intType(t) || strings.HasPrefix(t, "decimal") || strings.HasPrefix(t, "numeric")
}

// temporalType reports whether typ is a date or time type: values that
// compare equal print the same.
func temporalType(typ string) bool {
	t := strings.ToLower(typ)
	for _, p := range []string{"date", "datetime", "timestamp", "time", "year"} {
		if t == p || strings.HasPrefix(t, p+"(") {
			return true
		}
	}
	return false
}

// aggregateOnly reports whether e reads the table only inside an
// order-insensitive aggregate (see orderFixed).
func (t orderTable) aggregateOnly(e ast.ExprNode) bool {
	switch x := e.(type) {
	case *ast.AggregateFuncExpr:
		if x.Order != nil || len(x.Args) != 1 {
			return false
		}
		name := strings.ToLower(x.F)
		if name == "count" {
			return pureRow(x.Args[0])
		}
		c, ok := x.Args[0].(*ast.ColumnNameExpr)
		if !ok {
			return false
		}
		col := t.column(c)
		if col == nil {
			return false
		}
		switch name {
		case "sum", "avg":
			return exactType(col.Type)
		case "min", "max":
			return exactType(col.Type) || temporalType(col.Type)
		}
		return false
	case *ast.ParenthesesExpr:
		return t.aggregateOnly(x.Expr)
	case *ast.BinaryOperationExpr:
		return t.aggregateOnly(x.L) && t.aggregateOnly(x.R)
	}
	if _, ok := e.(ast.ValueExpr); ok {
		_, param := e.(ast.ParamMarkerExpr)
		return !param
	}
	return false
}

// orderSensitiveFuncs are native functions whose value for a row depends
// on the rows computed before it or on when it is computed.
var orderSensitiveFuncs = setOf(`rand uuid uuid_short sys_guid random_bytes sysdate found_rows row_count
	last_insert_id last_value default values name_const`)

// pureRow reports whether the expression n computes its value from its
// own row alone: columns, literals, operators and native functions that
// are neither aggregates, window functions nor order-sensitive; no
// subquery, variable or stored function.
func pureRow(n ast.Node) bool {
	v := &pureVisitor{ok: true}
	n.Accept(v)
	return v.ok
}

type pureVisitor struct{ ok bool }

func (v *pureVisitor) Enter(n ast.Node) (ast.Node, bool) {
	switch x := n.(type) {
	case *ast.ColumnNameExpr, *ast.ColumnName, *ast.ParenthesesExpr, *ast.BinaryOperationExpr,
		*ast.UnaryOperationExpr, *ast.PatternLikeOrIlikeExpr, *ast.BetweenExpr, *ast.IsNullExpr,
		*ast.IsTruthExpr, *ast.CaseExpr, *ast.WhenClause, *ast.FuncCastExpr, *ast.TimeUnitExpr,
		*ast.TrimDirectionExpr, *ast.SelectField, *ast.WildCardField:
	case *ast.PatternInExpr:
		if x.Sel != nil {
			v.ok = false
		}
	case *ast.FuncCallExpr:
		name := x.FnName.L
		if x.Schema.O != "" || !builtinFuncs[name] || orderSensitiveFuncs[name] {
			v.ok = false
		}
	default:
		if _, ok := n.(ast.ParamMarkerExpr); ok {
			break
		}
		if _, ok := n.(ast.ValueExpr); !ok {
			v.ok = false
		}
	}
	return n, !v.ok
}

func (v *pureVisitor) Leave(n ast.Node) (ast.Node, bool) { return n, v.ok }
