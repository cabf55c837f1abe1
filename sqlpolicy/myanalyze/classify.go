package myanalyze

import (
	"github.com/pingcap/tidb/pkg/parser/mysql"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// sameLexing reports SET sql_mode = 'literal' to a mode that lexes and
// parses as mode does (the same lexBits): mysqldump and mariadb-dump
// begin by setting @@SQL_MODE to the empty string (in a versioned
// comment), which in a session of MariaDB's default mode only drops
// flags that change what writes do with values (STRICT_TRANS_TABLES
// ...), as appending them
// (addsOnlyInertModes) only adds such flags. The session still takes the
// new value when the text has run (Session.Apply), and the statements
// after it in the same text are refused as after any change of sql_mode.
func sameLexing(set sqlpolicy.Setting, mode mysql.SQLMode) bool {
	if set.Name != "sql_mode" || set.Show || set.Reset || set.Unknown || set.Appended {
		return false
	}
	m, err := parseSQLMode(set.Value)
	return err == nil && m&lexBits == mode&lexBits
}

// classify writes the MySQL judgements the decision reads into a finished
// statement (see sqlpolicy.Analyzer): which relations are metadata views
// of information_schema (System) and which setting changes are guarded.
// Built-in functions are marked where they are reported. It runs once per
// analyzed statement, after the walk; mode is the sql_mode the statement
// was lexed under.
func (a *Analyzer) classify(st *sqlpolicy.Statement, mode mysql.SQLMode) {
	for i := range st.Tables {
		st.Tables[i].System = isInfoSchema(st.Tables[i].Rel.Schema)
	}
	for i := range st.Columns {
		st.Columns[i].System = isInfoSchema(st.Columns[i].Rel.Schema)
	}
	for i := range st.Settings {
		classifyLimit(&st.Settings[i])
		if sameLexing(st.Settings[i], mode) {
			continue
		}
		if kind := guardedChange(st.Settings[i]); kind != "" {
			st.Settings[i].Guarded, st.Settings[i].Kind = true, kind
		}
	}
}
