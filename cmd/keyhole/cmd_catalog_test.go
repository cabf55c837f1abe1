package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/internal/testpg"
)

// catalogCLISQL is a small upstream schema with labels in comments.
const catalogCLISQL = `
CREATE SCHEMA app;
CREATE TABLE app.customers (id int, email text, ssn text, note text);
COMMENT ON COLUMN app.customers.email IS 'keyhole: pii.email pii.contact';
COMMENT ON COLUMN app.customers.ssn IS 'keyhole: PII.SSN';
CREATE TABLE app.secrets (k text, v text);
COMMENT ON TABLE app.secrets IS 'keyhole: secret';
CREATE VIEW app.emails AS SELECT id, email FROM app.customers;
CREATE SEQUENCE app.ids;
CREATE TABLE "Sales"(x int);
`

// TestCatalogCLI runs the catalog and labels commands against a real
// Postgres.
func TestCatalogCLI(t *testing.T) {
	t.Parallel()
	t.Run("catalog dump", func(t *testing.T) { t.Parallel(); testCatalogDumpCLI(t) })
	t.Run("labels", func(t *testing.T) { t.Parallel(); testLabelsCLI(t) })
}

func testCatalogDumpCLI(t *testing.T) {
	db := testpg.New(t, catalogCLISQL)

	t.Run("to file", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "cat.json")
		r := keyhole(t, "", "catalog", "dump", "--dsn", db.DSN, "-o", out)
		require.Equal(t, 0, r.Code, r.Stderr)
		assert.Empty(t, r.Stdout)
		assert.Contains(t, r.Stderr, "app.customers.ssn", "bad label is warned about")
		c, err := catalog.ReadFile(out)
		require.NoError(t, err)
		assert.Equal(t, db.Name, c.Database)
		assert.Equal(t, []string{"pii.contact", "pii.email"}, c.Relation("app", "customers").Column("email").Labels)
	})

	t.Run("to stdout", func(t *testing.T) {
		r := keyhole(t, "", "catalog", "dump", "--dsn", db.DSN)
		require.Equal(t, 0, r.Code, r.Stderr)
		c, err := catalog.Load(strings.NewReader(r.Stdout))
		require.NoError(t, err)
		assert.NotNil(t, c.Relation("public", "Sales"))
	})

	t.Run("connect error does not echo the password", func(t *testing.T) {
		const pw = "Hunter2-topsecret"
		dsn := testpg.WithUser(testpg.WithDatabase(testpg.AdminDSN(), "keyhole_no_such_db"), "postgres", pw)
		r := keyhole(t, "", "catalog", "dump", "--dsn", dsn)
		assert.Equal(t, 2, r.Code)
		assert.Contains(t, r.Stderr, "keyhole catalog dump:")
		assert.NotContains(t, r.Stderr, pw)
		assert.Empty(t, r.Stdout)
	})

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"no subcommand", []string{"catalog"}},
		{"unknown subcommand", []string{"catalog", "load"}},
		{"no dsn", []string{"catalog", "dump"}},
		{"bad flag", []string{"catalog", "dump", "--nope"}},
		{"stray argument", []string{"catalog", "dump", "--dsn", db.DSN, "extra"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := keyhole(t, "", tc.args...)
			assert.Equal(t, 2, r.Code)
			assert.Contains(t, r.Stderr, "usage: keyhole catalog dump")
		})
	}
}

type catalogLabelsJSON struct {
	Columns []struct {
		Schema, Table, Column, Kind, Type string
		Labels                            []string
		Sources                           []struct{ Label, Source, On string }
	}
	Warnings []string
}

func (l catalogLabelsJSON) names() []string {
	var out []string
	for _, c := range l.Columns {
		out = append(out, c.Schema+"."+c.Table+"."+c.Column)
	}
	return out
}

func testLabelsCLI(t *testing.T) {
	db := testpg.New(t, catalogCLISQL)
	dir := t.TempDir()
	catFile := filepath.Join(dir, "cat.json")
	r := keyhole(t, "", "catalog", "dump", "--dsn", db.DSN, "-o", catFile)
	require.Equal(t, 0, r.Code, r.Stderr)

	t.Run("json from dsn", func(t *testing.T) {
		r := keyhole(t, "", "labels", "--dsn", db.DSN, "--json")
		require.Equal(t, 0, r.Code, r.Stderr)
		var got catalogLabelsJSON
		require.NoError(t, json.Unmarshal([]byte(r.Stdout), &got))
		assert.Equal(t, []string{
			"app.customers.id", "app.customers.email", "app.customers.ssn", "app.customers.note",
			"app.emails.id", "app.emails.email",
			"app.secrets.k", "app.secrets.v",
			"public.Sales.x",
		}, got.names(), "non-system relations only, no sequences, columns in table order")
		email := got.Columns[1]
		assert.Equal(t, []string{"pii.contact", "pii.email"}, email.Labels)
		assert.Len(t, email.Sources, 2)
		for _, s := range email.Sources {
			assert.Equal(t, "comment", s.Source)
			assert.Equal(t, "column", s.On)
		}
		secretK := got.Columns[6]
		assert.Equal(t, []string{"secret"}, secretK.Labels)
		require.Len(t, secretK.Sources, 1)
		assert.Equal(t, "table", secretK.Sources[0].On)
		assert.Equal(t, []string{catalog.InvalidLabel}, got.Columns[2].Labels)
		require.Len(t, got.Warnings, 1)
		assert.Contains(t, got.Warnings[0], `"PII.SSN"`)
	})

	t.Run("unlabeled from catalog file", func(t *testing.T) {
		r := keyhole(t, "", "labels", "--catalog", catFile, "--unlabeled")
		require.Equal(t, 0, r.Code, r.Stderr)
		var listed []string
		lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
		require.GreaterOrEqual(t, len(lines), 2)
		assert.Equal(t, "COLUMN", strings.Fields(lines[0])[0])
		for _, l := range lines[1 : len(lines)-1] {
			listed = append(listed, strings.Fields(l)[0])
		}
		assert.Equal(t, []string{"app.customers.id", "app.customers.note", "app.emails.id", "app.emails.email", "public.Sales.x"}, listed)
		assert.Equal(t, "5 unlabeled columns", lines[len(lines)-1])
	})

	t.Run("policy labels", func(t *testing.T) {
		policy := filepath.Join(dir, "policy.yaml")
		require.NoError(t, os.WriteFile(policy, []byte(`
labels:
  app.customers.email: [pii.email]
  app.customers.note: [pii.free_text]
  app.emails: [pii.contact]
`), 0o600))
		r := keyhole(t, "", "labels", "--catalog", catFile, "--policy", policy, "--json")
		require.Equal(t, 0, r.Code, r.Stderr)
		var got catalogLabelsJSON
		require.NoError(t, json.Unmarshal([]byte(r.Stdout), &got))
		byName := map[string]int{}
		for i, n := range got.names() {
			byName[n] = i
		}
		email := got.Columns[byName["app.customers.email"]]
		assert.Equal(t, []string{"pii.contact", "pii.email"}, email.Labels)
		assert.Contains(t, email.Sources, struct{ Label, Source, On string }{"pii.email", "policy", "column"})
		assert.Contains(t, email.Sources, struct{ Label, Source, On string }{"pii.email", "comment", "column"})
		assert.Equal(t, []string{"pii.free_text"}, got.Columns[byName["app.customers.note"]].Labels)
		viewID := got.Columns[byName["app.emails.id"]]
		assert.Equal(t, []string{"pii.contact"}, viewID.Labels)
		assert.Equal(t, []struct{ Label, Source, On string }{{"pii.contact", "policy", "table"}}, viewID.Sources)

		r = keyhole(t, "", "labels", "--catalog", catFile, "--policy", policy, "--unlabeled")
		require.Equal(t, 0, r.Code, r.Stderr)
		assert.NotContains(t, r.Stdout, "app.customers.note")
		assert.NotContains(t, r.Stdout, "app.emails.")
		assert.Contains(t, r.Stdout, "app.customers.id")
	})

	t.Run("policy naming a missing column is an error", func(t *testing.T) {
		policy := filepath.Join(dir, "stale.yaml")
		require.NoError(t, os.WriteFile(policy, []byte("labels:\n  app.customers.phone: [pii.phone]\n"), 0o600))
		r := keyhole(t, "", "labels", "--catalog", catFile, "--policy", policy)
		assert.Equal(t, 2, r.Code)
		assert.Contains(t, r.Stderr, "app.customers")
		assert.Empty(t, r.Stdout)
	})

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"no source", []string{"labels"}},
		{"two sources", []string{"labels", "--dsn", db.DSN, "--catalog", catFile}},
		{"bad flag", []string{"labels", "--catalog", catFile, "--nope"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := keyhole(t, "", tc.args...)
			assert.Equal(t, 2, r.Code)
			assert.Contains(t, r.Stderr, "usage: keyhole labels")
		})
	}

	t.Run("bad catalog file", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.json")
		require.NoError(t, os.WriteFile(bad, []byte(`{"format":4,"dialect":"oracle"}`), 0o600))
		r := keyhole(t, "", "labels", "--catalog", bad)
		assert.Equal(t, 2, r.Code)
		assert.Contains(t, r.Stderr, "dialect")
	})

	t.Run("catalog file of an older keyhole", func(t *testing.T) {
		old := filepath.Join(dir, "old.json")
		require.NoError(t, os.WriteFile(old, []byte(`{"dialect":"mysql","relations":{},"functions":{}}`), 0o600))
		r := keyhole(t, "", "labels", "--catalog", old)
		assert.Equal(t, 2, r.Code)
		assert.Contains(t, r.Stderr, "dump the catalog again")
	})
}
