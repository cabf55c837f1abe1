package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/myanalyze"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

// Upstream is one configured database as the front ends and the catalog
// reader use it.
type Upstream struct {
	Name     string // key in keyhole.yaml upstreams ("" for --upstream URL)
	Dialect  string // config.DialectPostgres or config.DialectMySQL
	Addr     string // host:port
	Database string
	// TLS is the client configuration its sslmode asks for; nil = no TLS.
	TLS *tls.Config
	// CatalogRole is the keyhole role whose credential reads its schema.
	CatalogRole string
}

// label names the upstream in messages.
func (u *Upstream) label() string {
	if u.Name == "" {
		return "(--upstream)"
	}
	return u.Name
}

func buildUpstreams(cfg *config.Config) (map[string]*Upstream, error) {
	out := make(map[string]*Upstream, len(cfg.Upstreams))
	for name, u := range cfg.Upstreams {
		tc, err := upstreamTLS(u)
		if err != nil {
			return nil, fmt.Errorf("upstream %q: %w", name, err)
		}
		out[name] = &Upstream{Name: name, Dialect: u.Dialect, Addr: u.Addr, Database: u.Database, TLS: tc, CatalogRole: cfg.CatalogRole(name)}
	}
	return out, nil
}

// upstreamTLS is the TLS client configuration of an sslmode, as libpq
// reads it.
func upstreamTLS(u config.Upstream) (*tls.Config, error) {
	if u.SSLMode == config.SSLDisable {
		return nil, nil
	}
	host, _, _ := net.SplitHostPort(u.Addr)
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if u.ServerName != "" {
		tc.ServerName = u.ServerName
	}
	if u.CAFile != "" {
		pool, err := readCertPool(u.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		tc.RootCAs = pool
	}
	switch u.SSLMode {
	case config.SSLRequire:
		tc.InsecureSkipVerify = true // libpq's require: encryption without verification
	case config.SSLVerifyCA:
		// Verify the chain but not the name, as libpq's verify-ca does.
		tc.InsecureSkipVerify = true
		roots := tc.RootCAs
		tc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			certs := make([]*x509.Certificate, len(raw))
			for i, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return err
				}
				certs[i] = c
			}
			if len(certs) == 0 {
				return errors.New("upstream sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range certs[1:] {
				inter.AddCert(c)
			}
			_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
			return err
		}
	}
	return tc, nil
}

// NewAnalyzer is the analyzer of a dialect (config.DialectPostgres or
// config.DialectMySQL; a catalog's Dialect) over cat: what the gateway
// decides an upstream's statements with, and keyhole check too.
func NewAnalyzer(dialect string, cat *catalog.Catalog) (sqlpolicy.Analyzer, error) {
	switch dialect {
	case config.DialectPostgres:
		return pganalyze.New(cat, pganalyze.Options{}), nil
	case config.DialectMySQL:
		// Sessions start in MariaDB's default sql_mode; the front end
		// tells each its connection's (myanalyze.Session.SetSQLMode).
		return myanalyze.New(cat, myanalyze.Options{}), nil
	}
	return nil, fmt.Errorf("no %s analyzer in this build", dialect)
}

// loadCatalog reads an upstream's schema as its catalog role (the static
// login, or a Vault credential of that role). Problems the DBA should fix,
// such as a malformed label in a column comment (that column is then
// denied to every role), are logged as warnings.
func loadCatalog(ctx context.Context, up *Upstream, src creds.Source, vault *config.Vault, log *slog.Logger) (*catalog.Catalog, error) {
	lease, err := src.Acquire(ctx, creds.Request{Agent: "(keyhole catalog)", Role: up.CatalogRole, Upstream: up.Name})
	if err != nil {
		return nil, catalogLoginError(up, vault, err)
	}
	defer lease.Release()
	switch up.Dialect {
	case config.DialectPostgres:
		return loadPostgresCatalog(ctx, up, lease, log)
	case config.DialectMySQL:
		return loadMySQLCatalog(ctx, up, lease, log)
	}
	return nil, fmt.Errorf("catalog of upstream %s: no %s catalog reader in this build", up.label(), up.Dialect)
}

func loadPostgresCatalog(ctx context.Context, up *Upstream, lease *creds.Lease, log *slog.Logger) (*catalog.Catalog, error) {
	host, port, _ := net.SplitHostPort(up.Addr)
	pc, err := pgx.ParseConfig("")
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("catalog: upstream %s: port %q", up.label(), port)
	}
	pc.Host, pc.Port, pc.Database, pc.User = host, uint16(p), up.Database, lease.User
	pc.Password = lease.Password.Reveal()
	pc.TLSConfig = up.TLS
	pc.Fallbacks = nil
	// ParseConfig read the PG* environment; PGOPTIONS (a search_path, say)
	// must not change how keyhole sees the schema.
	pc.RuntimeParams = map[string]string{"application_name": "keyhole-catalog"}
	conn, err := pgx.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("catalog: connect upstream %s at %s as %s: %s", up.label(), up.Addr, lease.User, config.Redact(err.Error(), lease.Password.Reveal()))
	}
	defer conn.Close(context.Background())
	loaded, err := catalog.InspectPostgres(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("catalog of upstream %s: %w", up.label(), err)
	}
	for _, w := range loaded.Warnings {
		log.Warn("catalog", "upstream", up.Name, "warning", w)
	}
	return loaded.Catalog, nil
}

// catalogLoginError says what to create when Vault has no credential for
// the catalog role: following the README's steps must end in a working
// proxy, and "credentials unavailable" alone would not say how.
func catalogLoginError(up *Upstream, vault *config.Vault, err error) error {
	var ve *creds.VaultError
	// Only a failed read of the role's credentials says the role is
	// missing: a refused login (a wrong AppRole secret_id is a 400 too)
	// says nothing about roles.
	if vault == nil || !errors.As(err, &ve) || !strings.HasPrefix(ve.Op, "read creds") ||
		!(ve.Status == 400 || ve.Status == 404 || strings.HasPrefix(ve.Class, "no data")) {
		return fmt.Errorf("catalog of upstream %s: upstream login as role %s: %w", up.label(), up.CatalogRole, err)
	}
	vrole := up.CatalogRole
	if r := vault.RoleMap[vrole]; r != "" {
		vrole = r
	}
	mount := vault.Mount
	if mount == "" {
		mount = creds.DefaultVaultMount
	}
	db := up.Name
	if db == "" {
		db = "DB_NAME"
	}
	creation, what := catalogCreation([]string{"public"}), "a login with USAGE on the schemas agents use"
	if up.Dialect == config.DialectMySQL {
		creation, what = mysqlCatalogCreation([]string{up.Database}, nil), "a user that sees the schema of the databases agents use"
	}
	return fmt.Errorf("catalog of upstream %s: Vault has no role %s/roles/%s for keyhole's schema reads (%s). Create it with "+
		"`keyhole vault roles --policy POLICY --dsn URL --db-name %s --catalog-role %s --apply`, which writes it with the agents' roles, "+
		"or with `vault write %s/roles/%s db_name=%s creation_statements=%s`: %s",
		up.label(), mount, vrole, ve.Class, db, up.CatalogRole, mount, vrole, db, strconv.Quote(strings.Join(creation, " ")), what)
}

// CatalogVaultRole is the Vault database role keyhole reads an upstream's
// schema with (config's catalog_role, default keyhole-catalog): a login
// with USAGE on schemas, so that its search_path (which skips schemas
// without USAGE) is the one agents' unqualified names resolve on. Reading
// pg_catalog needs nothing more. Postgres only, like RolesForPolicy.
func CatalogVaultRole(name, dbName string, schemas []string, opts creds.RoleOptions) creds.VaultRole {
	if opts.DefaultTTL == 0 {
		opts.DefaultTTL = creds.DefaultRoleTTL
	}
	if opts.MaxTTL == 0 {
		opts.MaxTTL = creds.DefaultRoleMaxTTL
	}
	var rev []string
	for _, s := range schemas {
		rev = append(rev, fmt.Sprintf("REVOKE USAGE ON SCHEMA %s FROM \"{{name}}\";", pgx.Identifier{s}.Sanitize()))
	}
	return creds.VaultRole{
		Name: name, DBName: dbName, DefaultTTL: opts.DefaultTTL, MaxTTL: opts.MaxTTL,
		CreationStatements:   catalogCreation(schemas),
		RevocationStatements: append(rev, `DROP ROLE IF EXISTS "{{name}}";`),
		Notes:                []string{"keyhole's own login for reading the schema (catalog_role); agents never get it"},
	}
}

func catalogCreation(schemas []string) []string {
	stmts := []string{`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`}
	for _, s := range schemas {
		stmts = append(stmts, fmt.Sprintf("GRANT USAGE ON SCHEMA %s TO \"{{name}}\";", pgx.Identifier{s}.Sanitize()))
	}
	return stmts
}

// CatalogSchemas are the schemas of cat that hold relations agents can be
// granted (not pg_catalog or information_schema), sorted.
func CatalogSchemas(cat *catalog.Catalog) []string {
	var out []string
	for s, rels := range cat.Relations {
		for _, r := range rels {
			if !r.System {
				out = append(out, s)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}
