package creds

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// RoleOptions shapes the Vault roles RolesForPolicy builds.
type RoleOptions struct {
	// DBName is the Vault database connection the roles use (db_name);
	// empty means each keyhole role's upstream.
	DBName string
	// Upstream, when set, keeps only the roles whose upstream it is.
	Upstream string
	// DefaultTTL and MaxTTL of the issued credentials (defaults 1h, 24h).
	DefaultTTL, MaxTTL time.Duration
	// TerminateSessions adds pg_terminate_backend of the user's sessions to
	// the revocation statements. Vault's management user then needs
	// pg_signal_backend (or, from Postgres 16, ADMIN on the roles it makes).
	TerminateSessions bool
	// DropOwned adds REASSIGN OWNED / DROP OWNED to the revocation
	// statements, for databases where the user could create objects. It
	// needs membership in the user's role (superuser, or Postgres 16's
	// CREATEROLE admin option). The roles built here never grant CREATE.
	DropOwned bool
}

// Default TTLs of generated roles.
const (
	DefaultRoleTTL    = time.Hour
	DefaultRoleMaxTTL = 24 * time.Hour
)

// VaultRole is one Vault database role definition (<mount>/roles/<Name>).
type VaultRole struct {
	Name                 string        `json:"name" yaml:"name"`
	DBName               string        `json:"db_name" yaml:"db_name"`
	DefaultTTL           time.Duration `json:"default_ttl" yaml:"default_ttl"`
	MaxTTL               time.Duration `json:"max_ttl" yaml:"max_ttl"`
	CreationStatements   []string      `json:"creation_statements" yaml:"creation_statements"`
	RevocationStatements []string      `json:"revocation_statements" yaml:"revocation_statements"`
	// Notes list what the policy allows that the database grants cannot
	// express (left to keyhole alone). Not written to Vault.
	Notes []string `json:"notes,omitempty" yaml:"notes,omitempty"`
}

// Data is the request body for writing r to Vault.
func (r VaultRole) Data() map[string]any {
	return map[string]any{
		"db_name":               r.DBName,
		"default_ttl":           int64(r.DefaultTTL / time.Second),
		"max_ttl":               int64(r.MaxTTL / time.Second),
		"creation_statements":   r.CreationStatements,
		"revocation_statements": r.RevocationStatements,
	}
}

// ErrNoCatalog is returned by RolesForPolicy without a catalog.
var ErrNoCatalog = errors.New("a catalog is needed to expand table patterns and columns")

// privileges are the Postgres table privileges each keyhole verb needs.
// Verbs missing here have no table privilege (see notes).
var privileges = map[sqlpolicy.Verb][]string{
	sqlpolicy.VerbSelect: {"SELECT"},
	sqlpolicy.VerbInsert: {"INSERT"},
	sqlpolicy.VerbUpdate: {"UPDATE"},
	sqlpolicy.VerbDelete: {"DELETE"},
	sqlpolicy.VerbMerge:  {"INSERT", "UPDATE", "DELETE"},
	// COPY ... TO STDOUT reads, COPY ... FROM STDIN inserts.
	sqlpolicy.VerbCopy: {"SELECT", "INSERT"},
}

// columnPrivilege says which privileges Postgres can grant per column.
var columnPrivilege = map[string]bool{"SELECT": true, "INSERT": true, "UPDATE": true}

// RolesForPolicy turns each role of p into a Vault database role whose
// GRANTs give the database user exactly the tables, verbs and columns the
// role allows, minus every column whose effective labels (policy labels
// and comment labels, on the column or its relation) match the role's
// deny_labels — so the policy is enforced a second time by Postgres, for
// any connection that bypasses keyhole.
func RolesForPolicy(p *sqlpolicy.Policy, cat *catalog.Catalog, opts RoleOptions) ([]VaultRole, error) {
	if cat == nil {
		return nil, ErrNoCatalog
	}
	if opts.DefaultTTL == 0 {
		opts.DefaultTTL = DefaultRoleTTL
	}
	if opts.MaxTTL == 0 {
		opts.MaxTTL = DefaultRoleMaxTTL
	}
	if opts.MaxTTL < opts.DefaultTTL {
		return nil, fmt.Errorf("max TTL %s is below default TTL %s", opts.MaxTTL, opts.DefaultTTL)
	}
	var out []VaultRole
	for _, name := range p.RoleNames() {
		role := p.Roles[name]
		if opts.Upstream != "" && role.Upstream != opts.Upstream {
			continue
		}
		db := opts.DBName
		if db == "" {
			db = role.Upstream
		}
		if db == "" {
			return nil, fmt.Errorf("role %s: no upstream and no db name given", name)
		}
		out = append(out, roleFor(p, cat, role, db, opts))
	}
	return out, nil
}

// grantKey is one privilege on one relation.
type grantKey struct {
	rel  sqlpolicy.Rel
	priv string
}

func roleFor(p *sqlpolicy.Policy, cat *catalog.Catalog, role *sqlpolicy.Role, db string, opts RoleOptions) VaultRole {
	vr := VaultRole{Name: role.Name, DBName: db, DefaultTTL: opts.DefaultTTL, MaxTTL: opts.MaxTTL}
	// nil column set = every column.
	cols := map[grantKey]map[string]bool{}
	whole := map[grantKey]bool{}
	note := func(format string, args ...any) {
		n := fmt.Sprintf(format, args...)
		if !slices.Contains(vr.Notes, n) {
			vr.Notes = append(vr.Notes, n)
		}
	}
	denied := func(rel sqlpolicy.Rel, col string) (string, bool) {
		for _, l := range p.ColumnLabels(cat, rel, col) {
			if l == catalog.InvalidLabel {
				return l, true
			}
			for _, pat := range role.DenyLabels {
				if catalog.MatchLabel(pat, l) {
					return l, true
				}
			}
		}
		return "", false
	}

	for _, rule := range role.Allow {
		privs, ok := privileges[rule.Verb]
		if !ok {
			note("%s (%s) has no table privilege in Postgres: enforced by keyhole only", rule.Verb, rule.Name)
			continue
		}
		for _, tr := range rule.Tables {
			for _, rel := range matchRelations(cat, tr.Pattern) {
				r := sqlpolicy.Rel{Schema: rel.Schema, Name: rel.Name}
				if l, bad := denied(r, ""); bad {
					note("%s: whole relation labelled %s, denied", r, l)
					continue
				}
				for _, priv := range privs {
					k := grantKey{r, priv}
					if !columnPrivilege[priv] {
						// DELETE is per table; it reads no column itself.
						whole[k] = true
						continue
					}
					set := cols[k]
					if set == nil {
						set = map[string]bool{}
						cols[k] = set
					}
					for _, c := range rel.Columns {
						if tr.Columns != nil && !slices.Contains(tr.Columns, c.Name) {
							continue
						}
						if l, bad := denied(r, c.Name); bad {
							note("%s.%s: labelled %s, left out", r, c.Name, l)
							continue
						}
						set[c.Name] = true
					}
				}
			}
		}
	}
	if len(role.Functions) > 0 {
		note("functions are enforced by keyhole only (Postgres grants EXECUTE to PUBLIC by default)")
	}
	if role.MaxRows > 0 {
		note("max_rows is enforced by keyhole only")
	}

	name := `"{{name}}"`
	stmts := []string{`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`}
	schemas := map[string]bool{}
	var grants []string
	keys := make([]grantKey, 0, len(cols)+len(whole))
	for k := range cols {
		keys = append(keys, k)
	}
	for k := range whole {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.rel != b.rel {
			return a.rel.String() < b.rel.String()
		}
		return privOrder(a.priv) < privOrder(b.priv)
	})
	for _, k := range keys {
		rel := cat.Relation(k.rel.Schema, k.rel.Name)
		target := pgx.Identifier{k.rel.Schema, k.rel.Name}.Sanitize()
		if whole[k] {
			grants = append(grants, fmt.Sprintf("GRANT %s ON %s TO %s;", k.priv, target, name))
			schemas[k.rel.Schema] = true
			continue
		}
		set := cols[k]
		if len(set) == 0 {
			continue
		}
		schemas[k.rel.Schema] = true
		if len(set) == len(rel.Columns) {
			grants = append(grants, fmt.Sprintf("GRANT %s ON %s TO %s;", k.priv, target, name))
			continue
		}
		var list []string
		for _, c := range rel.Columns { // catalog order
			if set[c.Name] {
				list = append(list, pgx.Identifier{c.Name}.Sanitize())
			}
		}
		grants = append(grants, fmt.Sprintf("GRANT %s (%s) ON %s TO %s;", k.priv, strings.Join(list, ", "), target, name))
	}
	schemaList := make([]string, 0, len(schemas))
	for s := range schemas {
		schemaList = append(schemaList, s)
	}
	sort.Strings(schemaList)
	for _, s := range schemaList {
		stmts = append(stmts, fmt.Sprintf("GRANT USAGE ON SCHEMA %s TO %s;", pgx.Identifier{s}.Sanitize(), name))
	}
	vr.CreationStatements = append(stmts, grants...)

	var rev []string
	if opts.TerminateSessions {
		// Wait up to 5s for the sessions to end (Postgres 14+).
		rev = append(rev, `SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = '{{name}}';`)
	}
	for _, s := range schemaList {
		id := pgx.Identifier{s}.Sanitize()
		// Revoking a table privilege revokes its column privileges too.
		rev = append(rev,
			fmt.Sprintf("REVOKE ALL ON ALL TABLES IN SCHEMA %s FROM %s;", id, name),
			fmt.Sprintf("REVOKE USAGE ON SCHEMA %s FROM %s;", id, name))
	}
	if opts.DropOwned {
		rev = append(rev, `REASSIGN OWNED BY "{{name}}" TO CURRENT_USER;`, `DROP OWNED BY "{{name}}";`)
	}
	vr.RevocationStatements = append(rev, `DROP ROLE IF EXISTS "{{name}}";`)
	return vr
}

func privOrder(p string) int {
	return slices.Index([]string{"SELECT", "INSERT", "UPDATE", "DELETE"}, p)
}

// matchRelations returns the catalog's relations matching "schema.name" or
// "schema.*", sorted; sequences and system relations are left out.
func matchRelations(cat *catalog.Catalog, pattern string) []*catalog.Relation {
	schema, name, ok := strings.Cut(pattern, ".")
	if !ok {
		return nil
	}
	var out []*catalog.Relation
	for n, rel := range cat.Relations[schema] {
		if (name == "*" || name == n) && rel.Kind != catalog.KindSequence && !rel.System {
			out = append(out, rel)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// WriteVaultRoles writes roles to <mount>/roles/<name> with client. Errors
// carry the role name and a generic class, never Vault's response text.
func WriteVaultRoles(ctx context.Context, client *api.Client, mount string, roles []VaultRole) error {
	if mount == "" {
		mount = DefaultVaultMount
	}
	for _, r := range roles {
		if _, err := client.Logical().WriteWithContext(ctx, mount+"/roles/"+r.Name, r.Data()); err != nil {
			return vaultError("write role "+r.Name, err)
		}
	}
	return nil
}
