package pganalyze

import (
	"fmt"
	"slices"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

type catalogFunc = catalog.Function

// fileFuncs read or write server files (or list them).
var fileFuncs = map[string]bool{
	"pg_read_file": true, "pg_read_binary_file": true, "pg_ls_dir": true, "pg_stat_file": true,
	"pg_ls_logdir": true, "pg_ls_waldir": true, "pg_ls_tmpdir": true, "pg_ls_archive_statusdir": true,
	"pg_ls_logicalsnapdir": true, "pg_ls_logicalmapdir": true, "pg_ls_replslotdir": true,
	"lo_import": true, "lo_export": true, "pg_current_logfile": true,
	"pg_file_write": true, "pg_file_rename": true, "pg_file_unlink": true, "pg_file_sync": true,
	"pg_logdir_ls": true, "pg_file_settings": true, "pg_show_all_file_settings": true,
	"pg_hba_file_rules": true, "pg_ident_file_mappings": true,
}

// dynamicFuncs run SQL text passed as a string, or read whole relations by
// name: the analyzer cannot see what they read.
var dynamicFuncs = map[string]bool{
	"query_to_xml": true, "query_to_xmlschema": true, "query_to_xml_and_xmlschema": true,
	"cursor_to_xml": true, "cursor_to_xmlschema": true,
	"table_to_xml": true, "table_to_xmlschema": true, "table_to_xml_and_xmlschema": true,
	"schema_to_xml": true, "schema_to_xmlschema": true, "schema_to_xml_and_xmlschema": true,
	"database_to_xml": true, "database_to_xmlschema": true, "database_to_xml_and_xmlschema": true,
	"ts_stat": true, "ts_rewrite": true,
	// Extensions (matched by name, wherever installed, like dblink: a
	// function list that allows schema.* must not let them through).
	// tablefunc's crosstab runs its one or two query strings and
	// connectby builds a query from the relation and column names it is
	// given; xml2's xpath_table builds one from its relation, key,
	// document and condition strings; pgrowlocks scans the relation
	// named in its argument. All run through SPI as the current user.
	"crosstab": true, "crosstab2": true, "crosstab3": true, "crosstab4": true,
	"connectby": true, "xpath_table": true, "pgrowlocks": true,
	// refint's trigger functions query and delete from the relations
	// and columns named in their trigger arguments; autoinc advances the
	// sequence named in them.
	"check_primary_key": true, "check_foreign_key": true, "autoinc": true,
}

// dangerousFuncs act on other sessions or the server, read data past
// column privileges, or hold resources.
var dangerousFuncs = map[string]string{
	"pg_terminate_backend":           "ends another session",
	"pg_cancel_backend":              "cancels another session's query",
	"pg_reload_conf":                 "reloads the server configuration",
	"pg_rotate_logfile":              "rotates the server log",
	"pg_promote":                     "promotes a standby",
	"pg_switch_wal":                  "switches the WAL file",
	"pg_create_restore_point":        "writes a WAL restore point",
	"pg_backup_start":                "starts a base backup",
	"pg_backup_stop":                 "stops a base backup",
	"pg_start_backup":                "starts a base backup",
	"pg_stop_backup":                 "stops a base backup",
	"pg_wal_replay_pause":            "pauses WAL replay",
	"pg_wal_replay_resume":           "resumes WAL replay",
	"pg_log_backend_memory_contexts": "writes to the server log",
	"pg_import_system_collations":    "changes the catalog",
	"pg_nextoid":                     "changes the catalog (superuser only)",
	"pg_stop_making_pinned_objects":  "changes the catalog (initdb only)",
	"pg_stat_get_activity":           "shows other sessions' queries",
	"pg_stat_statements":             "shows other sessions' queries",
	"pg_stat_statements_info":        "shows query statistics",
	"pg_stat_statements_reset":       "resets query statistics",
	"pg_sleep":                       "holds a connection (denial of service)",
	"pg_sleep_for":                   "holds a connection (denial of service)",
	"pg_sleep_until":                 "holds a connection (denial of service)",
	"get_raw_page":                   "reads raw pages past column privileges",
	"heap_page_items":                "reads raw tuples past column privileges",
	"heap_page_item_attrs":           "reads raw tuples past column privileges",
	"tuple_data_split":               "reads raw tuples past column privileges",
	"bt_page_items":                  "reads raw index entries",
	"brin_page_items":                "reads raw index entries",
	"gin_leafpage_items":             "reads raw index entries",
	"hash_page_items":                "reads raw index entries",
	"pg_get_wal_records_info":        "reads raw WAL",
	"pg_get_wal_record_info":         "reads raw WAL",
	"pg_get_wal_block_info":          "reads raw WAL",
	"pg_get_wal_stats":               "reads raw WAL",
	// pg_walinspect's PG 15 names of the same readers.
	"pg_get_wal_records_info_till_end_of_wal": "reads raw WAL",
	"pg_get_wal_stats_till_end_of_wal":        "reads raw WAL",
	// pg_surgery and pg_visibility change the relation named in their
	// argument by row position or map page: no write of it is reported.
	"heap_force_kill":                     "removes rows by position, past the statement's writes",
	"heap_force_freeze":                   "rewrites rows by position, past the statement's writes",
	"pg_truncate_visibility_map":          "changes a relation's visibility map",
	"pg_read_binary_file_all":             "reads server files",
	"pg_export_snapshot":                  "exports a snapshot to other sessions",
	"pg_notify":                           "",
	"pg_drop_replication_slot":            "changes replication",
	"pg_replication_slot_advance":         "changes replication",
	"pg_create_physical_replication_slot": "changes replication",
	"pg_create_logical_replication_slot":  "changes replication",
	"pg_copy_physical_replication_slot":   "changes replication",
	"pg_copy_logical_replication_slot":    "changes replication",
	"pg_get_backend_memory_contexts":      "shows server internals (superuser only)",
	"pg_get_shmem_allocations":            "shows server internals (superuser only)",
	"pg_config":                           "shows the server's build configuration (superuser only)",
	"pg_show_all_settings":                "shows every setting, custom settings (which can hold secrets) included",
	"pg_show_all_file_settings":           "shows the configuration files",
	"pg_sequence_last_value":              "reads a sequence's value",
	"lastval": "reads the value of whichever sequence the session advanced last (a default or trigger may have " +
		"advanced one the role may not read), which the policy cannot name; use currval('sequence')",
	"brin_summarize_range":              "maintains an index (Postgres asks for ownership of it)",
	"brin_summarize_new_values":         "maintains an index (Postgres asks for ownership of it)",
	"brin_desummarize_range":            "maintains an index (Postgres asks for ownership of it)",
	"gin_clean_pending_list":            "maintains an index (Postgres asks for ownership of it)",
	"pg_stat_get_subscription":          "shows subscription connection details",
	"pg_stat_get_wal_receiver":          "shows the WAL receiver's connection string",
	"pg_stat_get_wal_senders":           "shows replication connections",
	"pg_get_replication_slots":          "shows replication slots",
	"pg_show_replication_origin_status": "shows replication origins (superuser only)",
}

// setReturning lists common built-in set-returning functions: in a
// derived table's select list they change its row count. The catalog
// says so of every function (catalog.Function.ReturnsSet); the list
// covers catalog files saved before it did.
var setReturning = map[string]bool{
	"generate_series": true, "generate_subscripts": true, "unnest": true, "regexp_matches": true,
	"regexp_split_to_table": true, "string_to_table": true, "json_array_elements": true,
	"json_array_elements_text": true, "jsonb_array_elements": true, "jsonb_array_elements_text": true,
	"json_each": true, "json_each_text": true, "jsonb_each": true, "jsonb_each_text": true,
	"json_object_keys": true, "jsonb_object_keys": true, "jsonb_path_query": true,
	"json_populate_recordset": true, "jsonb_populate_recordset": true, "json_to_recordset": true,
	"jsonb_to_recordset": true, "ts_debug": true, "ts_parse": true, "ts_token_type": true,
	"unnest_multirange": true, "pg_listening_channels": true,
}

// dataCatalogs are catalog relations that hold data values, secrets or
// other sessions' query text. (pg_settings and the statistics views are
// decided in checkDataCatalog; pg_subscription's connection string is a
// sensitive column. pg_foreign_server is metadata: Postgres shows it to
// every role, pg_dump reads it, and foreign servers' credentials live in
// user mappings, which are refused.)
var dataCatalogs = map[string]bool{
	"pg_statistic": true, "pg_statistic_ext_data": true, "pg_stats": true, "pg_stats_ext": true,
	"pg_stats_ext_exprs": true, "pg_authid": true, "pg_shadow": true, "pg_user_mapping": true,
	"pg_user_mappings": true, "pg_largeobject": true, "pg_stat_activity": true,
	"pg_db_role_setting": true, "pg_file_settings": true, "pg_hba_file_rules": true,
	"pg_ident_file_mappings": true, "pg_replication_slots": true, "pg_stat_replication": true,
	"pg_stat_wal_receiver": true, "pg_stat_subscription": true, "pg_replication_origin_status": true,
	"pg_config": true, "pg_backend_memory_contexts": true, "pg_shmem_allocations": true, "pg_sequences": true,
	"user_mapping_options": true, "user_mappings": true, "foreign_server_options": true,
	// information_schema's internal helpers behind the views above (no
	// PUBLIC grant; _pg_user_mappings shows FDW passwords).
	"_pg_user_mappings": true, "_pg_foreign_servers": true, "_pg_foreign_tables": true,
	"_pg_foreign_data_wrappers": true, "_pg_foreign_table_columns": true,
}

// anySchemaDataCatalogs are extension relations, wherever installed.
var anySchemaDataCatalogs = map[string]bool{
	"pg_stat_statements": true, "pg_stat_statements_info": true,
}

func (w *walker) checkDataCatalog(rel *catalog.Relation) {
	isSys := rel.System || rel.Schema == "pg_catalog" || rel.Schema == "information_schema"
	switch {
	case isSys && rel.Name == "pg_settings":
		if !w.settingsRead() {
			w.problem(sqlpolicy.Problem{
				Code: sqlpolicy.ProblemDataCatalog,
				Detail: fmt.Sprintf("%s lists every setting, custom settings (which often hold secrets) included; "+
					"select rows by name alone (WHERE name = 'max_index_keys', or name IN (...)), or use SHOW name", rel),
				Rel: sqlpolicy.Rel{Schema: rel.Schema, Name: rel.Name},
			})
		}
	case isSys && statsCatalog(rel.Name):
		w.problem(sqlpolicy.Problem{
			Code: sqlpolicy.ProblemDataCatalog,
			Detail: fmt.Sprintf("%s holds the statistics collector's live counters: row counts of every table "+
				"and what other sessions do (pg_class.reltuples and relpages hold the planner's estimates)", rel),
			Rel: sqlpolicy.Rel{Schema: rel.Schema, Name: rel.Name},
		})
	case (isSys && dataCatalogs[rel.Name]) || anySchemaDataCatalogs[rel.Name]:
		w.problem(sqlpolicy.Problem{
			Code:   sqlpolicy.ProblemDataCatalog,
			Detail: fmt.Sprintf("%s holds data values, secrets or other sessions' queries", rel),
			Rel:    sqlpolicy.Rel{Schema: rel.Schema, Name: rel.Name},
		})
	}
}

// statsCatalog reports the statistics views (pg_stat_user_tables,
// pg_statio_all_indexes, pg_stat_progress_vacuum ...): live row counts
// (n_live_tup, n_tup_ins), scans, and other sessions' activity. No driver
// reads them for introspection.
func statsCatalog(name string) bool {
	return strings.HasPrefix(name, "pg_stat_") || strings.HasPrefix(name, "pg_statio_")
}

// checkFunc classifies the functions whose effect the policy cannot see
// from table and column references.
func (w *walker) checkFunc(name string, fc *pg.FuncCall, sc *scope) {
	prob := func(code sqlpolicy.ProblemCode, detail string) {
		w.problem(sqlpolicy.Problem{Code: code, Detail: detail, Func: name})
	}
	if literalArgFuncs[name] {
		w.st.LiteralSensitive = true
	}
	switch {
	case fileFuncs[name]:
		prob(sqlpolicy.ProblemFileAccess, name+" accesses server files")
		return
	case dynamicFuncs[name]:
		prob(sqlpolicy.ProblemDynamicSQL, name+" runs SQL or reads relations named in a string")
		return
	case strings.HasPrefix(name, "dblink"):
		prob(sqlpolicy.ProblemDangerousFunc, name+" connects to another database")
		return
	case strings.HasPrefix(name, "pg_ls_"):
		prob(sqlpolicy.ProblemFileAccess, name+" lists server directories")
		return
	case strings.HasPrefix(name, "pg_read_") || strings.HasPrefix(name, "pg_file_"):
		// Every variant and alias (pg_read_file_old, the one-argument
		// and missing_ok forms, adminpack's pg_file_*) reads or writes
		// a server file.
		prob(sqlpolicy.ProblemFileAccess, name+" accesses server files")
		return
	case strings.HasPrefix(name, "binary_upgrade_"):
		prob(sqlpolicy.ProblemDangerousFunc, name+" changes the system catalogs (pg_upgrade support)")
		return
	case strings.HasPrefix(name, "pg_control_"):
		prob(sqlpolicy.ProblemDangerousFunc, name+" shows the server's control file")
		return
	case strings.HasPrefix(name, "pg_rotate_logfile"):
		prob(sqlpolicy.ProblemDangerousFunc, name+" rotates the server log")
		return
	case strings.HasPrefix(name, "currtid"):
		prob(sqlpolicy.ProblemDynamicSQL, name+" reads row positions of a relation named in its arguments, "+
			"which keyhole cannot check")
		return
	case strings.HasPrefix(name, "lo_") || name == "loread" || name == "lowrite":
		prob(sqlpolicy.ProblemDangerousFunc, name+" reads or writes large objects, which have no column privileges")
		return
	case strings.HasPrefix(name, "pg_stat_reset"):
		prob(sqlpolicy.ProblemDangerousFunc, name+" resets server statistics")
		return
	case strings.HasPrefix(name, "pg_stat_get_backend_"):
		prob(sqlpolicy.ProblemDangerousFunc, name+" shows other sessions' activity")
		return
	case strings.HasPrefix(name, "pg_replication_origin_") || strings.HasPrefix(name, "pg_logical_"):
		prob(sqlpolicy.ProblemDangerousFunc, name+" acts on replication")
		return
	case strings.Contains(name, "advisory") && !strings.Contains(name, "unlock"):
		// Advisory locks outlive statements and can block other
		// sessions; unlocking only releases this session's own.
		prob(sqlpolicy.ProblemLocking, name+" takes an advisory lock")
		return
	case name == "set_config":
		w.setConfig(fc)
		return
	case name == "current_setting":
		w.currentSetting(fc)
		return
	case name == "nextval" || name == "setval" || name == "currval":
		w.sequenceFunc(name, fc)
		return
	}
	if d, ok := dangerousFuncs[name]; ok {
		prob(sqlpolicy.ProblemDangerousFunc, name+" "+d)
		return
	}
	if strings.HasPrefix(name, "pg_stat_get_") || statsFuncs[name] {
		prob(sqlpolicy.ProblemDataCatalog, name+" reads live row counts or activity statistics of tables")
	}
}

// statsFuncs count a relation's rows or tuples (pgstattuple); the
// pg_stat_get_* functions behind the statistics views are matched by
// prefix.
var statsFuncs = setOf(`pgstattuple pgstattuple_approx pgstatindex pgstatginindex pgstathashindex pg_relpages`)

// literalArgFuncs are built-in functions whose string argument names what
// they touch (a setting, a relation, a sequence, SQL text), so the
// analysis of a call can depend on its literal. Every call of one in the
// statement's text marks the statement LiteralSensitive, whether or not
// the walker reads the literal (set_config with a parameter as the name,
// pg_relation_size('orders')), so that no analysis of such a call is
// shared, through the decision cache, with a text that differs only in the
// literal: current_setting('timezone') must never answer for
// current_setting('data_directory'). Calls a column default runs do not
// count: their literals are the catalog's, not the statement's.
var literalArgFuncs = setOf(`
	current_setting set_config nextval currval setval
	to_regclass to_regnamespace to_regrole to_regproc to_regprocedure
	to_regtype to_regoper to_regoperator to_regcollation
	query_to_xml query_to_xmlschema query_to_xml_and_xmlschema
	table_to_xml table_to_xmlschema table_to_xml_and_xmlschema
	cursor_to_xml cursor_to_xmlschema ts_stat ts_rewrite
	pg_get_viewdef pg_get_serial_sequence
	pg_relation_size pg_table_size pg_total_relation_size pg_indexes_size
	has_table_privilege has_column_privilege has_sequence_privilege
	has_schema_privilege has_function_privilege has_database_privilege pg_has_role`)

// constString returns the value of a string constant, also under a cast
// ('x'::regclass, 'x'::text).
func constString(n *pg.Node) (string, bool) {
	if n == nil {
		return "", false
	}
	switch x := n.Node.(type) {
	case *pg.Node_TypeCast:
		return constString(x.TypeCast.Arg)
	case *pg.Node_String_:
		// Option values (EXPLAIN, transaction modes) are bare nodes.
		return x.String_.Sval, true
	case *pg.Node_Integer:
		return fmt.Sprint(x.Integer.Ival), true
	case *pg.Node_Boolean:
		if x.Boolean.Boolval {
			return "true", true
		}
		return "false", true
	}
	c := n.GetAConst()
	if c == nil || c.Isnull {
		return "", false
	}
	switch v := c.Val.(type) {
	case *pg.A_Const_Sval:
		return v.Sval.GetSval(), true
	case *pg.A_Const_Ival:
		return fmt.Sprint(v.Ival.GetIval()), true
	case *pg.A_Const_Fval:
		return v.Fval.GetFval(), true
	case *pg.A_Const_Boolval:
		if v.Boolval.GetBoolval() {
			return "true", true
		}
		return "false", true
	}
	return "", false
}

// sequenceFunc turns nextval('s')/setval('s', n) into a write of the
// sequence and currval('s') into a read, so the policy decides on the
// sequence like on any relation.
func (w *walker) sequenceFunc(name string, fc *pg.FuncCall) {
	if len(fc.Args) == 0 {
		return
	}
	lit, ok := constString(fc.Args[0])
	if !ok {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemDangerousFunc, Func: name,
			Detail: name + " with a sequence name that is not a literal"})
		return
	}
	w.st.LiteralSensitive = true
	parts, err := splitIdentList(lit, '.')
	if err != nil || len(parts) == 0 || len(parts) > 3 {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownTable, Func: name,
			Detail: fmt.Sprintf("%s: %q is not a relation name", name, lit)})
		return
	}
	rname := parts[len(parts)-1]
	schema := ""
	if len(parts) > 1 {
		schema = parts[len(parts)-2]
	}
	rel := w.resolveRel(schema, rname)
	if rel == nil {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownTable, Rel: sqlpolicy.Rel{Schema: schema, Name: rname},
			Detail: fmt.Sprintf("relation %q does not exist", qualified(schema, rname))})
		return
	}
	mode := sqlpolicy.Write
	if name == "currval" {
		mode = sqlpolicy.Read
	}
	w.table(sqlpolicy.TableRef{Rel: sqlpolicy.Rel{Schema: rel.Schema, Name: rel.Name}, Mode: mode})
	for _, alt := range w.altRels(schema, rname, rel) {
		w.table(sqlpolicy.TableRef{Rel: sqlpolicy.Rel{Schema: alt.Schema, Name: alt.Name}, Mode: mode})
	}
}

// setConfig turns set_config(name, value, is_local) with a literal name
// into a Setting.
func (w *walker) setConfig(fc *pg.FuncCall) {
	if len(fc.Args) != 3 {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemSessionChange, Func: "set_config",
			Detail: "set_config with an unexpected argument list"})
		return
	}
	name, ok := constString(fc.Args[0])
	if !ok {
		if names, ok := w.settingsFilter().calls[fc]; ok {
			// set_config(name, ...) FROM pg_settings WHERE name = 'x':
			// the name can only be one of the filter's.
			for _, n := range names {
				w.setConfigNamed(n, fc)
			}
			return
		}
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemSessionChange, Func: "set_config",
			Detail: "set_config with a setting name that is not a literal"})
		return
	}
	w.setConfigNamed(name, fc)
}

// setConfigNamed records set_config(name, value, is_local) for a known
// setting name.
func (w *walker) setConfigNamed(name string, fc *pg.FuncCall) {
	w.st.LiteralSensitive = true
	set := sqlpolicy.Setting{Name: strings.ToLower(name)}
	value, valueOK := constString(fc.Args[1])
	set.Unknown = !valueOK
	if valueOK {
		set.Value = value
		if set.Name == "search_path" {
			// The string is parsed as a list of identifiers; a value that
			// does not parse is one keyhole cannot follow.
			if parts, err := splitIdentList(value, ','); err == nil && !slices.ContainsFunc(parts, unfollowableSchema) {
				set.Value = strings.Join(parts, ",")
			} else {
				set.Unknown = true
			}
		}
	}
	if l, ok := constString(fc.Args[2]); ok {
		set.Local = l == "true" || l == "t" || l == "on"
	} else {
		// Unknown: take the reading under which the old value may come
		// back (the session then keeps both as candidates).
		set.Local = true
	}
	w.setting(set)
	if detail := settingRisk(set.Name, set.Value, valueOK, false); detail != "" {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemSessionChange, Setting: set.Name, Func: "set_config", Detail: detail})
	}
}

// unfollowableSchema reports a quoted schema name the session's
// comma-separated, trimmed rendering of a search path cannot carry: one
// with a comma or surrounding spaces (" internal" is no schema internal).
func unfollowableSchema(n string) bool {
	return strings.IndexByte(n, ',') >= 0 || n != strings.TrimSpace(n)
}

// splitIdentList splits a list of possibly double-quoted identifiers the
// way Postgres's SplitIdentifierString does: unquoted names are folded to
// lower case, "" inside quotes is a quote.
func splitIdentList(s string, sep byte) ([]string, error) {
	var out []string
	i := 0
	for {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i >= len(s) {
			if len(out) == 0 {
				return nil, nil
			}
			return nil, fmt.Errorf("empty name in list")
		}
		var name strings.Builder
		if s[i] == '"' {
			i++
			for {
				j := strings.IndexByte(s[i:], '"')
				if j < 0 {
					return nil, fmt.Errorf("unterminated quoted name")
				}
				name.WriteString(s[i : i+j])
				i += j + 1
				if i < len(s) && s[i] == '"' {
					name.WriteByte('"')
					i++
					continue
				}
				break
			}
		} else {
			start := i
			for i < len(s) && s[i] != sep && !isSpace(s[i]) {
				i++
			}
			if i == start {
				return nil, fmt.Errorf("empty name in list")
			}
			name.WriteString(strings.ToLower(s[start:i]))
		}
		out = append(out, name.String())
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i >= len(s) {
			return out, nil
		}
		if s[i] != sep {
			return nil, fmt.Errorf("invalid name list")
		}
		i++
	}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// currentSetting turns current_setting('name') into a read of the setting,
// like SHOW.
func (w *walker) currentSetting(fc *pg.FuncCall) {
	if len(fc.Args) == 0 {
		return
	}
	name, ok := constString(fc.Args[0])
	if !ok {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemDangerousFunc, Func: "current_setting",
			Detail: "current_setting with a setting name that is not a literal"})
		return
	}
	w.st.LiteralSensitive = true
	name = strings.ToLower(name)
	w.setting(sqlpolicy.Setting{Name: name, Show: true})
	w.checkSettingRead(name, "current_setting")
}

// restrictedSettings can only be read by superusers or pg_read_all_settings
// members (GUC_SUPERUSER_ONLY): server paths, commands and connection
// strings.
var restrictedSettings = map[string]bool{
	"data_directory": true, "config_file": true, "hba_file": true, "ident_file": true,
	"external_pid_file": true, "archive_command": true, "restore_command": true,
	"archive_cleanup_command": true, "recovery_end_command": true, "primary_conninfo": true,
	"primary_slot_name": true, "promote_trigger_file": true, "ssl_cert_file": true, "ssl_key_file": true,
	"ssl_ca_file": true, "ssl_crl_file": true, "ssl_crl_dir": true, "ssl_passphrase_command": true,
	"krb_server_keyfile": true, "log_directory": true, "log_filename": true,
	"unix_socket_directories": true, "unix_socket_group": true, "dynamic_library_path": true,
	"shared_preload_libraries": true, "session_preload_libraries": true, "local_preload_libraries": true,
	"stats_temp_directory": true, "archive_library": true, "event_source": true,
}

// checkSettingRead refuses reading settings that reveal the server's
// layout, commands or credentials, and custom settings (a dotted name),
// which applications set per role or database to hold secrets.
func (w *walker) checkSettingRead(name, how string) {
	if name == "all" || strings.Contains(name, ".") {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemDataCatalog, Setting: name, Func: how,
			Detail: how + " of " + name + " can reveal custom settings, which often hold secrets"})
		return
	}
	if restrictedSettings[name] || strings.HasSuffix(name, "_command") || strings.HasSuffix(name, "_conninfo") ||
		strings.HasSuffix(name, "_file") || strings.HasSuffix(name, "_directory") {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemDangerousFunc, Setting: name, Func: how,
			Detail: how + " of " + name + " reveals the server's files, commands or credentials"})
	}
}

// sensitiveCatalogColumns are catalog columns that hold secrets or data
// values, with what they hold.
var sensitiveCatalogColumns = map[[2]string]string{
	// Setting values (ALTER ROLE/DATABASE/FUNCTION ... SET), where
	// applications keep secrets.
	{"pg_roles", "rolconfig"}:  settingValues,
	{"pg_user", "useconfig"}:   settingValues,
	{"pg_shadow", "useconfig"}: settingValues,
	{"pg_proc", "proconfig"}:   settingValues,
	// A subscription's connection string holds the publisher's password;
	// Postgres keeps it from every role but superusers, not the rest of
	// pg_subscription (pg_dump counts subscriptions).
	{"pg_subscription", "subconninfo"}: "a subscription's connection string, which holds the publisher's password",
}

const settingValues = "per-role or per-database settings, which can be secrets"
