package pganalyze_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/internal/testpg"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

// schemaSQL is the test database. The catalog is loaded from it once; the
// database itself is dropped when the first test that loaded it ends.
const schemaSQL = `
CREATE TABLE customers (id serial PRIMARY KEY, name text, email text, ssn text, created_at timestamptz DEFAULT now());
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int REFERENCES customers(id), total numeric, status text, created_at timestamptz);
CREATE TABLE products (id int PRIMARY KEY, name text, price numeric);
CREATE TABLE secrets (id int PRIMARY KEY, value text);
CREATE TABLE addresses (customer_id int, name text, city text);
CREATE TABLE docs (id int, body jsonb, tags text[]);
CREATE SCHEMA other;
CREATE TABLE other.customers (id int, note text);
CREATE SEQUENCE order_seq;
CREATE VIEW customer_contacts AS SELECT id, name, email FROM customers;
CREATE VIEW customer_safe AS SELECT id, name, created_at FROM customers;
CREATE VIEW customers_with_ssn AS SELECT id, name FROM customers WHERE ssn IS NOT NULL;
CREATE VIEW contact_names AS SELECT name, email FROM customer_contacts;
CREATE VIEW order_summary AS SELECT c.name AS customer, o.total FROM orders o JOIN customers c ON c.id = o.customer_id;
CREATE VIEW masked AS SELECT id, lower(email) AS email_lc FROM customers;
CREATE FUNCTION mask(text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT '***' $$;
CREATE FUNCTION customer_rows() RETURNS SETOF customers LANGUAGE sql AS $$ SELECT * FROM customers $$;
CREATE PROCEDURE touch(int) LANGUAGE sql AS $$ SELECT 1 $$;
CREATE TABLE stamped (id int GENERATED ALWAYS AS IDENTITY, ticket bigint DEFAULT nextval('order_seq'), note text DEFAULT mask('x'), at timestamptz DEFAULT now());
`

var (
	catOnce sync.Once
	cat     *catalog.Catalog
	catErr  error
)

// testCatalog loads the catalog of the test schema from a real Postgres.
func testCatalog(t testing.TB) *catalog.Catalog {
	t.Helper()
	catOnce.Do(func() {
		db := testpg.New(t, schemaSQL)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cat, catErr = catalog.LoadPostgresDSN(ctx, db.DSN)
	})
	require.NoError(t, catErr)
	require.NotNil(t, cat)
	return cat
}

var (
	anOnce sync.Once
	an     *pganalyze.Analyzer
)

func analyzer(t testing.TB) *pganalyze.Analyzer {
	c := testCatalog(t)
	anOnce.Do(func() { an = pganalyze.New(c, pganalyze.Options{}) })
	return an
}

// one analyzes sql, which must hold exactly one statement.
func one(t *testing.T, sql string) sqlpolicy.Statement {
	t.Helper()
	acc := analyzer(t).Analyze(sql, nil)
	require.Len(t, acc.Statements, 1, "statements of %q", sql)
	return acc.Statements[0]
}

// colStrings renders column refs as "schema.table.column", with ":w" for
// writes and "@schema.view" for columns reached through a view; sorted.
func colStrings(cs []sqlpolicy.ColumnRef) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		s := c.Rel.String() + "." + c.Column
		if c.Mode == sqlpolicy.Write {
			s += ":w"
		}
		if c.Via != (sqlpolicy.Rel{}) {
			s += "@" + c.Via.String()
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func tableStrings(ts []sqlpolicy.TableRef) []string {
	out := make([]string, 0, len(ts))
	for _, t := range ts {
		s := t.Rel.String()
		if t.Mode == sqlpolicy.Write {
			s += ":w"
		}
		if t.Via != (sqlpolicy.Rel{}) {
			s += "@" + t.Via.String()
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func problemCodes(ps []sqlpolicy.Problem) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, string(p.Code))
	}
	sort.Strings(out)
	return out
}

func funcStrings(fs []sqlpolicy.FuncRef) []string {
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		out = append(out, f.String())
	}
	sort.Strings(out)
	return out
}

// cols is a shorthand: cols("customers", "id", "ssn") → public.customers.id, ...
func cols(table string, names ...string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = fmt.Sprintf("public.%s.%s", table, n)
	}
	return out
}

func join(lists ...[]string) []string {
	out := []string{}
	for _, l := range lists {
		out = append(out, l...)
	}
	sort.Strings(out)
	return out
}
