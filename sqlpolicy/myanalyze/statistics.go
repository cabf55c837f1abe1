package myanalyze

import (
	"slices"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/opcode"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// Row counts and sizes of tables. information_schema.TABLES and
// PARTITIONS (and SHOW TABLE STATUS, which reads TABLES) show, next to a
// table's definition, numbers its rows make as they change: TABLE_ROWS
// (exact for Aria and MyISAM, InnoDB's running count), AUTO_INCREMENT,
// DATA_LENGTH, AVG_ROW_LENGTH, UPDATE_TIME, CHECKSUM ... Postgres refuses
// its live counters (pg_stat_*) because they count the rows of tables the
// role may not read. Here such a number is a read of the table it
// describes, as SELECT count(*) is: it needs a grant on the table, and a
// table labelled as a whole with a denied label refuses it. PARTITIONS
// counts each partition's rows, the rows whose partitioning expression
// falls in its range: a read of the columns the expression names, as
// SELECT count(*) ... WHERE salary >= 50000 is. STATISTICS.CARDINALITY
// is an index's count of distinct keys, which InnoDB recounts on its own
// once a tenth of the rows changed: a primary key's is the table's row
// count (as TABLE_ROWS), a unique key's the number of rows whose key is
// not NULL (COUNT(ssn)), another index's the distinct values of its
// columns (COUNT(DISTINCT ssn)): a read of the columns of the table's
// indexes (catalog.Relation.Indexes), as SHOW INDEX (whose Cardinality is
// the same number) is. Schema
// discovery (names, types, comments, engines, which columns an index
// covers) reads only the metadata columns and stays a catalog read.

// statisticsViews maps the information_schema views that hold numbers
// made by rows to their metadata columns: every other column of the view
// (those listed in no map, also ones a later server adds) is a number
// made by the rows of the table of its row.
var statisticsViews = map[string]map[string]bool{
	"TABLES": setOf(`TABLE_CATALOG TABLE_SCHEMA TABLE_NAME TABLE_TYPE ENGINE VERSION ROW_FORMAT
		CREATE_TIME TABLE_COLLATION CREATE_OPTIONS TABLE_COMMENT TEMPORARY`),
	"PARTITIONS": setOf(`TABLE_CATALOG TABLE_SCHEMA TABLE_NAME PARTITION_NAME SUBPARTITION_NAME
		PARTITION_ORDINAL_POSITION SUBPARTITION_ORDINAL_POSITION PARTITION_METHOD SUBPARTITION_METHOD
		PARTITION_EXPRESSION SUBPARTITION_EXPRESSION PARTITION_DESCRIPTION CREATE_TIME
		PARTITION_COMMENT NODEGROUP TABLESPACE_NAME`),
	"STATISTICS": setOf(`TABLE_CATALOG TABLE_SCHEMA TABLE_NAME NON_UNIQUE INDEX_SCHEMA INDEX_NAME
		SEQ_IN_INDEX COLUMN_NAME COLLATION SUB_PART PACKED NULLABLE INDEX_TYPE COMMENT INDEX_COMMENT
		IGNORED IS_VISIBLE EXPRESSION`),
}

// readsStatistics reports whether the statement reads (in any clause,
// also through a view) a column of a statisticsViews view that is not
// metadata, whether such a read came through a view, and which views'
// numbers describe more than the rows' count (see tableStatistics).
func (w *walker) readsStatistics() (reads, viaView, perPartition, perIndex bool) {
	for _, c := range w.st.Columns {
		if c.Mode != sqlpolicy.Read || !isInfoSchema(c.Rel.Schema) {
			continue
		}
		view := strings.ToUpper(c.Rel.Name)
		if meta, ok := statisticsViews[view]; ok && !meta[strings.ToUpper(c.Column)] {
			reads = true
			viaView = viaView || c.Via != (sqlpolicy.Rel{})
			perPartition = perPartition || view == "PARTITIONS"
			perIndex = perIndex || view == "STATISTICS"
		}
	}
	return reads, viaView, perPartition, perIndex
}

// statsFilter is what a query's WHERE clause narrows the rows of one
// statisticsViews item to: databases and table names (nil: any),
// compared without letter case as information_schema's collation does.
type statsFilter struct {
	dbs, names []string
}

// statistics reports, for a statement that reads a row count or size
// column of information_schema, a read of every table whose numbers it
// may return: every table of every database the catalog holds, unless
// every statisticsViews item the statement names sits alone in the FROM
// of a query whose whole WHERE clause names its databases or tables
// (statsNarrowing), and no such read comes through a view.
func (w *walker) statistics() {
	reads, viaView, perPartition, perIndex := w.readsStatistics()
	if !reads {
		return
	}
	w.statsPartitions, w.statsIndexes = perPartition, perIndex
	// Which tables are read depends on the literals of the WHERE clause
	// (and on the current database): no decision is shared with a text
	// that differs only in them.
	w.st.LiteralSensitive = true
	if viaView || w.statsItems == 0 || len(w.statsNarrowed) != w.statsItems {
		w.tableStatistics(nil, nil)
		return
	}
	for _, f := range w.statsNarrowed {
		w.tableStatistics(foldMatcher(f.dbs), foldMatcher(f.names))
	}
}

// foldMatcher accepts the names of list without letter case, and every
// name that is not ASCII (information_schema's utf8_general_ci also
// equates accented letters with plain ones); nil for a nil list (every
// name).
func foldMatcher(list []string) func(string) bool {
	if list == nil {
		return nil
	}
	return func(s string) bool {
		return !isASCII(s) || slices.ContainsFunc(list, func(l string) bool { return strings.EqualFold(l, s) })
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// statsNarrowing returns the filter of a SELECT whose only FROM item is
// a statisticsViews view and whose whole WHERE clause is a conjunction of
// TABLE_SCHEMA and TABLE_NAME compared with = or IN to string literals
// (or DATABASE()). An extra condition could be evaluated on the rows of
// other tables before the filter (as with Postgres's pg_settings), so it
// leaves the query unnarrowed.
func (w *walker) statsNarrowing(s *ast.SelectStmt) (statsFilter, bool) {
	var f statsFilter
	if s.From == nil || s.From.TableRefs == nil || s.From.TableRefs.Right != nil || s.Where == nil {
		return f, false
	}
	ts, ok := s.From.TableRefs.Left.(*ast.TableSource)
	if !ok {
		return f, false
	}
	tn, ok := ts.Source.(*ast.TableName)
	if !ok || !isInfoSchema(tn.Schema.O) && !(tn.Schema.O == "" && isInfoSchema(w.db) && !w.ts.dbLost) {
		return f, false
	}
	if _, ok := statisticsViews[strings.ToUpper(tn.Name.O)]; !ok {
		return f, false
	}
	alias := tn.Name.O
	if ts.AsName.O != "" {
		alias = ts.AsName.O
	}
	var conj func(e ast.ExprNode) bool
	conj = func(e ast.ExprNode) bool {
		switch x := e.(type) {
		case *ast.ParenthesesExpr:
			return conj(x.Expr)
		case *ast.BinaryOperationExpr:
			if x.Op == opcode.LogicAnd {
				return conj(x.L) && conj(x.R)
			}
			if x.Op != opcode.EQ {
				return false
			}
			col, vals := x.L, []ast.ExprNode{x.R}
			if _, ok := col.(*ast.ColumnNameExpr); !ok {
				col, vals = x.R, []ast.ExprNode{x.L}
			}
			return w.statsCondition(&f, col, vals, alias)
		case *ast.PatternInExpr:
			if x.Not || x.Sel != nil {
				return false
			}
			return w.statsCondition(&f, x.Expr, x.List, alias)
		}
		return false
	}
	if !conj(s.Where) {
		return f, false
	}
	return f, true
}

// statsCondition adds to f the values a condition col = / IN vals allows,
// when col is TABLE_SCHEMA or TABLE_NAME of the item alias and every
// value is a string literal or DATABASE(). A column named in two
// conditions keeps the values of both (a superset of the rows).
func (w *walker) statsCondition(f *statsFilter, col ast.ExprNode, vals []ast.ExprNode, alias string) bool {
	cn, ok := col.(*ast.ColumnNameExpr)
	if !ok || cn.Name.Schema.O != "" && !isInfoSchema(cn.Name.Schema.O) ||
		cn.Name.Table.O != "" && !strings.EqualFold(cn.Name.Table.O, alias) {
		return false
	}
	var list *[]string
	switch strings.ToUpper(cn.Name.Name.O) {
	case "TABLE_SCHEMA":
		list = &f.dbs
	case "TABLE_NAME":
		list = &f.names
	default:
		return false
	}
	out := []string{}
	for _, v := range vals {
		switch x := v.(type) {
		case ast.ValueExpr:
			s, ok := x.GetValue().(string)
			// Trailing spaces do not count in the comparison (PAD SPACE);
			// a literal that is not ASCII may equal names foldMatcher
			// does not know to fold.
			s = strings.TrimRight(s, " ")
			if !ok || !isASCII(s) {
				return false
			}
			out = append(out, s)
		case *ast.FuncCallExpr:
			if x.FnName.L != "database" && x.FnName.L != "schema" || len(x.Args) > 0 || w.ts.dbLost || w.db == "" {
				return false
			}
			out = append(out, w.db)
		default:
			return false
		}
	}
	*list = append(*list, out...)
	return true
}

// tableStatistics reports a read of every table (not a view, whose
// numbers are empty) of a database matchDB accepts whose name matchName
// accepts (nil: every database, every name).
func (w *walker) tableStatistics(matchDB, matchName func(string) bool) {
	seen := make(map[sqlpolicy.TableRef]bool, len(w.st.Tables))
	for _, t := range w.st.Tables {
		seen[t] = true
	}
	schemas := make([]string, 0, len(w.cat.Relations))
	for s := range w.cat.Relations {
		if !isInfoSchema(s) && (matchDB == nil || matchDB(s)) {
			schemas = append(schemas, s)
		}
	}
	slices.Sort(schemas)
	for _, s := range schemas {
		names := make([]string, 0, len(w.cat.Relations[s]))
		for n, rel := range w.cat.Relations[s] {
			if !rel.System && rel.Kind != catalog.KindView && (matchName == nil || matchName(n)) {
				names = append(names, n)
			}
		}
		slices.Sort(names)
		for _, n := range names {
			rel := w.cat.Relations[s][n]
			t := sqlpolicy.TableRef{Rel: relOf(rel), Mode: sqlpolicy.Read}
			if !seen[t] {
				seen[t] = true
				w.st.Tables = append(w.st.Tables, t)
			}
			if w.statsPartitions && len(rel.Partitioning) > 0 {
				// PARTITIONS counts each partition's rows: how many rows
				// fall in each range of the partitioning expression (a
				// histogram of salary under RANGE (salary)).
				w.partitionReads(rel)
			}
			if w.statsIndexes {
				w.indexStatistics(rel)
			}
		}
	}
}

// indexStatistics reports the read the CARDINALITY of rel's indexes
// makes: each index's count of distinct values of its columns (every
// column for an expression part, or a catalog without the indexes).
func (w *walker) indexStatistics(rel *catalog.Relation) {
	r := relOf(rel)
	var names []string
	for _, ix := range indexesOf(rel) {
		if slices.Contains(ix.Columns, "") {
			names = append(names, allColumns(rel)...)
			continue
		}
		names = append(names, ix.Columns...)
	}
	for _, c := range withGenerated(rel, names) {
		w.column(sqlpolicy.ColumnRef{Rel: r, Column: c, Mode: sqlpolicy.Read})
	}
}

// showLike returns a matcher of table names for SHOW ... LIKE 'pattern',
// nil when the statement has no LIKE (every name) or a pattern that is
// not a string literal (every name, too). Names match without letter
// case, as they may on the server (lower_case_table_names), and a name
// that is not ASCII always matches, so the matcher accepts every name the
// server's could.
func showLike(p *ast.PatternLikeOrIlikeExpr) func(string) bool {
	if p == nil || p.Pattern == nil || p.Not {
		return nil
	}
	v, ok := p.Pattern.(ast.ValueExpr)
	if !ok || v == nil {
		return nil
	}
	pat, ok := v.GetValue().(string)
	if !ok {
		return nil
	}
	esc := p.Escape
	if esc == 0 {
		esc = '\\'
	}
	pat = strings.ToLower(pat)
	return func(name string) bool { return !isASCII(name) || likeMatch(pat, strings.ToLower(name), esc) }
}

// likeMatch matches s against a LIKE pattern: % any run of characters, _
// one character, esc quoting the next character.
func likeMatch(pat, s string, esc byte) bool {
	p, r := []rune(pat), []rune(s)
	var match func(i, j int) bool
	memo := map[[2]int]bool{}
	match = func(i, j int) bool {
		k := [2]int{i, j}
		if v, ok := memo[k]; ok {
			return v
		}
		var ok bool
		switch {
		case i == len(p):
			ok = j == len(r)
		case p[i] == '%':
			ok = match(i+1, j) || j < len(r) && match(i, j+1)
		case p[i] == '_':
			ok = j < len(r) && match(i+1, j+1)
		case p[i] == rune(esc) && i+1 < len(p):
			ok = j < len(r) && r[j] == p[i+1] && match(i+2, j+1)
		default:
			ok = j < len(r) && r[j] == p[i] && match(i+1, j+1)
		}
		memo[k] = ok
		return ok
	}
	return match(0, 0)
}
