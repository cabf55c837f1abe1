package creds

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
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
	// A merge grant covers a MERGE's INSERT and UPDATE actions; its
	// DELETE action needs the delete grant, as it does in keyhole.
	sqlpolicy.VerbMerge: {"INSERT", "UPDATE"},
	// COPY ... TO STDOUT reads, COPY ... FROM STDIN inserts.
	sqlpolicy.VerbCopy: {"SELECT", "INSERT"},
	// Of what ddl allows only TRUNCATE is a privilege (of tables); the
	// rest needs ownership (see ddlNote).
	sqlpolicy.VerbDDL: {"TRUNCATE"},
}

// Notes for verbs Postgres cannot grant (in full).
const (
	ddlNote  = "%s: CREATE, ALTER and DROP need ownership in Postgres: only TRUNCATE is granted"
	lockNote = "%s: LOCK TABLE and SELECT ... FOR UPDATE/SHARE need UPDATE, DELETE or TRUNCATE in Postgres, which would allow more: not granted, enforced by keyhole only"
)

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

// sequencePrivileges are what each keyhole verb allows on a sequence, as
// Postgres privileges. keyhole's update on a sequence allows nextval and
// setval (also through a column default that calls nextval), which is
// exactly Postgres's UPDATE on it; USAGE would add currval and lastval,
// which keyhole allows with select only, as SELECT does. Postgres cannot
// insert into, delete from or copy a sequence.
var sequencePrivileges = map[sqlpolicy.Verb]string{
	sqlpolicy.VerbSelect: "SELECT",
	sqlpolicy.VerbUpdate: "UPDATE",
}

// Kinds of pg_proc entries a routine grant covers.
const (
	routineFunctions  = "f" // functions, aggregates, window functions (prokind f, a, w)
	routineProcedures = "p" // procedures (prokind p)
)

// routineGrant is EXECUTE on the routines a policy pattern names.
type routineGrant struct {
	schema, name string // name "*": every routine of the kind in schema
	kind         string
}

func roleFor(p *sqlpolicy.Policy, cat *catalog.Catalog, role *sqlpolicy.Role, db string, opts RoleOptions) VaultRole {
	vr := VaultRole{Name: role.Name, DBName: db, DefaultTTL: opts.DefaultTTL, MaxTTL: opts.MaxTTL}
	// nil column set = every column.
	cols := map[grantKey]map[string]bool{}
	whole := map[grantKey]bool{}
	seqs := map[grantKey]bool{}
	var routines []routineGrant
	views := pgViewLineage(cat)
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
		if rule.Verb == sqlpolicy.VerbCall {
			for _, tr := range rule.Tables {
				routines = appendRoutine(routines, cat, tr.Pattern, routineProcedures, note)
			}
			continue
		}
		for _, tr := range rule.Tables {
			for _, rel := range matchRelations(cat, tr.Pattern, catalog.KindSequence) {
				r := sqlpolicy.Rel{Schema: rel.Schema, Name: rel.Name}
				priv, ok := sequencePrivileges[rule.Verb]
				if !ok {
					continue
				}
				if l, bad := denied(r, ""); bad {
					note("%s: whole relation labelled %s, denied", r, l)
					continue
				}
				if rule.Verb == sqlpolicy.VerbSelect && tr.Columns != nil && !coversAll(tr.Columns, rel) {
					// Postgres has no column privileges on sequences.
					note("%s: select of some columns of a sequence is enforced by keyhole only", r)
					continue
				}
				seqs[grantKey{r, priv}] = true
			}
		}
		switch rule.Verb {
		case sqlpolicy.VerbDDL:
			note(ddlNote, rule.Name)
		case sqlpolicy.VerbLock:
			note(lockNote, rule.Name)
		}
		privs, ok := privileges[rule.Verb]
		if !ok {
			continue
		}
		for _, tr := range rule.Tables {
			for _, rel := range matchRelations(cat, tr.Pattern, "") {
				r := sqlpolicy.Rel{Schema: rel.Schema, Name: rel.Name}
				if rule.Verb == sqlpolicy.VerbDDL && rel.Kind != catalog.KindTable && rel.Kind != catalog.KindPartitioned {
					continue
				}
				if l, bad := denied(r, ""); bad {
					note("%s: whole relation labelled %s, denied", r, l)
					continue
				}
				if rule.Verb == sqlpolicy.VerbDDL {
					// TRUNCATE empties every column; keyhole refuses
					// DDL on a relation with a column the role's labels
					// deny (it writes every column).
					if c := firstDenied(r, rel, denied); c != "" {
						note("%s: column %s is labelled, TRUNCATE not granted", r, c)
						continue
					}
				}
				for _, priv := range privs {
					k := grantKey{r, priv}
					if !columnPrivilege[priv] {
						// DELETE and TRUNCATE are per table; they read no
						// column themselves.
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
						if src := views.deniedSource(rel, c.Name, denied); src != "" {
							note("%s.%s: reads %s, left out", r, c.Name, src)
							continue
						}
						if src := deniedSource(rel, c, denied); src != "" {
							// Reading a generated column reads the columns
							// its expression reads (keyhole's analyzer
							// reports them): leave it out with its source.
							note("%s.%s: generated from %s, left out", r, c.Name, src)
							continue
						}
						set[c.Name] = true
					}
				}
			}
		}
	}
	for _, f := range role.Functions {
		routines = appendRoutine(routines, cat, f, routineFunctions, note)
	}
	if len(role.Functions) > 0 {
		note("functions not listed keep Postgres's default EXECUTE for PUBLIC: enforced by keyhole only")
	}
	if role.MaxRows > 0 {
		note("max_rows is enforced by keyhole only")
	}

	name := `"{{name}}"`
	stmts := []string{`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`}
	// Objects are named schema-qualified, which needs USAGE on the schema.
	schemas := map[string]bool{}
	seqSchemas := map[string]bool{}
	routineSchemas := map[string]bool{}
	var grants []string
	keys := make([]grantKey, 0, len(cols)+len(whole))
	for k := range cols {
		keys = append(keys, k)
	}
	for k := range whole {
		keys = append(keys, k)
	}
	sortGrants(keys)
	for _, k := range keys {
		rel := cat.Relation(k.rel.Schema, k.rel.Name)
		target := pgx.Identifier{k.rel.Schema, k.rel.Name}.Sanitize()
		if whole[k] {
			grants = append(grants, fmt.Sprintf("GRANT %s ON %s TO %s;", k.priv, target, name))
			schemas[k.rel.Schema] = true
			continue
		}
		set := cols[k]
		if k.priv == "SELECT" {
			dropUngrantedGenerated(k.rel, rel, set, note)
		}
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
	seqKeys := slices.Collect(maps.Keys(seqs))
	sortGrants(seqKeys)
	for _, k := range seqKeys {
		grants = append(grants, fmt.Sprintf("GRANT %s ON SEQUENCE %s TO %s;", k.priv, pgx.Identifier{k.rel.Schema, k.rel.Name}.Sanitize(), name))
		schemas[k.rel.Schema], seqSchemas[k.rel.Schema] = true, true
	}
	for _, g := range routines {
		grants = append(grants, g.statement(name))
		schemas[g.schema], routineSchemas[g.schema] = true, true
	}
	schemaList := slices.Sorted(maps.Keys(schemas))
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
		rev = append(rev, fmt.Sprintf("REVOKE ALL ON ALL TABLES IN SCHEMA %s FROM %s;", id, name))
		if seqSchemas[s] {
			rev = append(rev, fmt.Sprintf("REVOKE ALL ON ALL SEQUENCES IN SCHEMA %s FROM %s;", id, name))
		}
		if routineSchemas[s] {
			rev = append(rev, fmt.Sprintf("REVOKE ALL ON ALL ROUTINES IN SCHEMA %s FROM %s;", id, name))
		}
		rev = append(rev, fmt.Sprintf("REVOKE USAGE ON SCHEMA %s FROM %s;", id, name))
	}
	if opts.DropOwned {
		rev = append(rev, `REASSIGN OWNED BY "{{name}}" TO CURRENT_USER;`, `DROP OWNED BY "{{name}}";`)
	}
	vr.RevocationStatements = append(rev, `DROP ROLE IF EXISTS "{{name}}";`)
	return vr
}

// dropUngrantedGenerated removes from set, the columns of rel one SELECT
// grant covers, every generated column computed from a column not in set:
// keyhole reads a generated column's sources with it, so it refuses
// reading the column without them, and the database grant agrees.
func dropUngrantedGenerated(r sqlpolicy.Rel, rel *catalog.Relation, set map[string]bool, note func(string, ...any)) {
	if rel == nil {
		return
	}
	for _, c := range rel.Columns {
		if !set[c.Name] {
			continue
		}
		for _, src := range rel.GeneratedFrom(c) {
			if !set[src.Name] {
				delete(set, c.Name)
				note("%s.%s: generated from %s, which the role may not read, left out", r, c.Name, src.Name)
				break
			}
		}
	}
}

func sortGrants(keys []grantKey) {
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.rel != b.rel {
			return a.rel.String() < b.rel.String()
		}
		return privOrder(a.priv) < privOrder(b.priv)
	})
}

func privOrder(p string) int {
	return slices.Index([]string{"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"}, p)
}

// coversAll reports whether cols lists every column of rel.
func coversAll(cols []string, rel *catalog.Relation) bool {
	for _, c := range rel.Columns {
		if !slices.Contains(cols, c.Name) {
			return false
		}
	}
	return true
}

// matchRelations returns the catalog's relations matching "schema.name" or
// "schema.*", sorted, leaving out system relations: sequences when kind is
// KindSequence, every other kind when kind is empty.
func matchRelations(cat *catalog.Catalog, pattern string, kind catalog.RelKind) []*catalog.Relation {
	schema, name, ok := strings.Cut(pattern, ".")
	if !ok {
		return nil
	}
	var out []*catalog.Relation
	for n, rel := range cat.Relations[schema] {
		if rel.System || (rel.Kind == catalog.KindSequence) != (kind == catalog.KindSequence) {
			continue
		}
		if name == "*" || name == n {
			out = append(out, rel)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// appendRoutine adds EXECUTE on the routines of kind that pattern
// ("schema.name" or "schema.*") names, unless already there. Built-in
// functions and system schemas need no grant (PUBLIC may execute them), and
// a name the catalog does not have gets a note instead.
func appendRoutine(out []routineGrant, cat *catalog.Catalog, pattern, kind string, note func(string, ...any)) []routineGrant {
	schema, name, ok := strings.Cut(pattern, ".")
	if !ok {
		return out
	}
	switch {
	case schema == "pg_catalog" || schema == "information_schema":
		return out
	case strings.Contains(pattern, "$keyhole$"):
		// It would end the DO block's dollar quote.
		note("%s: name contains $keyhole$, no EXECUTE granted", pattern)
		return out
	case name != "*":
		f := cat.Function(schema, name)
		if f == nil {
			note("%s: not in the catalog, no EXECUTE granted", pattern)
			return out
		}
		if f.Builtin {
			return out
		}
	}
	g := routineGrant{schema: schema, name: name, kind: kind}
	if slices.Contains(out, g) {
		return out
	}
	return append(out, g)
}

// statement grants EXECUTE to role (already quoted). Postgres grants on a
// routine by signature, so a name with overloads is granted by a DO block
// that finds them in pg_proc when Vault creates the user. Vault runs a
// statement containing the word END as one statement instead of splitting
// it at semicolons.
func (g routineGrant) statement(role string) string {
	schema := pgx.Identifier{g.schema}.Sanitize()
	if g.name == "*" {
		if g.kind == routineProcedures {
			return fmt.Sprintf("GRANT EXECUTE ON ALL PROCEDURES IN SCHEMA %s TO %s;", schema, role)
		}
		return fmt.Sprintf("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA %s TO %s;", schema, role)
	}
	kinds := "p.prokind <> 'p'"
	if g.kind == routineProcedures {
		kinds = "p.prokind = 'p'"
	}
	return "DO $keyhole$ DECLARE r regprocedure; BEGIN " +
		"FOR r IN SELECT p.oid FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace " +
		"WHERE n.nspname = " + quoteLiteral(g.schema) + " AND p.proname = " + quoteLiteral(g.name) + " AND " + kinds + " " +
		"LOOP EXECUTE pg_catalog.format('GRANT EXECUTE ON ROUTINE %s TO %I', r, " + quoteLiteral(strings.Trim(role, `"`)) + "); END LOOP; " +
		"END $keyhole$;"
}

// quoteLiteral is a standard-conforming SQL string literal. Dollar quotes
// (the DO body) are not escapes, so a literal inside stays a literal.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
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

// viewLineage finds the base columns a view column reads. Postgres reads
// a view's base relations with the view owner's privileges, and so does
// MariaDB a view's (SQL SECURITY DEFINER, the default), so SELECT on a
// view column hands out whatever it is computed from: a column whose
// lineage reaches a column or relation the role's labels deny is left
// out, as keyhole refuses reading it. keyhole counts every column a
// view's other clauses (WHERE, GROUP BY ...) read for each of its
// columns, and so does this. A view keyhole cannot analyze is left out.
type viewLineage struct {
	// newAnalyzer makes the dialect's analyzer, once, when a view is met.
	newAnalyzer func() analyzer
	an          analyzer
	// selectColumn is the text that reads column col of rel.
	selectColumn func(rel *catalog.Relation, col string) string
}

type analyzer interface {
	Analyze(sql string, s sqlpolicy.Session) *sqlpolicy.Access
}

func pgViewLineage(cat *catalog.Catalog) *viewLineage {
	return &viewLineage{
		newAnalyzer: func() analyzer { return pganalyze.New(cat, pganalyze.Options{}) },
		selectColumn: func(rel *catalog.Relation, col string) string {
			return fmt.Sprintf("SELECT %s FROM %s", pgx.Identifier{col}.Sanitize(), pgx.Identifier{rel.Schema, rel.Name}.Sanitize())
		},
	}
}

// deniedSource returns the first denied base column or relation that
// column col of rel reads ("" when none, or when rel is not a view).
func (v *viewLineage) deniedSource(rel *catalog.Relation, col string, denied func(sqlpolicy.Rel, string) (string, bool)) string {
	if rel.Kind != catalog.KindView && rel.Kind != catalog.KindMatView {
		return ""
	}
	if v.an == nil {
		v.an = v.newAnalyzer()
	}
	acc := v.an.Analyze(v.selectColumn(rel, col), nil)
	if acc == nil || len(acc.Statements) != 1 || len(acc.Statements[0].Problems) > 0 {
		return "a definition keyhole cannot analyze"
	}
	st := acc.Statements[0]
	for _, t := range st.Tables {
		if _, bad := denied(t.Rel, ""); bad {
			return t.Rel.String()
		}
	}
	for _, c := range st.Columns {
		if _, bad := denied(c.Rel, c.Column); bad {
			return c.Rel.String() + "." + c.Column
		}
	}
	return ""
}

// firstDenied returns the first column of rel the role's labels deny.
func firstDenied(r sqlpolicy.Rel, rel *catalog.Relation, denied func(sqlpolicy.Rel, string) (string, bool)) string {
	for _, c := range rel.Columns {
		if _, bad := denied(r, c.Name); bad {
			return c.Name
		}
	}
	return ""
}
