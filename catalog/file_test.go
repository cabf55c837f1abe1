package catalog_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/internal/testpg"
)

func TestFileRoundTrip(t *testing.T) {
	t.Parallel()
	db := testpg.New(t, shopSQL)
	c, err := catalog.LoadPostgresDSN(ctxT(t), db.DSN)
	require.NoError(t, err)

	path := filepath.Join(t.TempDir(), "catalog.json")
	require.NoError(t, c.WriteFile(path))
	got, err := catalog.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, c, got)

	// Saving is deterministic, so a dump diffs cleanly.
	var a, b bytes.Buffer
	require.NoError(t, c.Save(&a))
	require.NoError(t, got.Save(&b))
	assert.Equal(t, a.String(), b.String())
	onDisk, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, a.String(), string(onDisk))

	// What the loader found survives: labels, kinds, order, mixed case.
	assert.Equal(t, []string{"pii.contact", "pii.email"}, got.Relation("app", "customers").Column("email").Labels)
	assert.Equal(t, []string{"Amount", "lower"}, columnNames(got.Relation("Sales", "MixedCase")))
	assert.True(t, got.Function("app", "lookup").SecurityDefiner)
	assert.NotEmpty(t, got.SchemaUsage)
	assert.NotEmpty(t, got.Login)

	// Whether sessions share the login is the loader's to say, never the
	// file's: a catalog read back knows nothing of a session's USAGE.
	c.SessionsShareLogin = true
	require.NoError(t, c.WriteFile(path))
	got, err = catalog.ReadFile(path)
	require.NoError(t, err)
	assert.False(t, got.SessionsShareLogin)
	_, known := got.SchemaSearched("app")
	assert.False(t, known)
}

// A catalog saved before schema_usage existed knows no schema's USAGE:
// every entry of a session's path may or may not be searched.
func TestLoadWithoutSchemaUsage(t *testing.T) {
	t.Parallel()
	c, err := catalog.Load(strings.NewReader(minimal))
	require.NoError(t, err)
	assert.Nil(t, c.SchemaUsage)
	c.SessionsShareLogin = true
	for _, s := range []string{"public", "no_such_schema"} {
		_, known := c.SchemaSearched(s)
		assert.False(t, known, s)
	}
	searched, known := c.SchemaSearched("pg_catalog")
	assert.True(t, searched && known)
}

const minimal = `{"format":4,"dialect":"postgres","database":"shop","search_path":["pg_catalog","public"],
 "relations":{"public":{"t":{"schema":"public","name":"t","kind":"table","columns":[{"name":"a","type":"integer","labels":["pii.email"]}]}}},
 "functions":{"public":{"f":{"schema":"public","name":"f","kind":"function","volatility":"stable"}}}}`

func TestLoadStrict(t *testing.T) {
	t.Parallel()
	c, err := catalog.Load(strings.NewReader(minimal))
	require.NoError(t, err, "the base document must load for the cases below to mean anything")
	assert.Equal(t, []string{"pii.email"}, c.Relation("public", "t").Column("a").Labels)

	for _, tc := range []struct {
		name, old, new string
		invalid        bool // want ErrInvalid (not a decode error)
	}{
		{"unknown top-level field", `"database":"shop"`, `"database":"shop","extra":1`, false},
		{"unknown column field", `"type":"integer"`, `"type":"integer","pii":true`, false},
		{"field name in another case", `"dialect"`, `"Dialect"`, false},
		{"column field in another case", `"type":"integer"`, `"Type":"integer"`, false},
		{"duplicate key", `"database":"shop"`, `"database":"shop","database":"other"`, false},
		{"duplicate relation", `"public":{"t":{`, `"public":{"t":null,"t":{`, false},
		{"wrong type", `"database":"shop"`, `"database":7`, false},
		{"trailing data", `"stable"}}}}`, `"stable"}}}} {}`, false},
		{"not json", `{"format"`, `{format`, false},
		{"bad dialect", `"postgres"`, `"oracle"`, true},
		{"missing dialect", `"dialect":"postgres",`, ``, true},
		{"bad column label", `"pii.email"`, `"PII.email"`, true},
		{"bad relation label", `"kind":"table"`, `"kind":"table","labels":["pii.*"]`, true},
		{"bad relation kind", `"kind":"table"`, `"kind":"index"`, true},
		{"key disagrees with name", `"name":"t"`, `"name":"u"`, true},
		{"key disagrees with schema", `"schema":"public","name":"t"`, `"schema":"other","name":"t"`, true},
		{"null relation", `"t":{"schema"`, `"u":null,"t":{"schema"`, true},
		{"duplicate column", `"labels":["pii.email"]}]`, `"labels":["pii.email"]},{"name":"a"}]`, true},
		{"unnamed column", `"labels":["pii.email"]}]`, `"labels":["pii.email"]},{"type":"text"}]`, true},
		{"bad function kind", `"kind":"function"`, `"kind":"trigger"`, true},
		{"bad volatility", `"stable"`, `"sometimes"`, true},
		{"no format (saved before formats)", `"format":4,`, ``, false},
		{"older format", `"format":4`, `"format":3`, false},
		{"newer format", `"format":4`, `"format":5`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doc := strings.Replace(minimal, tc.old, tc.new, 1)
			require.NotEqual(t, minimal, doc, "case did not change the document")
			_, err := catalog.Load(strings.NewReader(doc))
			require.Error(t, err)
			if tc.invalid {
				assert.ErrorIs(t, err, catalog.ErrInvalid)
			} else {
				assert.NotErrorIs(t, err, catalog.ErrInvalid)
			}
		})
	}
}

func TestReadFileMissing(t *testing.T) {
	t.Parallel()
	_, err := catalog.ReadFile(filepath.Join(t.TempDir(), "nope.json"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestSaveRefusesInvalid(t *testing.T) {
	t.Parallel()
	c := &catalog.Catalog{Dialect: "postgres", Relations: map[string]map[string]*catalog.Relation{
		"public": {"t": {Schema: "public", Name: "t", Kind: catalog.KindTable, Labels: []string{"Bad Label"}}},
	}}
	path := filepath.Join(t.TempDir(), "c.json")
	assert.ErrorIs(t, c.WriteFile(path), catalog.ErrInvalid)
	_, err := os.Stat(path)
	assert.ErrorIs(t, err, os.ErrNotExist, "nothing written")
}
