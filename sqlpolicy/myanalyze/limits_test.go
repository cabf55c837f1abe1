package myanalyze_test

import (
	"context"
	"errors"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/internal/testmariadb"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/myanalyze"
)

func TestUpstreamSettings(t *testing.T) {
	t.Parallel()
	maria := myanalyze.New(&catalog.Catalog{Dialect: "mysql", Version: "10.11.19-MariaDB-0+deb12u1"}, myanalyze.Options{})
	unknown := myanalyze.New(&catalog.Catalog{Dialect: "mysql"}, myanalyze.Options{})
	mysqlAn := myanalyze.New(&catalog.Catalog{Dialect: "mysql", Version: "8.0.36"}, myanalyze.Options{})
	limits := map[sqlpolicy.Limit]int64{
		sqlpolicy.LimitStatementTimeout:         int64(250 * time.Millisecond),
		sqlpolicy.LimitIdleInTransactionTimeout: int64(90*time.Second + 500*time.Millisecond),
		sqlpolicy.LimitWorkMem:                  64 << 20,
	}
	want := map[string]string{"max_statement_time": "0.25", "idle_transaction_timeout": "90"}
	assert.Equal(t, want, maria.UpstreamSettings(limits))
	assert.Equal(t, want, unknown.UpstreamSettings(limits), "an unknown server is taken for MariaDB")
	assert.Equal(t, map[string]string{"max_execution_time": "250"}, mysqlAn.UpstreamSettings(limits))
	assert.Equal(t, map[string]string{"max_statement_time": "300", "idle_transaction_timeout": "120"},
		maria.UpstreamSettings(sqlpolicy.DefaultLimits()))
	assert.Equal(t, map[string]string{"max_statement_time": "0.000001", "idle_transaction_timeout": "1"},
		maria.UpstreamSettings(map[sqlpolicy.Limit]int64{sqlpolicy.LimitStatementTimeout: 10, sqlpolicy.LimitIdleInTransactionTimeout: 10}),
		"below one unit rounds up to one (0 would lift the limit)")
	assert.Empty(t, maria.UpstreamSettings(map[sqlpolicy.Limit]int64{sqlpolicy.LimitStatementTimeout: sqlpolicy.Unlimited}))
}

// TestUpstreamSettingsOnServer applies the settings as the proxy does
// (SET SESSION name = value) and checks MariaDB holds them and ends a
// statement that runs past the timeout.
func TestUpstreamSettingsOnServer(t *testing.T) {
	t.Parallel()
	cat, name := loadShop(t)
	require.Contains(t, cat.Version, "MariaDB")
	an := myanalyze.New(cat, myanalyze.Options{})
	set := an.UpstreamSettings(map[sqlpolicy.Limit]int64{
		sqlpolicy.LimitStatementTimeout:         int64(300 * time.Millisecond),
		sqlpolicy.LimitIdleInTransactionTimeout: int64(45 * time.Second),
	})
	db := testmariadb.Open(t, testmariadb.WithDatabase(testmariadb.AdminDSN(), name))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	for k, v := range set {
		_, err := conn.ExecContext(ctx, "SET SESSION "+k+" = "+v)
		require.NoError(t, err, k)
	}
	var stmt float64
	var idle int
	require.NoError(t, conn.QueryRowContext(ctx, "SELECT @@session.max_statement_time, @@session.idle_transaction_timeout").Scan(&stmt, &idle))
	assert.InDelta(t, 0.3, stmt, 1e-9)
	assert.Equal(t, 45, idle)
	_, err = conn.ExecContext(ctx, "SELECT SLEEP(5)")
	var me *mysql.MySQLError
	require.True(t, errors.As(err, &me), "SLEEP(5) under max_statement_time 0.3: %v", err)
	assert.Equal(t, uint16(1969), me.Number, "ER_STATEMENT_TIMEOUT")
}

// TestLimitSettings checks which setting changes are marked with a limit
// and that the amount is what MariaDB itself holds after running the
// text (read back from @@session).
func TestLimitSettings(t *testing.T) {
	t.Parallel()
	_, name := loadShop(t)
	db := testmariadb.Open(t, testmariadb.WithDatabase(testmariadb.AdminDSN(), name))
	sec := func(f float64) int64 { return int64(math.Round(f * 1e9)) }
	cases := []struct {
		sql     string
		setting string
		limit   sqlpolicy.Limit
		amount  int64 // when known
		unknown bool
	}{
		{sql: "SET max_statement_time = 10", setting: "max_statement_time", limit: sqlpolicy.LimitStatementTimeout, amount: sec(10)},
		{sql: "SET SESSION max_statement_time = 1.5", setting: "max_statement_time", limit: sqlpolicy.LimitStatementTimeout, amount: sec(1.5)},
		{sql: "SET @@session.max_statement_time = 2.0000019", setting: "max_statement_time", limit: sqlpolicy.LimitStatementTimeout, amount: sec(2.000002)},
		{sql: "SET @@max_statement_time = 1e3", setting: "max_statement_time", limit: sqlpolicy.LimitStatementTimeout, amount: sec(1000)},
		{sql: "SET LOCAL max_statement_time = 0", setting: "max_statement_time", limit: sqlpolicy.LimitStatementTimeout, amount: sqlpolicy.Unlimited},
		{sql: "SET max_statement_time = 0.0000001", setting: "max_statement_time", limit: sqlpolicy.LimitStatementTimeout, amount: sqlpolicy.Unlimited},
		{sql: "SET max_statement_time = -5", setting: "max_statement_time", limit: sqlpolicy.LimitStatementTimeout, amount: sqlpolicy.Unlimited},
		{sql: "SET max_statement_time = - -5", setting: "max_statement_time", limit: sqlpolicy.LimitStatementTimeout, amount: sec(5)},
		{sql: "SET max_statement_time = 99999999999", setting: "max_statement_time", limit: sqlpolicy.LimitStatementTimeout, amount: sec(31536000)},
		{sql: "SET idle_transaction_timeout = 30", setting: "idle_transaction_timeout", limit: sqlpolicy.LimitIdleInTransactionTimeout, amount: sec(30)},
		{sql: "SET SESSION idle_write_transaction_timeout = 0", setting: "idle_write_transaction_timeout", limit: sqlpolicy.LimitIdleInTransactionTimeout, amount: sqlpolicy.Unlimited},
		{sql: "SET idle_readonly_transaction_timeout = 7", setting: "idle_readonly_transaction_timeout", limit: sqlpolicy.LimitIdleInTransactionTimeout, amount: sec(7)},
		// Values keyhole cannot compare with the limit.
		{sql: "SET max_statement_time = DEFAULT", setting: "max_statement_time", limit: sqlpolicy.LimitStatementTimeout, unknown: true},
		{sql: "SET max_statement_time = @x", setting: "max_statement_time", limit: sqlpolicy.LimitStatementTimeout, unknown: true},
		{sql: "SET max_statement_time = '5'", setting: "max_statement_time", limit: sqlpolicy.LimitStatementTimeout, unknown: true},
		{sql: "SET idle_transaction_timeout = 1.5", setting: "idle_transaction_timeout", limit: sqlpolicy.LimitIdleInTransactionTimeout, unknown: true},
		{sql: "SELECT /*+ MAX_EXECUTION_TIME(0) */ id FROM orders", setting: "max_execution_time", limit: sqlpolicy.LimitStatementTimeout, amount: sqlpolicy.Unlimited},
		{sql: "SELECT /*+ MAX_EXECUTION_TIME(1500) */ id FROM orders", setting: "max_execution_time", limit: sqlpolicy.LimitStatementTimeout, amount: int64(1500 * time.Millisecond)},
		{sql: "SET max_execution_time = 100", setting: "max_execution_time", limit: sqlpolicy.LimitStatementTimeout, amount: int64(100 * time.Millisecond)},
	}
	for _, tc := range cases {
		t.Run(tc.sql, func(t *testing.T) {
			t.Parallel()
			a := analyze(t, tc.sql)
			require.Len(t, a.Statements, 1)
			st := a.Statements[0]
			require.Len(t, st.Settings, 1, "%+v", st)
			set := st.Settings[0]
			assert.Equal(t, tc.setting, set.Name)
			assert.Equal(t, tc.limit, set.Limit)
			assert.False(t, set.Reset)
			if tc.unknown {
				assert.True(t, set.Unknown, "%+v", set)
				return
			}
			assert.False(t, set.Unknown, "%+v", set)
			assert.Equal(t, tc.amount, set.Amount)
			if tc.setting == "max_execution_time" {
				return // MySQL's: MariaDB has no such variable
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := db.Conn(ctx)
			require.NoError(t, err)
			defer conn.Close()
			_, err = conn.ExecContext(ctx, tc.sql)
			require.NoError(t, err)
			var v string
			require.NoError(t, conn.QueryRowContext(ctx, "SELECT @@session."+tc.setting).Scan(&v))
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			server := sec(f)
			if server == 0 {
				server = sqlpolicy.Unlimited
			}
			assert.Equal(t, server, set.Amount, "MariaDB holds %s", v)
		})
	}
}

// TestLimitDecisions: a role's limits refuse raising or lifting them.
func TestLimitDecisions(t *testing.T) {
	t.Parallel()
	cat, name := loadShop(t)
	pol, _, err := sqlpolicy.ParsePolicy([]byte(testmariadb.Rename(`
roles:
  analyst:
    upstream: shop
    allow:
      - select: [shop.orders]
    limits:
      statement_timeout: 30s
      idle_in_transaction_timeout: 1m
agents:
  a: {role: analyst}
`, name)), "limits.yaml", cat)
	require.NoError(t, err)
	e := sqlpolicy.NewEngine(pol, cat, myanalyze.New(cat, myanalyze.Options{}), sqlpolicy.EngineOptions{})
	assert.Equal(t, map[string]string{"max_statement_time": "30", "idle_transaction_timeout": "60"}, e.UpstreamSettings("a"))
	cases := []struct {
		sql   string
		allow bool
	}{
		{"SET max_statement_time = 10", true},
		{"SET max_statement_time = 30", true},
		{"SET max_statement_time = 30.5", false},
		{"SET max_statement_time = 0", false},
		{"SET SESSION max_statement_time = DEFAULT", false},
		{"SET idle_transaction_timeout = 60", true},
		{"SET idle_write_transaction_timeout = 0", false},
		{"SET idle_transaction_timeout = 61", false},
		{"SELECT /*+ MAX_EXECUTION_TIME(0) */ id FROM orders", false},
		{"SELECT /*+ MAX_EXECUTION_TIME(1000) */ id FROM orders", true},
		{"SELECT id FROM orders; SET max_statement_time = 0", false},
	}
	for _, tc := range cases {
		d, _ := e.Check(sqlpolicy.Principal{Agent: "a"}, tc.sql, e.NewSession())
		if assert.Equal(t, tc.allow, d.Allowed(), "%s: %+v", tc.sql, d.Reasons) && !tc.allow {
			assert.Equal(t, sqlpolicy.ReasonLimitExceeded, d.Reasons[0].Code, tc.sql)
		}
	}
}

// TestSQLStates: what does not exist is reported with the code the MySQL
// front end translates (42P01 -> 1146, 42703 -> 1054, 42601 -> 1064); a
// refusal by the policy stays 42501.
func TestSQLStates(t *testing.T) {
	t.Parallel()
	cat, name := loadShop(t)
	pol, _, err := sqlpolicy.ParsePolicy([]byte(testmariadb.Rename(`
labels:
  shop.customers.email: [pii.email]
roles:
  r:
    upstream: shop
    allow:
      - select: [shop.orders, shop.customers]
    deny_labels: [pii.*]
agents:
  a: {role: r}
`, name)), "p.yaml", cat)
	require.NoError(t, err)
	e := sqlpolicy.NewEngine(pol, cat, myanalyze.New(cat, myanalyze.Options{}), sqlpolicy.EngineOptions{})
	for sql, want := range map[string]string{
		"SELECT id FROM no_such_table":                "42P01",
		"SELECT no_such_column FROM orders":           "42703",
		"SELEC id FROM orders":                        "42601",
		"SELECT id FROM orders WHERE status = 'open":  "42601",
		"SELECT email FROM customers":                 "42501",
		"SELECT no_such_column, email FROM customers": "42501",
		"SELECT id FROM secrets":                      "42501",
	} {
		d, _ := e.Check(sqlpolicy.Principal{Agent: "a"}, testmariadb.Rename(sql, name), e.NewSession())
		assert.False(t, d.Allowed(), sql)
		assert.Equal(t, want, d.SQLState, "%s: %+v", sql, d.Reasons)
	}
}
