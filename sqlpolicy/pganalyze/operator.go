package pganalyze

import (
	"fmt"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/keyholedb/keyhole/catalog"
)

// An operator runs its function. Postgres looks an unqualified operator
// up like a function (oper, OpernameGetCandidates): among the operators
// of the name in every schema of the path, an exact match of the operand
// types first, else the best match by implicit casts. So a user operator
// can run under a built-in's symbol (public.+(integer, text) for
// customer_id + status::text), and operators are also applied implicitly
// by name: IN, IS DISTINCT FROM, NULLIF, BETWEEN, CASE x WHEN, JOIN USING
// and NATURAL JOIN use "=", "<>", "<=" and ">=" found this way.
//
// Where a user operator of the name is on the path, the analyzer reports
// its function as called (FuncRef.Via names the operator), unless the
// operand types are known and match an operator exactly, which is then
// the one called. Operators from pg_catalog run built-in functions, and
// a name no user operator has costs one map lookup per schema.

// opCand is an operator found under a name.
type opCand struct {
	schema, name string
	op           catalog.Operator
}

// operatorCandidates returns the operators called name: in schema, or in
// every schema of the search paths that may be in effect, in path order.
func (w *walker) operatorCandidates(schema, name string) (cands []opCand, user bool) {
	if !w.a.index().userOps[name] {
		// Only built-in operators have the name: nothing to report.
		return nil, false
	}
	add := func(s string) {
		for _, op := range w.cat.OperatorsNamed(s, name) {
			cands = append(cands, opCand{schema: s, name: name, op: op})
			if !w.builtinFunc(op.Function) {
				user = true
			}
		}
	}
	if schema != "" {
		add(schema)
		return cands, user
	}
	seen := map[string]bool{}
	for _, p := range w.candidatePaths() {
		for _, s := range w.cat.EffectivePath(p) {
			if !seen[s] {
				seen[s] = true
				add(s)
			}
		}
	}
	return cands, user
}

// builtinFunc reports whether "schema.name" is a built-in function.
func (w *walker) builtinFunc(qualifiedName string) bool {
	schema, name, _ := strings.Cut(qualifiedName, ".")
	f := w.cat.Function(schema, name)
	return f != nil && f.Builtin
}

// operand is what the analyzer knows of one side of an operator.
type operand struct {
	typ string
	// known: typ is the operand's type; unknownLit: a string literal,
	// whose type Postgres takes from the other side for an exact match.
	known, unknownLit bool
}

// operandOf types an operand (nil: the missing left side of a prefix
// operator).
func (w *walker) operandOf(n *pg.Node, sc *scope) operand {
	if n == nil {
		return operand{known: true}
	}
	if c := n.GetAConst(); c != nil {
		if _, ok := c.Val.(*pg.A_Const_Sval); ok && !c.Isnull {
			return operand{unknownLit: true}
		}
	}
	t, ok := w.exprType(n, sc)
	return operand{typ: t, known: ok}
}

// operator reports what applying operator schema.name to l and r runs.
func (w *walker) operator(schema, name string, l, r *pg.Node, sc *scope) {
	cands, user := w.operatorCandidates(schema, name)
	if !user {
		return
	}
	if l.GetAConst() != nil || r.GetAConst() != nil {
		// The operator chosen can depend on the constant's type, which
		// the decision cache's normalized text does not keep.
		w.st.LiteralSensitive = true
	}
	w.operatorTyped(schema, name, cands, w.operandOf(l, sc), w.operandOf(r, sc))
}

// operatorTyped reports the function of the operator an exact match of
// the operand types picks, or of every user operator among cands.
func (w *walker) operatorTyped(schema, name string, cands []opCand, l, r operand) {
	// A string literal takes the other side's type for the exact match
	// only (binary_oper_exact); failing one, it is of unknown type, which
	// converts to any parameter type: '1' + status has no text + text,
	// and reaches public.+(integer, text).
	el, er := l, r
	if l.unknownLit && r.known && r.typ != "" {
		el = operand{typ: r.typ, known: true}
	}
	if r.unknownLit && l.known && l.typ != "" {
		er = operand{typ: l.typ, known: true}
	}
	if el.known && er.known {
		for _, c := range cands {
			if c.op.Left == el.typ && c.op.Right == er.typ {
				w.operatorFunc(c)
				return
			}
		}
	}
	for _, c := range cands {
		user := !w.builtinFunc(c.op.Function)
		if (c.op.Left == "" || w.viable(l, c.op.Left, user)) && w.viable(r, c.op.Right, user) {
			w.operatorFunc(c)
		}
	}
}

// operatorFunc reports the function of a user operator.
func (w *walker) operatorFunc(c opCand) {
	if w.builtinFunc(c.op.Function) {
		return
	}
	w.implicitFunc(c.op.Function, fmt.Sprintf("operator %s.%s(%s, %s)", c.schema, c.name, orNone(c.op.Left), c.op.Right))
}

func orNone(t string) string {
	if t == "" {
		return "none"
	}
	return t
}

// operatorNamed splits an operator's name list into schema and name.
func operatorNamed(ns []*pg.Node) (schema, name string, ok bool) {
	parts := names(ns)
	switch {
	case len(parts) != len(ns) || len(parts) == 0 || len(parts) > 2:
		return "", "", false
	case len(parts) == 2:
		return parts[0], parts[1], true
	}
	return "", parts[0], true
}

// aexprOperators reports the operators an A_Expr applies.
func (w *walker) aexprOperators(e *pg.A_Expr, sc *scope) {
	schema, name, ok := operatorNamed(e.Name)
	if !ok {
		return
	}
	switch e.Kind {
	case pg.A_Expr_Kind_AEXPR_OP, pg.A_Expr_Kind_AEXPR_DISTINCT, pg.A_Expr_Kind_AEXPR_NOT_DISTINCT,
		pg.A_Expr_Kind_AEXPR_NULLIF, pg.A_Expr_Kind_AEXPR_LIKE, pg.A_Expr_Kind_AEXPR_ILIKE:
		w.operator(schema, name, e.Lexpr, e.Rexpr, sc)
	case pg.A_Expr_Kind_AEXPR_OP_ANY, pg.A_Expr_Kind_AEXPR_OP_ALL:
		// x op ANY ('{...}'): the operator is looked up with the array
		// literal's element of unknown type (make_scalar_array_op), as
		// for x op '...'; anything else is not typed here.
		if c := e.Rexpr.GetAConst(); c != nil && c.GetSval() != nil {
			if _, user := w.operatorCandidates(schema, name); user {
				// Which reading applies depends on the constant.
				w.st.LiteralSensitive = true
			}
			w.operator(schema, name, e.Lexpr, e.Rexpr, sc)
		} else if cands, user := w.operatorCandidates(schema, name); user {
			w.operatorTyped(schema, name, cands, w.operandOf(e.Lexpr, sc), operand{})
		}
	case pg.A_Expr_Kind_AEXPR_IN:
		// x IN (a, b): the list's common type with x (string literals
		// take x's), compared with "=" or "<>".
		for _, it := range e.Rexpr.GetList().GetItems() {
			w.operator(schema, name, e.Lexpr, it, sc)
		}
	case pg.A_Expr_Kind_AEXPR_BETWEEN, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN,
		pg.A_Expr_Kind_AEXPR_BETWEEN_SYM, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM:
		for _, bound := range e.Rexpr.GetList().GetItems() {
			for _, op := range []string{"<=", ">=", "<", ">"} {
				w.operator("", op, e.Lexpr, bound, sc)
			}
		}
	default:
		// SIMILAR TO and anything newer: the operands are not typed here.
		w.untypedOp(schema, name)
	}
}

// untypedOperator reports an operator applied to operands the analyzer
// does not type (ORDER BY ... USING, x op ANY (subquery)).
func (w *walker) untypedOperator(ns []*pg.Node) {
	if schema, name, ok := operatorNamed(ns); ok {
		w.untypedOp(schema, name)
	}
}

func (w *walker) untypedOp(schema, name string) {
	if cands, user := w.operatorCandidates(schema, name); user {
		w.operatorTyped(schema, name, cands, operand{}, operand{})
	}
}

// joinEquality reports the "=" a JOIN USING or NATURAL JOIN applies to
// column li of l and ri of r (transformJoinUsingClause looks it up by
// name).
func (w *walker) joinEquality(l, r *item, li, ri int) {
	cands, user := w.operatorCandidates("", "=")
	if !user {
		return
	}
	w.operatorTyped("", "=", cands, itemColOperand(l, li), itemColOperand(r, ri))
}

// itemColOperand types column i of a plain relation's item.
func itemColOperand(it *item, i int) operand {
	if i < 0 || i >= len(it.cols) || it.rel == nil || len(it.alts) > 0 || len(it.cols[i].lin) == 0 {
		return operand{}
	}
	base := it.cols[i].lin[0]
	if base.Rel.Schema != it.rel.Schema || base.Rel.Name != it.rel.Name {
		return operand{}
	}
	col := it.rel.Column(base.Column)
	if col == nil {
		return operand{}
	}
	t, ok := builtinType(col.Type)
	return operand{typ: t, known: ok}
}
