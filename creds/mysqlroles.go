package creds

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/myanalyze"
)

// mysqlPrivileges are the MariaDB privileges each keyhole verb needs on a
// table. REPLACE asks INSERT and DELETE, which an insert and a delete
// grant give. Verbs missing here have no table privilege (see notes).
var mysqlPrivileges = map[sqlpolicy.Verb][]string{
	sqlpolicy.VerbSelect: {"SELECT"},
	sqlpolicy.VerbInsert: {"INSERT"},
	sqlpolicy.VerbUpdate: {"UPDATE"},
	sqlpolicy.VerbDelete: {"DELETE"},
}

// mysqlColumnPrivilege says which privileges MariaDB grants per column.
var mysqlColumnPrivilege = map[string]bool{"SELECT": true, "INSERT": true, "UPDATE": true}

// MySQLGrants returns the MariaDB GRANT statements that give grantee (an
// account, e.g. `'{{name}}'@'%'` in a Vault template) exactly what role
// allows: per table and verb, a table-level grant when every column is
// allowed, else a column list (`GRANT SELECT (id, name) ON shop.customers`)
// leaving out every column whose effective labels (policy and comment
// labels, on the column or its table) the role denies; nothing on a table
// labelled as a whole with a denied label, nor on tables no rule names.
// Procedures under call and functions under functions get EXECUTE. notes
// list what the grants cannot express (enforced by keyhole alone).
func MySQLGrants(p *sqlpolicy.Policy, cat *catalog.Catalog, role *sqlpolicy.Role, grantee string) (grants, notes []string) {
	note := func(format string, args ...any) {
		n := fmt.Sprintf(format, args...)
		if !slices.Contains(notes, n) {
			notes = append(notes, n)
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
	type key struct {
		rel  sqlpolicy.Rel
		priv string
	}
	cols := map[key]map[string]bool{}
	whole := map[key]bool{}
	var routines []string
	views := &viewLineage{
		newAnalyzer: func() analyzer { return myanalyze.New(cat, myanalyze.Options{}) },
		selectColumn: func(rel *catalog.Relation, col string) string {
			return "SELECT " + mysqlIdent(col) + " FROM " + mysqlName(rel.Schema, rel.Name)
		},
	}
	for _, rule := range role.Allow {
		if rule.Verb == sqlpolicy.VerbCall {
			for _, tr := range rule.Tables {
				for _, f := range mysqlRoutines(cat, tr.Pattern, "procedure") {
					routines = append(routines, fmt.Sprintf("GRANT EXECUTE ON PROCEDURE %s TO %s;", mysqlName(f.Schema, f.Name), grantee))
				}
			}
			continue
		}
		privs, ok := mysqlPrivileges[rule.Verb]
		if !ok {
			note("%s (%s) has no table privilege in MariaDB: enforced by keyhole only", rule.Verb, rule.Name)
			continue
		}
		for _, tr := range rule.Tables {
			for _, rel := range mysqlRelations(cat, tr.Pattern) {
				r := sqlpolicy.Rel{Schema: rel.Schema, Name: rel.Name}
				if l, bad := denied(r, ""); bad {
					note("%s: whole table labelled %s, denied", r, l)
					continue
				}
				for _, priv := range privs {
					k := key{r, priv}
					if !mysqlColumnPrivilege[priv] {
						whole[k] = true
						continue
					}
					set := cols[k]
					if set == nil {
						set = map[string]bool{}
						cols[k] = set
					}
					for _, c := range rel.Columns {
						if tr.Columns != nil && !slices.ContainsFunc(tr.Columns, func(s string) bool { return strings.EqualFold(s, c.Name) }) {
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
		for _, fn := range mysqlRoutines(cat, f, "function") {
			routines = append(routines, fmt.Sprintf("GRANT EXECUTE ON FUNCTION %s TO %s;", mysqlName(fn.Schema, fn.Name), grantee))
		}
	}
	if role.MaxRows > 0 {
		note("max_rows is enforced by keyhole only")
	}
	keys := make([]key, 0, len(cols)+len(whole))
	for k := range cols {
		keys = append(keys, k)
	}
	for k := range whole {
		keys = append(keys, k)
	}
	order := []string{"SELECT", "INSERT", "UPDATE", "DELETE"}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.rel != b.rel {
			return a.rel.String() < b.rel.String()
		}
		return slices.Index(order, a.priv) < slices.Index(order, b.priv)
	})
	for _, k := range keys {
		target := mysqlName(k.rel.Schema, k.rel.Name)
		if whole[k] {
			grants = append(grants, fmt.Sprintf("GRANT %s ON %s TO %s;", k.priv, target, grantee))
			continue
		}
		set := cols[k]
		rel := cat.Relation(k.rel.Schema, k.rel.Name)
		if k.priv == "SELECT" {
			dropUngrantedGenerated(k.rel, rel, set, note)
		}
		if len(set) == 0 {
			continue
		}
		if len(set) == len(rel.Columns) {
			grants = append(grants, fmt.Sprintf("GRANT %s ON %s TO %s;", k.priv, target, grantee))
			continue
		}
		var list []string
		for _, c := range rel.Columns { // catalog order
			if set[c.Name] {
				list = append(list, mysqlIdent(c.Name))
			}
		}
		grants = append(grants, fmt.Sprintf("GRANT %s (%s) ON %s TO %s;", k.priv, strings.Join(list, ", "), target, grantee))
	}
	slices.Sort(routines)
	return append(grants, slices.Compact(routines)...), notes
}

// MySQLRolesForPolicy turns each role of p into a Vault database role for
// the MySQL plugin: creation statements make a user '{{name}}'@'%' with
// the password Vault chooses and MySQLGrants' grants, so a leaked
// credential is refused the labelled columns by MariaDB itself; revocation
// drops the user.
func MySQLRolesForPolicy(p *sqlpolicy.Policy, cat *catalog.Catalog, opts RoleOptions) ([]VaultRole, error) {
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
	const grantee = `'{{name}}'@'%'`
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
		grants, notes := MySQLGrants(p, cat, role, grantee)
		out = append(out, VaultRole{
			Name: name, DBName: db, DefaultTTL: opts.DefaultTTL, MaxTTL: opts.MaxTTL,
			CreationStatements:   append([]string{`CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}';`}, grants...),
			RevocationStatements: []string{`DROP USER IF EXISTS '{{name}}'@'%';`},
			Notes:                notes,
		})
	}
	return out, nil
}

// deniedSource returns a denied column a generated column's expression
// names, or "": reading the generated column would reveal it.
func deniedSource(rel *catalog.Relation, c *catalog.Column, denied func(sqlpolicy.Rel, string) (string, bool)) string {
	for _, src := range rel.GeneratedFrom(c) {
		if _, bad := denied(sqlpolicy.Rel{Schema: rel.Schema, Name: rel.Name}, src.Name); bad {
			return src.Name
		}
	}
	return ""
}

// mysqlRelations returns the catalog's tables and views matching
// "db.name" or "db.*", sorted; information_schema is left out.
func mysqlRelations(cat *catalog.Catalog, pattern string) []*catalog.Relation {
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

// mysqlRoutines returns the stored routines of a kind matching "db.name"
// or "db.*".
func mysqlRoutines(cat *catalog.Catalog, pattern, kind string) []*catalog.Function {
	schema, name, ok := strings.Cut(pattern, ".")
	if !ok {
		return nil
	}
	var out []*catalog.Function
	for n, f := range cat.Functions[schema] {
		if (name == "*" || strings.EqualFold(name, n)) && f.Kind == kind {
			out = append(out, f)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// mysqlIdent quotes an identifier with backticks.
func mysqlIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

func mysqlName(schema, name string) string { return mysqlIdent(schema) + "." + mysqlIdent(name) }
