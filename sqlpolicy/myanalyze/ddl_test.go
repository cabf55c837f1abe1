package myanalyze_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDDLWrites: DDL on an existing table writes every column of it (an
// ALTER rewrites the rows, MODIFY or CHANGE without COMMENT drops a
// column's comment labels, DROP and TRUNCATE destroy the data), so a
// column label the role denies refuses it; a table that does not exist
// yet has no columns to write. Renaming a table or a column is refused
// whatever the names: the policy's rules name them, and the catalog is
// read again after DDL; so is replacing a comment that carries labels.
func TestDDLWrites(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, sql string
		want      []string
		absent    []string
	}{
		{"alter writes every column", "ALTER TABLE customers MODIFY email TEXT COMMENT 'no label'",
			[]string{"T write  customers", "C write  customers.email", "C write  customers.ssn", "C write  customers.id"}, []string{"P unsupported"}},
		{"create index writes every column", "CREATE INDEX by_name ON customers (name)",
			[]string{"C write  customers.email"}, nil},
		{"drop writes every column", "DROP TABLE customers", []string{"C write  customers.ssn"}, nil},
		{"truncate writes every column", "TRUNCATE TABLE orders", []string{"C write  orders.total"}, nil},
		{"a new table has no columns yet", "CREATE TABLE fresh (id INT)", []string{"T write  fresh"}, []string{"P unsupported"}},
		{"change keeping the name", "ALTER TABLE orders CHANGE total total DECIMAL(12,2)", nil, []string{"P unsupported"}},
		{"rename table", "RENAME TABLE orders TO o2", []string{"P unsupported"}, nil},
		{"alter rename table", "ALTER TABLE orders RENAME TO o2", []string{"P unsupported"}, nil},
		{"rename column", "ALTER TABLE orders RENAME COLUMN total TO amount", []string{"P unsupported"}, nil},
		{"change renames the column", "ALTER TABLE orders CHANGE total amount DECIMAL(12,2)", []string{"P unsupported"}, nil},
		// phone's comment carries pii.phone: a new definition without it
		// would take the label away from every role.
		{"modify drops a label comment", "ALTER TABLE customers MODIFY phone VARCHAR(40)", []string{"P unsupported"}, nil},
		{"change drops a label comment", "ALTER TABLE customers CHANGE phone phone VARCHAR(40) COMMENT 'x'", []string{"P unsupported"}, nil},
		{"modify of a column without labels", "ALTER TABLE customers MODIFY name VARCHAR(80)", nil, []string{"P unsupported"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := strings.Split(accessSummary(analyze(t, tc.sql)), "\n")
			for _, l := range tc.want {
				assert.Contains(t, got, l, tc.sql)
			}
			for _, l := range tc.absent {
				assert.NotContains(t, got, l, tc.sql)
			}
		})
	}
}

// TestDDLOtherTables: a table definition that names another table reads
// it. A foreign key is checked against the referenced key at once for
// the rows the table has or gets (CREATE TABLE ... SELECT 2 AS x,
// FOREIGN KEY (x) REFERENCES secrets (id) fails with 1452 exactly when
// secrets has no id 2; ALTER TABLE ... ADD FOREIGN KEY checks every
// row), and MariaDB asks no privilege on the referenced table: its key
// columns are read with Via = the defined table, like the checks of an
// existing foreign key. EXCHANGE PARTITION ... WITH TABLE and a MERGE
// table's UNION=(...) move or show the other table's rows: DDL on it and
// a read of all its columns.
func TestDDLOtherTables(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, sql string
		want      []string
		absent    []string
	}{
		{"create select checks a foreign key", "CREATE TABLE fresh (x INT, FOREIGN KEY (x) REFERENCES secrets (id)) SELECT 2 AS x",
			[]string{"T read  secrets via fresh", "C read  secrets.id via fresh"}, nil},
		{"column references", "CREATE TABLE fresh (x VARCHAR(200) REFERENCES customers (email))",
			[]string{"C read  customers.email via fresh"}, nil},
		{"alter adds a foreign key", "ALTER TABLE orders ADD CONSTRAINT f FOREIGN KEY (status) REFERENCES customers (ssn)",
			[]string{"C read  customers.ssn via orders"}, nil},
		{"alter adds a referencing column", "ALTER TABLE orders ADD COLUMN s INT REFERENCES secrets (id)",
			[]string{"C read  secrets.id via orders"}, nil},
		{"alter adds a foreign key among other clauses", "ALTER TABLE orders ADD COLUMN s INT, ADD FOREIGN KEY (s) REFERENCES secrets (id)",
			[]string{"C read  secrets.id via orders"}, nil},
		{"unknown referenced table", "CREATE TABLE fresh (x INT REFERENCES nosuch (id))", []string{"P unknown_table"}, nil},
		{"self reference", "CREATE TABLE fresh (x INT PRIMARY KEY, y INT, FOREIGN KEY (y) REFERENCES fresh (x))",
			nil, []string{"P unknown_table"}},
		{"exchange partition", "ALTER TABLE orders EXCHANGE PARTITION p0 WITH TABLE secrets",
			[]string{"T write  secrets", "C write  secrets.value", "C read  secrets.value"}, nil},
		{"merge union", "CREATE TABLE fresh (id INT) ENGINE=MERGE UNION=(secrets)",
			[]string{"T write  secrets", "C read  secrets.value"}, nil},
		{"alter to merge union", "ALTER TABLE orders ENGINE=MERGE UNION=(shop.secrets)",
			[]string{"C read  secrets.name"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := strings.Split(accessSummary(analyze(t, tc.sql)), "\n")
			for _, l := range tc.want {
				assert.Contains(t, got, l, tc.sql)
			}
			for _, l := range tc.absent {
				assert.NotContains(t, got, l, tc.sql)
			}
		})
	}
}

// TestCallMarksTheProcedure: CALL marks the procedure it invokes, the one
// function a call grant covers; a stored function in its arguments runs as
// in any expression and is decided by its own grant.
func TestCallMarksTheProcedure(t *testing.T) {
	a := analyze(t, "CALL shop.touch_order(shop.get_ssn(1))")
	require.Len(t, a.Statements, 1)
	require.Empty(t, a.Statements[0].Problems)
	var marked []string
	for _, f := range a.Statements[0].Functions {
		if f.Procedure {
			marked = append(marked, f.Name)
		}
	}
	assert.Equal(t, []string{"touch_order"}, marked)
	assert.Len(t, a.Statements[0].Functions, 2, "get_ssn is listed too")
}
