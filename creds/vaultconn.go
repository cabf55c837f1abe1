package creds

import (
	"context"
	"strings"

	"github.com/hashicorp/vault/api"
)

// Vault database plugins keyhole writes roles for. mysql-database-plugin
// works with MariaDB too (its default username template fits MySQL's 32
// characters).
const (
	PluginPostgres = "postgresql-database-plugin"
	PluginMySQL    = "mysql-database-plugin"
)

// VaultConnection is a database secrets engine connection,
// <mount>/config/<Name>: the database Vault creates users in, the login
// it creates them with, and the roles allowed to use it.
type VaultConnection struct {
	Name   string
	Plugin string // PluginPostgres or PluginMySQL
	// URL is the plugin's connection_url, with Vault's {{username}} and
	// {{password}} templates where the login goes.
	URL      string
	Username string
	Password Secret
	// TLSCA is a PEM bundle the MySQL plugin verifies the server with
	// (tls_ca); Postgres takes sslrootcert in URL instead.
	TLSCA        string
	AllowedRoles []string
}

// Data is the request body for writing c to Vault. Vault verifies the
// connection when it is written.
func (c VaultConnection) Data() map[string]any {
	d := map[string]any{
		"plugin_name":       c.Plugin,
		"connection_url":    c.URL,
		"username":          c.Username,
		"password":          c.Password.Reveal(),
		"allowed_roles":     strings.Join(c.AllowedRoles, ","),
		"verify_connection": true,
	}
	if c.TLSCA != "" {
		d["tls_ca"] = c.TLSCA
	}
	return d
}

// WriteVaultConnection writes c to <mount>/config/<c.Name>. Errors carry a
// generic class, never Vault's response text (which can quote the
// connection URL or the database's login error).
func WriteVaultConnection(ctx context.Context, client *api.Client, mount string, c VaultConnection) error {
	if mount == "" {
		mount = DefaultVaultMount
	}
	if _, err := client.Logical().WriteWithContext(ctx, mount+"/config/"+c.Name, c.Data()); err != nil {
		return vaultError("write connection "+c.Name, err)
	}
	return nil
}
