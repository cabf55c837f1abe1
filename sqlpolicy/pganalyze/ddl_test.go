package pganalyze_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// TestDDLContent: DDL runs code and reads data of its own. ALTER COLUMN
// ... TYPE ... USING evaluates its expression on every row (and an error
// quotes the value: invalid input syntax for type integer: "078-05-1120"),
// a CHECK constraint or an index expression is evaluated on every row when
// it is added, a default or a USING expression may call any function, and
// a view's query is what later reads of it run (keyhole's catalog only
// learns the new definition at the next reload). So the columns and
// functions inside a DDL statement count like any statement's, and DDL on
// an existing relation writes every column of it: it can read them
// through errors, drop them, or rename and re-comment them out from under
// the labels keyed by their names.
func TestDDLContent(t *testing.T) {
	t.Parallel()
	analyzer(t)
	cases := []struct {
		name     string
		sql      string
		cols     []string // nil: not checked; else must be contained
		funcs    []string // must be contained
		problems []string // must be contained
		exact    bool     // cols is the whole list
	}{
		{name: "alter type using labelled column", sql: "ALTER TABLE customers ALTER COLUMN ssn TYPE int USING ssn::int",
			cols: []string{"public.customers.ssn:w", "public.customers.email:w"}},
		{name: "rename labelled column", sql: "ALTER TABLE customers RENAME COLUMN ssn TO x",
			cols: []string{"public.customers.ssn:w"}},
		{name: "rename relation", sql: "ALTER TABLE customers RENAME TO c2",
			cols: []string{"public.customers.ssn:w"}},
		{name: "check constraint", sql: "ALTER TABLE customers ADD CONSTRAINT c CHECK (ssn::int > 0)",
			cols: []string{"public.customers.ssn:w"}},
		{name: "index expression", sql: "CREATE INDEX ON customers ((email::int))",
			cols: []string{"public.customers.email:w"}},
		{name: "grant", sql: "GRANT SELECT ON customers TO PUBLIC",
			cols: []string{"public.customers.ssn:w"}},
		{name: "truncate", sql: "TRUNCATE customers",
			cols: []string{"public.customers.ssn:w"}},
		{name: "comment on column is that column", sql: "COMMENT ON COLUMN customers.ssn IS NULL",
			cols: []string{"public.customers.ssn:w"}, exact: true},
		{name: "comment on table", sql: "COMMENT ON TABLE customers IS NULL",
			cols: []string{"public.customers.ssn:w"}},
		{name: "using dynamic sql", sql: "ALTER TABLE addresses ALTER COLUMN city TYPE text USING query_to_xml('select ssn from customers', true, true, '')::text",
			problems: []string{"dynamic_sql"}},
		{name: "using server file", sql: "ALTER TABLE addresses ALTER COLUMN city TYPE int USING pg_read_file('/etc/hostname')::int",
			problems: []string{"file_access"}},
		{name: "using user function", sql: "ALTER TABLE addresses ALTER COLUMN city TYPE text USING mask(city)",
			funcs: []string{"public.mask"}},
		{name: "index user function", sql: "CREATE INDEX ON addresses ((mask(city)))",
			funcs: []string{"public.mask"}},
		{name: "new table default", sql: "CREATE TABLE t2 (a text DEFAULT pg_read_file('/etc/hostname'))",
			problems: []string{"file_access"}},
		{name: "set default", sql: "ALTER TABLE addresses ALTER COLUMN city SET DEFAULT mask('x')",
			funcs: []string{"public.mask"}},
		{name: "trigger function", sql: "CREATE TRIGGER t BEFORE INSERT ON addresses FOR EACH ROW EXECUTE FUNCTION mask()",
			funcs: []string{"public.mask"}},
		{name: "view query", sql: "CREATE VIEW v2 AS SELECT ssn AS a FROM customers",
			cols: []string{"public.customers.ssn"}},
		{name: "replace view query", sql: "CREATE OR REPLACE VIEW customer_safe AS SELECT id, ssn AS name, created_at FROM customers",
			cols: []string{"public.customers.ssn"}},
		// Another relation a DDL names is changed by it: attached as a
		// partition (whose rows the parent's scans then return, under
		// the parent's name the catalog knows without the partition) or
		// made a parent. A foreign key reads the referenced columns; LIKE
		// copies the definition only.
		{name: "attach partition", sql: "ALTER TABLE addresses ATTACH PARTITION customers FOR VALUES FROM (0) TO (100)",
			cols: []string{"public.customers.ssn:w", "public.addresses.city:w"}, problems: []string{"unsupported"}},
		{name: "inherits", sql: "CREATE TABLE t3 () INHERITS (customers)",
			cols: []string{"public.customers.ssn:w"}},
		{name: "alter inherit", sql: "ALTER TABLE addresses INHERIT customers",
			cols: []string{"public.customers.ssn:w"}, problems: []string{"unsupported"}},
		{name: "partition of", sql: "CREATE TABLE t3 PARTITION OF customers FOR VALUES FROM (0) TO (100)",
			cols: []string{"public.customers.ssn:w"}},
		{name: "foreign key", sql: "CREATE TABLE t3 (a int REFERENCES customers (id))",
			cols: []string{"public.customers.id"}, exact: true},
		{name: "like", sql: "CREATE TABLE t3 (LIKE customers)",
			cols: []string{}, exact: true},
		// TRUNCATE ... CASCADE empties the referencing tables too.
		{name: "truncate cascade", sql: "TRUNCATE customers CASCADE",
			cols: []string{"public.orders.total:w"}},
		// A relation renamed or moved onto a name the catalog knows
		// would be read by statements decided on the known one.
		{name: "rename onto known name", sql: "ALTER TABLE addresses RENAME TO orders",
			problems: []string{"unsupported"}},
		{name: "set schema onto known name", sql: "ALTER TABLE other.customers SET SCHEMA public",
			problems: []string{"unsupported"}},
		// A column an expression names is read: USING b copies b into
		// the altered column, a CHECK on it is an oracle on its values.
		{name: "using reads its columns", sql: "ALTER TABLE addresses ALTER COLUMN city TYPE text USING name",
			cols: []string{"public.addresses.name"}},
		{name: "check reads its columns", sql: "ALTER TABLE addresses ADD CONSTRAINT c CHECK (name < 'm')",
			cols: []string{"public.addresses.name"}},
		{name: "index expression reads its columns", sql: "CREATE INDEX ON addresses (lower(name))",
			cols: []string{"public.addresses.name"}},
		{name: "trigger when reads its columns", sql: "CREATE TRIGGER t BEFORE UPDATE ON addresses FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name) EXECUTE FUNCTION mask()",
			cols: []string{"public.addresses.name"}},
		{name: "rename column onto known column", sql: "ALTER TABLE addresses RENAME COLUMN city TO name",
			problems: []string{"unsupported"}},
		{name: "create foreign table", sql: "CREATE FOREIGN TABLE t3 (a text) SERVER files OPTIONS (program 'id')",
			problems: []string{"unsupported"}},
		{name: "alter foreign table options", sql: "ALTER FOREIGN TABLE addresses OPTIONS (SET filename '/etc/passwd')",
			problems: []string{"unsupported"}},
		{name: "policy subquery", sql: "CREATE POLICY p ON addresses USING (EXISTS (SELECT 1 FROM customers WHERE ssn = 'x'))",
			problems: []string{"unsupported"}},
		{name: "rule", sql: "CREATE RULE \"_RETURN\" AS ON SELECT TO addresses DO INSTEAD SELECT customer_id, ssn AS name, email AS city FROM customers",
			problems: []string{"unsupported"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := one(t, c.sql)
			got := colStrings(st.Columns)
			if c.exact {
				assert.Equal(t, c.cols, got)
			}
			for _, want := range c.cols {
				assert.Contains(t, got, want)
			}
			fs := funcStrings(st.Functions)
			for _, want := range c.funcs {
				assert.Contains(t, fs, want)
			}
			ps := problemCodes(st.Problems)
			for _, want := range c.problems {
				assert.Contains(t, ps, want, "problems: %+v", st.Problems)
			}
		})
	}
}

// TestDDLRename: renaming or moving a relation or a column is refused,
// whatever the new name: the catalog is read again after DDL, and the
// data would then be read under the rules of its new name.
func TestDDLRename(t *testing.T) {
	t.Parallel()
	analyzer(t)
	for _, sql := range []string{
		"ALTER TABLE addresses RENAME TO addresses_old",
		"ALTER TABLE addresses RENAME COLUMN city TO town",
		"ALTER TABLE addresses SET SCHEMA other",
	} {
		st := one(t, sql)
		assert.Contains(t, problemCodes(st.Problems), string(sqlpolicy.ProblemUnsupported), sql)
	}
	// An index's or a constraint's name is no policy's business.
	st := one(t, "ALTER INDEX addresses_pkey RENAME TO addresses_pk")
	assert.NotContains(t, problemCodes(st.Problems), string(sqlpolicy.ProblemUnsupported))
}
