package pganalyze

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/pganalyze/pg_query_go/v6/parser"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
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
	// path is the catalog's search path with pg_catalog placed the way
	// Postgres searches it, so name lookups do not rebuild it every time.
	path []string
}

var _ sqlpolicy.Analyzer = (*Analyzer)(nil)

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
	out, err := pg.Normalize(sql)
	if err != nil {
		return "", fmt.Errorf("normalize: %w", err)
	}
	return out, nil
}

// Analyze parses sql and analyzes every statement in it. It never fails:
// problems are reported in the statements.
func (a *Analyzer) Analyze(sql string, s *sqlpolicy.Session) *sqlpolicy.Access {
	if p := a.precheck(sql); p != nil {
		return &sqlpolicy.Access{Statements: []sqlpolicy.Statement{{Command: "UNKNOWN", Problems: []sqlpolicy.Problem{*p}}}}
	}
	tree, err := pg.Parse(sql)
	if err != nil {
		return &sqlpolicy.Access{Statements: []sqlpolicy.Statement{{
			Command:  "UNKNOWN",
			Problems: []sqlpolicy.Problem{{Code: sqlpolicy.ProblemUnparseable, Detail: parseDetail(err)}},
		}}}
	}
	acc := &sqlpolicy.Access{Statements: make([]sqlpolicy.Statement, 0, len(tree.Stmts))}
	path := a.path
	if s != nil && s.SearchPath != nil {
		path = searchPath(s.SearchPath)
	}
	for _, raw := range tree.Stmts {
		acc.Statements = append(acc.Statements, a.statement(raw.GetStmt(), s, path, 0))
	}
	return acc
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
func (a *Analyzer) statement(n *pg.Node, s *sqlpolicy.Session, path []string, depth int) (st sqlpolicy.Statement) {
	w := &walker{a: a, cat: a.cat, path: path, sess: s, st: &st, nest: depth}
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
	return st
}
