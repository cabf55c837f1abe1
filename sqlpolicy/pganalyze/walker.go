package pganalyze

import (
	"fmt"
	"slices"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// walker analyzes one statement into st.
type walker struct {
	a    *Analyzer
	cat  *catalog.Catalog
	path []string // search path, pg_catalog placed
	// paths, when more than one search path may be in effect (see
	// sqlpolicy.Session.SearchPaths), is every one of them, pg_catalog
	// placed, path first; an unqualified name is resolved under each.
	paths [][]string
	// pathLost is set when the session lost track of its search path, or
	// it names "$user" for a login keyhole does not know: unqualified
	// relation and function names are refused.
	pathLost bool
	// pathChanged is set when an earlier statement of the text changed
	// the search path.
	pathChanged bool
	// pathDiffers is set when the search path the statement runs under
	// may be another than the login's (pathMayDiffer), whatever path
	// the walker resolves a part of it under (a default's names are
	// resolved under pg_catalog, but its functions' bodies under this).
	pathDiffers bool
	sess        *Session
	st          *sqlpolicy.Statement

	depth int // expression/query recursion depth
	nest  int // EXPLAIN/PREPARE nesting, and view expansion depth
	// views being expanded, to refuse a definition that reaches itself.
	viewStack []*catalog.Relation
	tooDeep   bool
	// work counts nodes visited and lineage entries copied; past maxWork
	// the statement is refused as too complex (CTEs referenced several
	// times can multiply columns exponentially in a short text).
	work int
	// funcFlag is set when an expression calls a set-returning or
	// non-built-in function (see targets).
	funcFlag bool
	// procedure is the call a CALL statement invokes: its FuncRefs carry
	// Procedure, those of the functions its arguments call do not.
	procedure *pg.FuncCall
	// writeVerbs are the kinds of data-modifying statements seen (the
	// statement's own and those in WITH).
	writeVerbs []sqlpolicy.Verb
	// action is the row action (insert, update, delete, merge) of the
	// write target being resolved; relation reports it on written tables.
	action sqlpolicy.Verb
	// merging is set while a MERGE's WHEN clause actions are analyzed:
	// the writes they make carry Merge (a merge grant covers its inserts
	// and updates, not its deletes).
	merging bool
	// capture, when set, collects every table reported (see target).
	capture *[]sqlpolicy.TableRef
	// truncateCascade is set for TRUNCATE ... CASCADE (effects.go).
	truncateCascade bool
	// qualified is set for view definitions: the catalog reads them with
	// an empty search_path, so pg_get_viewdef qualifies every function,
	// operator and type outside pg_catalog, and an unqualified one is
	// pg_catalog's whatever the login's path has.
	qualified bool

	colSeen map[sqlpolicy.ColumnRef]struct{}

	// sc is the statement's scratch memory (nil in view definitions,
	// whose analysis is cached): see joinCols.
	sc *scratch

	// root is the statement's parse tree (nil in view definitions), and
	// settings what it restricts reads of pg_settings to (settings.go).
	root     *pg.Node
	settings *settingsFilter
	// subLinkNames are the output names of the scalar subqueries walked
	// (see figureColname).
	subLinkNames map[*pg.SubLink]subLinkName
}

// sink collects the columns an expression reads. nil means the statement:
// the reads are reported. A non-nil sink is the lineage of one output
// column of a derived table, CTE or view, reported only when the outer
// query uses that column.
type sink = *[]sqlpolicy.ColumnRef

// ---- reporting -------------------------------------------------------

func (w *walker) problem(p sqlpolicy.Problem) {
	for _, q := range w.st.Problems {
		if q == p {
			return
		}
	}
	w.st.Problems = append(w.st.Problems, p)
}

func (w *walker) unsupported(format string, args ...any) {
	w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnsupported, Detail: fmt.Sprintf(format, args...)})
}

func (w *walker) table(t sqlpolicy.TableRef) {
	if w.capture != nil {
		*w.capture = append(*w.capture, t)
	}
	for _, u := range w.st.Tables {
		if u == t {
			return
		}
	}
	w.st.Tables = append(w.st.Tables, t)
}

func (w *walker) fn(f sqlpolicy.FuncRef) {
	for _, g := range w.st.Functions {
		if g == f {
			return
		}
	}
	w.st.Functions = append(w.st.Functions, f)
	if f.Schema == "" {
		return
	}
	cf := w.cat.Function(f.Schema, f.Name)
	if cf == nil || cf.Builtin {
		return
	}
	// A call converts its arguments to the parameter types and its result
	// to the return type: a domain's check constraint among them runs its
	// functions (catalog.Function.ArgCalls), which the statement does not
	// name and a function list that allows f does not cover.
	for _, c := range cf.ArgCalls {
		w.implicitFunc(c, fmt.Sprintf("a parameter or result type of %s", f))
	}
	w.unpinnedPath(cf)
}

// unpinnedPath refuses a user function that resolves the names in its
// body under the session's search_path (it sets none of its own,
// catalog.Function.SetsSearchPath) while the session's path may be
// another than the login's. Postgres resolves a function body's
// unqualified relation, function, operator and type names when it runs,
// under the current search_path: a session that may change its path
// (settings: [search_path]) can make a function the policy allows read a
// same-named table of another schema, or call another schema's function
// or operator of the names the body uses, with the session's privileges.
// The policy was written for what the body does under the login's path.
func (w *walker) unpinnedPath(f *catalog.Function) {
	if f.SetsSearchPath || !w.pathDiffers {
		return
	}
	w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemSessionChange, Func: f.Schema + "." + f.Name,
		Detail: fmt.Sprintf("function %s.%s resolves the names in its body under the session's search_path, "+
			"which this session changed; it runs only under the login's search_path "+
			"(RESET search_path), unless its definition sets one (ALTER FUNCTION ... SET search_path)", f.Schema, f.Name)})
}

// pathMayDiffer reports whether the search path in effect may be another
// than the login's starting one (as Postgres searches them). A candidate
// that is the login's path with entries left out counts as the login's:
// the login's path holds only schemas its user may search (Postgres, or
// the session's probe, resolved it for that user), and a path the session
// set is resolved with and without each schema whose USAGE the catalog
// cannot vouch for (Analyzer.searched), so SET search_path = public, the
// login's own, yields such a candidate too.
func (w *walker) pathMayDiffer() bool {
	if w.pathLost {
		return true
	}
	if w.sess == nil && !w.pathChanged && w.paths == nil {
		// A view definition's walker, or a statement analyzed without a
		// session: the login's path.
		return false
	}
	lp := w.a.loginOf(w.sess).path
	if !subsequence(w.path, lp) {
		return true
	}
	for _, p := range w.paths {
		if !subsequence(p, lp) {
			return true
		}
	}
	return false
}

// subsequence reports whether p is q with entries left out, in q's order.
func subsequence(p, q []string) bool {
	i := 0
	for _, s := range q {
		if i < len(p) && p[i] == s {
			i++
		}
	}
	return i == len(p)
}

func (w *walker) setting(s sqlpolicy.Setting) {
	w.st.Settings = append(w.st.Settings, s)
}

// column reports one column access.
func (w *walker) column(c sqlpolicy.ColumnRef) {
	if what, ok := sensitiveCatalogColumns[[2]string{c.Rel.Name, c.Column}]; ok && c.Rel.Schema == "pg_catalog" {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemDataCatalog, Rel: c.Rel, Column: c.Column,
			Detail: fmt.Sprintf("%s.%s holds %s", c.Rel, c.Column, what)})
	}
	if c.Rel == attMissingVal.Rel && c.Column == attMissingVal.Column {
		w.missingValues()
	}
	if w.colSeen != nil {
		if _, ok := w.colSeen[c]; ok {
			return
		}
		w.colSeen[c] = struct{}{}
		w.st.Columns = append(w.st.Columns, c)
		return
	}
	for _, d := range w.st.Columns {
		if d == c {
			return
		}
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

func (w *walker) readShape(sk sink, sh shape) {
	for _, c := range sh.cols {
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
		if !w.tooDeep {
			w.tooDeep = true
			w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemTooComplex, Detail: "statement nests too deeply to analyze"})
		}
		return false
	}
	return true
}

func (w *walker) leave() { w.depth-- }

// charge adds n units of work and reports whether the budget is spent.
func (w *walker) charge(n int) bool {
	w.work += n
	if w.work <= maxWork {
		return false
	}
	if !w.tooDeep {
		w.tooDeep = true
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemTooComplex, Detail: "statement is too complex to analyze"})
	}
	return true
}

// nodeName is the pg_query node type name, for messages.
func nodeName(n any) string {
	s := fmt.Sprintf("%T", n)
	s = strings.TrimPrefix(s, "*pg_query.Node_")
	s = strings.TrimPrefix(s, "*pg_query.")
	return s
}

// strVal returns the text of a String node.
func strVal(n *pg.Node) (string, bool) {
	if n == nil {
		return "", false
	}
	if s, ok := n.Node.(*pg.Node_String_); ok {
		return s.String_.Sval, true
	}
	return "", false
}

// names returns the strings of a list of String nodes.
func names(ns []*pg.Node) []string {
	out := make([]string, 0, len(ns))
	for _, n := range ns {
		if s, ok := strVal(n); ok {
			out = append(out, s)
		}
	}
	return out
}

// ---- relations -------------------------------------------------------

// candidatePaths are the search paths a function, operator or type name
// is looked up along (see funcCandidates).
func (w *walker) candidatePaths() [][]string {
	switch {
	case w.qualified:
		return [][]string{catalogOnlyPath}
	case w.paths != nil:
		return w.paths
	}
	return [][]string{w.path}
}

// resolveRel finds a relation by optional schema and name: under the
// first search path that may be in effect and has it (see altRels for the
// others).
func (w *walker) resolveRel(schema, name string) *catalog.Relation {
	if schema != "" {
		return w.cat.Relation(schema, name)
	}
	if w.pathLost {
		w.pathLostProblem(name)
		return nil
	}
	if w.paths == nil {
		return w.cat.ResolveRelation(name, w.path)
	}
	for _, p := range w.paths {
		if r := w.cat.ResolveRelation(name, p); r != nil {
			return r
		}
	}
	return nil
}

// altRels returns the relations other than primary that an unqualified
// name resolves to under the other search paths that may be in effect.
func (w *walker) altRels(schema, name string, primary *catalog.Relation) []*catalog.Relation {
	if schema != "" || w.paths == nil || primary == nil {
		return nil
	}
	var out []*catalog.Relation
	for _, p := range w.paths {
		if r := w.cat.ResolveRelation(name, p); r != nil && r != primary && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

func (w *walker) pathLostProblem(name string) {
	w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemSessionChange,
		Detail: fmt.Sprintf("keyhole cannot tell which schemas the session's search_path searches (it changed too often, to a value that is not a literal, or to one naming \"$user\" for a login keyhole does not know), so not what %q resolves to; qualify it with its schema", name)})
}

// baseCols returns the output columns of a plain relation, cached. A
// generated column carries the columns its expression reads: reading it
// reveals them (Postgres asks a privilege on the generated column alone).
func (w *walker) baseCols(rel *catalog.Relation) []outCol {
	if v, ok := w.a.bases.Load(rel); ok {
		return v.([]outCol)
	}
	r := sqlpolicy.Rel{Schema: rel.Schema, Name: rel.Name}
	names := catalogColumnNames(rel) // classify.go
	cols := make([]outCol, len(names))
	lins := make([]sqlpolicy.ColumnRef, len(names))
	for i, c := range names {
		lins[i] = sqlpolicy.ColumnRef{Rel: r, Column: c, Mode: sqlpolicy.Read}
		cols[i] = outCol{name: c, lin: lins[i : i+1 : i+1]}
	}
	for i, c := range rel.Columns {
		if len(c.GeneratedReads) == 0 {
			continue
		}
		lin := []sqlpolicy.ColumnRef{lins[i]}
		for _, src := range rel.GeneratedFrom(c) {
			lin = append(lin, sqlpolicy.ColumnRef{Rel: r, Column: src.Name, Mode: sqlpolicy.Read})
		}
		cols[i].lin = lin
	}
	w.a.bases.Store(rel, cols)
	return cols
}

// relation reports a reference to rel with mode and returns its columns.
// Views are expanded: their base relations and columns are reported with
// Via set to the view.
func (w *walker) relation(rel *catalog.Relation, mode sqlpolicy.Mode) []outCol {
	r := sqlpolicy.Rel{Schema: rel.Schema, Name: rel.Name}
	t := sqlpolicy.TableRef{Rel: r, Mode: mode}
	if mode == sqlpolicy.Write {
		t.Action = w.action
	}
	w.table(t)
	w.checkDataCatalog(rel)
	if (rel.Kind == catalog.KindView || rel.Kind == catalog.KindMatView) && !rel.System {
		return w.view(rel, mode)
	}
	return w.baseCols(rel)
}

// rangeVar resolves a relation reference in FROM (a CTE first, when
// cteOK and the name is unqualified) into an item; the caller adds it to
// a namespace.
func (w *walker) rangeVar(rv *pg.RangeVar, sc *scope, mode sqlpolicy.Mode, cteOK bool) *item {
	var aliases []string
	it := newItem(rv.Relname, nil)
	if rv.Alias != nil {
		it.name = rv.Alias.Aliasname
		aliases = names(rv.Alias.Colnames)
	}
	if cteOK && rv.Schemaname == "" && rv.Catalogname == "" {
		if c := sc.findCTE(rv.Relname); c != nil {
			own := len(c.sh.cols) - c.extra
			it.cols = aliasCols(c.sh.cols[:own:own], aliases)
			if c.extra > 0 {
				it.cols = append(it.cols[:len(it.cols):len(it.cols)], c.sh.cols[own:]...)
			}
			return it
		}
	}
	rel := w.resolveRel(rv.Schemaname, rv.Relname)
	if rv.Catalogname != "" && rv.Catalogname != w.cat.Database {
		// Postgres refuses cross-database references.
		rel = nil
	}
	if rel == nil {
		w.problem(sqlpolicy.Problem{
			Code:   sqlpolicy.ProblemUnknownTable,
			Detail: fmt.Sprintf("relation %q does not exist", qualified(rv.Catalogname, qualified(rv.Schemaname, rv.Relname))),
			Rel:    sqlpolicy.Rel{Schema: rv.Schemaname, Name: rv.Relname},
		})
		it.unknown = true
		it.cols = []outCol{{kind: colRun}}
		return it
	}
	it.rel, it.aliased = rel, rv.Alias != nil
	it.sysCols = rel.Kind != catalog.KindView
	it.cols = aliasCols(w.relation(rel, mode), aliases)
	if rv.Catalogname == "" || rv.Catalogname == w.cat.Database {
		// Under another search path that may be in effect the name is
		// another relation: the statement may touch any of them. Names
		// resolve against all of them; their positions differ.
		it.alts = w.altRels(rv.Schemaname, rv.Relname, rel)
		if len(it.alts) > 0 {
			cols := it.cols
			for _, alt := range it.alts {
				cols = mergeCols(cols, aliasCols(w.relation(alt, mode), aliases))
			}
			it.cols = append([]outCol{{kind: colShuffle}}, cols...)
		}
	}
	return it
}

// mergeCols returns the named columns of a and b by name, in a's order
// then b's: a column both have carries both lineages. Neither input is
// changed (they may be cached).
func mergeCols(a, b []outCol) []outCol {
	out := make([]outCol, len(a), len(a)+len(b))
	copy(out, a)
	for _, c := range b {
		i := slices.IndexFunc(out, func(o outCol) bool { return o.kind == colNamed && o.name == c.name })
		if i < 0 {
			out = append(out, c)
			continue
		}
		lin := make([]sqlpolicy.ColumnRef, 0, len(out[i].lin)+len(c.lin))
		out[i].lin = append(append(lin, out[i].lin...), c.lin...)
	}
	return out
}

func qualified(schema, name string) string {
	if schema == "" {
		return name
	}
	return schema + "." + name
}

// ddlRel names the relation a DDL statement creates or changes; it need
// not exist.
func (w *walker) ddlRel(rv *pg.RangeVar) sqlpolicy.Rel {
	if rv == nil {
		return sqlpolicy.Rel{}
	}
	if rv.Relpersistence == "t" && rv.Schemaname == "" {
		return sqlpolicy.Rel{Schema: "pg_temp", Name: rv.Relname}
	}
	if rv.Schemaname != "" {
		return sqlpolicy.Rel{Schema: rv.Schemaname, Name: rv.Relname}
	}
	if w.paths != nil || w.pathLost {
		// Which schema the name means depends on a search path keyhole
		// cannot pin down.
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemSessionChange, Rel: sqlpolicy.Rel{Name: rv.Relname},
			Detail: fmt.Sprintf("more than one search_path may be in effect, so %q could name relations in several schemas; qualify it with its schema", rv.Relname)})
	}
	if rel := w.cat.ResolveRelation(rv.Relname, w.path); rel != nil {
		return sqlpolicy.Rel{Schema: rel.Schema, Name: rel.Name}
	}
	// A new relation goes into the first schema of the path that is not
	// pg_catalog (Postgres skips schemas that do not exist; the catalog
	// does not say which do, so this is a best guess for messages).
	for _, s := range w.path {
		if s != "pg_catalog" && s != "$user" {
			return sqlpolicy.Rel{Schema: s, Name: rv.Relname}
		}
	}
	return sqlpolicy.Rel{Name: rv.Relname}
}

// attMissingVal is pg_attribute.attmissingval: ALTER TABLE ... ADD COLUMN
// c ... DEFAULT v stores v there instead of in the rows, and every row
// that existed then reads c as v until it is updated, also after the
// default is dropped or changed (ALTER TABLE secrets ADD COLUMN master
// text DEFAULT 'k'; ALTER COLUMN master DROP DEFAULT leaves every row's
// master readable there, to every role). pg_dump reads it for every
// column it dumps.
var attMissingVal = sqlpolicy.ColumnRef{Rel: sqlpolicy.Rel{Schema: "pg_catalog", Name: "pg_attribute"}, Column: "attmissingval"}

// missingValues reports a read of attmissingval as a read of every column
// that has a missing value (catalog.Column.HasMissing), reached through
// pg_attribute: labels apply to them, as to any column however reached,
// while reading the catalog needs no grant on their tables (a column's
// missing value is its default then, as schema-like as pg_attrdef's
// defaults, unless the column is labelled).
func (w *walker) missingValues() {
	for _, c := range w.a.index().missing {
		w.column(c)
	}
}
