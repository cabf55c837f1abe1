package pganalyze

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// harmlessSettings change formatting, timeouts, planning or transaction
// characteristics, not how text is lexed, who the session is, or how names
// resolve. They are what drivers and ORMs set (psql, pgx, JDBC, psycopg,
// SQLAlchemy, Django, Rails, asyncpg, node-postgres).
var harmlessSettings = map[string]bool{
	"datestyle": true, "timezone": true, "intervalstyle": true, "application_name": true,
	"extra_float_digits": true, "client_min_messages": true, "statement_timeout": true,
	"lock_timeout": true, "idle_in_transaction_session_timeout": true, "idle_session_timeout": true,
	"bytea_output": true, "default_transaction_isolation": true, "transaction_isolation": true,
	"default_transaction_read_only": true, "transaction_read_only": true,
	"default_transaction_deferrable": true, "transaction_deferrable": true,
	"jit": true, "work_mem": true, "maintenance_work_mem": true, "hash_mem_multiplier": true,
	"synchronous_commit": true, "xmloption": true, "xmlbinary": true, "lc_messages": true,
	"lc_monetary": true, "lc_numeric": true, "lc_time": true, "geqo": true, "random_page_cost": true,
	"seq_page_cost": true, "cpu_tuple_cost": true, "cpu_index_tuple_cost": true,
	"cpu_operator_cost": true, "effective_cache_size": true, "plan_cache_mode": true,
	"default_statistics_target": true, "from_collapse_limit": true, "join_collapse_limit": true,
	"parallel_setup_cost": true, "parallel_tuple_cost": true, "max_parallel_workers_per_gather": true,
	"escape_string_warning": true, "default_text_search_config": true, "cursor_tuple_fraction": true,
	"constraint_exclusion": true, "quote_all_identifiers": true, "array_nulls": true,
	"tcp_keepalives_idle": true, "tcp_keepalives_interval": true, "tcp_keepalives_count": true,
	"tcp_user_timeout": true, "gin_fuzzy_search_limit": true, "effective_io_concurrency": true,
	"timezone_abbreviations": true,
}

// settingRisk says why changing a setting is a session change the policy
// must allow explicitly, or "" when it is harmless. Returning to the
// login's default (RESET, SET ... TO DEFAULT) is always harmless: the
// catalog and the parser assume those defaults.
func settingRisk(name, value string, valueKnown, reset bool) string {
	if reset {
		return ""
	}
	v := strings.ToLower(strings.TrimSpace(value))
	switch name {
	case "search_path":
		return "search_path changes how names resolve"
	case "role":
		return "SET ROLE changes the session's identity"
	case "session_authorization":
		return "SET SESSION AUTHORIZATION changes the session's identity"
	case "session_replication_role":
		return "session_replication_role disables triggers and rules"
	case "row_security":
		return "row_security changes which rows policies return"
	case "standard_conforming_strings":
		// The parser lexes with standard_conforming_strings on.
		if valueKnown && (v == "on" || v == "true" || v == "yes" || v == "1") {
			return ""
		}
		return "standard_conforming_strings off changes how string literals are lexed"
	case "backslash_quote":
		return "backslash_quote changes how string literals are lexed"
	case "client_encoding":
		if valueKnown && isUTF8(v) {
			return ""
		}
		return "client encodings other than UTF8 change how text is lexed"
	}
	if strings.HasPrefix(name, "enable_") || harmlessSettings[name] {
		return ""
	}
	return "setting " + name + " is not known to be harmless"
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
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemSessionChange, Setting: name,
			Detail: "SET " + name + " with a value that is not a literal"})
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
