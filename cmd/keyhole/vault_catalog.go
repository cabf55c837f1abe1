package main

import (
	"fmt"
	"slices"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/gateway"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// withCatalogRole adds to roles keyhole's own catalog login (name; empty
// means none), the role `keyhole serve --vault-addr` reads the schema
// with, in the catalog's dialect. A Vault role names one database: with
// roles on several upstreams and neither --db-name nor --upstream, there
// is no one database to give it, and the returned note says how to write
// one per upstream.
func withCatalogRole(roles []creds.VaultRole, name string, pol *sqlpolicy.Policy, cat *catalog.Catalog, opts creds.RoleOptions) ([]creds.VaultRole, string) {
	if name == "" {
		return roles, ""
	}
	db := opts.DBName
	if db == "" {
		var dbs []string
		for _, r := range roles {
			if !slices.Contains(dbs, r.DBName) {
				dbs = append(dbs, r.DBName)
			}
		}
		if len(dbs) != 1 {
			return roles, fmt.Sprintf("the roles use %d databases (%v): catalog role %s not written; "+
				"run once per upstream with --upstream NAME --catalog-role ROLE (keyhole.yaml upstreams.NAME.catalog_role)", len(dbs), dbs, name)
		}
		db = dbs[0]
	}
	if cat.Dialect == config.DialectMySQL {
		return append(roles, gateway.MySQLCatalogVaultRole(name, db, gateway.MySQLCatalogDatabases(pol, opts.Upstream, cat.Database, cat), cat, opts)), ""
	}
	return append(roles, gateway.CatalogVaultRole(name, db, gateway.CatalogSchemas(cat), opts)), ""
}
