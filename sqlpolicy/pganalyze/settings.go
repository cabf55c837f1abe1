package pganalyze

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// harmlessSettings change formatting, timeouts, planning or transaction
// characteristics, not how text is lexed, who the session is, or how names
// resolve. They are what drivers, ORMs and tools set (psql, pg_dump, pgx,
// JDBC, psycopg, SQLAlchemy, Django, Rails, asyncpg, node-postgres).
// Settings that enforce a role's limits (limitSettings) are harmless too:
// the decision compares their new values with the limits.
var harmlessSettings = setOf(`
	datestyle timezone intervalstyle application_name extra_float_digits client_min_messages
	lock_timeout idle_session_timeout bytea_output default_transaction_isolation transaction_isolation
	default_transaction_read_only transaction_read_only default_transaction_deferrable transaction_deferrable
	jit synchronous_commit xmloption xmlbinary lc_messages lc_monetary lc_numeric lc_time geqo
	random_page_cost seq_page_cost cpu_tuple_cost cpu_index_tuple_cost cpu_operator_cost
	effective_cache_size plan_cache_mode default_statistics_target from_collapse_limit join_collapse_limit
	parallel_setup_cost parallel_tuple_cost max_parallel_workers_per_gather escape_string_warning
	default_text_search_config cursor_tuple_fraction constraint_exclusion quote_all_identifiers array_nulls
	tcp_keepalives_idle tcp_keepalives_interval tcp_keepalives_count tcp_user_timeout gin_fuzzy_search_limit
	effective_io_concurrency timezone_abbreviations
	synchronize_seqscans row_security restrict_nonsystem_relation_kind`)

// Why the three pg_dump sets are harmless: synchronize_seqscans only
// picks where a sequential scan starts; row_security = off makes a query
// that a row security policy would filter fail instead (it never shows
// more rows, except to roles that bypass row security anyway);
// restrict_nonsystem_relation_kind only forbids expanding views and
// reading foreign tables. hash_mem_multiplier is not harmless: it
// multiplies work_mem for hash steps, past the role's limit.

// judgeSetting says what changing setting name to value does, when that
// is not harmless: the kind of change and why. Returning to the login's
// default is judged by the caller (see classifySetting).
func judgeSetting(name, value string, valueKnown bool) (sqlpolicy.SettingKind, string) {
	v := strings.ToLower(strings.TrimSpace(value))
	switch name {
	case "search_path":
		if valueKnown && systemOnlyPath(value) {
			// Only pg_catalog (and pg_temp, which Postgres searches first
			// for relations under any path): what pg_dump sets, and
			// stricter than the login's path.
			return "", ""
		}
		return sqlpolicy.SettingResolution, "search_path changes how names resolve"
	case "role":
		return sqlpolicy.SettingIdentity, "SET ROLE changes the session's identity"
	case "session_authorization":
		return sqlpolicy.SettingIdentity, "SET SESSION AUTHORIZATION changes the session's identity"
	case "session_replication_role":
		return sqlpolicy.SettingBehavior, "session_replication_role disables triggers and rules"
	case "standard_conforming_strings":
		// The parser lexes with standard_conforming_strings on.
		if valueKnown && (v == "on" || v == "true" || v == "yes" || v == "1") {
			return "", ""
		}
		return sqlpolicy.SettingLexing, "standard_conforming_strings off changes how string literals are lexed"
	case "backslash_quote":
		return sqlpolicy.SettingLexing, "backslash_quote changes how string literals are lexed"
	case "client_encoding":
		if valueKnown && isUTF8(v) {
			return "", ""
		}
		return sqlpolicy.SettingLexing, "client encodings other than UTF8 change how text is lexed"
	}
	if strings.HasPrefix(name, "log_") {
		// log_statement, log_min_duration_statement, log_parameter_max_length_on_error
		// ...: what the server log records of the session (most need
		// superuser; MySQL's sql_log_off and the like are refused alike).
		return sqlpolicy.SettingRecording, "setting " + name + " changes what the server logs of the session"
	}
	if _, ok := limitSettings[name]; ok || strings.HasPrefix(name, "enable_") || harmlessSettings[name] {
		return "", ""
	}
	return sqlpolicy.SettingUnknown, "setting " + name + " is not known to be harmless"
}

// systemOnlyPath reports a search_path value (as the analyzer renders it:
// names separated by commas) naming no schema but pg_catalog and pg_temp.
func systemOnlyPath(value string) bool {
	for _, n := range strings.Split(value, ",") {
		switch strings.TrimSpace(n) {
		case "", `""`, "pg_catalog", "pg_temp":
		default:
			return false
		}
	}
	return true
}

// settingRisk says why changing a setting is a session change the policy
// must allow explicitly, or "" when it is harmless. Returning to the
// login's default (RESET, SET ... TO DEFAULT) is always harmless here: the
// catalog and the parser assume those defaults (identity resets are
// refused through Setting.Guarded).
func settingRisk(name, value string, valueKnown, reset bool) string {
	if reset {
		return ""
	}
	_, why := judgeSetting(name, value, valueKnown)
	return why
}

func isUTF8(v string) bool {
	v = strings.NewReplacer("-", "", "_", "").Replace(v)
	return v == "utf8" || v == "unicode"
}

// setValue renders the arguments of SET the way Postgres flattens them:
// a list separated by ", " (for search_path: schema names separated by
// ",", each argument one name).
func (w *walker) setValue(name string, args []*pg.Node) (string, bool) {
	parts := make([]string, 0, len(args))
	for _, a := range args {
		s, ok := constString(a)
		if !ok {
			return "", false
		}
		if name == "search_path" && (strings.IndexByte(s, ',') >= 0 || s != strings.TrimSpace(s)) {
			// Each argument is one schema name, taken verbatim (Postgres
			// quotes it before parsing the list): ' internal' names no
			// schema internal. The value below separates names by commas
			// and is trimmed when split, so such a name cannot be
			// followed.
			return "", false
		}
		if tc := a.GetTypeCast(); tc != nil && name == "timezone" {
			// SET TIME ZONE INTERVAL '+02:00' HOUR TO MINUTE.
			s = "interval " + s
		}
		parts = append(parts, s)
	}
	if name == "search_path" {
		return strings.Join(parts, ","), true
	}
	return strings.Join(parts, ", "), true
}

func (w *walker) variableSet(s *pg.VariableSetStmt) {
	w.st.Verb = sqlpolicy.VerbSet
	w.st.Command = "SET"
	w.st.LiteralSensitive = true
	name := strings.ToLower(s.Name)
	switch s.Kind {
	case pg.VariableSetKind_VAR_SET_MULTI:
		w.setMulti(s)
		return
	case pg.VariableSetKind_VAR_RESET, pg.VariableSetKind_VAR_RESET_ALL:
		w.st.Command = "RESET"
		if s.Kind == pg.VariableSetKind_VAR_RESET_ALL {
			name = "all"
			// RESET ALL also returns search_path to the login's.
			w.setting(sqlpolicy.Setting{Name: "search_path", Reset: true})
		}
		w.setting(sqlpolicy.Setting{Name: name, Reset: true, Local: s.IsLocal})
		return
	case pg.VariableSetKind_VAR_SET_DEFAULT:
		w.setting(sqlpolicy.Setting{Name: name, Reset: true, Local: s.IsLocal})
		return
	case pg.VariableSetKind_VAR_SET_CURRENT:
		// SET x FROM CURRENT keeps the current value: no change (it is not
		// a return to the login's value).
		return
	case pg.VariableSetKind_VAR_SET_VALUE:
	default:
		w.unsupported("SET of kind %s", s.Kind)
		return
	}
	value, ok := w.setValue(name, s.Args)
	if !ok {
		detail := "SET " + name + " with a value that is not a literal"
		if name == "search_path" {
			detail = "SET search_path with a value that is not a literal, or a schema name with a comma or surrounding spaces keyhole cannot follow"
		}
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemSessionChange, Setting: name, Detail: detail})
	}
	w.setting(sqlpolicy.Setting{Name: name, Value: value, Local: s.IsLocal, Unknown: !ok})
	if d := settingRisk(name, value, ok, false); d != "" {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemSessionChange, Setting: name, Detail: d})
	}
}

// setMulti handles SET TRANSACTION, SET SESSION CHARACTERISTICS AS
// TRANSACTION and SET TRANSACTION SNAPSHOT.
func (w *walker) setMulti(s *pg.VariableSetStmt) {
	switch strings.ToUpper(s.Name) {
	case "TRANSACTION":
		w.st.Verb = sqlpolicy.VerbTransaction
		w.transactionOptions(s.Args, "transaction_", true)
	case "SESSION CHARACTERISTICS":
		w.transactionOptions(s.Args, "default_", false)
	case "TRANSACTION SNAPSHOT":
		w.st.Verb = sqlpolicy.VerbTransaction
		v, _ := constString(firstNode(s.Args))
		w.setting(sqlpolicy.Setting{Name: "transaction_snapshot", Value: v, Local: true})
	default:
		w.unsupported("SET %s", s.Name)
	}
}

func firstNode(ns []*pg.Node) *pg.Node {
	if len(ns) == 0 {
		return nil
	}
	return ns[0]
}

// transactionOptions records transaction modes (isolation level, READ
// ONLY, DEFERRABLE) as settings; they are harmless.
func (w *walker) transactionOptions(opts []*pg.Node, prefix string, local bool) {
	for _, o := range opts {
		de := o.GetDefElem()
		if de == nil {
			w.unsupported("transaction option of kind %s", nodeName(o.Node))
			continue
		}
		v, _ := constString(de.Arg)
		name := de.Defname
		if prefix == "default_" {
			name = strings.Replace(name, "transaction_", "default_transaction_", 1)
		}
		w.setting(sqlpolicy.Setting{Name: name, Value: v, Local: local})
	}
}

// settingsFilter is what a statement's WHERE clauses restrict its reads
// of pg_settings to. pg_settings lists every setting, custom ones too
// (myapp.secret, set per role or database, often holds secrets), so a
// read of it is a data catalog read; but a query that selects rows by
// name reads only those settings, which drivers and tools do (pgJDBC:
// WHERE name='max_index_keys'; pg_dump: SELECT set_config(name, ...) FROM
// pg_settings WHERE name = 'restrict_nonsystem_relation_kind').
type settingsFilter struct {
	// all is set when every FROM entry named pg_settings in the statement
	// is such a query: the statement reads only the settings in names.
	all   bool
	names []string
	// read is set once the reads of names are reported.
	read bool
	// calls are the set_config calls of those queries whose setting name
	// is the name column, with the names it can take.
	calls map[*pg.FuncCall][]string
}

// settingsFilter returns the statement's filter, computed on first use
// (only statements that read pg_settings or call set_config with a
// computed name need it). View definitions are analyzed without a root:
// their reads of pg_settings are never filtered.
func (w *walker) settingsFilter() *settingsFilter {
	if w.settings == nil {
		w.settings = findSettingsFilter(w.root)
	}
	return w.settings
}

// findSettingsFilter scans every node of a statement for FROM entries
// named pg_settings and the queries that filter them by name.
func findSettingsFilter(root *pg.Node) *settingsFilter {
	f := &settingsFilter{calls: map[*pg.FuncCall][]string{}}
	if root == nil {
		return f
	}
	total, restricted := 0, 0
	eachMessage(root.ProtoReflect(), func(m protoreflect.Message) {
		switch x := m.Interface().(type) {
		case *pg.RangeVar:
			if x.Relname == "pg_settings" && (x.Schemaname == "" || x.Schemaname == "pg_catalog") {
				total++
			}
		case *pg.SelectStmt:
			names, calls, ok := settingsQuery(x)
			if !ok {
				return
			}
			restricted++
			f.names = append(f.names, names...)
			for _, c := range calls {
				f.calls[c] = names
			}
		}
	})
	f.all = total > 0 && restricted == total
	return f
}

// eachMessage calls fn for m and every message under it.
func eachMessage(m protoreflect.Message, fn func(protoreflect.Message)) {
	fn(m)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind || fd.IsMap() {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				eachMessage(l.Get(i).Message(), fn)
			}
			return true
		}
		eachMessage(v.Message(), fn)
		return true
	})
}

// settingsQuery matches `SELECT ... FROM pg_settings [alias] WHERE name =
// 'x'` (or `name IN ('x', 'y')`, the name written plainly or qualified by
// the entry's name): the only FROM entry, and a WHERE clause that is that
// comparison and nothing else. Postgres evaluates the select list, ORDER
// BY, GROUP BY and HAVING only for rows the WHERE clause kept; another
// condition or FROM entry could be evaluated on every setting first
// (conditions are not evaluated in a set order), and an error there would
// tell something about a setting the filter leaves out. It returns the
// names and the select list's set_config(name, ...) calls.
func settingsQuery(sel *pg.SelectStmt) (lits []string, calls []*pg.FuncCall, ok bool) {
	if sel.Op != pg.SetOperation_SETOP_NONE || len(sel.FromClause) != 1 || sel.WhereClause == nil {
		return nil, nil, false
	}
	rv := sel.FromClause[0].GetRangeVar()
	if rv == nil || rv.Relname != "pg_settings" || (rv.Schemaname != "" && rv.Schemaname != "pg_catalog") || rv.Catalogname != "" {
		return nil, nil, false
	}
	ref := rv.Relname
	if rv.Alias != nil {
		if len(rv.Alias.Colnames) > 0 {
			// An alias list renames the columns: name may be another one.
			return nil, nil, false
		}
		ref = rv.Alias.Aliasname
	}
	isName := func(n *pg.Node) bool {
		cr := n.GetColumnRef()
		if cr == nil {
			return false
		}
		parts := names(cr.Fields)
		return len(parts) == len(cr.Fields) &&
			(len(parts) == 1 && parts[0] == "name" || len(parts) == 2 && parts[0] == ref && parts[1] == "name")
	}
	lits = filterNames(sel.WhereClause, isName)
	if lits == nil {
		return nil, nil, false
	}
	for _, t := range sel.TargetList {
		rt := t.GetResTarget()
		if rt == nil {
			continue
		}
		fc := rt.Val.GetFuncCall()
		if fc == nil || len(fc.Args) != 3 || !isName(fc.Args[0]) {
			continue
		}
		fn := names(fc.Funcname)
		if len(fn) > 0 && fn[len(fn)-1] == "set_config" && (len(fn) == 1 || len(fn) == 2 && fn[0] == "pg_catalog") {
			calls = append(calls, fc)
		}
	}
	return lits, calls, true
}

// filterNames returns the string literals a WHERE clause `name = 'x'`,
// `'x' = name` or `name IN ('x', ...)` compares the name column with, or
// nil for any other clause.
func filterNames(where *pg.Node, isName func(*pg.Node) bool) []string {
	e := where.GetAExpr()
	if e == nil {
		return nil
	}
	op := names(e.Name)
	if len(op) == 0 || op[len(op)-1] != "=" || len(op) > 2 || (len(op) == 2 && op[0] != "pg_catalog") {
		return nil
	}
	lit := func(n *pg.Node) (string, bool) {
		c := n.GetAConst()
		if c == nil || c.Isnull || c.GetSval() == nil {
			return "", false
		}
		return c.GetSval().Sval, true
	}
	switch e.Kind {
	case pg.A_Expr_Kind_AEXPR_OP:
		l, r := e.Lexpr, e.Rexpr
		if !isName(l) {
			l, r = r, l
		}
		if v, ok := lit(r); ok && isName(l) {
			return []string{v}
		}
	case pg.A_Expr_Kind_AEXPR_IN:
		list := e.Rexpr.GetList()
		if list == nil || !isName(e.Lexpr) || len(list.Items) == 0 {
			return nil
		}
		out := make([]string, 0, len(list.Items))
		for _, it := range list.Items {
			v, ok := lit(it)
			if !ok {
				return nil
			}
			out = append(out, v)
		}
		return out
	}
	return nil
}

// settingsRead reports a read of pg_catalog.pg_settings: the settings the
// statement's filter names when every read of it is filtered by name,
// otherwise a data catalog Problem.
func (w *walker) settingsRead() bool {
	f := w.settingsFilter()
	if !f.all {
		return false
	}
	if f.read {
		return true
	}
	f.read = true
	w.st.LiteralSensitive = true
	for _, n := range f.names {
		n = strings.ToLower(n)
		w.setting(sqlpolicy.Setting{Name: n, Show: true})
		w.checkSettingRead(n, "pg_settings")
	}
	return true
}
