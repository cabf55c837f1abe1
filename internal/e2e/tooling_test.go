package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/internal/fixture"
)

// toolingPolicy is the shop policy with a row cap for the analyst, a role
// that dumps schemas (docs/policy.md: pg_dump turns timeouts off, so its
// role's timeouts are unlimited) and a role with tight limits.
const toolingPolicy = `
labels:
  public.customers.email: [pii.email]
  public.customers.ssn:   [pii.ssn]
  public.secrets:         [secret]
roles:
  analyst:
    upstream: shop
    allow:
      - select: [public.orders, public.customers, public.products]
    deny_labels: [pii.*, secret]
    max_rows: 2
  dumper:
    upstream: shop
    allow:
      - select: [public.orders, public.products]
    deny_labels: [pii.*, secret]
    limits:
      statement_timeout: unlimited
      idle_in_transaction_timeout: unlimited
  hasty:
    upstream: shop
    allow:
      - select: [public.orders]
    limits:
      statement_timeout: 1s
      idle_in_transaction_timeout: 1s
      work_mem: 8MB
agents:
  sales-summarizer: {role: analyst}
  schema-dumper: {role: dumper}
  hasty-agent: {role: hasty}
`

type toolingShop struct {
	up  *upstream
	kh  *proc
	key agentKey
}

func startToolingShop(t *testing.T) *toolingShop {
	t.Helper()
	up := newUpstream(t, fixture.ShopSQL(t))
	key := newAgentKey(t)
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	writeFile(t, policy, toolingPolicy)
	kh := startKeyhole(t, nil,
		"--upstream", up.URL(),
		"--policy", policy,
		"--token-key", key.Public,
		"--audit", filepath.Join(dir, "audit.jsonl"),
		"--listen-postgres", "127.0.0.1:0",
		"--admin", "127.0.0.1:0",
	)
	kh.DB = up.DB.Name
	return &toolingShop{up: up, kh: kh, key: key}
}

func (s *toolingShop) connect(t *testing.T, agent string, mode pgx.QueryExecMode) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(s.kh.ConnString(agent, s.key.mint(t, agent)))
	require.NoError(t, err)
	cfg.DefaultQueryExecMode = mode
	c, err := pgx.ConnectConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// pgDump runs pg_dump --schema-only of orders and products with a libpq
// connection string and returns its output, stderr and error.
func pgDump(t *testing.T, conninfo, password string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(needTool(t, "pg_dump"), "--schema-only", "-t", "public.orders", "-t", "public.products", "-d", conninfo)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+password, "PGCONNECT_TIMEOUT=20")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// dumpStatements drops comments and pg_dump's \restrict lines (a random
// key per run) from a dump.
func dumpStatements(dump string) string {
	var b strings.Builder
	for _, line := range strings.Split(dump, "\n") {
		if strings.HasPrefix(line, "--") || strings.HasPrefix(line, `\restrict`) || strings.HasPrefix(line, `\unrestrict`) || line == "" {
			continue
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// TestTooling runs the tools that read the catalogs through keyhole:
// pg_dump --schema-only, pgJDBC's DatabaseMetaData, catalog reads past
// max_rows, and the SQLSTATEs drivers branch on; and checks that the
// role's resource limits hold on the upstream session.
func TestTooling(t *testing.T) {
	s := startToolingShop(t)

	t.Run("pg_dump schema-only", func(t *testing.T) {
		h, port := s.kh.HostPort()
		conninfo := fmt.Sprintf("host=%s port=%s user=schema-dumper dbname=%s sslmode=require", h, port, s.up.DB.Name)
		viaKeyhole, stderr, err := pgDump(t, conninfo, s.key.mint(t, "schema-dumper"))
		require.NoError(t, err, "pg_dump through keyhole:\n%s", stderr)
		p, err := pgURL(s.up.URL())
		require.NoError(t, err)
		direct, stderr, err := pgDump(t, fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=disable", p.host, p.port, p.user, s.up.DB.Name), "")
		require.NoError(t, err, "pg_dump direct:\n%s", stderr)
		assert.Contains(t, viaKeyhole, "CREATE TABLE public.orders")
		assert.Contains(t, viaKeyhole, "CREATE TABLE public.products")
		assert.Contains(t, viaKeyhole, "FOREIGN KEY (product_id) REFERENCES public.products(id)")
		assert.Equal(t, dumpStatements(direct), dumpStatements(viaKeyhole), "the dump through keyhole is the dump")

		// Without unlimited timeouts the role's limits refuse pg_dump's
		// SET statement_timeout = 0, with keyhole's explanation.
		conninfo = fmt.Sprintf("host=%s port=%s user=sales-summarizer dbname=%s sslmode=require", h, port, s.up.DB.Name)
		_, stderr, err = pgDump(t, conninfo, s.key.mint(t, "sales-summarizer"))
		require.Error(t, err)
		assert.Contains(t, stderr, "statement_timeout")
		assert.Contains(t, stderr, "limit of 5m")
	})

	t.Run("pgJDBC metadata", func(t *testing.T) {
		java := needTool(t, "java")
		const jar = "/usr/share/java/postgresql.jar"
		if _, err := os.Stat(jar); err != nil {
			t.Fatalf("%s not found: run scripts/setup.sh (as root) to install libpostgresql-jdbc-java", jar)
		}
		h, port := s.kh.HostPort()
		url := fmt.Sprintf("jdbc:postgresql://%s:%s/%s?sslmode=require", h, port, s.up.DB.Name)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, java, "-cp", jar, fixture.Path(t, "internal", "e2e", "clients", "JdbcMeta.java"),
			url, agentName, s.key.mint(t, agentName), "public", "orders", "customers", "products")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		require.NoError(t, cmd.Run(), "java JdbcMeta:\n%s\n%s", stdout.String(), stderr.String())
		got := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
			f := strings.Split(line, "\t")
			if len(f) >= 3 {
				got[f[0]+" "+f[1]] = strings.Join(f[2:], " ")
			}
		}
		// max_rows is 2 for this role: metadata is catalog-only and not
		// cut (orders has six columns).
		assert.Equal(t, map[string]string{
			"getTables orders":          "ok orders",
			"getColumns orders":         "ok id,customer_id,product_id,total,status,created_at",
			"getPrimaryKeys orders":     "ok id",
			"getImportedKeys orders":    "ok customers,products",
			"getExportedKeys orders":    "ok ",
			"getTables customers":       "ok customers",
			"getColumns customers":      "ok id,name,email,ssn,phone,created_at",
			"getPrimaryKeys customers":  "ok id",
			"getImportedKeys customers": "ok ",
			"getExportedKeys customers": "ok orders",
			"getTables products":        "ok products",
			"getColumns products":       "ok id,title,price",
			"getPrimaryKeys products":   "ok id",
			"getImportedKeys products":  "ok ",
			"getExportedKeys products":  "ok orders",
		}, got, "stdout:\n%s", stdout.String())
		assert.Contains(t, stdout.String(), "done")
	})

	t.Run("max_rows caps data, not catalog reads", func(t *testing.T) {
		c := s.connect(t, agentName, pgx.QueryExecModeSimpleProtocol)
		ctx := context.Background()
		var n int
		// A completion query the way pgcli sends it.
		require.NoError(t, c.QueryRow(ctx, `SELECT count(*) FROM (SELECT c.relname FROM pg_catalog.pg_class c
			JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace) s`).Scan(&n))
		rows, err := c.Query(ctx, "SELECT c.relname, n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace")
		require.NoError(t, err)
		got := 0
		for rows.Next() {
			got++
		}
		require.NoError(t, rows.Err())
		assert.Equal(t, n, got)
		assert.Greater(t, got, 2)
		_, err = c.Exec(ctx, "SELECT id FROM orders")
		assert.Equal(t, "54000", sqlstate(err), "five orders, max_rows 2")
	})

	t.Run("SQLSTATEs drivers branch on", func(t *testing.T) {
		direct, err := pgx.Connect(context.Background(), s.up.URL())
		require.NoError(t, err)
		defer direct.Close(context.Background())
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
			c := s.connect(t, agentName, mode)
			for sql, want := range map[string]string{
				"SELEC id FROM orders":           "42601",
				"SELECT id FROM no_such_table":   "42P01",
				"SELECT no_such_col FROM orders": "42703",
				"SELECT public.no_such_fn(1)":    "42883",
				"SELECT email FROM customers":    "42501",
				"SELECT value FROM secrets":      "42501",
				// A column of a relation the role may not use: refused the
				// same whether it exists or not.
				"SELECT no_such_col FROM secrets": "42501",
			} {
				_, err := c.Exec(context.Background(), sql)
				assert.Equal(t, want, sqlstate(err), "%v: %s: %v", mode, sql, err)
				if want != "42501" {
					_, err := direct.Exec(context.Background(), sql)
					assert.Equal(t, want, sqlstate(err), "Postgres itself: %s", sql)
				}
			}
		}
	})

	t.Run("resource limits", func(t *testing.T) {
		ctx := context.Background()
		c := s.connect(t, "sales-summarizer", pgx.QueryExecModeSimpleProtocol)
		show := func(c *pgx.Conn, name string) string {
			var v string
			require.NoError(t, c.QueryRow(ctx, "SHOW "+name).Scan(&v))
			return v
		}
		// keyhole's defaults, set at login.
		for name, want := range map[string]string{
			"statement_timeout": "5min", "idle_in_transaction_session_timeout": "2min",
			"work_mem": "4MB", "maintenance_work_mem": "64MB", "temp_buffers": "8MB",
		} {
			assert.Equal(t, want, show(c, name), name)
		}
		for _, sql := range []string{
			"SET statement_timeout = 0",
			"SET work_mem = '2TB'",
			"SELECT set_config('idle_in_transaction_session_timeout', '0', false)",
			"SET LOCAL maintenance_work_mem = '1GB'",
		} {
			_, err := c.Exec(ctx, sql)
			assert.Equal(t, "42501", sqlstate(err), sql)
		}
		_, err := c.Exec(ctx, "SET work_mem = '2MB'")
		require.NoError(t, err)
		assert.Equal(t, "2MB", show(c, "work_mem"))
		_, err = c.Exec(ctx, "RESET work_mem")
		require.NoError(t, err)
		assert.Equal(t, "4MB", show(c, "work_mem"), "RESET returns to the login's value, not the server's")
		_, err = c.Exec(ctx, "SET statement_timeout = '1min'")
		require.NoError(t, err)
		_, err = c.Exec(ctx, "RESET ALL")
		require.NoError(t, err)
		assert.Equal(t, "5min", show(c, "statement_timeout"))

		h := s.connect(t, "hasty-agent", pgx.QueryExecModeSimpleProtocol)
		assert.Equal(t, "1s", show(h, "statement_timeout"))
		assert.Equal(t, "8MB", show(h, "work_mem"))
		_, err = h.Exec(ctx, "SET work_mem = '9MB'")
		assert.Equal(t, "42501", sqlstate(err))
		// The timeout holds on the upstream: a long statement is cancelled.
		_, err = h.Exec(ctx, "SELECT count(*) FROM generate_series(1, 100000000000) g")
		assert.Equal(t, "57014", sqlstate(err), "statement_timeout")

		// An idle transaction ends after the role's limit, releasing its
		// locks: the upstream backend goes away.
		var pid int
		_, err = h.Exec(ctx, "BEGIN")
		require.NoError(t, err)
		require.NoError(t, h.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid))
		admin, err := pgx.Connect(ctx, s.up.DB.DSN)
		require.NoError(t, err)
		defer admin.Close(ctx)
		require.Eventually(t, func() bool {
			var n int
			return admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n) == nil && n == 0
		}, 20*time.Second, 100*time.Millisecond, "the idle transaction's backend is still there")
		_, err = h.Exec(ctx, "SELECT 1")
		assert.Error(t, err, "the session ended with its transaction")
	})
}
