package e2e_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lib/pq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/internal/fixture"
)

const agentName = "sales-summarizer"

// shopPolicy is the example policy (examples/policy.yaml), plus products
// and the sequence behind orders.id (an INSERT that leaves the id to its
// default advances it).
var shopPolicy = strings.Replace(strings.Replace(fixture.Policy,
	"[public.orders, public.customers]", "[public.orders, public.customers, public.products]", 1),
	"      - insert: [public.orders]\n", "      - insert: [public.orders]\n      - update: [public.order_id_seq]\n", 1)

// result is what one statement gave a client: rows as text, or a SQLSTATE.
type result struct {
	Rows [][]string `json:"rows"`
	Code string     `json:"code"`
	Msg  string     `json:"message"`
}

// step is one statement of the scripted agent session and what it must
// give. A step with Code expects that SQLSTATE; otherwise Rows.
type step struct {
	SQL  string
	Rows [][]string
	Code string
}

// agentSession is what every client runs: reads the policy allows, reads
// of labelled columns and tables, a write and a file read it denies, and
// allowed reads after each denial (the session stays usable).
var agentSession = []step{
	{SQL: "SELECT id, name FROM customers ORDER BY id",
		Rows: [][]string{{"1", "Ada Lovelace"}, {"2", "Alan Turing"}, {"3", "Grace Hopper"}, {"4", "Edsger Dijkstra"}}},
	{SQL: "SELECT email FROM customers", Code: "42501"},
	{SQL: "SELECT count(*) FROM orders", Rows: [][]string{{"5"}}},
	{SQL: "SELECT * FROM customers", Code: "42501"},
	{SQL: "DELETE FROM orders", Code: "42501"},
	{SQL: "SELECT count(*) FROM orders", Rows: [][]string{{"5"}}},
	{SQL: "SELECT name, value FROM secrets", Code: "42501"},
	{SQL: "SELECT pg_read_file('/etc/passwd')", Code: "42501"},
	{SQL: "SELECT c.name, o.status FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.id = 3",
		Rows: [][]string{{"Alan Turing", "new"}}},
	{SQL: "SELECT title FROM products WHERE id = 2", Rows: [][]string{{"Monitor"}}},
}

func sessionSQL() []string {
	out := make([]string, len(agentSession))
	for i, s := range agentSession {
		out[i] = s.SQL
	}
	return out
}

func checkSession(t *testing.T, got []result) {
	t.Helper()
	require.Len(t, got, len(agentSession))
	for i, s := range agentSession {
		if s.Code != "" {
			assert.Equal(t, s.Code, got[i].Code, "%s: want SQLSTATE %s, got rows %v", s.SQL, s.Code, got[i].Rows)
			continue
		}
		assert.Empty(t, got[i].Code, "%s: unexpected error %s %s", s.SQL, got[i].Code, got[i].Msg)
		assert.Equal(t, s.Rows, got[i].Rows, s.SQL)
	}
}

// shop is one keyhole in front of a shop database, shared by the client
// tests of TestClients.
type shop struct {
	up    *upstream
	kh    *proc
	token string
	dsn   string
}

func startShop(t *testing.T) *shop {
	t.Helper()
	up := newUpstream(t, fixture.ShopSQL(t))
	key := newAgentKey(t)
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	writeFile(t, policy, shopPolicy)
	kh := startKeyhole(t, nil,
		"--upstream", up.URL(),
		"--policy", policy,
		"--token-key", key.Public,
		"--audit", filepath.Join(dir, "audit.jsonl"),
		"--listen-postgres", "127.0.0.1:0",
		"--admin", "127.0.0.1:0",
	)
	kh.AuditFile = filepath.Join(dir, "audit.jsonl")
	tok := key.mint(t, agentName)
	return &shop{up: up, kh: kh, token: tok, dsn: kh.ConnString(agentName, tok)}
}

func TestClients(t *testing.T) {
	s := startShop(t)

	t.Run("pgx", func(t *testing.T) {
		modes := map[string]pgx.QueryExecMode{
			"simple":          pgx.QueryExecModeSimpleProtocol,
			"cache_statement": pgx.QueryExecModeCacheStatement,
			"describe_exec":   pgx.QueryExecModeDescribeExec,
			"exec":            pgx.QueryExecModeExec,
		}
		for name, mode := range modes {
			t.Run(name, func(t *testing.T) {
				checkSession(t, runPgx(t, s.dsn, mode, sessionSQL()))
			})
		}
		t.Run("parameters", func(t *testing.T) {
			ctx := context.Background()
			c, err := pgx.Connect(ctx, s.dsn)
			require.NoError(t, err)
			defer c.Close(ctx)
			var name string
			require.NoError(t, c.QueryRow(ctx, "SELECT name FROM customers WHERE id = $1", 2).Scan(&name))
			assert.Equal(t, "Alan Turing", name)
			var email string
			err = c.QueryRow(ctx, "SELECT email FROM customers WHERE id = $1", 2).Scan(&email)
			assert.Equal(t, "42501", sqlstate(err))
			assert.Empty(t, email)
		})
		t.Run("allowed insert", func(t *testing.T) {
			ctx := context.Background()
			c, err := pgx.Connect(ctx, s.dsn)
			require.NoError(t, err)
			defer c.Close(ctx)
			before := s.up.AdminQuery(t, "SELECT count(*) FROM orders")
			_, err = c.Exec(ctx, "INSERT INTO orders (customer_id, product_id, total) VALUES ($1, $2, $3)", 1, 2, "1.00")
			require.NoError(t, err)
			_, err = c.Exec(ctx, "DELETE FROM orders WHERE total = 1.00")
			assert.Equal(t, "42501", sqlstate(err))
			after := s.up.AdminQuery(t, "SELECT count(*) FROM orders")
			assert.Equal(t, fmt.Sprint(mustAtoi(t, before)+1), after)
			_, err = s.up.adminExec(t, "DELETE FROM orders WHERE total = 1.00")
			require.NoError(t, err)
		})
	})

	t.Run("lib/pq", func(t *testing.T) {
		db, err := sql.Open("postgres", s.dsn)
		require.NoError(t, err)
		defer db.Close()
		db.SetMaxOpenConns(1)
		var got []result
		for _, q := range sessionSQL() {
			got = append(got, sqlRows(db.Query(q)))
		}
		checkSession(t, got)
		// With arguments lib/pq uses the extended protocol.
		var name string
		require.NoError(t, db.QueryRow("SELECT name FROM customers WHERE id = $1", 3).Scan(&name))
		assert.Equal(t, "Grace Hopper", name)
		err = db.QueryRow("SELECT ssn FROM customers WHERE id = $1", 3).Scan(&name)
		var pqErr *pq.Error
		require.True(t, errors.As(err, &pqErr), "want a *pq.Error, got %v", err)
		assert.Equal(t, pq.ErrorCode("42501"), pqErr.Code)
	})

	t.Run("psql", func(t *testing.T) {
		psql := needTool(t, "psql")
		var got []result
		for _, q := range sessionSQL() {
			got = append(got, runPsql(t, psql, s, q))
		}
		checkSession(t, got)

		out, errOut, code := psqlRaw(t, psql, s, `\d customers`)
		require.Equal(t, 0, code, "\\d customers: %s", errOut)
		assert.Contains(t, out, "Table \"public.customers\"")
		assert.Regexp(t, regexp.MustCompile(`(?m)^ *email *\| *text`), out)

		out, errOut, code = psqlRaw(t, psql, s, `\dt`)
		require.Equal(t, 0, code, "\\dt: %s", errOut)
		for _, tbl := range []string{"customers", "orders", "products"} {
			assert.Contains(t, out, tbl)
		}

		// The denial tells the agent what was refused and what it may do.
		_, errOut, code = psqlRaw(t, psql, s, "SELECT email FROM customers")
		assert.NotEqual(t, 0, code)
		assert.Contains(t, errOut, "42501")
		assert.Contains(t, errOut, "HINT")
	})

	t.Run("psycopg2", func(t *testing.T) {
		py := "/usr/bin/python3"
		if _, err := os.Stat(py); err != nil {
			t.Fatalf("%s not found: run scripts/setup.sh (as root)", py)
		}
		if out, err := exec.Command(py, "-c", "import psycopg2").CombinedOutput(); err != nil {
			t.Fatalf("psycopg2 not importable by %s (run scripts/setup.sh as root): %v\n%s", py, err, out)
		}
		got := runScript(t, []string{"KEYHOLE_DSN=" + s.dsn}, py, filepath.Join("clients", "psycopg2_runner.py"))
		checkSession(t, got)
	})

	t.Run("node-postgres", func(t *testing.T) {
		node := needTool(t, "node")
		if _, err := os.Stat(filepath.Join("node", "node_modules", "pg")); err != nil {
			t.Fatalf("node-postgres not installed in internal/e2e/node: run scripts/setup.sh")
		}
		for _, ext := range []string{"0", "1"} {
			got := runScript(t, []string{"KEYHOLE_DSN=" + s.dsn, "KEYHOLE_EXTENDED=" + ext}, node, filepath.Join("node", "runner.js"))
			checkSession(t, got)
		}
	})

	t.Run("denied delete leaves the rows", func(t *testing.T) {
		assert.Equal(t, "5", s.up.AdminQuery(t, "SELECT count(*) FROM orders"))
		assert.Equal(t, "4", s.up.AdminQuery(t, "SELECT count(*) FROM customers"))
	})

	t.Run("audit", func(t *testing.T) {
		deny := waitAudit(t, s.kh.AuditFile, 10*time.Second, func(ev map[string]any) bool {
			st, _ := ev["statement"].(string)
			return ev["kind"] == "statement" && ev["decision"] == "deny" && strings.Contains(st, "DELETE FROM orders")
		})
		assert.Equal(t, agentName, deny["agent"])
		assert.Equal(t, "analyst", deny["role"])
		assert.NotEmpty(t, deny["rule"])
		allow := waitAudit(t, s.kh.AuditFile, 10*time.Second, func(ev map[string]any) bool {
			st, _ := ev["statement"].(string)
			return ev["kind"] == "statement" && ev["decision"] == "allow" && strings.Contains(st, "FROM customers WHERE id")
		})
		assert.Equal(t, agentName, allow["agent"])
		// Literals are redacted by default: the token and the values never appear.
		raw, err := os.ReadFile(s.kh.AuditFile)
		require.NoError(t, err)
		assert.NotContains(t, string(raw), s.token)
		assert.NotContains(t, string(raw), "/etc/passwd")
		// Nor does the token reach keyhole's own log.
		assert.NotContains(t, s.kh.Log(), s.token)

		// The security team's view: keyhole audit --blocked lists the
		// denials from the same file, and only them.
		out := runKeyhole(t, "audit", s.kh.AuditFile, "--blocked", "--json")
		var blocked int
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var ev map[string]any
			require.NoError(t, json.Unmarshal([]byte(line), &ev), line)
			if ev["kind"] == "statement" {
				assert.Equal(t, "deny", ev["decision"], line)
				blocked++
			}
		}
		assert.GreaterOrEqual(t, blocked, 5*6, "each client's session has five denials")
		assert.Contains(t, out, "DELETE FROM orders")
	})

	t.Run("bad token", func(t *testing.T) {
		ctx := context.Background()
		_, err := pgx.Connect(ctx, s.kh.ConnString(agentName, s.token+"x"))
		assert.Contains(t, []string{"28P01", "28000"}, sqlstate(err), "%v", err)
		_, err = pgx.Connect(ctx, s.kh.ConnString("someone-else", s.token))
		assert.Contains(t, []string{"28P01", "28000"}, sqlstate(err), "%v", err)
	})
}

func sqlstate(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	if err != nil {
		return "no SQLSTATE: " + err.Error()
	}
	return ""
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	_, err := fmt.Sscan(s, &n)
	require.NoError(t, err)
	return n
}

func (u *upstream) adminExec(t *testing.T, sql string) (pgconn.CommandTag, error) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, u.DB.DSN)
	require.NoError(t, err)
	defer c.Close(ctx)
	return c.Exec(ctx, sql)
}

func runPgx(t *testing.T, dsn string, mode pgx.QueryExecMode, stmts []string) []result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg, err := pgx.ParseConfig(dsn)
	require.NoError(t, err)
	cfg.DefaultQueryExecMode = mode
	c, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	defer c.Close(ctx)
	var out []result
	for _, q := range stmts {
		rows, err := c.Query(ctx, q)
		if err != nil {
			out = append(out, result{Code: sqlstate(err), Msg: err.Error()})
			continue
		}
		var r result
		for rows.Next() {
			vals, err := rows.Values()
			require.NoError(t, err)
			row := make([]string, len(vals))
			for i, v := range vals {
				row[i] = fmt.Sprint(v)
			}
			r.Rows = append(r.Rows, row)
		}
		if err := rows.Err(); err != nil {
			r = result{Code: sqlstate(err), Msg: err.Error()}
		}
		out = append(out, r)
	}
	return out
}

func sqlRows(rows *sql.Rows, err error) result {
	if err != nil {
		return pqResult(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return pqResult(err)
	}
	var r result
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return pqResult(err)
		}
		row := make([]string, len(cols))
		for i, v := range vals {
			row[i] = v.String
		}
		r.Rows = append(r.Rows, row)
	}
	if err := rows.Err(); err != nil {
		return pqResult(err)
	}
	return r
}

func pqResult(err error) result {
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		return result{Code: string(pqErr.Code), Msg: pqErr.Message}
	}
	return result{Code: "no SQLSTATE", Msg: err.Error()}
}

// psqlRaw runs one psql command (-c) as the agent; only host, port, user
// and password differ from a direct connection.
func psqlRaw(t *testing.T, psql string, s *shop, command string) (stdout, stderr string, code int) {
	t.Helper()
	h, port := s.kh.HostPort()
	cmd := exec.Command(psql, "-X", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose",
		fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=require", h, port, agentName, s.kh.dbName()),
		"-c", command)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+s.token, "PGCONNECT_TIMEOUT=10")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("psql: %v", err)
	}
	return o.String(), e.String(), code
}

var reSQLSTATE = regexp.MustCompile(`ERROR:\s+([0-9A-Z]{5}):`)

func runPsql(t *testing.T, psql string, s *shop, q string) result {
	t.Helper()
	h, port := s.kh.HostPort()
	cmd := exec.Command(psql, "-X", "-A", "-t", "-F", "\x1f", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose",
		fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=require", h, port, agentName, s.kh.dbName()), "-c", q)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+s.token, "PGCONNECT_TIMEOUT=10")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		if m := reSQLSTATE.FindStringSubmatch(e.String()); m != nil {
			return result{Code: m[1], Msg: e.String()}
		}
		t.Fatalf("psql -c %q: %v\n%s", q, err, e.String())
	}
	var r result
	for _, line := range strings.Split(strings.TrimRight(o.String(), "\n"), "\n") {
		if line != "" {
			r.Rows = append(r.Rows, strings.Split(line, "\x1f"))
		}
	}
	return r
}

// runScript runs a client script that reads the session's statements as
// JSON on stdin and prints one result per statement.
func runScript(t *testing.T, env []string, interp, script string) []result {
	t.Helper()
	in, err := json.Marshal(sessionSQL())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, interp, script)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = bytes.NewReader(in)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	require.NoError(t, cmd.Run(), "%s %s: %s", interp, script, e.String())
	var got []result
	require.NoError(t, json.Unmarshal(o.Bytes(), &got), "output: %s", o.String())
	return got
}
