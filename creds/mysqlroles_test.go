package creds_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/internal/testmariadb"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

const myPolicy = `labels:
  shop.customers.email: [pii.email]
  shop.customers.ssn:   [pii.ssn]
  shop.secrets:         [secret]
roles:
  analyst:
    upstream: shop
    allow:
      - select: [shop.orders, shop.customers]
      - insert: [shop.orders]
    deny_labels: [pii.*, secret]
    max_rows: 1000
  clerk:
    upstream: shop
    allow:
      - select: [shop.*]
      - update: {shop.orders: [status, total], shop.customers: [email]}
      - delete: [shop.orders, shop.secrets]
      - call: [shop.touch_order]
    functions: [shop.order_total]
    deny_labels: [pii.*, secret]
agents:
  a: {role: analyst}
  c: {role: clerk}
`

func myCatalog() *catalog.Catalog {
	cols := func(names ...string) []*catalog.Column {
		var out []*catalog.Column
		for _, n := range names {
			out = append(out, &catalog.Column{Name: n, Type: "int"})
		}
		return out
	}
	customers := &catalog.Relation{Schema: "shop", Name: "customers", Kind: catalog.KindTable,
		Columns: cols("id", "name", "email", "ssn", "phone")}
	customers.Columns[4].Labels = []string{"pii.phone"}
	return &catalog.Catalog{
		Dialect: "mysql", Database: "shop", SearchPath: []string{"shop"},
		Relations: map[string]map[string]*catalog.Relation{
			"shop": {
				"customers": customers,
				"orders":    {Schema: "shop", Name: "orders", Kind: catalog.KindTable, Columns: cols("id", "customer_id", "total", "status")},
				"secrets":   {Schema: "shop", Name: "secrets", Kind: catalog.KindTable, Columns: cols("id", "value")},
			},
			"information_schema": {"TABLES": {Schema: "information_schema", Name: "TABLES", Kind: catalog.KindTable, System: true}},
		},
		Functions: map[string]map[string]*catalog.Function{"shop": {
			"touch_order": {Schema: "shop", Name: "touch_order", Kind: "procedure"},
			"order_total": {Schema: "shop", Name: "order_total", Kind: "function"},
		}},
	}
}

func TestMySQLGrants(t *testing.T) {
	t.Parallel()
	cat := myCatalog()
	p, _, err := sqlpolicy.ParsePolicy([]byte(myPolicy), "p.yaml", cat)
	require.NoError(t, err)

	grants, notes := creds.MySQLGrants(p, cat, p.Roles["analyst"], "'u'@'%'")
	assert.Equal(t, []string{
		"GRANT SELECT (`id`, `name`) ON `shop`.`customers` TO 'u'@'%';",
		"GRANT SELECT ON `shop`.`orders` TO 'u'@'%';",
		"GRANT INSERT ON `shop`.`orders` TO 'u'@'%';",
	}, grants)
	assert.Contains(t, strings.Join(notes, "\n"), "shop.customers.phone: labelled pii.phone, left out")
	assert.Contains(t, notes, "max_rows is enforced by keyhole only")

	grants, notes = creds.MySQLGrants(p, cat, p.Roles["clerk"], "'u'@'%'")
	assert.Equal(t, []string{
		"GRANT SELECT (`id`, `name`) ON `shop`.`customers` TO 'u'@'%';",
		"GRANT SELECT ON `shop`.`orders` TO 'u'@'%';",
		"GRANT UPDATE (`total`, `status`) ON `shop`.`orders` TO 'u'@'%';",
		"GRANT DELETE ON `shop`.`orders` TO 'u'@'%';",
		"GRANT EXECUTE ON FUNCTION `shop`.`order_total` TO 'u'@'%';",
		"GRANT EXECUTE ON PROCEDURE `shop`.`touch_order` TO 'u'@'%';",
	}, grants, "no UPDATE on the labelled email, nothing on secrets, information_schema needs no grant")
	assert.Contains(t, strings.Join(notes, "\n"), "shop.secrets: whole table labelled secret, denied")
}

// TestMySQLGrantsGenerated: a generated column is granted only with the
// columns it is computed from, as keyhole reads them with it.
func TestMySQLGrantsGenerated(t *testing.T) {
	t.Parallel()
	cat := &catalog.Catalog{
		Dialect: "mysql", Database: "shop", SearchPath: []string{"shop"},
		Relations: map[string]map[string]*catalog.Relation{"shop": {"people": {Schema: "shop", Name: "people", Kind: catalog.KindTable,
			Columns: []*catalog.Column{
				{Name: "id", Type: "int"},
				{Name: "email", Type: "varchar(80)"},
				{Name: "domain", Type: "varchar(80)", Generated: "substring_index(`email`,'@',-1)"},
				{Name: "cost", Type: "int"},
				{Name: "price", Type: "int", Generated: "`cost` * 2"},
				{Name: "price_tag", Type: "varchar(20)", Generated: "concat(`price`,' EUR')"},
			}}}},
	}
	p, _, err := sqlpolicy.ParsePolicy([]byte(`labels:
  shop.people.email: [pii.email]
roles:
  r:
    upstream: shop
    allow:
      - select: {shop.people: [id, domain, price, price_tag]}
      - update: [shop.people]
    deny_labels: [pii.*]
agents:
  a: {role: r}
`), "p.yaml", cat)
	require.NoError(t, err)
	grants, notes := creds.MySQLGrants(p, cat, p.Roles["r"], "'u'@'%'")
	assert.Equal(t, []string{
		"GRANT SELECT (`id`) ON `shop`.`people` TO 'u'@'%';",
		"GRANT UPDATE (`id`, `cost`, `price`, `price_tag`) ON `shop`.`people` TO 'u'@'%';",
	}, grants)
	assert.Contains(t, notes, "shop.people.domain: generated from email, left out")
	assert.Contains(t, notes, "shop.people.price: generated from cost, which the role may not read, left out")
	assert.Contains(t, notes, "shop.people.price_tag: generated from price, which the role may not read, left out")
}

func TestMySQLRolesForPolicy(t *testing.T) {
	t.Parallel()
	cat := myCatalog()
	p, _, err := sqlpolicy.ParsePolicy([]byte(myPolicy), "p.yaml", cat)
	require.NoError(t, err)
	roles, err := creds.MySQLRolesForPolicy(p, cat, creds.RoleOptions{})
	require.NoError(t, err)
	require.Len(t, roles, 2)
	r := roles[0]
	assert.Equal(t, "analyst", r.Name)
	assert.Equal(t, "shop", r.DBName)
	assert.Equal(t, creds.DefaultRoleTTL, r.DefaultTTL)
	assert.Equal(t, "CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}';", r.CreationStatements[0])
	assert.Equal(t, []string{"DROP USER IF EXISTS '{{name}}'@'%';"}, r.RevocationStatements)
	_, err = creds.MySQLRolesForPolicy(p, nil, creds.RoleOptions{})
	assert.ErrorIs(t, err, creds.ErrNoCatalog)
}

// TestMySQLGrantsOnMariaDB runs the creation statements the way Vault's
// MySQL plugin does (templates filled in) on a real MariaDB, and checks
// that the user can read exactly the allowed columns.
func TestMySQLGrantsOnMariaDB(t *testing.T) {
	t.Parallel()
	user := testmariadb.RandName("mycreds_")
	admin := testmariadb.Admin(t)
	db := testmariadb.New(t, `CREATE TABLE customers (id INT, name TEXT, email TEXT, ssn TEXT, phone TEXT COMMENT 'keyhole: pii.phone');
CREATE TABLE orders (id INT, customer_id INT, total INT, status TEXT);
CREATE TABLE secrets (id INT, value TEXT);
INSERT INTO customers VALUES (1, 'n', 'e', 's', 'p');
CREATE VIEW customer_emails AS SELECT id, email AS contact FROM customers;`)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cat, err := catalog.LoadMySQLDSN(ctx, db.DSN)
	require.NoError(t, err)
	p, _, err := sqlpolicy.ParsePolicy([]byte(testmariadb.Rename(`labels:
  shop.customers.email: [pii.email]
  shop.customers.ssn: [pii.ssn]
  shop.secrets: [secret]
roles:
  analyst:
    upstream: shop
    allow:
      - select: [shop.orders, shop.customers, shop.customer_emails]
      - insert: [shop.orders]
    deny_labels: [pii.*, secret]
agents:
  a: {role: analyst}
`, db.Name)), "p.yaml", cat)
	require.NoError(t, err)
	roles, err := creds.MySQLRolesForPolicy(p, cat, creds.RoleOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = admin.ExecContext(context.Background(), "DROP USER IF EXISTS '"+user+"'@'%'") })
	for _, s := range roles[0].CreationStatements {
		s = strings.NewReplacer("{{name}}", user, "{{password}}", "pw-"+user).Replace(s)
		_, err := admin.ExecContext(ctx, s)
		require.NoError(t, err, s)
	}
	as := testmariadb.Open(t, testmariadb.WithUser(db.DSN, user, "pw-"+user))
	var name string
	require.NoError(t, as.QueryRowContext(ctx, "SELECT name FROM customers WHERE id = 1").Scan(&name))
	var id int
	require.NoError(t, as.QueryRowContext(ctx, "SELECT id FROM customer_emails").Scan(&id))
	// The view reads customers with its definer's privileges: its column
	// computed from the labelled email is left out of the grant.
	for _, q := range []string{"SELECT email FROM customers", "SELECT phone FROM customers", "SELECT * FROM secrets", "UPDATE orders SET total = 1",
		"SELECT contact FROM customer_emails"} {
		_, err := as.ExecContext(ctx, q)
		var me *mysql.MySQLError
		if assert.ErrorAs(t, err, &me, q) {
			assert.Contains(t, []uint16{1142, 1143}, me.Number, "%s: want a table or column privilege error", q)
		}
	}
	for _, s := range roles[0].RevocationStatements {
		_, err := admin.ExecContext(ctx, strings.ReplaceAll(s, "{{name}}", user))
		require.NoError(t, err)
	}
}
