package pganalyze_test

import (
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// writeActions renders the writes of a statement as "rel[.column]=action",
// with "/merge" for a MERGE's own actions, sorted.
func writeActions(st sqlpolicy.Statement) (tables, columns []string) {
	merge := func(m bool) string {
		if m {
			return "/merge"
		}
		return ""
	}
	for _, t := range st.Tables {
		if t.Mode == sqlpolicy.Write && t.Via == (sqlpolicy.Rel{}) {
			tables = append(tables, t.Rel.String()+"="+string(t.Action)+merge(t.Merge))
		}
	}
	for _, c := range st.Columns {
		if c.Mode == sqlpolicy.Write && c.Via == (sqlpolicy.Rel{}) {
			columns = append(columns, c.Rel.String()+"."+c.Column+"="+string(c.Action)+merge(c.Merge))
		}
	}
	sort.Strings(tables)
	sort.Strings(columns)
	return tables, columns
}

// TestWriteActions checks which row action each write is reported with:
// the decision checks inserted columns against insert grants and SET
// columns against update grants.
func TestWriteActions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		sql     string
		tables  []string
		columns []string
	}{
		{name: "insert", sql: "INSERT INTO products (id, name) VALUES (1, 'x')",
			tables:  []string{"public.products=insert"},
			columns: []string{"public.products.id=insert", "public.products.name=insert"}},
		{name: "upsert", sql: "INSERT INTO products (id, name) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET price = 2",
			tables:  []string{"public.products=insert", "public.products=update"},
			columns: []string{"public.products.id=insert", "public.products.name=insert", "public.products.price=update"}},
		{name: "upsert excluded", sql: "INSERT INTO products (id, name) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name",
			tables:  []string{"public.products=insert", "public.products=update"},
			columns: []string{"public.products.id=insert", "public.products.name=insert", "public.products.name=update"}},
		{name: "upsert do nothing", sql: "INSERT INTO products (id) VALUES (1) ON CONFLICT DO NOTHING",
			tables:  []string{"public.products=insert"},
			columns: []string{"public.products.id=insert"}},
		{name: "update", sql: "UPDATE products SET price = 1",
			tables:  []string{"public.products=update"},
			columns: []string{"public.products.price=update"}},
		{name: "delete", sql: "DELETE FROM products",
			tables: []string{"public.products=delete"}},
		{name: "merge", sql: "MERGE INTO products p USING (SELECT 1 AS id) s ON p.id = s.id " +
			"WHEN MATCHED AND p.price > 10 THEN DELETE WHEN MATCHED THEN UPDATE SET price = 1 WHEN NOT MATCHED THEN INSERT (id, name) VALUES (s.id, 'n')",
			tables:  []string{"public.products=delete/merge", "public.products=insert/merge", "public.products=merge", "public.products=update/merge"},
			columns: []string{"public.products.id=insert/merge", "public.products.name=insert/merge", "public.products.price=update/merge"}},
		{name: "merge without delete", sql: "MERGE INTO products p USING (SELECT 1 AS id) s ON p.id = s.id " +
			"WHEN MATCHED AND p.price > 10 THEN DO NOTHING WHEN MATCHED THEN UPDATE SET price = 1",
			tables:  []string{"public.products=merge", "public.products=update/merge"},
			columns: []string{"public.products.price=update/merge"}},
		{name: "merge delete only", sql: "MERGE INTO products p USING (SELECT 1 AS id) s ON p.id = s.id WHEN MATCHED THEN DELETE",
			tables: []string{"public.products=delete/merge", "public.products=merge"}},
		{name: "cte update under select", sql: "WITH u AS (UPDATE products SET price = 1 RETURNING id) SELECT count(*) FROM u",
			tables:  []string{"public.products=update"},
			columns: []string{"public.products.price=update"}},
		{name: "copy from stdin", sql: "COPY products (id) FROM STDIN",
			tables:  []string{"public.products=insert"},
			columns: []string{"public.products.id=insert"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := one(t, tc.sql)
			assert.Empty(t, st.Problems)
			tables, columns := writeActions(st)
			assert.Equal(t, tc.tables, tables, "tables")
			assert.Equal(t, tc.columns, columns, "columns")
		})
	}
}
