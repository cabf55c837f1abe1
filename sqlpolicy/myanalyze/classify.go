package myanalyze

import (
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// classify writes the MySQL judgements the decision reads into a finished
// statement (see sqlpolicy.Analyzer): which relations are metadata views
// of information_schema (System) and which setting changes are guarded.
// Built-in functions are marked where they are reported. It runs once per
// analyzed statement, after the walk.
func (a *Analyzer) classify(st *sqlpolicy.Statement) {
	for i := range st.Tables {
		st.Tables[i].System = isInfoSchema(st.Tables[i].Rel.Schema)
	}
	for i := range st.Columns {
		st.Columns[i].System = isInfoSchema(st.Columns[i].Rel.Schema)
	}
	for i := range st.Settings {
		classifyLimit(&st.Settings[i])
		if kind := guardedChange(st.Settings[i]); kind != "" {
			st.Settings[i].Guarded, st.Settings[i].Kind = true, kind
		}
	}
}
