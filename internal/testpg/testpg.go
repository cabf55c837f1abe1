// Package testpg gives tests a throwaway database on the real Postgres the
// project's machines run (127.0.0.1:5432, trust auth, superuser postgres).
// Each call creates a uniquely named database and drops it when the test
// ends. KEYHOLE_TEST_PG overrides the admin DSN.
package testpg

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// AdminDSN is the superuser DSN used to create and drop test databases.
func AdminDSN() string {
	if v := os.Getenv("KEYHOLE_TEST_PG"); v != "" {
		return v
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// DB is a throwaway database.
type DB struct {
	Name string
	// DSN connects to the database as the superuser.
	DSN string
}

// New creates a database, runs setupSQL in it (may be empty; several
// statements allowed) and drops it (terminating its sessions) when t ends.
func New(t testing.TB, setupSQL string) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, AdminDSN())
	if err != nil {
		t.Fatalf("testpg: connect admin: %v (is Postgres running on 127.0.0.1:5432?)", err)
	}
	defer admin.Close(ctx)
	name := "keyhole_test_" + randHex(6)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testpg: create database: %v", err)
	}
	db := &DB{Name: name, DSN: WithDatabase(AdminDSN(), name)}
	t.Cleanup(func() { Drop(name) })
	if setupSQL != "" {
		c, err := pgx.Connect(ctx, db.DSN)
		if err != nil {
			t.Fatalf("testpg: connect %s: %v", name, err)
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, setupSQL); err != nil {
			t.Fatalf("testpg: setup: %v", err)
		}
	}
	return db
}

// RoleExists reports whether the cluster has a role of that name.
func (db *DB) RoleExists(t testing.TB, name string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, db.DSN)
	if err != nil {
		t.Fatalf("testpg: connect %s: %v", db.Name, err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname = $1", name).Scan(&n); err != nil {
		t.Fatalf("testpg: look up role %s: %v", name, err)
	}
	return n == 1
}

// Drop drops a database created by New, ending its sessions first.
func Drop(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, AdminDSN())
	if err != nil {
		return
	}
	defer admin.Close(ctx)
	_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
}

// WithDatabase returns dsn with its database (path) replaced.
func WithDatabase(dsn, db string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		panic(fmt.Sprintf("testpg: bad dsn: %v", err))
	}
	u.Path = "/" + db
	return u.String()
}

// WithUser returns dsn with its user (and password, if not empty) replaced.
func WithUser(dsn, user, password string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		panic(fmt.Sprintf("testpg: bad dsn: %v", err))
	}
	if password != "" {
		u.User = url.UserPassword(user, password)
	} else {
		u.User = url.User(user)
	}
	return u.String()
}

// NewRole creates a login role with a random name that is dropped (after
// the databases it may own objects in) when t ends. Returns its name.
func NewRole(t testing.TB, attrs string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, AdminDSN())
	if err != nil {
		t.Fatalf("testpg: connect admin: %v", err)
	}
	defer admin.Close(ctx)
	name := "keyhole_role_" + randHex(6)
	if _, err := admin.Exec(ctx, "CREATE ROLE "+name+" LOGIN "+attrs); err != nil {
		t.Fatalf("testpg: create role: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, AdminDSN()); err == nil {
			defer c.Close(ctx)
			_, _ = c.Exec(ctx, "DROP ROLE IF EXISTS "+name)
		}
	})
	return name
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
