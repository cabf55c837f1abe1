package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/gateway"
	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/internal/testmariadb"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/myanalyze"
)

// myUpstream is a throwaway MariaDB database with the MySQL shop fixture
// (and its second database, NAME_internal) and a login keyhole uses for
// them that may do everything there.
type myUpstream struct {
	db              *testmariadb.DB
	login, password string
}

func newMySQLUpstream(t *testing.T) myUpstream {
	t.Helper()
	// The user first: cleanups run last in, first out, so the databases
	// holding its grants are dropped before it.
	user, pw := testmariadb.NewUser(t)
	db := testmariadb.New(t, fixture.MySQLShopSQL(t))
	u := myUpstream{db: db, login: user, password: pw}
	u.adminExec(t, fmt.Sprintf("GRANT ALL ON `%[1]s`.* TO '%[2]s'@'%%'; GRANT ALL ON `%[1]s_internal`.* TO '%[2]s'@'%%'", db.Name, user))
	return u
}

// url is the upstream's --upstream URL with its login.
func (u myUpstream) url() string {
	cfg, err := mysql.ParseDSN(testmariadb.AdminDSN())
	if err != nil {
		panic(err)
	}
	return fmt.Sprintf("mysql://%s:%s@%s/%s", u.login, u.password, cfg.Addr, u.db.Name)
}

// adminExec runs statements as MariaDB's admin in the upstream database.
func (u myUpstream) adminExec(t *testing.T, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := testmariadb.Open(t, u.db.DSN).ExecContext(ctx, sql)
	require.NoError(t, err)
}

// frontEnd stands in for the MySQL front end this build does not have:
// it keeps the FrontEndConfig the gateway hands it (the Decider among
// them) and serves nothing. Decisions go through the gateway's real
// router, engines, catalogs and analyzers.
type frontEnd struct {
	cfg  gateway.FrontEndConfig
	stop chan struct{}
	once sync.Once
}

func newFrontEnd() *frontEnd { return &frontEnd{stop: make(chan struct{})} }

func (f *frontEnd) build(c gateway.FrontEndConfig) (gateway.FrontEnd, error) {
	f.cfg = c
	return f, nil
}

func (f *frontEnd) Serve(ln net.Listener) error {
	<-f.stop
	return errors.New("front end closed")
}

func (f *frontEnd) Shutdown(context.Context) error { return f.Close() }

func (f *frontEnd) Close() error {
	f.once.Do(func() { close(f.stop) })
	return nil
}

// withMySQL turns on the MySQL listener for a gateway whose MySQL front
// end is fe.
func withMySQL(fe *frontEnd) (gateway.Options, setup) {
	return gateway.Options{FrontEnds: map[string]func(gateway.FrontEndConfig) (gateway.FrontEnd, error){config.DialectMySQL: fe.build}},
		func(c *config.Config) { c.Listen.MySQL = "127.0.0.1:0" }
}

// bothPolicy is the example policy on the Postgres upstream shop next to
// its MySQL twin (examples/policy-mysql.yaml) on the MariaDB upstream
// myshop, whose database is db: names are database.table there.
func bothPolicy(db string) string {
	return fmt.Sprintf(`labels:
  public.customers.email: [pii.email]
  public.customers.ssn:   [pii.ssn]
  public.secrets:         [secret]
  %[1]s.customers.email: [pii.email]
  %[1]s.customers.ssn:   [pii.ssn]
  %[1]s.secrets:         [secret]
roles:
  analyst:
    upstream: shop
    allow:
      - select: [public.orders, public.customers]
      - insert: [public.orders]
    deny_labels: [pii.*, secret]
    max_rows: 1000
  my-analyst:
    upstream: myshop
    allow:
      - select: [%[1]s.orders, %[1]s.customers]
      - insert: [%[1]s.orders]
    deny_labels: [pii.*, secret]
    max_rows: 1000
agents:
  sales-summarizer: {role: analyst}
  my-summarizer: {role: my-analyst}
`, db)
}

// decide decides sql for agent in a new session of d.
func decide(t *testing.T, d sqlpolicy.Decider, agent, sql string) *sqlpolicy.Decision {
	t.Helper()
	dec, _ := d.Check(sqlpolicy.Principal{Agent: agent}, sql, d.NewSession())
	return dec
}

// TestMySQLUpstream: one gateway with a Postgres and a MariaDB upstream.
// The MariaDB upstream's catalog is read from information_schema as its
// login (comment labels included), its statements are decided by the
// MySQL analyzer through the router the MySQL front end gets, and the
// Postgres side serves as before.
func TestMySQLUpstream(t *testing.T) {
	t.Parallel()
	pg := newUpstream(t, fixture.ShopSQL(t))
	my := newMySQLUpstream(t)
	db := my.db.Name
	fe := newFrontEnd()
	gopts, listen := withMySQL(fe)
	e, err := build(t, false, gopts, map[string]string{"shop": pg.url(), "myshop": my.url()}, bothPolicy(db), listen)
	require.NoError(t, err)

	t.Run("the front end gets the MySQL upstreams", func(t *testing.T) {
		require.NotNil(t, e.g.Addr(config.DialectMySQL), "listen.mysql is bound")
		require.Len(t, fe.cfg.Upstreams, 1)
		up := fe.cfg.Upstreams["myshop"]
		assert.Equal(t, config.DialectMySQL, up.Dialect)
		assert.Equal(t, db, up.Database)
		assert.Equal(t, strings.Split(my.url(), "@")[1], up.Addr+"/"+db)
		assert.Nil(t, up.TLS, "a loopback upstream defaults to sslmode disable")
		assert.NotNil(t, fe.cfg.Creds)
		assert.NotNil(t, fe.cfg.Audit)
		assert.Equal(t, config.DefaultMaxConns, fe.cfg.Limits.MaxConns, "limits come filled")
		role, upstream, ok := fe.cfg.Decider.Role("my-summarizer")
		assert.True(t, ok)
		assert.Equal(t, "my-analyst", role)
		assert.Equal(t, "myshop", upstream)
		assert.IsType(t, &myanalyze.Session{}, fe.cfg.Decider.NewSession())
	})

	t.Run("MySQL statements", func(t *testing.T) {
		for _, tc := range []struct {
			sql   string
			allow bool
			label string // the denied label, if any
		}{
			{sql: "SELECT id, name FROM customers", allow: true},
			{sql: "SELECT c.name, SUM(o.total) FROM customers c JOIN " + db + ".orders o ON o.customer_id = c.id GROUP BY c.name", allow: true},
			{sql: "INSERT INTO orders (customer_id, product_id, total) VALUES (1, 1, 2.50)", allow: true},
			{sql: "SELECT email FROM customers", label: "pii.email"},
			{sql: "SELECT phone FROM customers", label: "pii.phone"}, // a column comment in MariaDB
			{sql: "SELECT email_domain FROM customers", label: "pii.email"},
			{sql: "SELECT * FROM customers"},
			{sql: "SELECT api_key FROM " + db + "_internal.api_keys"},
			{sql: "SELECT name FROM public.customers"}, // the Postgres upstream's table
			{sql: "DELETE FROM orders"},
			{sql: "SELECT /*!50000 email, */ name FROM customers"},
			{sql: "SET SESSION sql_mode = 'ANSI_QUOTES'"},
		} {
			d := decide(t, fe.cfg.Decider, "my-summarizer", tc.sql)
			if tc.allow {
				assert.True(t, d.Allowed(), "%s: %s %v", tc.sql, d.Message, d.Reasons)
				continue
			}
			assert.False(t, d.Allowed(), tc.sql)
			if tc.label != "" {
				assert.True(t, hasLabel(d, tc.label), "%s: want label %s in %v", tc.sql, tc.label, d.Reasons)
			}
		}
	})

	t.Run("sessions carry the connection's sql_mode", func(t *testing.T) {
		d := fe.cfg.Decider
		s := d.NewSession()
		const sql = `SELECT "email" FROM customers`
		dec, _ := d.Check(sqlpolicy.Principal{Agent: "my-summarizer"}, sql, s)
		assert.True(t, dec.Allowed(), "a string literal by default: %v", dec.Reasons)
		require.NoError(t, s.(*myanalyze.Session).SetSQLMode("ANSI_QUOTES"))
		dec, _ = d.Check(sqlpolicy.Principal{Agent: "my-summarizer"}, sql, s)
		assert.False(t, dec.Allowed(), "a column under ANSI_QUOTES")
		assert.True(t, hasLabel(dec, "pii.email"), "%v", dec.Reasons)
	})

	t.Run("agents of the other protocol and unknown agents", func(t *testing.T) {
		d := decide(t, fe.cfg.Decider, agent, "SELECT 1")
		assert.False(t, d.Allowed(), "a Postgres role's agent on the MySQL front end")
		assert.Contains(t, d.Message, "another protocol")
		assert.False(t, decide(t, fe.cfg.Decider, "nobody", "SELECT 1").Allowed())

		_, err := e.dial("my-summarizer", db)
		var pe *pgconn.PgError
		require.ErrorAs(t, err, &pe, "the MySQL role's agent on the Postgres front end")
		// pgproxy has no upstream of that name: 08001 today; 28000 (the
		// database is not the role's) would say it better.
		assert.Contains(t, []string{"08001", "28000"}, pe.Code)
	})

	t.Run("the Postgres upstream is served as before", func(t *testing.T) {
		c := e.connect(agent, pg.db.Name)
		assert.Equal(t, "Ada Lovelace", query(c, "SELECT name FROM customers WHERE id = 1"))
		assert.Equal(t, "42501", query(c, "SELECT email FROM customers WHERE id = 1"))
	})

	t.Run("a reload reads MariaDB's comments again", func(t *testing.T) {
		my.adminExec(t, "ALTER TABLE customers MODIFY name VARCHAR(100) NOT NULL COMMENT 'keyhole: pii.name'")
		assert.True(t, decide(t, fe.cfg.Decider, "my-summarizer", "SELECT name FROM customers").Allowed(), "before the reload")
		require.NoError(t, e.g.Reload())
		d := decide(t, fe.cfg.Decider, "my-summarizer", "SELECT name FROM customers")
		assert.False(t, d.Allowed())
		assert.True(t, hasLabel(d, "pii.name"), "%v", d.Reasons)
		c := e.connect(agent, pg.db.Name)
		assert.Equal(t, "Ada Lovelace", query(c, "SELECT name FROM customers WHERE id = 1"), "the Postgres column of that name is not labelled")
	})
}

func hasLabel(d *sqlpolicy.Decision, label string) bool {
	for _, r := range d.Reasons {
		if r.Label == label {
			return true
		}
	}
	return false
}

// TestMySQLSingleUpstream: --upstream mysql://... alone, with the MySQL
// example policy, checked against the one catalog by sqlpolicy itself.
func TestMySQLSingleUpstream(t *testing.T) {
	t.Parallel()
	my := newMySQLUpstream(t)
	fe := newFrontEnd()
	gopts, listen := withMySQL(fe)
	e, err := build(t, false, gopts, map[string]string{"": my.url()}, testmariadb.Rename(fixture.MySQLPolicy, my.db.Name), listen)
	require.NoError(t, err)
	assert.Nil(t, e.g.Addr(config.DialectPostgres), "no Postgres upstream, no Postgres listener")
	assert.Contains(t, fe.cfg.Upstreams, "")
	d := decide(t, fe.cfg.Decider, agent, "SELECT id, name FROM customers")
	assert.True(t, d.Allowed(), "%v", d.Reasons)
	d = decide(t, fe.cfg.Decider, agent, "SELECT ssn FROM customers")
	assert.False(t, d.Allowed())
	assert.True(t, hasLabel(d, "pii.ssn"), "%v", d.Reasons)
	assert.Equal(t, 1000, d.MaxRows)

	_, err = build(t, true, gopts, map[string]string{"": my.url()},
		strings.Replace(testmariadb.Rename(fixture.MySQLPolicy, my.db.Name), ".customers.ssn", ".customers.sn", 1), listen)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "customers.sn is not in the catalog")
}

// TestMySQLPolicyChecks: with several upstreams, a MySQL role's names are
// checked against its MariaDB upstream's catalog, and labels against
// every catalog.
func TestMySQLPolicyChecks(t *testing.T) {
	t.Parallel()
	pg := newUpstream(t, fixture.ShopSQL(t))
	my := newMySQLUpstream(t)
	db := my.db.Name
	ups := map[string]string{"shop": pg.url(), "myshop": my.url()}
	policy := bothPolicy(db)
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"label typo", db + ".customers.email:", db + ".customers.emial:", "column " + db + ".customers.emial is in no upstream's catalog"},
		{"table typo", "select: [" + db + ".orders,", "select: [" + db + ".ordres,", "relation " + db + ".ordres is not in upstream myshop's catalog"},
		{"the other upstream's table", "select: [" + db + ".orders,", "select: [public.orders,", "relation public.orders is not in upstream myshop's catalog"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Contains(t, policy, tc.from)
			fe := newFrontEnd()
			gopts, listen := withMySQL(fe)
			_, err := build(t, true, gopts, ups, strings.Replace(policy, tc.from, tc.to, 1), listen)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
