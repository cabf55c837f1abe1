package pganalyze

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/pganalyze/pg_query_go/v6/parser"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze/internal/pgparse"
)

// Options bound the input the analyzer hands to the parser. A zero value
// means the documented default.
type Options struct {
	// MaxBytes is the longest text analyzed (default 1 MiB).
	MaxBytes int
	// MaxDepth is the deepest nesting of parentheses and brackets
	// (default 200).
	MaxDepth int
	// MaxTerms is the longest chain of operators that the parser turns into
	// a left-deep tree (`1+1+1...`, `a||b||c...`, `x::t::t...`), summed over
	// the enclosing nesting levels, and separately the number of JOINs and
	// UNION/INTERSECT/EXCEPTs in one statement (default 2000).
	// libpg_query's recursive output code overflows an 8 MiB stack at about
	// 25 000 chained operators or joins, and the protobuf decoder refuses
	// trees deeper than 10 000 levels (about 5 000 operators), so little
	// that parses is lost at 2000.
	MaxTerms int
}

const (
	defaultMaxBytes = 1 << 20
	defaultMaxDepth = 200
	defaultMaxTerms = 2000
	// maxWalkDepth bounds the analyzer's own recursion over the tree.
	maxWalkDepth = 10000
	// maxWork bounds the walker's work per statement (see walker.work).
	maxWork = 2_000_000
	// maxViewDepth bounds views defined over views.
	maxViewDepth = 32
)

// Analyzer implements sqlpolicy.Analyzer for Postgres. It is safe for
// concurrent use: the catalog is read-only and the caches are sync.Maps.
type Analyzer struct {
	cat  *catalog.Catalog
	opts Options
	// views caches the analysis of view definitions, by *catalog.Relation.
	views sync.Map
	// bases caches the column shape of plain relations, by *catalog.Relation.
	bases sync.Map
	// defaults caches parsed column default expressions, by *catalog.Column.
	defaults sync.Map
	// path is the catalog's search path with pg_catalog placed the way
	// Postgres searches it, so name lookups do not rebuild it every time.
	path []string
	// idx indexes what effects.go, overload.go and operator.go look up,
	// built on first use.
	idxOnce sync.Once
	idx     *catalogIndex
}

var (
	_ sqlpolicy.Analyzer      = (*Analyzer)(nil)
	_ sqlpolicy.ShapeAnalyzer = (*Analyzer)(nil)
)

// New returns an analyzer resolving names through cat.
func New(cat *catalog.Catalog, opts Options) *Analyzer {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = defaultMaxBytes
	}
	if opts.MaxDepth <= 0 {
		opts.MaxDepth = defaultMaxDepth
	}
	if opts.MaxTerms <= 0 {
		opts.MaxTerms = defaultMaxTerms
	}
	if cat == nil {
		cat = &catalog.Catalog{Dialect: "postgres"}
	}
	return &Analyzer{cat: cat, opts: opts, path: searchPath(cat.SearchPath)}
}

// searchPath returns path with pg_catalog first unless it lists it: the
// order Postgres searches (catalog.Catalog does the same per lookup).
func searchPath(path []string) []string {
	for _, s := range path {
		if s == "pg_catalog" {
			return path
		}
	}
	out := make([]string, 0, len(path)+1)
	out = append(out, "pg_catalog")
	return append(out, path...)
}

// Normalize returns the text with constants replaced by $n placeholders.
func (a *Analyzer) Normalize(sql string) (string, error) {
	if p := a.precheck(sql); p != nil {
		return "", fmt.Errorf("normalize: %s", p.Detail)
	}
	return a.NormalizeShaped(sql)
}

// NormalizeShaped implements sqlpolicy.ShapeAnalyzer: Normalize of a text
// Shape accepted, without checking it again.
func (a *Analyzer) NormalizeShaped(sql string) (string, error) {
	out, err := pg.Normalize(sql)
	if err != nil {
		return "", fmt.Errorf("normalize: %w", err)
	}
	return out, nil
}

// NewSession implements sqlpolicy.Analyzer: a new connection's Postgres
// session state (*Session).
func (a *Analyzer) NewSession() sqlpolicy.Session { return &Session{} }

// Analyze parses sql and analyzes every statement in it. It never fails:
// problems are reported in the statements. s must be a *Session (from
// NewSession) or nil for a fresh one.
func (a *Analyzer) Analyze(sql string, ss sqlpolicy.Session) *sqlpolicy.Access {
	acc, _, _ := a.analyze(sql, ss, false, false)
	return acc
}

// Shape implements sqlpolicy.ShapeAnalyzer: the hash of sql's tokens with
// literals left out, from the scan that bounds the text before parsing
// (precheck). ok is false when that scan refuses the text.
func (a *Analyzer) Shape(sql string) (uint64, bool) {
	var sh textShape
	if a.scan(sql, &sh) != nil {
		return 0, false
	}
	return sh.sum(), true
}

// AnalyzeNormalize implements sqlpolicy.ShapeAnalyzer: Analyze and
// Normalize from one parse, of a text Shape accepted. The normal form
// comes from the parse tree (pgparse.Normalize), or from pg.Normalize for
// the statements that does not cover.
func (a *Analyzer) AnalyzeNormalize(sql string, ss sqlpolicy.Session) (*sqlpolicy.Access, string, error) {
	acc, norm, ok := a.analyze(sql, ss, true, true)
	if ok {
		return acc, norm, nil
	}
	norm, err := a.NormalizeShaped(sql)
	return acc, norm, err
}

// analyze is Analyze. checked skips the precheck, which Shape made. With
// normalize it also returns sql's normal form from the parse tree
// (pgparse.Normalize), ok false when sql was not parsed or the tree does
// not give it.
//
// The tree is parsed into reused memory (pgparse.ParseScratch): nothing
// analysis builds points into it (a Statement holds strings, which the
// parser never reuses, and values of its own), and it is released once
// analyzed and normalized.
func (a *Analyzer) analyze(sql string, ss sqlpolicy.Session, checked, normalize bool) (acc *sqlpolicy.Access, norm string, ok bool) {
	s, isPg := ss.(*Session)
	if !isPg && ss != nil {
		// Another dialect's state: nothing here can be resolved safely.
		return &sqlpolicy.Access{Statements: []sqlpolicy.Statement{{Command: "UNKNOWN", Problems: []sqlpolicy.Problem{{
			Code: sqlpolicy.ProblemUnsupported, Detail: fmt.Sprintf("session state of another dialect (%T)", ss)}}}}}, "", false
	}
	if !checked {
		if p := a.precheck(sql); p != nil {
			return &sqlpolicy.Access{Statements: []sqlpolicy.Statement{{Command: "UNKNOWN", Problems: []sqlpolicy.Problem{*p}}}}, "", false
		}
	}
	tree, mem, err := pgparse.ParseScratch(sql)
	if err != nil {
		return &sqlpolicy.Access{Statements: []sqlpolicy.Statement{{
			Command:  "UNKNOWN",
			Problems: []sqlpolicy.Problem{{Code: sqlpolicy.ProblemUnparseable, Detail: parseDetail(err)}},
		}}}, "", false
	}
	defer mem.Release()
	acc = &sqlpolicy.Access{Statements: make([]sqlpolicy.Statement, 0, len(tree.Stmts))}
	ps := a.sessionPaths(s)
	for i, raw := range tree.Stmts {
		acc.Statements = append(acc.Statements, a.statement(raw.GetStmt(), s, ps, 0))
		if i < len(tree.Stmts)-1 {
			// A search_path change applies to the statements after it in
			// the same text (or, rolled back, does not): resolve them under
			// both.
			ps = a.withChanges(ps, &acc.Statements[i])
		}
	}
	if normalize {
		norm, ok = pgparse.Normalize(sql, tree)
	}
	return acc, norm, ok
}

// paths is the search path state a statement is resolved under: path,
// and when more than one may be in effect, all of them (path first).
type paths struct {
	path []string
	all  [][]string
	lost bool
	// changed is set after a search_path change earlier in the text:
	// statements prepared before the text no longer resolve as analyzed.
	changed bool
	// identity is set when the current user may not be the login (see
	// Session.identity): paths set from then on are resolved as for a
	// login keyhole does not know.
	identity bool
	// set is set when a path the session or the text set may be in
	// effect (not only the login's).
	set bool
	// login is what the login's path (nil) stands for; user is left
	// empty (see login).
	login login
}

// login is what a session's login gives resolution: the path Postgres
// searches while the session's search_path is the login's, and what
// "$user" names.
type login struct {
	// path is the session's own starting path (Session.LearnProbe) or
	// the catalog's, pg_catalog placed.
	path []string
	// own is set when path is the session's own, read for its login
	// user: a SET ROLE makes it unknown (see searched).
	own bool
	// user is the session's login user when it learned it, what "$user"
	// names in a path it sets ("" unknown). It is used only for paths
	// the session applied (whose generation is its own): the decision of
	// a text in the initial state is cached for every session starting
	// on the same path, whatever its user.
	user string
}

// loginOf is s's login (the catalog's when s learned none).
func (a *Analyzer) loginOf(s *Session) login {
	if s == nil || s.start == nil {
		return login{path: a.path}
	}
	return login{path: s.start.path, own: true, user: s.start.user}
}

// sessionPaths returns the search paths of s as Postgres searches them
// (see searched).
func (a *Analyzer) sessionPaths(s *Session) paths {
	lg := a.loginOf(s)
	ps := paths{path: lg.path, login: lg}
	ps.login.user = ""
	if s == nil {
		return ps
	}
	cands, ok := s.SearchPaths()
	ps.lost = !ok
	ps.identity = s.identity
	if cands == nil {
		if s.SearchPath == nil {
			if ps.identity && lg.own {
				// The path was read for the login user; after SET ROLE
				// Postgres searches the login's search_path for another
				// user.
				ps.lost = true
			}
			return ps
		}
		cands = [][]string{s.SearchPath}
	}
	ps.set = true
	var all [][]string
	for _, c := range cands {
		var lost bool
		all, lost = a.searched(all, c, ps.identity, lg)
		ps.lost = ps.lost || lost
	}
	ps.path = all[0]
	if len(all) > 1 {
		ps.all = all
	}
	if len(all) > MaxSearchPaths {
		ps.lost = true
	}
	return ps
}

// searched adds to all the schema lists Postgres may search under the
// session-set search path p (nil: the login's, lg.path, which the catalog
// or the session's probe read as Postgres searched it), pg_catalog
// placed. Postgres skips an entry naming
// a schema that does not exist or that the current user lacks USAGE on,
// and "$user" unless a schema of the current user's name exists and is
// usable: a name must be resolved among the schemas Postgres actually
// searches, or an entry Postgres skips would hide the schema it reads.
//
// Where the catalog cannot tell whether an entry is searched (it does not
// know the session's USAGE: sessions log in as other roles than the
// catalog's, or the catalog predates the field), the path may be searched
// with or without it. Resolution reaches a schema exactly when it holds
// the name and every entry before it that also holds the name is skipped,
// so the lists "drop the first j uncertain entries" (j = 0..k) give every
// schema the name can resolve to under any combination: k+1 candidates,
// not 2^k. lost is set when "$user" names a role keyhole does not know:
// any schema could be it.
//
// identity says the current user may not be the login (SET ROLE): the
// catalog's USAGE and Login are then not the session's, nor is a starting
// path the session read for its login user.
func (a *Analyzer) searched(all [][]string, p []string, identity bool, lg login) (_ [][]string, lost bool) {
	if p == nil {
		return appendPath(all, lg.path), identity && lg.own
	}
	shared := a.cat.SessionsShareLogin && !identity
	known := make([]string, 0, len(p))
	var uncertain []int // indexes in known
	for _, n := range p {
		if n == "$user" {
			switch {
			case shared && a.cat.Login != "":
				n = a.cat.Login
			case !identity && lg.user != "":
				// The session's own user, learned at login: whether a
				// schema of its name exists the catalog knows; USAGE on
				// it is unknown (below).
				n = lg.user
			default:
				lost = true
				continue
			}
		}
		if slices.Contains(known, n) {
			// Postgres searches a schema listed twice at its first place
			// (and skips both for want of USAGE).
			continue
		}
		in, sure := a.cat.SchemaSearched(n)
		if sure && !shared && n != "pg_catalog" && n != "pg_temp" {
			// The schema exists; whether the current user (not the
			// login) has USAGE on it is unknown. One that does not exist
			// is skipped whoever asks.
			if _, exists := a.cat.SchemaUsage[n]; exists {
				sure = false
			}
		}
		switch {
		case !sure:
			uncertain = append(uncertain, len(known))
		case !in:
			continue
		}
		known = append(known, n)
	}
	all = appendPath(all, searchPath(known))
	for j := range uncertain {
		// Drop the first j+1 uncertain entries.
		drop := uncertain[:j+1]
		q := make([]string, 0, len(known)-len(drop))
		for i, n := range known {
			if !slices.Contains(drop, i) {
				q = append(q, n)
			}
		}
		all = appendPath(all, searchPath(q))
	}
	return all, lost
}

func appendPath(all [][]string, p []string) [][]string {
	for _, q := range all {
		if slices.Equal(q, p) {
			return all
		}
	}
	return append(all, p)
}

// withChanges adds the search paths st may set to ps.
func (a *Analyzer) withChanges(ps paths, st *sqlpolicy.Statement) paths {
	sets := st.Settings
	if st.Verb == sqlpolicy.VerbExecute && st.Prepared != nil {
		sets = append(slices.Clip(sets), st.Prepared.Settings...)
	}
	if st.ExplainAnalyze && st.Explained != nil {
		sets = append(slices.Clip(sets), st.Explained.Settings...)
	}
	for _, set := range sets {
		if identitySetting(set) && !ps.identity {
			ps.identity = true
			if ps.set || ps.login.own {
				// The paths in effect were resolved for the login; which
				// of their schemas the new user may search is unknown.
				// (A starting path the session read is the login user's
				// too: Postgres recomputes it for the new user.)
				ps.lost = true
			}
		}
		if set.Name != "search_path" || set.Show {
			continue
		}
		ps.changed = true
		ps.set = true
		if set.Unknown {
			ps.lost = true
			continue
		}
		var p []string
		if !set.Reset {
			p = []string{}
			for _, n := range strings.Split(set.Value, ",") {
				if n = strings.TrimSpace(n); n != "" {
					p = append(p, n)
				}
			}
		}
		if ps.all == nil {
			ps.all = [][]string{ps.path}
		} else {
			ps.all = slices.Clone(ps.all)
		}
		var lost bool
		ps.all, lost = a.searched(ps.all, p, ps.identity, ps.login)
		if lost || len(ps.all) > MaxSearchPaths {
			ps.lost = true
		}
	}
	return ps
}

// parseDetail is the parser's message without position details: the text
// goes back to the agent, which has the statement already.
func parseDetail(err error) string {
	msg := err.Error()
	var pe *parser.Error
	if errors.As(err, &pe) {
		msg = pe.Message
	}
	if msg == "" {
		msg = "syntax error"
	}
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	return msg
}

// statement analyzes one parsed statement. depth counts the enclosing
// EXPLAIN/PREPARE levels.
func (a *Analyzer) statement(n *pg.Node, s *Session, ps paths, depth int) (st sqlpolicy.Statement) {
	w := &walker{a: a, cat: a.cat, path: ps.path, sess: s, st: &st, nest: depth, root: n}
	if len(ps.all) > 1 {
		w.paths = ps.all
	}
	w.pathLost, w.pathChanged = ps.lost, ps.changed
	w.pathDiffers = w.pathMayDiffer()
	sc := scratches.Get().(*scratch)
	st.Columns, st.Tables = sc.columns, sc.tables
	w.sc = sc
	defer sc.release(&st)
	defer func() {
		if r := recover(); r != nil {
			if st.Command == "" {
				st.Command = "UNKNOWN"
			}
			st.Problems = append(st.Problems, sqlpolicy.Problem{
				Code:   sqlpolicy.ProblemUnsupported,
				Detail: fmt.Sprintf("internal error while analyzing the statement: %v", r),
			})
		}
	}()
	w.statement(n)
	if st.Verb == "" && len(st.Problems) == 0 {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnsupported, Detail: "statement kind not modelled"})
	}
	if st.Command == "" {
		st.Command = "UNKNOWN"
	}
	a.classify(&st)
	return st
}

// scratch holds the slices a statement's columns and tables are collected
// in while it is walked. Appending to a nil slice reallocates at every
// doubling (a three-table join's seven columns cost four arrays of a
// hundred-odd bytes per column); collected in a reused slice, the
// statement keeps one array of exactly its length.
type scratch struct {
	columns []sqlpolicy.ColumnRef
	tables  []sqlpolicy.TableRef
	// outCols holds the columns of the statement's joins (see
	// walker.joinCols); nothing outside the walk keeps them.
	outCols []outCol
}

var scratches = sync.Pool{New: func() any { return new(scratch) }}

// maxScratch is the capacity past which a scratch slice is not kept.
const maxScratch = 256

// release gives st copies of its columns and tables it owns (nil when
// there are none, as a walk that reported none leaves them) and puts the
// scratch slices back.
func (sc *scratch) release(st *sqlpolicy.Statement) {
	cols, tables := st.Columns, st.Tables
	st.Columns, st.Tables = owned(cols), owned(tables)
	clear(cols)
	clear(tables)
	sc.columns, sc.tables = nil, nil
	if cap(cols) <= maxScratch {
		sc.columns = cols[:0]
	}
	if cap(tables) <= maxScratch {
		sc.tables = tables[:0]
	}
	clear(sc.outCols)
	if cap(sc.outCols) > maxScratch {
		sc.outCols = nil
	}
	sc.outCols = sc.outCols[:0]
	scratches.Put(sc)
}

// owned returns a copy of s of exactly its length, or nil when s is empty.
func owned[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return append(make([]T, 0, len(s)), s...)
}
