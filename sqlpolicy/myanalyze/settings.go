package myanalyze

import (
	"fmt"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/opcode"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// set analyzes SET: user variables (their values are expressions like any
// other), session variables (a Setting each), SET NAMES and SET CHARACTER
// SET. Global variables are refused.
func (w *walker) set(x *ast.SetStmt) {
	st := w.st
	st.Verb, st.Command = sqlpolicy.VerbSet, "SET"
	sc := newScope(nil)
	for _, v := range x.Variables {
		switch {
		case v.Name == ast.SetNames || v.Name == ast.SetCharset:
			name := "names"
			if v.Name == ast.SetCharset {
				name = "character_set"
			}
			set := sqlpolicy.Setting{Name: name}
			if val, ok := literal(v.Value); ok {
				set.Value = val
			} else if v.Value == nil {
				set.Reset = true
			} else {
				set.Unknown = true
			}
			w.setting(set)
		case v.IsSystem:
			name := strings.ToLower(v.Name)
			if v.IsGlobal || v.IsInstance {
				w.unsupported("SET GLOBAL %s: global variables are not the agent's to change", name)
				continue
			}
			set := sqlpolicy.Setting{Name: name}
			if _, limit := limitVars[name]; limit {
				// A limit's amount is read from a number literal only:
				// MariaDB refuses strings and words for these variables,
				// and a computed value cannot be compared with the limit.
				if _, ok := v.Value.(*ast.DefaultExpr); ok {
					set.Reset = true
				} else if num, ok := numericLiteral(v.Value); ok {
					set.Value = num
				} else {
					set.Unknown = true
					w.expr(v.Value, sc, nil, clauseWhere)
				}
				w.setting(set)
				continue
			}
			switch val := v.Value.(type) {
			case *ast.DefaultExpr:
				set.Reset = true
			case *ast.ColumnNameExpr:
				// SET autocommit = ON, SET sql_mode = ANSI: a bare word.
				if val.Name.Table.O == "" {
					set.Value = val.Name.Name.O
				} else {
					set.Unknown = true
				}
			default:
				if s, ok := literal(v.Value); ok {
					set.Value = s
				} else if added, ok := sqlModeAddition(name, v.Value); ok {
					set.Value, set.Appended = added, true
				} else {
					set.Unknown = true
					w.expr(v.Value, sc, nil, clauseWhere)
				}
			}
			w.setting(set)
		default:
			w.expr(v.Value, sc, nil, clauseWhere)
		}
	}
}

// literal returns the text of a constant.
func literal(e ast.ExprNode) (string, bool) {
	switch x := e.(type) {
	case ast.ValueExpr:
		if x == nil {
			return "", false
		}
		return fmt.Sprint(x.GetValue()), true
	case *ast.UnaryOperationExpr:
		if s, ok := literal(x.V); ok {
			return "-" + s, true
		}
	}
	return "", false
}

// guardedChange reports setting changes that alter how MariaDB lexes
// later text (sql_mode, old_mode, the client and connection character
// sets), the session's identity, or what writes do beyond what the
// statement shows (turning off foreign key, unique or CHECK constraint
// checks, the clock DEFAULT CURRENT_TIMESTAMP reads, the next
// AUTO_INCREMENT value, the point in time system-versioned tables are
// read at), or what the server logs or replicates of the session
// (recordingVar), with their kind;
// "" for others. A change to a character set in which every ASCII byte is
// itself (utf8mb4, latin1 ...) keeps lexing as it was, and turning a
// check back on is harmless.
func guardedChange(set sqlpolicy.Setting) sqlpolicy.SettingKind {
	if set.Show {
		return ""
	}
	switch set.Name {
	case "sql_mode":
		if !addsOnlyInertModes(set) {
			return sqlpolicy.SettingLexing
		}
	case "old_mode":
		return sqlpolicy.SettingLexing
	case "role", "pseudo_thread_id", "proxy_user":
		return sqlpolicy.SettingIdentity
	case "names", "character_set", "character_set_client", "character_set_connection":
		if set.Reset || set.Unknown || !safeCharset(set.Value) {
			return sqlpolicy.SettingLexing
		}
	case "collation_connection":
		cs, _, _ := strings.Cut(set.Value, "_")
		if set.Reset || set.Unknown || !safeCharset(cs) {
			return sqlpolicy.SettingLexing
		}
	case "foreign_key_checks", "unique_checks", "check_constraint_checks":
		if set.Reset || set.Unknown || !isOn(set.Value) {
			return sqlpolicy.SettingBehavior
		}
	case "timestamp", "insert_id", "last_insert_id", "identity", "rand_seed1", "rand_seed2":
		// The clock NOW() and DEFAULT CURRENT_TIMESTAMP read, the next
		// AUTO_INCREMENT value, what LAST_INSERT_ID() returns, RAND()'s
		// seed: what a write stores or a read returns, which the
		// statement's text does not show. (These are how the binary log
		// replays a statement; an agent has no business setting them.)
		if !set.Reset {
			return sqlpolicy.SettingBehavior
		}
	case "system_versioning_asof", "system_versioning_insert_history":
		// system_versioning_asof puts FOR SYSTEM_TIME AS OF on every
		// query of a system-versioned table that has none (deleted rows
		// and old values come back), which keyhole refuses as not
		// modelled when it is written; system_versioning_insert_history
		// lets an insert write the row_start and row_end of history.
		if !set.Reset {
			return sqlpolicy.SettingBehavior
		}
	default:
		if !set.Reset && recordingVar(set.Name) {
			return sqlpolicy.SettingRecording
		}
	}
	return ""
}

// recordingVars are session variables that change what the server
// records of the session (general, slow and binary logs) or what and how
// it replicates: turning them off hides what the session did from the
// logs and from replicas, and setting server_id or a GTID makes the
// session's events look like another server's (a replica that sees its
// own server_id skips them). A return to the default (the global value)
// is harmless.
var recordingVars = map[string]bool{
	"sql_log_bin": true, "sql_log_off": true, "sql_log_update": true,
	"server_id": true, "skip_replication": true, "skip_parallel_replication": true,
	"pseudo_slave_mode": true, "pseudo_replica_mode": true,
	"sql_slave_skip_counter": true, "sql_replica_skip_counter": true,
	"slow_query_log": true, "long_query_time": true, "min_examined_row_limit": true, "rbr_exec_mode": true,
	"original_commit_timestamp": true, "original_server_version": true, "immediate_server_version": true,
}

// recordingPrefixes name families of such variables: every binlog_,
// gtid_, log_ (log_slow_*, log_disabled_statements, log_warnings ...),
// wsrep_ (Galera replication: wsrep_on off keeps the session's writes
// from the other nodes), slave_ and replica_ variable.
var recordingPrefixes = []string{"binlog_", "gtid_", "log_", "wsrep_", "slave_", "replica_"}

func recordingVar(name string) bool {
	if recordingVars[name] {
		return true
	}
	for _, p := range recordingPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// sqlModeAddition reads SET sql_mode = CONCAT(@@sql_mode, ',MODE,...') —
// the session's own sql_mode with modes appended, which MariaDB
// Connector/J sends on every connection (to add STRICT_TRANS_TABLES) —
// and returns the appended text. Any other form (another variable,
// @@global.sql_mode, which need not match the session's, a computed
// suffix) is not one.
func sqlModeAddition(name string, e ast.ExprNode) (string, bool) {
	fn, ok := e.(*ast.FuncCallExpr)
	if name != "sql_mode" || !ok || fn.FnName.L != "concat" || len(fn.Args) < 2 {
		return "", false
	}
	self, ok := fn.Args[0].(*ast.VariableExpr)
	if !ok || !self.IsSystem || self.IsGlobal || self.IsInstance || !strings.EqualFold(self.Name, "sql_mode") {
		return "", false
	}
	var b strings.Builder
	for _, arg := range fn.Args[1:] {
		v, ok := arg.(ast.ValueExpr)
		if !ok || v == nil {
			return "", false
		}
		s, ok := v.GetValue().(string)
		if !ok {
			return "", false
		}
		b.WriteString(s)
	}
	return b.String(), true
}

// addsOnlyInertModes reports an sql_mode change that appends only modes
// that change what statements do with values (strictness, dates, SHOW
// CREATE output), none that changes lexing or parsing (parseSQLMode's
// bits), to the session's own (read at connect, and never changed since:
// every other change is refused), so text lexes afterwards as it did
// before. The appended text must start a new mode: one that does not
// would extend the last mode's name.
func addsOnlyInertModes(set sqlpolicy.Setting) bool {
	if !set.Appended || set.Reset || set.Unknown || set.Value != "" && set.Value[0] != ',' {
		return false
	}
	m, err := parseSQLMode(set.Value)
	return err == nil && m == 0
}

// isOn reports a boolean setting value that turns the setting on.
func isOn(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "on", "true":
		return true
	}
	return false
}

// show analyzes SHOW statements. Those that list metadata are modelled as
// reads of the information_schema view that holds it (a role reads them
// with catalog: true); SHOW COLUMNS / INDEX / CREATE TABLE / CREATE VIEW
// also read the table itself, so they need a grant on it, and SHOW TABLE
// STATUS reads every table it may list (statistics.go); variables and
// status are Settings read; SHOW PROCESSLIST, SHOW GRANTS for another
// user and every other kind are refused.
func (w *walker) show(x *ast.ShowStmt) {
	st := w.st
	st.Verb, st.Command, st.ReturnsRows = sqlpolicy.VerbUtility, "SHOW", true
	meta := func(view string) {
		w.table(sqlpolicy.TableRef{Rel: sqlpolicy.Rel{Schema: "information_schema", Name: view}, Mode: sqlpolicy.Read})
	}
	table := func() *item {
		if x.Table == nil {
			w.unsupported("SHOW without a table")
			return nil
		}
		tn := *x.Table
		if x.DBName != "" {
			tn.Schema = ast.NewCIStr(x.DBName)
		}
		return w.resolveTable(&tn, nil, sqlpolicy.Read, false)
	}
	switch x.Tp {
	case ast.ShowVariables, ast.ShowStatus:
		st.Verb = sqlpolicy.VerbSet
		name := "variables"
		if x.Tp == ast.ShowStatus {
			name = "status"
		}
		w.setting(sqlpolicy.Setting{Name: name, Show: true})
	case ast.ShowWarnings, ast.ShowErrors:
		// The session's own diagnostics, about statements keyhole allowed.
	case ast.ShowCharset, ast.ShowCollation, ast.ShowEngines, ast.ShowPlugins, ast.ShowPrivileges:
		// Server metadata.
	case ast.ShowDatabases:
		meta("SCHEMATA")
	case ast.ShowCreateDatabase:
		meta("SCHEMATA")
		if w.a.lookupSchema(x.DBName) == "" {
			w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownTable, Rel: sqlpolicy.Rel{Schema: x.DBName},
				Detail: fmt.Sprintf("database %s does not exist", x.DBName)})
		}
	case ast.ShowTables, ast.ShowTableStatus:
		meta("TABLES")
		if x.DBName != "" && w.a.lookupSchema(x.DBName) == "" {
			w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownTable, Rel: sqlpolicy.Rel{Schema: x.DBName},
				Detail: fmt.Sprintf("database %s does not exist", x.DBName)})
		}
		if x.DBName == "" && w.db == "" {
			w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownTable, Detail: "no database selected"})
		}
		if x.Tp == ast.ShowTableStatus {
			// Every row shows the table's row count and sizes: a read of
			// each table of the database the LIKE pattern may match (a
			// WHERE clause is not evaluated). A database that is not
			// known (also the current one after a failed text that
			// changed it) may be any.
			db := x.DBName
			if db == "" && !w.ts.dbLost {
				db = w.db
			}
			var matchDB func(string) bool
			if db = w.a.lookupSchema(db); db != "" {
				matchDB = func(s string) bool { return s == db }
			}
			match := showLike(x.Pattern)
			if names, ok := showWhereNames(x.Where); ok {
				// WHERE Name = 'orders' (or IN): the rows of other tables
				// are filtered out by name alone, before anything else
				// of theirs is compared.
				match = foldMatcher(names)
			}
			w.tableStatistics(matchDB, match)
			w.st.LiteralSensitive = true // the LIKE pattern or WHERE names pick the tables
		}
	case ast.ShowColumns:
		// MariaDB lists only the columns the user holds a privilege on.
		meta("COLUMNS")
		table()
	case ast.ShowIndex:
		// Cardinality is each index's count of distinct keys, a number
		// made by the values of its columns (statistics.go).
		meta("STATISTICS")
		if it := table(); it != nil && it.rel != nil && it.rel.Kind != catalog.KindView {
			w.indexStatistics(it.rel)
		}
	case ast.ShowCreateTable, ast.ShowCreateView:
		// The definition names every column (with its default and
		// comment), and MariaDB asks a table-level privilege for it: it
		// counts as reading every column, so a table with columns the
		// role may not read is refused.
		meta("TABLES")
		if it := table(); it != nil {
			w.readCols(nil, it.cols)
		}
	case ast.ShowGrants:
		if x.User != nil && !x.User.CurrentUser {
			w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemDataCatalog,
				Detail: "SHOW GRANTS FOR another account exposes its privileges"})
		}
	case ast.ShowProcessList:
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemDataCatalog,
			Detail: "SHOW PROCESSLIST exposes other sessions and their statements"})
	default:
		w.unsupported("this SHOW statement is not modelled")
	}
	if x.Pattern != nil && x.Pattern.Pattern != nil {
		if _, ok := x.Pattern.Pattern.(ast.ValueExpr); !ok {
			// MariaDB's grammar takes a string literal only; keyhole's
			// parser takes any expression, a subquery too, which would
			// go unread.
			w.unsupported("SHOW ... LIKE takes a string literal")
		}
	}
	if x.Where != nil {
		// SHOW ... WHERE filters the result's own columns; only a
		// subquery in it can read tables.
		sc := newScope(nil)
		sc.anyName = true
		w.expr(x.Where, sc, nil, clauseWhere)
	}
}

// showWhereNames reads SHOW TABLE STATUS WHERE Name = 'lit' [AND ...], or
// Name IN ('lit', ...): the names of the only tables whose rows it can
// return. Any other condition (OR, another column: WHERE Rows > 5 is
// evaluated on every table's numbers) is not read (ok false).
func showWhereNames(e ast.ExprNode) (names []string, ok bool) {
	if e == nil {
		return nil, false
	}
	var f statsFilter
	var conj func(e ast.ExprNode) bool
	isName := func(e ast.ExprNode) bool {
		cn, ok := e.(*ast.ColumnNameExpr)
		return ok && cn.Name.Table.O == "" && cn.Name.Schema.O == "" && strings.EqualFold(cn.Name.Name.O, "name")
	}
	add := func(vals []ast.ExprNode) bool {
		set := []string{}
		for _, v := range vals {
			x, ok := v.(ast.ValueExpr)
			if !ok || x == nil {
				return false
			}
			s, ok := x.GetValue().(string)
			s = strings.TrimRight(s, " ")
			if !ok || !isASCII(s) {
				return false
			}
			set = append(set, s)
		}
		if f.names == nil {
			f.names = set
			return true
		}
		// A second condition on Name: a row passes both, so one list is
		// a superset of what passes.
		return true
	}
	conj = func(e ast.ExprNode) bool {
		switch x := e.(type) {
		case *ast.ParenthesesExpr:
			return conj(x.Expr)
		case *ast.BinaryOperationExpr:
			switch {
			case x.Op == opcode.LogicAnd:
				// Both sides must be read: a condition on another column
				// is evaluated on the rows the Name test would drop.
				return conj(x.L) && conj(x.R)
			case x.Op == opcode.EQ && isName(x.L):
				return add([]ast.ExprNode{x.R})
			case x.Op == opcode.EQ && isName(x.R):
				return add([]ast.ExprNode{x.L})
			}
		case *ast.PatternInExpr:
			return !x.Not && x.Sel == nil && isName(x.Expr) && add(x.List)
		}
		return false
	}
	if !conj(e) {
		return nil, false
	}
	return f.names, true
}
