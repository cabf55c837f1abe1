package differential

import (
	"math/rand/v2"
	"strconv"
	"strings"
)

// Table is a relation the generator draws from: its name and columns in
// order.
type Table struct {
	Name string
	Cols []string
}

// Generator writes random statements over a schema, built to make names
// bind differently depending on Postgres's scoping rules: the same column
// names at several query levels (an outer query over a table with labelled
// columns, inner items renamed by alias lists to those names), items that
// a clause can or cannot see, joins with and without aliases, USING and
// NATURAL, functions and VALUES in FROM, CTEs and set operations.
// Most statements it writes are valid SQL; the rest fail in Postgres with
// errors that the differential test ignores.
type Generator struct {
	r      *rand.Rand
	tables []Table
	// sensitive is the table outer query levels read from; its column
	// names are the names inner levels are made to reuse.
	sensitive Table
	pool      []string
	refs      []string
	ctes      int
}

// NewGenerator returns a generator over tables. sensitive names the table
// whose columns are the interesting ones to reach by mistake.
func NewGenerator(seed uint64, tables []Table, sensitive string) *Generator {
	g := &Generator{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), tables: tables}
	seen := map[string]bool{}
	for _, t := range tables {
		if t.Name == sensitive {
			g.sensitive = t
		}
		for _, c := range t.Cols {
			if !seen[c] {
				seen[c] = true
				g.pool = append(g.pool, c)
			}
		}
	}
	g.pool = append(g.pool, "x", "v", "key", "value", "ordinality", "column1")
	for _, t := range tables {
		g.pool = append(g.pool, t.Name)
	}
	g.refs = []string{"c", "o", "t", "s", "j", "u", "w", sensitive}
	for _, t := range tables {
		g.refs = append(g.refs, t.Name)
	}
	return g
}

// gitem is an item of a FROM clause as the generator tracks it: the name it
// can be referred to by and its column names (approximately: the generator
// only uses them to pick names that are often valid).
type gitem struct {
	ref  string
	cols []string
}

// glevel is a query level being written.
type glevel struct {
	parent *glevel
	items  []gitem
	ctes   []gitem
}

func (g *Generator) chance(p float64) bool { return g.r.Float64() < p }

func pick[T any](g *Generator, xs []T) T { return xs[g.r.IntN(len(xs))] }

// Statement returns one random statement.
func (g *Generator) Statement() string {
	g.ctes = 0
	switch g.r.IntN(14) {
	case 0, 1, 2, 3:
		return g.selectStmt(nil, 0, 0)
	case 4, 5, 6, 7:
		return g.correlated()
	case 8:
		return "(" + g.selectStmt(nil, 0, 1) + ") UNION ALL (" + g.selectStmt(nil, 0, 1) + ")"
	case 9:
		return "(" + g.selectStmt(nil, 0, 1) + ") " + pick(g, []string{"EXCEPT", "INTERSECT", "UNION"}) + " (" + g.selectStmt(nil, 0, 1) + ")"
	case 10:
		return g.insertSelect()
	case 11:
		return g.update()
	case 12:
		return g.delete()
	default:
		return "SELECT * FROM (" + g.selectStmt(nil, 0, 0) + ") AS w ORDER BY 1"
	}
}

// correlated puts a query under an outer level over the sensitive table,
// whose columns its names can reach.
func (g *Generator) correlated() string {
	ref := pick(g, g.refs)
	from := g.sensitive.Name
	if ref != g.sensitive.Name {
		from += " AS " + ref
	}
	outer := &glevel{items: []gitem{{ref: ref, cols: g.sensitive.Cols}}}
	switch g.r.IntN(4) {
	case 0:
		return "SELECT " + ref + ".id, (" + g.selectStmt(outer, 1, 1) + ") FROM " + from
	case 1:
		return "SELECT count(*) FROM " + from + " WHERE EXISTS (" + g.selectStmt(outer, 1, 0) + ")"
	case 2:
		return "SELECT w.* FROM " + from + ", LATERAL (" + g.selectStmt(outer, 1, 0) + ") AS w"
	default:
		return "SELECT count(*) FROM " + from + " WHERE " + ref + ".id IN (" + g.selectStmt(outer, 1, 1) + ")"
	}
}

func (g *Generator) insertSelect() string {
	lv := &glevel{}
	from, items := g.fromList(lv, 1)
	lv.items = items
	return "INSERT INTO orders (id, customer_id, product_id, total, status) SELECT 100000 + row_number() OVER (), 1, 1, 0, (" +
		g.expr(lv, 1) + ")::text FROM " + from + " LIMIT 3"
}

func (g *Generator) update() string {
	ref := pick(g, []string{"orders", "o", "t"})
	target := "orders"
	if ref != "orders" {
		target += " AS " + ref
	}
	lv := &glevel{items: []gitem{{ref: ref, cols: g.table("orders").Cols}}}
	s := "UPDATE " + target + " SET status = (" + g.expr(lv, 1) + ")::text"
	if g.chance(0.7) {
		from, items := g.fromList(lv, 1)
		s += " FROM " + from
		lv.items = append(lv.items, items...)
	}
	return s + " WHERE " + g.cond(lv, 1)
}

func (g *Generator) delete() string {
	ref := pick(g, []string{"orders", "o", "t"})
	target := "orders"
	if ref != "orders" {
		target += " AS " + ref
	}
	lv := &glevel{items: []gitem{{ref: ref, cols: g.table("orders").Cols}}}
	s := "DELETE FROM " + target
	if g.chance(0.7) {
		from, items := g.fromList(lv, 1)
		s += " USING " + from
		lv.items = append(lv.items, items...)
	}
	return s + " WHERE " + g.cond(lv, 1)
}

func (g *Generator) table(name string) Table {
	for _, t := range g.tables {
		if t.Name == name {
			return t
		}
	}
	return g.tables[0]
}

// selectStmt writes a SELECT at depth below parent; width > 0 fixes the
// number of output columns.
func (g *Generator) selectStmt(parent *glevel, depth, width int) string {
	s, _ := g.selectNames(parent, depth, width)
	return s
}

// selectNames is selectStmt that also returns the output column names.
func (g *Generator) selectNames(parent *glevel, depth, width int) (string, []string) {
	lv := &glevel{parent: parent}
	var b strings.Builder
	if depth < 2 && g.chance(0.15) {
		b.WriteString(g.with(lv, depth))
	}
	from, items := g.fromList(lv, depth)
	lv.items = items
	targets, names := g.targets(lv, depth, width)
	b.WriteString("SELECT ")
	b.WriteString(targets)
	b.WriteString(" FROM ")
	b.WriteString(from)
	if g.chance(0.6) {
		b.WriteString(" WHERE ")
		b.WriteString(g.cond(lv, depth))
	}
	if g.chance(0.08) {
		b.WriteString(" GROUP BY ")
		if n := pick(g, names); n != "" && g.chance(0.5) {
			b.WriteString(n)
		} else {
			b.WriteString(g.colRef(lv))
		}
	}
	if g.chance(0.2) {
		b.WriteString(" ORDER BY ")
		switch g.r.IntN(3) {
		case 0:
			if n := pick(g, names); n != "" {
				b.WriteString(n)
			} else {
				b.WriteString("1")
			}
		case 1:
			b.WriteString("1")
		default:
			b.WriteString(g.colRef(lv))
		}
	}
	b.WriteString(" LIMIT 3")
	return b.String(), names
}

// with writes a WITH clause and makes its CTEs visible at lv.
func (g *Generator) with(lv *glevel, depth int) string {
	var b strings.Builder
	b.WriteString("WITH ")
	if g.chance(0.3) {
		b.WriteString("RECURSIVE ")
	}
	n := 1 + g.r.IntN(2)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		name := "q" + strconv.Itoa(g.ctes)
		if g.chance(0.3) {
			// A CTE named like a table hides it.
			name = pick(g, g.tables).Name
		}
		g.ctes++
		q, cols := g.selectNames(lv, depth+1, 0)
		if g.chance(0.3) && len(cols) > 0 {
			cols = append([]string(nil), cols...)
			cols[0] = pick(g, g.pool)
			b.WriteString(name + "(" + cols[0] + ")")
		} else {
			b.WriteString(name)
		}
		b.WriteString(" AS (" + q + ")")
		lv.ctes = append(lv.ctes, gitem{ref: name, cols: cols})
	}
	return b.String() + " "
}

// fromList writes a FROM list of one to three items.
func (g *Generator) fromList(lv *glevel, depth int) (string, []gitem) {
	n := 1
	if g.chance(0.35) {
		n++
	}
	if depth == 0 && g.chance(0.1) {
		n++
	}
	var parts []string
	var items []gitem
	for i := 0; i < n; i++ {
		// Later items are written with the earlier ones in view: a name
		// taken from them is a LATERAL reference, valid or not.
		sub := &glevel{parent: lv.parent, items: append(append([]gitem(nil), lv.items...), items...), ctes: lv.ctes}
		s, exposed, _ := g.fromItem(sub, depth)
		parts = append(parts, s)
		items = append(items, exposed...)
	}
	return strings.Join(parts, ", "), items
}

// fromItem writes one FROM item: the text, the items it exposes, and the
// item standing for it as a whole.
func (g *Generator) fromItem(lv *glevel, depth int) (string, []gitem, gitem) {
	k := g.r.IntN(100)
	switch {
	case k < 45 || depth >= 2:
		return g.relation(lv)
	case k < 62:
		return g.subquery(lv, depth)
	case k < 80:
		return g.join(lv, depth)
	case k < 90:
		return g.function(lv, depth)
	case k < 94:
		ref := pick(g, g.refs)
		cols := []string{"column1"}
		s := "(VALUES (" + g.expr(lv, depth+1) + "), (" + g.expr(lv, depth+1) + ")) AS " + ref
		if g.chance(0.5) {
			cols[0] = pick(g, g.pool)
			s += "(" + cols[0] + ")"
		}
		it := gitem{ref: ref, cols: cols}
		return s, []gitem{it}, it
	default:
		var ctes []gitem
		for l := lv; l != nil; l = l.parent {
			ctes = append(ctes, l.ctes...)
		}
		if len(ctes) == 0 {
			return g.relation(lv)
		}
		c := pick(g, ctes)
		it := gitem{ref: c.ref, cols: c.cols}
		s := c.ref
		if g.chance(0.5) {
			it.ref = pick(g, g.refs)
			s += " AS " + it.ref
		}
		return s, []gitem{it}, it
	}
}

// aliasName is a name for a column alias list: mostly a column name of
// the sensitive table (so that an inner item offers a harmless column
// under a name an outer level has too), else a table or reference name,
// else any column name.
func (g *Generator) aliasName() string {
	switch k := g.r.IntN(4); {
	case k < 2 && len(g.sensitive.Cols) > 0:
		return pick(g, g.sensitive.Cols)
	case k == 2:
		return pick(g, g.refs)
	default:
		return pick(g, g.pool)
	}
}

// aliasList renames the first columns of cols.
func (g *Generator) aliasList(cols []string) (string, []string) {
	if len(cols) == 0 {
		return "", cols
	}
	n := 1 + g.r.IntN(min(7, len(cols)))
	out := append([]string(nil), cols...)
	used := map[string]bool{}
	var names []string
	for i := 0; i < n; i++ {
		name := g.aliasName()
		for used[name] {
			name += "_"
		}
		used[name] = true
		names = append(names, name)
		out[i] = name
	}
	return "(" + strings.Join(names, ", ") + ")", out
}

func (g *Generator) relation(lv *glevel) (string, []gitem, gitem) {
	t := pick(g, g.tables)
	if g.chance(0.85) {
		// Mostly the tables the policies allow.
		t = g.table(pick(g, []string{"orders", "customers", "orders"}))
	}
	s := t.Name
	if g.chance(0.1) {
		s = "public." + s
	}
	it := gitem{ref: t.Name, cols: t.Cols}
	if g.chance(0.6) {
		it.ref = pick(g, g.refs)
		s += " AS " + it.ref
		if g.chance(0.4) {
			var list string
			list, it.cols = g.aliasList(t.Cols)
			s += list
		}
	}
	return s, []gitem{it}, it
}

func (g *Generator) subquery(lv *glevel, depth int) (string, []gitem, gitem) {
	q, names := g.selectNames(lv, depth+1, 0)
	s := "(" + q + ")"
	if g.chance(0.4) {
		s = "LATERAL " + s
	}
	it := gitem{ref: pick(g, g.refs), cols: names}
	s += " AS " + it.ref
	if g.chance(0.4) {
		var list string
		list, it.cols = g.aliasList(names)
		s += list
	}
	return s, []gitem{it}, it
}

func (g *Generator) join(lv *glevel, depth int) (string, []gitem, gitem) {
	l, lexp, ltop := g.fromItem(lv, depth+1)
	rlv := &glevel{parent: lv.parent, items: append(append([]gitem(nil), lv.items...), lexp...), ctes: lv.ctes}
	r, rexp, rtop := g.fromItem(rlv, depth+1)
	both := &glevel{parent: lv.parent, items: append(append([]gitem(nil), lexp...), rexp...), ctes: lv.ctes}
	kind := pick(g, []string{"JOIN", "JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN", "CROSS JOIN", "NATURAL JOIN", "USING"})
	var s string
	var using []string
	switch kind {
	case "CROSS JOIN", "NATURAL JOIN":
		s = l + " " + kind + " " + r
		if kind == "NATURAL JOIN" {
			using = common(ltop.cols, rtop.cols)
		}
	case "USING":
		u := common(ltop.cols, rtop.cols)
		if len(u) == 0 || g.chance(0.2) {
			u = []string{pick(g, g.pool)}
		}
		using = u[:1]
		s = l + " " + pick(g, []string{"JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN"}) + " " + r + " USING (" + using[0] + ")"
		if g.chance(0.2) {
			s += " AS " + pick(g, g.refs)
		}
	default:
		// The ON condition is written with the whole level in view: names
		// from outside the two sides resolve outward, or fail.
		view := both
		if g.chance(0.3) {
			view = &glevel{parent: lv.parent, items: append(append([]gitem(nil), lv.items...), both.items...)}
		}
		s = l + " " + kind + " " + r + " ON " + g.cond(view, depth+1)
	}
	cols := append([]string(nil), using...)
	for _, c := range append(append([]string(nil), ltop.cols...), rtop.cols...) {
		if !contains(using, c) {
			cols = append(cols, c)
		}
	}
	top := gitem{cols: cols}
	if g.chance(0.4) {
		top.ref = pick(g, g.refs)
		s = "(" + s + ") AS " + top.ref
		if g.chance(0.4) {
			var list string
			list, top.cols = g.aliasList(cols)
			s += list
		}
		// The items inside stay in the generator's view: a reference to
		// them is one Postgres resolves outward, or refuses.
		return s, append(append(append([]gitem(nil), lexp...), rexp...), top), top
	}
	if g.chance(0.5) {
		s = "(" + s + ")"
	}
	return s, append(append(append([]gitem(nil), lexp...), rexp...), top), top
}

func (g *Generator) function(lv *glevel, depth int) (string, []gitem, gitem) {
	var s string
	var cols []string
	fname := ""
	switch g.r.IntN(8) {
	case 0:
		s, fname = "generate_series(1, 2)", "generate_series"
	case 1:
		s, fname = "generate_series(1, length(("+g.colRef(lv)+")::text))", "generate_series"
	case 2:
		s, cols = `json_each('{"a": 1}')`, []string{"key", "value"}
	case 3:
		s, fname = "unnest(ARRAY[1, 2])", "unnest"
	case 4:
		s, cols = "unnest(ARRAY[1, 2], ARRAY['a', 'b'])", []string{"unnest", "unnest"}
	case 5:
		s, cols = `ROWS FROM (generate_series(1, 2), json_each('{"a": 1}'))`, []string{"generate_series", "key", "value"}
	case 6:
		ref := pick(g, g.refs)
		it := gitem{ref: ref, cols: []string{pick(g, g.pool), "b"}}
		s = `json_to_record('{"a": 1}') AS ` + ref + "(" + it.cols[0] + " text, b text)"
		return s, []gitem{it}, it
	default:
		s, cols = "json_populate_record(null::orders, '{}')", g.table("orders").Cols
	}
	if g.chance(0.2) {
		s += " WITH ORDINALITY"
		cols = append(append([]string(nil), cols...), "ordinality")
	}
	it := gitem{ref: fname, cols: cols}
	if g.chance(0.7) || fname == "" {
		it.ref = pick(g, g.refs)
		s += " AS " + it.ref
		if fname != "" && len(cols) == 0 {
			it.cols = []string{it.ref}
		}
		if g.chance(0.4) {
			var list string
			if len(it.cols) == 0 {
				it.cols = []string{fname}
			}
			list, it.cols = g.aliasList(it.cols)
			s += list
		}
	} else if len(cols) == 0 {
		it.cols = []string{fname}
	}
	return s, []gitem{it}, it
}

func common(a, b []string) []string {
	var out []string
	for _, x := range a {
		if contains(b, x) && !contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// targets writes a select list and returns the output names.
func (g *Generator) targets(lv *glevel, depth, width int) (string, []string) {
	if width == 0 && g.chance(0.12) {
		if len(lv.items) > 0 && g.chance(0.5) {
			it := pick(g, lv.items)
			if it.ref != "" {
				return it.ref + ".*", it.cols
			}
		}
		var names []string
		for _, it := range lv.items {
			names = append(names, it.cols...)
		}
		return "*", names
	}
	n := width
	if n == 0 {
		n = 1 + g.r.IntN(3)
	}
	parts := make([]string, 0, n)
	names := make([]string, 0, n)
	for i := 0; i < n; i++ {
		e := g.expr(lv, depth)
		name := lastName(e)
		if g.chance(0.3) {
			name = pick(g, g.pool)
			e += " AS " + name
		}
		parts = append(parts, e)
		names = append(names, name)
	}
	return strings.Join(parts, ", "), names
}

// lastName approximates the name Postgres gives an output column ("" when
// it is not a plain name).
func lastName(e string) string {
	i := strings.LastIndexAny(e, ". (")
	name := e[i+1:]
	if name == "" || name[0] >= '0' && name[0] <= '9' {
		return ""
	}
	for _, c := range name {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return ""
		}
	}
	return name
}

// visible lists the items a level sees, innermost level first.
func (lv *glevel) visible() []gitem {
	var out []gitem
	for l := lv; l != nil; l = l.parent {
		out = append(out, l.items...)
	}
	return out
}

// colRef writes a column reference: mostly a column of a visible item
// (qualified or not), else a name from the pool, a name qualified by a
// reference name, a schema-qualified name, or a whole row.
func (g *Generator) colRef(lv *glevel) string {
	vis := lv.visible()
	k := g.r.Float64()
	switch {
	case k < 0.7 && len(vis) > 0:
		var it gitem
		if len(lv.items) > 0 && g.chance(0.6) {
			it = pick(g, lv.items)
		} else {
			it = pick(g, vis)
		}
		col := ""
		if len(it.cols) > 0 {
			col = pick(g, it.cols)
		}
		if col == "" {
			return pick(g, g.pool)
		}
		if it.ref != "" && g.chance(0.5) {
			return it.ref + "." + col
		}
		return col
	case k < 0.85:
		return pick(g, g.pool)
	case k < 0.92:
		return pick(g, g.refs) + "." + pick(g, g.pool)
	case k < 0.95:
		t := pick(g, g.tables)
		return "public." + t.Name + "." + pick(g, t.Cols)
	default:
		if len(vis) > 0 {
			if it := pick(g, vis); it.ref != "" {
				return it.ref
			}
		}
		return pick(g, g.refs)
	}
}

// expr writes a scalar expression.
func (g *Generator) expr(lv *glevel, depth int) string {
	switch g.r.IntN(12) {
	case 0, 1, 2, 3, 4:
		return g.colRef(lv)
	case 5:
		return "(" + g.colRef(lv) + ")::text"
	case 6:
		if depth < 2 && g.chance(0.5) {
			return "(" + g.selectStmt(lv, depth+1, 1) + ")"
		}
		return g.colRef(lv)
	case 7:
		ref := pick(g, g.refs)
		if vis := lv.visible(); len(vis) > 0 && g.chance(0.7) {
			if it := pick(g, vis); it.ref != "" {
				ref = it.ref
			}
		}
		switch g.r.IntN(4) {
		case 0:
			return "row_to_json(" + ref + ")"
		case 1:
			return "(" + ref + ")." + pick(g, g.pool)
		case 2:
			return pick(g, g.pool) + "(" + ref + ")"
		default:
			return ref + ".row_to_json"
		}
	case 8:
		return "coalesce((" + g.expr(lv, depth+1) + ")::text, (" + g.expr(lv, depth+1) + ")::text)"
	case 9:
		return "CASE WHEN " + g.cond(lv, depth+1) + " THEN 'a' ELSE (" + g.colRef(lv) + ")::text END"
	case 10:
		return pick(g, []string{"1", "'a'", "NULL"})
	default:
		return "length((" + g.expr(lv, depth+1) + ")::text)"
	}
}

// cond writes a boolean condition.
func (g *Generator) cond(lv *glevel, depth int) string {
	switch g.r.IntN(6) {
	case 0:
		return "(" + g.expr(lv, depth+1) + ")::text = (" + g.expr(lv, depth+1) + ")::text"
	case 1:
		return g.expr(lv, depth+1) + " IS NOT NULL"
	case 2:
		if depth < 2 {
			return "EXISTS (" + g.selectStmt(lv, depth+1, 0) + ")"
		}
		return "true"
	case 3:
		return "(" + g.expr(lv, depth+1) + ")::text LIKE 'a%'"
	case 4:
		return "true"
	default:
		if depth < 2 {
			return "(" + g.colRef(lv) + ")::text IN (SELECT (" + g.selectStmt(lv, depth+1, 1) + ")::text)"
		}
		return "false"
	}
}

// Scoping writes a statement built from the pieces Postgres's scoping
// rules decide between: a decoy (a harmless column under a name the
// sensitive table has, or an item under the outer query's reference name)
// and a reference to that name, placed where the decoy is or is not
// visible (a FROM sibling with and without LATERAL, JOIN ON, an aliased
// join, a function, VALUES, a set operation, a CTE, TABLESAMPLE), usually
// under an outer query over the sensitive table; or a column alias list
// over a join or function whose column order decides what it renames; or
// a derived column whose Postgres-given name decides a NATURAL join or an
// outer reference.
func (g *Generator) Scoping() string {
	switch g.r.IntN(10) {
	case 0, 1, 2, 3, 4, 5:
		return g.scopedRef()
	case 6, 7:
		return g.positional()
	default:
		return g.naming()
	}
}

// scopedRef places a reference to a decoy's name at a random site.
func (g *Generator) scopedRef() string {
	n := pick(g, g.sensitive.Cols)
	outerRef := pick(g, []string{"c", g.sensitive.Name, "t"})
	d := "d"
	if g.chance(0.5) {
		d = outerRef
	}
	decoy := pick(g, []string{
		"orders AS " + d + "(" + n + ")",
		"(SELECT id AS " + n + " FROM orders) AS " + d,
		"generate_series(1, 2) AS " + d + "(" + n + ")",
		"(VALUES (1)) AS " + d + "(" + n + ")",
		"(orders AS " + d + "(" + n + ") JOIN orders AS p ON true)",
		"(orders AS " + d + "(" + n + ") JOIN orders AS p ON true) AS j",
		"(orders AS " + d + "(" + n + ") JOIN orders AS p USING (customer_id)) AS j(x)",
		"orders AS " + d + "(" + n + ") LEFT JOIN orders AS p ON true",
		`json_to_record('{"a": 1}') AS ` + d + "(" + n + " text)",
		"(orders AS q JOIN orders AS " + d + "(" + n + ") USING (customer_id))",
		"orders AS public(" + g.sensitive.Name + ", " + n + ")",
		"(SELECT " + d + ".* FROM orders AS " + d + "(" + n + ")) AS " + d,
		"(orders AS " + d + "(" + n + ") JOIN orders AS p USING (id) AS " + d + "2)",
	})
	var with string
	if g.chance(0.15) {
		// The decoy is a CTE: visible by name wherever its WITH is.
		with = "WITH " + d + "(" + n + ") AS (SELECT id FROM orders)"
		decoy = d
		if g.chance(0.3) {
			decoy = d + " AS " + d + "x(" + n + ")"
		}
	}
	ref := pick(g, []string{
		n, n, d + "." + n, d, "(" + d + ")." + n, n + "(" + d + ")", "row_to_json(" + d + ")",
		"public." + g.sensitive.Name + "." + n, d + ".row_to_json",
	})
	x := "(" + ref + ")::text"
	inner := pick(g, []string{
		"SELECT s.x FROM " + decoy + ", (SELECT " + x + " AS x) AS s",
		"SELECT s.x FROM " + decoy + ", LATERAL (SELECT " + x + " AS x) AS s",
		"SELECT 1 FROM " + decoy + ", orders AS p2 JOIN orders AS q2 ON " + x + " IS NOT NULL",
		"SELECT 1 FROM " + decoy + " JOIN orders AS q2 ON " + x + " IS NOT NULL",
		"SELECT s.x FROM " + decoy + " JOIN (SELECT " + x + " AS x) AS s ON true",
		"SELECT s.x FROM " + decoy + " JOIN LATERAL (SELECT " + x + " AS x) AS s ON true",
		"SELECT g2 FROM " + decoy + ", generate_series(1, length(" + x + ")) AS g2",
		"SELECT v.column1 FROM " + decoy + ", (VALUES (" + x + ")) AS v",
		"SELECT s.x FROM " + decoy + ", (SELECT " + x + " AS x UNION ALL SELECT NULL) AS s",
		"SELECT " + x + " FROM " + decoy,
		"SELECT 1 FROM " + decoy + ", orders AS q2 TABLESAMPLE bernoulli (length(" + x + "))",
		"SELECT s.x FROM " + decoy + ", (SELECT (SELECT " + x + ") AS x) AS s",
		"WITH w AS (SELECT " + x + " AS x) SELECT w.x FROM " + decoy + ", w",
		"SELECT s.x FROM " + decoy + ", LATERAL (SELECT y AS x FROM (SELECT " + x + " AS y) AS t2) AS s",
		"SELECT 1 FROM " + decoy + " WHERE " + x + " IS NOT NULL",
		"SELECT count(*) FROM " + decoy + " GROUP BY " + ref,
		"SELECT 1 FROM " + decoy + " ORDER BY " + ref,
		// Output names against input columns: ORDER BY and DISTINCT ON
		// take the output name, GROUP BY the input column first, window
		// clauses and expressions the input columns only.
		"SELECT o.id AS " + n + " FROM orders AS o ORDER BY " + n,
		"SELECT o.id AS " + n + " FROM orders AS o ORDER BY " + n + " || ''",
		"SELECT DISTINCT ON (" + n + ") o.id AS " + n + " FROM orders AS o",
		"SELECT o.id AS " + n + " FROM orders AS o GROUP BY " + n,
		"SELECT o.id AS " + n + ", row_number() OVER (ORDER BY " + n + ") FROM orders AS o",
		"SELECT o.id AS " + n + " FROM orders AS o WINDOW w AS (PARTITION BY " + n + ")",
		"SELECT o.id AS " + n + " FROM orders AS o UNION SELECT 1 ORDER BY " + n,
		"SELECT s2." + n + " FROM (SELECT " + d + ".* FROM " + decoy + ") AS s2",
	})
	if with != "" {
		if strings.HasPrefix(inner, "WITH ") {
			inner = with + ", " + strings.TrimPrefix(inner, "WITH ")
		} else {
			inner = with + " " + inner
		}
	}
	from := g.sensitive.Name
	if outerRef != g.sensitive.Name {
		from += " AS " + outerRef
	}
	switch g.r.IntN(6) {
	case 0:
		return inner
	case 1:
		return "SELECT count(*) FROM " + from + " WHERE EXISTS (" + inner + ")"
	case 2:
		return "INSERT INTO orders (id, customer_id, product_id, total, status) SELECT 100000, 1, 1, 0, (" +
			inner + " LIMIT 1)::text FROM " + from + " LIMIT 1"
	default:
		return "SELECT " + outerRef + ".id, (" + inner + " LIMIT 1) FROM " + from
	}
}

// positional renames the columns of a join or function by a column alias
// list and reads one of them.
func (g *Generator) positional() string {
	items := []string{g.sensitive.Name + " AS c", "orders AS o", "orders AS p",
		"generate_series(1, 2) WITH ORDINALITY AS g", `json_each('{"a": 1}') AS f`,
		`ROWS FROM (generate_series(1, 2), json_each('{"a": 1}')) AS r`,
		`json_to_record('{"a": 1}') AS r2(a int, b text)`, "unnest(ARRAY[1, 2], ARRAY['a', 'b']) AS u",
		"json_populate_record(null::orders, '{}') AS jp", "(VALUES (1, 2)) AS v"}
	var src string
	switch g.r.IntN(4) {
	case 0:
		src = g.sensitive.Name
	default:
		l, r := pick(g, items), pick(g, items)
		kind := pick(g, []string{" JOIN %s USING (id)", " JOIN %s USING (created_at)", " NATURAL JOIN %s",
			" CROSS JOIN %s", " LEFT JOIN %s ON true", " RIGHT JOIN %s USING (id)", " FULL JOIN %s USING (created_at)"})
		src = "(" + l + strings.Replace(kind, "%s", r, 1) + ")"
		if g.chance(0.4) {
			src = "(" + src + pick(g, []string{" JOIN %s USING (id)", " JOIN %s USING (created_at)", " NATURAL JOIN %s",
				" JOIN %s ON true"})
			src = strings.Replace(src, "%s", pick(g, items), 1) + ")"
		}
	}
	k := 1 + g.r.IntN(14)
	names := make([]string, k)
	for i := range names {
		names[i] = "a" + strconv.Itoa(i+1)
	}
	read := "j." + names[g.r.IntN(k)]
	if g.chance(0.2) {
		read = "j"
	}
	return "SELECT " + read + " FROM " + src + " AS j(" + strings.Join(names, ", ") + ") LIMIT 1"
}

// naming makes a derived column whose name Postgres figures from its
// expression, and joins on it by name or refers to it from inside an
// outer query over the sensitive table.
func (g *Generator) naming() string {
	n := pick(g, g.sensitive.Cols)
	e := pick(g, []string{
		"(SELECT * FROM (SELECT v AS " + n + ") AS t3)",
		"(SELECT " + n + ")",
		"CASE WHEN false THEN '' ELSE " + n + " END",
		"CASE WHEN false THEN " + n + " ELSE 'a' END",
		n + "::text", "(" + n + ")::name", "coalesce(" + n + ", '')", "nullif(" + n + ", '')",
		n + " COLLATE \"C\"", "lower(" + n + ")", n + " || ''", "ARRAY[" + n + "]", "ROW(" + n + ")",
		"greatest(" + n + ", '')", "(ROW(" + n + ")::record)",
	})
	derived := "(SELECT " + e + " FROM (SELECT '078-05-1120'::text AS " + n + ", '078-05-1120'::text AS v) AS t4) AS s"
	if g.chance(0.5) {
		return "SELECT count(*) FROM " + g.sensitive.Name + " NATURAL JOIN " + derived
	}
	return "SELECT (SELECT " + n + " FROM " + derived + " LIMIT 1) FROM " + g.sensitive.Name
}
