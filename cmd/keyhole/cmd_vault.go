package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
	"go.yaml.in/yaml/v3"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

func init() {
	register("vault", "Vault database roles that enforce the policy in the database too", runVault)
}

const vaultUsage = `usage: keyhole vault roles --policy FILE (--catalog FILE | --dsn URL) [flags]

roles turns every role of the policy into a Vault database secrets engine
role whose creation statements GRANT the database user only what the role
allows, so that a connection that bypasses keyhole with such a credential
is refused by the database itself. See docs/vault-roles.md.

Postgres (a postgres:// DSN or catalog): its tables per verb, and per
column for SELECT/INSERT/UPDATE, leaving out every column whose labels
(policy file and column comments) match the role's deny_labels; SELECT or
UPDATE on the sequences its rules name (UPDATE is what nextval needs, also
for serial and nextval column defaults, and setval); EXECUTE on its listed
functions and call procedures; USAGE on their schemas (SQLSTATE 42501).

MySQL and MariaDB (a mysql:// DSN or catalog; Vault's mysql-database-plugin):
CREATE USER '{{name}}'@'%' and the same grants in MariaDB's terms, per
column where a table has denied columns (GRANT SELECT (id, name) ON
shop.customers ...; errno 1142/1143); EXECUTE on listed routines.
Revocation drops the user.

It also prints keyhole's own catalog login (--catalog-role, default
keyhole-catalog), which keyhole serve --vault-addr reads the schema with.
It prints the roles (YAML, or JSON with --format json); with --apply it
writes them to <vault-mount>/roles/<role> (token from VAULT_TOKEN), and with
--connection URL first the connection <vault-mount>/config/<db-name> they use.

flags:
  --policy FILE          policy file (required)
  --catalog FILE         catalog JSON (keyhole catalog dump), or
  --dsn URL              read the catalog from the database: postgres://... or key=value
                         (PGPASSWORD), or mysql://USER@HOST[:PORT]/DB (MYSQL_PWD)
  --db-name NAME         Vault database connection (db_name); default: each role's upstream
  --upstream NAME        only roles of this upstream
  --default-ttl D        credential TTL (default 1h)
  --max-ttl D            credential max TTL (default 24h)
  --terminate-sessions   revocation ends the user's sessions (Postgres; Vault's db user needs pg_signal_backend)
  --drop-owned           revocation runs REASSIGN OWNED / DROP OWNED (Postgres; needs membership in the role)
  --catalog-role NAME    keyhole's catalog login to write too (default keyhole-catalog; "" for none)
  --format yaml|json     output format (default yaml)
  --apply                write the roles to Vault
  --connection URL       with --apply, also write the Vault connection the roles use:
                         postgres://USER@HOST[:PORT]/DB or mysql://USER@HOST[:PORT]/ with
                         ?sslmode= as in keyhole.yaml; USER is Vault's own login, which
                         creates the users (password from the URL, PGPASSWORD or MYSQL_PWD);
                         allowed_roles are the roles written
  --vault-addr URL       Vault address (default $VAULT_ADDR)
  --vault-mount PATH     database secrets engine mount (default database)
  --vault-cacert FILE    CA bundle for Vault's TLS certificate (default $VAULT_CACERT)
`

func runVault(args []string) int {
	if code, ok := subcommand(args, vaultUsage, os.Stdout, os.Stderr); !ok {
		return code
	}
	switch args[0] {
	case "roles":
		return runVaultRoles(args[1:], os.Stdout, os.Stderr)
	default:
		fmt.Fprintf(os.Stderr, "keyhole vault: unknown subcommand %q\n%s", args[0], vaultUsage)
		return exitError
	}
}

// vaultRoleOut is how a role prints: durations as text.
type vaultRoleOut struct {
	Name                 string   `json:"name" yaml:"name"`
	DBName               string   `json:"db_name" yaml:"db_name"`
	DefaultTTL           string   `json:"default_ttl" yaml:"default_ttl"`
	MaxTTL               string   `json:"max_ttl" yaml:"max_ttl"`
	CreationStatements   []string `json:"creation_statements" yaml:"creation_statements"`
	RevocationStatements []string `json:"revocation_statements" yaml:"revocation_statements"`
	Notes                []string `json:"notes,omitempty" yaml:"notes,omitempty"`
}

func runVaultRoles(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keyhole vault roles", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	policyFile := fs.String("policy", "", "")
	catalogFile := fs.String("catalog", "", "")
	dsn := fs.String("dsn", "", "")
	var opts creds.RoleOptions
	fs.StringVar(&opts.DBName, "db-name", "", "")
	fs.StringVar(&opts.Upstream, "upstream", "", "")
	fs.DurationVar(&opts.DefaultTTL, "default-ttl", creds.DefaultRoleTTL, "")
	fs.DurationVar(&opts.MaxTTL, "max-ttl", creds.DefaultRoleMaxTTL, "")
	fs.BoolVar(&opts.TerminateSessions, "terminate-sessions", false, "")
	fs.BoolVar(&opts.DropOwned, "drop-owned", false, "")
	catalogRole := fs.String("catalog-role", config.DefaultCatalogRole, "")
	format := fs.String("format", "yaml", "")
	apply := fs.Bool("apply", false, "")
	vaultAddr := fs.String("vault-addr", os.Getenv("VAULT_ADDR"), "")
	vaultMount := fs.String("vault-mount", creds.DefaultVaultMount, "")
	vaultCACert := fs.String("vault-cacert", os.Getenv("VAULT_CACERT"), "")
	connection := fs.String("connection", "", "")
	timeout := fs.Duration("timeout", time.Minute, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, vaultUsage)
			return exitOK
		}
		fmt.Fprintf(stderr, "keyhole vault roles: %v\n%s", err, vaultUsage)
		return exitError
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "keyhole vault roles: "+format+"\n", a...)
		return exitError
	}
	switch {
	case fs.NArg() > 0:
		return fail("unexpected argument %q", fs.Arg(0))
	case *policyFile == "":
		return fail("--policy is required")
	case (*catalogFile == "") == (*dsn == ""):
		return fail("give one of --catalog and --dsn")
	case *format != "yaml" && *format != "json":
		return fail("--format: want yaml or json")
	case *apply && *vaultAddr == "":
		return fail("--apply needs --vault-addr (or VAULT_ADDR)")
	case *apply && os.Getenv("VAULT_TOKEN") == "":
		return fail("--apply needs VAULT_TOKEN")
	case *connection != "" && !*apply:
		return fail("--connection is written with --apply")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	var cat *catalog.Catalog
	var err error
	if *catalogFile != "" {
		cat, err = catalog.ReadFile(*catalogFile)
	} else {
		var l *catalog.Loaded
		if l, err = inspectDSN(ctx, *dsn); err == nil {
			cat = l.Catalog
		}
	}
	if err != nil {
		return fail("catalog: %v", err)
	}
	pol, warnings, err := sqlpolicy.LoadPolicyFile(*policyFile, cat)
	for _, w := range warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	if err != nil {
		return fail("%v", err)
	}
	var roles []creds.VaultRole
	if cat.Dialect == config.DialectMySQL {
		if opts.TerminateSessions || opts.DropOwned {
			return fail("--terminate-sessions and --drop-owned are Postgres revocation options; a MySQL role's revocation drops the user")
		}
		roles, err = creds.MySQLRolesForPolicy(pol, cat, opts)
	} else {
		roles, err = creds.RolesForPolicy(pol, cat, opts)
	}
	if err != nil {
		return fail("%v", err)
	}
	roles, note := withCatalogRole(roles, *catalogRole, pol, cat, opts)
	if note != "" {
		fmt.Fprintf(stderr, "warning: %s\n", note)
	}
	var conn *creds.VaultConnection
	if *connection != "" {
		c, err := vaultConnection(*connection, cat.Dialect, roles)
		if err != nil {
			return fail("--connection: %s", config.Redact(err.Error(), config.DSNPassword(*connection)))
		}
		conn = &c
	}

	out := make([]vaultRoleOut, 0, len(roles))
	for _, r := range roles {
		out = append(out, vaultRoleOut{
			Name: r.Name, DBName: r.DBName,
			DefaultTTL: r.DefaultTTL.String(), MaxTTL: r.MaxTTL.String(),
			CreationStatements: r.CreationStatements, RevocationStatements: r.RevocationStatements,
			Notes: r.Notes,
		})
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(out)
	} else {
		enc := yaml.NewEncoder(stdout)
		enc.SetIndent(2)
		err = enc.Encode(out)
		if err == nil {
			err = enc.Close()
		}
	}
	if err != nil {
		return fail("write output: %v", err)
	}
	if !*apply {
		return exitOK
	}

	cfg := api.DefaultConfig()
	cfg.Address = *vaultAddr
	cfg.MaxRetries = 0
	if *vaultCACert != "" {
		if err := cfg.ConfigureTLS(&api.TLSConfig{CACert: *vaultCACert}); err != nil {
			return fail("vault ca cert %s: unreadable or invalid", *vaultCACert)
		}
	}
	client, err := api.NewClient(cfg)
	if err != nil {
		return fail("vault client: invalid configuration")
	}
	client.SetToken(os.Getenv("VAULT_TOKEN"))
	// Errors are *creds.VaultError: operation and status only, no Vault
	// text (which can quote the database's login error or the URL).
	if conn != nil {
		if err := creds.WriteVaultConnection(ctx, client, *vaultMount, *conn); err != nil {
			return fail("%v (Vault logs in to the database as %s when the connection is written: can Vault reach it, "+
				"and may that login create users and grant?)", err, conn.Username)
		}
		fmt.Fprintf(stderr, "wrote %s/config/%s (%s, allowed_roles %s)\n", *vaultMount, conn.Name, conn.Plugin, strings.Join(conn.AllowedRoles, ","))
	}
	if err := creds.WriteVaultRoles(ctx, client, *vaultMount, roles); err != nil {
		return fail("%v", err)
	}
	for _, r := range roles {
		fmt.Fprintf(stderr, "wrote %s/roles/%s\n", *vaultMount, r.Name)
	}
	if conn == nil {
		for _, w := range checkVaultConnections(ctx, client, *vaultMount, cat.Dialect, roles) {
			fmt.Fprintf(stderr, "warning: %s\n", w)
		}
	}
	return exitOK
}
