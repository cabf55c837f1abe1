package pganalyze_test

import (
	"maps"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

// TestSettingsReads: a query that selects pg_settings rows by name reads
// those settings (and is literal-sensitive); any other read of pg_settings
// is a data catalog read.
func TestSettingsReads(t *testing.T) {
	t.Parallel()
	cases := []struct {
		sql   string
		reads []string // settings read; nil: a data_catalog problem
		sets  []string // settings set_config changes
	}{
		{sql: "SELECT setting FROM pg_catalog.pg_settings WHERE name='max_index_keys'", reads: []string{"max_index_keys"}},
		{sql: "SELECT name FROM pg_settings s WHERE s.name IN ('work_mem', 'TimeZone')", reads: []string{"work_mem", "timezone"}},
		{sql: "SELECT setting FROM pg_settings WHERE name OPERATOR(pg_catalog.=) 'work_mem'", reads: []string{"work_mem"}},
		{sql: "SELECT set_config(name, 'view, foreign-table', false) FROM pg_settings WHERE name = 'restrict_nonsystem_relation_kind'",
			reads: []string{"restrict_nonsystem_relation_kind"}, sets: []string{"restrict_nonsystem_relation_kind"}},
		{sql: "SELECT (SELECT setting FROM pg_settings WHERE name = 'a'), (SELECT setting FROM pg_settings WHERE name = 'b')",
			reads: []string{"a", "b"}},
		{sql: "SELECT setting FROM pg_settings"},
		{sql: "SELECT setting FROM pg_settings WHERE name = 'work_mem' AND setting <> ''"},
		{sql: "SELECT setting FROM pg_settings WHERE name = lower('WORK_MEM')"},
		{sql: "SELECT setting FROM pg_settings WHERE pg_settings.name = 'work_mem'", reads: []string{"work_mem"}},
		{sql: "SELECT setting FROM pg_settings s WHERE pg_settings.name = 'work_mem'"},
		{sql: "SELECT setting FROM pg_settings WHERE name = 'a' UNION SELECT setting FROM pg_settings"},
		{sql: "SELECT setting FROM pg_settings JOIN pg_class ON true WHERE name = 'a'"},
		{sql: "SELECT setting FROM (SELECT * FROM pg_settings) s WHERE name = 'a'"},
	}
	for _, tc := range cases {
		t.Run(tc.sql, func(t *testing.T) {
			t.Parallel()
			st := one(t, tc.sql)
			var reads, sets []string
			for _, s := range st.Settings {
				if s.Show {
					reads = append(reads, s.Name)
				} else {
					sets = append(sets, s.Name)
				}
			}
			dataCatalog := false
			for _, p := range st.Problems {
				if p.Code == sqlpolicy.ProblemDataCatalog && p.Rel.Name == "pg_settings" {
					dataCatalog = true
				}
			}
			assert.Equal(t, tc.reads == nil, dataCatalog, "data_catalog problem: %+v", st.Problems)
			assert.Equal(t, tc.reads, reads)
			assert.Equal(t, tc.sets, sets)
			if tc.reads != nil {
				assert.True(t, st.LiteralSensitive, "the decision depends on the names")
			}
		})
	}
}

// TestCatalogClassification: the statistics views and functions count
// rows live and are data catalogs; pg_subscription's connection string is
// a sensitive column; catalog tables have system columns; LOCK ... ACCESS
// SHARE MODE reads the table like SELECT.
func TestCatalogClassification(t *testing.T) {
	t.Parallel()
	problemOf := func(st sqlpolicy.Statement) []string { return problemCodes(st.Problems) }
	for _, sql := range []string{
		"SELECT n_live_tup FROM pg_stat_user_tables",
		"SELECT * FROM pg_catalog.pg_statio_all_tables",
		"SELECT * FROM pg_stat_xact_all_tables",
		"SELECT pg_stat_get_live_tuples('customers'::regclass)",
		"SELECT subconninfo FROM pg_subscription",
	} {
		assert.Equal(t, []string{"data_catalog"}, problemOf(one(t, sql)), sql)
	}
	for _, sql := range []string{
		"SELECT count(*) FROM pg_subscription",
		"SELECT srvname, srvoptions FROM pg_foreign_server",
		"SELECT c.tableoid, c.xmin, c.oid FROM pg_class c",
		"SELECT relname, reltuples, relpages FROM pg_class",
		"SELECT stxname FROM pg_statistic_ext",
	} {
		assert.Empty(t, problemOf(one(t, sql)), sql)
	}
	assert.Equal(t, []string{"unsupported"}, problemOf(one(t, "SELECT xmin FROM customers")), "system columns of user tables are not modelled")

	st := one(t, "LOCK TABLE orders IN ACCESS SHARE MODE")
	assert.Equal(t, sqlpolicy.VerbSelect, st.Verb)
	assert.Empty(t, st.Problems)
	assert.Equal(t, cols("orders", "created_at", "customer_id", "id", "status", "total"), colStrings(st.Columns))
	st = one(t, "LOCK TABLE orders IN ROW EXCLUSIVE MODE")
	assert.Equal(t, sqlpolicy.VerbLock, st.Verb)
	assert.Equal(t, []string{"locking"}, problemOf(st))
}

// TestSettingKinds: the analyzer's judgement of setting changes.
func TestSettingKinds(t *testing.T) {
	t.Parallel()
	for sql, want := range map[string]sqlpolicy.SettingKind{
		"SET search_path = public":                                     sqlpolicy.SettingResolution,
		"SET search_path = ''":                                         "",
		"SET search_path = pg_catalog, pg_temp":                        "",
		"SELECT set_config('search_path', '', false)":                  "",
		"SET ROLE postgres":                                            sqlpolicy.SettingIdentity,
		"RESET ROLE":                                                   sqlpolicy.SettingIdentity,
		"SET standard_conforming_strings = off":                        sqlpolicy.SettingLexing,
		"SET client_encoding = 'SJIS'":                                 sqlpolicy.SettingLexing,
		"SET session_replication_role = replica":                       sqlpolicy.SettingBehavior,
		"SET log_statement = 'none'":                                   sqlpolicy.SettingRecording,
		"SELECT set_config('log_min_duration_statement', '-1', false)": sqlpolicy.SettingRecording,
		"SET myapp.secret = 'x'":                                       sqlpolicy.SettingUnknown,
		"SET hash_mem_multiplier = 8":                                  sqlpolicy.SettingUnknown,
		"SET row_security = off":                                       "",
		"SET synchronize_seqscans = off":                               "",
		"SET restrict_nonsystem_relation_kind = 'view'":                "",
		"SET work_mem = '1TB'":                                         "",
		"RESET search_path":                                            "",
	} {
		st := one(t, sql)
		require.NotEmpty(t, st.Settings, sql)
		assert.Equal(t, want, st.Settings[0].Kind, sql)
		assert.Equal(t, want == sqlpolicy.SettingResolution || want == sqlpolicy.SettingIdentity || want == sqlpolicy.SettingLexing,
			st.Settings[0].Guarded, sql)
	}
}

// TestMissingValueReads: pg_attribute.attmissingval holds, for a column
// added with a default to a table that had rows, every such row's value
// of the column: reading it reads the columns that have one
// (catalog.Column.HasMissing), through pg_attribute (labels apply, no
// grant on their tables is needed), and nothing else when none has.
func TestMissingValueReads(t *testing.T) {
	t.Parallel()
	read := func(t *testing.T, an *pganalyze.Analyzer, sql string) []string {
		t.Helper()
		acc := an.Analyze(sql, nil)
		require.Len(t, acc.Statements, 1)
		require.Empty(t, acc.Statements[0].Problems)
		var out []string
		for _, s := range colStrings(acc.Statements[0].Columns) {
			if !strings.HasPrefix(s, "pg_catalog.") {
				out = append(out, s)
			}
		}
		return out
	}
	const q = "SELECT attname, attmissingval FROM pg_attribute WHERE atthasmissing"
	assert.Empty(t, read(t, analyzer(t), q), "no column of the test schema has a missing value")
	assert.Empty(t, read(t, analyzer(t), "SELECT attname, atthasmissing FROM pg_attribute"))

	keys := &catalog.Relation{Schema: "public", Name: "vault_keys", Kind: "r",
		Columns: []*catalog.Column{{Name: "id", Type: "integer"}, {Name: "master", Type: "text", HasMissing: true}}}
	base := testCatalog(t)
	cat := *base // the test schema and vault_keys
	cat.Relations = maps.Clone(base.Relations)
	cat.Relations["public"] = maps.Clone(base.Relations["public"])
	cat.Relations["public"]["vault_keys"] = keys
	an := pganalyze.New(&cat, pganalyze.Options{})
	want := []string{"public.vault_keys.master@pg_catalog.pg_attribute"}
	assert.Equal(t, want, read(t, an, q))
	assert.Equal(t, want, read(t, an, "SELECT * FROM pg_catalog.pg_attribute WHERE attnum = 1"), "the WHERE does not narrow it")
	assert.Equal(t, want, read(t, an, "SELECT a::text FROM pg_attribute a"), "a whole row")
	assert.Empty(t, read(t, an, "SELECT attname, atthasmissing FROM pg_attribute"))
}
