package pganalyze

import (
	"fmt"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// colsNamed appends the lineage of every column of it named name.
func colsNamed(it *item, name string, out [][]sqlpolicy.ColumnRef) [][]sqlpolicy.ColumnRef {
	for i := range it.cols {
		if it.cols[i].name == name {
			out = append(out, it.cols[i].lin)
		}
	}
	return out
}

// findItem returns the innermost FROM item called name.
func findItem(sc *scope, name string) *item {
	for s := sc; s != nil; s = s.parent {
		for _, it := range s.items {
			if it.name == name {
				return it
			}
		}
	}
	return nil
}

// matchesRel reports whether it is the relation schema.name.
func matchesRel(it *item, schema, name string) bool {
	return it.rel != nil && it.rel.Name == name && (schema == "" || it.rel.Schema == schema)
}

// lookupColumn resolves an unqualified column name the way Postgres does:
// a column of any FROM item, innermost query level first, across all
// levels; only then a FROM item of that name as a whole-row reference.
// Items whose columns are unknown (functions returning records) only match
// when nothing else does: that can over-report an outer column, never
// miss one.
func lookupColumn(sc *scope, name string) (lins [][]sqlpolicy.ColumnRef, whole *item, found bool) {
	for s := sc; s != nil; s = s.parent {
		for _, it := range s.items {
			lins = colsNamed(it, name, lins)
		}
		if len(lins) > 0 {
			return lins, nil, true
		}
	}
	for s := sc; s != nil; s = s.parent {
		for _, it := range s.items {
			if it.name == name {
				return nil, it, true
			}
		}
	}
	for s := sc; s != nil; s = s.parent {
		for _, it := range s.items {
			if it.open || it.unknown {
				return nil, nil, true
			}
		}
	}
	return nil, nil, false
}

// columnRef reports the columns a ColumnRef reads.
func (w *walker) columnRef(cr *pg.ColumnRef, sc *scope, sk sink) {
	fields := cr.Fields
	star := false
	if len(fields) > 0 {
		if _, ok := fields[len(fields)-1].Node.(*pg.Node_AStar); ok {
			star = true
			fields = fields[:len(fields)-1]
		}
	}
	parts := make([]string, 0, 4)
	for _, f := range fields {
		s, ok := strVal(f)
		if !ok {
			w.unsupported("column reference with a %s field", nodeName(f.Node))
			return
		}
		parts = append(parts, s)
	}
	if star {
		w.starRef(parts, sc, sk)
		return
	}
	switch len(parts) {
	case 1:
		lins, whole, found := lookupColumn(sc, parts[0])
		switch {
		case len(lins) > 0:
			for _, l := range lins {
				w.read(sk, l)
			}
		case whole != nil:
			w.readItem(sk, whole)
		case !found:
			w.unknownColumn(parts[0])
		}
	case 2:
		w.qualifiedRef("", parts[0], parts[1], sc, sk)
	case 3:
		// schema.table.column, or table.column.field.
		if it := findItem(sc, parts[0]); it != nil && hasCol(it, parts[1]) {
			w.readCol(it, parts[1], sk)
			return
		}
		w.qualifiedRef(parts[0], parts[1], parts[2], sc, sk)
	case 4:
		// database.schema.table.column, or shorter forms with fields.
		if it := findItem(sc, parts[0]); it != nil && hasCol(it, parts[1]) {
			w.readCol(it, parts[1], sk)
			return
		}
		if w.qualifiedFound(parts[0], parts[1], parts[2], sc, sk) {
			return
		}
		w.qualifiedRef(parts[1], parts[2], parts[3], sc, sk)
	default:
		w.unsupported("column reference %q has too many parts", strings.Join(parts, "."))
	}
}

func hasCol(it *item, name string) bool {
	for i := range it.cols {
		if it.cols[i].name == name {
			return true
		}
	}
	return false
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

// readCol reports column name of it (all columns of that name).
func (w *walker) readCol(it *item, name string, sk sink) {
	found := false
	for i := range it.cols {
		if it.cols[i].name == name {
			w.read(sk, it.cols[i].lin)
			found = true
		}
	}
	if !found && !it.open && !it.unknown {
		w.unknownColumn(qualified(it.name, name))
	}
}

// qualifiedFound resolves schema.table.column when some item matches,
// reporting whether one did.
func (w *walker) qualifiedFound(schema, table, col string, sc *scope, sk sink) bool {
	for s := sc; s != nil; s = s.parent {
		for _, it := range s.items {
			if matchesRel(it, schema, table) && hasCol(it, col) {
				w.readCol(it, col, sk)
				return true
			}
		}
	}
	return false
}

// qualifiedRef resolves [schema.]table.column, falling back to
// column.field (a composite column's field) when no item is called table.
func (w *walker) qualifiedRef(schema, table, col string, sc *scope, sk sink) {
	if schema == "" {
		if it := findItem(sc, table); it != nil {
			w.readCol(it, col, sk)
			return
		}
	}
	if w.qualifiedFound(schema, table, col, sc, sk) {
		return
	}
	if schema == "" {
		// table.col where table names an unaliased relation that has an
		// alias, or a composite column with a field.
		for s := sc; s != nil; s = s.parent {
			for _, it := range s.items {
				if matchesRel(it, "", table) {
					w.readCol(it, col, sk)
					return
				}
			}
		}
		if lins, _, found := lookupColumn(sc, table); found {
			for _, l := range lins {
				w.read(sk, l)
			}
			return
		}
	}
	w.problem(sqlpolicy.Problem{
		Code:   sqlpolicy.ProblemUnknownColumn,
		Detail: fmt.Sprintf("missing FROM-clause entry for %q", qualified(schema, table)),
		Column: qualified(qualified(schema, table), col),
	})
}

// starRef reports `*`, `t.*` or `s.t.*` used inside an expression.
func (w *walker) starRef(parts []string, sc *scope, sk sink) {
	switch len(parts) {
	case 0:
		for _, it := range sc.items {
			w.readItem(sk, it)
		}
		return
	case 1:
		if it := findItem(sc, parts[0]); it != nil {
			w.readItem(sk, it)
			return
		}
		for s := sc; s != nil; s = s.parent {
			for _, it := range s.items {
				if matchesRel(it, "", parts[0]) {
					w.readItem(sk, it)
					return
				}
			}
		}
	default:
		schema, table := parts[len(parts)-2], parts[len(parts)-1]
		for s := sc; s != nil; s = s.parent {
			for _, it := range s.items {
				if matchesRel(it, schema, table) {
					w.readItem(sk, it)
					return
				}
			}
		}
	}
	w.problem(sqlpolicy.Problem{
		Code:   sqlpolicy.ProblemUnknownColumn,
		Detail: fmt.Sprintf("missing FROM-clause entry for %q", strings.Join(parts, ".")),
		Column: strings.Join(parts, ".") + ".*",
	})
}

// starCols expands `*` or `t.*` in a select list into output columns.
func (w *walker) starCols(parts []string, sc *scope) (cols []outCol, open bool) {
	var its []*item
	switch len(parts) {
	case 0:
		its = sc.items
	default:
		var it *item
		if len(parts) == 1 {
			it = findItem(sc, parts[0])
		}
		if it == nil {
			schema, table := "", parts[len(parts)-1]
			if len(parts) > 1 {
				schema = parts[len(parts)-2]
			}
			for s := sc; s != nil && it == nil; s = s.parent {
				for _, x := range s.items {
					if matchesRel(x, schema, table) {
						it = x
						break
					}
				}
			}
		}
		if it == nil {
			w.problem(sqlpolicy.Problem{
				Code:   sqlpolicy.ProblemUnknownColumn,
				Detail: fmt.Sprintf("missing FROM-clause entry for %q", strings.Join(parts, ".")),
				Column: strings.Join(parts, ".") + ".*",
			})
			return nil, true
		}
		its = []*item{it}
	}
	for _, it := range its {
		if it.hiddenByJoin {
			continue
		}
		if w.charge(len(it.cols)) {
			return cols, true
		}
		cols = append(cols, it.cols...)
		open = open || it.open || it.unknown
	}
	return cols, open
}
