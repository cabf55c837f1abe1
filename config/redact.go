package config

import (
	"net/url"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Redact returns text with every form a secret can take in an error
// message or a URL masked as "xxxxx": as written, query- and
// path-escaped, and as a URL's user info encodes it. It is the one place
// keyhole cleans text that may quote a credential (a driver's error that
// echoes its DSN, a login failure naming the password it was given)
// before the text is printed or logged. Pass a DSN's password with
// DSNPassword. Empty secrets are ignored.
func Redact(text string, secrets ...string) string {
	for _, s := range secrets {
		if s == "" {
			continue
		}
		for _, form := range []string{s, url.QueryEscape(s), url.PathEscape(s), url.UserPassword("", s).String()[1:]} {
			if form != "" {
				text = strings.ReplaceAll(text, form, "xxxxx")
			}
		}
	}
	return text
}

// DSNDialect is the dialect a DSN names: DialectMySQL for a mysql:// or
// mariadb:// URL, DialectPostgres for anything else (a postgres:// URL or
// libpq's key=value form).
func DSNDialect(dsn string) string {
	if strings.HasPrefix(dsn, "mysql://") || strings.HasPrefix(dsn, "mariadb://") {
		return DialectMySQL
	}
	return DialectPostgres
}

// PasswordEnv is the environment variable a dialect's command-line tools
// read the password from when the DSN has none: PGPASSWORD (libpq) or
// MYSQL_PWD (the mysql client).
func PasswordEnv(dialect string) string {
	if dialect == DialectMySQL {
		return "MYSQL_PWD"
	}
	return "PGPASSWORD"
}

// DSNPassword is the password a login with dsn uses: the one it carries
// (URL user info, key=value password), else the dialect's PasswordEnv,
// else (Postgres) the passfile libpq would read. "" when there is none.
func DSNPassword(dsn string) string {
	if DSNDialect(dsn) == DialectMySQL {
		if u, err := url.Parse(dsn); err == nil && u.User != nil {
			if pw, ok := u.User.Password(); ok {
				return pw
			}
		}
		return os.Getenv(PasswordEnv(DialectMySQL))
	}
	if cfg, err := pgconn.ParseConfig(dsn); err == nil {
		return cfg.Password
	}
	// A URL pgconn refuses may still carry a password worth masking.
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		pw, _ := u.User.Password()
		return pw
	}
	return ""
}
