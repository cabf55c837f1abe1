package myanalyze

import (
	"slices"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// The order of rows. Without an ORDER BY that sorts them completely,
// MariaDB returns a table's rows in the order of the index it reads them
// through, and InnoDB picks that index by itself: a covering scan of the
// smallest index that holds every column the query needs (a secondary
// index holds the primary key too), a range or ref access on an index
// whose first column the query names, or the clustered index (the
// primary key) for a full scan. Confirmed on MariaDB 10.11: with KEY
// by_ssn (ssn), SELECT id FROM customers lists the ids in ssn order
// (EXPLAIN: type index, key by_ssn, Using index), GROUP_CONCAT(id)
// concatenates them in that order, and with KEY (name, ssn), SELECT id
// FROM customers WHERE name = 'a' lists the a's in ssn order. MariaDB asks
// no privilege on ssn for any of it. So a FROM item reading a table
// reads the columns of every index the server could read it through:
// the primary key (or, without one, any unique key, one of which InnoDB
// clusters the rows by), an index that covers every column the
// statement reads of the table, and an index whose first column it
// reads. Where keyhole cannot tell which columns an item reads (the
// table read by several items, or through a view), every index counts.
// Index hints (USE, FORCE INDEX) limit the server to the named indexes,
// which indexHintReads reports, and the clustered one (USE INDEX () scans
// it). A partitioned table is scanned partition by partition, whatever
// the index. An item that reads no column (SELECT count(*)) shows no
// order, nor does a statement whose ORDER BY is total, or that returns at
// most one row (orderFixed).

// scanInfo counts the FROM items that read a table's rows, and those of
// them with a USE or FORCE INDEX hint.
type scanInfo struct {
	items, hinted int
}

// scanned records a FROM item reading rel's rows.
func (w *walker) scanned(rel *catalog.Relation, hints []*ast.IndexHint) {
	if w.scans == nil {
		w.scans = map[*catalog.Relation]*scanInfo{}
	}
	si := w.scans[rel]
	if si == nil {
		si = &scanInfo{}
		w.scans[rel] = si
	}
	si.items++
	limited := false
	for _, h := range hints {
		// IGNORE INDEX leaves the others (indexHintReads reads every
		// column for it); USE and FORCE name the only ones (USE INDEX
		// (): none) the rows are read through, unless limited to FOR
		// ORDER BY or FOR GROUP BY, which leave the server every index
		// to find the rows.
		if h != nil && h.HintType != ast.HintIgnore && (h.HintScope == ast.HintForScan || h.HintScope == ast.HintForJoin) {
			limited = true
		}
	}
	if limited {
		si.hinted++
	}
}

// indexOrder reports the columns of the indexes each scanned table's
// rows may come back in the order of.
func (w *walker) indexOrder() {
	// A table read through a view is scanned by the view's own FROM
	// item, analyzed apart (and cached): which of its columns that item
	// reads is not known here.
	for _, c := range w.st.Columns {
		if c.Mode != sqlpolicy.Read || c.Via == (sqlpolicy.Rel{}) {
			continue
		}
		via, rel := w.cat.Relation(c.Via.Schema, c.Via.Name), w.cat.Relation(c.Rel.Schema, c.Rel.Name)
		if via == nil || via.Kind != catalog.KindView || rel == nil || rel.Kind == catalog.KindView || isInfoSchema(rel.Schema) {
			continue
		}
		if w.scans == nil {
			w.scans = map[*catalog.Relation]*scanInfo{}
		}
		if w.scans[rel] == nil {
			w.scans[rel] = &scanInfo{}
		}
		// Counted as two items: unknown reads.
		w.scans[rel].items += 2
	}
	fixed := w.orderFixed(w.top)
	rels := make([]*catalog.Relation, 0, len(w.scans))
	for rel := range w.scans {
		if rel != fixed {
			rels = append(rels, rel)
		}
	}
	slices.SortFunc(rels, func(a, b *catalog.Relation) int {
		return strings.Compare(a.Schema+"."+a.Name, b.Schema+"."+b.Name)
	})
	for _, rel := range rels {
		r := relOf(rel)
		// read is every column the statement reads of rel; returned is
		// read without those possibly read only to pick partitions or
		// an index (walker.implicit), which the server need not fetch:
		// fewer columns for an index to cover.
		read, returned := map[string]bool{}, map[string]bool{}
		unknown := w.scans[rel].items > 1
		for _, c := range w.st.Columns {
			if c.Rel != r || c.Mode != sqlpolicy.Read {
				continue
			}
			if c.Via != (sqlpolicy.Rel{}) {
				unknown = true
			}
			read[strings.ToLower(c.Column)] = true
			if !w.implicit[c] {
				returned[strings.ToLower(c.Column)] = true
			}
		}
		if len(read) == 0 && !unknown {
			continue
		}
		var pk []string
		for _, ix := range indexesOf(rel) {
			if strings.EqualFold(ix.Name, "PRIMARY") {
				pk = ix.Columns
			}
		}
		if len(rel.Partitioning) > 0 {
			// A partitioned table is read partition by partition, in
			// the order of the partitioning expression's ranges, also
			// through an index: SELECT id, name FROM pay under RANGE
			// (salary) lists the low salaries first.
			w.partitionReads(rel)
		}
		// Only hinted items: the named indexes (indexHintReads) or, with
		// none usable (USE INDEX ()), the clustered index.
		hintedOnly := w.scans[rel].items == w.scans[rel].hinted
		var names []string
		from := map[string]string{} // column → the first index naming it
		for _, ix := range indexesOf(rel) {
			clustered := strings.EqualFold(ix.Name, "PRIMARY") || pk == nil && ix.Unique
			if hintedOnly && !clustered {
				continue
			}
			cols := ix.Columns
			if slices.Contains(cols, "") {
				cols = allColumns(rel)
			}
			usable := unknown || clustered || len(cols) > 0 && read[strings.ToLower(cols[0])]
			if !usable {
				covers := true
				for c := range returned {
					if !slices.ContainsFunc(cols, func(n string) bool { return strings.EqualFold(n, c) }) &&
						!slices.ContainsFunc(pk, func(n string) bool { return strings.EqualFold(n, c) }) {
						covers = false
						break
					}
				}
				usable = covers
			}
			if usable {
				names = append(names, cols...)
				for _, c := range cols {
					if _, ok := from[strings.ToLower(c)]; !ok && !clustered {
						from[strings.ToLower(c)] = ix.Name
					}
				}
			}
		}
		for _, c := range withGenerated(rel, names) {
			lc := strings.ToLower(c)
			if read[lc] {
				continue // reported as read already
			}
			// Order names the index for a refusal's message (the hint:
			// read through the primary key instead); a column of the
			// clustered index, or a generated column computed from an
			// index's column, gets the plain message.
			w.column(sqlpolicy.ColumnRef{Rel: r, Column: c, Mode: sqlpolicy.Read, Order: from[lc]})
		}
	}
}

// indexesOf is rel's indexes. A catalog that lists unique keys but no
// index (built by hand, without Indexes) may have any: one index over
// every column stands for them.
func indexesOf(rel *catalog.Relation) []catalog.Index {
	if len(rel.Indexes) == 0 && len(rel.UniqueKeys) > 0 {
		return []catalog.Index{{Name: "", Columns: allColumns(rel)}}
	}
	return rel.Indexes
}

// indexColumns is the columns of rel's index name (letter case aside, as
// MariaDB compares index names), every column for one with an expression
// part; ok is false for an index keyhole does not know.
func indexColumns(rel *catalog.Relation, name string) ([]string, bool) {
	for _, ix := range indexesOf(rel) {
		if ix.Name == "" || strings.EqualFold(ix.Name, name) {
			if slices.Contains(ix.Columns, "") {
				return allColumns(rel), true
			}
			return ix.Columns, true
		}
	}
	return nil, false
}
