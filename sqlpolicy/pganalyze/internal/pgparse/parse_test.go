package pgparse_test

import (
	"bufio"
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"

	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze/internal/pgparse"
)

// repo is the repository root, relative to this package.
const repo = "../../../.."

// requireSame asserts that Parse answers sql exactly as pg.Parse does.
func requireSame(t *testing.T, sql string) {
	t.Helper()
	want, wantErr := pg.Parse(sql)
	got, gotErr := pgparse.Parse(sql)
	if wantErr != nil {
		require.Error(t, gotErr, "pg.Parse fails, Parse does not: %q", sql)
		assert.Equal(t, wantErr, gotErr, "%q", sql)
		return
	}
	require.NoError(t, gotErr, "%q", sql)
	require.True(t, proto.Equal(want, got), "trees differ for %q:\nwant %v\ngot  %v", sql, want, got)
}

// requireDecoded asserts that the JSON decoder itself (not the pg.Parse
// fallback) produced the tree of sql.
func requireDecoded(t *testing.T, sql string) {
	t.Helper()
	want, err := pg.Parse(sql)
	require.NoError(t, err, "%q", sql)
	js, err := pg.ParseToJSON(sql)
	require.NoError(t, err, "%q", sql)
	got := pgparse.Decode(js)
	require.NotNil(t, got, "decoder gave up on %q:\n%s", sql, js)
	require.True(t, proto.Equal(want, got), "trees differ for %q:\nwant %v\ngot  %v", sql, want, got)
}

// TestParseCorpus compares Parse with pg.Parse on every SQL text of the
// policy corpus, the analyzer's and the engine's tests, their fuzz seeds
// and the fixture schema; every text that parses must decode without the
// fallback.
func TestParseCorpus(t *testing.T) {
	texts := corpusTexts(t)
	require.Greater(t, len(texts), 1000, "corpus not found")
	parsed := 0
	for _, sql := range texts {
		requireSame(t, sql)
		if _, err := pg.Parse(sql); err == nil {
			requireDecoded(t, sql)
			parsed++
		}
	}
	t.Logf("%d texts, %d parse", len(texts), parsed)
	require.Greater(t, parsed, 800)
}

// TestParseForms covers the JSON encodings one by one: every A_Const form,
// escapes, NULL list elements, integer limits, several statements.
func TestParseForms(t *testing.T) {
	for _, sql := range []string{
		"",
		";",
		"SELECT 1; SELECT 2;; SELECT 3",
		"SELECT 0, -1, 2147483647, -2147483648, 2147483648, 99999999999999999999, 1.5, -0.0, 1e10, 0x1F, 0o17, 0b101, 1_000",
		"SELECT true, false, NULL, 'x', '', B'1010', X'1F', E'a\\nb\\tc\\\\d\\'e', U&'d\\0061t\\+000061', $$dollar$$, $t$x$t$",
		`SELECT 'quote " and \ and < > & and control ` + "\x01\x02\x1f\x7f" + `'`,
		"SELECT '\u00e9\u4e2d\U0001F600', \"ünïcödé\" FROM \"weird \"\" name\"",
		"SELECT DISTINCT a FROM t",
		"SELECT DISTINCT ON (a, b) a FROM t ORDER BY a, b DESC NULLS LAST",
		"FETCH ALL FROM c; FETCH 5 FROM c; FETCH BACKWARD 9223372036854775807 FROM c; MOVE FORWARD ALL IN c",
		"SELECT a::varchar(10), b::numeric(10,2), c::int[], interval '1 day', date '2020-01-01', timestamp(3) with time zone 'now'",
		"SELECT * FROM t TABLESAMPLE BERNOULLI (10) REPEATABLE (1)",
		"SELECT x FROM t WHERE a IN (1, 2, 3) AND b BETWEEN 1 AND 2 AND c IS NOT NULL AND d LIKE 'x%' ESCAPE '!'",
		"SELECT count(*) FILTER (WHERE a > 1) OVER (PARTITION BY b ORDER BY c ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM t",
		"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SEARCH DEPTH FIRST BY n SET ord SELECT * FROM r",
		"INSERT INTO t (a, b) VALUES (1, DEFAULT), (2, 3) ON CONFLICT (a) DO UPDATE SET b = EXCLUDED.b WHERE t.b < 5 RETURNING *",
		"UPDATE t SET (a, b) = (SELECT 1, 2), c = DEFAULT FROM u WHERE t.id = u.id",
		"DELETE FROM t USING u WHERE t.id = u.id RETURNING t.*",
		"MERGE INTO t USING s ON t.id = s.id WHEN MATCHED AND s.x THEN UPDATE SET a = s.a WHEN NOT MATCHED THEN INSERT VALUES (s.id)",
		"CREATE TABLE t (id serial PRIMARY KEY, a text NOT NULL DEFAULT 'x' CHECK (a <> ''), b int REFERENCES u (id) ON DELETE CASCADE, c int GENERATED ALWAYS AS IDENTITY) PARTITION BY RANGE (id)",
		"ALTER TABLE t ADD COLUMN x int, ALTER COLUMN a SET STORAGE EXTERNAL, ALTER COLUMN b SET (n_distinct = 5)",
		"CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()",
		"ALTER TRIGGER tr ON t RENAME TO tr2; ALTER TABLE t ENABLE REPLICA TRIGGER tr",
		"CREATE FUNCTION f(a int, OUT b int) RETURNS int LANGUAGE sql IMMUTABLE COST 10 AS $$ SELECT a $$",
		"CREATE ACCESS METHOD am TYPE TABLE HANDLER h",
		"ALTER DOMAIN d ADD CONSTRAINT c CHECK (VALUE > 0)",
		"GRANT SELECT (a, b), UPDATE ON t TO r WITH GRANT OPTION",
		"COPY t (a, b) FROM STDIN WITH (FORMAT csv, HEADER true, DELIMITER ';')",
		"SET search_path = a, \"B\", public; SET LOCAL statement_timeout = 5; RESET ALL; SHOW ALL",
		"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT 1",
		"PREPARE p(int, text) AS SELECT $1, $2; EXECUTE p(1, 'a'); DEALLOCATE ALL",
		"DO $$ BEGIN RAISE NOTICE 'x'; END $$ LANGUAGE plpgsql",
		"SELECT ARRAY[1, 2][1:2], (row(1, 2)).f1, a[1].b, '{1,2}'::int[] @> ARRAY[1], xmlelement(name x, 'y')",
		"SELECT * FROM json_table('[1]', '$[*]' COLUMNS (a int PATH '$')) jt",
		"SELECT CASE WHEN a THEN 1 ELSE 2 END, COALESCE(a, b), GREATEST(1, 2), NULLIF(a, b), a IS DISTINCT FROM b",
		"SELECT * FROM a NATURAL FULL JOIN b CROSS JOIN LATERAL f(a.x) WITH ORDINALITY AS g(y, n)",
		"LOCK TABLE t IN ACCESS EXCLUSIVE MODE NOWAIT; VACUUM (VERBOSE, ANALYZE) t; CLUSTER t USING i",
		"CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p; NOTIFY ch, 'payload'; LISTEN ch",
		"SELECT 1 FROM t FOR UPDATE OF t SKIP LOCKED",
		"SELECT $1::int, $2",
		"SELECT 'a' 'b'\n'c'",
	} {
		requireSame(t, sql)
		if _, err := pg.Parse(sql); err == nil {
			requireDecoded(t, sql)
		}
	}
}

// TestParseFallback covers input the JSON decoder must not decode itself:
// what pg.Parse fails on after libpg_query succeeded (strings that are not
// UTF-8, nesting past the protobuf decoder's limit) and syntax errors.
func TestParseFallback(t *testing.T) {
	deep := strings.Repeat("(", 6000) + "1" + strings.Repeat(")", 6000)
	for _, sql := range []string{
		"SELECT '\xff\xfe'",
		"SELECT \"\xc3\" FROM t",
		"SELECT 1 FROM",
		"SELEC 1",
		"SELECT 'unterminated",
		"SELECT " + deep,
		"SELECT " + strings.Repeat("1+", 3000) + "1",
	} {
		requireSame(t, sql)
	}
	js, err := pg.ParseToJSON("SELECT '\xff'")
	require.NoError(t, err)
	assert.Nil(t, pgparse.Decode(js), "a string that is not UTF-8 decodes")
}

// TestDecodeMalformed feeds the decoder broken JSON: it must give up
// (nil), never panic or return a partial tree.
func TestDecodeMalformed(t *testing.T) {
	js, err := pg.ParseToJSON("SELECT a, 'x' FROM t WHERE b = 1 ORDER BY c")
	require.NoError(t, err)
	require.NotNil(t, pgparse.Decode(js))
	for i := range len(js) {
		assert.Nil(t, pgparse.Decode(js[:i]), "prefix %d decodes", i)
	}
	for _, bad := range []string{
		`{"version":170007,"stmts":[{"stmt":{"SelectStmt":{"bogusField":1}}}]}`,
		`{"version":170007,"stmts":[{"stmt":{"NoSuchNode":{}}}]}`,
		`{"version":170007,"stmts":[{"stmt":{"SelectStmt":{},"UpdateStmt":{}}}]}`,
		`{"version":170007,"stmts":[{"stmt":{"SelectStmt":{"limitOption":"NO_SUCH"}}}]}`,
		`{"version":99999999999,"stmts":[]}`,
		`{"version":-,"stmts":[]}`,
		`{"version":01,"stmts":[]}`,
		`{"version":1"stmts":[]}`,
		`{,"version":1}`,
		`{"version":1}x`,
		`{"version":1,"stmts":[{"stmt":{"String":{"sval":"\u0100"}}}]}`,
		`{"version":1,"stmts":[{"stmt":{"String":{"sval":"\x"}}}]}`,
		`{"version":1,"stmts":[{"stmt":{"String":{"sval":"a\"}}}]}`,
		`{"version":1,"stmts":[{"stmt":{"A_Const":{"fval":{"fval":1.5}}}}]}`,
		`{"version":1,"stmts":[{"stmt":{"SubPlan":{"startup_cost":1.500000}}}]}`,
		`{"version":1,"stmts":[{"stmt":{"Var":{"varnullingrels":[1]}}}]}`,
		`{"version":1,"stmts":[{"stmt":{"List":{"items":[{}` + strings.Repeat(`,{"List":{"items":[`, 20000) + `]}}]}}]}`,
	} {
		assert.Nil(t, pgparse.Decode(bad), "%s", bad)
	}
}

// corpusTexts collects the SQL of the policy corpus (testdata/pg), the Go
// string literals of the analyzer's and the engine's tests, their fuzz
// seeds, and the statements of the fixture schema.
func corpusTexts(t testing.TB) []string {
	t.Helper()
	var texts []string
	for _, dir := range []string{"testdata/pg/cases", "testdata/pg/cases-writer"} {
		files, err := filepath.Glob(filepath.Join(repo, dir, "*.yaml"))
		require.NoError(t, err)
		require.NotEmpty(t, files, dir)
		for _, f := range files {
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			var cases []struct {
				SQL yaml.Node `yaml:"sql"`
			}
			require.NoError(t, yaml.Unmarshal(data, &cases), f)
			for _, c := range cases {
				switch c.SQL.Kind {
				case yaml.ScalarNode:
					texts = append(texts, c.SQL.Value)
				case yaml.SequenceNode:
					for _, n := range c.SQL.Content {
						texts = append(texts, n.Value)
					}
				}
			}
		}
	}
	for _, dir := range []string{"sqlpolicy/pganalyze", "sqlpolicy"} {
		files, err := filepath.Glob(filepath.Join(repo, dir, "*_test.go"))
		require.NoError(t, err)
		for _, f := range files {
			texts = append(texts, goStrings(t, f)...)
		}
		seeds, _ := filepath.Glob(filepath.Join(repo, dir, "testdata/fuzz/*/*"))
		for _, f := range seeds {
			texts = append(texts, fuzzSeedStrings(t, f)...)
		}
	}
	schema, err := os.ReadFile(filepath.Join(repo, "testdata/pg/shop.sql"))
	require.NoError(t, err)
	texts = append(texts, string(schema))
	stmts, err := pg.SplitWithParser(string(schema), true)
	require.NoError(t, err)
	return append(texts, stmts...)
}

// goStrings returns the string literals of a Go file.
func goStrings(t testing.TB, path string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
	require.NoError(t, err)
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			s, err := strconv.Unquote(lit.Value)
			require.NoError(t, err)
			out = append(out, s)
		}
		return true
	})
	return out
}

// fuzzSeedStrings returns the string values of a Go fuzz corpus file.
func fuzzSeedStrings(t testing.TB, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "string("); ok {
			s, err := strconv.Unquote(strings.TrimSuffix(v, ")"))
			require.NoError(t, err, path)
			out = append(out, s)
		}
	}
	require.NoError(t, sc.Err())
	return out
}

// TestDecoderKeepsNothing checks that a decoder going back to the pool
// holds no memory of the tree it made: a kept tree (a cached column
// default) must not pin the next parse's slabs or the other way round.
func TestDecoderKeepsNothing(t *testing.T) {
	js, err := pg.ParseToJSON("SELECT DISTINCT a, 'x', 1 FROM t JOIN u USING (id) WHERE b IN (1, 2) ORDER BY c")
	require.NoError(t, err)
	assert.Empty(t, pgparse.Retained(js))
}

// TestParseConcurrent parses from several goroutines at once: decoders
// come from a pool and must never be shared by two parses.
func TestParseConcurrent(t *testing.T) {
	texts := []string{
		"SELECT a, b FROM t WHERE c = 1",
		"INSERT INTO t VALUES (1, 'x') RETURNING *",
		"WITH x AS (SELECT 1) SELECT * FROM x JOIN y USING (id)",
		"UPDATE t SET a = a + 1 WHERE b IN (SELECT b FROM u)",
	}
	want := make([]*pg.ParseResult, len(texts))
	for i, sql := range texts {
		var err error
		want[i], err = pg.Parse(sql)
		require.NoError(t, err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				k := (g + i) % len(texts)
				got, err := pgparse.Parse(texts[k])
				if assert.NoError(t, err) {
					assert.True(t, proto.Equal(want[k], got), "%q", texts[k])
				}
			}
		})
	}
	wg.Wait()
}

// TestNormalizeCorpus compares Normalize with pg.Normalize on every text
// of the corpus that parses: where Normalize answers, it must answer the
// same; it must answer for most texts.
func TestNormalizeCorpus(t *testing.T) {
	texts := append(corpusTexts(t), normalizeForms...)
	answered, parsed := 0, 0
	for _, sql := range texts {
		tree, err := pgparse.Parse(sql)
		if err != nil {
			continue
		}
		parsed++
		want, err := pg.Normalize(sql)
		require.NoError(t, err, "%q", sql)
		got, ok := pgparse.Normalize(sql, tree)
		if !ok {
			continue
		}
		answered++
		require.Equal(t, want, got, "%q", sql)
	}
	t.Logf("%d texts parse, Normalize answers %d", parsed, answered)
	require.Greater(t, answered, parsed/2)
}

// normalizeForms are the constant forms and walk orders Normalize must
// get right (or leave to pg.Normalize).
var normalizeForms = []string{
	"SELECT 1, -2, - 3, -\n4, .5, 1e10, 1.e-3, 0x1F, 0o17, 0b101, 1_000, 99999999999999999999",
	"SELECT -/* c */4.5",
	"SELECT 'a', 'it''s', E'x\\'y', B'101', X'ff', N'n', $$d$$, $t$ $$ $t$",
	"SELECT U&'\\0061', U&'x' UESCAPE '!'",
	"SELECT 'a'\n'b', 'c' 'd'",
	"SELECT true, false, NULL FROM t LIMIT ALL",
	"SELECT a FROM t WHERE b = $1 AND c = 5 AND d = $3",
	"WITH c AS (SELECT 1 AS x) SELECT x + 2 FROM c WHERE x > 3 LIMIT 4 OFFSET 5",
	"SELECT a, count(*) FROM t GROUP BY 1 ORDER BY 2 DESC, a + 1",
	"SELECT date_trunc('day', a), count(*) FROM t GROUP BY date_trunc('day', a)",
	"SELECT a::varchar(10), b::numeric(10, 2)[3], interval '1' day FROM t",
	"SELECT CASE WHEN a = 1 THEN 'one' ELSE 'other' END, coalesce(b, 0), greatest(1, 2) FROM t",
	"SELECT a[1], a[2:3], (b).c, ARRAY[1, 2], ROW(1, 'x') FROM t WHERE c IN (1, 2, 3) AND d BETWEEN 4 AND 5",
	"SELECT sum(a) FILTER (WHERE b > 1) OVER (PARTITION BY c ORDER BY d ROWS BETWEEN 1 PRECEDING AND 2 FOLLOWING) FROM t",
	"SELECT 1 UNION SELECT 2 INTERSECT SELECT 3 EXCEPT SELECT 4",
	"INSERT INTO t (a, b) VALUES (1, 'x'), (2, DEFAULT) ON CONFLICT (a) WHERE a > 0 DO UPDATE SET b = 'y' WHERE t.a < 9 RETURNING a, 7",
	"UPDATE t SET a = 1, (b, c) = (2, 3) FROM u WHERE u.id = t.id AND u.x = 'z' RETURNING 8",
	"DELETE FROM t USING u WHERE u.id = t.id AND u.x = 5 RETURNING 'gone'",
	"EXPLAIN (ANALYZE false) SELECT 1",
	"SELECT 1; SELECT 'two'; UPDATE t SET a = 3",
	"SELECT x FROM t WHERE x = 1..2",
	"SELECT * FROM t TABLESAMPLE SYSTEM (10) REPEATABLE (1)",
	"SELECT * FROM generate_series(1, 10) g, unnest(ARRAY['a']) WITH ORDINALITY u",
	"SELECT * FROM f(1) AS x(a int)",
	"SELECT a FROM t WHERE a LIKE 'x%' ESCAPE '!' AND b IS DISTINCT FROM 3 AND c IS NOT NULL AND d IS TRUE",
	"SELECT a FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.a = t.a AND u.b > 10) AND a = ANY (SELECT 2)",
	"SELECT a COLLATE \"C\", f(x => 1, y := 'z') FROM t FOR UPDATE OF t SKIP LOCKED",
	"SELECT a FROM t GROUP BY GROUPING SETS ((a), ()), ROLLUP (b), CUBE (c) HAVING count(*) > 1",
}

// TestParseScratchCorpus parses the corpus text after text into reused
// memory (ParseScratch, then Release): each tree must equal pg.Parse's
// although its nodes held an earlier, different tree a moment before.
func TestParseScratchCorpus(t *testing.T) {
	texts := corpusTexts(t)
	require.Greater(t, len(texts), 1000, "corpus not found")
	for _, sql := range texts {
		want, wantErr := pg.Parse(sql)
		got, mem, gotErr := pgparse.ParseScratch(sql)
		if wantErr != nil {
			require.Error(t, gotErr, "pg.Parse fails, ParseScratch does not: %q", sql)
			assert.Equal(t, wantErr, gotErr, "%q", sql)
		} else {
			require.NoError(t, gotErr, "%q", sql)
			require.True(t, proto.Equal(want, got), "trees differ for %q:\nwant %v\ngot  %v", sql, want, got)
		}
		mem.Release()
	}
}

// TestParseScratchReuses shows that a released tree's nodes are handed
// out again: a statement parsed after a release of the same shape costs
// far fewer allocations than Parse. (The race detector makes sync.Pool
// drop a quarter of what it is given, hence the margin.)
func TestParseScratchReuses(t *testing.T) {
	const sql = `SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.total > 100 ORDER BY o.id LIMIT 5`
	parse := testing.AllocsPerRun(200, func() {
		_, _ = pgparse.Parse(sql)
	})
	scratch := testing.AllocsPerRun(200, func() {
		_, mem, _ := pgparse.ParseScratch(sql)
		mem.Release()
	})
	t.Logf("allocations per parse: Parse %.1f, ParseScratch %.1f", parse, scratch)
	assert.Less(t, scratch, parse*2/3)
}
