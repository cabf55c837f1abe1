package pganalyze

import (
	"slices"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// A call of an unqualified function name reaches one of the functions of
// that name in the schemas of the search path (funcCandidates); which one
// depends on the argument types. The analyzer does not type expressions
// in general, but where it knows every argument's type and one overload
// matches them exactly, Postgres's choice is certain: func_get_detail
// takes an exact match before any other rule, and between identical
// signatures the schema earlier on the path hides the later one
// (FuncnameGetCandidates). exactCallee finds that function; everywhere
// else every candidate counts as called.

// exactCallee returns the function an unqualified call of one of cands
// reaches when the argument types decide it, or nil.
func (w *walker) exactCallee(name string, cands []*catalogFunc, fc *pg.FuncCall, sc *scope) *catalogFunc {
	if fc == nil || len(w.candidatePaths()) != 1 || fc.FuncVariadic || len(cands) < 2 {
		return nil
	}
	path := w.candidatePaths()[0]
	args := fc.Args
	if fc.AggStar {
		args = nil
	}
	types := make([]string, len(args))
	for i, a := range args {
		if a.GetNamedArgExpr() != nil {
			return nil
		}
		t, ok := w.exprType(a, sc)
		if !ok {
			return nil
		}
		types[i] = t
	}
	var exact *catalogFunc
	for _, s := range w.cat.EffectivePath(path) {
		f := w.cat.Function(s, name)
		if f == nil || !slices.Contains(cands, f) {
			continue
		}
		for _, sig := range f.Overloads {
			if sig.Variadic || (len(sig.Args)-sig.Defaults <= len(types) && len(types) < len(sig.Args)) {
				// Defaults and VARIADIC expand into signatures that may
				// also fit: leave the choice open.
				return nil
			}
			if exact == nil && slices.Equal(sig.Args, types) {
				exact = f
			}
		}
	}
	return exact
}

// viableCallees drops from cands the functions none of whose overloads
// can take the call's arguments (their count, and the types the analyzer
// knows): Postgres never calls them.
func (w *walker) viableCallees(cands []*catalogFunc, fc *pg.FuncCall, sc *scope) []*catalogFunc {
	if fc == nil {
		return cands
	}
	for _, a := range fc.Args {
		if a.GetAConst() != nil {
			// The candidates that fit, and the one chosen, depend on the
			// constant's type (an integer picks length(integer), a string
			// literal may pick another function), and the decision cache
			// shares analyses among texts that differ in constants of any
			// type.
			w.st.LiteralSensitive = true
			break
		}
	}
	if fc.FuncVariadic || len(fc.AggOrder) > 0 || fc.AggWithinGroup {
		return cands
	}
	args := fc.Args
	if fc.AggStar {
		args = nil
	}
	ops := make([]operand, len(args))
	for i, a := range args {
		if a == nil || a.GetNamedArgExpr() != nil {
			return cands
		}
		ops[i] = w.operandOf(a, sc)
	}
	out := cands[:0:0]
	for _, f := range cands {
		if w.viableFunc(f, ops) {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		// Nothing fits: Postgres fails the call; report them all.
		return cands
	}
	return out
}

// exprType returns the type of an expression as format_type prints it
// without a type modifier, when the analyzer can tell it exactly: a
// column of a relation, a constant of a determined type, a cast to a
// built-in type.
func (w *walker) exprType(n *pg.Node, sc *scope) (string, bool) {
	switch x := n.GetNode().(type) {
	case *pg.Node_TypeCast:
		return w.typeName(x.TypeCast.TypeName)
	case *pg.Node_AConst:
		c := x.AConst
		switch v := c.Val.(type) {
		case *pg.A_Const_Ival:
			return "integer", !c.Isnull
		case *pg.A_Const_Fval:
			// Digits only: bigint when it fits (make_const), else numeric.
			s := v.Fval.GetFval()
			if strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }) < 0 {
				if _, err := strconv.ParseInt(s, 10, 64); err == nil {
					return "bigint", true
				}
			}
			return "numeric", !c.Isnull
		case *pg.A_Const_Boolval:
			return "boolean", !c.Isnull
		}
		// A string literal is of type unknown until a candidate is chosen.
		return "", false
	case *pg.Node_ColumnRef:
		return w.columnType(x.ColumnRef, sc)
	}
	return "", false
}

// columnType returns the type of the relation column a column reference
// binds to, when it binds to exactly one column of a plain relation or
// view (not a derived table, CTE or function, whose column types the
// analyzer does not know).
func (w *walker) columnType(cr *pg.ColumnRef, sc *scope) (string, bool) {
	var buf [4]string
	parts, star, ok := refParts(cr, buf[:])
	if !ok || star || len(parts) == 0 || len(parts) > 4 {
		return "", false
	}
	name := parts[len(parts)-1]
	var its []*item
	if len(parts) == 1 {
		for s := sc; s != nil && len(its) == 0; s = s.parent {
			for _, it := range s.ns {
				if !it.colsVisible || !s.sees(it) {
					continue
				}
				if d, m := w.itemColumn(it, name, nil, false); m {
					return "", false
				} else if d {
					its = append(its, it)
				}
			}
		}
	} else {
		q := parts[:len(parts)-1]
		var it *item
		switch len(q) {
		case 1:
			it = w.refItem(sc, "", q[0])
		case 2:
			it = w.refItem(sc, q[0], q[1])
		case 3:
			if w.cat.Database != "" && q[0] == w.cat.Database {
				it = w.refItem(sc, q[1], q[2])
			}
		}
		if it != nil {
			its = []*item{it}
		}
	}
	if len(its) != 1 {
		return "", false
	}
	it := its[0]
	if it.rel == nil || len(it.alts) > 0 {
		return "", false
	}
	var found *outCol
	for i := range it.cols {
		c := &it.cols[i]
		if c.kind == colRun {
			return "", false
		}
		if c.kind == colNamed && c.name == name {
			if found != nil {
				return "", false
			}
			found = c
		}
	}
	if found == nil || len(found.lin) == 0 {
		return "", false
	}
	base := found.lin[0]
	if base.Rel.Schema != it.rel.Schema || base.Rel.Name != it.rel.Name {
		return "", false
	}
	col := it.rel.Column(base.Column)
	if col == nil {
		return "", false
	}
	return builtinType(col.Type)
}

// builtinType returns a column type without its modifiers when it is one
// of the built-in types the analyzer knows by name (a domain or a user
// type converts in ways it does not follow).
func builtinType(t string) (string, bool) {
	t = stripTypmod(t)
	if builtinTypes[strings.TrimSuffix(t, "[]")] {
		return t, true
	}
	return "", false
}

// builtinTypes are format_type's spellings in builtinTypeNames.
var builtinTypes = func() map[string]bool {
	m := map[string]bool{}
	for _, t := range builtinTypeNames {
		m[t] = true
	}
	return m
}()

// viable reports whether a value of the operand's type can be passed as
// declared type to: the same type, a polymorphic or "any" parameter, an
// implicit cast, or a type the analyzer does not know. user is set for a
// parameter of user code (a function or operator not built in), which
// may be of a domain.
func (w *walker) viable(o operand, to string, user bool) bool {
	if !o.known || o.unknownLit || o.typ == to || to == "\"any\"" || strings.HasPrefix(to, "any") {
		return true
	}
	if user && strings.HasSuffix(to, "[]") && strings.HasSuffix(o.typ, "[]") {
		// An array converts to another array type element by element
		// (array coercion), a conversion pg_cast does not list either:
		// public.upper(bigint[]) takes an integer[].
		return w.viable(operand{typ: strings.TrimSuffix(o.typ, "[]"), known: true},
			strings.TrimSuffix(to, "[]"), user)
	}
	if user && !builtinTypes[strings.TrimSuffix(to, "[]")] {
		// A parameter of a type the analyzer does not name may be a
		// domain, which takes its base type (and whatever converts to
		// that implicitly): a coercion pg_cast does not list. So
		// public.cardinality(customer_ref), over a domain of integer,
		// is what cardinality(customer_id) calls, pg_catalog's
		// cardinality(anyarray) taking arrays only. (Built-in
		// functions take no domains.)
		return true
	}
	for _, t := range w.cat.ImplicitCasts[o.typ] {
		if t == to {
			return true
		}
	}
	return false
}

// viableFunc reports whether some overload of f can take args.
func (w *walker) viableFunc(f *catalogFunc, args []operand) bool {
	if len(f.Overloads) == 0 {
		return true
	}
	for _, sig := range f.Overloads {
		n := len(sig.Args)
		if len(args) > n && !sig.Variadic || len(args) < n-sig.Defaults && !(sig.Variadic && len(args) >= n-1) {
			continue
		}
		ok := true
		for i, a := range args {
			to := ""
			if i < n {
				to = sig.Args[i]
			} else {
				to = sig.Args[n-1]
			}
			if sig.Variadic && i >= n-1 {
				// VARIADIC int[] takes integers.
				to = strings.TrimSuffix(sig.Args[n-1], "[]")
				if sig.Args[n-1] == "\"any\"" || strings.HasPrefix(sig.Args[n-1], "any") {
					to = sig.Args[n-1]
				}
			}
			if !w.viable(a, to, !f.Builtin) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// stripTypmod removes the type modifiers format_type prints:
// "numeric(10,2)" is numeric, "timestamp(3) with time zone" is
// timestamp with time zone, "character varying(20)[]" is character
// varying[].
func stripTypmod(t string) string {
	for {
		i := strings.IndexByte(t, '(')
		if i < 0 {
			return t
		}
		j := strings.IndexByte(t[i:], ')')
		if j < 0 {
			return t
		}
		t = strings.TrimRight(t[:i], " ") + t[i+j+1:]
	}
}

// builtinTypeNames maps the names the grammar gives built-in types (the
// pg_catalog names of int, varchar, timestamptz ...) and common unqualified
// type names to format_type's spelling.
var builtinTypeNames = map[string]string{
	"int2": "smallint", "smallint": "smallint", "int4": "integer", "int": "integer", "integer": "integer",
	"int8": "bigint", "bigint": "bigint", "float4": "real", "real": "real", "float8": "double precision",
	"numeric": "numeric", "decimal": "numeric", "bool": "boolean", "boolean": "boolean", "text": "text",
	"varchar": "character varying", "bpchar": "character", "date": "date",
	"time": "time without time zone", "timetz": "time with time zone",
	"timestamp": "timestamp without time zone", "timestamptz": "timestamp with time zone",
	"interval": "interval", "bytea": "bytea", "json": "json", "jsonb": "jsonb", "uuid": "uuid",
	"oid": "oid", "name": "name", "xml": "xml", "inet": "inet", "cidr": "cidr", "money": "money",
	"tsvector": "tsvector", "tsquery": "tsquery", "regclass": "regclass",
}

// typeName returns format_type's spelling of a built-in type named in a
// cast. An unqualified name resolves along the search path, so it is
// trusted only while pg_catalog comes first.
func (w *walker) typeName(tn *pg.TypeName) (string, bool) {
	if tn == nil || tn.Setof || tn.PctType {
		return "", false
	}
	ns := names(tn.Names)
	if len(ns) != len(tn.Names) || len(ns) == 0 || len(ns) > 2 {
		return "", false
	}
	if len(ns) == 2 && ns[0] != "pg_catalog" {
		return "", false
	}
	if len(ns) == 1 {
		for _, p := range w.candidatePaths() {
			if p := w.cat.EffectivePath(p); len(p) == 0 || p[0] != "pg_catalog" {
				return "", false
			}
		}
	}
	t, ok := builtinTypeNames[ns[len(ns)-1]]
	if !ok {
		return "", false
	}
	if len(tn.ArrayBounds) > 0 {
		t += "[]"
	}
	return t, true
}
