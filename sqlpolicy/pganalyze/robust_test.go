package pganalyze_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// TestExponentialCTE: CTEs that each join the previous one several times
// multiply columns; the walker's budget refuses the statement quickly.
func TestExponentialCTE(t *testing.T) {
	t.Parallel()
	a := analyzer(t)
	var b strings.Builder
	b.WriteString("WITH c0 AS (SELECT * FROM customers)")
	for i := 1; i <= 8; i++ {
		b.WriteString(", c" + itoa(i) + " AS (SELECT * FROM ")
		for j := 0; j < 8; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("c" + itoa(i-1) + " x" + itoa(j))
		}
		b.WriteString(")")
	}
	b.WriteString(" SELECT * FROM c8")
	start := time.Now()
	acc := a.Analyze(b.String(), nil)
	// Without the budget the walk visits 8^8 copies of customers and runs
	// for hours; with it, well under a second alone and ~10 s under -race.
	// The bound is loose so a loaded CI machine does not fail it.
	assert.Less(t, time.Since(start), 2*time.Minute, "the budget must stop the walk")
	require.Len(t, acc.Statements, 1)
	assert.Contains(t, problemCodes(acc.Statements[0].Problems), string(sqlpolicy.ProblemTooComplex))
}

func itoa(i int) string { return string(rune('0' + i)) }

// TestConcurrent analyzes view queries from many goroutines (the view
// cache is shared); run with -race.
func TestConcurrent(t *testing.T) {
	t.Parallel()
	a := analyzer(t)
	want := colStrings(a.Analyze("SELECT name FROM contact_names", nil).Statements[0].Columns)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				st := a.Analyze("SELECT name FROM contact_names", nil).Statements[0]
				assert.Equal(t, want, colStrings(st.Columns))
			}
		}()
	}
	wg.Wait()
}

// TestNeverEmpty: every statement has a verb or a problem, whatever the
// input.
func TestNeverEmpty(t *testing.T) {
	t.Parallel()
	a := analyzer(t)
	for _, sql := range []string{
		"", ";", "-- only a comment", "SELECT", "SELECT 1;;SELECT 2", "CREATE AGGREGATE a (int) (sfunc = int4pl, stype = int)",
		"ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO public", "IMPORT FOREIGN SCHEMA s FROM SERVER x INTO public",
		"SELECT JSON_OBJECT('a' VALUE 1)", "SELECT * FROM JSON_TABLE('[]', '$[*]' COLUMNS (a int PATH '$.a')) j",
		"CREATE TABLE x AS EXECUTE p", "SECURITY LABEL ON TABLE customers IS 'x'",
	} {
		acc := a.Analyze(sql, nil)
		for _, st := range acc.Statements {
			assert.True(t, st.Verb != "" || len(st.Problems) > 0, "%q: %+v", sql, st)
			assert.NotEmpty(t, st.Command, sql)
		}
	}
}
