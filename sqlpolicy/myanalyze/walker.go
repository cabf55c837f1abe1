package myanalyze

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// walker analyzes one statement into st.
type walker struct {
	a   *Analyzer
	cat *catalog.Catalog
	ts  *textState
	// db is the current database unqualified names resolve in ("" when
	// none is selected).
	db string
	st *sqlpolicy.Statement
	// text is the statement's text as the parser saw it (quotedCall).
	text string

	depth int // recursion depth
	nest  int // EXPLAIN/PREPARE nesting and view expansion depth
	// viewStack are the views being expanded, to refuse a definition
	// that reaches itself.
	viewStack []*catalog.Relation
	tooDeep   bool
	work      int
	// action is the row action (insert, update, delete) of the write
	// target being resolved.
	action sqlpolicy.Verb
	// deferTables is set while the table references of an UPDATE or
	// DELETE are resolved: their plain tables are reported once the
	// statement tells which of them it writes.
	deferTables bool
	// subClause is the clause of the enclosing level a subquery being
	// analyzed sits in (see scope.inHaving).
	subClause clause

	colSeen map[sqlpolicy.ColumnRef]struct{}

	// statsItems counts the FROM items naming a statisticsViews view of
	// information_schema, and statsNarrowed holds the filters of those
	// whose query's WHERE clause narrows them (statistics.go).
	statsItems    int
	statsNarrowed []statsFilter
	// statsPartitions is set when those numbers are PARTITIONS' per
	// partition ones, statsIndexes when they are STATISTICS' per index
	// ones.
	statsPartitions, statsIndexes bool

	// scans are the base tables the statement's FROM items read rows of
	// (indexorder.go).
	scans map[*catalog.Relation]*scanInfo
	// top is the statement being analyzed (orderFixed).
	top ast.StmtNode
	// implicit are the reads a FROM item makes by its partition
	// selection or index hints rather than by the columns it returns or
	// compares: the server does not need them to find the rows, so they
	// do not narrow the indexes it may scan (indexOrder).
	implicit map[sqlpolicy.ColumnRef]bool

	// bodyWiths are the WITH clauses attached directly to the body of a
	// WITH query (d AS (WITH e AS ... SELECT ...)): only the queries of
	// those see the enclosing WITH clauses (see with).
	bodyWiths map[*ast.WithClause]bool
}

// sink collects the columns an expression reads. nil means the statement:
// the reads are reported. A non-nil sink is the lineage of one output
// column of a view's definition.
type sink = *[]sqlpolicy.ColumnRef

// outCol is one output column of a FROM item or query: its name and the
// base columns whose values flow into it.
type outCol struct {
	name string
	lin  []sqlpolicy.ColumnRef
}

// item is one leaf of a FROM clause: a table, view, derived table or CTE
// reference.
type item struct {
	// alias is the name that qualifies its columns: the alias, or the
	// table name as written.
	alias string
	// db and table are a base relation's database and name as written,
	// for db.table.column references (empty for derived tables and CTEs).
	db, table string
	aliased   bool
	rel       *catalog.Relation
	cols      []outCol
	// deferred is set for a table of an UPDATE or DELETE whose access is
	// reported later (see walker.deferTables).
	deferred bool
}

// ref is a node of a FROM tree: a leaf item or a join, with its row type
// (the columns `*` expands to, in order, and that unqualified names see).
type ref struct {
	cols   []outCol
	leaves []*item
}

// leafRef is the FROM tree node of a single item.
func leafRef(it *item) *ref { return &ref{cols: it.cols, leaves: []*item{it}} }

// scope is one SELECT (or UPDATE/DELETE) level.
type scope struct {
	parent *scope
	// refs are the top-level FROM entries: unqualified names search
	// their row types.
	refs []*ref
	// leaves are every leaf of the FROM: qualified names search them.
	leaves []*item
	// aliases are the select list's output columns, for GROUP BY, HAVING
	// and ORDER BY and for subqueries of the select list.
	aliases []outCol
	ctes    *cteEnv
	// anyName is set for the WHERE of SHOW: every unqualified name is a
	// column of the SHOW's own result, reading nothing.
	anyName bool
	// inHaving is set for a subquery that sits in its parent level's
	// HAVING clause: MariaDB then skips that level's FROM columns when the
	// level groups (fix_outer_field), so they cannot stop the search.
	inHaving bool
}

// cteEnv is the chain of WITH clauses in effect.
type cteEnv struct {
	parent *cteEnv
	list   []*cte
}

type cte struct {
	name string
	cols []outCol
	// pending is set while a recursive CTE's first term is analyzed.
	pending bool
}

// find returns the WITH query a table name refers to, innermost WITH
// clause first. MariaDB compares WITH names without letter case (even
// under lower_case_table_names=0, where table names compare exactly): an
// inner `C` hides an outer `c`. A name that matches only without letter
// case is reported as ambiguous (refused), so that keyhole never has to
// choose between the WITH query and a table of the same name.
func (e *cteEnv) find(name string) (*cte, bool) {
	for c := e; c != nil; c = c.parent {
		for i := len(c.list) - 1; i >= 0; i-- {
			if !strings.EqualFold(c.list[i].name, name) {
				continue
			}
			if c.list[i].name == name {
				return c.list[i], false
			}
			return nil, true
		}
	}
	return nil, false
}

func newScope(parent *scope) *scope {
	sc := &scope{parent: parent}
	if parent != nil {
		sc.ctes = parent.ctes
	}
	return sc
}

func (sc *scope) addRef(r *ref) {
	sc.refs = append(sc.refs, r)
	sc.leaves = append(sc.leaves, r.leaves...)
}

// ---- reporting -------------------------------------------------------

func (w *walker) problem(p sqlpolicy.Problem) {
	if slices.Contains(w.st.Problems, p) {
		return
	}
	w.st.Problems = append(w.st.Problems, p)
}

func (w *walker) unsupported(format string, args ...any) {
	w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnsupported, Detail: fmt.Sprintf(format, args...)})
}

func (w *walker) table(t sqlpolicy.TableRef) {
	if slices.Contains(w.st.Tables, t) {
		return
	}
	w.st.Tables = append(w.st.Tables, t)
}

func (w *walker) fn(f sqlpolicy.FuncRef) {
	if slices.Contains(w.st.Functions, f) {
		return
	}
	w.st.Functions = append(w.st.Functions, f)
}

func (w *walker) setting(s sqlpolicy.Setting) {
	w.st.Settings = append(w.st.Settings, s)
}

func (w *walker) column(c sqlpolicy.ColumnRef) {
	if w.colSeen != nil {
		if _, ok := w.colSeen[c]; ok {
			return
		}
		w.colSeen[c] = struct{}{}
		w.st.Columns = append(w.st.Columns, c)
		return
	}
	if slices.Contains(w.st.Columns, c) {
		return
	}
	w.st.Columns = append(w.st.Columns, c)
	if len(w.st.Columns) > 32 {
		w.colSeen = make(map[sqlpolicy.ColumnRef]struct{}, 2*len(w.st.Columns))
		for _, d := range w.st.Columns {
			w.colSeen[d] = struct{}{}
		}
	}
}

// read adds lineage to a sink (nil: reports it).
func (w *walker) read(sk sink, lin []sqlpolicy.ColumnRef) {
	if w.charge(len(lin)) {
		return
	}
	if sk == nil {
		for _, c := range lin {
			w.column(c)
		}
		return
	}
	*sk = append(*sk, lin...)
}

func (w *walker) readCols(sk sink, cols []outCol) {
	for _, c := range cols {
		w.read(sk, c.lin)
	}
}

// enter guards recursion; callers must call leave when it returns true.
func (w *walker) enter() bool {
	if w.charge(1) {
		return false
	}
	w.depth++
	if w.depth > maxWalkDepth {
		w.depth--
		w.tooComplex("statement nests too deeply to analyze")
		return false
	}
	return true
}

func (w *walker) leave() { w.depth-- }

func (w *walker) charge(n int) bool {
	w.work += n
	if w.work <= maxWork {
		return false
	}
	w.tooComplex("statement is too complex to analyze")
	return true
}

func (w *walker) tooComplex(detail string) {
	if !w.tooDeep {
		w.tooDeep = true
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemTooComplex, Detail: detail})
	}
}

// ---- relations -------------------------------------------------------

// dataCatalogs are schemas whose relations expose other sessions, grants,
// statistics with data values, or replication state; none is modelled.
var dataCatalogs = map[string]bool{"mysql": true, "performance_schema": true, "sys": true}

// metadataViews are the information_schema views that hold only schema
// metadata visible to the login (names, types, comments, defaults,
// definitions, the login's own privileges), never data values or other
// sessions. Everything else in information_schema (PROCESSLIST,
// INNODB_*, *_STATISTICS, QUERY_CACHE_INFO, USER_VARIABLES ...) is a
// data catalog.
var metadataViews = setOf(`SCHEMATA TABLES COLUMNS VIEWS ROUTINES PARAMETERS STATISTICS KEY_COLUMN_USAGE
	REFERENTIAL_CONSTRAINTS TABLE_CONSTRAINTS CHECK_CONSTRAINTS CHARACTER_SETS COLLATIONS
	COLLATION_CHARACTER_SET_APPLICABILITY ENGINES TRIGGERS PARTITIONS EVENTS KEYWORDS SQL_FUNCTIONS
	COLUMN_PRIVILEGES TABLE_PRIVILEGES SCHEMA_PRIVILEGES USER_PRIVILEGES APPLICABLE_ROLES ENABLED_ROLES
	SESSION_VARIABLES PLUGINS ALL_PLUGINS SEQUENCES TABLESPACES FILES SPATIAL_REF_SYS GEOMETRY_COLUMNS
	KEY_PERIOD_USAGE PERIODS`)

func setOf(words string) map[string]bool {
	m := map[string]bool{}
	for _, f := range strings.Fields(words) {
		m[f] = true
	}
	return m
}

func isInfoSchema(db string) bool { return strings.EqualFold(db, "information_schema") }

// lookupRel finds a relation in the catalog the way MariaDB compares
// names: information_schema case-insensitively, others exactly unless
// lower_case_table_names is set.
func (w *walker) lookupRel(db, name string) *catalog.Relation {
	if isInfoSchema(db) || w.a.lowerNames {
		return w.a.relIndex[strings.ToLower(db)+"."+strings.ToLower(name)]
	}
	return w.cat.Relation(db, name)
}

// relOf is the sqlpolicy name of a catalog relation.
func relOf(r *catalog.Relation) sqlpolicy.Rel {
	return sqlpolicy.Rel{Schema: r.Schema, Name: r.Name}
}

// baseCols returns the output columns of a plain relation, cached. A
// generated column carries the columns its expression reads: reading it
// reveals them (MariaDB asks a privilege on the generated column alone).
func (w *walker) baseCols(rel *catalog.Relation) []outCol {
	if v, ok := w.a.bases.Load(rel); ok {
		return v.([]outCol)
	}
	r := relOf(rel)
	cols := make([]outCol, len(rel.Columns))
	lins := make([]sqlpolicy.ColumnRef, len(rel.Columns))
	generated := false
	for i, c := range rel.Columns {
		lins[i] = sqlpolicy.ColumnRef{Rel: r, Column: c.Name, Mode: sqlpolicy.Read}
		cols[i] = outCol{name: c.Name, lin: lins[i : i+1 : i+1]}
		generated = generated || c.Generated != ""
	}
	if generated {
		for i, c := range rel.Columns {
			if c.Generated == "" {
				continue
			}
			var lin []sqlpolicy.ColumnRef
			seen := map[string]bool{}
			var add func(col *catalog.Column)
			add = func(col *catalog.Column) {
				if seen[col.Name] {
					return
				}
				seen[col.Name] = true
				lin = append(lin, sqlpolicy.ColumnRef{Rel: r, Column: col.Name, Mode: sqlpolicy.Read})
				if col.Generated == "" {
					return
				}
				names, ok := w.a.exprColumns(col.Generated)
				for _, other := range rel.Columns {
					if !ok || slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, other.Name) }) {
						add(other)
					}
				}
			}
			add(c)
			cols[i].lin = lin
		}
	}
	w.a.bases.Store(rel, cols)
	return cols
}

// exprColumns returns the column names an expression (a generated
// column's) names; ok is false when it does not parse.
// The result is cached by text: writes evaluate the same defaults, CHECK
// clauses and generation expressions statement after statement.
func (a *Analyzer) exprColumns(expr string) (names []string, ok bool) {
	if v, hit := a.exprCols.Load(expr); hit {
		names = v.([]string)
		return names, names != nil
	}
	stmts, p := a.parse("SELECT "+expr, 0)
	if p != nil || len(stmts) != 1 {
		a.exprCols.Store(expr, []string(nil))
		return nil, false
	}
	v := &nameCollector{names: []string{}}
	stmts[0].Accept(v)
	a.exprCols.Store(expr, v.names)
	return v.names, true
}

// nameCollector collects the column names of an expression tree.
type nameCollector struct{ names []string }

func (v *nameCollector) Enter(n ast.Node) (ast.Node, bool) {
	if c, ok := n.(*ast.ColumnName); ok {
		v.names = append(v.names, c.Name.O)
	}
	return n, false
}

func (v *nameCollector) Leave(n ast.Node) (ast.Node, bool) { return n, true }

// resolveTable resolves a table name of a FROM clause or a write target:
// a CTE (unqualified, when cteOK), or a catalog relation. It reports the
// access and returns the item, or nil after reporting a Problem.
func (w *walker) resolveTable(tn *ast.TableName, sc *scope, mode sqlpolicy.Mode, cteOK bool) *item {
	it := &item{alias: tn.Name.O, table: tn.Name.O}
	if tn.AsOf != nil || tn.TableSample != nil {
		w.unsupported("AS OF and TABLESAMPLE are not MariaDB syntax")
	}
	if tn.Schema.O == "" && cteOK && sc != nil {
		c, ambiguous := sc.ctes.find(tn.Name.O)
		if ambiguous {
			w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownTable, Rel: sqlpolicy.Rel{Name: tn.Name.O},
				Detail: fmt.Sprintf("%q differs only in letter case from a WITH name; write it exactly as the WITH clause does", tn.Name.O)})
			return nil
		}
		if c != nil {
			if c.pending {
				w.unsupported("recursive reference to %s in its own first term", c.name)
			}
			it.cols = c.cols
			it.table = ""
			return it
		}
	}
	db := tn.Schema.O
	if db == "" {
		if w.ts.dbLost {
			w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemSessionChange, Rel: sqlpolicy.Rel{Name: tn.Name.O},
				Detail: fmt.Sprintf("the session's current database is not known after a failed text that changed it; qualify %q with its database or run USE", tn.Name.O)})
			return nil
		}
		db = w.db
		if db == "" {
			w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownTable, Rel: sqlpolicy.Rel{Name: tn.Name.O},
				Detail: fmt.Sprintf("no database selected for %q: qualify it or run USE", tn.Name.O)})
			return nil
		}
	}
	it.db = db
	if dataCatalogs[strings.ToLower(db)] {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemDataCatalog, Rel: sqlpolicy.Rel{Schema: strings.ToLower(db), Name: tn.Name.O},
			Detail: fmt.Sprintf("%s.%s is a server catalog that exposes grants, other sessions or data values", db, tn.Name.O)})
		return nil
	}
	rel := w.lookupRel(db, tn.Name.O)
	if rel == nil {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownTable, Rel: sqlpolicy.Rel{Schema: db, Name: tn.Name.O},
			Detail: fmt.Sprintf("table %s.%s does not exist", db, tn.Name.O)})
		return nil
	}
	if isInfoSchema(rel.Schema) && !metadataViews[strings.ToUpper(rel.Name)] {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemDataCatalog, Rel: relOf(rel),
			Detail: fmt.Sprintf("information_schema.%s exposes other sessions, statistics or data values", rel.Name)})
		return nil
	}
	it.rel = rel
	if isInfoSchema(rel.Schema) && statisticsViews[strings.ToUpper(rel.Name)] != nil {
		w.statsItems++
	}
	if len(tn.PartitionNames) > 0 && !(mode == sqlpolicy.Write && w.action == sqlpolicy.VerbInsert) {
		w.partitionReads(rel)
	}
	if len(tn.IndexHints) > 0 {
		w.indexHintReads(rel, tn.IndexHints)
	}
	if rel.Kind != catalog.KindView && !isInfoSchema(rel.Schema) && (mode != sqlpolicy.Write || w.deferTables) {
		w.scanned(rel, tn.IndexHints)
	}
	switch {
	case mode == 0:
		it.cols = w.baseCols(rel)
	case w.deferTables && mode == sqlpolicy.Read && rel.Kind != catalog.KindView:
		it.deferred = true
		it.cols = w.baseCols(rel)
	default:
		it.cols = w.relation(rel, mode)
	}
	return it
}

// partitionReads reports the columns a partition selection (FROM t
// PARTITION (p)) reads: MariaDB keeps the rows whose partitioning
// expression falls in the named partitions, a filter on the columns the
// expression names (PARTITION BY RANGE (salary) picks rows by salary). An
// expression keyhole's parser does not read, or KEY () over the primary
// key, may name any column. An INSERT's PARTITION clause only checks the
// new rows.
func (w *walker) partitionReads(rel *catalog.Relation) {
	var names []string
	if len(rel.Partitioning) == 0 {
		names = allColumns(rel)
	}
	for _, e := range rel.Partitioning {
		n, ok := w.a.exprColumns(e)
		if !ok || strings.TrimSpace(e) == "" {
			n = allColumns(rel)
		}
		names = append(names, n...)
	}
	r := relOf(rel)
	for _, c := range withGenerated(rel, names) {
		w.implicitRead(sqlpolicy.ColumnRef{Rel: r, Column: c, Mode: sqlpolicy.Read})
	}
}

// implicitRead reports a read a FROM item makes beyond its columns (see
// walker.implicit).
func (w *walker) implicitRead(c sqlpolicy.ColumnRef) {
	if w.implicit == nil {
		w.implicit = map[sqlpolicy.ColumnRef]bool{}
	}
	w.implicit[c] = true
	w.column(c)
}

// indexHintReads reports the columns index hints (USE, FORCE or IGNORE
// INDEX) make a statement read: the hinted index is the order the server
// reads the table in, and without ORDER BY the order the rows come back
// in (and with LIMIT, which rows, also the rows an UPDATE or DELETE
// takes): SELECT id FROM customers FORCE INDEX (by_ssn), a covering scan
// of an index over ssn, lists the ids in ssn order. USE or FORCE of
// indexes reads their columns (an index the catalog does not know, or
// one with an expression part, every column); IGNORE INDEX, which leaves
// the server to pick among the others, reads every column.
func (w *walker) indexHintReads(rel *catalog.Relation, hints []*ast.IndexHint) {
	var names []string
	for _, h := range hints {
		if h == nil {
			continue
		}
		if h.HintType == ast.HintIgnore {
			names = allColumns(rel)
			break
		}
		for _, n := range h.IndexNames {
			cols, ok := indexColumns(rel, n.O)
			if !ok {
				names = allColumns(rel)
				break
			}
			names = append(names, cols...)
		}
	}
	r := relOf(rel)
	for _, c := range withGenerated(rel, names) {
		w.implicitRead(sqlpolicy.ColumnRef{Rel: r, Column: c, Mode: sqlpolicy.Read})
	}
}

// relation reports a reference to rel with mode and returns its columns.
// Views are expanded: their base relations and columns are reported with
// Via set to the view.
func (w *walker) relation(rel *catalog.Relation, mode sqlpolicy.Mode) []outCol {
	t := sqlpolicy.TableRef{Rel: relOf(rel), Mode: mode}
	if mode == sqlpolicy.Write {
		t.Action = w.action
	}
	w.table(t)
	if rel.Kind == catalog.KindView {
		if mode == sqlpolicy.Write {
			w.unsupported("writes through the view %s are not modelled; write the base table", relOf(rel))
			return w.baseCols(rel)
		}
		return w.view(rel)
	}
	return w.baseCols(rel)
}

// viewInfo is the cached analysis of a view definition.
type viewInfo struct {
	cols   []outCol // per view column: the view column itself and its base lineage
	extras sqlpolicy.Statement
}

// view expands a view: its definition is analyzed once (cached); every
// relation, function and column it reads outside its select list is
// reported with Via = the view, and the view's columns carry the view
// column and the base columns flowing into them.
func (w *walker) view(rel *catalog.Relation) []outCol {
	vr := relOf(rel)
	if slices.Contains(w.viewStack, rel) || len(w.viewStack) >= maxViewDepth {
		w.unsupported("view %s is defined through itself or nests too deeply", vr)
		return w.baseCols(rel)
	}
	var vi *viewInfo
	if v, ok := w.a.views.Load(rel); ok {
		vi = v.(*viewInfo)
	} else {
		vi = w.analyzeView(rel)
		w.a.views.Store(rel, vi)
	}
	ex := &vi.extras
	for _, t := range ex.Tables {
		if t.Via == (sqlpolicy.Rel{}) {
			t.Via = vr
		}
		w.table(t)
	}
	for _, c := range ex.Columns {
		if c.Via == (sqlpolicy.Rel{}) {
			c.Via = vr
		}
		w.column(c)
	}
	for _, f := range ex.Functions {
		w.fn(f)
	}
	for _, p := range ex.Problems {
		p.Detail = fmt.Sprintf("in view %s: %s", vr, p.Detail)
		w.problem(p)
	}
	return vi.cols
}

// analyzeView parses and analyzes a view's definition in the view's
// database.
func (w *walker) analyzeView(rel *catalog.Relation) *viewInfo {
	vr := relOf(rel)
	vi := &viewInfo{}
	fail := func(detail string) *viewInfo {
		vi.extras.Problems = append(vi.extras.Problems, sqlpolicy.Problem{Code: sqlpolicy.ProblemUnsupported, Rel: vr, Detail: detail})
		vi.cols = w.baseCols(rel)
		return vi
	}
	if rel.Definition == "" {
		return fail("its definition is not in the catalog (keyhole's login needs SHOW VIEW)")
	}
	stmts, p := w.a.parse(rel.Definition, 0)
	if p != nil || len(stmts) != 1 {
		return fail("its definition does not parse")
	}
	rs, ok := stmts[0].(ast.ResultSetNode)
	if !ok {
		return fail("its definition is not a query")
	}
	// The analysis is cached for every session: it must not depend on
	// this one's state. MariaDB resolves a view's names in its database.
	sub := &walker{a: w.a, cat: w.cat, ts: &textState{db: rel.Schema, sess: &Session{}}, db: rel.Schema, st: &vi.extras, nest: w.nest + 1,
		viewStack: append(slices.Clip(w.viewStack), rel)}
	sh := sub.queryAs(rs, nil, nil, true)
	if len(sh) != len(rel.Columns) {
		return fail(fmt.Sprintf("its definition has %d columns, the catalog %d", len(sh), len(rel.Columns)))
	}
	vi.cols = make([]outCol, len(rel.Columns))
	for i, c := range rel.Columns {
		lin := []sqlpolicy.ColumnRef{{Rel: vr, Column: c.Name, Mode: sqlpolicy.Read}}
		for _, l := range sh[i].lin {
			if l.Via == (sqlpolicy.Rel{}) {
				l.Via = vr
			}
			if !slices.Contains(lin, l) {
				lin = append(lin, l)
			}
		}
		vi.cols[i] = outCol{name: c.Name, lin: lin}
	}
	return vi
}
