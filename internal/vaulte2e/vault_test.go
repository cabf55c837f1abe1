package vaulte2e_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/internal/testpg"
	"github.com/keyholedb/keyhole/internal/testvault"
)

// TestVault runs the scenarios of Vault dynamic credentials through
// keyhole. They share one Vault dev server; each gets its own database,
// database secrets mount, Vault proxy and keyhole.
func TestVault(t *testing.T) {
	vs := testvault.Start(t)
	t.Run("AgentIsItsOwnVaultUser", func(t *testing.T) { t.Parallel(); testOwnUser(t, vs) })
	t.Run("RenewalOutlivesTTL", func(t *testing.T) { t.Parallel(); testRenewal(t, vs) })
	t.Run("RevokedLeaseEndsSession", func(t *testing.T) { t.Parallel(); testRevoked(t, vs) })
	t.Run("RevokedLeaseFoundAtLogin", func(t *testing.T) { t.Parallel(); testRevokedFoundAtLogin(t, vs) })
	t.Run("VaultOutage", func(t *testing.T) { t.Parallel(); testOutage(t, vs) })
	t.Run("AgentRemovedFromPolicy", func(t *testing.T) { t.Parallel(); testAgentRemoved(t, vs) })
	t.Run("AgentRemovedAndRevoked", func(t *testing.T) { t.Parallel(); testAgentRemovedRevoked(t, vs) })
	t.Run("DatabaseEnforcesPolicy", func(t *testing.T) { t.Parallel(); testDatabaseEnforces(t, vs) })
	t.Run("CatalogRoleMissing", func(t *testing.T) { t.Parallel(); testCatalogRoleMissing(t, vs) })
}

// 1. Each agent reaches Postgres as its own Vault-made login, with its
// application_name, and the password never shows in keyhole's log (the
// env's cleanup checks the log for every password handed out).
func testOwnUser(t *testing.T, vs *testvault.Server) {
	e := newEnv(t, vs, opts{})
	ctx := context.Background()
	a := e.connect(summarizer, "vaulte2e-summarizer")
	b := e.connect(orderBot, "vaulte2e-orders")
	for _, c := range []*pgx.Conn{a, b} {
		n, err := count(ctx, c, "SELECT count(*) FROM orders")
		require.NoError(t, err)
		assert.Equal(t, int64(5), n)
	}
	_, err := a.Exec(ctx, "SELECT email FROM customers")
	assert.Equal(t, "42501", sqlState(err), "keyhole denies a labelled column: %v", err)

	ua, ub := e.upstreamUsers("vaulte2e-summarizer"), e.upstreamUsers("vaulte2e-orders")
	require.Len(t, ua, 1, "one upstream session of %s", summarizer)
	require.Len(t, ub, 1, "one upstream session of %s", orderBot)
	assert.True(t, strings.HasPrefix(ua[0], "v-analyst-"), "upstream login %q is not a Vault analyst credential", ua[0])
	assert.True(t, strings.HasPrefix(ub[0], "v-analyst-"), "upstream login %q is not a Vault analyst credential", ub[0])
	assert.NotEqual(t, ua[0], ub[0], "two agents share one database login")

	// The login is the one the source handed out, with Vault's password.
	for agent, user := range map[string]string{summarizer: ua[0], orderBot: ub[0]} {
		l, ok := e.rec.last(agent)
		require.True(t, ok, "no credential handed out for %s", agent)
		assert.Equal(t, user, l.user, "agent %s", agent)
		ok, err := testvault.VerifyPassword(ctx, e.db.DSN, l.user, l.password)
		require.NoError(t, err)
		assert.True(t, ok, "the password keyhole logged in with is not the one Vault set for %s", l.user)
	}

	// The agent sees its own name, not the credential's.
	assert.Equal(t, summarizer, a.PgConn().ParameterStatus("session_authorization"))
}

// 2. Renewal keeps a session alive past the lease's default TTL (4s): for
// three TTLs every statement succeeds, and Vault still holds the lease.
func testRenewal(t *testing.T, vs *testvault.Server) {
	e := newEnv(t, vs, opts{})
	ctx := context.Background()
	c := e.connect(summarizer, "vaulte2e-renew")
	users := e.upstreamUsers("vaulte2e-renew")
	require.Len(t, users, 1)
	start := time.Now()
	for i := 0; time.Since(start) < 12*time.Second; i++ {
		n, err := count(ctx, c, "SELECT count(*) FROM orders")
		require.NoError(t, err, "statement %d after %s", i, time.Since(start).Round(time.Millisecond))
		require.GreaterOrEqual(t, n, int64(5))
		_, err = c.Exec(ctx, "INSERT INTO orders VALUES ($1, 1, 1.0)", 1000+i)
		require.NoError(t, err, "insert %d after %s", i, time.Since(start).Round(time.Millisecond))
		time.Sleep(400 * time.Millisecond)
	}
	assert.Equal(t, users, e.upstreamUsers("vaulte2e-renew"), "the session kept its upstream login")
	assert.True(t, e.db.RoleExists(e.t, users[0]), "Vault dropped the login: lease was not renewed")
	assert.NotEmpty(t, e.leaseIDs(), "Vault no longer holds the lease")
}

// 3. Revoking the lease in Vault ends the session with a FATAL the driver
// sees, while it is idle, within a bound; the agent's next session works on
// a fresh credential.
func testRevoked(t *testing.T, vs *testvault.Server) {
	e := newEnv(t, vs, opts{})
	ctx := context.Background()
	c := e.connect(summarizer, "vaulte2e-revoke")
	_, err := count(ctx, c, "SELECT count(*) FROM orders")
	require.NoError(t, err)
	old := e.upstreamUsers("vaulte2e-revoke")
	require.Len(t, old, 1)

	start := time.Now()
	require.NoError(t, vs.Client.Sys().RevokePrefix(e.vdb.Mount+"/creds/analyst"))
	// The revocation statements drop the login's grants and the login, but
	// do not terminate its backend: only keyhole can end this session.
	wctx, cancel := context.WithTimeout(ctx, 12*time.Second)
	defer cancel()
	err = c.PgConn().WaitForNotification(wctx)
	took := time.Since(start)
	pe := pgErr(err)
	require.NotNil(t, pe, "idle session not ended after its lease was revoked (waited %s): %v", took.Round(time.Millisecond), err)
	t.Logf("revoked session ended after %s with %s %s: %s", took.Round(time.Millisecond), pe.Severity, pe.Code, pe.Message)
	assert.Equal(t, "FATAL", pe.Severity)
	assert.Equal(t, "57P01", pe.Code, "pgproxy documents 57P01 for revoked credentials")
	assert.Less(t, took, 8*time.Second, "revocation noticed at the next renewal: within a third of the 4s TTL, plus slack")
	assert.NotContains(t, strings.ToLower(pe.Message+pe.Detail+pe.Hint), "vault:", "Vault text in the error")
	assert.Eventually(t, func() bool { return len(e.upstreamUsers("vaulte2e-revoke")) == 0 },
		5*time.Second, 100*time.Millisecond, "keyhole left the upstream session of a revoked credential open")

	c2 := e.connect(summarizer, "vaulte2e-revoke")
	n, err := count(ctx, c2, "SELECT count(*) FROM orders")
	require.NoError(t, err)
	assert.Equal(t, int64(5), n)
	now := e.upstreamUsers("vaulte2e-revoke")
	require.Len(t, now, 1)
	assert.NotEqual(t, old[0], now[0], "new session reuses the revoked credential")
}

// 3b. A lease revoked in Vault long before its next renewal (an hour's
// TTL: renewed after forty minutes) is found by the agent's next session:
// Postgres refuses the dropped login, keyhole has Vault check the lease,
// finds it revoked, and logs the session in with a fresh credential
// instead of refusing it (and every session after it) until the renewal.
// The older session, on the revoked credential, ends.
func testRevokedFoundAtLogin(t *testing.T, vs *testvault.Server) {
	e := newEnv(t, vs, opts{defaultTTL: time.Hour, maxTTL: 2 * time.Hour})
	ctx := context.Background()
	c := e.connect(summarizer, "vaulte2e-revoke-login")
	_, err := count(ctx, c, "SELECT count(*) FROM orders")
	require.NoError(t, err)
	old := e.upstreamUsers("vaulte2e-revoke-login")
	require.Len(t, old, 1)

	require.NoError(t, vs.Client.Sys().RevokePrefix(e.vdb.Mount+"/creds/analyst"))
	require.False(t, e.db.RoleExists(t, old[0]), "Vault dropped the login")

	c2, err := e.dial(summarizer, "vaulte2e-revoke-login-2")
	require.NoError(t, err, "a new session of an agent whose lease was revoked in Vault")
	n, err := count(ctx, c2, "SELECT count(*) FROM orders")
	require.NoError(t, err)
	assert.Equal(t, int64(5), n)
	now := e.upstreamUsers("vaulte2e-revoke-login-2")
	require.Len(t, now, 1)
	assert.NotEqual(t, old[0], now[0], "the new session logged in with the revoked credential")

	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	pe := pgErr(c.PgConn().WaitForNotification(wctx))
	require.NotNil(t, pe, "the session on the revoked credential was not ended")
	assert.Equal(t, "57P01", pe.Code)
}

// 4. With Vault unreachable, live sessions (and new sessions of an agent
// that holds a live lease) keep working; a new session of an agent without
// a lease is refused with 08001 and no Vault text; when Vault is back, new
// sessions work again without restarting keyhole.
func testOutage(t *testing.T, vs *testvault.Server) {
	// A TTL longer than the outage: past it the credential is really gone.
	e := newEnv(t, vs, opts{defaultTTL: 30 * time.Second, maxTTL: time.Minute})
	ctx := context.Background()
	live := e.connect(summarizer, "vaulte2e-outage")
	_, err := count(ctx, live, "SELECT count(*) FROM orders")
	require.NoError(t, err)

	for _, mode := range []struct {
		name string
		m    testvault.Mode
	}{{"refused", testvault.Refuse}, {"blackholed", testvault.Blackhole}} {
		e.proxy.Set(mode.m)
		n, err := count(ctx, live, "SELECT count(*) FROM orders")
		assert.NoError(t, err, "%s: live session broke while Vault is down", mode.name)
		assert.Equal(t, int64(5), n)

		same, err := e.dial(summarizer, "vaulte2e-outage")
		if assert.NoError(t, err, "%s: agent with a live lease cannot open a session while Vault is down", mode.name) {
			_, err = count(ctx, same, "SELECT count(*) FROM orders")
			assert.NoError(t, err)
			_ = same.Close(ctx)
		}

		start := time.Now()
		_, err = e.dial(orderBot, "vaulte2e-outage-new")
		took := time.Since(start)
		pe := pgErr(err)
		if assert.NotNil(t, pe, "%s: new session without a lease: %v", mode.name, err) {
			t.Logf("%s: refused after %s: %s %s: %q detail=%q hint=%q", mode.name, took.Round(time.Millisecond), pe.Severity, pe.Code, pe.Message, pe.Detail, pe.Hint)
			assert.Equal(t, "08001", pe.Code, mode.name)
			assert.Equal(t, "FATAL", pe.Severity, mode.name)
			text := strings.ToLower(pe.Message + " " + pe.Detail + " " + pe.Hint)
			for _, bad := range []string{"vault", strings.TrimPrefix(e.proxy.Addr, "http://"), strings.TrimPrefix(vs.Addr, "http://"),
				"refused", "timeout", "status", "dial", "/v1/", e.vdb.Mount} {
				assert.NotContains(t, text, strings.ToLower(bad), "%s: error text leaks Vault details", mode.name)
			}
		}
		assert.Less(t, took, 10*time.Second, "%s: refusal took too long", mode.name)
	}

	e.proxy.Set(testvault.Up)
	c, err := e.dial(orderBot, "vaulte2e-outage-new")
	require.NoError(t, err, "new session after Vault came back")
	n, err := count(ctx, c, "SELECT count(*) FROM orders")
	require.NoError(t, err)
	assert.Equal(t, int64(5), n)
	users := e.upstreamUsers("vaulte2e-outage-new")
	require.Len(t, users, 1)
	assert.True(t, strings.HasPrefix(users[0], "v-analyst-"), users[0])
	_, err = count(ctx, live, "SELECT count(*) FROM orders")
	assert.NoError(t, err, "live session after the outage")
}

// 5. Removing an agent from the policy (a reload) ends its sessions at
// their next statement at the latest — through the simple protocol and
// through a statement pgx has already prepared — and refuses its new
// sessions; other agents go on.
func testAgentRemoved(t *testing.T, vs *testvault.Server) {
	e := newEnv(t, vs, opts{})
	ctx := context.Background()
	const q = "SELECT count(*) FROM orders"
	prepared := e.connect(summarizer, "vaulte2e-removed") // pgx default: cached prepared statements
	scfg := e.config(summarizer, "vaulte2e-removed")
	scfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	simple, err := pgx.ConnectConfig(ctx, scfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = simple.Close(context.Background()) })
	other := e.connect(orderBot, "vaulte2e-other")
	for _, c := range []*pgx.Conn{prepared, simple, other} {
		_, err := count(ctx, c, q)
		require.NoError(t, err)
	}

	e.setPolicy(summarizer)

	// The reload also revoked the agent's lease: whichever comes first,
	// the session ends (28000 agent removed, 57P01 credentials revoked).
	_, err = count(ctx, simple, q)
	assert.Contains(t, []string{"28000", "57P01"}, sqlState(err), "simple-protocol statement of a removed agent: %v", err)
	_, err = count(ctx, prepared, q)
	assert.Contains(t, []string{"28000", "57P01"}, sqlState(err), "already-prepared statement of a removed agent (Bind/Execute, no Parse): %v", err)
	assert.Eventually(t, func() bool { return len(e.upstreamUsers("vaulte2e-removed")) == 0 },
		5*time.Second, 100*time.Millisecond, "upstream sessions of the removed agent still open")

	_, err = e.dial(summarizer, "vaulte2e-removed")
	assert.Equal(t, "28P01", sqlState(err), "new session of a removed agent (fails like a wrong credential): %v", err)

	n, err := count(ctx, other, q)
	assert.NoError(t, err, "an agent still in the policy lost its session")
	assert.Equal(t, int64(5), n)
}

// 5b. A reload revokes the removed agent's credentials
// (creds.Vault.RevokeAgent): its idle sessions end at once with a FATAL,
// and Vault drops its login.
func testAgentRemovedRevoked(t *testing.T, vs *testvault.Server) {
	e := newEnv(t, vs, opts{})
	ctx := context.Background()
	c := e.connect(summarizer, "vaulte2e-revoked-agent")
	_, err := count(ctx, c, "SELECT count(*) FROM orders")
	require.NoError(t, err)
	l, ok := e.rec.last(summarizer)
	require.True(t, ok)

	e.setPolicy(summarizer)

	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err = c.PgConn().WaitForNotification(wctx)
	pe := pgErr(err)
	require.NotNil(t, pe, "idle session of a revoked agent not ended: %v", err)
	t.Logf("revoked agent's session ended with %s %s: %s", pe.Severity, pe.Code, pe.Message)
	assert.Equal(t, "FATAL", pe.Severity)
	assert.Contains(t, []string{"57P01", "28000"}, pe.Code)
	assert.Eventually(t, func() bool { return !e.db.RoleExists(e.t, l.user) },
		10*time.Second, 100*time.Millisecond, "Vault did not drop the login of the revoked agent")
	_, err = e.dial(summarizer, "vaulte2e-revoked-agent")
	assert.Equal(t, "28P01", sqlState(err), "new session of a removed agent (fails like a wrong credential): %v", err)
}

// 6. The credentials Vault issues for the role are no wider than the
// policy: used directly, bypassing keyhole, Postgres refuses what keyhole
// would. Checked with keyhole's own session credential and with a fresh
// one read from Vault.
func testDatabaseEnforces(t *testing.T, vs *testvault.Server) {
	e := newEnv(t, vs, opts{})
	ctx := context.Background()
	c := e.connect(summarizer, "vaulte2e-direct")
	_, err := count(ctx, c, "SELECT count(*) FROM orders")
	require.NoError(t, err)
	mine, ok := e.rec.last(summarizer)
	require.True(t, ok)

	sec, err := vs.Client.Logical().ReadWithContext(ctx, e.vdb.Mount+"/creds/analyst")
	require.NoError(t, err)
	require.NotNil(t, sec)
	fresh := issued{agent: "direct", user: sec.Data["username"].(string), password: sec.Data["password"].(string)}
	t.Cleanup(func() { _ = vs.Client.Sys().Revoke(sec.LeaseID) })

	for _, cred := range []issued{mine, fresh} {
		ok, err := testvault.VerifyPassword(ctx, e.db.DSN, cred.user, cred.password)
		require.NoError(t, err)
		require.True(t, ok, "password of %s", cred.user)
		d, err := pgx.Connect(ctx, testpg.WithUser(e.db.DSN, cred.user, cred.password))
		require.NoError(t, err)
		for _, tt := range []struct {
			sql  string
			deny bool
		}{
			{"SELECT count(*) FROM orders", false},
			{"SELECT id, name FROM customers", false},
			{"INSERT INTO orders VALUES (99, 1, 2.5)", false},
			{"SELECT email FROM customers", true},
			{"SELECT * FROM customers", true},
			{"SELECT id FROM customers WHERE ssn <> ''", true},
			{"SELECT * FROM secrets", true},
			{"DELETE FROM orders", true},
			{"UPDATE orders SET total = 0", true},
		} {
			_, err := d.Exec(ctx, tt.sql)
			if tt.deny {
				assert.Equal(t, "42501", sqlState(err), "%s (agent %s) direct: %s: %v", cred.user, cred.agent, tt.sql, err)
			} else {
				assert.NoError(t, err, "%s (agent %s) direct: %s", cred.user, cred.agent, tt.sql)
			}
			if strings.HasPrefix(tt.sql, "INSERT") {
				_, err = e.admin().Exec(ctx, "DELETE FROM orders WHERE id = 99")
				require.NoError(t, err)
			}
		}
		_ = d.Close(ctx)
	}
}

// 7. Without keyhole's catalog role in Vault, keyhole refuses to start and
// says exactly what to create.
func testCatalogRoleMissing(t *testing.T, vs *testvault.Server) {
	newEnv(t, vs, opts{noCatalogRole: true, startErr: func(err error) {
		msg := err.Error()
		assert.Contains(t, msg, "roles/keyhole-catalog")
		assert.Contains(t, msg, "keyhole vault roles")
		assert.Contains(t, msg, "--apply")
		assert.NotContains(t, msg, vs.Token)
	}})
}
