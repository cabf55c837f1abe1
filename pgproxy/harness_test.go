package pgproxy_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/internal/testpg"
	"github.com/keyholedb/keyhole/pgproxy"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

const setupSQL = `
CREATE TABLE orders (id int PRIMARY KEY, item text NOT NULL, amount numeric NOT NULL);
INSERT INTO orders SELECT g, 'item' || g, g * 1.5 FROM generate_series(1, 20) g;
CREATE TABLE customers (id int PRIMARY KEY, name text, email text);
INSERT INTO customers VALUES (1, 'ann', 'ann@example.com'), (2, 'bob', 'bob@example.com');
CREATE TABLE secrets (id int, value text);
INSERT INTO secrets VALUES (1, 'hunter2');
`

// env is one keyhole Server in front of a throwaway database.
type env struct {
	t       testing.TB
	db      *testpg.DB
	srv     *pgproxy.Server
	addr    string
	key     []byte // ed25519 private key for minting tokens
	signer  func(agent string, ttl time.Duration) string
	cat     *catalog.Catalog
	holder  *sqlpolicy.Holder
	maxRows int
	audit   *fixture.Audit
	src     creds.Source
}

type envOpts struct {
	limits  pgproxy.Limits
	maxRows int
	tls     *tls.Config
	// identity adjusts the identity config (tokens are always set up).
	identity func(*identity.Config)
	limiter  *identity.Limiter // nil: the Server's default
	logger   *slog.Logger
	metrics  pgproxy.Metrics
	raw      bool // audit raw statements
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	return newEnvWith(t, o, nil)
}

// newEnvWith lets wrap replace the credential source (it gets the env
// with its static source filled in).
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
	icfg := identity.Config{Tokens: identity.TokenConfig{PublicKeyFile: keyPath + ".pub"}}
	if o.identity != nil {
		o.identity(&icfg)
	}
	auth, err := identity.New(icfg)
	require.NoError(t, err)

	var src creds.Source = &creds.Static{User: role, Password: creds.Secret("upstream-secret-pw")}
	if wrap != nil {
		src = wrap(&env{src: src})
	}
	cat, err := catalog.LoadPostgresDSN(context.Background(), db.DSN)
	require.NoError(t, err)
	e0 := &env{t: t, cat: cat, maxRows: o.maxRows}
	e0.holder = sqlpolicy.NewHolder(e0.engine(true))
	rec := &fixture.Audit{}
	level := slog.LevelWarn
	if os.Getenv("KEYHOLE_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if o.logger != nil {
		logger = o.logger
	}
	srv, err := pgproxy.New(pgproxy.Config{
		Decider:       e0.holder,
		Auth:          auth,
		Limiter:       o.limiter,
		Creds:         src,
		Upstreams:     map[string]pgproxy.Upstream{"": {Addr: "127.0.0.1:5432", Database: db.Name}},
		Audit:         rec,
		Logger:        logger,
		Limits:        o.limits,
		TLS:           o.tls,
		Metrics:       o.metrics,
		RawStatements: o.raw,
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
		err := <-served
		if !errors.Is(err, pgproxy.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	e := e0
	e.db, e.srv, e.addr, e.audit, e.src = db, srv, ln.Addr().String(), rec, src
	e.signer = func(agent string, ttl time.Duration) string {
		tok, err := identity.Mint(priv, identity.Claims{Agent: agent, TTL: ttl})
		if err != nil {
			panic(err)
		}
		return tok
	}
	return e
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
	cfg, err := pgx.ParseConfig(e.dsn("analyst-bot"))
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

// engine builds the real policy engine over the test database's catalog;
// withAnalyst adds the agent the tests mostly connect as.
func (e *env) engine(withAnalyst bool) *sqlpolicy.Engine {
	src := fmt.Sprintf(testPolicy, e.maxRows)
	if withAnalyst {
		src += "  analyst-bot: {role: analyst}\n"
	}
	p, _, err := sqlpolicy.ParsePolicy([]byte(src), "test-policy.yaml", e.cat)
	require.NoError(e.t, err)
	return sqlpolicy.NewEngine(p, e.cat, pganalyze.New(e.cat, pganalyze.Options{}), sqlpolicy.EngineOptions{})
}
