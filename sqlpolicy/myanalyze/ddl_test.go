package myanalyze_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
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
