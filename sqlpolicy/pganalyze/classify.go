package pganalyze

import (
	"strings"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// classify writes the Postgres judgements the decision reads into a
// finished statement (see sqlpolicy.Analyzer): which relations are system
// catalogs, which functions are built in, and which setting changes are
// guarded.
// It runs once per analyzed statement, after the walk, so every TableRef,
// ColumnRef, FuncRef and Setting is covered however it was reported.
func (a *Analyzer) classify(st *sqlpolicy.Statement) {
	for i := range st.Tables {
		st.Tables[i].System = a.isSystem(st.Tables[i].Rel)
	}
	for i := range st.Columns {
		st.Columns[i].System = a.isSystem(st.Columns[i].Rel)
	}
	for i := range st.Functions {
		f := &st.Functions[i]
		if fn := a.cat.Function(f.Schema, f.Name); fn != nil && f.Schema != "" {
			f.Builtin = fn.Builtin
		}
	}
	for i := range st.Settings {
		classifySetting(&st.Settings[i])
	}
}

// isSystem reports whether rel is a system catalog relation (pg_catalog or
// information_schema, or one the catalog marks as system). Data-bearing
// catalogs (pg_statistic, pg_authid) are reported as ProblemDataCatalog
// by the walker, which always denies.
func (a *Analyzer) isSystem(rel sqlpolicy.Rel) bool {
	if rel.Schema == "pg_catalog" || rel.Schema == "information_schema" {
		return true
	}
	if r := a.cat.Relation(rel.Schema, rel.Name); r != nil {
		return r.System
	}
	return false
}

// classifySetting writes the judgement of one setting change: its kind
// when it is not harmless, Guarded for changes of identity, lexing or
// name resolution (the decision refuses them unless the role lists the
// setting, even where the walker reported no Problem), and the limit a
// change of a limit's setting must stay within. Returning to the default
// is harmless, except for the identity settings: RESET ROLE / SESSION
// AUTHORIZATION are refused like SET.
func classifySetting(set *sqlpolicy.Setting) {
	if set.Show {
		return
	}
	classifyLimit(set)
	if set.Reset {
		if set.Name == "role" || set.Name == "session_authorization" {
			set.Kind, set.Guarded = sqlpolicy.SettingIdentity, true
		}
		return
	}
	set.Kind, _ = judgeSetting(set.Name, set.Value, !set.Unknown)
	switch set.Kind {
	case sqlpolicy.SettingIdentity, sqlpolicy.SettingLexing, sqlpolicy.SettingResolution:
		set.Guarded = true
	}
}

// systemColumnNames are the columns Postgres adds to every table (attnum < 0,
// which the catalog does not list).
var systemColumnNames = []string{"tableoid", "ctid", "xmin", "cmin", "xmax", "cmax"}

// catalogColumnNames returns the names of rel's columns, in order; for a
// table of the system catalogs followed by its system columns, which
// tools read (pg_dump selects tableoid from every catalog it reads) and
// which hold no data there. User tables do not get them: a role granted
// columns of a table may not read its system columns in Postgres, and no
// policy names them, so they stay unknown columns (refused).
func catalogColumnNames(rel *catalog.Relation) []string {
	names := make([]string, 0, len(rel.Columns)+len(systemColumnNames))
	for _, c := range rel.Columns {
		names = append(names, c.Name)
	}
	if rel.Kind == catalog.KindTable && (rel.System || rel.Schema == "pg_catalog") {
		names = append(names, systemColumnNames...)
	}
	return names
}

func setOf(words string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(words) {
		m[w] = true
	}
	return m
}
