package differential

import (
	"math/rand/v2"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Wrap returns q, a SELECT, in the contexts that change what its names
// can reach: a subquery with and without a column alias list, an aliased
// join, a LATERAL item, a CTE, a set operation, a correlated subquery
// under each reference name q uses (over table outer, whose columns then
// compete with q's), and an INSERT ... SELECT into orders; and in the
// clauses the generators make little of: RETURNING, ON CONFLICT, CTE
// chains with a data-modifying statement, grouping sets, DISTINCT ON,
// subqueries in LIMIT and OFFSET, whole-row arguments (count(w.*)), row
// comparisons and named windows.
func Wrap(q, outer string) []string {
	out := []string{
		"INSERT INTO orders (id, customer_id, product_id, total) SELECT 100000 + row_number() OVER (), 1, 1, 0 FROM (" + q + ") AS w " +
			"ON CONFLICT (id) DO NOTHING RETURNING id, (SELECT count(*) FROM (" + q + ") AS r)",
		"WITH ins AS (INSERT INTO orders (id, customer_id, product_id, total) VALUES (100000, 1, 1, 0) RETURNING id), w AS (" + q + ") " +
			"SELECT * FROM w, ins",
		"SELECT count(*) FROM (" + q + ") AS w GROUP BY ROLLUP ((SELECT 1)), CUBE ((SELECT 2))",
		"SELECT DISTINCT ON (1) * FROM (" + q + ") AS w",
		"SELECT id FROM " + outer + " LIMIT (SELECT count(*) FROM (" + q + ") AS w) OFFSET (SELECT count(*) FROM (" + q + ") AS v)",
		"SELECT count(w.*), count(DISTINCT w) IS DISTINCT FROM 0 FROM (" + q + ") AS w",
		"SELECT ROW(w.*) IS DISTINCT FROM ROW(w.*), count(*) OVER win FROM (" + q + ") AS w WINDOW win AS (ORDER BY 1)",
		"SELECT * FROM (" + q + ") AS w",
		"SELECT * FROM (" + q + ") AS w(x)",
		"SELECT * FROM (orders AS o JOIN (" + q + ") AS w ON true) AS j",
		"SELECT * FROM orders AS o, LATERAL (" + q + ") AS w",
		"WITH w AS (" + q + ") SELECT * FROM w",
		"(" + q + ") UNION ALL (" + q + ")",
		"SELECT (SELECT count(*) FROM (" + q + ") AS w) FROM " + outer,
		"INSERT INTO orders (id, customer_id, product_id, total, status) SELECT 100000 + row_number() OVER (), 1, 1, 0, md5(w::text) FROM (" + q + ") AS w",
	}
	for _, ref := range refNames(q) {
		from := outer
		if ref != outer {
			from += " AS " + ref
		}
		out = append(out,
			"SELECT count(*) FROM "+from+" WHERE EXISTS ("+q+")",
			"SELECT (SELECT count(*) FROM ("+q+") AS w) FROM "+from,
		)
	}
	return out
}

// refNames lists the reference names q's FROM items use (aliases and
// relation names), without duplicates.
func refNames(q string) []string {
	tree, err := pg.Parse(q)
	if err != nil || len(tree.Stmts) != 1 {
		return nil
	}
	var out []string
	add := func(s string) {
		if s != "" && !contains(out, s) {
			out = append(out, s)
		}
	}
	for _, n := range fromNodes(tree.Stmts[0].GetStmt().GetSelectStmt()) {
		switch x := n.Node.(type) {
		case *pg.Node_RangeVar:
			if x.RangeVar.Alias != nil {
				add(x.RangeVar.Alias.Aliasname)
			} else {
				add(x.RangeVar.Relname)
			}
		case *pg.Node_RangeSubselect:
			if x.RangeSubselect.Alias != nil {
				add(x.RangeSubselect.Alias.Aliasname)
			}
		case *pg.Node_JoinExpr:
			if x.JoinExpr.Alias != nil {
				add(x.JoinExpr.Alias.Aliasname)
			}
		}
	}
	return out
}

// fromNodes returns every FROM item of sel and of the queries nested in
// its FROM clauses, set operations and CTEs, outermost first.
func fromNodes(sel *pg.SelectStmt) []*pg.Node {
	var out []*pg.Node
	var walkSel func(s *pg.SelectStmt)
	var walkItem func(n *pg.Node)
	walkItem = func(n *pg.Node) {
		if n == nil {
			return
		}
		out = append(out, n)
		switch x := n.Node.(type) {
		case *pg.Node_JoinExpr:
			walkItem(x.JoinExpr.Larg)
			walkItem(x.JoinExpr.Rarg)
		case *pg.Node_RangeSubselect:
			walkSel(x.RangeSubselect.Subquery.GetSelectStmt())
		}
	}
	walkSel = func(s *pg.SelectStmt) {
		if s == nil {
			return
		}
		if s.WithClause != nil {
			for _, c := range s.WithClause.Ctes {
				walkSel(c.GetCommonTableExpr().GetCtequery().GetSelectStmt())
			}
		}
		walkSel(s.Larg)
		walkSel(s.Rarg)
		for _, f := range s.FromClause {
			walkItem(f)
		}
	}
	walkSel(sel)
	return out
}

// selects returns sel and every SELECT nested in its FROM clauses, set
// operations and CTEs.
func selects(sel *pg.SelectStmt) []*pg.SelectStmt {
	if sel == nil {
		return nil
	}
	out := []*pg.SelectStmt{sel}
	if sel.WithClause != nil {
		for _, c := range sel.WithClause.Ctes {
			out = append(out, selects(c.GetCommonTableExpr().GetCtequery().GetSelectStmt())...)
		}
	}
	out = append(out, selects(sel.Larg)...)
	out = append(out, selects(sel.Rarg)...)
	for _, n := range fromNodes(sel) {
		if rs := n.GetRangeSubselect(); rs != nil {
			out = append(out, selects(rs.Subquery.GetSelectStmt())...)
		}
	}
	return out
}

// Rescope returns up to n variants of q (a SELECT) whose FROM clauses are
// re-scoped at random: relations given column alias lists that rename
// their first columns to names from pool, joins given aliases (hiding the
// items inside), LATERAL added or removed, FROM lists folded into JOINs
// (whose ON sees less), ON turned into NATURAL, relations wrapped in
// subqueries. A variant that Postgres rejects is still a fine input.
func Rescope(q string, r *rand.Rand, pool []string, n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		tree, err := pg.Parse(q)
		if err != nil || len(tree.Stmts) != 1 {
			return nil
		}
		sel := tree.Stmts[0].GetStmt().GetSelectStmt()
		if sel == nil {
			return nil
		}
		changed := false
		for k := 0; k < 1+r.IntN(3); k++ {
			changed = rescopeOnce(sel, r, pool) || changed
		}
		if !changed {
			continue
		}
		s, err := pg.Deparse(tree)
		if err != nil || s == q {
			continue
		}
		out = append(out, s)
	}
	return out
}

// rescopeOnce applies one random re-scoping to sel, reporting whether it
// found something to change.
func rescopeOnce(sel *pg.SelectStmt, r *rand.Rand, pool []string) bool {
	nodes := fromNodes(sel)
	if len(nodes) == 0 {
		return false
	}
	node := nodes[r.IntN(len(nodes))]
	switch x := node.Node.(type) {
	case *pg.Node_RangeVar:
		rv := x.RangeVar
		if r.IntN(3) == 0 {
			// (SELECT * FROM rel) AS alias: the same columns, one level down.
			alias := rv.Alias
			if alias == nil {
				alias = &pg.Alias{Aliasname: rv.Relname}
			}
			inner := &pg.RangeVar{Catalogname: rv.Catalogname, Schemaname: rv.Schemaname, Relname: rv.Relname,
				Inh: rv.Inh, Relpersistence: rv.Relpersistence}
			node.Node = &pg.Node_RangeSubselect{RangeSubselect: &pg.RangeSubselect{
				Subquery: &pg.Node{Node: &pg.Node_SelectStmt{SelectStmt: &pg.SelectStmt{
					TargetList: []*pg.Node{pg.MakeResTargetNodeWithVal(pg.MakeColumnRefNode([]*pg.Node{pg.MakeAStarNode()}, -1), -1)},
					FromClause: []*pg.Node{{Node: &pg.Node_RangeVar{RangeVar: inner}}},
					Op:         pg.SetOperation_SETOP_NONE,
				}}},
				Alias: alias,
			}}
			return true
		}
		if rv.Alias == nil {
			rv.Alias = &pg.Alias{Aliasname: rv.Relname}
		}
		var cols []*pg.Node
		for k := 0; k < 1+r.IntN(3); k++ {
			cols = append(cols, pg.MakeStrNode(pool[r.IntN(len(pool))]))
		}
		rv.Alias.Colnames = cols
		return true
	case *pg.Node_JoinExpr:
		j := x.JoinExpr
		switch {
		case j.Alias == nil && r.IntN(2) == 0:
			j.Alias = &pg.Alias{Aliasname: pool[r.IntN(len(pool))]}
		case j.Quals != nil && r.IntN(2) == 0:
			j.Quals, j.IsNatural = nil, true
		default:
			j.Alias = nil
		}
		return true
	case *pg.Node_RangeSubselect:
		x.RangeSubselect.Lateral = !x.RangeSubselect.Lateral
		return true
	}
	// Fold a FROM list into a chain of JOINs.
	for _, s := range selects(sel) {
		if len(s.FromClause) > 1 {
			joined := s.FromClause[0]
			for _, f := range s.FromClause[1:] {
				joined = &pg.Node{Node: &pg.Node_JoinExpr{JoinExpr: &pg.JoinExpr{
					Jointype: pg.JoinType_JOIN_INNER, Larg: joined, Rarg: f,
					Quals: &pg.Node{Node: &pg.Node_AConst{AConst: &pg.A_Const{
						Val: &pg.A_Const_Boolval{Boolval: &pg.Boolean{Boolval: true}}}}}}}}
			}
			s.FromClause = []*pg.Node{joined}
			return true
		}
	}
	return false
}

// SplitStatements splits sqlsmith's output into statements.
func SplitStatements(text string) []string {
	parts, err := pg.SplitWithScanner(text, true)
	if err != nil {
		return nil
	}
	out := parts[:0]
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// CaseFlipped returns q (a SELECT) with the qualifier of every two-part
// column reference (t.x, t.*) upper-cased, which the deparser quotes
// ("T".x), run as a correlated subquery under an outer item of each
// flipped name over table outer. A quoted qualifier keeps its letter
// case: it no longer names q's item t, and Postgres looks for "T" in the
// enclosing levels, where it is outer. A resolver that compared names
// without letter case would keep the inner t. ok is false when q has no
// qualifier to flip.
func CaseFlipped(q, outer string) (string, bool) {
	tree, err := pg.Parse(q)
	if err != nil || len(tree.Stmts) != 1 || tree.Stmts[0].GetStmt().GetSelectStmt() == nil {
		return "", false
	}
	var names []string
	var walk func(m protoreflect.Message)
	walk = func(m protoreflect.Message) {
		if cr, ok := m.Interface().(*pg.ColumnRef); ok && len(cr.Fields) == 2 {
			if s := cr.Fields[0].GetString_(); s != nil {
				if up := strings.ToUpper(s.Sval); up != s.Sval {
					s.Sval = up
					if !contains(names, up) {
						names = append(names, up)
					}
				}
			}
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsList() && fd.Message() != nil:
				l := v.List()
				for i := 0; i < l.Len(); i++ {
					walk(l.Get(i).Message())
				}
			case fd.Message() != nil && !fd.IsMap():
				walk(v.Message())
			}
			return true
		})
	}
	walk(tree.ProtoReflect())
	if len(names) == 0 {
		return "", false
	}
	s, err := pg.Deparse(tree)
	if err != nil {
		return "", false
	}
	from := make([]string, len(names))
	for i, n := range names {
		from[i] = outer + ` AS "` + n + `"`
	}
	return "SELECT count(*) FROM " + strings.Join(from, ", ") + " WHERE EXISTS (" + s + ")", true
}
