package creds_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/internal/testpg"
	"github.com/keyholedb/keyhole/internal/testvault"
)

// shopSQL is the design's shop with a row in each table.
const shopSQL = fixture.ShopTables + `
INSERT INTO customers VALUES (1, 'Ada', 'ada@example.com', '123-45-6789');
INSERT INTO orders VALUES (1, 1, 9.99);
INSERT INTO secrets VALUES (1, 'launch codes');
`

// env is a Postgres database, a management role Vault logs in as, and a
// Vault dev server with the database secrets engine pointed at them.
type env struct {
	db    *testpg.DB
	vault *testvault.Server
	vdb   *testvault.Database
	mgmt  string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, shopSQL)
}

// newEnvWith is newEnv with setupSQL for the database.
func newEnvWith(t *testing.T, setupSQL string) *env {
	t.Helper()
	vs := testvault.Start(t) // first: skips before any set-up without bin/vault
	// The role before the database, so that it is dropped after it.
	mgmt := testpg.NewRole(t, "CREATEROLE PASSWORD 'mgmt'")
	// Vault's management user may pass on every privilege on every
	// schema's objects (what the generated roles grant).
	db := testpg.New(t, setupSQL+fmt.Sprintf(`
DO $$ DECLARE s name; BEGIN
  FOR s IN SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\_%%' AND nspname <> 'information_schema' LOOP
    EXECUTE format('GRANT USAGE ON SCHEMA %%I TO %[1]s WITH GRANT OPTION', s);
    EXECUTE format('GRANT ALL ON ALL TABLES IN SCHEMA %%I TO %[1]s WITH GRANT OPTION', s);
    EXECUTE format('GRANT ALL ON ALL SEQUENCES IN SCHEMA %%I TO %[1]s WITH GRANT OPTION', s);
    EXECUTE format('GRANT ALL ON ALL ROUTINES IN SCHEMA %%I TO %[1]s WITH GRANT OPTION', s);
  END LOOP;
END $$;
GRANT pg_signal_backend TO %[1]s;`, mgmt))
	vdb := vs.EnableDatabase(t, "database", "shop", db, mgmt, "mgmt")
	return &env{db: db, vault: vs, vdb: vdb, mgmt: mgmt}
}

// role writes a Vault role that may read every table in public.
func (e *env) role(t *testing.T, name string, ttl, maxTTL time.Duration) {
	t.Helper()
	e.vdb.WriteRole(t, e.vault, name, testvault.Role{
		CreationStatements: []string{
			`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`,
			`GRANT USAGE ON SCHEMA public TO "{{name}}";`,
			`GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";`,
		},
		RevocationStatements: []string{
			`REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{{name}}";`,
			`REVOKE USAGE ON SCHEMA public FROM "{{name}}";`,
			`DROP ROLE IF EXISTS "{{name}}";`,
		},
		DefaultTTL: ttl,
		MaxTTL:     maxTTL,
	})
}

// source builds a Vault source talking to addr (the server or a proxy).
func (e *env) source(t *testing.T, addr string, mod func(*creds.VaultConfig)) (*creds.Vault, *fixture.SyncBuffer) {
	t.Helper()
	logs := &fixture.SyncBuffer{}
	cfg := creds.VaultConfig{
		Addr:           addr,
		Auth:           creds.VaultAuth{Token: creds.NewSecret(e.vault.Token)},
		RequestTimeout: 2 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	v, err := creds.NewVault(cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, v.Close())
		assert.NotContains(t, logs.String(), e.vault.Token, "vault token in logs")
	})
	return v, logs
}

// login connects to the test database as user/password and returns the
// user name the server sees for the session.
func (e *env) login(t *testing.T, l *creds.Lease) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, testpg.WithUser(e.db.DSN, l.User, l.Password.Reveal()))
	if err != nil {
		return "", err
	}
	defer c.Close(ctx)
	var user string
	err = c.QueryRow(ctx, "SELECT usename FROM pg_stat_activity WHERE pid = pg_backend_pid()").Scan(&user)
	return user, err
}

// leaseIDs lists the leases Vault holds for a role.
func (e *env) leaseIDs(t *testing.T, role string) []string {
	t.Helper()
	return e.vdb.LeaseIDs(t, e.vault, role)
}

// waitRenewedPast waits until Vault's record of lease shows a renewal
// more than ttl after the lease was issued: without renewals Vault would
// have expired it by then.
func (e *env) waitRenewedPast(t *testing.T, lease string, ttl, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		sec, err := e.vault.Client.Sys().Lookup(lease)
		if err != nil || sec == nil {
			return false
		}
		issued, err1 := time.Parse(time.RFC3339Nano, fmt.Sprint(sec.Data["issue_time"]))
		renewed, err2 := time.Parse(time.RFC3339Nano, fmt.Sprint(sec.Data["last_renewal"]))
		return err1 == nil && err2 == nil && renewed.Sub(issued) > ttl
	}, within, 100*time.Millisecond, "lease %s was not renewed past its first TTL of %s", lease, ttl)
}

func waitDone(t *testing.T, l *creds.Lease, within time.Duration) error {
	t.Helper()
	select {
	case <-l.Done:
		return l.Cause()
	case <-time.After(within):
		t.Fatalf("lease of %s still live after %s", l.User, within)
		return nil
	}
}

func assertLive(t *testing.T, l *creds.Lease) {
	t.Helper()
	select {
	case <-l.Done:
		t.Fatalf("lease of %s ended: %v", l.User, l.Cause())
	default:
	}
}

func TestVaultAcquire(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.role(t, "analyst", time.Minute, 10*time.Minute)
	v, logs := e.source(t, e.vault.Addr, nil)
	ctx := context.Background()

	l1, err := v.Acquire(ctx, creds.Request{Agent: "summarizer", Role: "analyst"})
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(l1.User, "v-analyst-"), l1.User)
	ok, err := testvault.VerifyPassword(ctx, e.db.DSN, l1.User, l1.Password.Reveal())
	require.NoError(t, err)
	assert.True(t, ok, "postgres stores the password vault handed out")
	seen, err := e.login(t, l1)
	require.NoError(t, err)
	assert.Equal(t, l1.User, seen, "pg_stat_activity shows the vault user")

	// Another session of the same agent shares the lease.
	l2, err := v.Acquire(ctx, creds.Request{Agent: "summarizer", Role: "analyst"})
	require.NoError(t, err)
	assert.Equal(t, l1.User, l2.User)
	assert.Len(t, e.leaseIDs(t, "analyst"), 1)

	// Another agent gets its own.
	l3, err := v.Acquire(ctx, creds.Request{Agent: "reporter", Role: "analyst"})
	require.NoError(t, err)
	assert.NotEqual(t, l1.User, l3.User)
	assert.Len(t, e.leaseIDs(t, "analyst"), 2)

	require.NoError(t, v.Healthy())
	for _, l := range []*creds.Lease{l1, l2, l3} {
		assertLive(t, l)
		assert.NotContains(t, fmt.Sprintf("%v %+v", l, l), l.Password.Reveal())
		assert.NotContains(t, logs.String(), l.Password.Reveal())
	}
	l1.Release()
	l2.Release()

	// Close revokes every lease, used or not, and ends the sessions.
	require.NoError(t, v.Close())
	assert.ErrorIs(t, waitDone(t, l3, time.Second), creds.ErrClosed)
	assert.False(t, e.db.RoleExists(t, l1.User))
	assert.False(t, e.db.RoleExists(t, l3.User))
	assert.Empty(t, e.leaseIDs(t, "analyst"))

	_, err = v.Acquire(ctx, creds.Request{Agent: "summarizer", Role: "analyst"})
	assert.ErrorIs(t, err, creds.ErrUnavailable)
	assert.ErrorIs(t, err, creds.ErrClosed)
}

func TestVaultRoleMapAndMissingRole(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.role(t, "ro", time.Minute, 10*time.Minute)
	v, _ := e.source(t, e.vault.Addr, func(c *creds.VaultConfig) { c.RoleMap = map[string]string{"analyst": "ro"} })
	var failures atomic.Int32 // keyhole_vault_errors_total
	v.OnError(func() { failures.Add(1) })
	l, err := v.Acquire(context.Background(), creds.Request{Agent: "a", Role: "analyst"})
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(l.User, "v-ro-"), l.User)
	l.Release()
	assert.Zero(t, failures.Load())

	_, err = v.Acquire(context.Background(), creds.Request{Agent: "a", Role: "nosuchrole"})
	require.ErrorIs(t, err, creds.ErrUnavailable)
	assert.Positive(t, failures.Load(), "the failed request is reported")
	var ve *creds.VaultError
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, 400, ve.Status)
	assert.NotContains(t, err.Error(), "unknown role", "no vault error text")
}

func TestVaultRenewalAndMaxTTL(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Renewed every ~1.3s; capped after 10s.
	e.role(t, "analyst", 4*time.Second, 10*time.Second)
	v, _ := e.source(t, e.vault.Addr, nil)
	ctx := context.Background()
	req := creds.Request{Agent: "a", Role: "analyst"}

	l1, err := v.Acquire(ctx, req)
	require.NoError(t, err)
	defer l1.Release()
	// Vault's record of the lease shows keyhole's renewals: wait until one
	// came later than the first TTL would have let the lease live.
	ids := e.leaseIDs(t, "analyst")
	require.Len(t, ids, 1)
	e.waitRenewedPast(t, ids[0], 4*time.Second, 10*time.Second)
	assertLive(t, l1)
	assert.Len(t, e.leaseIDs(t, "analyst"), 1)
	assert.True(t, e.db.RoleExists(t, l1.User))
	_, err = e.login(t, l1)
	require.NoError(t, err)

	// Near the max TTL new sessions get a fresh lease, while l1 lives on
	// until Vault expires it.
	var l2 *creds.Lease
	require.Eventually(t, func() bool {
		l, err := v.Acquire(ctx, req)
		if err != nil {
			return false
		}
		if l.User == l1.User {
			l.Release()
			return false
		}
		l2 = l
		return true
	}, 6*time.Second, 100*time.Millisecond)
	defer l2.Release()
	assert.ErrorIs(t, waitDone(t, l1, 5*time.Second), creds.ErrLeaseExpired)
	assertLive(t, l2)
	_, err = e.login(t, l2)
	require.NoError(t, err)
}

func TestVaultLeaseRevokedInVault(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.role(t, "analyst", 3*time.Second, time.Minute)
	v, _ := e.source(t, e.vault.Addr, nil)
	ctx := context.Background()
	req := creds.Request{Agent: "a", Role: "analyst"}
	l1, err := v.Acquire(ctx, req)
	require.NoError(t, err)
	defer l1.Release()

	ids := e.leaseIDs(t, "analyst")
	require.Len(t, ids, 1)
	require.NoError(t, e.vault.Client.Sys().Revoke(ids[0]))
	assert.False(t, e.db.RoleExists(t, l1.User), "vault ran the revocation statements")

	// Detected at the next renewal: within a third of the TTL (+ request).
	assert.ErrorIs(t, waitDone(t, l1, 3*time.Second), creds.ErrLeaseRevoked)
	l2, err := v.Acquire(ctx, req)
	require.NoError(t, err)
	defer l2.Release()
	assert.NotEqual(t, l1.User, l2.User)
}

// A lease revoked in Vault is found at once when a session's login is
// refused (Recheck), not at the next renewal, which with an hour's TTL is
// twenty minutes away: until then every new session of the agent got the
// dropped user's credential and failed its login.
func TestVaultRecheckAfterRefusedLogin(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.role(t, "analyst", time.Hour, 2*time.Hour)
	v, _ := e.source(t, e.vault.Addr, nil)
	ctx := context.Background()
	req := creds.Request{Agent: "a", Role: "analyst"}
	l1, err := v.Acquire(ctx, req)
	require.NoError(t, err)
	defer l1.Release()

	// A live lease: the refusal had another cause; the lease stays.
	assert.False(t, l1.Recheck(ctx))
	select {
	case <-l1.Done:
		t.Fatal("a recheck of a live lease ended it")
	default:
	}

	ids := e.leaseIDs(t, "analyst")
	require.Len(t, ids, 1)
	require.NoError(t, e.vault.Client.Sys().Revoke(ids[0]))
	// Vault is asked at most once a second per lease (recheckEvery), so
	// a recheck right after the first may still say no.
	require.Eventually(t, func() bool { return l1.Recheck(ctx) }, 5*time.Second, 100*time.Millisecond)
	assert.ErrorIs(t, waitDone(t, l1, time.Second), creds.ErrLeaseRevoked)
	assert.True(t, l1.Recheck(ctx), "an ended lease stays ended")

	l2, err := v.Acquire(ctx, req)
	require.NoError(t, err)
	defer l2.Release()
	assert.NotEqual(t, l1.User, l2.User)
	assert.True(t, e.db.RoleExists(t, l2.User))
}

func TestVaultUnreachable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.role(t, "analyst", 4*time.Second, time.Minute)
	p := e.vault.NewProxy(t)
	v, logs := e.source(t, p.Addr, func(c *creds.VaultConfig) { c.RequestTimeout = time.Second })
	ctx := context.Background()

	a1, err := v.Acquire(ctx, creds.Request{Agent: "a", Role: "analyst"})
	require.NoError(t, err)
	defer a1.Release()

	for _, mode := range []testvault.Mode{testvault.Blackhole, testvault.Refuse} {
		p.Set(mode)
		// The agent with a live lease still gets sessions.
		a2, err := v.Acquire(ctx, creds.Request{Agent: "a", Role: "analyst"})
		require.NoError(t, err)
		assert.Equal(t, a1.User, a2.User)
		a2.Release()
		_, err = e.login(t, a1)
		require.NoError(t, err)

		// A new agent fails fast with ErrUnavailable.
		// (A new agent per round: b of the last round has a lease now.)
		newAgent := creds.Request{Agent: fmt.Sprintf("b%d", mode), Role: "analyst"}
		start := time.Now()
		_, err = v.Acquire(ctx, newAgent)
		require.ErrorIs(t, err, creds.ErrUnavailable)
		assert.Less(t, time.Since(start), 2*time.Second)
		assert.NotContains(t, err.Error(), e.vault.Token)
		require.ErrorIs(t, v.Healthy(), creds.ErrUnavailable)

		// Vault back: no restart needed.
		p.Set(testvault.Up)
		b, err := v.Acquire(ctx, newAgent)
		require.NoError(t, err)
		b.Release()
		require.NoError(t, v.Healthy())
	}

	// Cut for longer than the TTL: renewals fail until the lease expires.
	p.Set(testvault.Refuse)
	assert.ErrorIs(t, waitDone(t, a1, 6*time.Second), creds.ErrLeaseExpired)
	_, err = v.Acquire(ctx, creds.Request{Agent: "a", Role: "analyst"})
	require.ErrorIs(t, err, creds.ErrUnavailable)
	p.Set(testvault.Up)
	a3, err := v.Acquire(ctx, creds.Request{Agent: "a", Role: "analyst"})
	require.NoError(t, err)
	a3.Release()
	assert.NotContains(t, logs.String(), e.vault.Token)
}

func TestVaultGraceAndRevokeAgent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.role(t, "analyst", time.Minute, 10*time.Minute)
	v, _ := e.source(t, e.vault.Addr, func(c *creds.VaultConfig) { c.Grace = 1 * time.Second })
	ctx := context.Background()
	req := creds.Request{Agent: "a", Role: "analyst"}

	l1, err := v.Acquire(ctx, req)
	require.NoError(t, err)
	l1.Release()
	// Back within the grace period: same lease.
	l2, err := v.Acquire(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, l1.User, l2.User)
	l2.Release()
	l2.Release() // twice is harmless
	require.Eventually(t, func() bool { return !e.db.RoleExists(t, l1.User) }, 5*time.Second, 100*time.Millisecond,
		"lease revoked after grace")
	assert.ErrorIs(t, l2.Cause(), creds.ErrLeaseExpired)
	l3, err := v.Acquire(ctx, req)
	require.NoError(t, err)
	defer l3.Release()
	assert.NotEqual(t, l1.User, l3.User)

	// RevokeAgent ends only that agent's leases.
	other, err := v.Acquire(ctx, creds.Request{Agent: "b", Role: "analyst"})
	require.NoError(t, err)
	defer other.Release()
	v.RevokeAgent("a")
	assert.ErrorIs(t, waitDone(t, l3, time.Second), creds.ErrAgentRevoked)
	require.Eventually(t, func() bool { return !e.db.RoleExists(t, l3.User) }, 5*time.Second, 100*time.Millisecond)
	assertLive(t, other)
	assert.True(t, e.db.RoleExists(t, other.User))
}

// TestVaultAbandonedAcquire: a lease read for callers that all gave up
// before Vault answered is still revoked after the grace period.
func TestVaultAbandonedAcquire(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.role(t, "analyst", time.Minute, 10*time.Minute)
	p := e.vault.NewProxy(t)
	v, _ := e.source(t, p.Addr, func(c *creds.VaultConfig) { c.Grace = time.Second })
	require.NoError(t, v.Healthy())

	// Vault answers after 700ms, the caller waits 200ms.
	p.Set(testvault.Refuse) // drop pooled connections
	p.Set(testvault.Up)
	p.SetDelay(700 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := v.Acquire(ctx, creds.Request{Agent: "a", Role: "analyst"})
	require.ErrorIs(t, err, creds.ErrUnavailable)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Eventually(t, func() bool { return len(e.leaseIDs(t, "analyst")) == 1 }, 3*time.Second, 50*time.Millisecond,
		"the read went on without the caller")
	require.Eventually(t, func() bool { return len(e.leaseIDs(t, "analyst")) == 0 }, 5*time.Second, 100*time.Millisecond,
		"and nobody holding it, it was revoked after grace")
}

func TestVaultAppRole(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.role(t, "analyst", time.Minute, 10*time.Minute)
	c := e.vault.Client
	require.NoError(t, c.Sys().EnableAuthWithOptions("approle", &api.EnableAuthOptions{Type: "approle"}))
	require.NoError(t, c.Sys().PutPolicy("keyhole", keyholePolicy))
	e.vault.Write(t, "auth/approle/role/keyhole", map[string]any{"token_policies": "keyhole", "token_ttl": "1h"})
	rid, err := c.Logical().Read("auth/approle/role/keyhole/role-id")
	require.NoError(t, err)
	sid := e.vault.Write(t, "auth/approle/role/keyhole/secret-id", nil)
	sidFile := filepath.Join(t.TempDir(), "secret-id")
	require.NoError(t, os.WriteFile(sidFile, []byte(sid.Data["secret_id"].(string)+"\n"), 0o600))

	v, logs := e.source(t, e.vault.Addr, func(cfg *creds.VaultConfig) {
		cfg.Auth = creds.VaultAuth{AppRole: &creds.AppRoleAuth{RoleID: rid.Data["role_id"].(string), SecretIDFile: sidFile}}
	})
	l, err := v.Acquire(context.Background(), creds.Request{Agent: "a", Role: "analyst"})
	require.NoError(t, err)
	_, err = e.login(t, l)
	require.NoError(t, err)
	l.Release()
	require.NoError(t, v.Healthy())
	assert.NotContains(t, logs.String(), sid.Data["secret_id"].(string))
}

// keyholePolicy is what keyhole's own Vault token needs.
const keyholePolicy = `
path "database/creds/*" { capabilities = ["read"] }
path "sys/leases/renew" { capabilities = ["update"] }
path "sys/leases/revoke" { capabilities = ["update"] }
`

func TestVaultTokenRenewal(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.role(t, "analyst", time.Minute, 10*time.Minute)
	require.NoError(t, e.vault.Client.Sys().PutPolicy("keyhole", keyholePolicy))
	// A short-lived token: without renewal it, and the leases it created,
	// would be gone after 3s.
	tok, err := e.vault.Client.Auth().Token().Create(&api.TokenCreateRequest{
		Policies: []string{"keyhole"}, TTL: "3s", ExplicitMaxTTL: "1h", Renewable: ptr(true),
	})
	require.NoError(t, err)
	v, logs := e.source(t, e.vault.Addr, func(c *creds.VaultConfig) { c.Auth.Token = creds.NewSecret(tok.Auth.ClientToken) })
	l, err := v.Acquire(context.Background(), creds.Request{Agent: "a", Role: "analyst"})
	require.NoError(t, err)
	defer l.Release()
	// Wait for a renewal of the token later than its first TTL: without
	// keyhole's renewals Vault would have revoked it by then.
	require.Eventually(t, func() bool {
		sec, err := e.vault.Client.Auth().Token().Lookup(tok.Auth.ClientToken)
		if err != nil || sec == nil {
			return false
		}
		created, err1 := strconv.ParseInt(fmt.Sprint(sec.Data["creation_time"]), 10, 64)
		renewed, err2 := strconv.ParseInt(fmt.Sprint(sec.Data["last_renewal_time"]), 10, 64)
		return err1 == nil && err2 == nil && renewed-created > 3
	}, 10*time.Second, 100*time.Millisecond, "the token was not renewed past its first TTL")
	require.NoError(t, v.Healthy())
	assertLive(t, l)
	assert.True(t, e.db.RoleExists(t, l.User), "the token's lease is still there")
	l2, err := v.Acquire(context.Background(), creds.Request{Agent: "b", Role: "analyst"})
	require.NoError(t, err)
	l2.Release()
	assert.NotContains(t, logs.String(), tok.Auth.ClientToken)
}

func ptr[T any](v T) *T { return &v }

func TestVaultConfig(t *testing.T) {
	// Not parallel: t.Setenv.
	tests := []struct {
		name string
		yaml string
		err  bool
	}{
		{name: "token from env", yaml: "addr: http://127.0.0.1:8200\ngrace: 2m\nrequest_timeout: 3s\nroles: {analyst: ro}\n"},
		{name: "approle", yaml: "addr: http://v:8200\nauth: {approle: {role_id: r, secret_id_file: /f}}\n"},
		{name: "kubernetes", yaml: "addr: http://v:8200\nauth: {method: kubernetes, kubernetes: {role: keyhole}}\n"},
		{name: "token in file is rejected", yaml: "addr: http://v:8200\nauth: {token: s.abc}\n", err: true},
		{name: "unknown key", yaml: "addr: http://v:8200\nmount_path: x\n", err: true},
		{name: "no addr", yaml: "mount: db\n", err: true},
		{name: "approle without secret", yaml: "addr: http://v:8200\nauth: {approle: {role_id: r}}\n", err: true},
		{name: "bad method", yaml: "addr: http://v:8200\nauth: {method: ldap}\n", err: true},
		{name: "both methods", yaml: "addr: http://v:8200\nauth: {approle: {role_id: r, secret_id_file: f}, kubernetes: {role: k}}\n", err: true},
	}
	t.Setenv("VAULT_TOKEN", "s.fromenv")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg creds.VaultConfig
			dec := yaml.NewDecoder(strings.NewReader(tt.yaml))
			dec.KnownFields(true)
			err := dec.Decode(&cfg)
			if err == nil {
				var v *creds.Vault
				v, err = creds.NewVault(cfg, nil)
				if err == nil {
					require.NoError(t, v.Close())
				} else {
					assert.ErrorIs(t, err, creds.ErrConfig)
				}
			}
			if tt.err {
				assert.Error(t, err)
			} else {
				assert.NoError(t, err)
			}
		})
	}
	var cfg creds.VaultConfig
	require.NoError(t, yaml.Unmarshal([]byte("addr: x\ngrace: 2m\n"), &cfg))
	assert.Equal(t, 2*time.Minute, cfg.Grace)
}

func TestVaultErrorHidesText(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("wrap: %w", &creds.VaultError{Op: "read creds for role x", Status: 403, Class: "status 403"})
	assert.True(t, errors.Is(err, creds.ErrUnavailable))
	var ve *creds.VaultError
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, 403, ve.Status)
}
