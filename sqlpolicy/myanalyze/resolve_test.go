package myanalyze_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/keyholedb/keyhole/internal/testmariadb"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/myanalyze"
)

// accessSummary renders an Access as sorted "mode action rel.column [via
// view]" lines, plus tables and problems, for exact comparisons.
func accessSummary(a *sqlpolicy.Access) string {
	var lines []string
	for _, st := range a.Statements {
		for _, t := range st.Tables {
			l := fmt.Sprintf("T %s %s %s", t.Mode, t.Action, t.Rel.Name)
			if t.Via.Name != "" {
				l += " via " + t.Via.Name
			}
			lines = append(lines, l)
		}
		for _, c := range st.Columns {
			l := fmt.Sprintf("C %s %s %s.%s", c.Mode, c.Action, c.Rel.Name, c.Column)
			if c.Via.Name != "" {
				l += " via " + c.Via.Name
			}
			lines = append(lines, l)
		}
		for _, p := range st.Problems {
			lines = append(lines, "P "+string(p.Code))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestResolution pins the Access of forms whose name resolution follows
// MariaDB's rules (each verified against MariaDB 10.11).
func TestResolution(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, sql string
		want      []string // lines that must be present
		absent    []string // lines that must not be
	}{
		{"using star order", "WITH c (a, b, x) AS (SELECT * FROM (SELECT id, name FROM customers) l JOIN (SELECT id, ssn FROM customers) r USING (id)) SELECT b FROM c",
			[]string{"C read  customers.name", "C read  customers.ssn"}, nil},
		{"view column via", "SELECT contact FROM customer_contacts",
			[]string{"C read  customer_contacts.contact", "C read  customers.email via customer_contacts", "T read  customers via customer_contacts"},
			[]string{"C read  customers.name via customer_contacts"}},
		{"derived shadows", "SELECT email FROM (SELECT name AS email FROM customers) d",
			[]string{"C read  customers.name"}, []string{"C read  customers.email"}},
		{"having binds outward", "SELECT c.id FROM customers c WHERE EXISTS (SELECT 1 FROM (SELECT name AS email FROM customers) d HAVING email > '')",
			[]string{"C read  customers.email", "C read  customers.name"}, nil},
		{"on sees operands only", "SELECT 1 FROM orders o, customers c JOIN products p ON p.id = o.id",
			[]string{"P unknown_column"}, nil},
		{"correlated outer", "SELECT id FROM customers WHERE EXISTS (SELECT 1 FROM orders WHERE status = email)",
			[]string{"C read  customers.email", "C read  orders.status"}, nil},
		{"derived sees no outer", "SELECT (SELECT x FROM (SELECT c.ssn AS x) d) FROM customers c",
			[]string{"P unknown_column"}, nil},
		{"replace", "REPLACE INTO orders (id, customer_id, product_id, total) VALUES (1, 1, 1, 1)",
			[]string{"T write delete orders", "T write insert orders", "C write insert orders.total"}, nil},
		{"upsert", "INSERT INTO orders (id, customer_id, product_id, total) VALUES (1, 1, 1, 1) ON DUPLICATE KEY UPDATE status = 'x'",
			[]string{"T write insert orders", "T write update orders", "C write update orders.status", "C write insert orders.id"},
			[]string{"C write insert orders.status"}},
		{"multi-table update", "UPDATE orders o JOIN customers c ON c.id = o.customer_id SET o.status = c.name",
			[]string{"T write update orders", "T read  customers", "C write update orders.status", "C read  customers.name"},
			[]string{"T read  orders", "T write update customers"}},
		{"multi-table delete", "DELETE o FROM orders o JOIN customers c ON c.id = o.customer_id",
			[]string{"T write delete orders", "T read  customers"}, []string{"T write delete customers"}},
		{"generated column", "SELECT email_domain FROM customers",
			[]string{"C read  customers.email_domain", "C read  customers.email"}, nil},
		{"group by prefers column", "SELECT name AS ssn FROM customers GROUP BY ssn",
			[]string{"C read  customers.ssn", "C read  customers.name"}, nil},
		{"show create reads all", "SHOW CREATE TABLE orders",
			[]string{"C read  orders.total", "T read  orders"}, nil},
		{"show columns reads none", "SHOW COLUMNS FROM customers",
			[]string{"T read  customers", "T read  COLUMNS"}, []string{"C read  customers.email"}},
	}
	for _, c := range cases {
		got := accessSummary(analyze(t, c.sql))
		for _, w := range c.want {
			assert.Contains(t, strings.Split(got, "\n"), w, "%s: %s\n%s", c.name, c.sql, got)
		}
		for _, w := range c.absent {
			assert.NotContains(t, strings.Split(got, "\n"), w, "%s: %s\n%s", c.name, c.sql, got)
		}
	}
}

// TestQualifierLetterCase pins how a qualifier's letter case decides its
// query level. Under lower_case_table_names=0 MariaDB compares aliases
// byte for byte: `C.email` does not name the inner derived table c and
// resolves outward to customers C (verified against MariaDB 10.11, which
// returns customers.email). Under lower_case_table_names=1 it names the
// inner c.
func TestQualifierLetterCase(t *testing.T) {
	t.Parallel()
	const sql = "SELECT (SELECT C.email FROM (SELECT 'x' AS email) c) FROM customers C"
	got := strings.Split(accessSummary(analyze(t, sql)), "\n")
	assert.Contains(t, got, "C read  customers.email", "lower_case_table_names=0")

	got = strings.Split(accessSummary(analyze(t, "SELECT (SELECT c.email FROM (SELECT 'x' AS email) c) FROM customers C")), "\n")
	assert.NotContains(t, got, "C read  customers.email", "an exact-case inner alias stops the search")

	cat, name := loadShop(t)
	folded := *cat
	folded.LowerCaseTableNames = 1
	an := myanalyze.New(&folded, myanalyze.Options{})
	got = strings.Split(accessSummary(an.Analyze(testmariadb.Rename(sql, name), an.NewSession())), "\n")
	assert.NotContains(t, got, "C read  customers.email", "lower_case_table_names=1: C names the inner c")
}
