package mysqlproxy_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/internal/testmy"
	"github.com/keyholedb/keyhole/internal/testvault"
)

// TestVault: an agent reaches MariaDB through keyhole as its own
// short-lived Vault user (the database secrets engine's
// mysql-database-plugin, which works with MariaDB), and revoking the
// lease in Vault ends the session.
func TestVault(t *testing.T) {
	vs := testvault.Start(t)
	var vdb string
	e := newEnv(t, envOpts{creds: func(e *env) creds.Source {
		vdb = e.db.Name
		return vaultSource(t, vs, e)
	}})

	r := e.dialRaw(t)
	r.login(e, "analyst-bot")
	rows, _ := r.query("SELECT CURRENT_USER()")
	require.Len(t, rows, 1)
	user, _, _ := strings.Cut(rows[0], "@")
	assert.True(t, strings.HasPrefix(user, "v-analyst-"), "upstream user %q is not a Vault user", user)
	rows, _ = r.query("SELECT id, name FROM customers ORDER BY id")
	assert.Equal(t, []string{"1", "2"}, rows)
	// Vault's user holds only the role's grants in MariaDB itself.
	var grants int
	require.NoError(t, e.direct().QueryRow("SELECT count(*) FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ? AND TABLE_SCHEMA = ?", "'"+user+"'@'%'", vdb).Scan(&grants))
	assert.Equal(t, 2, grants, "SELECT and INSERT")

	// Revoke every lease of the role in Vault: keyhole notices at the
	// lease's next renewal and ends the session.
	start := time.Now()
	require.NoError(t, vs.Client.Sys().RevokePrefix("mysqldb/creds/analyst"))
	num, state, msg, ok := sqlErr(r.read())
	require.True(t, ok)
	t.Logf("session ended %s after the revocation: %d %s %s", time.Since(start).Round(time.Millisecond), num, state, msg)
	assert.EqualValues(t, 1053, num)
	assert.NotContains(t, msg, "vault")
	assert.True(t, r.closed())
	assert.Eventually(t, func() bool {
		var n int
		_ = e.direct().QueryRow("SELECT count(*) FROM information_schema.PROCESSLIST WHERE USER = ?", user).Scan(&n)
		return n == 0
	}, 10*time.Second, 100*time.Millisecond, "the upstream session of the revoked user is still open")

	// A new session gets a new Vault user.
	r2 := e.dialRaw(t)
	r2.login(e, "analyst-bot")
	rows, _ = r2.query("SELECT CURRENT_USER()")
	require.Len(t, rows, 1)
	assert.NotEqual(t, user, strings.Split(rows[0], "@")[0])
}

// vaultSource mounts the database secrets engine for the env's database:
// a management user that may create users and grant on the database, and
// a role "analyst" whose users may read and insert there.
func vaultSource(t *testing.T, vs *testvault.Server, e *env) creds.Source {
	t.Helper()
	admin := testmy.Admin(t)
	mgmt, pw := "kh_mgmt_"+testmy.RandHex(4), testmy.RandHex(12)
	for _, q := range []string{
		fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", mgmt, pw),
		fmt.Sprintf("GRANT ALL ON %s.* TO '%s'@'%%' WITH GRANT OPTION", e.db.Name, mgmt),
		fmt.Sprintf("GRANT CREATE USER ON *.* TO '%s'@'%%'", mgmt),
	} {
		_, err := admin.Exec(q)
		require.NoError(t, err)
	}
	tag := testmy.RandHex(2)
	t.Cleanup(func() {
		// Users Vault left behind (a failed test) go with the management user.
		rows, err := admin.Query("SELECT User FROM mysql.user WHERE User LIKE ?", "v-analyst-"+tag+"-%")
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, vs.Client.Sys().MountWithContext(ctx, "mysqldb", &api.MountInput{Type: "database"}))
	vs.Write(t, "mysqldb/config/shop", map[string]any{
		"plugin_name":       "mysql-database-plugin",
		"connection_url":    "{{username}}:{{password}}@tcp(" + testmy.Addr() + ")/",
		"username":          mgmt,
		"password":          pw,
		"allowed_roles":     "*",
		"verify_connection": true,
		"username_template": `v-{{.RoleName | truncate 8}}-` + tag + `-{{random 8}}`,
	})
	vs.Write(t, "mysqldb/roles/analyst", map[string]any{
		"db_name": "shop",
		"creation_statements": []string{
			"CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}';",
			fmt.Sprintf("GRANT SELECT, INSERT ON %s.* TO '{{name}}'@'%%';", e.db.Name),
		},
		"default_ttl": 6,
		"max_ttl":     60,
	})
	src, err := creds.NewVault(creds.VaultConfig{
		Addr: vs.Addr, Mount: "mysqldb",
		Auth:           creds.VaultAuth{Token: creds.NewSecret(vs.Token)},
		RequestTimeout: 5 * time.Second,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = src.Close() })
	return src
}
