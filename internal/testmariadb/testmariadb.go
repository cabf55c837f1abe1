// Package testmariadb gives tests a throwaway database and users on the
// real MariaDB the project's machines run (127.0.0.1:3306, root without a
// password). Each database and user has a random name and is dropped when
// the test ends. KEYHOLE_TEST_MYSQL overrides the admin DSN (the
// go-sql-driver form, user:password@tcp(host:port)/).
package testmariadb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// AdminDSN is the DSN of the account that creates and drops test objects.
func AdminDSN() string {
	if v := os.Getenv("KEYHOLE_TEST_MYSQL"); v != "" {
		return v
	}
	return "root@tcp(127.0.0.1:3306)/"
}

// DB is a throwaway database.
type DB struct {
	Name string
	// DSN connects to the database as the admin account, with
	// multiStatements enabled.
	DSN string
}

// Admin opens the admin account (multiStatements on) and closes it when t
// ends.
func Admin(t testing.TB) *sql.DB {
	t.Helper()
	cfg, err := mysql.ParseDSN(AdminDSN())
	if err != nil {
		t.Fatalf("testmariadb: admin dsn: %v", err)
	}
	cfg.MultiStatements = true
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatalf("testmariadb: %v", err)
	}
	db := sql.OpenDB(conn)
	t.Cleanup(func() { db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("testmariadb: connect admin: %v (is MariaDB running on 127.0.0.1:3306?)", err)
	}
	return db
}

// RandName returns prefix followed by 12 random hex digits.
func RandName(prefix string) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return prefix + hex.EncodeToString(b)
}

// New creates a database, runs setupSQL in it (several statements
// allowed; every `shop` word is replaced by the database's name, and
// `shop_internal` by a second database's, created too) and drops them
// when t ends.
func New(t testing.TB, setupSQL string) *DB {
	t.Helper()
	admin := Admin(t)
	name := RandName("kh_shop_")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, db := range []string{name, name + "_internal"} {
		if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+db+"`"); err != nil {
			t.Fatalf("testmariadb: create database: %v", err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+db+"`"); err != nil {
				t.Errorf("testmariadb: drop database %s: %v", db, err)
			}
		})
	}
	d := &DB{Name: name, DSN: WithDatabase(AdminDSN(), name)}
	if setupSQL != "" {
		c := Open(t, d.DSN)
		if _, err := c.ExecContext(ctx, Rename(setupSQL, name)); err != nil {
			t.Fatalf("testmariadb: setup: %v", err)
		}
	}
	return d
}

// Rename replaces the fixture's database names (shop, shop_internal) in
// text by the test database's.
func Rename(text, db string) string {
	text = strings.ReplaceAll(text, "shop_internal", db+"_internal")
	return shopWord.ReplaceAllString(text, "${1}"+db+"${2}")
}

// WithDatabase returns dsn with its database set.
func WithDatabase(dsn, db string) string {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		panic(err)
	}
	cfg.DBName = db
	cfg.MultiStatements = true
	return cfg.FormatDSN()
}

// WithUser returns dsn with its user and password set.
func WithUser(dsn, user, password string) string {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		panic(err)
	}
	cfg.User, cfg.Passwd = user, password
	return cfg.FormatDSN()
}

// Open opens dsn and closes it when t ends.
func Open(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatalf("testmariadb: open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// NewUser creates a user with a random name and password, allowed from
// any host, and drops it when t ends (register it before the databases
// it holds grants in, so it is dropped after them).
func NewUser(t testing.TB) (user, password string) {
	t.Helper()
	admin := Admin(t)
	user, password = RandName("mycorpus_u"), RandName("pw")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE USER '"+user+"'@'%' IDENTIFIED BY '"+password+"'"); err != nil {
		t.Fatalf("testmariadb: create user: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP USER IF EXISTS '"+user+"'@'%'"); err != nil {
			t.Errorf("testmariadb: drop user: %v", err)
		}
	})
	return user, password
}

// shopWord matches the word shop (not shops, not shop_x) with what
// surrounds it.
var shopWord = regexp.MustCompile("(^|[^A-Za-z0-9_$])shop([^A-Za-z0-9_$]|$)")
