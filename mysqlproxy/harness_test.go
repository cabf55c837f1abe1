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
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/gateway"
	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/internal/testgateway"
	"github.com/keyholedb/keyhole/internal/testmy"
	"github.com/keyholedb/keyhole/mysqlproxy"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/myanalyze"
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

// testPolicy is the policy of the wire tests: %[1]s is the database,
// %[2]d max_rows, %[3]s the agents section.
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
    limits:
      statement_timeout: 90s
      idle_in_transaction_timeout: 1m
%[3]s`

const testAgents = `agents:
  analyst-bot: {role: analyst}
  other-bot: {role: analyst}
  secret-bot: {role: analyst}
`

// decider is the gateway's decision engine of the wire tests (the MySQL
// analyzer over the test database's catalog), recording the analyzer
// sessions it handed out.
type decider struct {
	sqlpolicy.Decider

	mu       sync.Mutex
	sessions []*myanalyze.Session
}

// NewSession keeps the session for lastSession.
func (d *decider) NewSession() sqlpolicy.Session {
	s := d.Decider.NewSession().(*myanalyze.Session)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sessions = append(d.sessions, s)
	return s
}

// SchemaChanged passes the front end's notice on to the gateway's router
// (embedding the Decider interface would hide it).
func (d *decider) SchemaChanged() {
	if n, ok := d.Decider.(sqlpolicy.SchemaNotifier); ok {
		n.SchemaChanged()
	}
}

// lastSession is the analyzer session of the newest connection. It is not
// safe for concurrent use: read it only while its connection is idle.
func (d *decider) lastSession() *myanalyze.Session {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sessions[len(d.sessions)-1]
}

// agentRevoker is the MySQL front end's RevokeAgent (the gateway's
// FrontEnd does not declare it).
type agentRevoker interface{ RevokeAgent(agent string) int }

// env is one keyhole gateway, with the MySQL front end only, in front of
// a throwaway MariaDB database.
type env struct {
	t       testing.TB
	db      *testmy.DB
	g       *gateway.Gateway
	fe      gateway.FrontEnd // the MySQL front end
	addr    string
	signer  func(agent string, ttl time.Duration) string
	dec     *decider
	policy  string // the policy file
	maxRows int
	audit   *fixture.Audit
	upUser  string // the upstream login keyhole uses
	upPW    string
	secret  string // secret-bot's agent secret
	keyPath string // token public key file
	src     creds.Source
	upAddr  string
}

type envOpts struct {
	limits config.Limits
	// maxRows is the role's max_rows (0: none).
	maxRows int
	tls     *tls.Config // nil: no TLS
	// caFile is tls.client_ca_file (with SPIFFE identities).
	caFile   string
	identity func(*identity.Config)
	logger   *slog.Logger
	creds    func(e *env) creds.Source // nil = the gateway's (the static upstream user)
	failures *identity.Limiter
	analyzer myanalyze.Options
	// decider replaces the real engine, for protocol corners it would not
	// produce (it gets the real one to wrap).
	decider func(real sqlpolicy.Decider) sqlpolicy.Decider
	// rawStatements audits statement texts as sent.
	rawStatements bool
	// upAddr replaces the upstream's address (a fake peer in front of
	// MariaDB); "" = MariaDB.
	upAddr string
}

// newEnv builds keyhole through the gateway library, as keyhole serve
// does, adjusting only what a test needs through the MySQL front end's
// FrontEndConfig. As keyhole serve configures a mysql:// upstream, agents
// may name its database only.
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

	e := &env{t: t, db: db, upUser: user, upPW: pw, secret: secret, keyPath: keyPath, upAddr: testmy.Addr(),
		maxRows: o.maxRows, policy: filepath.Join(dir, "policy.yaml"), audit: &fixture.Audit{}}
	e.setAgents(t, testAgents)
	level := slog.LevelWarn
	if os.Getenv("KEYHOLE_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if o.logger != nil {
		logger = o.logger
	}
	upAddr := testmy.Addr()
	if o.upAddr != "" {
		upAddr = o.upAddr
	}
	up, login, err := config.ParseUpstreamURL(fmt.Sprintf("mysql://%s:%s@%s/%s", user, pw, upAddr, db.Name))
	require.NoError(t, err)
	up.Login = login
	cfg := &config.Config{
		Listen:    config.Listen{MySQL: "127.0.0.1:0"},
		TLS:       config.TLS{GenerateSelfSigned: true, ClientCAFile: o.caFile},
		Upstreams: map[string]config.Upstream{"": up},
		Identity: identity.Config{
			Tokens: identity.TokenConfig{PublicKeyFile: keyPath + ".pub"},
			MySQL:  identity.MySQLConfig{Verifiers: map[string]string{"secret-bot": identity.NewMySQLVerifier(secret).Encode()}},
		},
		Audit:  config.Audit{File: filepath.Join(dir, "audit.jsonl")},
		Policy: config.Policy{File: e.policy, ReloadInterval: -1},
		Limits: o.limits,
	}
	if o.identity != nil {
		o.identity(&cfg.Identity)
	}
	mysqlFE := func(c gateway.FrontEndConfig) (gateway.FrontEnd, error) {
		c.Logger = logger
		c.TLS = o.tls
		c.RSAKey = testRSAKey(t)
		c.RawStatements = o.rawStatements
		c.Audit = audit.Tee(c.Audit, e.audit)
		if o.failures != nil {
			c.Limiter = o.failures
		}
		e.dec = &decider{Decider: c.Decider}
		c.Decider = e.dec
		if o.decider != nil {
			c.Decider = o.decider(e.dec)
		}
		e.src = c.Creds
		if o.creds != nil {
			c.Creds = o.creds(e)
		}
		fe, err := gateway.NewMySQLFrontEnd(c)
		if err == nil && testRelay != "" {
			fe.(interface{ SetRelayForTest(mysqlproxy.Relay) }).SetRelayForTest(testRelay)
		}
		e.fe = fe
		return fe, err
	}
	// The gateway's own start-up lines only when something fails.
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	e.g, e.addr = testgateway.Run(t, cfg, gateway.Options{
		Logger:    quiet,
		FrontEnds: map[string]func(gateway.FrontEndConfig) (gateway.FrontEnd, error){config.DialectMySQL: mysqlFE},
		NewAnalyzer: func(dialect string, cat *catalog.Catalog) (sqlpolicy.Analyzer, error) {
			return myanalyze.New(cat, o.analyzer), nil
		},
	}, config.DialectMySQL)
	e.signer = func(agent string, ttl time.Duration) string {
		tok, err := identity.Mint(priv, identity.Claims{Agent: agent, TTL: ttl})
		if err != nil {
			panic(err)
		}
		return tok
	}
	return e
}

// setAgents writes testPolicy with another agents section; the gateway
// reads it at start and at a reload.
func (e *env) setAgents(t testing.TB, agents string) {
	t.Helper()
	e.writePolicy(t, fmt.Sprintf(testPolicy, e.db.Name, e.maxRows, agents))
}

// setPolicy writes a policy of the caller's (%[1]s the database).
func (e *env) setPolicy(t testing.TB, text string) {
	t.Helper()
	e.writePolicy(t, fmt.Sprintf(text, e.db.Name))
}

func (e *env) writePolicy(t testing.TB, text string) {
	t.Helper()
	require.NoError(t, os.WriteFile(e.policy, []byte(text), 0o600))
}

// reload makes the gateway read the policy file again, as a change of the
// file does.
func (e *env) reload(t testing.TB) {
	t.Helper()
	require.NoError(t, e.g.ReloadPolicy())
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

// lockTable takes a write lock on table on a root connection until the
// returned function (or the test's end) releases it: statements of other
// sessions on it wait, without using the server's CPU, until then or
// until they are killed.
func (e *env) lockTable(table string) (unlock func()) {
	e.t.Helper()
	ctx := context.Background()
	c, err := e.direct().Conn(ctx)
	require.NoError(e.t, err)
	_, err = c.ExecContext(ctx, "LOCK TABLES "+table+" WRITE")
	require.NoError(e.t, err)
	var once sync.Once
	unlock = func() {
		once.Do(func() {
			_, _ = c.ExecContext(ctx, "UNLOCK TABLES")
			_ = c.Close()
		})
	}
	e.t.Cleanup(unlock)
	return unlock
}

// running counts the upstream statements of keyhole's login whose text
// is sql.
func (e *env) running(sql string) int {
	var n int
	_ = e.direct().QueryRow("SELECT count(*) FROM information_schema.PROCESSLIST WHERE USER = ? AND INFO = ?", e.upUser, sql).Scan(&n)
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
