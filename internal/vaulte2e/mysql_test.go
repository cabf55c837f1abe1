package vaulte2e_test

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/gateway"
	"github.com/keyholedb/keyhole/identity"
	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/internal/testmariadb"
	"github.com/keyholedb/keyhole/internal/testvault"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// myEnv is one keyhole (a gateway in process, MySQL front end only) whose
// upstream logins for a throwaway MariaDB database come from Vault's
// mysql-database-plugin, with the roles `keyhole vault roles --apply`
// writes for the MySQL example policy (creds.MySQLRolesForPolicy and
// gateway.MySQLCatalogVaultRole).
type myEnv struct {
	t      *testing.T
	vault  *testvault.Server
	mount  string
	db     *testmariadb.DB
	g      *gateway.Gateway
	rec    *recordingSource
	logs   *fixture.SyncBuffer
	addr   string
	key    ed25519.PrivateKey
	tokens []string
	tag    string // in every Vault user's name, for cleanup
}

func newMyEnv(t *testing.T, vs *testvault.Server) *myEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	e := &myEnv{t: t, vault: vs, logs: &fixture.SyncBuffer{}, mount: "my-" + testvault.RandHex(4), tag: testvault.RandHex(3)}
	admin := testmariadb.Admin(t)
	// Vault's management login: it creates the agents' users and grants
	// them what the policy allows (column lists included), and keyhole's
	// catalog user its view of the schema.
	mgmt, mgmtPW := "kh_vmgmt_"+e.tag, testvault.RandHex(12)
	e.db = testmariadb.New(t, fixture.MySQLShopSQL(t))
	for _, q := range []string{
		fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", mgmt, mgmtPW),
		fmt.Sprintf("GRANT ALL ON `%s`.* TO '%s'@'%%' WITH GRANT OPTION", e.db.Name, mgmt),
		fmt.Sprintf("GRANT SELECT ON mysql.proc TO '%s'@'%%' WITH GRANT OPTION", mgmt),
		fmt.Sprintf("GRANT CREATE USER ON *.* TO '%s'@'%%'", mgmt),
	} {
		_, err := admin.ExecContext(ctx, q)
		require.NoError(t, err)
	}
	t.Cleanup(func() {
		// Users a failed test left behind go with the management user.
		rows, err := admin.Query("SELECT User FROM mysql.user WHERE User LIKE ?", "v-%-"+e.tag+"-%")
		if err == nil {
			for rows.Next() {
				var u string
				if rows.Scan(&u) == nil {
					_, _ = admin.Exec(fmt.Sprintf("DROP USER IF EXISTS '%s'@'%%'", u))
				}
			}
			_ = rows.Close()
		}
		_, _ = admin.Exec(fmt.Sprintf("DROP USER IF EXISTS '%s'@'%%'", mgmt))
	})

	cat, err := catalog.LoadMySQLDSN(ctx, e.db.DSN)
	require.NoError(t, err)
	policyText := testmariadb.Rename(fixture.MySQLPolicy, e.db.Name) + "  order-bot: {role: analyst}\n"
	pol, _, err := sqlpolicy.ParsePolicy([]byte(policyText), "policy.yaml", cat)
	require.NoError(t, err)
	ropts := creds.RoleOptions{DBName: "shop", DefaultTTL: 6 * time.Second, MaxTTL: time.Minute}
	roles, err := creds.MySQLRolesForPolicy(pol, cat, ropts)
	require.NoError(t, err)
	roles = append(roles, gateway.MySQLCatalogVaultRole(config.DefaultCatalogRole, "shop",
		gateway.MySQLCatalogDatabases(pol, "", e.db.Name, cat), cat, ropts))
	require.NoError(t, vs.Client.Sys().MountWithContext(ctx, e.mount, &api.MountInput{Type: "database"}))
	vs.Write(t, e.mount+"/config/shop", map[string]any{
		"plugin_name":       "mysql-database-plugin",
		"connection_url":    "{{username}}:{{password}}@tcp(" + mysqlAddr(t) + ")/",
		"username":          mgmt,
		"password":          mgmtPW,
		"allowed_roles":     "*",
		"verify_connection": true,
		"username_template": `v-{{.RoleName | truncate 8}}-` + e.tag + `-{{random 8}}`,
	})
	require.NoError(t, creds.WriteVaultRoles(ctx, vs.Client, e.mount, roles))
	// Vault's users live in MariaDB: revoke them while Vault still runs
	// (cleanups run last in, first out).
	t.Cleanup(func() { _ = vs.Client.Sys().RevokePrefix(e.mount + "/creds/") })

	policy := filepath.Join(dir, "policy.yaml")
	require.NoError(t, os.WriteFile(policy, []byte(policyText), 0o600))
	priv, err := identity.GenerateKey()
	require.NoError(t, err)
	keyPath := filepath.Join(dir, "token.key")
	require.NoError(t, identity.WriteKeyFile(keyPath, priv))
	e.key = priv
	cfg := &config.Config{
		Listen: config.Listen{MySQL: "127.0.0.1:0"},
		TLS:    config.TLS{GenerateSelfSigned: true},
		// The fixture's names, "shop" among them, are the database's (the
		// policy's roles say upstream: <database>).
		Upstreams: map[string]config.Upstream{e.db.Name: {URL: "mysql://" + mysqlAddr(t) + "/" + e.db.Name}},
		Creds: config.Creds{Vault: &config.Vault{VaultConfig: creds.VaultConfig{
			Addr:           vs.Addr,
			Mount:          e.mount,
			Auth:           creds.VaultAuth{Token: creds.NewSecret(vs.Token)},
			RequestTimeout: 5 * time.Second,
		}}},
		Audit:  config.Audit{File: filepath.Join(dir, "audit.jsonl")},
		Policy: config.Policy{File: policy, ReloadInterval: -1},
		Limits: config.Limits{ShutdownGrace: 5 * time.Second},
	}
	cfg.Identity.Tokens.PublicKeyFile = keyPath + ".pub"
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(e.checkNoSecretsLogged)
	g, err := gateway.New(cfg, gateway.Options{Logger: logger, WrapCreds: func(s creds.Source) creds.Source {
		e.rec = &recordingSource{Source: s}
		return e.rec
	}})
	require.NoError(t, err)
	e.g = g
	ran := make(chan error, 1)
	go func() { ran <- g.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, g.Shutdown(ctx))
		assert.NoError(t, <-ran)
		if t.Failed() {
			t.Logf("keyhole log:\n%s", e.logs.String())
		}
	})
	e.addr = g.Addr(config.DialectMySQL).String()
	return e
}

func mysqlAddr(t *testing.T) string {
	c, err := mysql.ParseDSN(testmariadb.AdminDSN())
	require.NoError(t, err)
	return c.Addr
}

// connect opens one connection of agent through keyhole, with a fresh
// token (sent with caching_sha2_password over loopback, RSA-encrypted).
func (e *myEnv) connect(agent string) *sql.Conn {
	e.t.Helper()
	tok, err := identity.Mint(e.key, identity.Claims{Agent: agent, TTL: time.Hour})
	require.NoError(e.t, err)
	e.tokens = append(e.tokens, tok)
	c := mysql.NewConfig()
	c.Net, c.Addr, c.DBName, c.User, c.Passwd = "tcp", e.addr, e.db.Name, agent, tok
	c.Timeout = 20 * time.Second
	connector, err := mysql.NewConnector(c)
	require.NoError(e.t, err)
	db := sql.OpenDB(connector)
	e.t.Cleanup(func() { _ = db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sc, err := db.Conn(ctx)
	require.NoError(e.t, err, "connect %s through keyhole", agent)
	e.t.Cleanup(func() { _ = sc.Close() })
	return sc
}

// sessions counts the upstream sessions of user.
func (e *myEnv) sessions(user string) int {
	var n int
	require.NoError(e.t, testmariadb.Admin(e.t).QueryRow("SELECT count(*) FROM information_schema.PROCESSLIST WHERE USER = ?", user).Scan(&n))
	return n
}

func (e *myEnv) userExists(user string) bool {
	var n int
	require.NoError(e.t, testmariadb.Admin(e.t).QueryRow("SELECT count(*) FROM mysql.user WHERE User = ?", user).Scan(&n))
	return n > 0
}

func (e *myEnv) checkNoSecretsLogged() {
	t := e.t
	logs := e.logs.String()
	assert.NotEmpty(t, logs)
	if e.rec != nil {
		for _, l := range e.rec.all() {
			assert.NotContains(t, logs, l.password, "password of %s (agent %s) in keyhole's log", l.user, l.agent)
		}
	}
	assert.NotContains(t, logs, e.vault.Token)
	for _, tok := range e.tokens {
		assert.NotContains(t, logs, tok)
	}
}

func myErrno(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

// TestVaultMySQL: through keyhole's MySQL front end each agent reaches
// MariaDB as its own short-lived user from Vault's mysql-database-plugin,
// which holds column-level grants of exactly the policy (so MariaDB itself
// refuses a labelled column to a leaked credential); revoking the lease in
// Vault ends the session and drops the user.
func TestVaultMySQL(t *testing.T) {
	vs := testvault.Start(t)
	e := newMyEnv(t, vs)
	ctx := context.Background()
	current := func(c *sql.Conn) string {
		var u string
		require.NoError(t, c.QueryRowContext(ctx, "SELECT CURRENT_USER()").Scan(&u))
		user, _, _ := strings.Cut(u, "@")
		return user
	}
	a, b := e.connect("sales-summarizer"), e.connect("order-bot")
	ua, ub := current(a), current(b)
	assert.True(t, strings.HasPrefix(ua, "v-analyst-"+e.tag), "upstream user %q is not a Vault analyst user", ua)
	assert.True(t, strings.HasPrefix(ub, "v-analyst-"+e.tag), "upstream user %q is not a Vault analyst user", ub)
	assert.NotEqual(t, ua, ub, "two agents share one database user")
	for _, c := range []*sql.Conn{a, b} {
		var n int
		require.NoError(t, c.QueryRowContext(ctx, "SELECT count(*) FROM orders").Scan(&n))
		assert.Equal(t, 5, n)
	}
	_, err := a.ExecContext(ctx, "SELECT email FROM customers")
	assert.EqualValues(t, 1143, myErrno(err), "keyhole refuses a labelled column: %v", err)

	t.Run("the database refuses what the policy does", func(t *testing.T) {
		l, ok := e.rec.last("sales-summarizer")
		require.True(t, ok)
		require.Equal(t, ua, l.user)
		direct := testmariadb.Open(t, fmt.Sprintf("%s:%s@tcp(%s)/%s", l.user, l.password, mysqlAddr(t), e.db.Name))
		var name string
		require.NoError(t, direct.QueryRowContext(ctx, "SELECT name FROM customers WHERE id = 1").Scan(&name))
		assert.Equal(t, "Ada Lovelace", name)
		_, err := direct.ExecContext(ctx, "SELECT email FROM customers")
		assert.EqualValues(t, 1143, myErrno(err), "MariaDB's own column grant: %v", err)
		_, err = direct.ExecContext(ctx, "SELECT * FROM secrets")
		assert.EqualValues(t, 1142, myErrno(err), "%v", err)
	})

	t.Run("revocation ends the session and drops the user", func(t *testing.T) {
		require.NoError(t, vs.Client.Sys().RevokePrefix(e.mount+"/creds/analyst"))
		// keyhole notices at the lease's next renewal (TTL 6s).
		require.Eventually(t, func() bool {
			err := a.PingContext(ctx)
			return err != nil
		}, 30*time.Second, 100*time.Millisecond)
		assert.Eventually(t, func() bool { return e.sessions(ua) == 0 && !e.userExists(ua) }, 30*time.Second, 100*time.Millisecond,
			"the revoked user's session or account is still there")
		// A new connection gets a new user.
		c := e.connect("sales-summarizer")
		u := current(c)
		assert.NotEqual(t, ua, u)
		assert.True(t, strings.HasPrefix(u, "v-analyst-"+e.tag))

		// Revoked again, and at once a new session: before the lease's
		// next renewal (up to 4s away), so the lease keyhole holds is the
		// revoked one. MariaDB refuses the dropped user (1045); keyhole
		// has Vault check the lease, finds it revoked, and logs in with a
		// fresh credential instead of refusing the agent until then.
		require.NoError(t, vs.Client.Sys().RevokePrefix(e.mount+"/creds/analyst"))
		require.False(t, e.userExists(u), "Vault dropped the user")
		c2 := e.connect("sales-summarizer")
		u2 := current(c2)
		assert.NotEqual(t, u, u2)
		assert.True(t, strings.HasPrefix(u2, "v-analyst-"+e.tag))
	})
}
