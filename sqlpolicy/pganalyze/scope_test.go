package pganalyze_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/internal/testpg"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

// TestColumnNamesMatchPostgres checks the names the analyzer gives unnamed
// select-list columns against the names Postgres gives them
// (FigureColname): an outer reference to a derived table's column, or a
// NATURAL join with it, binds by that name. For each expression Postgres
// runs it and reports the name; the analyzer must resolve s."<name>" over
// the derived table, and must not resolve a name Postgres does not give.
func TestColumnNamesMatchPostgres(t *testing.T) {
	t.Parallel()
	db := testpg.New(t, schemaSQL)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cat, err := catalog.LoadPostgresDSN(ctx, db.DSN)
	require.NoError(t, err)
	a := pganalyze.New(cat, pganalyze.Options{})
	conn, err := pgx.Connect(ctx, db.DSN)
	require.NoError(t, err)
	defer conn.Close(context.Background())

	exprs := []string{
		"name", "c.name", "(c).name", "lower(name)", "pg_catalog.lower(name)",
		"nullif(name, 'x')", "name::text", "'x'::text", "(1 + 1)::int", "1::double precision", "'x'::varchar(3)",
		"CAST(name AS varchar)", "'{1}'::int[]", "name COLLATE \"C\"", "EXISTS (SELECT 1)", "ARRAY(SELECT 1)",
		"(SELECT name FROM customers LIMIT 1)", "(SELECT * FROM (SELECT 1 AS q) t)", "(SELECT 1 AS q UNION SELECT 2)",
		"CASE WHEN true THEN 1 END", "CASE WHEN true THEN 'a' ELSE name END", "CASE WHEN true THEN name ELSE 'a' END",
		"(CASE WHEN true THEN 1 END)::text", "(CASE WHEN true THEN 1 ELSE id END)::text", "ARRAY[1]", "ROW(1, 2)",
		"coalesce(name, 'x')", "greatest(1, 2)", "least(1, 2)", "current_date", "current_time", "current_timestamp",
		"localtime", "localtimestamp", "current_role", "current_user", "user", "session_user", "current_catalog",
		"current_schema", "xmlconcat('<a/>', '<b/>')", "xmlelement(name a)", "xmlforest(1 AS a)",
		"xmlparse(content '<a/>')", "xmlpi(name php)", "xmlroot('<a/>', version '1.0')",
		"xmlserialize(content '<a/>' AS text)", "name IS NULL", "1 + 1", "-id", "extract(day from created_at)",
		"substring(name from 1)", "trim(name)", "position('a' in name)", "overlay(name placing 'x' from 1)",
		"collation for (name)", "count(*) OVER ()", "row_number() OVER ()", "name || 'x'", "NOT true",
		"id IN (1, 2)", "(ROW(1, 2)).f1", "(ARRAY[1])[1]", "c", "c.*::text", "(SELECT x.* FROM (SELECT 1 AS q) x)",
		"normalize(name)", "name IS NORMALIZED", "(SELECT ARRAY[1])[1]", "$$a$$", "B'1'", "1.5",
	}
	for _, e := range exprs {
		query := "SELECT " + e + " FROM customers c LIMIT 1"
		rows, err := conn.Query(ctx, query, pgx.QueryExecModeSimpleProtocol)
		require.NoError(t, err, query)
		fields := rows.FieldDescriptions()
		rows.Close()
		require.NoError(t, rows.Err(), query)
		require.Len(t, fields, 1, query)
		pgName := fields[0].Name

		outer := "SELECT s." + pgx.Identifier{pgName}.Sanitize() + " FROM (" + query + ") AS s"
		st := a.Analyze(outer, nil).Statements[0]
		assert.NotContains(t, problemCodes(st.Problems), string(sqlpolicy.ProblemUnknownColumn),
			"Postgres names %s %q; the analyzer does not resolve that name: %v", e, pgName, st.Problems)
		wrong := "SELECT s.not_the_name FROM (" + query + ") AS s"
		st = a.Analyze(wrong, nil).Statements[0]
		assert.Contains(t, problemCodes(st.Problems), string(sqlpolicy.ProblemUnknownColumn),
			"the analyzer resolves a name Postgres does not give %s", e)
	}
}

// TestScopeRules covers the scoping rules the policy corpus cannot phrase
// (the corpus's policy grants no update, delete or merge).
func TestScopeRules(t *testing.T) {
	t.Parallel()
	a := analyzer(t)
	db := testCatalog(t).Database
	require.NotEmpty(t, db)
	// A MERGE that deletes customers looks for the orders referencing
	// them (foreign key check, effects.go).
	fkLookup := []string{"public.orders.customer_id@public.customers"}
	tests := []struct {
		name     string
		sql      string
		columns  []string // nil: not checked
		problems []string
	}{
		{name: "four-part name", sql: "SELECT " + db + ".public.customers.name FROM customers",
			columns: cols("customers", "name")},
		{name: "four-part name of another database", sql: "SELECT otherdb.public.customers.name FROM customers",
			problems: []string{"unknown_table"}},
		{name: "five-part name", sql: "SELECT a.b.c.d.e FROM customers", problems: []string{"unknown_column"}},
		{name: "update FROM sees no target", sql: "UPDATE customers SET name = s.x FROM (SELECT customers.ssn AS x) s",
			problems: []string{"unknown_column"}},
		{name: "update FROM lateral sees no target", sql: "UPDATE customers SET name = s.x FROM LATERAL (SELECT ssn AS x) s",
			problems: []string{"unknown_column"}},
		{name: "update SET sees FROM", sql: "UPDATE customers c SET name = o.status FROM orders o WHERE o.customer_id = c.id",
			columns: join(cols("customers", "id", "name:w"), cols("orders", "customer_id", "status"))},
		{name: "delete USING sees no target", sql: "DELETE FROM customers USING (SELECT ssn FROM customers c2) s, (SELECT customers.id) t",
			problems: []string{"unknown_column"}},
		{name: "insert source sees no target", sql: "INSERT INTO customers (name) SELECT ssn",
			problems: []string{"unknown_column"}},
		{name: "insert returning sees the target", sql: "INSERT INTO customers AS c (name) VALUES ('x') RETURNING c.ssn",
			columns: cols("customers", "name:w", "ssn")},
		{name: "on conflict sees target and excluded", sql: "INSERT INTO products (id, name) VALUES (1, 'a') ON CONFLICT (id) DO UPDATE SET name = excluded.name || products.price",
			columns: cols("products", "id", "id:w", "name", "name:w", "name:w", "price")},
		{name: "merge matched sees target", sql: "MERGE INTO customers c USING orders o ON o.customer_id = c.id WHEN MATCHED AND c.ssn = '1' THEN DELETE",
			columns: join(cols("customers", "id", "ssn"), cols("orders", "customer_id"), fkLookup)},
		{name: "merge not matched sees no target", sql: "MERGE INTO customers c USING orders o ON o.customer_id = c.id WHEN NOT MATCHED THEN INSERT (name) VALUES (c.ssn)",
			problems: []string{"unknown_column"}},
		{name: "merge source sees no target", sql: "MERGE INTO customers c USING (SELECT c.ssn AS x) s ON true WHEN MATCHED THEN DELETE",
			problems: []string{"unknown_column"}},
		{name: "merge source join items visible", sql: "MERGE INTO customers c USING orders o CROSS JOIN products p ON o.customer_id = c.id WHEN MATCHED AND o.total > p.price THEN DELETE",
			columns: join(cols("customers", "id"), cols("orders", "customer_id", "total"), cols("products", "price"), fkLookup)},
		{name: "merge by source", sql: "MERGE INTO customers c USING orders o ON o.customer_id = c.id WHEN NOT MATCHED BY SOURCE THEN DELETE",
			problems: []string{"unsupported"}},
		{name: "merge by source sees the target", sql: "MERGE INTO customers c USING orders o ON o.customer_id = c.id WHEN NOT MATCHED BY SOURCE AND c.ssn = '1' THEN DELETE",
			columns: join(cols("customers", "id", "ssn"), cols("orders", "customer_id"), fkLookup), problems: []string{"unsupported"}},
		{name: "merge by source sees no source", sql: "MERGE INTO customers c USING orders o ON o.customer_id = c.id WHEN NOT MATCHED BY SOURCE AND o.total > 0 THEN DELETE",
			problems: []string{"unsupported", "unknown_column"}},
		{name: "merge in WITH", sql: "WITH m AS (MERGE INTO customers c USING orders o ON true WHEN MATCHED THEN DELETE RETURNING c.id) SELECT * FROM m",
			problems: []string{"unsupported"}},
		{name: "system column", sql: "SELECT xmin FROM orders", problems: []string{"unsupported"}},
		{name: "system column after user column", sql: "SELECT t.xmin FROM orders AS t(xmin)", columns: cols("orders", "id")},
		{name: "view has no system columns", sql: "SELECT (SELECT ctid FROM customer_safe LIMIT 1) FROM orders AS o(ctid)",
			columns: cols("orders", "id")},
		{name: "recursive CTE sees later CTE", sql: "WITH RECURSIVE a AS (SELECT x FROM b), b(x) AS (SELECT ssn FROM customers) SELECT * FROM a",
			columns: cols("customers", "ssn")},
		{name: "non-recursive CTE in WITH RECURSIVE keeps its names", sql: "SELECT (WITH RECURSIVE a AS (SELECT 1 AS ssn) SELECT ssn FROM a) FROM customers",
			columns: []string{}},
		{name: "plain CTE does not see later CTE", sql: "WITH a AS (SELECT * FROM customers_b), customers_b AS (SELECT 1) SELECT * FROM a",
			problems: []string{"unknown_table"}},
		{name: "function in FROM with unknown columns", sql: "SELECT r.x FROM customer_rows() r",
			columns: []string{}},
		{name: "alias past a run collapses", sql: "SELECT j.b FROM (customer_rows() r CROSS JOIN customers c) AS j(a, b)",
			columns: cols("customers", "created_at", "email", "id", "name", "ssn")},
		{name: "alias before a run is exact", sql: "SELECT j.a FROM (customers c CROSS JOIN customer_rows() r) AS j(a, b)",
			columns: cols("customers", "id")},
		{name: "natural join with a run", sql: "SELECT 1 FROM customers c NATURAL JOIN customer_rows() r",
			columns: cols("customers", "created_at", "email", "id", "name", "ssn")},
		{name: "using from a run", sql: "SELECT id FROM customers c JOIN customer_rows() r USING (id)",
			columns: cols("customers", "id")},
		{name: "scalar function column named by alias", sql: "SELECT (SELECT ssn FROM generate_series(1, 2) AS ssn LIMIT 1) FROM customers",
			columns: []string{}},
		{name: "record function columns not named by alias", sql: "SELECT (SELECT ssn FROM json_each('{}') AS ssn LIMIT 1) FROM customers",
			columns: cols("customers", "ssn")},
		{name: "unnest of a non-literal may be rows", sql: "SELECT (SELECT ssn FROM unnest(ARRAY[c.id]) AS ssn LIMIT 1) FROM customers c",
			columns: cols("customers", "id", "ssn")},
		{name: "using alias", sql: "SELECT u.id FROM customers c JOIN orders o USING (id) AS u",
			columns: join(cols("customers", "id"), cols("orders", "id"))},
		{name: "lateral reference to the left of a right join", sql: "SELECT 1 FROM customers c RIGHT JOIN LATERAL (SELECT c.ssn) s ON true",
			problems: []string{"unknown_column"}},
		{name: "lateral reference to the left of a left join", sql: "SELECT s.x FROM customers c LEFT JOIN LATERAL (SELECT c.ssn AS x) s ON true",
			columns: cols("customers", "ssn")},
		{name: "ROW(t.*) reads the row", sql: "SELECT ROW(c.*) FROM customers c",
			columns: cols("customers", "created_at", "email", "id", "name", "ssn")},
		{name: "attribute notation calls a function", sql: "SELECT c.lower FROM customers c",
			columns: cols("customers", "created_at", "email", "id", "name", "ssn")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := a.Analyze(tc.sql, nil).Statements[0]
			if tc.columns != nil {
				assert.Equal(t, join(tc.columns), colStrings(st.Columns), tc.sql)
			}
			if tc.problems != nil {
				for _, p := range tc.problems {
					assert.Contains(t, problemCodes(st.Problems), p, tc.sql)
				}
			} else {
				assert.Empty(t, st.Problems, tc.sql)
			}
		})
	}
}

// TestScopeSearchPathAliasList: under several search paths a relation's
// alias list renames each candidate's columns by its own positions.
func TestScopeSearchPathAliasList(t *testing.T) {
	t.Parallel()
	a := analyzer(t)
	st := a.Analyze("SELECT c.b FROM customers AS c(a, b)", candidateSession(t)).Statements[0]
	assert.Empty(t, st.Problems)
	assert.Equal(t, []string{"other.customers.note", "public.customers.name"}, colStrings(st.Columns))
	// A join over them has no known column order: an alias list over it
	// may rename anything.
	st = a.Analyze("SELECT j.b FROM (customers c JOIN orders o ON true) AS j(a, b)", candidateSession(t)).Statements[0]
	assert.Empty(t, st.Problems)
	assert.Subset(t, colStrings(st.Columns), []string{"other.customers.note", "public.customers.name", "public.customers.ssn"})
}
