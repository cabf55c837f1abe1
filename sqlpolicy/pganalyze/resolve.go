package pganalyze

import (
	"fmt"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// Name resolution follows Postgres's transformColumnRef (parse_expr.c)
// and the namespace searches of parse_relation.c:
//
//   - x: a column of a visible item, innermost query level first
//     (colNameToVar); only if no level has one, an item named x as a
//     whole-row reference.
//   - t.x, s.t.x, d.s.t.x: the item called t (refnameNamespaceItem;
//     with a schema only an unaliased reference to that very relation),
//     innermost level first, then its column x; if it has none, the
//     function x applied to t's whole row (attribute notation). A
//     three-part name is never item.column.field, a two-part one never
//     column.field.
//   - t.*, s.t.*, d.s.t.*, *: every column of the item(s).
//
// Where the analyzer cannot tell which column a name binds to (a run of
// columns it cannot name), it reads every column the name may bind to,
// including those of outer levels Postgres would reach if the run does
// not have it: the reads are a superset of Postgres's.

// systemColumns are the system columns a plain relation has
// (specialAttNum); they resolve after the user columns.
var systemColumns = map[string]bool{
	"ctid": true, "xmin": true, "cmin": true, "xmax": true, "cmax": true, "tableoid": true,
}

// levelColumn reports how name matches the visible items of one level:
// definite when a named column (or a system column) matches, maybe when
// an item has a run the name may be in. With report set it reads the
// matches into sk: the definite ones, or else every run.
func (w *walker) levelColumn(s *scope, name string, sk sink, report bool) (definite, maybe bool) {
	for _, it := range s.ns {
		if !it.colsVisible || !s.sees(it) {
			continue
		}
		d, m := w.itemColumn(it, name, sk, report)
		if d && report {
			w.lateralRef(it)
		}
		definite = definite || d
		maybe = maybe || m
	}
	if report && !definite && maybe {
		for _, it := range s.ns {
			if it.colsVisible && s.sees(it) {
				w.itemRuns(it, sk)
			}
		}
	}
	return definite, maybe
}

// itemColumn matches name against the columns of it (scanRTEForColumn),
// reading a definite match into sk when report is set.
func (w *walker) itemColumn(it *item, name string, sk sink, report bool) (definite, maybe bool) {
	for i := range it.cols {
		c := &it.cols[i]
		switch {
		case c.kind == colRun:
			maybe = true
		case c.kind == colNamed && c.name == name:
			definite = true
			if report {
				w.read(sk, c.lin)
			}
		}
	}
	if !definite && it.sysCols && systemColumns[name] {
		definite = true
		if report {
			w.systemColumn(it, name)
		}
	}
	return definite, maybe
}

// itemRuns reads the lineage of the runs of it.
func (w *walker) itemRuns(it *item, sk sink) {
	for i := range it.cols {
		if it.cols[i].kind == colRun {
			w.read(sk, it.cols[i].lin)
		}
	}
}

// systemColumn refuses a system column: its privileges (and what it
// reveals) are not modelled by the policy.
func (w *walker) systemColumn(it *item, name string) {
	rel := sqlpolicy.Rel{}
	if it.rel != nil {
		rel = sqlpolicy.Rel{Schema: it.rel.Schema, Name: it.rel.Name}
	}
	w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnsupported, Rel: rel, Column: name,
		Detail: fmt.Sprintf("system column %s of %s is not modelled", name, it.name)})
}

// lateralRef refuses a reference that reaches an item only through
// LATERAL where Postgres forbids it (check_lateral_ref_ok): the left side
// of a RIGHT or FULL join, the target of an UPDATE or DELETE from its own
// FROM list.
func (w *walker) lateralRef(it *item) {
	if it.lateralOnly && !it.lateralOK {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownColumn,
			Detail: fmt.Sprintf("invalid reference to FROM-clause entry for table %q", it.name)})
	}
}

// lookupColumn resolves an unqualified column name (colNameToVar),
// reading every column it may bind to into sk.
func (w *walker) lookupColumn(sc *scope, name string, sk sink) (definite, maybe bool) {
	for s := sc; s != nil; s = s.parent {
		d, m := w.levelColumn(s, name, sk, true)
		maybe = maybe || m
		if d {
			return true, maybe
		}
	}
	return false, maybe
}

// probeColumn is lookupColumn without reading anything; localOnly stops
// at the innermost level.
func (w *walker) probeColumn(sc *scope, name string, localOnly bool) (definite, maybe bool) {
	for s := sc; s != nil; s = s.parent {
		d, m := w.levelColumn(s, name, nil, false)
		maybe = maybe || m
		if d {
			return true, maybe
		}
		if localOnly {
			break
		}
	}
	return false, maybe
}

// refItem finds the item a qualifier names (refnameNamespaceItem):
// innermost level first, among the items that can be named. A schema
// qualifier matches only an unaliased reference to that very relation.
func (w *walker) refItem(sc *scope, schema, name string) *item {
	var rel *catalog.Relation
	if schema != "" {
		if rel = w.cat.Relation(schema, name); rel == nil {
			return nil
		}
	}
	for s := sc; s != nil; s = s.parent {
		for _, it := range s.ns {
			if !it.relVisible || !s.sees(it) {
				continue
			}
			if rel != nil {
				if !it.aliased && it.isRel(rel) {
					w.lateralRef(it)
					return it
				}
			} else if it.name == name {
				w.lateralRef(it)
				return it
			}
		}
	}
	return nil
}

// refParts appends the names of a ColumnRef to buf (callers pass a
// small array so that the common case does not allocate), and reports
// whether it ends in *.
func refParts(cr *pg.ColumnRef, buf []string) (parts []string, star, ok bool) {
	fields := cr.Fields
	if len(fields) > 0 {
		if _, isStar := fields[len(fields)-1].Node.(*pg.Node_AStar); isStar {
			star = true
			fields = fields[:len(fields)-1]
		}
	}
	parts = buf[:0]
	for _, f := range fields {
		s, isStr := strVal(f)
		if !isStr {
			return nil, false, false
		}
		parts = append(parts, s)
	}
	return parts, star, true
}

// columnRef reports the columns a ColumnRef reads.
func (w *walker) columnRef(cr *pg.ColumnRef, sc *scope, sk sink) {
	var buf [4]string
	parts, star, ok := refParts(cr, buf[:])
	if !ok {
		w.unsupported("column reference with a field of an unexpected kind")
		return
	}
	if star {
		if len(parts) == 0 {
			// A bare * outside a select list: every column of the level.
			for _, it := range sc.ns {
				if it.colsVisible && sc.sees(it) {
					w.readItem(sk, it)
				}
			}
			return
		}
		if it := w.qualifier(sc, parts); it != nil {
			w.readItem(sk, it)
		}
		return
	}
	switch len(parts) {
	case 1:
		definite, maybe := w.lookupColumn(sc, parts[0], sk)
		if definite {
			return
		}
		if it := w.refItem(sc, "", parts[0]); it != nil {
			w.readItem(sk, it)
			return
		}
		if !maybe {
			w.unknownColumn(parts[0])
		}
	case 2, 3, 4:
		it := w.qualifier(sc, parts[:len(parts)-1])
		if it != nil {
			w.qualifiedColumn(it, parts[len(parts)-1], sk)
		}
	default:
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownColumn, Column: strings.Join(parts, "."),
			Detail: fmt.Sprintf("improper qualified name (too many dotted names): %s", strings.Join(parts, "."))})
	}
}

// qualifier resolves the qualifier of a column reference or star: t,
// s.t or d.s.t (d must be the catalog's database). It records a Problem
// when nothing matches.
func (w *walker) qualifier(sc *scope, q []string) *item {
	var it *item
	switch len(q) {
	case 1:
		it = w.refItem(sc, "", q[0])
	case 2:
		it = w.refItem(sc, q[0], q[1])
	case 3:
		if w.cat.Database == "" || q[0] != w.cat.Database {
			w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownTable, Rel: sqlpolicy.Rel{Schema: q[1], Name: q[2]},
				Detail: fmt.Sprintf("cross-database references are not implemented: %s", strings.Join(q, "."))})
			return nil
		}
		it = w.refItem(sc, q[1], q[2])
	default:
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownColumn, Column: strings.Join(q, "."),
			Detail: fmt.Sprintf("improper qualified name (too many dotted names): %s", strings.Join(q, "."))})
		return nil
	}
	if it == nil {
		name := strings.Join(q, ".")
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownColumn, Column: name,
			Detail: fmt.Sprintf("missing FROM-clause entry for table %q", name)})
	}
	return it
}

// qualifiedColumn reads column name of it (t.name): the column, or, when
// it has none, what the function name applied to its whole row reads
// (Postgres's attribute notation: c.row_to_json is row_to_json(c)).
func (w *walker) qualifiedColumn(it *item, name string, sk sink) {
	definite, maybe := w.itemColumn(it, name, sk, true)
	if definite {
		return
	}
	if maybe {
		w.itemRuns(it, sk)
	}
	if w.attributeFunc(it, name, sk) {
		return
	}
	if !maybe {
		w.unknownColumn(qualified(it.name, name))
	}
}

// projection checks that (t).name names a column of it, or else the
// function Postgres calls on its row; the caller has read the whole row.
func (w *walker) projection(it *item, name string, sk sink) {
	if d, m := w.itemColumn(it, name, nil, false); d || m {
		return
	}
	if !w.attributeFunc(it, name, sk) {
		w.unknownColumn(qualified(it.name, name))
	}
}

// attributeFunc reports name(it) when a function called name exists:
// Postgres falls back to it for t.name and (t).name when t has no such
// column. It reads the whole row.
func (w *walker) attributeFunc(it *item, name string, sk sink) bool {
	f := w.cat.ResolveFunction(name, w.path)
	if f == nil {
		for _, p := range w.paths {
			if f = w.cat.ResolveFunction(name, p); f != nil {
				break
			}
		}
	}
	if f == nil {
		return false
	}
	w.readItem(sk, it)
	w.reportFunc("", name, f, &pg.FuncCall{Funcname: []*pg.Node{pg.MakeStrNode(name)}, Args: []*pg.Node{nil}}, nil)
	return true
}

func (w *walker) unknownColumn(name string) {
	w.problem(sqlpolicy.Problem{
		Code:   sqlpolicy.ProblemUnknownColumn,
		Detail: fmt.Sprintf("column %q does not exist", name),
		Column: name,
	})
}

// readItem reports every column of a FROM item (a whole-row reference).
func (w *walker) readItem(sk sink, it *item) {
	for i := range it.cols {
		w.read(sk, it.cols[i].lin)
	}
}

// readCol reports column name of it (a target's column named by a
// statement: INSERT/COPY column lists, ON CONFLICT targets).
func (w *walker) readCol(it *item, name string, sk sink) {
	definite, maybe := w.itemColumn(it, name, sk, true)
	if !definite && maybe {
		w.itemRuns(it, sk)
	}
	if !definite && !maybe {
		w.unknownColumn(qualified(it.name, name))
	}
}

// wholeRow returns the item a function argument or indirection base
// names as a whole row: `t` when no visible column is called t, `t.*`,
// `s.t.*`. It returns nil for anything else (a column, an expression).
func (w *walker) wholeRow(n *pg.Node, sc *scope) *item {
	cr := n.GetColumnRef()
	if cr == nil {
		return nil
	}
	var buf [4]string
	parts, star, ok := refParts(cr, buf[:])
	if !ok {
		return nil
	}
	if star {
		if len(parts) == 0 || len(parts) > 3 {
			return nil
		}
		if len(parts) == 3 && (w.cat.Database == "" || parts[0] != w.cat.Database) {
			return nil
		}
		switch len(parts) {
		case 1:
			return w.refItem(sc, "", parts[0])
		case 2:
			return w.refItem(sc, parts[0], parts[1])
		default:
			return w.refItem(sc, parts[1], parts[2])
		}
	}
	if len(parts) != 1 {
		return nil
	}
	if d, m := w.probeColumn(sc, parts[0], false); d || m {
		return nil
	}
	return w.refItem(sc, "", parts[0])
}

// starCols expands `*`, `t.*`, `s.t.*` or `d.s.t.*` in a select list
// into output columns: the columns of every column-visible item of the
// level (ExpandAllTables), or of the named item.
func (w *walker) starCols(parts []string, sc *scope) []outCol {
	if len(parts) > 0 {
		it := w.qualifier(sc, parts)
		if it == nil {
			return []outCol{{kind: colRun}}
		}
		if w.charge(len(it.cols)) {
			return []outCol{{kind: colRun}}
		}
		return it.cols
	}
	var cols []outCol
	for _, it := range sc.ns {
		if !it.colsVisible {
			continue
		}
		if w.charge(len(it.cols)) {
			return append(cols, outCol{kind: colRun})
		}
		cols = append(cols, it.cols...)
	}
	return cols
}
