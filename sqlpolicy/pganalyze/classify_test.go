package pganalyze_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// TestClassify checks the Postgres judgements the analyzer writes into the
// Access for the dialect-neutral decision: guarded setting changes, system
// catalogs, built-in functions, upserts and literal-sensitive calls.
func TestClassify(t *testing.T) {
	t.Parallel()

	guarded := []struct {
		sql  string
		want bool
	}{
		{"SET standard_conforming_strings = off", true},
		{"SET standard_conforming_strings = on", false},
		{"SET client_encoding = 'SJIS'", true},
		{"SET client_encoding = 'UNICODE'", false},
		{"SET client_encoding = 'utf-8'", false},
		{"SET search_path = public", true},
		{"RESET search_path", false},
		{"RESET ROLE", true},
		{"RESET SESSION AUTHORIZATION", true},
		{"SET statement_timeout = '5s'", false},
		{"SHOW search_path", false},
	}
	for _, tc := range guarded {
		t.Run(tc.sql, func(t *testing.T) {
			t.Parallel()
			st := one(t, tc.sql)
			require.NotEmpty(t, st.Settings)
			assert.Equal(t, tc.want, st.Settings[0].Guarded)
		})
	}

	t.Run("system catalogs", func(t *testing.T) {
		t.Parallel()
		st := one(t, "SELECT c.relname, o.id FROM pg_catalog.pg_class c, orders o")
		for _, tr := range st.Tables {
			assert.Equal(t, tr.Rel.Schema == "pg_catalog", tr.System, tr.Rel.String())
		}
		for _, c := range st.Columns {
			assert.Equal(t, c.Rel.Schema == "pg_catalog", c.System, c.Rel.String()+"."+c.Column)
		}
	})

	t.Run("built-in functions", func(t *testing.T) {
		t.Parallel()
		st := one(t, "SELECT lower(name), public.mask(name) FROM customers")
		builtin := map[string]bool{}
		for _, f := range st.Functions {
			builtin[f.String()] = f.Builtin
		}
		assert.Equal(t, map[string]bool{"pg_catalog.lower": true, "public.mask": false}, builtin)
	})

	t.Run("upsert", func(t *testing.T) {
		t.Parallel()
		assert.True(t, one(t, "INSERT INTO products (id, name) VALUES (1, 'a') ON CONFLICT (id) DO UPDATE SET name = excluded.name").Upsert)
		assert.False(t, one(t, "INSERT INTO products (id, name) VALUES (1, 'a') ON CONFLICT DO NOTHING").Upsert)
	})

	t.Run("calls naming their target in a literal", func(t *testing.T) {
		t.Parallel()
		for _, sql := range []string{
			"SELECT current_setting('timezone')",
			"SELECT pg_relation_size('orders')",
			"SELECT has_table_privilege('orders', 'select')",
		} {
			st := one(t, sql)
			assert.True(t, (&sqlpolicy.Access{Statements: []sqlpolicy.Statement{st}}).LiteralSensitive(), sql)
		}
	})
}
