package pganalyze

import (
	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// This file models Postgres's parse-analysis namespace (parse_clause.c,
// parse_relation.c): which FROM items each clause of each query level can
// see, and the columns of each item in the order Postgres gives them
// (expandRTE). Names are resolved against it in resolve.go.

// colKind says what an entry of a column list stands for.
type colKind uint8

const (
	// colNamed is one column called name.
	colNamed colKind = iota
	// colRun stands for any number of columns, zero included, that the
	// analyzer cannot name or count: the result of a function whose
	// return type it does not know, `*` over such a result, alias names
	// that may land among them. Any name may refer to one of them, which
	// reads at most lin.
	colRun
	// colShuffle stands for no column: the columns of the list are in an
	// order the analyzer does not know (a relation that resolves to
	// different relations under the search paths that may be in effect).
	// Names resolve exactly; positions do not.
	colShuffle
)

// outCol is one entry of the column list of a FROM item or of a query's
// output: its name and the base columns whose values flow into it.
type outCol struct {
	name string
	lin  []sqlpolicy.ColumnRef
	kind colKind
}

// shape is the output of a query.
type shape struct {
	cols []outCol
}

// exact reports whether every entry of cols is one named column, so that
// positions and names are known.
func exact(cols []outCol) bool {
	for i := range cols {
		if cols[i].kind != colNamed {
			return false
		}
	}
	return true
}

// unionLin returns the lineage of every entry of cols, without
// duplicates, in time linear in its size (shapes built by `*` over CTEs
// can have very many columns).
func unionLin(cols []outCol) []sqlpolicy.ColumnRef {
	var all []sqlpolicy.ColumnRef
	var seen map[sqlpolicy.ColumnRef]struct{}
	for i := range cols {
		for _, c := range cols[i].lin {
			if seen == nil && len(all) < 32 {
				if !containsCol(all, c) {
					all = append(all, c)
				}
				continue
			}
			if seen == nil {
				seen = make(map[sqlpolicy.ColumnRef]struct{}, 2*len(all))
				for _, d := range all {
					seen[d] = struct{}{}
				}
			}
			if _, dup := seen[c]; !dup {
				seen[c] = struct{}{}
				all = append(all, c)
			}
		}
	}
	return all
}

// aliasCols applies a column alias list the way buildRelationAliases
// does: the i-th name renames the i-th column. Past an entry whose width
// is unknown the names may land anywhere after it, so the rest of the
// list becomes one run carrying all of its lineage. Excess names are a
// Postgres error.
func aliasCols(cols []outCol, names []string) []outCol {
	if len(names) == 0 {
		return cols
	}
	out := make([]outCol, 0, len(cols))
	for i := range cols {
		if len(names) == 0 {
			return append(out, cols[i:]...)
		}
		if cols[i].kind != colNamed {
			return append(out, outCol{kind: colRun, lin: unionLin(cols[i:])})
		}
		c := cols[i]
		c.name, names = names[0], names[1:]
		out = append(out, c)
	}
	return out
}

// item is one ParseNamespaceItem: a FROM entry (relation, CTE reference,
// subquery, function, join) as a query level sees it.
type item struct {
	// name is the reference name (the alias, else the relation, CTE or
	// first function name); "unnamed_join" for a join without an alias.
	name string
	// rel is the relation of a plain relation reference; aliased is set
	// when it has an alias, which hides its schema-qualified name.
	rel     *catalog.Relation
	aliased bool
	// alts are the other relations an unqualified name resolved to under
	// the other search paths that may be in effect; cols merges them all.
	alts []*catalog.Relation
	cols []outCol
	// relVisible: the item can be named (t.col, t.*, t); colsVisible:
	// its columns resolve unqualified names (p_rel_visible,
	// p_cols_visible). The items under a join without an alias are named
	// but their columns resolve through the join; an aliased join hides
	// them entirely.
	relVisible, colsVisible bool
	// lateralOnly: visible only to LATERAL subqueries and functions in
	// FROM (p_lateral_only: earlier items of the FROM list being
	// analyzed); lateralOK false makes such a reference a Postgres error
	// (the left side of a RIGHT or FULL join, an UPDATE's target).
	lateralOnly, lateralOK bool
	// sysCols: the relation has system columns (ctid, xmin ...).
	sysCols bool
	// unknown is true when the relation did not resolve; a Problem is
	// recorded already.
	unknown bool
	// writes are the relations written through the item when it is the
	// target of a data-modifying statement.
	writes []sqlpolicy.TableRef
}

// newItem returns a visible item.
func newItem(name string, cols []outCol) *item {
	return &item{name: name, cols: cols, relVisible: true, colsVisible: true, lateralOK: true}
}

// rels returns the relations the item may be.
func (it *item) rels() []*catalog.Relation {
	if it.rel == nil {
		return nil
	}
	if len(it.alts) == 0 {
		return []*catalog.Relation{it.rel}
	}
	return append([]*catalog.Relation{it.rel}, it.alts...)
}

// isRel reports whether the item may be relation r.
func (it *item) isRel(r *catalog.Relation) bool {
	if it.rel == r {
		return true
	}
	for _, a := range it.alts {
		if a == r {
			return true
		}
	}
	return false
}

// scope is one query level (a ParseState).
type scope struct {
	parent *scope
	// ns is the level's namespace (p_namespace), in order.
	ns []*item
	// lateral is set while a LATERAL subquery or a function in FROM of
	// this level is analyzed (p_lateral_active): lateral-only items of
	// this level are visible to it.
	lateral bool
	ctes    []*cte
}

// sees reports whether an item of this level is visible to lookups that
// reach it.
func (sc *scope) sees(it *item) bool {
	return !it.lateralOnly || sc.lateral
}

type cte struct {
	name string
	sh   shape
	// extra counts the columns SEARCH and CYCLE add after the query's
	// own; an alias list does not rename them.
	extra int
}

func newScope(parent *scope) *scope { return &scope{parent: parent} }

func (sc *scope) findCTE(name string) *cte {
	for s := sc; s != nil; s = s.parent {
		for i := len(s.ctes) - 1; i >= 0; i-- {
			if s.ctes[i].name == name {
				return s.ctes[i]
			}
		}
	}
	return nil
}

// setLateral marks items as visible only to LATERAL references (or not).
func setLateral(its []*item, only, ok bool) {
	for _, it := range its {
		it.lateralOnly, it.lateralOK = only, ok
	}
}
