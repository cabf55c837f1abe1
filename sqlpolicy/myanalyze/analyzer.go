package myanalyze

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/pingcap/tidb/pkg/parser"
	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/mysql"

	// The parser needs a literal value implementation; test_driver is the
	// one meant for using the parser on its own (go-mysql does the same).
	_ "github.com/pingcap/tidb/pkg/parser/test_driver"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// Options bound the input the analyzer parses. A zero value means the
// documented default.
type Options struct {
	// MaxBytes is the longest text analyzed (default 1 MiB).
	MaxBytes int
	// MaxDepth is the deepest nesting of parentheses (default 200).
	MaxDepth int
	// MaxTerms bounds operator chains (a+b+c..., AND/OR, JOIN, UNION),
	// counted per comma-separated item and summed over the enclosing
	// parentheses (default 2000): TiDB's parser makes one tree level per
	// operator, and the parser and analyzer walk the tree recursively.
	MaxTerms int
	// SQLMode is the sql_mode assumed for sessions the proxy has not told
	// theirs (Session.SetSQLMode); default MariaDB 10.11's default,
	// STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,
	// NO_ENGINE_SUBSTITUTION, which lexes like an empty mode.
	SQLMode string
}

const (
	defaultMaxBytes = 1 << 20
	defaultMaxDepth = 200
	defaultMaxTerms = 2000
	// maxWalkDepth bounds the analyzer's own recursion over the tree.
	maxWalkDepth = 5000
	// maxWork bounds the walker's work per statement (nodes visited and
	// lineage entries copied).
	maxWork = 2_000_000
	// maxViewDepth bounds views defined over views.
	maxViewDepth = 32
)

// Analyzer implements sqlpolicy.Analyzer for MySQL and MariaDB. It is safe
// for concurrent use: the catalog is read-only, parsers come from a pool
// and the caches are sync.Maps.
type Analyzer struct {
	cat  *catalog.Catalog
	opts Options
	mode mysql.SQLMode
	// modeErr is set when Options.SQLMode is not a mode keyhole models.
	modeErr error
	parsers sync.Pool
	// views caches the analysis of view definitions, by *catalog.Relation.
	views sync.Map
	// bases caches the output columns of plain relations.
	bases sync.Map
	// exprCols caches exprColumns by expression text ([]string; nil for
	// one that does not parse).
	exprCols sync.Map
	// lowerNames is set when the server compares database and table names
	// case-insensitively (lower_case_table_names 1 or 2).
	lowerNames bool
	// relIndex maps lower-cased schema.name to relations, for lowerNames.
	relIndex map[string]*catalog.Relation
	// fkChildren maps referenced tables to the foreign keys referencing
	// them (see writeEffects).
	fkChildren map[sqlpolicy.Rel][]childKey
	// versionID is the MariaDB server's MYSQL_VERSION_ID, which decides
	// which executable comments it runs; 0 (MySQL, or a catalog without
	// a version) refuses every executable comment.
	versionID int
}

var (
	_ sqlpolicy.Analyzer          = (*Analyzer)(nil)
	_ sqlpolicy.SessionNormalizer = (*Analyzer)(nil)
	_ sqlpolicy.LimitMapper       = (*Analyzer)(nil)
)

// New returns an analyzer resolving names through cat (a catalog of
// Dialect "mysql", from catalog.LoadMySQL).
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
		cat = &catalog.Catalog{Dialect: "mysql"}
	}
	a := &Analyzer{cat: cat, opts: opts}
	a.mode, a.modeErr = parseSQLMode(opts.SQLMode)
	a.lowerNames = cat.LowerCaseTableNames != 0
	a.relIndex = map[string]*catalog.Relation{}
	for schema, rels := range cat.Relations {
		for name, r := range rels {
			a.relIndex[strings.ToLower(schema)+"."+strings.ToLower(name)] = r
		}
	}
	a.fkChildren = indexForeignKeys(cat)
	a.versionID = mariaDBVersionID(cat.Version)
	a.parsers.New = func() any {
		p := parser.New()
		p.EnableWindowFunc(true)
		return p
	}
	return a
}

// NewSession implements sqlpolicy.Analyzer: a new connection's MySQL
// session state (*Session).
func (a *Analyzer) NewSession() sqlpolicy.Session { return &Session{defMode: a.mode} }

// Normalize implements sqlpolicy.Analyzer: the text with number literals
// replaced by ? and the string literals that are values (not aliases) by
// '?'. Text the analyzer's lexer refuses, and text whose token boundaries
// depend on the sql_mode (backslashes, double quotes), is an error: the
// engine normalizes those with NormalizeIn, under the session's mode.
func (a *Analyzer) Normalize(sql string) (string, error) {
	if len(sql) > a.opts.MaxBytes {
		return "", errors.New("normalize: text too long")
	}
	out, p := normalize(sql)
	if p != nil {
		return "", fmt.Errorf("normalize: %s", p.Detail)
	}
	return out, nil
}

// NormalizeIn implements sqlpolicy.SessionNormalizer: the text with
// number literals replaced by ? and value string literals by '?', its token boundaries
// found under the session's sql_mode (s may be nil: a fresh session), so
// that texts with backslash escapes or double-quoted strings normalize
// too. The session's Generation changes with its lexing mode, and the
// decision cache keys normalized entries on it, so sessions that lex
// differently never share an entry.
func (a *Analyzer) NormalizeIn(sql string, ss sqlpolicy.Session) (string, error) {
	s, ok := ss.(*Session)
	if !ok && ss != nil {
		return "", fmt.Errorf("normalize: session state of another dialect (%T)", ss)
	}
	if s == nil {
		s = &Session{}
	}
	if len(sql) > a.opts.MaxBytes {
		return "", errors.New("normalize: text too long")
	}
	mode, p := a.sessionMode(s)
	if p != nil {
		return "", fmt.Errorf("normalize: %s", p.Detail)
	}
	out, p := scanner{s: sql, mode: lexModeOf(mode), sessionKeyed: true}.normalize()
	if p != nil {
		return "", fmt.Errorf("normalize: %s", p.Detail)
	}
	return out, nil
}

// sessionMode is the sql_mode texts of s are lexed under, or the Problem
// that refuses every text of s.
func (a *Analyzer) sessionMode(s *Session) (mysql.SQLMode, *sqlpolicy.Problem) {
	switch {
	case s.modeProblem != "":
		return 0, &sqlpolicy.Problem{Code: sqlpolicy.ProblemSessionChange, Setting: "sql_mode", Detail: s.modeProblem}
	case s.charsetProblem != "":
		return 0, &sqlpolicy.Problem{Code: sqlpolicy.ProblemSessionChange, Setting: "character_set_client", Detail: s.charsetProblem}
	case s.modeSet:
		return s.mode, nil
	case a.modeErr != nil:
		return 0, &sqlpolicy.Problem{Code: sqlpolicy.ProblemSessionChange, Setting: "sql_mode", Detail: a.modeErr.Error()}
	}
	return a.mode, nil
}

func lexModeOf(m mysql.SQLMode) lexMode {
	return lexMode{ansiQuotes: m.HasANSIQuotesMode(), noBackslashEscapes: m.HasNoBackslashEscapesMode()}
}

// setStatement matches MariaDB's SET STATEMENT var = value FOR stmt, which
// TiDB's parser does not know: it changes settings (sql_mode among them)
// for one statement.
var setStatement = regexp.MustCompile(`(?i)(^|;)\s*set\s+statement\b`)

// hasSetStatement reports SET STATEMENT in sql, running the regular
// expression only on texts that contain the word at all.
func hasSetStatement(sql string) bool {
	for i := 0; i+9 <= len(sql); i++ {
		if (sql[i]|0x20) == 's' && strings.EqualFold(sql[i:i+9], "statement") {
			return setStatement.MatchString(sql)
		}
	}
	return false
}

// setStatementFor analyzes MariaDB's SET STATEMENT var = value [, ...]
// FOR stmt when every var is a timeout keyhole models (limitVars) set to
// a number literal: MariaDB Connector/J sends every statement with a
// query timeout so (setQueryTimeout: SET STATEMENT max_statement_time=N
// FOR ...). The statement is analyzed as if sent alone, with the
// changes as settings of its own (Local: they last for it only), decided
// against the role's limits like SET SESSION. Anything else with SET
// STATEMENT is refused: other variables (sql_mode among them) change how
// the statement is read or what it does.
func (a *Analyzer) setStatementFor(sql string, s *Session) *sqlpolicy.Access {
	sets, inner, ok := parseSetStatement(sql)
	if !ok {
		return failed(sqlpolicy.Problem{Code: sqlpolicy.ProblemSessionChange,
			Detail: "SET STATEMENT ... FOR changes session settings (sql_mode among them) for one statement; keyhole reads it only with the timeouts max_statement_time, max_execution_time or idle_*transaction_timeout set to numbers"})
	}
	acc := a.Analyze(inner, s)
	if len(acc.Statements) != 1 {
		return failed(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnsupported,
			Detail: "SET STATEMENT ... FOR applies to one statement; send the others on their own"})
	}
	st := &acc.Statements[0]
	for _, set := range sets {
		classifyLimit(&set)
		st.Settings = append(st.Settings, set)
	}
	return acc
}

// setStatementPrefix is SET STATEMENT at the start of a text (after white
// space), and setStatementItem one "name = number" after it.
var (
	setStatementPrefix = regexp.MustCompile(`(?is)^\s*set\s+statement\s+`)
	setStatementItem   = regexp.MustCompile(`(?is)^([a-z_][a-z0-9_]*)\s*=\s*([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(\s*,\s*|\s+for\s)`)
)

// parseSetStatement splits SET STATEMENT a = 1, b = 2 FOR stmt into its
// settings and stmt. ok is false unless every item is a limit variable
// set to a number literal, written plainly (no comments, quotes or
// expressions: those are refused rather than read).
func parseSetStatement(sql string) (sets []sqlpolicy.Setting, inner string, ok bool) {
	m := setStatementPrefix.FindStringIndex(sql)
	if m == nil {
		return nil, "", false
	}
	rest := sql[m[1]:]
	for {
		g := setStatementItem.FindStringSubmatchIndex(rest)
		if g == nil {
			return nil, "", false
		}
		name := strings.ToLower(rest[g[2]:g[3]])
		if _, limit := limitVars[name]; !limit {
			return nil, "", false
		}
		sets = append(sets, sqlpolicy.Setting{Name: name, Value: rest[g[4]:g[5]], Local: true})
		comma := strings.Contains(rest[g[6]:g[7]], ",")
		rest = rest[g[1]:]
		if !comma {
			// One SET STATEMENT: a second would be read recursively.
			return sets, rest, !hasSetStatement(rest)
		}
	}
}

// Analyze implements sqlpolicy.Analyzer. It never fails: problems are
// reported in the statements. s must be a *Session from NewSession, or nil
// for a fresh one.
func (a *Analyzer) Analyze(sql string, ss sqlpolicy.Session) *sqlpolicy.Access {
	s, ok := ss.(*Session)
	if !ok && ss != nil {
		return failed(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnsupported,
			Detail: fmt.Sprintf("session state of another dialect (%T)", ss)})
	}
	if s == nil {
		s = &Session{}
	}
	mode, p := a.sessionMode(s)
	if p != nil {
		return failed(*p)
	}
	if len(sql) > a.opts.MaxBytes {
		return failed(sqlpolicy.Problem{Code: sqlpolicy.ProblemTooComplex,
			Detail: fmt.Sprintf("text of %d bytes exceeds the %d-byte limit", len(sql), a.opts.MaxBytes)})
	}
	// Executable comments are what MariaDB runs (mysqldump and
	// mariadb-dump send /*!40100 SET @@SQL_MODE='' */, SELECT /*!40001
	// SQL_NO_CACHE */ ...): the rest of the analysis reads the text the
	// server runs, with their markers blanked.
	sql, p = scanner{s: sql, mode: lexModeOf(mode)}.expandExecutable(a.versionID)
	if p != nil {
		return failed(*p)
	}
	if p := (scanner{s: sql, mode: lexModeOf(mode), maxDepth: a.opts.MaxDepth, maxTerms: a.opts.MaxTerms}).check(); p != nil {
		return failed(*p)
	}
	if hasSetStatement(sql) {
		return a.setStatementFor(sql, s)
	}
	stmts, p := a.parse(sql, mode)
	if p != nil {
		if hasReturning(sql, mode) {
			p = &sqlpolicy.Problem{Code: sqlpolicy.ProblemUnsupported,
				Detail: "MariaDB's INSERT/REPLACE/DELETE ... RETURNING is not supported by keyhole's parser: run the write without RETURNING, then SELECT the rows (e.g. WHERE id = LAST_INSERT_ID())"}
		}
		return failed(*p)
	}
	acc := &sqlpolicy.Access{Statements: make([]sqlpolicy.Statement, 0, len(stmts))}
	st := textState{db: a.cat.Database, dbLost: s.dbLost, mode: mode, sess: s}
	if s.dbSet {
		st.db = s.db
	}
	lexChanged := false
	for _, n := range stmts {
		out := a.statement(n, &st, 0)
		if lexChanged {
			// The whole text was lexed under the mode it started with; a
			// statement after a change of sql_mode or character set is
			// read differently by the server.
			out.Problems = append(out.Problems, sqlpolicy.Problem{Code: sqlpolicy.ProblemSessionChange, Setting: "sql_mode",
				Detail: "statements after a change of sql_mode or character set in the same text; send the change on its own"})
		}
		for _, set := range runSettings(&out) {
			lexChanged = lexChanged || lexingSetting(set)
		}
		acc.Statements = append(acc.Statements, out)
		if db := useDB(&out); db != "" {
			// MariaDB stops a multi-statement text at its first error, so
			// the statements after a USE run only if it succeeded.
			st.db, st.dbLost = db, false
		}
		if out.PrepareName != "" && out.Prepared != nil {
			if st.prepared == nil {
				st.prepared = map[string]*sqlpolicy.Statement{}
			}
			st.prepared[out.PrepareName] = out.Prepared
		}
		for _, d := range out.Deallocate {
			if st.prepared == nil {
				st.prepared = map[string]*sqlpolicy.Statement{}
			}
			st.prepared[d] = nil
		}
	}
	return acc
}

// textState is the session state as a text's statements change it.
type textState struct {
	db     string
	dbLost bool
	mode   mysql.SQLMode
	sess   *Session
	// prepared are names (re)prepared (non-nil) or deallocated (nil)
	// earlier in the same text.
	prepared map[string]*sqlpolicy.Statement
}

// preparedStmt returns the analysis EXECUTE name runs, and the database it
// was analyzed under.
func (t *textState) preparedStmt(name string) (*sqlpolicy.Statement, string, bool) {
	if st, ok := t.prepared[name]; ok {
		return st, t.db, st != nil
	}
	st, ok := t.sess.prepared[name]
	if !ok {
		return nil, "", false
	}
	db := t.sess.prepDB[name]
	if db == "" && !t.sess.dbSet {
		db = t.db
	}
	return st, db, true
}

// failed is the analysis of a text refused as a whole. Whether a text
// lexes and parses can hinge on a literal's value (SET NAMES 'cp932' is a
// parse error, SET NAMES 'utf8' is not), so the refusal is marked
// LiteralSensitive: it must not be shared with texts that differ only in
// literals.
func failed(p sqlpolicy.Problem) *sqlpolicy.Access {
	return &sqlpolicy.Access{Statements: []sqlpolicy.Statement{{Command: "UNKNOWN", Problems: []sqlpolicy.Problem{p}, LiteralSensitive: true}}}
}

// parse parses sql under mode with a pooled parser. A panic in the parser
// is a Problem.
func (a *Analyzer) parse(sql string, mode mysql.SQLMode) (stmts []ast.StmtNode, prob *sqlpolicy.Problem) {
	p := a.parsers.Get().(*parser.Parser)
	defer func() {
		if r := recover(); r != nil {
			stmts, prob = nil, &sqlpolicy.Problem{Code: sqlpolicy.ProblemUnparseable,
				Detail: fmt.Sprintf("parser failure: %v", r)}
			return // a parser that panicked is not reused
		}
		a.parsers.Put(p)
	}()
	p.SetSQLMode(mode)
	stmts, _, err := p.ParseSQL(sql)
	if err != nil {
		return nil, &sqlpolicy.Problem{Code: sqlpolicy.ProblemUnparseable, Detail: parseDetail(err)}
	}
	// The returned slice is the parser's own result buffer, which its next
	// parse overwrites: the parser goes back to the pool, so keep a copy
	// (the nodes themselves are allocated per parse).
	return slices.Clone(stmts), nil
}

// parseDetail is the parser's message, first line only.
func parseDetail(err error) string {
	msg := err.Error()
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	if msg == "" {
		msg = "syntax error"
	}
	return "syntax error (keyhole's MySQL parser): " + msg
}

// statement analyzes one parsed statement. depth counts the enclosing
// EXPLAIN/PREPARE levels.
func (a *Analyzer) statement(n ast.StmtNode, ts *textState, depth int) (st sqlpolicy.Statement) {
	w := &walker{a: a, cat: a.cat, ts: ts, db: ts.db, st: &st, nest: depth, text: n.OriginalText()}
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
	w.top = n
	w.statement(n)
	w.indexOrder()
	w.writeEffects()
	w.statistics()
	if st.Verb == "" && len(st.Problems) == 0 {
		w.unsupported("statement kind not modelled")
	}
	if st.Command == "" {
		st.Command = "UNKNOWN"
	}
	a.classify(&st, ts.mode)
	return st
}
