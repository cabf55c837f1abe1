package pgproxy_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/gateway"
	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/internal/testgateway"
	"github.com/keyholedb/keyhole/internal/testpg"
	"github.com/keyholedb/keyhole/pgproxy"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

const setupSQL = `
CREATE TABLE orders (id int PRIMARY KEY, item text NOT NULL, amount numeric NOT NULL);
INSERT INTO orders SELECT g, 'item' || g, g * 1.5 FROM generate_series(1, 20) g;
CREATE TABLE customers (id int PRIMARY KEY, name text, email text);
INSERT INTO customers VALUES (1, 'ann', 'ann@example.com'), (2, 'bob', 'bob@example.com');
CREATE TABLE secrets (id int, value text);
INSERT INTO secrets VALUES (1, 'hunter2');
`

// testRelay is the relay (Limits.Relay) every env's front end uses:
// TestMain runs the package's tests once per relay, or only against the
// one KEYHOLE_TEST_RELAY names.
var testRelay string

func TestMain(m *testing.M) {
	relays := []string{config.RelayLoop, config.RelayGoroutine}
	if r := os.Getenv("KEYHOLE_TEST_RELAY"); r != "" {
		relays = []string{r}
	}
	code := 0
	for _, r := range relays {
		testRelay = r
		fmt.Fprintf(os.Stderr, "pgproxy tests: relay %q\n", r)
		if c := m.Run(); c != 0 {
			code = c
		}
	}
	os.Exit(code)
}

// env is one keyhole gateway, with the Postgres front end only, in front
// of a throwaway database.
type env struct {
	t       testing.TB
	db      *testpg.DB
	g       *gateway.Gateway
	fe      gateway.FrontEnd // the Postgres front end
	addr    string
	signer  func(agent string, ttl time.Duration) string
	policy  string // the policy file
	maxRows int
	audit   *fixture.Audit
	src     creds.Source // the gateway's credential source
	upUser  string       // the upstream role keyhole logs in as
}

type envOpts struct {
	limits  config.Limits
	maxRows int
	// tls is keyhole.yaml's tls section; without a certificate the front
	// end offers no TLS.
	tls config.TLS
	// identity adjusts the identity config (tokens are always set up).
	identity func(*identity.Config)
	limiter  *identity.Limiter // nil: the gateway's
	logger   *slog.Logger
	metrics  pgproxy.Metrics // nil: the gateway's
	raw      bool            // audit raw statements
	// noAuditCopy: e.audit keeps no events (a test measuring memory).
	noAuditCopy bool
	// decider, when set, wraps the gateway's decider.
	decider func(sqlpolicy.Decider) sqlpolicy.Decider
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	return newEnvWith(t, o, nil)
}

// newEnvWith builds keyhole through the gateway library, as keyhole serve
// does; wrap, when set, replaces the credential source the front end uses
// (it gets the env with the gateway's source filled in). The catalog is
// read with the gateway's own.
func newEnvWith(t testing.TB, o envOpts, wrap func(*env) creds.Source) *env {
	t.Helper()
	db := testpg.New(t, setupSQL)
	role := testpg.NewRole(t, "PASSWORD 'upstream-secret-pw'")
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, db.DSN)
	require.NoError(t, err)
	_, err = admin.Exec(ctx, fmt.Sprintf("GRANT ALL ON ALL TABLES IN SCHEMA public TO %s", role))
	require.NoError(t, err)
	require.NoError(t, admin.Close(ctx))
	t.Cleanup(func() {
		// The role owns no objects, but privileges on this database's
		// tables must go before the role can be dropped.
		if c, err := pgx.Connect(context.Background(), db.DSN); err == nil {
			_, _ = c.Exec(context.Background(), "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "+role)
			_ = c.Close(context.Background())
		}
	})

	dir := t.TempDir()
	priv, err := identity.GenerateKey()
	require.NoError(t, err)
	keyPath := filepath.Join(dir, "token.key")
	require.NoError(t, identity.WriteKeyFile(keyPath, priv))

	e := &env{t: t, db: db, upUser: role, maxRows: o.maxRows, policy: filepath.Join(dir, "policy.yaml"), audit: &fixture.Audit{}}
	e.writePolicy(true)
	level := slog.LevelWarn
	if os.Getenv("KEYHOLE_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if o.logger != nil {
		logger = o.logger
	}
	cfg := &config.Config{
		Listen:    config.Listen{Postgres: "127.0.0.1:0"},
		TLS:       o.tls,
		Upstreams: map[string]config.Upstream{"": upstream(t, testpg.WithUser(db.DSN, role, "upstream-secret-pw"))},
		Identity:  identity.Config{Tokens: identity.TokenConfig{PublicKeyFile: keyPath + ".pub"}},
		Audit:     config.Audit{File: filepath.Join(dir, "audit.jsonl"), RawStatements: o.raw},
		Policy:    config.Policy{File: e.policy, ReloadInterval: -1},
		Limits:    o.limits,
	}
	if cfg.Limits.Relay == "" {
		cfg.Limits.Relay = testRelay
	}
	if o.identity != nil {
		o.identity(&cfg.Identity)
	}
	if cfg.TLS.CertFile == "" {
		cfg.TLS.GenerateSelfSigned = true // and not offered: see below
	}
	postgres := func(c gateway.FrontEndConfig) (gateway.FrontEnd, error) {
		c.Logger = logger
		if o.tls.CertFile == "" {
			c.TLS = nil
		}
		if !o.noAuditCopy {
			c.Audit = audit.Tee(c.Audit, e.audit)
		}
		if o.limiter != nil {
			c.Limiter = o.limiter
		}
		if o.metrics != nil {
			c.Metrics = o.metrics
		}
		if o.decider != nil {
			c.Decider = o.decider(c.Decider)
		}
		e.src = c.Creds
		if wrap != nil {
			c.Creds = wrap(e)
		}
		fe, err := gateway.NewPostgresFrontEnd(c)
		e.fe = fe
		return fe, err
	}
	// The gateway's own start-up lines (such as the warning about its
	// self-signed certificate, which these tests do not offer) only when
	// something fails.
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	e.g, e.addr = run(t, cfg, gateway.Options{Logger: quiet, FrontEnds: map[string]func(gateway.FrontEndConfig) (gateway.FrontEnd, error){
		config.DialectPostgres: postgres,
	}})
	e.signer = func(agent string, ttl time.Duration) string {
		tok, err := identity.Mint(priv, identity.Claims{Agent: agent, TTL: ttl})
		if err != nil {
			panic(err)
		}
		return tok
	}
	return e
}

// upstream is the keyhole.yaml upstream of a --upstream style URL.
func upstream(t testing.TB, url string) config.Upstream {
	t.Helper()
	u, login, err := config.ParseUpstreamURL(url)
	require.NoError(t, err)
	u.Login = login
	return u
}

// run starts a gateway for cfg until the test ends and returns it with
// its Postgres address.
func run(t testing.TB, cfg *config.Config, opts gateway.Options) (*gateway.Gateway, string) {
	t.Helper()
	return testgateway.Run(t, cfg, opts, config.DialectPostgres)
}

// writePolicy writes the test policy; withAnalyst adds the agent the tests
// mostly connect as.
func (e *env) writePolicy(withAnalyst bool) {
	e.t.Helper()
	src := fmt.Sprintf(testPolicy, e.maxRows)
	if withAnalyst {
		src += "  analyst-bot: {role: analyst}\n"
	}
	e.setPolicy(src)
}

// ordersRevoked returns the policy file's text and the same policy with
// the analyst role's select on public.orders taken away, for tests that
// narrow the policy under something keyhole allowed before.
func (e *env) ordersRevoked() (policy, narrowed string) {
	e.t.Helper()
	text, err := os.ReadFile(e.policy)
	require.NoError(e.t, err)
	narrowed = strings.Replace(string(text), "- select: [public.orders, public.customers]", "- select: [public.customers]", 1)
	require.NotEqual(e.t, string(text), narrowed)
	return string(text), narrowed
}

// allowAnalyst adds rules ("update: [public.x]") to the analyst role's
// allow list and makes the gateway read the policy again.
func (e *env) allowAnalyst(rules ...string) {
	e.t.Helper()
	text, err := os.ReadFile(e.policy)
	require.NoError(e.t, err)
	const anchor = "- insert: [public.orders]"
	widened := strings.Replace(string(text), anchor, anchor+"\n      - "+strings.Join(rules, "\n      - "), 1)
	require.NotEqual(e.t, string(text), widened)
	e.reloadPolicy(widened)
}

// reloadPolicy replaces the policy file and makes the gateway read it.
func (e *env) reloadPolicy(text string) {
	e.t.Helper()
	e.setPolicy(text)
	require.NoError(e.t, e.g.ReloadPolicy())
}

// deniedStatements are the texts of the statement events audited as
// denied so far, in order.
func (e *env) deniedStatements() []string {
	var denied []string
	for _, ev := range e.audit.Events() {
		if ev.Kind == audit.KindStatement && ev.Decision == sqlpolicy.Deny {
			denied = append(denied, ev.Statement)
		}
	}
	return denied
}

// setPolicy replaces the policy file (the gateway reads it at New and at
// a reload).
func (e *env) setPolicy(text string) {
	e.t.Helper()
	require.NoError(e.t, os.WriteFile(e.policy, []byte(text), 0o600))
}

// lockOrders holds an ACCESS EXCLUSIVE lock on orders from a direct
// connection, so statements on orders through keyhole block (without
// burning CPU) until release is called. The policy denies pg_sleep.
func (e *env) lockOrders() (release func()) {
	e.t.Helper()
	ctx := context.Background()
	d, err := pgx.Connect(ctx, e.db.DSN)
	require.NoError(e.t, err)
	tx, err := d.Begin(ctx)
	require.NoError(e.t, err)
	_, err = tx.Exec(ctx, "LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
	require.NoError(e.t, err)
	var once sync.Once
	release = func() {
		once.Do(func() {
			_ = tx.Rollback(ctx)
			_ = d.Close(ctx)
		})
	}
	e.t.Cleanup(release)
	return release
}

// waiting counts statements of keyhole's upstream sessions that wait for
// the lock on orders.
func (e *env) waiting() int {
	e.t.Helper()
	d, err := pgx.Connect(context.Background(), e.db.DSN)
	require.NoError(e.t, err)
	defer d.Close(context.Background())
	var n int
	require.NoError(e.t, d.QueryRow(context.Background(),
		"SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND state = 'active'").Scan(&n))
	return n
}

// dsn is a client DSN for agent with a fresh token.
func (e *env) dsn(agent string) string {
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", agent, e.signer(agent, time.Hour), e.addr, e.db.Name)
}

func (e *env) connect(mode pgx.QueryExecMode) *pgx.Conn {
	e.t.Helper()
	return e.connectAs("analyst-bot", mode)
}

// connectAs connects as agent with a fresh token.
func (e *env) connectAs(agent string, mode pgx.QueryExecMode) *pgx.Conn {
	e.t.Helper()
	cfg, err := pgx.ParseConfig(e.dsn(agent))
	require.NoError(e.t, err)
	cfg.DefaultQueryExecMode = mode
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// direct connects straight to the test database as the superuser.
func (e *env) direct() *pgx.Conn {
	e.t.Helper()
	c, err := pgx.Connect(context.Background(), e.db.DSN)
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

const testPolicy = `
labels:
  public.customers.email: [pii.email]
  public.secrets: [secret]
roles:
  analyst:
    upstream: shop
    allow:
      - select: [public.orders, public.customers]
      - insert: [public.orders]
      - copy: [public.orders]
    deny_labels: [pii.*, secret]
    max_rows: %d
agents:
  scram-bot: {role: analyst}
  scram-other: {role: analyst}
`
