package vaulte2e_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
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
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/gateway"
	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/internal/testpg"
	"github.com/keyholedb/keyhole/internal/testvault"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// shopSQL is the design's shop.
const shopSQL = fixture.ShopTables + `
INSERT INTO customers VALUES (1, 'Ada', 'ada@example.com', '123-45-6789'), (2, 'Bob', 'bob@example.com', '987-65-4321');
INSERT INTO orders SELECT g, 1 + g % 2, g * 1.5 FROM generate_series(1, 5) g;
INSERT INTO secrets VALUES (1, 'launch codes');
`

// Agents of the policy: both analysts, each with its own credential.
const (
	summarizer = "sales-summarizer"
	orderBot   = "order-bot"
)

// policyText is the design's example policy with a second agent; without
// drops summarizer (a reload that removes it).
func policyText(without string) string {
	p := fixture.PolicyRoles + "agents:\n"
	for _, a := range []string{summarizer, orderBot} {
		if a != without {
			p += fmt.Sprintf("  %s: {role: analyst}\n", a)
		}
	}
	return p
}

// opts shapes one env.
type opts struct {
	// TTLs of the Vault role (defaults 4s / 30s).
	defaultTTL, maxTTL time.Duration
	// noCatalogRole leaves keyhole's catalog role out of Vault.
	noCatalogRole bool
	// startErr, when set, expects gateway.New to fail and gets its error
	// (newEnv then returns nil).
	startErr func(error)
	// setupSQL runs in the database after the shop's tables, before the
	// catalog is read; "{{mgmt}}" in it names Vault's management login.
	setupSQL string
	// analystExtra are creation statements added to the analyst Vault
	// role's (what a DBA adds to what keyhole vault roles writes).
	analystExtra []string
	// analystSettings, when set, is the analyst role's settings list.
	analystSettings string
}

// env is one keyhole (a gateway in process) using Vault dynamic
// credentials for one throwaway database.
type env struct {
	t      *testing.T
	vault  *testvault.Server
	vdb    *testvault.Database
	proxy  *testvault.Proxy // between keyhole and Vault
	db     *testpg.DB
	g      *gateway.Gateway
	rec    *recordingSource
	logs   *fixture.SyncBuffer
	policy string // the policy file
	audit  string // the audit file
	addr   string
	key    ed25519.PrivateKey
	// tokens minted for agents (must not be logged either).
	tokMu  sync.Mutex
	tokens []string
}

func newEnv(t *testing.T, vs *testvault.Server, o opts) *env {
	t.Helper()
	if o.defaultTTL == 0 {
		o.defaultTTL = 4 * time.Second
	}
	if o.maxTTL == 0 {
		o.maxTTL = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	e := &env{t: t, vault: vs, logs: &fixture.SyncBuffer{},
		policy: filepath.Join(dir, "policy.yaml"), audit: filepath.Join(dir, "audit.jsonl")}

	// The management role before the database, so that it is dropped
	// after it (cleanups run last in, first out).
	mgmt := testpg.NewRole(t, "CREATEROLE PASSWORD 'mgmt'")
	e.db = testpg.New(t, shopSQL+fmt.Sprintf(`
GRANT USAGE ON SCHEMA public TO %[1]s WITH GRANT OPTION;
GRANT ALL ON ALL TABLES IN SCHEMA public TO %[1]s WITH GRANT OPTION;`, mgmt)+strings.ReplaceAll(o.setupSQL, "{{mgmt}}", mgmt))
	cat, err := catalog.LoadPostgresDSN(ctx, e.db.DSN)
	require.NoError(t, err)

	// One database secrets mount per env, so revoke-prefix and outages of
	// one test do not touch another's leases. The roles are what
	// `keyhole vault roles --apply` writes: the policy's, and keyhole's
	// catalog login.
	mount := "db-" + testvault.RandHex(4)
	e.vdb = vs.EnableDatabase(t, mount, "shop", e.db, mgmt, "mgmt")
	text := policyText("")
	if o.analystSettings != "" {
		text = strings.Replace(text, "    max_rows: 1000\n", "    max_rows: 1000\n    settings: "+o.analystSettings+"\n", 1)
		require.Contains(t, text, "settings:")
	}
	pol, _, err := sqlpolicy.ParsePolicy([]byte(text), "policy.yaml", cat)
	require.NoError(t, err)
	ropts := creds.RoleOptions{DBName: "shop", DefaultTTL: o.defaultTTL, MaxTTL: o.maxTTL}
	roles, err := creds.RolesForPolicy(pol, cat, ropts)
	require.NoError(t, err)
	require.Len(t, roles, 1)
	require.Equal(t, "analyst", roles[0].Name)
	roles[0].CreationStatements = append(roles[0].CreationStatements, o.analystExtra...)
	if !o.noCatalogRole {
		roles = append(roles, gateway.CatalogVaultRole(config.DefaultCatalogRole, "shop", gateway.CatalogSchemas(cat), ropts))
	}
	require.NoError(t, creds.WriteVaultRoles(ctx, vs.Client, mount, roles))
	require.NoError(t, os.WriteFile(e.policy, []byte(text), 0o600))

	e.proxy = vs.NewProxy(t)
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// Registered before the gateway, so it runs after the gateway has
	// stopped and logged everything.
	t.Cleanup(e.checkNoSecretsLogged)

	priv, err := identity.GenerateKey()
	require.NoError(t, err)
	keyPath := filepath.Join(dir, "token.key")
	require.NoError(t, identity.WriteKeyFile(keyPath, priv))
	e.key = priv

	cfg := &config.Config{
		Listen:    config.Listen{Postgres: "127.0.0.1:0"},
		TLS:       config.TLS{GenerateSelfSigned: true},
		Upstreams: map[string]config.Upstream{"shop": {URL: "postgres://127.0.0.1:5432/" + e.db.Name}},
		Creds: config.Creds{Vault: &config.Vault{VaultConfig: creds.VaultConfig{
			Addr:           e.proxy.Addr,
			Mount:          mount,
			Auth:           creds.VaultAuth{Token: creds.NewSecret(vs.Token)},
			RequestTimeout: 2 * time.Second,
		}}},
		Audit:  config.Audit{File: e.audit},
		Policy: config.Policy{File: e.policy, ReloadInterval: -1},
		Limits: config.Limits{ShutdownGrace: 5 * time.Second},
	}
	cfg.Identity.Tokens.PublicKeyFile = keyPath + ".pub"
	g, err := gateway.New(cfg, gateway.Options{Logger: logger, WrapCreds: func(s creds.Source) creds.Source {
		e.rec = &recordingSource{Source: s}
		return e.rec
	}})
	if o.startErr != nil {
		require.Error(t, err)
		o.startErr(err)
		return nil
	}
	require.NoError(t, err)
	e.g = g
	ran := make(chan error, 1)
	go func() { ran <- g.Run(context.Background()) }()
	t.Cleanup(func() {
		e.proxy.Set(testvault.Up) // closing the source revokes through the proxy
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, g.Shutdown(ctx))
		assert.NoError(t, <-ran)
		if t.Failed() {
			t.Logf("keyhole log:\n%s", e.logs.String())
		}
	})
	e.addr = g.Addr(config.DialectPostgres).String()
	return e
}

// setPolicy writes policyText(without) and reloads it, as SIGHUP does.
func (e *env) setPolicy(without string) {
	e.t.Helper()
	require.NoError(e.t, os.WriteFile(e.policy, []byte(policyText(without)), 0o600))
	require.NoError(e.t, e.g.Reload())
}

// config is a pgx config for agent connecting through keyhole with a fresh
// token, as application appName.
func (e *env) config(agent, appName string) *pgx.ConnConfig {
	e.t.Helper()
	tok, err := identity.Mint(e.key, identity.Claims{Agent: agent, TTL: time.Hour})
	require.NoError(e.t, err)
	e.tokMu.Lock()
	e.tokens = append(e.tokens, tok)
	e.tokMu.Unlock()
	cfg, err := pgx.ParseConfig(fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable&application_name=%s&connect_timeout=15",
		agent, tok, e.addr, e.db.Name, appName))
	require.NoError(e.t, err)
	return cfg
}

// dial connects agent through keyhole.
func (e *env) dial(agent, appName string) (*pgx.Conn, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, e.config(agent, appName))
	if err == nil {
		e.t.Cleanup(func() { _ = c.Close(context.Background()) })
	}
	return c, err
}

// connect is dial that must succeed.
func (e *env) connect(agent, appName string) *pgx.Conn {
	e.t.Helper()
	c, err := e.dial(agent, appName)
	require.NoError(e.t, err, "connect %s through keyhole", agent)
	return c
}

// admin is a superuser connection straight to the database.
func (e *env) admin() *pgx.Conn {
	e.t.Helper()
	c, err := pgx.Connect(context.Background(), e.db.DSN)
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// upstreamUsers lists the login names of the database's sessions whose
// client set application_name appName (keyhole puts "keyhole:<agent> "
// before it); a session whose role Vault already dropped (it is still
// exiting) is "(dropped role)".
func (e *env) upstreamUsers(appName string) []string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, e.db.DSN)
	require.NoError(e.t, err)
	defer c.Close(ctx)
	rows, err := c.Query(ctx, "SELECT coalesce(usename::text, $3) FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'keyhole:% ' || $2 ORDER BY 1", e.db.Name, appName, "(dropped role)")
	require.NoError(e.t, err)
	users, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(e.t, err)
	return users
}

// leaseIDs lists the leases Vault holds for the analyst role of this env.
func (e *env) leaseIDs() []string {
	e.t.Helper()
	return e.vdb.LeaseIDs(e.t, e.vault, "analyst")
}

// checkNoSecretsLogged: keyhole's log holds no database password it
// used, no Vault token, no agent token, and no value under a key that
// names a secret.
func (e *env) checkNoSecretsLogged() {
	t := e.t
	logs := e.logs.String()
	assert.NotEmpty(t, logs, "keyhole logged nothing: is the handler wired?")
	for _, l := range e.rec.all() {
		assert.NotContains(t, logs, l.password, "password of %s (agent %s) in keyhole's log", l.user, l.agent)
	}
	assert.NotContains(t, logs, e.vault.Token, "Vault token in keyhole's log")
	e.tokMu.Lock()
	for _, tok := range e.tokens {
		assert.NotContains(t, logs, tok, "agent token in keyhole's log")
	}
	e.tokMu.Unlock()
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if !assert.NoError(t, json.Unmarshal([]byte(line), &m), "log line is not JSON: %s", line) {
			continue
		}
		secretKeys(t, "", m, line)
	}
	if e.g == nil {
		return // keyhole did not start: no audit file
	}
	// Audit events neither.
	b, err := os.ReadFile(e.audit)
	require.NoError(t, err)
	assert.NotEmpty(t, b, "no audit events: is the audit file wired?")
	for _, l := range e.rec.all() {
		assert.NotContains(t, string(b), l.password, "password of %s in an audit event", l.user)
	}
}

// secretKeys fails t for any key naming a password, secret or token whose
// value is not empty or redacted.
func secretKeys(t *testing.T, prefix string, m map[string]any, line string) {
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			secretKeys(t, prefix+k+".", sub, line)
			continue
		}
		lk := strings.ToLower(k)
		if !strings.Contains(lk, "password") && !strings.Contains(lk, "secret") && lk != "token" && !strings.HasSuffix(lk, "_token") {
			continue
		}
		s := fmt.Sprint(v)
		assert.True(t, s == "" || s == "[redacted]", "log key %s%s has a value: %s", prefix, k, line)
	}
}

// recordingSource remembers every credential keyhole's source hands out,
// so tests can look for it where it must not be and use it directly.
type recordingSource struct {
	creds.Source
	mu     sync.Mutex
	leases []issued
}

type issued struct{ agent, user, password string }

func (r *recordingSource) Acquire(ctx context.Context, req creds.Request) (*creds.Lease, error) {
	l, err := r.Source.Acquire(ctx, req)
	if err == nil && l != nil {
		r.mu.Lock()
		r.leases = append(r.leases, issued{agent: req.Agent, user: l.User, password: l.Password.Reveal()})
		r.mu.Unlock()
	}
	return l, err
}

func (r *recordingSource) all() []issued {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]issued(nil), r.leases...)
}

// last is the latest credential handed out for agent.
func (r *recordingSource) last(agent string) (issued, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.leases) - 1; i >= 0; i-- {
		if r.leases[i].agent == agent {
			return r.leases[i], true
		}
	}
	return issued{}, false
}

// pgErr returns err's *pgconn.PgError, or nil.
func pgErr(err error) *pgconn.PgError {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe
	}
	return nil
}

func sqlState(err error) string {
	if pe := pgErr(err); pe != nil {
		return pe.Code
	}
	return ""
}

// count runs a count query and returns its result.
func count(ctx context.Context, c *pgx.Conn, sql string) (int64, error) {
	var n int64
	err := c.QueryRow(ctx, sql).Scan(&n)
	return n, err
}
