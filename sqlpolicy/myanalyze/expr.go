package myanalyze

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// clause is where an expression sits, for name resolution: GROUP BY,
// HAVING and ORDER BY also see the select list's aliases.
type clause uint8

const (
	clauseWhere clause = iota // WHERE, ON, select list of a VALUES, SET, LIMIT ...
	clauseSelect
	clauseGroup
	clauseHaving
	clauseOrder
)

func (c clause) seesAliases() bool {
	return c == clauseGroup || c == clauseHaving || c == clauseOrder
}

// expr analyzes an expression in scope sc, adding its reads to sk (nil:
// reporting them).
func (w *walker) expr(e ast.ExprNode, sc *scope, sk sink, cl clause) {
	if e == nil {
		return
	}
	v := &exprVisitor{w: w, sc: sc, sk: sk, cl: cl}
	e.Accept(v)
}

type exprVisitor struct {
	w  *walker
	sc *scope
	sk sink
	cl clause
}

// Enter handles the nodes that name columns, open a query level or call
// functions; it lets Accept walk the children of every other expression
// kind it knows, and refuses the rest.
func (v *exprVisitor) Enter(n ast.Node) (ast.Node, bool) {
	w := v.w
	if !w.enter() {
		return n, true
	}
	defer w.leave()
	switch x := n.(type) {
	case *ast.ColumnNameExpr:
		w.columnRef(x.Name, v.sc, v.sk, v.cl)
		return n, true
	case *ast.SubqueryExpr:
		// A subquery sees the enclosing levels (a correlated reference).
		saved := w.subClause
		w.subClause = v.cl
		w.query(x.Query, v.sc, v.sc.ctes)
		w.subClause = saved
		return n, true
	case *ast.FuncCallExpr:
		w.funcCall(x)
		return n, false
	case *ast.AggregateFuncExpr:
		w.builtin(x.F)
		return n, false
	case *ast.WindowFuncExpr:
		w.builtin(x.Name)
		// A named window's own clauses are analyzed with the SELECT's
		// WINDOW list.
		w.windowSpec(&x.Spec, v.sc)
		for _, a := range x.Args {
			w.expr(a, v.sc, v.sk, v.cl)
		}
		return n, true
	case *ast.VariableExpr:
		w.variable(x)
		return n, false
	case *ast.DefaultExpr:
		// DEFAULT(col) is the column's default evaluated over the current
		// row, and the expression may name the row's other columns
		// (MariaDB 10.2+: DEFAULT (CONCAT('mail ', email))): the column
		// and those are read. DEFAULT alone is the target column's, which
		// UPDATE and ON DUPLICATE KEY UPDATE handle (defaultTarget).
		if x.Name != nil {
			for _, lin := range w.columnRef(x.Name, v.sc, v.sk, v.cl) {
				for _, c := range lin {
					if r := w.cat.Relation(c.Rel.Schema, c.Rel.Name); r != nil && r.Kind == catalog.KindTable {
						w.read(v.sk, w.defaultReads(r, c.Column, c.Via))
					}
				}
			}
		}
		return n, true
	case *ast.ValuesExpr:
		// VALUES(col) in ON DUPLICATE KEY UPDATE: the value the row would
		// have been inserted with. Reported as a read of the column.
		if x.Column != nil {
			w.columnRef(x.Column.Name, v.sc, v.sk, v.cl)
		}
		return n, true
	case *ast.MatchAgainst:
		for _, c := range x.ColumnNames {
			w.columnRef(c, v.sc, v.sk, v.cl)
		}
		w.expr(x.Against, v.sc, v.sk, v.cl)
		return n, true
	case *ast.BetweenExpr, *ast.BinaryOperationExpr, *ast.CaseExpr, *ast.WhenClause,
		*ast.CompareSubqueryExpr, *ast.ExistsSubqueryExpr, *ast.PatternInExpr, *ast.IsNullExpr,
		*ast.IsTruthExpr, *ast.PatternLikeOrIlikeExpr, *ast.ParenthesesExpr, *ast.PatternRegexpExpr,
		*ast.RowExpr, *ast.UnaryOperationExpr, *ast.SetCollationExpr, *ast.FuncCastExpr,
		*ast.TrimDirectionExpr, *ast.TimeUnitExpr, *ast.GetFormatSelectorExpr, *ast.ByItem,
		*ast.OrderByClause, *ast.MaxValueExpr:
		return n, false
	case ast.ParamMarkerExpr, *ast.PositionExpr:
		// A position (GROUP_CONCAT(... ORDER BY 1)) names one of the
		// arguments, which are read already.
		return n, true
	case ast.ValueExpr:
		return n, true
	}
	w.unsupported("expression of kind %T", n)
	return n, true
}

func (v *exprVisitor) Leave(n ast.Node) (ast.Node, bool) { return n, true }

// columnRef resolves a column reference the way MariaDB does, reads
// every column it may bind to and returns their lineages.
func (w *walker) columnRef(cn *ast.ColumnName, sc *scope, sk sink, cl clause) [][]sqlpolicy.ColumnRef {
	if cn == nil {
		return nil
	}
	var lins [][]sqlpolicy.ColumnRef
	if cn.Table.O == "" {
		lins = lookupName(sc, cn.Name.O, cl)
	} else {
		lins = w.lookupQualified(sc, cn.Schema.O, cn.Table.O, cn.Name.O)
	}
	if len(lins) == 0 {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownColumn, Column: cn.Name.O,
			Rel:    sqlpolicy.Rel{Schema: cn.Schema.O, Name: cn.Table.O},
			Detail: fmt.Sprintf("column %q does not resolve to a column keyhole can name", columnText(cn))})
		return nil
	}
	for _, lin := range lins {
		w.read(sk, lin)
	}
	return lins
}

// defaultReads returns the columns of rel that column's DEFAULT expression
// names, as reads (with via), for a statement that evaluates it over an
// existing row. MariaDB prints a default in COLUMN_DEFAULT as SQL (a
// string quoted, an expression as written); one keyhole's parser does not
// read may name any column.
func (w *walker) defaultReads(rel *catalog.Relation, column string, via sqlpolicy.Rel) []sqlpolicy.ColumnRef {
	// Column names are case-insensitive.
	i := slices.IndexFunc(rel.Columns, func(c *catalog.Column) bool { return strings.EqualFold(c.Name, column) })
	if i < 0 || rel.Columns[i].Default == "" {
		return nil
	}
	col := rel.Columns[i]
	names, ok := w.a.exprColumns(col.Default)
	if !ok {
		names = allColumns(rel)
	}
	var out []sqlpolicy.ColumnRef
	for _, n := range withGenerated(rel, names) {
		out = append(out, sqlpolicy.ColumnRef{Rel: relOf(rel), Column: n, Mode: sqlpolicy.Read, Via: via})
	}
	return out
}

// defaultTarget reports, for UPDATE ... SET col = DEFAULT and ON
// DUPLICATE KEY UPDATE col = DEFAULT, the columns the target column's
// default reads: MariaDB evaluates it over the row being updated, and
// the column then holds the result.
func (w *walker) defaultTarget(rel *catalog.Relation, column string, e ast.ExprNode) {
	if d, ok := e.(*ast.DefaultExpr); ok && d.Name == nil && rel != nil {
		w.read(nil, w.defaultReads(rel, column, sqlpolicy.Rel{}))
	}
}

func columnText(cn *ast.ColumnName) string {
	parts := []string{}
	for _, p := range []string{cn.Schema.O, cn.Table.O, cn.Name.O} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, ".")
}

// lookupName returns the lineage of every column an unqualified name may
// bind to, following Item_field::fix_fields and Item_ref::fix_fields:
//
//   - the FROM entries of its own level (and, in GROUP BY / HAVING / ORDER
//     BY, the select-list aliases); if none has it, each enclosing level's
//     FROM entries in turn. An enclosing level's select-list aliases
//     (which MariaDB consults when the subquery is not in that level's
//     WHERE or ON) are added as candidates and the search goes on
//     outward;
//   - a name in HAVING (outside an aggregate) binds to the select list or
//     GROUP BY list, and otherwise to an enclosing level, never to its own
//     FROM columns: both are reported, and the search goes on outward;
//   - likewise a subquery in the HAVING of a grouping level does not see
//     that level's FROM columns: they are reported and the search goes on.
//
// Every binding the server may make is among those reported.
func lookupName(sc *scope, name string, cl clause) [][]sqlpolicy.ColumnRef {
	var acc [][]sqlpolicy.ColumnRef
	var child *scope
	for s, level := sc, 0; s != nil; child, s, level = s, s.parent, level+1 {
		if s.anyName {
			return append(acc, nil)
		}
		var found [][]sqlpolicy.ColumnRef
		for _, r := range s.refs {
			for _, c := range r.cols {
				if strings.EqualFold(c.name, name) {
					found = append(found, c.lin)
				}
			}
		}
		var aliases [][]sqlpolicy.ColumnRef
		for _, c := range s.aliases {
			if c.name != "" && strings.EqualFold(c.name, name) {
				aliases = append(aliases, c.lin)
			}
		}
		if level == 0 {
			if cl.seesAliases() {
				found = append(found, aliases...)
			}
			if cl == clauseHaving {
				acc = append(acc, found...)
				continue
			}
			if len(found) > 0 {
				return found
			}
			continue
		}
		if child != nil && child.inHaving {
			acc = append(append(acc, found...), aliases...)
			continue
		}
		if len(found) > 0 {
			return append(acc, found...)
		}
		acc = append(acc, aliases...)
	}
	return acc
}

// lookupQualified resolves [db.]t.col: the FROM items the qualifier may
// name, innermost level first. A level whose item matches but lacks the
// column does not stop the search (MariaDB then tries the enclosing
// levels too), nor does an item whose name matches only when letter case
// is ignored: MariaDB may not take it (see exactItem), so its column is a
// candidate and the search goes on outward.
func (w *walker) lookupQualified(sc *scope, db, t, name string) [][]sqlpolicy.ColumnRef {
	var acc [][]sqlpolicy.ColumnRef
	for s := sc; s != nil; s = s.parent {
		stop := false
		for _, it := range s.leaves {
			if !matchItem(it, db, t) {
				continue
			}
			for _, c := range it.cols {
				if strings.EqualFold(c.name, name) {
					acc = append(acc, c.lin)
					stop = stop || w.exactItem(it, db, t)
				}
			}
		}
		if stop {
			return acc
		}
	}
	return acc
}

// variable handles @var and @@var references and assignments.
func (w *walker) variable(x *ast.VariableExpr) {
	if !x.IsSystem {
		// User variables hold only values of texts keyhole decided; an
		// assignment's value is analyzed as any expression.
		return
	}
	if x.Value != nil {
		w.setting(sqlpolicy.Setting{Name: strings.ToLower(x.Name), Unknown: true})
		if x.IsGlobal {
			w.unsupported("changing global variables")
		}
	}
}

// funcCall reports a function call: a built-in, a stored function in the
// current (or named) database, or an unknown name.
func (w *walker) funcCall(x *ast.FuncCallExpr) {
	name := x.FnName.L
	if x.Schema.O != "" {
		w.storedFunc(x.Schema.O, x.FnName.O)
		return
	}
	if w.storedKeywordCall(name) {
		return
	}
	if w.builtinOrDanger(name) {
		return
	}
	if w.db != "" && w.findFunc(w.db, name) != "" {
		w.storedFunc(w.db, x.FnName.O)
		return
	}
	w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownFunction, Func: name,
		Detail: fmt.Sprintf("function %s is not a built-in keyhole knows nor a stored function of the current database", name)})
}

// storedKeywordCall reports, and returns true for, a call of a built-in
// MariaDB's grammar knows as a keyword that this text writes so that
// MariaDB parses the name as an identifier: quoted (`left`(x, 1)), or,
// for the names its lexer takes for function keywords only when "("
// follows at once, with white space or a comment before the "(" (now (),
// count (id)), unless the session's sql_mode has IGNORE_SPACE. Such a
// call is the current database's stored function of that name (1630
// when there is none), which runs with its definer's rights.
func (w *walker) storedKeywordCall(name string) bool {
	quoted := quotedKeywordFuncs[name] && quotedCall(w.text, name)
	spaced := spacedKeywordFuncs[name] && !w.ts.mode.HasIgnoreSpaceMode() && spacedCall(w.text, name)
	if !quoted && !spaced {
		return false
	}
	if w.db == "" {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownFunction, Func: name,
			Detail: fmt.Sprintf("%s written quoted or with a space before \"(\" calls a stored function, and no database is selected; write the built-in unquoted, with \"(\" right after its name", name)})
		return true
	}
	w.storedFunc(w.db, name)
	return true
}

// builtin reports an aggregate or window function.
func (w *walker) builtin(name string) {
	if w.storedKeywordCall(strings.ToLower(name)) {
		return
	}
	if !w.builtinOrDanger(strings.ToLower(name)) {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownFunction, Func: name,
			Detail: fmt.Sprintf("function %s is not a built-in keyhole knows", name)})
	}
}

// builtinOrDanger reports a known built-in name, refusing the dangerous
// ones; false when the name is not one.
func (w *walker) builtinOrDanger(name string) bool {
	if p, ok := dangerousFuncs[name]; ok {
		p.Func = name
		w.problem(p)
		return true
	}
	if builtinFuncs[name] {
		w.fn(sqlpolicy.FuncRef{Schema: builtinSchema, Name: name, Builtin: true})
		return true
	}
	return false
}

// findFunc returns the catalog's spelling of a stored routine (names are
// case-insensitive), or "".
func (w *walker) findFunc(db, name string) string {
	for n := range w.cat.Functions[db] {
		if strings.EqualFold(n, name) {
			return n
		}
	}
	return ""
}

func (w *walker) storedFunc(db, name string) {
	n := w.findFunc(db, name)
	if n == "" {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownFunction, Func: db + "." + name,
			Detail: fmt.Sprintf("function %s.%s does not exist", db, name)})
		return
	}
	w.fn(sqlpolicy.FuncRef{Schema: db, Name: n})
}
