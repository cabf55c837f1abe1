package gateway

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/mysqlproxy"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// loadMySQLCatalog reads a MySQL or MariaDB upstream's schema as the
// lease's user.
func loadMySQLCatalog(ctx context.Context, up *Upstream, lease *creds.Lease, log *slog.Logger) (*catalog.Catalog, error) {
	loaded, err := inspectMySQL(ctx, up.Addr, up.Database, up.TLS, lease.User, lease.Password.Reveal())
	if err != nil {
		return nil, fmt.Errorf("catalog of upstream %s at %s as %s: %w", up.label(), up.Addr, lease.User, err)
	}
	for _, w := range loaded.Warnings {
		log.Warn("catalog", "upstream", up.Name, "warning", w)
	}
	return loaded.Catalog, nil
}

// InspectMySQL reads the schema of a MySQL or MariaDB upstream as user,
// as keyhole serve does: u is an upstream URL parsed by
// config.ParseUpstreamURL (address, database, sslmode and sslrootcert;
// sslmode defaults as in keyhole.yaml). The error carries no password.
func InspectMySQL(ctx context.Context, u config.Upstream, user, password string) (*catalog.Loaded, error) {
	if u.SSLMode == "" {
		u.SSLMode = config.DefaultSSLMode(u.Addr)
	}
	tc, err := upstreamTLS(u)
	if err != nil {
		return nil, err
	}
	return inspectMySQL(ctx, u.Addr, u.Database, tc, user, password)
}

// inspectMySQL reads the schema in database db (catalog.Database, where
// unqualified names resolve) over tc (nil: no TLS).
func inspectMySQL(ctx context.Context, addr, db string, tc *tls.Config, user, password string) (*catalog.Loaded, error) {
	mc := mysql.NewConfig()
	mc.Net, mc.Addr, mc.DBName = "tcp", addr, db
	mc.User, mc.Passwd = user, password
	mc.TLS = tc
	mc.Timeout = 10 * time.Second
	mc.ConnectionAttributes = "program_name:keyhole-catalog"
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, errors.New(config.Redact(err.Error(), password))
	}
	sdb := sql.OpenDB(conn)
	defer sdb.Close()
	loaded, err := catalog.InspectMySQL(ctx, sdb)
	if err != nil {
		return nil, errors.New(config.Redact(err.Error(), password))
	}
	return loaded, nil
}

// MySQLCatalogVaultRole is the Vault database role (mysql-database-plugin)
// keyhole reads a MySQL or MariaDB upstream's schema with: a user that
// sees the tables, columns, comments, view definitions and stored
// routines of databases, and reads no table's rows. MariaDB lists in
// information_schema only what a login holds some privilege on:
//
//   - REFERENCES and SHOW VIEW on each database show its tables and
//     columns (REFERENCES reads no data; nothing checks it otherwise);
//   - a view's definition is shown only to a login that may also SELECT
//     from it, so each view of those databases in cat gets SELECT (a view
//     made later is refused by keyhole until the role is written again);
//   - stored routines are listed to logins with a privilege on mysql.proc
//     (10.11 has no SHOW CREATE ROUTINE): SELECT on its name columns.
//
// databases are the ones agents use (the upstream's own among them: the
// login connects to it).
func MySQLCatalogVaultRole(name, dbName string, databases []string, cat *catalog.Catalog, opts creds.RoleOptions) creds.VaultRole {
	if opts.DefaultTTL == 0 {
		opts.DefaultTTL = creds.DefaultRoleTTL
	}
	if opts.MaxTTL == 0 {
		opts.MaxTTL = creds.DefaultRoleMaxTTL
	}
	return creds.VaultRole{
		Name: name, DBName: dbName, DefaultTTL: opts.DefaultTTL, MaxTTL: opts.MaxTTL,
		CreationStatements:   mysqlCatalogCreation(databases, cat),
		RevocationStatements: []string{`DROP USER IF EXISTS '{{name}}'@'%';`},
		Notes:                []string{"keyhole's own login for reading the schema (catalog_role); agents never get it"},
	}
}

const mysqlGrantee = `'{{name}}'@'%'`

func mysqlCatalogCreation(databases []string, cat *catalog.Catalog) []string {
	stmts := []string{`CREATE USER ` + mysqlGrantee + ` IDENTIFIED BY '{{password}}';`}
	var views []string
	for _, db := range databases {
		stmts = append(stmts, fmt.Sprintf("GRANT REFERENCES, SHOW VIEW ON %s.* TO %s;", mysqlIdent(db), mysqlGrantee))
		if cat == nil {
			continue
		}
		for _, r := range cat.Relations[db] {
			if r.Kind == catalog.KindView && !r.System {
				views = append(views, fmt.Sprintf("GRANT SELECT ON %s.%s TO %s;", mysqlIdent(db), mysqlIdent(r.Name), mysqlGrantee))
			}
		}
	}
	slices.Sort(views)
	stmts = append(stmts, views...)
	return append(stmts, "GRANT SELECT (`db`, `name`, `type`) ON `mysql`.`proc` TO "+mysqlGrantee+";")
}

// MySQLCatalogDatabases are the databases a MySQL catalog login needs:
// dsnDB (the upstream's own; "" for none) and every database that pol's
// labels and the rules of the roles on upstream ("" for every role) name
// and cat has (labels apply by name on every upstream), sorted.
func MySQLCatalogDatabases(pol *sqlpolicy.Policy, upstream, dsnDB string, cat *catalog.Catalog) []string {
	var out []string
	add := func(pattern string) {
		db, _, _ := strings.Cut(pattern, ".")
		if db != "" && !isMySQLSystemDB(db) && len(cat.Relations[db]) > 0 && !slices.Contains(out, db) {
			out = append(out, db)
		}
	}
	if dsnDB != "" {
		out = append(out, dsnDB)
	}
	for _, l := range pol.Labels {
		add(l.Rel.Schema)
	}
	for _, name := range pol.RoleNames() {
		r := pol.Roles[name]
		if upstream != "" && r.Upstream != upstream {
			continue
		}
		for _, rule := range r.Allow {
			for _, tr := range rule.Tables {
				add(tr.Pattern)
			}
		}
		for _, f := range r.Functions {
			add(f)
		}
	}
	slices.Sort(out)
	return out
}

func isMySQLSystemDB(db string) bool {
	switch strings.ToLower(db) {
	case "information_schema", "mysql", "performance_schema", "sys":
		return true
	}
	return false
}

// mysqlIdent quotes a MySQL identifier with backticks.
func mysqlIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// NewMySQLFrontEnd builds the MySQL front end (mysqlproxy); see
// NewPostgresFrontEnd for its use in Options.FrontEnds.
// FrontEndConfig.Decider's sessions are *myanalyze.Session. A MySQL upstream names one database: agents may
// name that one at connect and in COM_INIT_DB (USE in SQL text is the
// policy's to decide), as a Postgres agent reaches its role's database
// only.
func NewMySQLFrontEnd(c FrontEndConfig) (FrontEnd, error) {
	ups := make(map[string]mysqlproxy.Upstream, len(c.Upstreams))
	for name, u := range c.Upstreams {
		up := mysqlproxy.Upstream{Addr: u.Addr, Database: u.Database, TLS: u.TLS}
		if u.Database != "" {
			up.Databases = []string{u.Database}
		}
		ups[name] = up
	}
	srv, err := mysqlproxy.New(mysqlproxy.Config{
		TLS:       c.TLS,
		Decider:   c.Decider,
		Auth:      c.Auth,
		Limiter:   c.Limiter,
		Creds:     c.Creds,
		Upstreams: ups,
		Audit:     c.Audit,
		Metrics:   c.Metrics,
		Logger:    c.Logger,
		Limits: mysqlproxy.Limits{
			MaxConns:       c.Limits.MaxConns,
			MaxStartups:    c.Limits.MaxStartups,
			MaxPerAgent:    c.Limits.MaxConnsPerAgent,
			StartupTimeout: c.Limits.StartupTimeout,
			IdleTimeout:    c.Limits.IdleTimeout,
			MaxPacketSize:  c.Limits.MaxMessageSize,
			BufferMemory:   c.Limits.BufferMemory,
			ShutdownGrace:  c.Limits.ShutdownGrace,
			MaxPrepared:    c.Limits.MaxPreparedPerSession,
		},
		Relay:         mysqlproxy.Relay(c.Limits.Relay),
		RawStatements: c.RawStatements,
		RSAKey:        c.RSAKey,
	})
	if err != nil {
		return nil, err
	}
	return myFrontEnd{srv}, nil
}

// myFrontEnd gives mysqlproxy.Server the EndAgent of AgentEnder.
type myFrontEnd struct{ *mysqlproxy.Server }

// EndAgent implements AgentEnder.
func (m myFrontEnd) EndAgent(agent string) { m.RevokeAgent(agent) }

// CheckQuiet is Check without approvals: the policy's decision, and no
// access request for a denial. mysqlproxy decides with it what clients
// enumerate on their own (COM_FIELD_LIST, sent by the mysql CLI's
// completion for every table it lists), which no agent asked to read;
// pgproxy whether an error's row description may reach the agent. The
// approvals' router embeds it unchanged (an agent's grants do not count).
func (r *router) CheckQuiet(p sqlpolicy.Principal, sql string, s sqlpolicy.Session) (*sqlpolicy.Decision, *sqlpolicy.Access) {
	return r.Check(p, sql, s)
}
