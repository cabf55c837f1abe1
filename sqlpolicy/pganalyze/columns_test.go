package pganalyze_test

import (
	"bytes"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

type columnCase struct {
	Name    string   `yaml:"name"`
	SQL     string   `yaml:"sql"`
	Columns []string `yaml:"columns"`
}

// TestColumns checks the exact columns found for each construct in
// testdata/columns.yaml: a read missed there is a label leak.
func TestColumns(t *testing.T) {
	t.Parallel()
	analyzer(t)
	b, err := os.ReadFile("testdata/columns.yaml")
	require.NoError(t, err)
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var cases []columnCase
	require.NoError(t, dec.Decode(&cases))
	require.NotEmpty(t, cases)
	seen := map[string]bool{}
	for _, tc := range cases {
		require.False(t, seen[tc.Name], "duplicate case name %q", tc.Name)
		seen[tc.Name] = true
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			st := one(t, tc.SQL)
			assert.Empty(t, st.Problems, "problems")
			assert.Equal(t, join(tc.Columns), colStrings(st.Columns), tc.SQL)
			assert.NotEmpty(t, st.Verb)
		})
	}
}
