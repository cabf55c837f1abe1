package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

const minimal = `
upstreams:
  shop: {url: "postgres://127.0.0.1:5432/shop"}
identity:
  tokens: {public_key_file: key.pub}
creds:
  static: {user: app, password_env: TEST_PW}
audit: {file: audit.jsonl}
policy: {file: policy.yaml}
tls: {generate_self_signed: true}
`

func TestExampleLoads(t *testing.T) {
	t.Parallel()
	c, err := config.Load(filepath.Join("..", "examples", "keyhole.yaml"))
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:6432", c.Listen.Postgres)
	c.ApplyDefaults()
	assert.Equal(t, "shop", c.Upstreams["shop"].Database)
	assert.Equal(t, config.DialectPostgres, c.Upstreams["shop"].Dialect)
	assert.Equal(t, "KEYHOLE_UPSTREAM_PASSWORD", c.Creds.Static.PasswordEnv)
	assert.True(t, filepath.IsAbs(c.Policy.File), "relative paths resolve against the file's directory")
	assert.Equal(t, time.Second, c.Policy.ReloadInterval)
	assert.Equal(t, 30*time.Second, c.Limits.ShutdownGrace)
}

// TestExampleMySQL: the MySQL lines examples/keyhole.yaml carries
// commented out are valid once uncommented.
func TestExampleMySQL(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "examples", "keyhole.yaml"))
	require.NoError(t, err)
	src := string(b)
	for _, l := range []string{"  # mysql:", "  # crm:", "  #   url: mysql:", "  #   catalog_role: keyhole-catalog-crm"} {
		require.Contains(t, src, l)
		src = strings.Replace(src, l, strings.Replace(l, "# ", "", 1), 1)
	}
	c, err := config.Parse("keyhole.yaml", []byte(src))
	require.NoError(t, err)
	c.ApplyDefaults()
	assert.Equal(t, "127.0.0.1:3307", c.Listen.MySQL)
	assert.Equal(t, config.DialectMySQL, c.Upstreams["crm"].Dialect)
	assert.Equal(t, "keyhole-catalog-crm", c.CatalogRole("crm"))
}

func TestMinimalDefaults(t *testing.T) {
	t.Parallel()
	c, err := config.Parse("k.yaml", []byte(minimal))
	require.NoError(t, err)
	c.ApplyDefaults()
	assert.Equal(t, config.DefaultListenPostgres, c.Listen.Postgres)
	assert.Equal(t, "", c.Listen.Admin)
	assert.Equal(t, config.SSLDisable, c.Upstreams["shop"].SSLMode)
	assert.Equal(t, "127.0.0.1:5432", c.Upstreams["shop"].Addr)
	assert.Equal(t, config.DefaultCatalogRole, c.CatalogRole("shop"))
	assert.Equal(t, config.DefaultShutdownGrace, c.Limits.ShutdownGrace)
	assert.Equal(t, config.DefaultStartupTimeout, c.Limits.StartupTimeout)
	assert.Equal(t, config.DefaultMaxConns, c.Limits.MaxConns)
	assert.Equal(t, config.RelayLoop, c.Limits.Relay)
	assert.Equal(t, int64(config.DefaultAuditMaxBytes), c.Audit.MaxBytes)
	assert.Equal(t, config.DefaultPolicyReload, c.Policy.ReloadInterval)
	assert.Equal(t, "json", c.Log.Format)
}

// TestMySQLUpstream: a mysql:// upstream with listen.mysql next to a
// Postgres one; the URL names the dialect and MySQL's default port.
func TestMySQLUpstream(t *testing.T) {
	t.Parallel()
	src := strings.Replace(minimal, "upstreams:\n", "upstreams:\n  crm: {url: 'mysql://db.internal/crm?sslmode=require'}\n", 1) +
		"listen: {mysql: '127.0.0.1:3307'}\n"
	c, err := config.Parse("k.yaml", []byte(src))
	require.NoError(t, err)
	c.ApplyDefaults()
	assert.Equal(t, "127.0.0.1:3307", c.Listen.MySQL)
	assert.Equal(t, config.DefaultListenPostgres, c.Listen.Postgres)
	crm := c.Upstreams["crm"]
	assert.Equal(t, config.DialectMySQL, crm.Dialect)
	assert.Equal(t, "db.internal:3306", crm.Addr)
	assert.Equal(t, "crm", crm.Database)
	assert.Equal(t, config.SSLRequire, crm.SSLMode)
	assert.Equal(t, config.DialectPostgres, c.Upstreams["shop"].Dialect)
}

func TestVaultSection(t *testing.T) {
	t.Parallel()
	src := strings.Replace(minimal, "static: {user: app, password_env: TEST_PW}",
		"vault: {addr: 'https://vault:8200', mount: db, roles: {analyst: ro}, grace: 1m, catalog_role: intro,\n"+
			"    auth: {method: approle, approle: {role_id: r1, secret_id_file: sid}}}", 1)
	c, err := config.Parse("k.yaml", []byte(src))
	require.NoError(t, err)
	v := c.Creds.Vault
	require.NotNil(t, v)
	assert.Equal(t, "db", v.Mount)
	assert.Equal(t, map[string]string{"analyst": "ro"}, v.RoleMap)
	assert.Equal(t, time.Minute, v.Grace)
	assert.Equal(t, "intro", v.CatalogRole)
	assert.Equal(t, "r1", v.Auth.AppRole.RoleID)
}

func TestErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		src  string
		want []string // substrings of the error, each with file:line
	}{
		{"unknown top key", minimal + "listne: {}\n", []string{`k.yaml:11: unknown key "listne"`}},
		{"unknown nested key", "listen:\n  port: x\n" + minimal, []string{`k.yaml:2: unknown key "port"`}},
		{"password in file", strings.Replace(minimal, "password_env: TEST_PW", "password: hunter2", 1),
			[]string{`k.yaml:7: unknown key "password"`}},
		{"bad duration", minimal + "limits: {idle_timeout: soon}\n", []string{"k.yaml:11:", "soon"}},
		{"wrong type", minimal + "limits: {max_conns: many}\n", []string{"k.yaml:11:", "many"}},
		{"negative bound", minimal + "limits: {max_prepared_per_session: -1}\n", []string{"k.yaml:11: limits.max_prepared_per_session: negative"}},
		{"missing url", strings.Replace(minimal, `url: "postgres://127.0.0.1:5432/shop"`, "ca_file: x", 1),
			[]string{"k.yaml:3: upstreams.shop.url: required"}},
		{"bad sslmode", strings.Replace(minimal, "/shop\"", "/shop?sslmode=maybe\"", 1),
			[]string{"k.yaml:3: upstreams.shop.url: upstream URL sslmode \"maybe\""}},
		{"login in url", strings.Replace(minimal, "postgres://127", "postgres://app:topsecret@127", 1),
			[]string{"k.yaml:3: upstreams.shop.url: carries a login"}},
		{"no database", strings.Replace(minimal, "/shop\"", "\"", 1),
			[]string{"k.yaml:3: upstreams.shop.url: names no database"}},
		{"unknown scheme", strings.Replace(minimal, "postgres://", "oracle://", 1),
			[]string{"k.yaml:3: upstreams.shop.url: upstream URL scheme \"oracle\""}},
		{"bad upstream name", strings.Replace(minimal, "  shop:", "  'sh op':", 1),
			[]string{"k.yaml:3: upstreams.sh op: upstream name"}},
		{"old addr key", strings.Replace(minimal, `url: "postgres://127.0.0.1:5432/shop"`, `addr: "127.0.0.1:5432", database: shop`, 1),
			[]string{"k.yaml:3: upstreams.shop.addr: replaced by url:", "upstreams.shop.database: replaced by url:"}},
		{"no tls", strings.Replace(minimal, "tls: {generate_self_signed: true}\n", "", 1),
			[]string{"tls: set cert_file and key_file"}},
		{"shared catalog role", strings.Replace(strings.Replace(minimal, "static: {user: app, password_env: TEST_PW}",
			"vault: {addr: 'https://v:8200'}", 1), "upstreams:\n", "upstreams:\n  crm: {url: 'mysql://127.0.0.1/crm'}\n", 1),
			[]string{"upstreams.shop.catalog_role: upstreams crm and shop would read their schemas with the same Vault role \"keyhole-catalog\""}},
		{"bad listen", minimal + "listen: {postgres: nowhere}\n", []string{"k.yaml:11: listen.postgres"}},
		{"mysql upstream without listen.mysql", strings.Replace(minimal, "upstreams:\n", "upstreams:\n  crm: {url: 'mysql://127.0.0.1/crm'}\n", 1),
			[]string{`listen.mysql: upstreams ["crm"] are mysql:// but listen.mysql is empty`}},
		{"listen.mysql without mysql upstream", minimal + "listen: {mysql: '127.0.0.1:3307'}\n",
			[]string{"k.yaml:11: listen.mysql: no upstream is mysql://"}},
		{"bad listen.mysql", strings.Replace(minimal, "upstreams:\n", "upstreams:\n  crm: {url: 'mysql://127.0.0.1/crm'}\n", 1) + "listen: {mysql: '3307'}\n",
			[]string{"listen.mysql: address \"3307\""}},
		{"pprof without admin", minimal + "listen: {pprof: true}\n", []string{"listen.pprof: needs listen.admin"}},
		{"no creds", strings.Replace(minimal, "  static: {user: app, password_env: TEST_PW}\n", "", 1),
			[]string{"k.yaml:6: creds: set static or vault"}},
		{"two creds", strings.Replace(minimal, "creds:\n", "creds:\n  vault: {addr: 'https://v:8200'}\n", 1),
			[]string{"creds: set only one"}},
		{"no audit", strings.Replace(minimal, "audit: {file: audit.jsonl}\n", "", 1), []string{"audit: set file or stdout"}},
		{"no identity", strings.Replace(minimal, "  tokens: {public_key_file: key.pub}\n", "", 1),
			[]string{"identity: no way for agents to authenticate"}},
		{"jwks without issuer", strings.Replace(minimal, "identity:\n", "identity:\n  jwks: [{file: j.json}]\n", 1),
			[]string{"k.yaml:5: identity.jwks[0].issuer: required"}},
		{"jwks file and url", strings.Replace(minimal, "identity:\n", "identity:\n  jwks: [{file: j.json, url: 'https://x/j', issuer: x}]\n", 1),
			[]string{"identity.jwks[0]: set exactly one"}},
		{"approle without section", strings.Replace(minimal, "static: {user: app, password_env: TEST_PW}",
			"vault: {addr: 'https://v:8200', auth: {method: approle}}", 1),
			[]string{"k.yaml:7: creds.vault.auth.approle: method approle needs the approle section"}},
		{"approle without role_id", strings.Replace(minimal, "static: {user: app, password_env: TEST_PW}",
			"vault: {addr: 'https://v:8200', auth: {approle: {secret_id_file: f}}}", 1),
			[]string{"creds.vault.auth.approle: role_id and secret_id_file are required"}},
		{"vault token in file", strings.Replace(minimal, "static: {user: app, password_env: TEST_PW}",
			"vault: {addr: 'https://v:8200', auth: {token: hvs.x}}", 1),
			[]string{`k.yaml:7: unknown key "token"`}},
		{"bad auth method", strings.Replace(minimal, "static: {user: app, password_env: TEST_PW}",
			"vault: {addr: 'https://v:8200', auth: {method: ldap}}", 1), []string{"creds.vault.auth.method"}},
		{"two documents", minimal + "---\nlisten: {}\n", []string{"more than one YAML document"}},
		{"bad log format", minimal + "log: {format: xml}\n", []string{"k.yaml:11: log.format"}},
		{"bad relay", minimal + "limits: {relay: threads}\n", []string{"limits.relay", "threads"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Parse("k.yaml", []byte(tc.src))
			require.Error(t, err)
			assert.ErrorIs(t, err, config.ErrInvalid)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestSPIFFENeedsClientCA(t *testing.T) {
	t.Parallel()
	src := strings.Replace(minimal, "identity:\n", "identity:\n  spiffe: {'spiffe://x/y': a}\n", 1)
	_, err := config.Parse("k.yaml", []byte(src))
	require.Error(t, err)
	var ce *config.Error
	require.True(t, errors.As(err, &ce))
	assert.Contains(t, err.Error(), "identity.spiffe: needs tls.client_ca_file")
}

func TestResolveSecrets(t *testing.T) {
	t.Parallel()
	c, err := config.Parse("k.yaml", []byte(minimal))
	require.NoError(t, err)

	err = c.ResolveSecrets(func(string) string { return "" })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "TEST_PW")

	require.NoError(t, c.ResolveSecrets(func(k string) string {
		if k == "TEST_PW" {
			return "s3cret"
		}
		return ""
	}))
	assert.Equal(t, "s3cret", c.Creds.Static.Password.Reveal())
}

func TestParseUpstreamURL(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in      string
		up      config.Upstream
		user    string
		pass    string
		wantErr bool
	}{
		{in: "postgres://app:pw@db.internal:6000/shop", up: config.Upstream{URL: "postgres://db.internal:6000/shop", Dialect: "postgres", Addr: "db.internal:6000", Database: "shop"}, user: "app", pass: "pw"},
		{in: "postgresql://app@127.0.0.1/shop?sslmode=require", up: config.Upstream{URL: "postgresql://127.0.0.1/shop?sslmode=require", Dialect: "postgres", Addr: "127.0.0.1:5432", Database: "shop", SSLMode: "require"}, user: "app"},
		{in: "postgres://app@localhost", up: config.Upstream{URL: "postgres://localhost", Dialect: "postgres", Addr: "localhost:5432", Database: "app"}, user: "app"},
		{in: "mysql://app:pw@h/db", up: config.Upstream{URL: "mysql://h/db", Dialect: "mysql", Addr: "h:3306", Database: "db"}, user: "app", pass: "pw"},
		{in: "mysql://h:3307/crm?sslmode=verify-full&sslrootcert=ca.pem", up: config.Upstream{URL: "mysql://h:3307/crm?sslmode=verify-full&sslrootcert=ca.pem", Dialect: "mysql", Addr: "h:3307", Database: "crm", SSLMode: "verify-full", CAFile: "ca.pem"}},
		{in: "postgres://h/db", up: config.Upstream{URL: "postgres://h/db", Dialect: "postgres", Addr: "h:5432", Database: "db"}},
		{in: "postgres://app:pw@h/db?sslmode=maybe", wantErr: true},
		{in: "postgres://app:pw@h/db?options=-csearch_path%3Dx", wantErr: true},
		{in: "postgres://app:topsecret@h:bad/db", wantErr: true},
		{in: "postgres://app:topsecret@h:70000/db", wantErr: true},
		{in: "redis://h/0", wantErr: true},
		{in: "postgres://h/a/b", wantErr: true},
	}
	for _, tc := range cases {
		t.Run(config.Redact(tc.in, config.DSNPassword(tc.in)), func(t *testing.T) {
			t.Parallel()
			up, st, err := config.ParseUpstreamURL(tc.in)
			if tc.wantErr {
				require.Error(t, err)
				assert.NotContains(t, err.Error(), "topsecret")
				assert.NotContains(t, err.Error(), ":pw@")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.up, up)
			assert.Equal(t, tc.user, st.User)
			assert.Equal(t, tc.pass, st.Password.Reveal())
		})
	}
}

// TestURLRootCert: a file's sslrootcert is relative to the file, like
// ca_file; setting both is an error.
func TestURLRootCert(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "keyhole.yaml")
	require.NoError(t, os.WriteFile(p, []byte(strings.Replace(minimal, "/shop\"", "/shop?sslmode=verify-full&sslrootcert=db-ca.pem\"", 1)), 0o600))
	c, err := config.Load(p)
	require.NoError(t, err)
	c.ApplyDefaults()
	assert.Equal(t, filepath.Join(dir, "db-ca.pem"), c.Upstreams["shop"].CAFile)
	assert.Equal(t, config.SSLVerifyFull, c.Upstreams["shop"].SSLMode)

	_, err = config.Parse("k.yaml", []byte(strings.Replace(minimal, "/shop\"}", "/shop?sslrootcert=a.pem\", ca_file: b.pem}", 1)))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "upstreams.shop.ca_file: set together with the URL's sslrootcert")
}

func TestDefaultSSLMode(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]string{
		"127.0.0.1:5432":   config.SSLDisable,
		"[::1]:5432":       config.SSLDisable,
		"localhost:5432":   config.SSLDisable,
		"10.0.0.5:5432":    config.SSLVerifyFull,
		"db.example:5432":  config.SSLVerifyFull,
		"127.0.0.1.nip.io": config.SSLVerifyFull,
	} {
		assert.Equal(t, want, config.DefaultSSLMode(addr), addr)
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	_, err := config.Load(filepath.Join(t.TempDir(), "nope.yaml"))
	require.Error(t, err)
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestShippedConfigsLoad(t *testing.T) {
	t.Parallel()
	for _, p := range []string{
		filepath.Join("..", "examples", "keyhole.yaml"),
		filepath.Join("..", "docker", "keyhole", "keyhole.yaml"),
	} {
		_, err := config.Load(p)
		assert.NoError(t, err, p)
	}
}

func TestExamplePolicyParses(t *testing.T) {
	t.Parallel()
	for _, p := range []string{
		filepath.Join("..", "examples", "policy.yaml"),
	} {
		data, err := os.ReadFile(p)
		require.NoError(t, err)
		_, _, err = sqlpolicy.ParsePolicy(data, p, nil)
		assert.NoError(t, err, p)
	}
}

func TestReadThenFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "keyhole.yaml")
	// No policy file and no audit sink: flags will give them.
	src := strings.Replace(strings.Replace(minimal, "audit: {file: audit.jsonl}\n", "", 1), "policy: {file: policy.yaml}\n", "", 1)
	src += "listen: {postgres: '127.0.0.1:7000'}\n"
	require.NoError(t, os.WriteFile(p, []byte(src), 0o600))

	_, err := config.Load(p)
	require.Error(t, err, "Load validates the file alone")

	c, err := config.Read(p)
	require.NoError(t, err, "Read does not validate")
	err = c.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "policy.file: required")

	c.Policy.File, c.Audit.File = "p.yaml", "a.jsonl"
	c.Overridden("policy.file")
	c.Overridden("audit.file")
	require.NoError(t, c.Validate())

	// A bad value from a flag is not blamed on the file's line.
	c.Listen.Postgres = "nowhere"
	c.Overridden("listen.postgres")
	err = c.Validate()
	require.Error(t, err)
	var ce *config.Error
	require.True(t, errors.As(err, &ce))
	assert.Equal(t, 0, ce.Line)
	assert.Equal(t, "", ce.File)
	assert.Equal(t, "listen.postgres", ce.Key)
}
