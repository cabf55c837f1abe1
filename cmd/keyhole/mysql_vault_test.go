package main_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/gateway"
	"github.com/keyholedb/keyhole/internal/testmariadb"
	"github.com/keyholedb/keyhole/internal/testvault"
)

// TestVaultRolesMySQL runs `keyhole vault roles --apply --connection` for
// a MariaDB upstream against a real Vault (mysql-database-plugin), then
// logs in to MariaDB directly with the credentials Vault issues: the
// analyst's user reads what the policy allows and MariaDB itself refuses
// the rest (1143 for a labelled column, 1142 for a table); the catalog
// user reads the whole schema and no row.
func TestVaultRolesMySQL(t *testing.T) {
	t.Parallel()
	vs := testvault.Start(t)
	s := newMyShop(t)
	db := s.db.Name
	require.NoError(t, vs.Client.Sys().Mount("database", &api.MountInput{Type: "database"}))
	// Vault's users live in MariaDB, not in the dev server: revoke them
	// before the server stops (cleanups run last in, first out).
	t.Cleanup(func() {
		if err := vs.Client.Sys().RevokePrefix("database/creds/"); err != nil {
			t.Errorf("revoke the Vault users: %v", err)
		}
	})

	// Vault's own login: the admin account (root without a password on
	// the project's machines), which may create users and grant.
	admin, err := mysql.ParseDSN(testmariadb.AdminDSN())
	require.NoError(t, err)
	login := admin.User
	if admin.Passwd != "" {
		login += ":" + admin.Passwd
	}
	conn := fmt.Sprintf("mysql://%s@%s/", login, s.addr)

	r := keyholeEnv(t, []string{"VAULT_TOKEN=" + vs.Token}, "", "vault", "roles", "--policy", s.policy, "--dsn", s.dsn(false),
		"--db-name", "shop", "--apply", "--vault-addr", vs.Addr, "--connection", conn)
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Contains(t, r.Stderr, "wrote database/config/shop (mysql-database-plugin, allowed_roles analyst,keyhole-catalog)")
	assert.Contains(t, r.Stderr, "wrote database/roles/analyst")
	assert.Contains(t, r.Stderr, "wrote database/roles/keyhole-catalog")
	assert.NotContains(t, r.Stderr, "warning")

	cfg, err := vs.Client.Logical().Read("database/config/shop")
	require.NoError(t, err)
	require.NotNil(t, cfg)
	assert.Equal(t, "mysql-database-plugin", cfg.Data["plugin_name"])

	issue := func(role string) (user, password string) {
		t.Helper()
		sec, err := vs.Client.Logical().Read("database/creds/" + role)
		require.NoError(t, err)
		require.NotNil(t, sec)
		return sec.Data["username"].(string), sec.Data["password"].(string)
	}

	t.Run("the analyst's credential", func(t *testing.T) {
		user, pw := issue("analyst")
		c := testmariadb.Open(t, fmt.Sprintf("%s:%s@tcp(%s)/%s", user, pw, s.addr, db))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var name string
		require.NoError(t, c.QueryRowContext(ctx, "SELECT name FROM customers WHERE id = 1").Scan(&name))
		assert.Equal(t, "Ada Lovelace", name)
		_, err := c.ExecContext(ctx, "INSERT INTO orders (customer_id, product_id, total) VALUES (1, 1, 1.00)")
		assert.NoError(t, err, "insert on orders is granted")

		for sql, errno := range map[string]uint16{
			"SELECT email FROM customers":                      1143,
			"SELECT phone FROM customers":                      1143, // labelled by its comment
			"SELECT email_domain FROM customers":               1143, // generated from email
			"SELECT * FROM customers":                          1142, // no table-level SELECT
			"SELECT value FROM secrets":                        1142,
			"SELECT api_key FROM " + db + "_internal.api_keys": 1142,
			"DELETE FROM orders":                               1142,
		} {
			_, err := c.ExecContext(ctx, sql)
			assert.Equal(t, errno, mysqlErrno(err), "%s: %v", sql, err)
		}
	})

	t.Run("without --connection the connection is checked", func(t *testing.T) {
		_, err := vs.Client.Logical().Write("database/config/pg", map[string]any{"plugin_name": "postgresql-database-plugin",
			"connection_url": "postgresql://{{username}}:{{password}}@127.0.0.1:1/x", "verify_connection": false, "allowed_roles": "other"})
		require.NoError(t, err)
		cat := catFile(t, s)
		// In order: the roles end up on shop again, for the next test.
		for _, tc := range []struct {
			db   string
			want []string
		}{
			{"none", []string{"Vault has no connection database/config/none yet"}},
			{"pg", []string{`connection database/config/pg uses plugin "postgresql-database-plugin", but these roles are for mysql-database-plugin`,
				"does not allow roles analyst, keyhole-catalog"}},
			{"shop", nil},
		} {
			r := keyholeEnv(t, []string{"VAULT_TOKEN=" + vs.Token}, "", "vault", "roles", "--policy", s.policy, "--catalog", cat,
				"--db-name", tc.db, "--apply", "--vault-addr", vs.Addr)
			require.Equal(t, 0, r.Code, r.Stderr)
			if tc.want == nil {
				assert.NotContains(t, r.Stderr, "warning", tc.db)
			}
			for _, w := range tc.want {
				assert.Contains(t, r.Stderr, w, tc.db)
			}
		}
	})

	t.Run("the catalog credential", func(t *testing.T) {
		user, pw := issue("keyhole-catalog")
		up, _, err := config.ParseUpstreamURL(fmt.Sprintf("mysql://%s/%s", s.addr, db))
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		l, err := gateway.InspectMySQL(ctx, up, user, pw)
		require.NoError(t, err)
		cat := l.Catalog
		assert.Equal(t, db, cat.Database)
		cust := cat.Relation(db, "customers")
		require.NotNil(t, cust)
		assert.Len(t, cust.Columns, 7, "every column, labelled ones too")
		assert.Equal(t, []string{"pii.phone"}, cust.Column("phone").Labels)
		assert.Contains(t, cat.Relation(db, "customer_emails").Definition, "`email`", "view definitions are visible")
		assert.NotNil(t, cat.Function(db, "get_ssn"), "stored routines are listed")

		c := testmariadb.Open(t, fmt.Sprintf("%s:%s@tcp(%s)/%s", user, pw, s.addr, db))
		_, err = c.ExecContext(ctx, "SELECT id FROM customers")
		assert.Equal(t, uint16(1142), mysqlErrno(err), "the catalog login reads no rows: %v", err)
	})
}

func mysqlErrno(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

// catFile dumps s's catalog to a file.
func catFile(t *testing.T, s myShop) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cat.json")
	r := keyholeEnv(t, nil, "", "catalog", "dump", "--dsn", s.dsn(false), "-o", p)
	require.Equal(t, 0, r.Code, r.Stderr)
	return p
}
