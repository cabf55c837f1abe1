package main

import (
	"context"
	"errors"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/gateway"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// inspectDSN reads the schema the login of an upstream DSN sees. The
// scheme picks the dialect: a mysql:// or mariadb:// URL (keyhole's
// upstream URL syntax, sslmode and sslrootcert included) is read from
// information_schema; anything else is a Postgres DSN, URL or key=value,
// read from pg_catalog. The password comes from the DSN or the dialect's
// environment variable (config.PasswordEnv). Errors never contain it.
func inspectDSN(ctx context.Context, dsn string) (*catalog.Loaded, error) {
	var (
		l   *catalog.Loaded
		err error
	)
	if config.DSNDialect(dsn) == config.DialectMySQL {
		up, login, perr := config.ParseUpstreamURL(dsn)
		switch {
		case perr != nil:
			err = perr
		case login.User == "":
			err = errors.New("mysql:// DSN names no user: want mysql://USER@HOST[:PORT]/DATABASE")
		default:
			l, err = gateway.InspectMySQL(ctx, up, login.User, config.DSNPassword(dsn))
		}
	} else {
		l, err = catalog.InspectPostgresDSN(ctx, dsn)
	}
	if err != nil {
		return nil, errors.New(config.Redact(err.Error(), config.DSNPassword(dsn)))
	}
	return l, nil
}

// newEngine decides with the analyzer of the catalog's dialect, as keyhole
// serve does for an upstream of that dialect.
func newEngine(pol *sqlpolicy.Policy, cat *catalog.Catalog) (*sqlpolicy.Engine, error) {
	an, err := gateway.NewAnalyzer(cat.Dialect, cat)
	if err != nil {
		return nil, err
	}
	return sqlpolicy.NewEngine(pol, cat, an, sqlpolicy.EngineOptions{}), nil
}
