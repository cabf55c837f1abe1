package pganalyze_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCommonForms: ordinary SQL forms (expressions, joins, window frames,
// utility statements drivers send) analyze without problems. A Problem on
// any of these would make keyhole refuse everyday queries.
func TestCommonForms(t *testing.T) {
	t.Parallel()
	a := analyzer(t)
	for _, s := range []string{
		"SELECT xmlelement(name a, xmlattributes(1 as b), name)  FROM customers",
		"SELECT EXTRACT(year FROM created_at) FROM customers", "SELECT INTERVAL '1 day'",
		"SELECT * FROM orders WHERE id = ANY(ARRAY[1])", "SELECT CURRENT_TIMESTAMP(3)", "SELECT '{1}'::int[]",
		"SELECT ROW(1,2) IS NULL", "SELECT GREATEST(1,2), LEAST(1, 2)", "SELECT name COLLATE \"C\" FROM customers",
		"SELECT NULLIF(1,2)", "SELECT (SELECT 1) IS NOT NULL", "SELECT name FROM customers WHERE name LIKE 'x' ESCAPE '!'",
		"SELECT 1 BETWEEN SYMMETRIC 0 AND 2", "SELECT 1 IS DISTINCT FROM 2", "SELECT TRIM(BOTH 'x' FROM 'xax')",
		"SELECT SUBSTRING('abc' FROM 1 FOR 2)", "SELECT POSITION('a' IN 'abc')", "SELECT OVERLAY('abc' PLACING 'x' FROM 1)",
		"SELECT COLLATION FOR ('a')", "SELECT CAST('1' AS int)", "SELECT now() AT TIME ZONE 'UTC'", "SELECT (ARRAY[1,2])[1:2]",
		"SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY total) FROM orders", "SELECT count(DISTINCT status) FROM orders",
		"SELECT json_agg(o) FROM orders o", "SELECT * FROM orders WHERE (id, total) IN (SELECT 1, 2)",
		"SELECT xmlserialize(content '<a/>' as text)", "SELECT xmlparse(document '<a/>')", "SELECT 'a' IS NORMALIZED",
		"SELECT CURRENT_USER, SESSION_USER, CURRENT_CATALOG, CURRENT_SCHEMA, USER", "SELECT GROUPING(status) FROM orders GROUP BY CUBE(status)",
		"SELECT * FROM orders ORDER BY id FETCH FIRST 1 ROWS WITH TIES", "SELECT $1::int",
		"SELECT * FROM ROWS FROM (generate_series(1,2), generate_series(1,3)) AS r(a, b)", "TABLE orders",
		"SELECT x IS DOCUMENT FROM (SELECT '<a/>'::xml AS x) s", "SELECT xmlforest(name, email AS e) FROM customers",
		"SELECT xmlconcat('<a/>', '<b/>')", "SELECT xmlpi(name php, 'x')", "SELECT xmlroot('<a/>', version '1.0')",
		"SELECT xmlexists('//a' PASSING BY VALUE '<a/>')", "SELECT name FROM customers WHERE name SIMILAR TO 'a%'",
		"SELECT 1 WHERE 'a' ILIKE 'A'", "SELECT ARRAY(SELECT 1)", "SELECT 1 WHERE 1 = ALL (SELECT 1)", "SELECT -1, +1, ~1, !!1",
		"SELECT row_number() OVER (ORDER BY id ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM orders",
		"SELECT sum(total) OVER (PARTITION BY status RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) FROM orders",
		"SELECT count(*) FILTER (WHERE total > 1) OVER () FROM orders", "SELECT * FROM orders WHERE status IS NOT TRUE",
		"SELECT * FROM orders WHERE status IS UNKNOWN", "SELECT '1'::jsonb #> '{a}'", "SELECT 1 OPERATOR(pg_catalog.=) 1",
		"SELECT CASE status WHEN 'a' THEN 1 END FROM orders", "SELECT * FROM orders o1 FULL JOIN orders o2 USING (id)",
		"SELECT * FROM orders CROSS JOIN products", "SELECT DISTINCT status FROM orders", "VALUES (1), (2) ORDER BY 1 LIMIT 1",
		"SELECT * FROM (VALUES (1, 2)) AS v", "SELECT v.column1 FROM (VALUES (1, 2)) AS v",
		"SELECT 1 FROM orders GROUP BY GROUPING SETS ((status), ())",
		"INSERT INTO orders DEFAULT VALUES", "INSERT INTO orders (id) VALUES (DEFAULT)", "INSERT INTO orders (id) OVERRIDING SYSTEM VALUE VALUES (1)",
		"UPDATE orders SET total = DEFAULT", "UPDATE orders SET (status) = ROW('x')", "DELETE FROM orders WHERE CURRENT OF c",
		"SELECT * FROM pg_catalog.pg_tables", "SELECT c.oid::regclass FROM pg_class c", "SELECT format('%s', 1)",
		"SELECT array_agg(x ORDER BY x) FROM unnest(ARRAY[3,1]) x", "SELECT * FROM json_each('{}'::json)",
		"SELECT key, value FROM jsonb_each('{}'::jsonb)", "SELECT * FROM orders o WHERE o IS NOT NULL",
		"SELECT count(*) FROM orders WHERE created_at > now() - '1 day'::interval", "SELECT B'101', X'1F', U&'\\0041'",
		"SELECT 1::bit(3)", "SELECT 'x'::varchar(10)", "SELECT ARRAY[[1,2],[3,4]]", "SELECT (SELECT o FROM orders o LIMIT 1).total",
		"SELECT (o).* FROM orders o", "SELECT to_json(r) FROM (SELECT id FROM orders) r", "SELECT ord.total FROM orders AS ord",
		"WITH t AS (SELECT 1 AS x) SEARCH DEPTH FIRST BY x SET ord SELECT * FROM t",
		"WITH RECURSIVE t(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM t WHERE x < 3) CYCLE x SET is_cycle USING path SELECT * FROM t",
		"SELECT * FROM customers c WHERE c.name = ANY('{a}')", "SELECT name FROM customers UNION SELECT name FROM products ORDER BY name",
		"SELECT 1 WHERE EXISTS (SELECT * FROM orders)", "SELECT max(total) FROM orders HAVING count(*) > 1",
		"SELECT t.* FROM (SELECT 1) t", "SELECT length(name::text) FROM customer_contacts",
		"SELECT * FROM customers TABLESAMPLE BERNOULLI (50) REPEATABLE (1)", "SELECT s FROM string_to_table('a,b', ',') s",
		"SHOW TIME ZONE", "SHOW TRANSACTION ISOLATION LEVEL", "SET SESSION timezone TO 'UTC'", "SET datestyle = ISO, MDY",
		"RESET client_min_messages", "SET extra_float_digits = 3", "SET intervalstyle = iso_8601", "SET TIME ZONE INTERVAL '+02:00' HOUR TO MINUTE",
		"COMMIT AND CHAIN", "START TRANSACTION READ ONLY", "ABORT", "END", "RELEASE SAVEPOINT a", "DEALLOCATE PREPARE p",
		"MOVE NEXT FROM c", "CLOSE ALL", "UNLISTEN *", "DISCARD TEMP", "ANALYZE orders", "VACUUM (ANALYZE) orders",
		"REFRESH MATERIALIZED VIEW CONCURRENTLY x", "CREATE INDEX ON orders (status)", "CREATE VIEW v AS SELECT 1",
		"SELECT 1 FROM orders o LEFT JOIN LATERAL (SELECT o.id) s ON true", "SELECT 'a' || name || 'b' FROM customers",
	} {
		acc := a.Analyze(s, nil)
		require.Len(t, acc.Statements, 1, s)
		assert.Empty(t, acc.Statements[0].Problems, s)
		assert.NotEmpty(t, acc.Statements[0].Verb, s)
	}
}
