package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/internal/testpg"
	"github.com/keyholedb/keyhole/internal/testvault"
)

// TestVaultRolesCLI runs `keyhole vault roles` against a real Postgres
// (for the catalog) and a real Vault (--apply).
func TestVaultRolesCLI(t *testing.T) {
	t.Parallel()
	vs := testvault.Start(t)
	db := testpg.New(t, fixture.ShopTables)
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	require.NoError(t, os.WriteFile(policy, []byte(fixture.Policy), 0o600))
	require.NoError(t, vs.Client.Sys().Mount("database", &api.MountInput{Type: "database"}))

	run := func(env []string, args ...string) (int, string, string) {
		cmd := exec.Command(fixture.BuildKeyhole(t), append([]string{"vault", "roles"}, args...)...)
		cmd.Env = append(os.Environ(), "VAULT_ADDR=", "VAULT_TOKEN=")
		cmd.Env = append(cmd.Env, env...)
		r := fixture.Run(t, cmd)
		return r.Code, r.Stdout, r.Stderr
	}

	t.Run("print", func(t *testing.T) {
		code, stdout, stderr := run(nil, "--policy", policy, "--dsn", db.DSN, "--db-name", "shop", "--default-ttl", "5m")
		require.Equal(t, 0, code, stderr)
		var roles []map[string]any
		require.NoError(t, yaml.Unmarshal([]byte(stdout), &roles))
		require.Len(t, roles, 2)
		assert.Equal(t, "analyst", roles[0]["name"])
		assert.Equal(t, "5m0s", roles[0]["default_ttl"])
		assert.Contains(t, roles[0]["creation_statements"], `GRANT SELECT ("id", "name") ON "public"."customers" TO "{{name}}";`)
		// keyhole's own login for the schema, which serve --vault-addr needs.
		assert.Equal(t, "keyhole-catalog", roles[1]["name"])
		assert.Equal(t, "shop", roles[1]["db_name"])
		assert.Contains(t, roles[1]["creation_statements"], `GRANT USAGE ON SCHEMA "public" TO "{{name}}";`)
	})

	t.Run("apply", func(t *testing.T) {
		code, _, stderr := run([]string{"VAULT_TOKEN=" + vs.Token}, "--policy", policy, "--dsn", db.DSN,
			"--db-name", "shop", "--apply", "--vault-addr", vs.Addr, "--format", "json")
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, stderr, "wrote database/roles/analyst")
		assert.Contains(t, stderr, "wrote database/roles/keyhole-catalog")
		sec, err := vs.Client.Logical().Read("database/roles/analyst")
		require.NoError(t, err)
		require.NotNil(t, sec)
		assert.Equal(t, "shop", sec.Data["db_name"])
		assert.Contains(t, sec.Data["creation_statements"], `GRANT SELECT ("id", "name") ON "public"."customers" TO "{{name}}";`)
	})

	t.Run("errors", func(t *testing.T) {
		tests := []struct {
			name string
			env  []string
			args []string
		}{
			{"no policy", nil, []string{"--dsn", db.DSN}},
			{"no catalog", nil, []string{"--policy", policy}},
			{"both catalogs", nil, []string{"--policy", policy, "--dsn", db.DSN, "--catalog", "x.json"}},
			{"apply without token", nil, []string{"--policy", policy, "--dsn", db.DSN, "--apply", "--vault-addr", vs.Addr}},
			{"apply with a bad token", []string{"VAULT_TOKEN=not-a-token"}, []string{"--policy", policy, "--dsn", db.DSN, "--apply", "--vault-addr", vs.Addr}},
		}
		for _, tt := range tests {
			code, _, stderr := run(tt.env, tt.args...)
			assert.Equal(t, 2, code, tt.name)
			assert.NotContains(t, stderr, "permission denied", "%s: no vault error text", tt.name)
			assert.NotContains(t, stderr, "not-a-token", tt.name)
		}
	})
}
