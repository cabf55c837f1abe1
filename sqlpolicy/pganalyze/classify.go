package pganalyze

import (
	"strings"

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
		st.Settings[i].Guarded = guardedChange(st.Settings[i])
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

// guardedSettings change the session's identity or how later text is
// lexed or resolved. The walker reports changes to them as
// ProblemSessionChange; classify also marks them Guarded so that the
// decision denies a change the walker let through without a Problem,
// unless the role lists the setting.
var guardedSettings = map[string]bool{
	"role":                        true,
	"session_authorization":       true,
	"search_path":                 true,
	"standard_conforming_strings": true,
	"backslash_quote":             true,
	"client_encoding":             true,
}

// guardedChange reports whether set is a change to a guarded setting that
// can alter identity, lexing or resolution. Resetting one to its default
// is harmless (the login's value, which the catalog was read with),
// except for the identity settings: RESET ROLE / SESSION AUTHORIZATION are
// refused like SET.
func guardedChange(set sqlpolicy.Setting) bool {
	if set.Show || !guardedSettings[set.Name] {
		return false
	}
	if set.Reset {
		return set.Name == "role" || set.Name == "session_authorization"
	}
	return !harmlessValue(set.Name, set.Value)
}

// harmlessValue reports the values of guarded settings that keep lexing as
// the parser assumes: standard_conforming_strings on, a UTF8 client
// encoding (multibyte encodings such as SJIS, BIG5 and GBK can hide a
// backslash or quote in a trailing byte).
func harmlessValue(name, value string) bool {
	v := strings.ToLower(strings.TrimSpace(value))
	switch name {
	case "standard_conforming_strings":
		return v == "on" || v == "true" || v == "yes" || v == "1"
	case "client_encoding":
		v = strings.NewReplacer("-", "", "_", "").Replace(v)
		return v == "utf8" || v == "unicode"
	}
	return false
}

func setOf(words string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(words) {
		m[w] = true
	}
	return m
}
