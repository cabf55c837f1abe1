package pgparse_test

import (
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze/internal/pgparse"
)

// maxFuzzLen keeps fuzz inputs far below what overflows libpg_query's
// recursive output code (about 25 000 chained operators); the analyzer
// refuses such text before parsing it.
const maxFuzzLen = 8 << 10

// FuzzParseEquivalent checks that Parse and pg.Parse agree on any input:
// both fail (with the same error) or both return proto.Equal trees.
func FuzzParseEquivalent(f *testing.F) {
	for _, s := range []string{
		"SELECT o.id, c.name FROM public.orders o JOIN public.customers c ON c.id = o.customer_id WHERE o.total > 100 ORDER BY 1 DESC LIMIT 5",
		"SELECT DISTINCT ON (a) a, 'x\ty\"z\\\\', E'\\n<>', U&'\\0061', B'101', X'ff', 1.5e3, -7, true, NULL FROM t",
		"WITH RECURSIVE r(a) AS (SELECT 1 UNION ALL SELECT a + 1 FROM r) SELECT * FROM r",
		"INSERT INTO p VALUES (1, DEFAULT) ON CONFLICT (id) DO UPDATE SET n = excluded.n RETURNING *",
		"FETCH BACKWARD 9223372036854775807 FROM c; MOVE ALL IN c",
		"CREATE TABLE t (a int GENERATED ALWAYS AS IDENTITY, b text COLLATE \"C\" CHECK (b <> '')) PARTITION BY LIST (a)",
		"SET search_path = a, b; COPY (SELECT 1) TO STDOUT WITH (FORMAT csv); EXPLAIN ANALYZE SELECT 1",
		"SELECT '\xff'",
		"SELECT $x$ ( $x$, \"((\" FROM t -- (",
	} {
		f.Add(s)
	}
	for _, s := range corpusTexts(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		if len(sql) > maxFuzzLen {
			return
		}
		want, wantErr := pg.Parse(sql)
		got, gotErr := pgparse.Parse(sql)
		if wantErr != nil {
			require.Error(t, gotErr)
			require.Equal(t, wantErr.Error(), gotErr.Error())
			return
		}
		require.NoError(t, gotErr)
		require.True(t, proto.Equal(want, got), "trees differ:\nwant %v\ngot  %v", want, got)
	})
}

// FuzzDecode feeds the decoder arbitrary JSON-ish text: it must return a
// tree or nil, never panic or hang.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"SELECT a, 'x' FROM t WHERE b = 1 ORDER BY c",
		"SELECT DISTINCT a::numeric(10,2) FROM t",
		"SELECT E'\\b\\f\\r\\x01<>'",
	} {
		js, err := pg.ParseToJSON(s)
		require.NoError(f, err)
		f.Add(js)
	}
	f.Fuzz(func(t *testing.T, js string) {
		_ = pgparse.Decode(js)
	})
}

// FuzzNormalizeEquivalent checks that Normalize, where it answers, answers
// what pg.Normalize does.
func FuzzNormalizeEquivalent(f *testing.F) {
	for _, s := range normalizeForms {
		f.Add(s)
	}
	for _, s := range corpusTexts(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		if len(sql) > maxFuzzLen {
			return
		}
		tree, err := pgparse.Parse(sql)
		if err != nil {
			return
		}
		got, ok := pgparse.Normalize(sql, tree)
		if !ok {
			return
		}
		want, err := pg.Normalize(sql)
		require.NoError(t, err)
		require.Equal(t, want, got)
	})
}
