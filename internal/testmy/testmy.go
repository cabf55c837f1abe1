// Package testmy gives tests a throwaway database and user on the real
// MariaDB the project's machines run (127.0.0.1:3306, root without a
// password). Each database and user has a random name and is dropped when
// the test ends. KEYHOLE_TEST_MYSQL overrides the admin DSN (a
// go-sql-driver DSN).
package testmy

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Addr is the MariaDB server tests use.
func Addr() string {
	cfg, err := mysql.ParseDSN(AdminDSN())
	if err != nil {
		panic(fmt.Sprintf("testmy: bad admin DSN: %v", err))
	}
	return cfg.Addr
}

// AdminDSN is the root DSN used to create and drop test databases and users.
func AdminDSN() string {
	if v := os.Getenv("KEYHOLE_TEST_MYSQL"); v != "" {
		return v
	}
	return "root@tcp(127.0.0.1:3306)/"
}

// DB is a throwaway database.
type DB struct {
	Name string
	// DSN connects to the database as root (multiStatements enabled).
	DSN string
}

// Admin opens a root connection pool (multiStatements enabled).
func Admin(t testing.TB) *sql.DB {
	t.Helper()
	cfg, err := mysql.ParseDSN(AdminDSN())
	if err != nil {
		t.Fatalf("testmy: admin DSN: %v", err)
	}
	cfg.MultiStatements = true
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatalf("testmy: open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// New creates a database, runs setupSQL in it (several statements
// allowed) and drops it when t ends.
func New(t testing.TB, setupSQL string) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := Admin(t)
	name := "keyhole_test_" + RandHex(6)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testmy: create database: %v (is MariaDB running on 127.0.0.1:3306?)", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name)
	})
	cfg, _ := mysql.ParseDSN(AdminDSN())
	cfg.DBName = name
	cfg.MultiStatements = true
	db := &DB{Name: name, DSN: cfg.FormatDSN()}
	if setupSQL != "" {
		c, err := sql.Open("mysql", db.DSN)
		if err != nil {
			t.Fatalf("testmy: open %s: %v", name, err)
		}
		defer c.Close()
		if _, err := c.ExecContext(ctx, setupSQL); err != nil {
			t.Fatalf("testmy: setup: %v", err)
		}
	}
	return db
}

// NewUser creates 'name'@'%' identified by password with grants (each a
// "GRANT ... ON ..." clause without "TO", e.g. "SELECT ON db.*"), dropped
// when t ends. Returns its name.
func NewUser(t testing.TB, password string, grants ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := Admin(t)
	name := "kh_" + RandHex(6)
	if _, err := admin.ExecContext(ctx, fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", name, strings.ReplaceAll(password, "'", "''"))); err != nil {
		t.Fatalf("testmy: create user: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = admin.ExecContext(ctx, fmt.Sprintf("DROP USER IF EXISTS '%s'@'%%'", name))
	})
	for _, g := range grants {
		if _, err := admin.ExecContext(ctx, fmt.Sprintf("GRANT %s TO '%s'@'%%'", g, name)); err != nil {
			t.Fatalf("testmy: grant: %v", err)
		}
	}
	return name
}

// RandHex returns n random bytes as hex.
func RandHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
