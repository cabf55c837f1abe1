package testvault

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"

	"github.com/keyholedb/keyhole/internal/testpg"
)

// Server is a running Vault dev server.
type Server struct {
	// Addr is the server's URL, http://127.0.0.1:port.
	Addr string
	// Token is the root token.
	Token string
	// Client is an API client authenticated with the root token.
	Client *api.Client

	cmd  *exec.Cmd
	out  *bytes.Buffer
	mu   sync.Mutex
	done chan struct{}
}

// Binary returns the path of the vault binary tests use: KEYHOLE_VAULT_BIN,
// else bin/vault in the module root (found by walking up from the working
// directory to go.mod). ok is false if it does not exist.
func Binary() (path string, ok bool) {
	if p := os.Getenv("KEYHOLE_VAULT_BIN"); p != "" {
		_, err := os.Stat(p)
		return p, err == nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
				bytes.HasPrefix(b, []byte("module github.com/keyholedb/keyhole\n")) {
				p := filepath.Join(dir, "bin", "vault")
				_, err := os.Stat(p)
				return p, err == nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// Start runs a Vault dev server until t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, ok := Binary()
	if !ok {
		if os.Getenv("KEYHOLE_REQUIRE_VAULT") != "" {
			t.Fatalf("testvault: vault binary not found (%q) and KEYHOLE_REQUIRE_VAULT is set; run scripts/vault.sh build", bin)
		}
		t.Skipf("testvault: vault binary not found (%q); run scripts/vault.sh build (set KEYHOLE_REQUIRE_VAULT to make this a failure)", bin)
	}
	port := freePort(t)
	s := &Server{
		Addr:  fmt.Sprintf("http://127.0.0.1:%d", port),
		Token: "root-" + RandHex(12),
		out:   &bytes.Buffer{},
		done:  make(chan struct{}),
	}
	home := t.TempDir()
	s.cmd = exec.Command(bin, "server", "-dev",
		"-dev-root-token-id="+s.Token,
		fmt.Sprintf("-dev-listen-address=127.0.0.1:%d", port),
		"-dev-no-store-token",
		"-log-level=warn",
	)
	s.cmd.Env = append(os.Environ(), "HOME="+home, "VAULT_ADDR=", "VAULT_TOKEN=")
	w := &lockedWriter{mu: &s.mu, b: s.out}
	s.cmd.Stdout, s.cmd.Stderr = w, w
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("testvault: start %s: %v", bin, err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(s.Stop)

	cfg := api.DefaultConfig()
	cfg.Address = s.Addr
	cfg.MaxRetries = 0
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatalf("testvault: client: %v", err)
	}
	c.SetToken(s.Token)
	s.Client = c

	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		h, err := c.Sys().HealthWithContext(ctx)
		cancel()
		if err == nil && h.Initialized && !h.Sealed {
			break
		}
		select {
		case <-s.done:
			t.Fatalf("testvault: vault exited during startup:\n%s", s.Output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("testvault: vault not healthy after 30s (last error: %v):\n%s", err, s.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

// Output returns what the server printed so far.
func (s *Server) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// Stop ends the server (all its state is lost). Safe to call twice.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// NewClient returns a client for addr (e.g. a Proxy's) with the root token.
func (s *Server) NewClient(t testing.TB, addr string) *api.Client {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = addr
	cfg.MaxRetries = 0
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatalf("testvault: client: %v", err)
	}
	c.SetToken(s.Token)
	return c
}

// Write writes data to path with the root token and fails t on error.
func (s *Server) Write(t testing.TB, path string, data map[string]any) *api.Secret {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sec, err := s.Client.Logical().WriteWithContext(ctx, path, data)
	if err != nil {
		t.Fatalf("testvault: write %s: %v", path, err)
	}
	return sec
}

// Database is a database secrets engine mount connected to one Postgres
// database.
type Database struct {
	Mount string
	// Connection is the name of the database connection in Vault
	// (the db_name roles refer to).
	Connection string
	// ManagementUser is the Postgres role Vault logs in as.
	ManagementUser string
}

// EnableDatabase mounts the database secrets engine at mount and configures
// a connection named connection to the Postgres database db, logging in as
// managementUser (which must be able to create roles and grant what the
// Vault roles grant). allowed_roles is "*". Generated user names look like
// v-<role>-<tag>-<random>; roles Vault leaves behind in db (a failed test)
// are dropped before db is.
func (s *Server) EnableDatabase(t testing.TB, mount, connection string, db *testpg.DB, managementUser, managementPassword string) *Database {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Client.Sys().MountWithContext(ctx, mount, &api.MountInput{Type: "database"}); err != nil {
		t.Fatalf("testvault: mount database at %s: %v", mount, err)
	}
	tag := RandHex(3)
	s.Write(t, mount+"/config/"+connection, map[string]any{
		"plugin_name":    "postgresql-database-plugin",
		"connection_url": fmt.Sprintf("postgresql://{{username}}:{{password}}@127.0.0.1:5432/%s?sslmode=disable", db.Name),
		"username":       managementUser,
		"password":       managementPassword,
		"allowed_roles":  "*",
		// Vault hashes generated passwords before putting them into
		// CREATE ROLE, so they never appear in Postgres' statement logs.
		"password_authentication": "scram-sha-256",
		"verify_connection":       true,
		"username_template":       `v-{{.RoleName | truncate 16}}-` + tag + `-{{random 12}}`,
	})
	t.Cleanup(func() { dropLeftovers(db, "v-%-"+tag+"-%") })
	return &Database{Mount: mount, Connection: connection, ManagementUser: managementUser}
}

// dropLeftovers drops roles matching pattern, with their privileges in db.
func dropLeftovers(db *testpg.DB, pattern string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, db.DSN)
	if err != nil {
		return
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, "SELECT rolname FROM pg_roles WHERE rolname LIKE $1", pattern)
	if err != nil {
		return
	}
	names, _ := pgx.CollectRows(rows, pgx.RowTo[string])
	for _, n := range names {
		id := pgx.Identifier{n}.Sanitize()
		_, _ = c.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", n)
		_, _ = c.Exec(ctx, "DROP OWNED BY "+id)
		_, _ = c.Exec(ctx, "DROP ROLE IF EXISTS "+id)
	}
}

// Role is a Vault database role definition (fields of <mount>/roles/<name>).
type Role struct {
	CreationStatements   []string
	RevocationStatements []string
	DefaultTTL, MaxTTL   time.Duration
}

// WriteRole writes a role to the database mount.
func (d *Database) WriteRole(t testing.TB, s *Server, name string, r Role) {
	t.Helper()
	data := map[string]any{
		"db_name":             d.Connection,
		"creation_statements": r.CreationStatements,
		"default_ttl":         int(r.DefaultTTL / time.Second),
		"max_ttl":             int(r.MaxTTL / time.Second),
	}
	if len(r.RevocationStatements) > 0 {
		data["revocation_statements"] = r.RevocationStatements
	}
	s.Write(t, d.Mount+"/roles/"+name, data)
}

// LeaseIDs lists the leases Vault holds for a role of the mount.
func (d *Database) LeaseIDs(t testing.TB, s *Server, role string) []string {
	t.Helper()
	prefix := d.Mount + "/creds/" + role + "/"
	sec, err := s.Client.Logical().List("sys/leases/lookup/" + prefix)
	if err != nil {
		t.Fatalf("testvault: list leases of %s: %v", prefix, err)
	}
	if sec == nil {
		return nil
	}
	var ids []string
	for _, k := range sec.Data["keys"].([]any) {
		ids = append(ids, prefix+k.(string))
	}
	return ids
}

// RandHex returns n random bytes, hex encoded.
func RandHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testvault: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
