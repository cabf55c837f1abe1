package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/hashicorp/vault/api"

	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/creds"
)

// vaultPlugin is the Vault database plugin of a dialect.
func vaultPlugin(dialect string) string {
	if dialect == config.DialectMySQL {
		return creds.PluginMySQL
	}
	return creds.PluginPostgres
}

// vaultConnection is the Vault connection roles use (their one db_name),
// from a --connection URL in keyhole's upstream URL syntax: its address,
// database and sslmode, and Vault's own login. allowed_roles are roles.
func vaultConnection(raw, dialect string, roles []creds.VaultRole) (creds.VaultConnection, error) {
	up, login, err := config.ParseUpstreamURL(raw)
	if err != nil {
		return creds.VaultConnection{}, err
	}
	if up.Dialect != dialect {
		return creds.VaultConnection{}, fmt.Errorf("a %s:// URL for roles of a %s catalog", up.Dialect, dialect)
	}
	if login.User == "" {
		return creds.VaultConnection{}, errors.New("the URL names no user: Vault's own login, which creates the users")
	}
	c := creds.VaultConnection{Plugin: vaultPlugin(dialect), Username: login.User, Password: creds.NewSecret(config.DSNPassword(raw))}
	for _, r := range roles {
		if c.Name != "" && r.DBName != c.Name {
			return creds.VaultConnection{}, fmt.Errorf("the roles use databases %s and %s: write one connection per upstream (--upstream NAME or --db-name NAME)", c.Name, r.DBName)
		}
		c.Name = r.DBName
		c.AllowedRoles = append(c.AllowedRoles, r.Name)
	}
	if c.Name == "" {
		return creds.VaultConnection{}, errors.New("no roles to allow")
	}
	mode := up.SSLMode
	if mode == "" {
		mode = config.DefaultSSLMode(up.Addr)
	}
	if dialect == config.DialectPostgres {
		q := url.Values{"sslmode": {mode}}
		if up.CAFile != "" {
			q.Set("sslrootcert", up.CAFile) // a path on Vault's host
		}
		// Vault's templates go in as they are: url.URL would escape the braces.
		c.URL = "postgresql://{{username}}:{{password}}@" + up.Addr + "/" + url.PathEscape(up.Database) + "?" + q.Encode()
		return c, nil
	}
	// The MySQL plugin takes go-sql-driver's DSN; its tls parameter
	// (true verifies chain and name, skip-verify only encrypts), or
	// tls_ca for a CA of the caller's.
	var tlsParam string
	switch mode {
	case config.SSLDisable:
	case config.SSLRequire:
		tlsParam = "?tls=skip-verify"
	case config.SSLVerifyFull:
		if up.CAFile == "" {
			tlsParam = "?tls=true"
			break
		}
		pem, err := os.ReadFile(up.CAFile)
		if err != nil {
			return creds.VaultConnection{}, fmt.Errorf("sslrootcert: %w", err)
		}
		c.TLSCA = string(pem)
	default:
		return creds.VaultConnection{}, fmt.Errorf("sslmode %s: the MySQL plugin verifies the server's name with its chain; use verify-full or require", mode)
	}
	c.URL = "{{username}}:{{password}}@tcp(" + up.Addr + ")/" + tlsParam
	return c, nil
}

// checkVaultConnections reads the connections roles use and says what
// would keep Vault from issuing their credentials: a connection that does
// not exist, that uses another dialect's plugin, or that does not allow a
// role. A connection keyhole may not read is not checked.
func checkVaultConnections(ctx context.Context, client *api.Client, mount, dialect string, roles []creds.VaultRole) []string {
	var warns []string
	byDB := map[string][]string{}
	var dbs []string
	for _, r := range roles {
		if _, ok := byDB[r.DBName]; !ok {
			dbs = append(dbs, r.DBName)
		}
		byDB[r.DBName] = append(byDB[r.DBName], r.Name)
	}
	want := vaultPlugin(dialect)
	for _, db := range dbs {
		path := mount + "/config/" + db
		sec, err := client.Logical().ReadWithContext(ctx, path)
		if err != nil {
			continue
		}
		if sec == nil || sec.Data == nil {
			warns = append(warns, fmt.Sprintf("Vault has no connection %s yet: Vault cannot issue these roles' credentials until it exists "+
				"(--connection URL writes it, with plugin %s)", path, want))
			continue
		}
		if p, _ := sec.Data["plugin_name"].(string); p != want {
			warns = append(warns, fmt.Sprintf("connection %s uses plugin %q, but these roles are for %s", path, p, want))
		}
		var allowed []string
		if list, ok := sec.Data["allowed_roles"].([]any); ok {
			for _, a := range list {
				if s, ok := a.(string); ok {
					allowed = append(allowed, s)
				}
			}
		}
		if slices.Contains(allowed, "*") {
			continue
		}
		var missing []string
		for _, r := range byDB[db] {
			if !slices.Contains(allowed, r) {
				missing = append(missing, r)
			}
		}
		if len(missing) > 0 {
			warns = append(warns, fmt.Sprintf("connection %s does not allow roles %s (allowed_roles: %s)", path, strings.Join(missing, ", "), strings.Join(allowed, ",")))
		}
	}
	return warns
}
