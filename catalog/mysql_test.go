package catalog_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/internal/testmariadb"
)

const myShopSQL = `
CREATE TABLE customers (id INT PRIMARY KEY, email VARCHAR(100) COMMENT 'Work address. keyhole: pii.email, pii.contact; shown in the CRM',
  ssn VARCHAR(20) COMMENT 'keyhole: pii.ssn PII.Bad', FullName VARCHAR(80), note TEXT COMMENT 'free text, no labels',
  created DATETIME DEFAULT CURRENT_TIMESTAMP, domain VARCHAR(100) AS (SUBSTRING_INDEX(email, '@', -1)) VIRTUAL) COMMENT 'All customers';
CREATE TABLE secrets (k VARCHAR(10), v VARCHAR(10)) COMMENT 'Do not read. keyhole: secret';
CREATE TABLE staff (id INT PRIMARY KEY, salary INT CHECK (salary > 0), credit INT, team INT,
  CONSTRAINT credit_below_salary CHECK (credit <= salary), UNIQUE KEY team_salary (team, salary), KEY by_credit (credit));
CREATE TABLE pay (id INT NOT NULL, salary INT NOT NULL, at DATE NOT NULL, PRIMARY KEY (id, salary, at))
  PARTITION BY RANGE (salary) SUBPARTITION BY HASH (YEAR(at)) SUBPARTITIONS 2
  (PARTITION p_low VALUES LESS THAN (50000), PARTITION p_high VALUES LESS THAN MAXVALUE);
CREATE VIEW customer_emails AS SELECT id, email AS contact FROM customers;
CREATE FUNCTION lookup(i INT) RETURNS VARCHAR(100) DETERMINISTIC READS SQL DATA RETURN (SELECT email FROM customers WHERE id = i);
CREATE PROCEDURE touch() SQL SECURITY INVOKER SELECT 1;
CREATE TABLE shop_internal.api_keys (id INT);
`

func TestLoadMySQL(t *testing.T) {
	t.Parallel()
	db := testmariadb.New(t, myShopSQL)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := catalog.InspectMySQLDSN(ctx, db.DSN)
	require.NoError(t, err)
	cat := l.Catalog
	assert.Equal(t, "mysql", cat.Dialect)
	assert.Equal(t, db.Name, cat.Database)
	assert.Equal(t, []string{db.Name}, cat.SearchPath)
	assert.Equal(t, 0, cat.LowerCaseTableNames)

	c := cat.Relation(db.Name, "customers")
	require.NotNil(t, c)
	assert.Equal(t, catalog.KindTable, c.Kind)
	assert.Equal(t, "All customers", c.Comment)
	var names []string
	for _, col := range c.Columns {
		names = append(names, col.Name)
	}
	assert.Equal(t, []string{"id", "email", "ssn", "FullName", "note", "created", "domain"}, names, "ordinal order, names as stored")
	assert.Equal(t, "substring_index(`email`,'@',-1)", c.Column("domain").Generated)
	assert.Empty(t, c.Column("domain").Default)
	assert.Equal(t, []string{"pii.contact", "pii.email"}, c.Column("email").Labels)
	assert.Equal(t, []string{catalog.InvalidLabel, "pii.ssn"}, c.Column("ssn").Labels, "a bad label fails closed")
	assert.Empty(t, c.Column("note").Labels)
	assert.Equal(t, "current_timestamp()", c.Column("created").Default)
	assert.Len(t, l.Warnings, 1)

	s := cat.Relation(db.Name, "secrets")
	require.NotNil(t, s)
	assert.Equal(t, []string{"secret"}, s.Labels)

	st := cat.Relation(db.Name, "staff")
	require.NotNil(t, st)
	assert.Equal(t, []catalog.Check{
		{Name: "credit_below_salary", Clause: "`credit` <= `salary`"},
		{Name: "salary", Clause: "`salary` > 0"},
	}, st.Checks, "table- and column-level CHECK constraints, by name")
	assert.Empty(t, c.Checks)
	assert.Equal(t, []catalog.UniqueKey{
		{Name: "PRIMARY", Columns: []string{"id"}},
		{Name: "team_salary", Columns: []string{"team", "salary"}},
	}, st.UniqueKeys, "primary and unique keys, columns in key order; plain keys left out")
	assert.Equal(t, []catalog.Index{
		{Name: "by_credit", Columns: []string{"credit"}},
		{Name: "PRIMARY", Unique: true, Columns: []string{"id"}},
		{Name: "team_salary", Unique: true, Columns: []string{"team", "salary"}},
	}, st.Indexes, "every index (ordered by name as information_schema compares them), columns in key order")

	assert.Empty(t, st.Partitioning)
	pay := cat.Relation(db.Name, "pay")
	require.NotNil(t, pay)
	assert.Equal(t, []string{"`salary`", "year(`at`)"}, pay.Partitioning, "partitioning, then subpartitioning expression")

	v := cat.Relation(db.Name, "customer_emails")
	require.NotNil(t, v)
	assert.Equal(t, catalog.KindView, v.Kind)
	assert.Contains(t, v.Definition, "`"+db.Name+"`.`customers`.`email` AS `contact`", "definitions are fully qualified")
	assert.Empty(t, v.Labels, "MariaDB's VIEW comment is not a label source")

	assert.NotNil(t, cat.Relation(db.Name+"_internal", "api_keys"), "every database the login sees")
	isCols := cat.Relation("information_schema", "COLUMNS")
	require.NotNil(t, isCols)
	assert.True(t, isCols.System)
	assert.NotNil(t, isCols.Column("TABLE_NAME"))
	assert.Nil(t, cat.Relation("mysql", "user"), "server catalogs are left out")

	f := cat.Function(db.Name, "lookup")
	require.NotNil(t, f)
	assert.Equal(t, "function", f.Kind)
	assert.Equal(t, catalog.Immutable, f.Volatility)
	assert.True(t, f.SecurityDefiner)
	p := cat.Function(db.Name, "touch")
	require.NotNil(t, p)
	assert.Equal(t, "procedure", p.Kind)
	assert.False(t, p.SecurityDefiner)
}

func TestMySQLConfig(t *testing.T) {
	t.Parallel()
	cfg, err := catalog.MySQLConfig("mysql://agent:s3cret@127.0.0.1:3307/shop?tls=skip-verify")
	require.NoError(t, err)
	assert.Equal(t, "agent", cfg.User)
	assert.Equal(t, "s3cret", cfg.Passwd)
	assert.Equal(t, "127.0.0.1:3307", cfg.Addr)
	assert.Equal(t, "shop", cfg.DBName)
	cfg, err = catalog.MySQLConfig("mariadb://root@db.example")
	require.NoError(t, err)
	assert.Equal(t, "db.example:3306", cfg.Addr)
	cfg, err = catalog.MySQLConfig("root:pw@tcp(127.0.0.1:3306)/shop")
	require.NoError(t, err)
	assert.Equal(t, "shop", cfg.DBName)
	_, err = catalog.MySQLConfig("postgres://u:hunter2@h/db")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "hunter2")
}

func TestLoadMySQLUnreachable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := catalog.LoadMySQLDSN(ctx, "mysql://u:topsecret@127.0.0.1:1/x?timeout=2s")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "topsecret")
	assert.False(t, errors.Is(err, catalog.ErrCatalogChanged))
}
