package mysqlproxy_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/internal/testmy"
	"github.com/keyholedb/keyhole/mysqlproxy"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// setupSQL is the shop schema of the tests (MariaDB's seq_1_to_N tables
// come from its Sequence engine).
const setupSQL = `
CREATE TABLE orders (id INT PRIMARY KEY, item VARCHAR(64) NOT NULL, amount DECIMAL(10,2) NOT NULL);
INSERT INTO orders SELECT seq, CONCAT('item', seq), seq * 1.5 FROM seq_1_to_20;
CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(64), email VARCHAR(128));
INSERT INTO customers VALUES (1, 'ann', 'ann@example.com'), (2, 'bob', 'bob@example.com');
CREATE TABLE secrets (id INT, value VARCHAR(64));
INSERT INTO secrets VALUES (1, 'hunter2');
CREATE TABLE big (id INT PRIMARY KEY, pad VARCHAR(200));
INSERT INTO big SELECT seq, REPEAT('x', 200) FROM seq_1_to_100000;
`

// testPolicy is the policy the wire tests' decisions stand for; the
// table in newDecider lists exactly what it allows and denies for the
// statements the tests send. %[1]s is the database, %[2]d max_rows.
const testPolicy = `
labels:
  %[1]s.customers.email: [pii.email]
  %[1]s.secrets: [secret]
roles:
  analyst:
    upstream: shop
    allow:
      - select: [%[1]s.orders, %[1]s.customers, %[1]s.big]
      - insert: [%[1]s.orders]
    deny_labels: [pii.*, secret]
    max_rows: %[2]d
agents:
  analyst-bot: {role: analyst}
  secret-bot: {role: analyst}
`

// newDecider is the one place the tests' Decider is built. Until the
// MySQL analyzer lands it is the wire-test table; then it becomes
// sqlpolicy.NewEngine(policy from testPolicy, catalog of db,
// myanalyze.New(...)) behind a sqlpolicy.Holder. The table below lists
// exactly what testPolicy allows and denies for the statements the tests
// send. Tests that change decisions mid-session go through the table's
// hooks and must then use Holder.Swap with an edited policy instead:
// TestPreparedReexecuted (forget = a reload that narrows the role),
// TestSessionEnds (an agent leaves the policy), and the allow calls of
// TestLargePackets, TestVault and TestUpstreamLost (statements testPolicy
// would allow: add them to the role if the analyzer asks for it).
// TestLoadDataLocalNeverNegotiated deliberately allows what the analyzer
// denies, to test the wire's own defence; it keeps a table decider.
func newDecider(t testing.TB, db string, maxRows int) *tableDecider {
	d := newTableDecider()
	d.agents["analyst-bot"] = "analyst"
	d.agents["secret-bot"] = "analyst"
	d.allow("analyst", maxRows,
		"SELECT @@version_comment LIMIT 1",
		"SELECT DATABASE()",
		"SET NAMES utf8mb4",
		"SET autocommit=0", "SET autocommit=1", "SET AUTOCOMMIT = 0", "SET AUTOCOMMIT = 1",
		"BEGIN", "START TRANSACTION", "COMMIT", "ROLLBACK",
		"USE "+"`"+db+"`", "USE "+db,
		"SELECT id, item, amount FROM orders ORDER BY id",
		"SELECT id, item FROM orders WHERE id = ?",
		"SELECT id, item FROM orders WHERE id = 3",
		"SELECT count(*) FROM orders", "SELECT count(*) AS n FROM orders",
		"SELECT id, name FROM customers ORDER BY id",
		"SELECT id FROM big", "SELECT id FROM big LIMIT 5",
		"SELECT id, pad FROM big", "SELECT id, pad, SLEEP(0.001) FROM big",
		"SELECT id FROM orders WHERE id <= 2; SELECT id, name FROM customers ORDER BY id",
		"INSERT INTO orders (id, item, amount) VALUES (?, ?, ?)",
		"INSERT INTO orders (id, item, amount) VALUES (100, 'x', 1)",
		"INSERT INTO orders (id, item, amount) VALUES (101, 'y', 2)",
		"INSERT INTO orders (id, item, amount) VALUES (102, 'z', 3)",
		"SELECT `id` FROM `customers`", "SELECT `name` FROM `customers`",
		"SELECT 1",
	)
	d.denyColumn("analyst", "SELECT id, email FROM customers", db+".customers", "email", "pii.email")
	d.denyColumn("analyst", "SELECT email FROM customers WHERE id = ?", db+".customers", "email", "pii.email")
	d.denyTable("analyst", "SELECT * FROM secrets", sqlpolicy.VerbSelect, db+".secrets")
	d.denyTable("analyst", "DELETE FROM orders", sqlpolicy.VerbDelete, db+".orders")
	d.denyTable("analyst", "DELETE FROM orders WHERE id = ?", sqlpolicy.VerbDelete, db+".orders")
	d.denyTable("analyst", "SELECT id FROM orders; DELETE FROM orders", sqlpolicy.VerbDelete, db+".orders")
	return d
}

// env is one keyhole Server in front of a throwaway MariaDB database.
type env struct {
	t       testing.TB
	db      *testmy.DB
	srv     *mysqlproxy.Server
	addr    string
	signer  func(agent string, ttl time.Duration) string
	dec     *tableDecider
	audit   *fixture.Audit
	upUser  string // the upstream login keyhole uses
	upPW    string
	secret  string // secret-bot's agent secret
	keyPath string // token public key file
	auth    *identity.Auth
	src     creds.Source
	upAddr  string
}

type envOpts struct {
	limits   mysqlproxy.Limits
	maxRows  int
	tls      *tls.Config
	identity func(*identity.Config)
	logger   *slog.Logger
	creds    func(e *env) creds.Source // nil = the static upstream user
	failures *identity.Limiter
	dbs      []string // Upstream.Databases
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	db := testmy.New(t, setupSQL)
	pw := "up-" + testmy.RandHex(8)
	user := testmy.NewUser(t, pw, "ALL ON "+db.Name+".*")

	dir := t.TempDir()
	priv, err := identity.GenerateKey()
	require.NoError(t, err)
	keyPath := filepath.Join(dir, "token.key")
	require.NoError(t, identity.WriteKeyFile(keyPath, priv))
	secret := identity.NewSecret()
	icfg := identity.Config{
		Tokens: identity.TokenConfig{PublicKeyFile: keyPath + ".pub"},
		MySQL:  identity.MySQLConfig{Verifiers: map[string]string{"secret-bot": identity.NewMySQLVerifier(secret).String()}},
	}
	if o.identity != nil {
		o.identity(&icfg)
	}
	auth, err := identity.New(icfg)
	require.NoError(t, err)

	e := &env{t: t, db: db, upUser: user, upPW: pw, secret: secret, keyPath: keyPath}
	e.dec = newDecider(t, db.Name, o.maxRows)
	var src creds.Source = &creds.Static{User: user, Password: creds.Secret(pw)}
	if o.creds != nil {
		src = o.creds(e)
	}
	e.audit = &fixture.Audit{}
	level := slog.LevelWarn
	if os.Getenv("KEYHOLE_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if o.logger != nil {
		logger = o.logger
	}
	srv, err := mysqlproxy.New(mysqlproxy.Config{
		Decider:   e.dec,
		Auth:      auth,
		Creds:     src,
		Upstreams: map[string]mysqlproxy.Upstream{"shop": {Addr: testmy.Addr(), Database: db.Name, Databases: o.dbs}},
		Audit:     e.audit,
		Logger:    logger,
		Limits:    o.limits,
		TLS:       o.tls,
		Limiter:   o.failures,
		RSAKey:    testRSAKey(t),
	})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-served; !errors.Is(err, mysqlproxy.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	e.srv, e.addr, e.auth, e.src, e.upAddr = srv, ln.Addr().String(), auth, src, testmy.Addr()
	e.signer = func(agent string, ttl time.Duration) string {
		tok, err := identity.Mint(priv, identity.Claims{Agent: agent, TTL: ttl})
		if err != nil {
			panic(err)
		}
		return tok
	}
	return e
}

// cfg is a go-sql-driver config for agent through keyhole with a fresh token.
func (e *env) cfg(agent string) *mysql.Config {
	c := mysql.NewConfig()
	c.User = agent
	c.Passwd = e.signer(agent, time.Hour)
	c.Net = "tcp"
	c.Addr = e.addr
	c.DBName = e.db.Name
	c.Timeout = 10 * time.Second
	return c
}

// open returns a pool of connections through keyhole (one connection, so
// session state is the test's).
func (e *env) open(c *mysql.Config) *sql.DB {
	e.t.Helper()
	conn, err := mysql.NewConnector(c)
	require.NoError(e.t, err)
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(1)
	e.t.Cleanup(func() { _ = db.Close() })
	return db
}

// conn returns one dedicated connection through keyhole.
func (e *env) conn(c *mysql.Config) *sql.Conn {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sc, err := e.open(c).Conn(ctx)
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = sc.Close() })
	return sc
}

// direct is a root pool on the test database.
func (e *env) direct() *sql.DB {
	e.t.Helper()
	db, err := sql.Open("mysql", e.db.DSN)
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = db.Close() })
	return db
}

func (e *env) count(table string) int {
	e.t.Helper()
	var n int
	require.NoError(e.t, e.direct().QueryRow("SELECT count(*) FROM "+table).Scan(&n))
	return n
}

// errno is the MySQL error number of err (0 when it is none).
func errno(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

func sqlstate(err error) string {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return string(me.SQLState[:])
	}
	return ""
}

var _ = fmt.Sprintf

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

// testRSAKey is one 4096-bit key for every test server (generating one
// takes seconds).
func testRSAKey(t testing.TB) *rsa.PrivateKey {
	rsaOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 4096)
		if err != nil {
			panic(err)
		}
		rsaKey = k
	})
	return rsaKey
}

func testmyAdmin(t testing.TB) *sql.DB { return testmy.Admin(t) }

func itoa(n int) string { return fmt.Sprint(n) }

// serve runs srv on a fresh loopback listener until the test ends.
func serve(t testing.TB, srv *mysqlproxy.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-served; !errors.Is(err, mysqlproxy.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}
