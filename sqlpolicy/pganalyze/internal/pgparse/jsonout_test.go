package pgparse_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze/internal/pgparse"
)

// requireSameJSON checks that the package's JSON writer writes what
// libpg_query's does for sql, byte for byte, or fails the same way.
func requireSameJSON(t testing.TB, sql string) {
	want, _, wantErr := pgparse.ParseToJSON(sql, false)
	got, counted, gotErr := pgparse.ParseToJSON(sql, true)
	if wantErr != nil {
		require.Error(t, gotErr, "%q", sql)
		require.Equal(t, wantErr.Error(), gotErr.Error(), "%q", sql)
		return
	}
	require.NoError(t, gotErr, "%q", sql)
	require.Equal(t, want, got, "%q", sql)
	if !strings.Contains(sql, `{"`) {
		// countNodes also counts `{"X` inside a string constant.
		require.True(t, counted, "node counts differ for %q", sql)
	}
}

// TestJSONOutCorpus compares the two writers on every text of the corpus.
func TestJSONOutCorpus(t *testing.T) {
	texts := append(corpusTexts(t), normalizeForms...)
	require.Greater(t, len(texts), 1000, "corpus not found")
	for _, s := range texts {
		requireSameJSON(t, s)
	}
}

// TestJSONOutForms covers what the corpus may not: escapes, every kind of
// constant, empty input, nodes with char, uint and list-of-int fields.
func TestJSONOutForms(t *testing.T) {
	for _, s := range []string{
		"",
		";",
		"SELECT E'\\b\\f\\n\\r\\t\\x01\\x1f<>\"\\\\', U&'\\00e9', 'é', $$a\"b$$",
		"SELECT 0, -1, 2147483647, -2147483648, 9223372036854775807, 1.5, -0.0, 1e300, true, false, NULL, B'101', X'ff'",
		"CREATE TEMP TABLE t (a int) ; CREATE UNLOGGED TABLE u (b int)",
		"CREATE TABLE p (a int, b int) PARTITION BY RANGE (a); CREATE INDEX ON p (a) INCLUDE (b) WITH (fillfactor = 70)",
		"ALTER TABLE t ALTER COLUMN a SET STATISTICS 100, ALTER COLUMN a TYPE bigint USING a::bigint",
		"SELECT * FROM t TABLESAMPLE SYSTEM (10) REPEATABLE (1), LATERAL ROWS FROM (f(1), g(2)) WITH ORDINALITY AS x(a, b)",
		"GRANT SELECT (a, b) ON t TO r WITH GRANT OPTION",
		"SELECT a FROM t FOR UPDATE OF t SKIP LOCKED",
		"FETCH BACKWARD 9223372036854775807 FROM c",
		"SELECT 'a' \\",
	} {
		requireSameJSON(t, s)
	}
}

// FuzzJSONOut checks the two writers agree on any input.
func FuzzJSONOut(f *testing.F) {
	for _, s := range corpusTexts(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		if len(sql) > maxFuzzLen {
			return
		}
		requireSameJSON(t, sql)
	})
}

// TestJSONOutGenerated checks that jsonout_gen.c is what gen/jsonout.sh
// makes from the pinned pg_query_go: a changed pin with a stale file
// fails here, not in a layout mismatch at run time.
func TestJSONOutGenerated(t *testing.T) {
	out := filepath.Join(t.TempDir(), "jsonout_gen.c")
	cmd := exec.Command("sh", "gen/jsonout.sh", out)
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", b)
	want, err := os.ReadFile(out)
	require.NoError(t, err)
	got, err := os.ReadFile("jsonout_gen.c")
	require.NoError(t, err)
	// Compared without whitespace, which another preprocessor lays out
	// differently.
	require.True(t, strings.Join(strings.Fields(string(want)), "") == strings.Join(strings.Fields(string(got)), ""),
		"jsonout_gen.c is stale: run go generate")
}
