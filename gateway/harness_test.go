package gateway_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/gateway"
	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/internal/testpg"
)

// upstream is a throwaway database and the login keyhole uses for it,
// which may do everything on its tables: what an agent may do is the
// policy's business.
type upstream struct {
	db    *testpg.DB
	login string
}

func newUpstream(t *testing.T, setupSQL string) upstream {
	t.Helper()
	// The role first: cleanups run last in, first out, so the database
	// (holding its grants) is dropped before it.
	login := testpg.NewRole(t, "")
	db := testpg.New(t, setupSQL+fmt.Sprintf(`
GRANT USAGE ON SCHEMA public TO %[1]s;
GRANT ALL ON ALL TABLES IN SCHEMA public TO %[1]s;
GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO %[1]s;`, login))
	return upstream{db: db, login: login}
}

// url is the upstream's --upstream style URL with its login.
func (u upstream) url() string { return testpg.WithUser(u.db.DSN, u.login, "") }

// env is a gateway running in process.
type env struct {
	t      *testing.T
	g      *gateway.Gateway
	key    ed25519.PrivateKey
	policy string // the policy file
	audit  string // the audit file
	logs   *fixture.SyncBuffer
	hup    chan os.Signal
	ran    chan error
}

// setup shapes a configuration before New.
type setup func(c *config.Config)

// start writes policyText to a file, configures a gateway with upstreams
// (name → URL with login), a token key, an audit file and loopback
// listeners (policy polling off unless a setup turns it on), and runs it
// until the test ends.
func start(t *testing.T, ups map[string]string, policyText string, opts ...setup) *env {
	t.Helper()
	e, err := tryStart(t, ups, policyText, opts...)
	require.NoError(t, err)
	return e
}

func tryStart(t *testing.T, ups map[string]string, policyText string, opts ...setup) (*env, error) {
	t.Helper()
	return build(t, false, gateway.Options{}, ups, policyText, opts...)
}

// build is tryStart with gateway options (its Logger and Reload are the
// env's) that runs the gateway unless noRun.
func build(t *testing.T, noRun bool, gopts gateway.Options, ups map[string]string, policyText string, opts ...setup) (*env, error) {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, policy: filepath.Join(dir, "policy.yaml"), audit: filepath.Join(dir, "audit.jsonl"),
		logs: &fixture.SyncBuffer{}, hup: make(chan os.Signal, 1), ran: make(chan error, 1)}
	require.NoError(t, os.WriteFile(e.policy, []byte(policyText), 0o600))
	priv, err := identity.GenerateKey()
	require.NoError(t, err)
	keyFile := filepath.Join(dir, "token.key")
	require.NoError(t, identity.WriteKeyFile(keyFile, priv))
	e.key = priv

	cfg := &config.Config{Upstreams: map[string]config.Upstream{}}
	for name, raw := range ups {
		u, login, err := config.ParseUpstreamURL(raw)
		require.NoError(t, err)
		u.Login = login
		cfg.Upstreams[name] = u
	}
	cfg.Listen = config.Listen{Postgres: "127.0.0.1:0", Admin: "127.0.0.1:0"}
	cfg.TLS.GenerateSelfSigned = true
	cfg.Identity.Tokens.PublicKeyFile = keyFile + ".pub"
	cfg.Audit.File = e.audit
	cfg.Policy = config.Policy{File: e.policy, ReloadInterval: -1}
	cfg.Limits.ShutdownGrace = 5 * time.Second
	for _, o := range opts {
		o(cfg)
	}
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	gopts.Logger, gopts.Reload = log, e.hup
	g, err := gateway.New(cfg, gopts)
	if err != nil {
		return nil, err
	}
	e.g = g
	if !noRun {
		go func() { e.ran <- g.Run(context.Background()) }()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, g.Shutdown(ctx))
		if t.Failed() {
			t.Logf("keyhole log:\n%s", e.logs.String())
		}
	})
	return e, nil
}

// writePolicy replaces the policy file.
func (e *env) writePolicy(text string) {
	e.t.Helper()
	require.NoError(e.t, os.WriteFile(e.policy, []byte(text), 0o600))
}

// dial connects agent through keyhole to database db.
func (e *env) dial(agent, db string) (*pgx.Conn, error) {
	e.t.Helper()
	return e.dialClaims(identity.Claims{Agent: agent, TTL: time.Hour}, db)
}

// dialClaims connects through keyhole to database db with a token of
// these claims.
func (e *env) dialClaims(claims identity.Claims, db string) (*pgx.Conn, error) {
	e.t.Helper()
	agent := claims.Agent
	tok, err := identity.Mint(e.key, claims)
	require.NoError(e.t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=require&connect_timeout=15", agent, tok, e.g.Addr(config.DialectPostgres), db))
	if err == nil {
		e.t.Cleanup(func() { _ = c.Close(context.Background()) })
	}
	return c, err
}

func (e *env) connect(agent, db string) *pgx.Conn {
	e.t.Helper()
	c, err := e.dial(agent, db)
	require.NoError(e.t, err, "connect %s to %s through keyhole", agent, db)
	return c
}

// waitLog waits until keyhole logs a line with every one of subs.
func (e *env) waitLog(subs ...string) string {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, line := range strings.Split(e.logs.String(), "\n") {
			all := line != ""
			for _, s := range subs {
				all = all && strings.Contains(line, s)
			}
			if all {
				return line
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("keyhole did not log %q within 10s\n%s", subs, e.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// query runs sql and returns its one text value, or the SQLSTATE of its
// error.
func query(c *pgx.Conn, sql string) string {
	var v string
	if err := c.QueryRow(context.Background(), sql).Scan(&v); err != nil {
		return sqlState(err)
	}
	return v
}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	if err != nil {
		return "error: " + err.Error()
	}
	return ""
}

// adminExec runs sql as the superuser in the upstream database.
func (u upstream) adminExec(t *testing.T, sql string) (tag pgconn.CommandTag, err error) {
	t.Helper()
	u.asAdmin(t, func(ctx context.Context, c *pgx.Conn) { tag, err = c.Exec(ctx, sql) })
	return tag, err
}

// adminScan reads the one row of query, as the superuser in the upstream
// database, into dest.
func (u upstream) adminScan(t *testing.T, query string, args []any, dest ...any) {
	t.Helper()
	u.asAdmin(t, func(ctx context.Context, c *pgx.Conn) {
		require.NoError(t, c.QueryRow(ctx, query, args...).Scan(dest...))
	})
}

// asAdmin runs f on a new superuser connection to the upstream database,
// within 30 s.
func (u upstream) asAdmin(t *testing.T, f func(context.Context, *pgx.Conn)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, u.db.DSN)
	require.NoError(t, err)
	defer c.Close(ctx)
	f(ctx, c)
}
