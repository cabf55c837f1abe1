package pganalyze

import (
	"fmt"
	"slices"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// expr walks an expression, adding the columns it reads to sk (nil: the
// statement). Every node kind it does not know is a Problem.
func (w *walker) expr(n *pg.Node, sc *scope, sk sink) {
	if n == nil || n.Node == nil {
		return
	}
	if !w.enter() {
		return
	}
	defer w.leave()
	switch x := n.Node.(type) {
	case *pg.Node_ColumnRef:
		w.columnRef(x.ColumnRef, sc, sk)
	case *pg.Node_AConst, *pg.Node_ParamRef, *pg.Node_SqlvalueFunction, *pg.Node_SetToDefault,
		*pg.Node_CurrentOfExpr, *pg.Node_Integer, *pg.Node_Float, *pg.Node_String_, *pg.Node_Boolean,
		*pg.Node_BitString:
	case *pg.Node_AExpr:
		e := x.AExpr
		w.operatorName(e.Name)
		w.aexprOperators(e, sc)
		w.expr(e.Lexpr, sc, sk)
		w.expr(e.Rexpr, sc, sk)
	case *pg.Node_BoolExpr:
		w.exprs(x.BoolExpr.Args, sc, sk)
	case *pg.Node_NullTest:
		w.expr(x.NullTest.Arg, sc, sk)
	case *pg.Node_BooleanTest:
		w.expr(x.BooleanTest.Arg, sc, sk)
	case *pg.Node_TypeCast:
		w.typeCast(x.TypeCast, sc, sk)
	case *pg.Node_CollateClause:
		w.expr(x.CollateClause.Arg, sc, sk)
	case *pg.Node_FuncCall:
		w.funcCall(x.FuncCall, sc, sk)
	case *pg.Node_SubLink:
		sl := x.SubLink
		w.operatorName(sl.OperName)
		w.untypedOperator(sl.OperName)
		w.expr(sl.Testexpr, sc, sk)
		// Whatever the subquery returns feeds the expression; its other
		// clauses are reported by query.
		sh := w.query(sl.Subselect, sc)
		if sl.SubLinkType == pg.SubLinkType_EXPR_SUBLINK {
			w.nameSubLink(sl, sh)
		}
		w.readShape(sk, sh)
	case *pg.Node_CaseExpr:
		c := x.CaseExpr
		w.expr(c.Arg, sc, sk)
		if c.Arg != nil {
			// CASE x WHEN v compares with "=" looked up by name.
			for _, a := range c.Args {
				if cw := a.GetCaseWhen(); cw != nil {
					w.operator("", "=", c.Arg, cw.Expr, sc)
				}
			}
		}
		w.exprs(c.Args, sc, sk)
		w.expr(c.Defresult, sc, sk)
	case *pg.Node_CaseWhen:
		w.expr(x.CaseWhen.Expr, sc, sk)
		w.expr(x.CaseWhen.Result, sc, sk)
	case *pg.Node_CoalesceExpr:
		w.exprs(x.CoalesceExpr.Args, sc, sk)
	case *pg.Node_MinMaxExpr:
		w.exprs(x.MinMaxExpr.Args, sc, sk)
	case *pg.Node_AArrayExpr:
		w.exprs(x.AArrayExpr.Elements, sc, sk)
	case *pg.Node_RowExpr:
		w.exprs(x.RowExpr.Args, sc, sk)
	case *pg.Node_AIndirection:
		w.indirection(x.AIndirection, sc, sk)
	case *pg.Node_AIndices:
		w.expr(x.AIndices.Lidx, sc, sk)
		w.expr(x.AIndices.Uidx, sc, sk)
	case *pg.Node_List:
		w.exprs(x.List.Items, sc, sk)
	case *pg.Node_NamedArgExpr:
		w.expr(x.NamedArgExpr.Arg, sc, sk)
	case *pg.Node_XmlExpr:
		w.exprs(x.XmlExpr.NamedArgs, sc, sk)
		w.exprs(x.XmlExpr.Args, sc, sk)
	case *pg.Node_XmlSerialize:
		w.expr(x.XmlSerialize.Expr, sc, sk)
	case *pg.Node_GroupingFunc:
		w.exprs(x.GroupingFunc.Args, sc, sk)
	case *pg.Node_MultiAssignRef:
		w.expr(x.MultiAssignRef.Source, sc, sk)
	case *pg.Node_ResTarget:
		// XMLELEMENT/XMLFOREST attributes.
		w.expr(x.ResTarget.Val, sc, sk)
	case *pg.Node_SortBy:
		w.operatorName(x.SortBy.UseOp)
		w.untypedOperator(x.SortBy.UseOp)
		w.expr(x.SortBy.Node, sc, sk)
	default:
		w.unsupported("expression of kind %s", nodeName(n.Node))
	}
}

func (w *walker) exprs(ns []*pg.Node, sc *scope, sk sink) {
	for _, n := range ns {
		w.expr(n, sc, sk)
	}
}

// operatorName refuses OPERATOR(schema.op) outside pg_catalog: a user
// operator runs a user function the analyzer cannot see.
func (w *walker) operatorName(ns []*pg.Node) {
	if len(ns) < 2 {
		return
	}
	if s, _ := strVal(ns[0]); s != "pg_catalog" {
		w.unsupported("operator %s is not a built-in operator", strings.Join(names(ns), "."))
	}
}

// regTypes are the object-identifier types whose input function looks a
// name up in the catalog.
var regTypes = map[string]bool{
	"regclass": true, "regproc": true, "regprocedure": true, "regoper": true, "regoperator": true,
	"regtype": true, "regrole": true, "regnamespace": true, "regconfig": true, "regdictionary": true,
	"regcollation": true,
}

func (w *walker) typeCast(tc *pg.TypeCast, sc *scope, sk sink) {
	w.expr(tc.Arg, sc, sk)
	if tn := tc.TypeName; tn != nil && len(tn.Names) > 0 {
		if t, ok := strVal(tn.Names[len(tn.Names)-1]); ok && regTypes[t] {
			if tc.Arg.GetAConst() != nil {
				// 'name'::regclass resolves the literal: the analysis
				// depends on it.
				w.st.LiteralSensitive = true
			}
		}
		for _, m := range tn.Typmods {
			w.expr(m, sc, sk)
		}
		w.castFunctions(tn)
	}
}

// castFunctions reports the user functions a conversion to type tn runs
// (catalog.TypeFunctions): a domain's check constraints, a user cast, a
// user type's input function. An unqualified type name resolves along
// the search path, pg_catalog first unless the path says otherwise; a
// name a user schema on the path has counts whichever schema wins.
func (w *walker) castFunctions(tn *pg.TypeName) {
	if len(w.cat.TypeFunctions) == 0 {
		return
	}
	ns := names(tn.Names)
	if len(ns) != len(tn.Names) || len(ns) == 0 || len(ns) > 3 {
		return
	}
	name := ns[len(ns)-1]
	var schemas []string
	if len(ns) >= 2 {
		schemas = []string{ns[len(ns)-2]}
	} else {
		for _, p := range w.candidatePaths() {
			schemas = append(schemas, w.cat.EffectivePath(p)...)
		}
	}
	for _, s := range schemas {
		typ := s + "." + name
		for _, f := range w.cat.TypeFunctions[typ] {
			w.implicitFunc(f, "conversion to type "+typ)
		}
	}
}

// indirection handles (row).field, (row).*, arr[i] and func(...).field.
func (w *walker) indirection(ai *pg.A_Indirection, sc *scope, sk sink) {
	// (t).x and (t.*).x select column x of item t (ParseComplexProjection
	// on a whole-row reference), or call the function x on t's row when
	// t has no such column; (t).* is the whole row. Postgres marks the
	// whole row read before it projects, so every column needs the
	// privilege.
	if it := w.wholeRow(ai.Arg, sc); it != nil && len(ai.Indirection) > 0 {
		switch f := ai.Indirection[0].Node.(type) {
		case *pg.Node_String_:
			w.readItem(sk, it)
			w.projection(it, f.String_.Sval, sk)
			w.indices(ai.Indirection[1:], sc, sk)
			return
		case *pg.Node_AStar:
			w.readItem(sk, it)
			w.indices(ai.Indirection[1:], sc, sk)
			return
		}
	}
	w.expr(ai.Arg, sc, sk)
	w.indices(ai.Indirection, sc, sk)
}

func (w *walker) indices(ns []*pg.Node, sc *scope, sk sink) {
	for _, n := range ns {
		switch x := n.Node.(type) {
		case *pg.Node_String_:
			w.fieldFunc(x.String_.Sval)
		case *pg.Node_AStar:
		case *pg.Node_AIndices:
			w.expr(x.AIndices.Lidx, sc, sk)
			w.expr(x.AIndices.Uidx, sc, sk)
		default:
			w.unsupported("indirection of kind %s", nodeName(n.Node))
		}
	}
}

// fieldFunc reports the function Postgres may call for (expr).name, the
// column notation of name(expr): a value of a composite type with no
// field called name is passed to the function of that name
// (ParseFuncOrColumn), so (ROW(...)::orders).f, (NULL::orders).f and
// (sub.col).f run a user function f(orders) without naming a call. The
// analyzer does not know the type of every expression, so every function
// of the name counts; with none, it is a field selection.
func (w *walker) fieldFunc(name string) {
	if w.pathLost {
		w.pathLostProblem(name)
		return
	}
	f := w.resolveFuncQuiet(name)
	if f == nil {
		return
	}
	w.reportFunc("", name, f, &pg.FuncCall{Funcname: []*pg.Node{pg.MakeStrNode(name)}, Args: []*pg.Node{nil}}, nil)
}

// funcName returns the schema (may be empty) and name of a function.
func funcName(ns []*pg.Node) (schema, name string, ok bool) {
	parts := names(ns)
	if len(parts) != len(ns) || len(parts) == 0 {
		return "", "", false
	}
	name = parts[len(parts)-1]
	if len(parts) >= 2 {
		schema = parts[len(parts)-2]
	}
	return schema, name, true
}

// funcCall reports a function call: the function, its arguments, and the
// columns its window reads.
func (w *walker) funcCall(fc *pg.FuncCall, sc *scope, sk sink) {
	schema, name, ok := funcName(fc.Funcname)
	if !ok {
		w.unsupported("function name of an unexpected form")
		return
	}
	// ssn(c) is Postgres's functional notation for (c).ssn: with one
	// undecorated argument that is a whole row, and no function of that
	// name to take it, the call is a column projection
	// (ParseFuncOrColumn). Either way the whole row is read.
	if schema == "" && len(fc.Args) == 1 && fc.Over == nil && fc.AggFilter == nil &&
		len(fc.AggOrder) == 0 && !fc.AggStar && !fc.AggDistinct && !fc.FuncVariadic && !fc.AggWithinGroup &&
		fc.Args[0].GetNamedArgExpr() == nil {
		if it := w.wholeRow(fc.Args[0], sc); it != nil && w.resolveFuncQuiet(name) == nil {
			w.readItem(sk, it)
			if d, m := w.itemColumn(it, name, nil, false); !d && !m {
				w.unknownColumn(qualified(it.name, name))
			}
			return
		}
	}
	f := w.resolveFunc(schema, name)
	if f == nil {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownFunction,
			Detail: fmt.Sprintf("function %s does not exist", qualified(schema, name)), Func: qualified(schema, name)})
	}
	w.reportFunc(schema, name, f, fc, sc)
	w.exprs(fc.Args, sc, sk)
	for _, o := range fc.AggOrder {
		w.expr(o, sc, sk)
	}
	w.expr(fc.AggFilter, sc, sk)
	if fc.Over != nil {
		w.windowDef(fc.Over, sc)
	}
}

// reportFunc reports a call of function name (f as resolved, nil when it
// did not) and classifies it.
func (w *walker) reportFunc(schema, name string, f *catalogFunc, fc *pg.FuncCall, sc *scope) {
	proc := fc != nil && fc == w.procedure
	ref := sqlpolicy.FuncRef{Name: name, Procedure: proc}
	builtin := false
	// kept: Postgres evaluates the output column holding the call even
	// where the query does not use it (mayBeVolatile), or it changes the
	// row count.
	kept := f == nil || mayBeVolatile(f) || f.ReturnsSet
	if f != nil {
		ref.Schema = f.Schema
		builtin = f.Builtin
	}
	if schema == "" && f != nil && w.a.index().multiFuncs[name] {
		// Postgres picks among the functions of the name in every schema
		// of the path (and the name may be another function under
		// another search path that may be in effect): report each, unless
		// the argument types decide which one it is.
		cands := w.funcCandidates(name)
		if len(cands) > 1 {
			cands = w.viableCallees(cands, fc, sc)
			if !slices.Contains(cands, f) {
				// The first schema's function cannot take the arguments.
				f = cands[0]
				ref.Schema, builtin, kept = f.Schema, f.Builtin, mayBeVolatile(f) || f.ReturnsSet
			}
		}
		if g := w.exactCallee(name, cands, fc, sc); g != nil {
			cands = []*catalogFunc{g}
			f = g
			ref.Schema, builtin, kept = g.Schema, g.Builtin, mayBeVolatile(g) || g.ReturnsSet
		}
		for _, g := range cands {
			if g != f {
				w.fn(sqlpolicy.FuncRef{Schema: g.Schema, Name: name, Procedure: proc})
				builtin = builtin && g.Builtin
				kept = kept || mayBeVolatile(g) || g.ReturnsSet
			}
		}
	}
	w.fn(ref)
	if !builtin || setReturning[name] || kept {
		w.funcFlag = true
	}
	w.checkFunc(name, fc, sc)
}

// mayBeVolatile reports a function (some overload of it) that is
// volatile, or whose volatility the catalog does not record. Postgres
// keeps a subquery whose select list calls one from being flattened and
// evaluates that column for every row even where no one uses it
// (remove_unused_subquery_outputs), so it can act on a value the query
// never returns: a view column set_config('application_name', email,
// false) copies the email of every row SELECT id FROM the view reads.
func mayBeVolatile(f *catalogFunc) bool {
	return f.Volatility != catalog.Immutable && f.Volatility != catalog.Stable
}

// funcCandidates returns every function called name in the schemas of
// the search paths that may be in effect. Postgres does not stop at the
// first schema that has the name: it gathers the functions of the name
// from every schema of the path and picks the best match for the argument
// types (FuncnameGetCandidates, func_select_candidate), the earlier schema
// winning only between identical signatures. So a user function can be
// called under a built-in's name: public.length(integer) for length(x)
// with an integer x, though pg_catalog comes first and has length(text).
// Every schema's function is a candidate; viableCallees and exactCallee
// narrow them by the argument types the analyzer knows.
func (w *walker) funcCandidates(name string) []*catalogFunc {
	var out []*catalogFunc
	if !w.a.index().multiFuncs[name] {
		// One schema at most has the name.
		if f := w.resolveFuncQuiet(name); f != nil {
			out = append(out, f)
		}
		return out
	}
	for _, p := range w.candidatePaths() {
		for _, s := range w.cat.EffectivePath(p) {
			if f := w.cat.Function(s, name); f != nil && !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	}
	return out
}

// resolveFuncQuiet is resolveFunc for an unqualified name under every
// search path that may be in effect, without reporting anything.
func (w *walker) resolveFuncQuiet(name string) *catalogFunc {
	if f := w.cat.ResolveFunction(name, w.path); f != nil {
		return f
	}
	for _, p := range w.paths {
		if f := w.cat.ResolveFunction(name, p); f != nil {
			return f
		}
	}
	return nil
}

func (w *walker) resolveFunc(schema, name string) *catalogFunc {
	if schema != "" {
		return w.cat.Function(schema, name)
	}
	if w.pathLost {
		w.pathLostProblem(name)
		return nil
	}
	if w.paths == nil {
		return w.cat.ResolveFunction(name, w.path)
	}
	for _, p := range w.paths {
		if f := w.cat.ResolveFunction(name, p); f != nil {
			return f
		}
	}
	return nil
}
