package e2e_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/internal/testmy"
)

// mySetupSQL is the MySQL tests' shop: the schema the client runners in
// internal/e2e/mysql expect. customers.email is labelled by its column
// comment, secrets by the policy.
const mySetupSQL = `
CREATE TABLE orders (id INT PRIMARY KEY, item VARCHAR(64) NOT NULL, amount DECIMAL(10,2) NOT NULL);
INSERT INTO orders SELECT seq, CONCAT('item', seq), seq * 1.5 FROM seq_1_to_20;
CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(64), email VARCHAR(128) COMMENT 'keyhole: pii.email');
INSERT INTO customers VALUES (1, 'ann', 'ann@example.com'), (2, 'bob', 'bob@example.com');
CREATE TABLE secrets (id INT, value VARCHAR(64));
INSERT INTO secrets VALUES (1, 'hunter2');
`

// myPolicy is the policy of the MySQL tests: the design's example policy
// on the Postgres upstream shop (fixture.PolicyRoles) next to its MySQL
// twin on the MariaDB upstream myshop, whose database is %[1]s; the
// orders grant of my-analyst is %[2]s (a reload takes it away). capped
// reads orders with max_rows 5.
const myPolicy = `labels:
  public.customers.email: [pii.email]
  public.customers.ssn:   [pii.ssn]
  public.secrets:         [secret]
  %[1]s.secrets:          [secret]
roles:
  analyst:
    upstream: shop
    allow:
      - select: [public.orders, public.customers]
      - insert: [public.orders]
    deny_labels: [pii.*, secret]
    max_rows: 1000
  my-analyst:
    upstream: myshop
    allow:
      - select: [%[2]s%[1]s.customers]
      - insert: [%[1]s.orders]
    deny_labels: [pii.*, secret]
    max_rows: 1000
    limits:
      statement_timeout: 2m
  capped:
    upstream: myshop
    allow:
      - select: [%[1]s.orders]
    max_rows: 5
agents:
  sales-summarizer: {role: analyst}
  my-bot: {role: my-analyst}
  my-secret-bot: {role: my-analyst}
  capped-bot: {role: capped}
`

// myUpstream is a throwaway MariaDB database with mySetupSQL and the login
// keyhole uses for it, which may do everything there: what an agent may
// do is the policy's business.
type myUpstream struct {
	db              *testmy.DB
	login, password string
}

func newMyUpstream(t *testing.T) *myUpstream {
	t.Helper()
	db := testmy.New(t, mySetupSQL)
	pw := "kh-" + testmy.RandHex(8)
	return &myUpstream{db: db, login: testmy.NewUser(t, pw, "ALL ON "+db.Name+".*"), password: pw}
}

// url is the --upstream URL with keyhole's login.
func (u *myUpstream) url() string {
	return fmt.Sprintf("mysql://%s:%s@%s/%s", u.login, u.password, testmy.Addr(), u.db.Name)
}

// count counts rows directly, as root.
func (u *myUpstream) count(t *testing.T, sql string) int {
	t.Helper()
	db, err := openMy(u.db.DSN)
	require.NoError(t, err)
	defer db.Close()
	var n int
	require.NoError(t, db.QueryRow(sql).Scan(&n))
	return n
}

// exec runs statements directly, as root.
func (u *myUpstream) exec(t *testing.T, sql string) {
	t.Helper()
	db, err := openMy(u.db.DSN)
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Exec(sql)
	require.NoError(t, err)
}

func openMy(dsn string) (*sql.DB, error) { return sql.Open("mysql", dsn) }

// myAddr is keyhole's MySQL listener, from its ready line.
func myAddr(t *testing.T, kh *proc) string {
	t.Helper()
	for _, line := range strings.Split(kh.Log(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "keyhole ready" {
			addr, _ := m["mysql"].(string)
			require.NotEmpty(t, addr, "ready line without a mysql address: %s", line)
			return addr
		}
	}
	t.Fatalf("no ready line:\n%s", kh.Log())
	return ""
}

// myErr is the errno and SQLSTATE of a go-sql-driver error (0, "" when it
// is none).
func myErr(err error) (uint16, string) {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number, string(me.SQLState[:])
	}
	return 0, ""
}

// myServe is one keyhole serving a Postgres and a MariaDB upstream, side
// by side, with a CA-issued certificate; agents log in with tokens or (my-
// secret-bot) a MySQL secret.
type myServe struct {
	kh           *proc
	pg           *upstream
	my           *myUpstream
	key          agentKey
	dir          string
	policy       string
	addr         string // MySQL listener
	ca           *testCA
	secret       string
	tlsName      string // go-sql-driver TLS config verifying keyhole
	audit        string
	myDB, pgDB   string
	tokens       map[string]string
	mysqlClients string // internal/e2e/mysql
}

func startMyServe(t *testing.T) *myServe {
	t.Helper()
	s := &myServe{pg: newUpstream(t, fixture.ShopSQL(t)), my: newMyUpstream(t), key: newAgentKey(t), dir: t.TempDir(), tokens: map[string]string{}}
	s.myDB, s.pgDB = s.my.db.Name, s.pg.DB.Name
	s.ca = newTestCA(t, s.dir, "ca")
	s.ca.issue(t, s.dir, "server", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	// keyhole agent secret --mysql prints the secret and both verifiers;
	// the MySQL one is the last.
	out := runKeyhole(t, "agent", "secret", "--agent", "my-secret-bot", "--mysql")
	secret := regexp.MustCompile(`(?m)^secret: (\S+)$`).FindStringSubmatch(out)
	verifier := regexp.MustCompile(`(?m)^"my-secret-bot": "(MYSQL\$\S+)"$`).FindStringSubmatch(out)
	require.NotNil(t, secret, out)
	require.NotNil(t, verifier, out)
	s.secret = secret[1]

	s.policy = filepath.Join(s.dir, "policy.yaml")
	s.setPolicy(t, true)
	s.audit = filepath.Join(s.dir, "audit.jsonl")
	cfg := filepath.Join(s.dir, "keyhole.yaml")
	writeFile(t, cfg, fmt.Sprintf(`
listen: {postgres: "127.0.0.1:0", mysql: "127.0.0.1:0"}
tls: {cert_file: server.pem, key_file: server.key}
identity:
  tokens: {public_key_file: %q}
  mysql:
    verifiers: {my-secret-bot: %q}
audit: {file: audit.jsonl}
policy: {file: policy.yaml}
`, s.key.Public, verifier[1]))
	// The upstreams' logins travel in the URLs (flags win over the file).
	s.kh = startKeyhole(t, nil, "--config", cfg, "--upstream", "shop="+s.pg.URL(), "--upstream", "myshop="+s.my.url())
	s.addr = myAddr(t, s.kh)

	pool := x509.NewCertPool()
	pemBytes, err := os.ReadFile(s.ca.File)
	require.NoError(t, err)
	require.True(t, pool.AppendCertsFromPEM(pemBytes))
	s.tlsName = "keyhole-" + testmy.RandHex(4)
	require.NoError(t, mysql.RegisterTLSConfig(s.tlsName, &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}))
	t.Cleanup(func() { mysql.DeregisterTLSConfig(s.tlsName) })
	s.mysqlClients = fixture.Path(t, "internal", "e2e", "mysql")
	return s
}

// setPolicy writes the policy file, with or without my-analyst's grant on
// orders.
func (s *myServe) setPolicy(t *testing.T, orders bool) {
	t.Helper()
	grant := ""
	if orders {
		grant = s.myDB + ".orders, "
	}
	writeFile(t, s.policy, fmt.Sprintf(myPolicy, s.myDB, grant))
}

// reload writes the policy and waits until keyhole has it.
func (s *myServe) reload(t *testing.T, orders bool) {
	t.Helper()
	off := len(s.kh.Log())
	s.setPolicy(t, orders)
	s.kh.Signal(syscall.SIGHUP)
	s.kh.WaitLog(off, 20*time.Second, "policy reloaded")
}

func (s *myServe) token(t *testing.T, agent string) string {
	t.Helper()
	if s.tokens[agent] == "" {
		s.tokens[agent] = s.key.mint(t, agent)
	}
	return s.tokens[agent]
}

// cfg is a go-sql-driver config for agent through keyhole: the same as
// a direct one but for address, user and password.
func (s *myServe) cfg(t *testing.T, agent string) *mysql.Config {
	c := mysql.NewConfig()
	c.Net, c.Addr, c.DBName = "tcp", s.addr, s.myDB
	c.User, c.Passwd = agent, s.token(t, agent)
	c.Timeout = 20 * time.Second
	return c
}

// conn is one connection through keyhole.
func (s *myServe) conn(t *testing.T, c *mysql.Config) *sql.Conn {
	t.Helper()
	connector, err := mysql.NewConnector(c)
	require.NoError(t, err)
	db := sql.OpenDB(connector)
	t.Cleanup(func() { _ = db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sc, err := db.Conn(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sc.Close() })
	return sc
}

// TestMySQLServe drives one `keyhole serve` with a Postgres and a MariaDB
// upstream side by side, through --listen-postgres and --listen-mysql,
// with real MySQL clients: go-sql-driver/mysql (text and binary prepared),
// the mariadb CLI, PyMySQL, mysql2, MariaDB Connector/J, SQLAlchemy and
// Django (mysqlclient). Every subtest checks errnos and the
// rows left in the database, not message text.
func TestMySQLServe(t *testing.T) {
	s := startMyServe(t)
	ctx := context.Background()

	for _, mode := range []string{"text", "binary"} {
		t.Run("go-sql-driver/"+mode, func(t *testing.T) {
			c := s.cfg(t, "my-bot")
			// Interpolated parameters travel as COM_QUERY text; otherwise
			// every parameterized statement is COM_STMT_PREPARE/EXECUTE.
			c.InterpolateParams = mode == "text"
			sc := s.conn(t, c)
			rows, err := sc.QueryContext(ctx, "SELECT id, name FROM customers WHERE id <= ? ORDER BY id", 2)
			require.NoError(t, err)
			var names []string
			for rows.Next() {
				var id int
				var name string
				require.NoError(t, rows.Scan(&id, &name))
				names = append(names, name)
			}
			require.NoError(t, rows.Err())
			assert.Equal(t, []string{"ann", "bob"}, names)

			// A labelled column: 1143, with the label and what the agent
			// may read instead; the session goes on.
			var email string
			err = sc.QueryRowContext(ctx, "SELECT email FROM customers WHERE id = ?", 1).Scan(&email)
			num, state := myErr(err)
			assert.EqualValues(t, 1143, num, "%v", err)
			assert.Equal(t, "42000", state)
			assert.Contains(t, err.Error(), "pii.email")
			assert.Contains(t, err.Error(), "name", "the columns it may read")
			var item string
			require.NoError(t, sc.QueryRowContext(ctx, "SELECT item FROM orders WHERE id = ?", 3).Scan(&item))
			assert.Equal(t, "item3", item)

			// A denied write leaves the rows, counted directly.
			before := s.my.count(t, "SELECT count(*) FROM orders")
			_, err = sc.ExecContext(ctx, "DELETE FROM orders WHERE id > ?", 0)
			num, _ = myErr(err)
			assert.EqualValues(t, 1142, num, "%v", err)
			assert.Equal(t, before, s.my.count(t, "SELECT count(*) FROM orders"))

			// Transactions: a rolled back insert leaves nothing, a
			// committed one stays; a refusal inside keeps the transaction.
			tx, err := sc.BeginTx(ctx, nil)
			require.NoError(t, err)
			_, err = tx.ExecContext(ctx, "INSERT INTO orders (id, item, amount) VALUES (?, ?, ?)", 200, "x", 1)
			require.NoError(t, err)
			require.NoError(t, tx.Rollback())
			assert.Equal(t, before, s.my.count(t, "SELECT count(*) FROM orders"))
			tx, err = sc.BeginTx(ctx, nil)
			require.NoError(t, err)
			_, err = tx.ExecContext(ctx, "INSERT INTO orders (id, item, amount) VALUES (?, ?, ?)", 201, "y", 2)
			require.NoError(t, err)
			_, err = tx.ExecContext(ctx, "DELETE FROM orders WHERE id = ?", 201)
			num, _ = myErr(err)
			assert.EqualValues(t, 1142, num)
			require.NoError(t, tx.Commit())
			assert.Equal(t, before+1, s.my.count(t, "SELECT count(*) FROM orders"))
			s.my.exec(t, "DELETE FROM orders WHERE id = 201")
		})
	}

	t.Run("go-sql-driver/TLS and secret", func(t *testing.T) {
		c := s.cfg(t, "my-bot")
		c.TLSConfig = s.tlsName
		var n int
		require.NoError(t, s.conn(t, c).QueryRowContext(ctx, "SELECT count(*) FROM orders").Scan(&n))
		assert.Equal(t, 20, n)
		c = s.cfg(t, "my-secret-bot")
		c.Passwd = s.secret
		require.NoError(t, s.conn(t, c).QueryRowContext(ctx, "SELECT count(*) FROM orders").Scan(&n))
		assert.Equal(t, 20, n)
		c.Passwd = "wrong"
		connector, err := mysql.NewConnector(c)
		require.NoError(t, err)
		db := sql.OpenDB(connector)
		defer db.Close()
		num, state := myErr(db.PingContext(ctx))
		assert.EqualValues(t, 1045, num)
		assert.Equal(t, "28000", state)
	})

	t.Run("prepared statement re-executed after a reload that denies it", func(t *testing.T) {
		sc := s.conn(t, s.cfg(t, "my-bot"))
		st, err := sc.PrepareContext(ctx, "SELECT item FROM orders WHERE id = ?")
		require.NoError(t, err)
		defer st.Close()
		var item string
		require.NoError(t, st.QueryRowContext(ctx, 4).Scan(&item))
		assert.Equal(t, "item4", item)
		s.reload(t, false)
		defer s.reload(t, true)
		err = st.QueryRowContext(ctx, 5).Scan(&item)
		num, _ := myErr(err)
		assert.EqualValues(t, 1142, num, "%v", err)
		var name string
		require.NoError(t, sc.QueryRowContext(ctx, "SELECT name FROM customers WHERE id = 2").Scan(&name), "the session goes on")
		assert.Equal(t, "bob", name)
	})

	t.Run("max_rows", func(t *testing.T) {
		for _, interpolate := range []bool{true, false} {
			c := s.cfg(t, "capped-bot")
			c.InterpolateParams = interpolate // text rows, or binary rows of an execute
			sc := s.conn(t, c)
			rows, err := sc.QueryContext(ctx, "SELECT id FROM orders WHERE id > ?", 0)
			require.NoError(t, err)
			n := 0
			for rows.Next() {
				n++
			}
			num, state := myErr(rows.Err())
			assert.EqualValues(t, 1104, num, "interpolate %v: %v", interpolate, rows.Err())
			assert.Equal(t, "42000", state)
			assert.Equal(t, 5, n)
			_ = rows.Close()
			var count int
			require.NoError(t, sc.QueryRowContext(ctx, "SELECT count(*) FROM orders").Scan(&count), "the session goes on")
			assert.Equal(t, 20, count)
		}
	})

	t.Run("mariadb CLI", func(t *testing.T) {
		tok := s.token(t, "my-bot")
		for _, tc := range []struct {
			name, user, password string
			args                 []string
		}{
			{"token, loopback", "my-bot", tok, nil},
			{"token over verified TLS", "my-bot", tok, []string{"--ssl", "--ssl-ca=" + s.ca.File, "--ssl-verify-server-cert"}},
			{"token, mysql_clear_password over TLS", "my-bot", tok, []string{"--ssl", "--ssl-ca=" + s.ca.File, "--default-auth=mysql_clear_password"}},
			{"secret", "my-secret-bot", s.secret, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				out, stderr, code := s.cli(t, tc.user, tc.password, append(tc.args, "-e", "SELECT id, name FROM customers ORDER BY id")...)
				require.Equal(t, 0, code, stderr)
				assert.Equal(t, "1\tann\n2\tbob\n", out)
			})
		}
		t.Run("a refusal, and the session goes on", func(t *testing.T) {
			// --force: the CLI goes on after an error, on the same session.
			out, stderr, _ := s.cliStdin(t, "my-bot", tok, "SELECT email FROM customers;\nDELETE FROM orders;\nSELECT count(*) FROM orders;\n", "--force")
			assert.Contains(t, stderr, "ERROR 1143 (42000)")
			assert.Contains(t, stderr, "pii.email")
			assert.Contains(t, stderr, "ERROR 1142 (42000)")
			assert.Equal(t, "20\n", out)
		})
		t.Run("Ctrl-C stops the statement", func(t *testing.T) {
			// A root session holds a lock, so the agent's statement waits
			// in the server until the CLI's KILL QUERY (from a second
			// connection, naming the first by keyhole's connection id).
			lock := lockMyTable(t, s.my, "orders")
			const q = "SELECT count(*) FROM orders WHERE id > 0"
			cmd, stderr := s.cliCmd(t, "my-bot", tok, "-e", q)
			require.NoError(t, cmd.Start())
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			running := func() int {
				return s.my.count(t, fmt.Sprintf("SELECT count(*) FROM information_schema.PROCESSLIST WHERE USER = '%s' AND INFO = '%s'", s.my.login, q))
			}
			require.Eventually(t, func() bool { return running() == 1 }, 20*time.Second, 20*time.Millisecond)
			require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
			select {
			case err := <-done:
				var ee *exec.ExitError
				require.ErrorAs(t, err, &ee, stderr.String())
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatalf("the CLI still waits after Ctrl-C: %s", stderr.String())
			}
			assert.Contains(t, stderr.String(), "ERROR 1317 (70100)", "query execution was interrupted")
			assert.Equal(t, 0, running(), "the statement was stopped upstream")
			lock()
			waitAudit(t, s.audit, 10*time.Second, func(ev map[string]any) bool {
				return ev["protocol"] == "mysql" && ev["rule"] == "own-connection" && ev["decision"] == "allow"
			})
		})
	})

	for _, client := range []string{"pymysql", "mysql2"} {
		for _, tc := range []struct {
			name, user, password string
			tls                  bool
		}{
			{"token", "my-bot", s.token(t, "my-bot"), false},
			{"token over TLS", "my-bot", s.token(t, "my-bot"), true},
			{"secret", "my-secret-bot", s.secret, false},
		} {
			t.Run(client+"/"+tc.name, func(t *testing.T) {
				before := s.my.count(t, "SELECT count(*) FROM orders")
				r := s.runClient(t, client, tc.user, tc.password, tc.tls)
				require.Nil(t, r.ConnectError, "%+v", r.ConnectError)
				assert.Equal(t, [][]any{{1.0, "ann"}, {2.0, "bob"}}, r.Rows)
				require.NotNil(t, r.DeniedColumn)
				assert.Equal(t, 1143, r.DeniedColumn.Errno)
				assert.Equal(t, before, r.Count, "the session goes on after the refusal")
				require.NotNil(t, r.DeniedWrite)
				assert.Equal(t, 1142, r.DeniedWrite.Errno)
				// The runner rolled 100 back and committed 101; DELETE never ran.
				assert.Equal(t, before+1, s.my.count(t, "SELECT count(*) FROM orders"))
				assert.Zero(t, s.my.count(t, "SELECT count(*) FROM orders WHERE id = 100"))
				if client == "mysql2" {
					assert.Equal(t, [][]any{{3.0, "item3"}, {7.0, "item7"}}, r.Prepared)
					require.NotNil(t, r.DeniedPrep)
					assert.Equal(t, 1143, r.DeniedPrep.Errno)
				} else {
					assert.Equal(t, []any{3.0, "item3"}, r.ParamRow)
				}
				s.my.exec(t, "DELETE FROM orders WHERE id = 101")
			})
		}
	}

	t.Run("mariadb-dump", func(t *testing.T) {
		// mariadb-dump sends its settings in executable comments
		// (/*!40100 SET @@SQL_MODE='' */, SELECT /*!40001 SQL_NO_CACHE */
		// ...), which keyhole reads as MariaDB runs them.
		// --single-transaction: LOCK TABLES needs a lock grant.
		dump := func(table string) (string, string, error) {
			host, port, _ := net.SplitHostPort(s.addr)
			cmd := exec.Command(needTool(t, "mariadb-dump"), "--no-defaults", "-h", host, "-P", port, "--protocol=TCP",
				"-u", "my-bot", "--single-transaction", s.myDB, table)
			cmd.Env = append(os.Environ(), "MYSQL_PWD="+s.token(t, "my-bot"))
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			return stdout.String(), stderr.String(), err
		}
		out, stderr, err := dump("orders")
		require.NoError(t, err, stderr)
		assert.Contains(t, out, "CREATE TABLE `orders`")
		assert.Contains(t, out, "INSERT INTO `orders` VALUES\n(1,'item1',1.50),")
		// The dump sets @@MAX_STATEMENT_TIME=0, which would lift the
		// role's statement timeout: refused, and the dump, which does not
		// check that statement's answer, goes on within the limit.
		ev := waitAudit(t, s.audit, 10*time.Second, func(ev map[string]any) bool {
			reasons, _ := ev["reasons"].([]any)
			for _, r := range reasons {
				if m, _ := r.(map[string]any); m["code"] == "limit_exceeded" && m["setting"] == "max_statement_time" {
					return ev["kind"] == "statement" && ev["agent"] == "my-bot"
				}
			}
			return false
		})
		assert.Equal(t, "deny", ev["decision"])

		// A table with a labelled column: the dump is refused (at SHOW
		// CREATE TABLE, which reads every column) with the label.
		out, stderr, err = dump("customers")
		require.Error(t, err)
		assert.Contains(t, stderr, "pii.email")
		assert.NotContains(t, out, "ann@example.com")
	})

	t.Run("MariaDB Connector/J", func(t *testing.T) {
		java := needTool(t, "java")
		const jar = "/usr/share/java/mariadb-java-client.jar"
		if _, err := os.Stat(jar); err != nil {
			t.Fatalf("%s not found: run scripts/setup.sh (as root) to install libmariadb-java", jar)
		}
		for _, tc := range []struct {
			name, user, password, opts string
		}{
			// Without TLS the driver fetches keyhole's RSA key for
			// caching_sha2_password's full authentication (the option a
			// user sets for any MySQL 8 server without TLS).
			{"token, loopback", "my-bot", s.token(t, "my-bot"), "allowPublicKeyRetrieval=true"},
			{"token over verified TLS", "my-bot", s.token(t, "my-bot"), "useSsl=true&serverSslCert=" + s.ca.File},
			{"secret", "my-secret-bot", s.secret, "allowPublicKeyRetrieval=true"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := s.my.count(t, "SELECT count(*) FROM orders")
				url := fmt.Sprintf("jdbc:mariadb://%s/%s?useServerPrepStmts=true&%s", s.addr, s.myDB, tc.opts)
				got := runJava(t, java, jar, filepath.Join(s.mysqlClients, "MariaJdbc.java"), url, tc.user, tc.password, s.myDB)
				errno := func(step string) string {
					f := strings.Split(got[step], "\t")
					if len(f) < 4 || f[0] != "error" {
						return got[step]
					}
					assert.Contains(t, f[3], "keyhole: permission denied", step)
					return f[1] + " " + f[2]
				}
				assert.Equal(t, "ok\t1:ann,2:bob", got["select"])
				assert.Equal(t, "1143 42000", errno("denied_column"))
				assert.Contains(t, got["denied_column"], "pii.email")
				assert.Equal(t, fmt.Sprintf("ok\t%d", before), got["count"], "the session goes on after the refusal")
				assert.Equal(t, "ok\t1", got["insert"])
				assert.Equal(t, "1142 42000", errno("denied_write"))
				assert.Equal(t, "ok\t", got["commit"])
				assert.Equal(t, "ok\titem3,item7", got["prepared"], "one server-side prepare, executed twice")
				assert.Equal(t, "1143 42000", errno("denied_prepare"))
				assert.Equal(t, "ok\t10", got["streamed"])
				// Metadata is catalog: table and column names, as through
				// pgJDBC (labels guard values, not names).
				assert.Equal(t, "ok\tcustomers,orders,secrets", got["getTables"])
				assert.Equal(t, "ok\tid,name,email", got["getColumns customers"])
				assert.Equal(t, "ok\tid", got["getPrimaryKeys orders"])
				assert.Equal(t, "ok\tbob", got["session"])
				// 100 was rolled back, 101 committed; the DELETE never ran.
				assert.Equal(t, before+1, s.my.count(t, "SELECT count(*) FROM orders"))
				assert.Zero(t, s.my.count(t, "SELECT count(*) FROM orders WHERE id = 100"))
				s.my.exec(t, "DELETE FROM orders WHERE id = 101")
			})
		}
	})

	t.Run("SQLAlchemy", func(t *testing.T) {
		before := s.my.count(t, "SELECT count(*) FROM orders")
		got := s.runPython(t, "sqlalchemy_runner.py", "my-bot", s.token(t, "my-bot"))
		refused := func(step string) float64 { return refusedErrno(t, got, step) }
		assert.Equal(t, "ok", got["connect"], "the dialect's initialize queries pass")
		assert.Equal(t, []any{"customers", "orders", "secrets"}, got["table_names"])
		assert.Equal(t, []any{"id", "item", "amount"}, got["columns_orders"])
		assert.Equal(t, []any{"id"}, got["pk_orders"])
		// Reflection is SHOW CREATE TABLE, which reads every column: a
		// table with a labelled column is refused, naming what may be read.
		assert.EqualValues(t, 1143, refused("columns_customers"))
		assert.Contains(t, got["columns_customers"].(map[string]any)["message"], "columns: id, name")
		assert.Equal(t, []any{[]any{3.0, "item3"}, []any{7.0, "item7"}}, got["core_select"])
		assert.Equal(t, []any{"ann", "bob"}, got["names"])
		assert.EqualValues(t, 1143, refused("denied_column"))
		assert.Equal(t, "ok", got["insert"])
		assert.EqualValues(t, 1142, refused("denied_write"))
		assert.Equal(t, before+1, s.my.count(t, "SELECT count(*) FROM orders"), "the insert committed, the delete never ran")
		s.my.exec(t, "DELETE FROM orders WHERE id = 101")
	})

	t.Run("Django", func(t *testing.T) {
		before := s.my.count(t, "SELECT count(*) FROM orders")
		got := s.runPython(t, "django_runner.py", "my-bot", s.token(t, "my-bot"))
		refused := func(step string) float64 { return refusedErrno(t, got, step) }
		assert.Equal(t, "ok", got["connect"], "Django's connect-time statements pass")
		assert.Equal(t, []any{"customers", "orders", "secrets"}, got["table_names"])
		assert.Equal(t, []any{"id", "item", "amount"}, got["describe_orders"])
		// get_table_description runs SELECT * FROM t LIMIT 1: refused on a
		// table with a labelled column.
		assert.EqualValues(t, 1143, refused("describe_customers"))
		assert.Equal(t, []any{"PRIMARY"}, got["constraints_orders"])
		assert.Equal(t, []any{"item3", "item7"}, got["model_select"])
		assert.Equal(t, []any{[]any{"ann"}, []any{"bob"}}, got["names"])
		assert.EqualValues(t, 1143, refused("denied_column"))
		assert.Equal(t, "ok", got["insert"])
		assert.EqualValues(t, 1142, refused("denied_write"))
		assert.Equal(t, before+1, s.my.count(t, "SELECT count(*) FROM orders"), "the insert committed, the delete never ran")
		s.my.exec(t, "DELETE FROM orders WHERE id = 101")
	})

	t.Run("Postgres agents beside MySQL agents", func(t *testing.T) {
		h, port := s.kh.HostPort()
		conn := func(agent string) string {
			return fmt.Sprintf("host=%s port=%s user=%s password=%s dbname=%s sslmode=require", h, port, agent, s.token(t, agent), s.pgDB)
		}
		c, err := pgx.Connect(ctx, conn(agentName))
		require.NoError(t, err)
		defer c.Close(ctx)
		var name string
		require.NoError(t, c.QueryRow(ctx, "SELECT name FROM customers WHERE id = 1").Scan(&name))
		assert.Equal(t, "Ada Lovelace", name)
		_, err = c.Exec(ctx, "SELECT email FROM customers")
		assert.Equal(t, "42501", sqlstate(err))
		// A MySQL agent is not a Postgres agent's role, and the other
		// way round: each listener serves its own dialect's upstreams.
		_, err = pgx.Connect(ctx, conn("my-bot"))
		assert.Equal(t, "08001", sqlstate(err), "a MySQL role through the Postgres listener: no Postgres upstream for it")
		c2 := s.cfg(t, agentName)
		connector, err := mysql.NewConnector(c2)
		require.NoError(t, err)
		db := sql.OpenDB(connector)
		defer db.Close()
		num, _ := myErr(db.PingContext(ctx))
		assert.EqualValues(t, 1105, num, "a Postgres role through the MySQL listener: no MySQL upstream for it")
	})

	t.Run("audit", func(t *testing.T) {
		for _, proto := range []string{"mysql", "postgres"} {
			waitAudit(t, s.audit, 10*time.Second, func(ev map[string]any) bool {
				return ev["kind"] == "statement" && ev["protocol"] == proto && ev["decision"] == "deny"
			})
		}
		ev := waitAudit(t, s.audit, 10*time.Second, func(ev map[string]any) bool {
			return ev["kind"] == "statement" && ev["protocol"] == "mysql" && ev["error_code"] == "1143/42000"
		})
		assert.Equal(t, "my-analyst", ev["role"])
		b, err := os.ReadFile(s.audit)
		require.NoError(t, err)
		assert.NotContains(t, string(b), "ann@example.com")
		assert.NotContains(t, string(b), s.secret)
		assert.NotContains(t, s.kh.Log(), s.secret)
		assert.NotContains(t, s.kh.Log(), s.my.password)
	})
}

// lockMyTable takes a write lock on table on a root connection until the
// returned function (or the test's end) releases it.
func lockMyTable(t *testing.T, u *myUpstream, table string) func() {
	t.Helper()
	db, err := openMy(u.db.DSN)
	require.NoError(t, err)
	ctx := context.Background()
	c, err := db.Conn(ctx)
	require.NoError(t, err)
	_, err = c.ExecContext(ctx, "LOCK TABLES "+table+" WRITE")
	require.NoError(t, err)
	done := false
	unlock := func() {
		if !done {
			done = true
			_, _ = c.ExecContext(ctx, "UNLOCK TABLES")
			_ = c.Close()
			_ = db.Close()
		}
	}
	t.Cleanup(unlock)
	return unlock
}

// cliCmd is the mariadb CLI connecting to keyhole as user.
func (s *myServe) cliCmd(t *testing.T, user, password string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	bin, err := exec.LookPath("mariadb")
	if err != nil {
		bin = needTool(t, "mysql")
	}
	host, port, _ := net.SplitHostPort(s.addr)
	full := append([]string{"--no-defaults", "-h", host, "-P", port, "--protocol=TCP", "--batch", "--skip-column-names", "-u", user, "-D", s.myDB}, args...)
	cmd := exec.Command(bin, full...)
	// MYSQL_PWD keeps the token out of the process list.
	cmd.Env = append(os.Environ(), "MYSQL_PWD="+password)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	return cmd, &stderr
}

func (s *myServe) cli(t *testing.T, user, password string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return s.cliStdin(t, user, password, "", args...)
}

// cliStdin runs the CLI with stdin as its script.
func (s *myServe) cliStdin(t *testing.T, user, password, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd, errb := s.cliCmd(t, user, password, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout = &out
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), errb.String(), ee.ExitCode()
	}
	require.NoError(t, err)
	return out.String(), errb.String(), 0
}

// myClientResult is what the runners in internal/e2e/mysql print.
type myClientResult struct {
	ConnectError *myClientErr `json:"connect_error"`
	Fatal        string       `json:"fatal"`
	Rows         [][]any      `json:"rows"`
	DeniedColumn *myClientErr `json:"denied_column"`
	Count        int          `json:"count"`
	DeniedWrite  *myClientErr `json:"denied_write"`
	ParamRow     []any        `json:"param_row"`
	Prepared     [][]any      `json:"prepared"`
	DeniedPrep   *myClientErr `json:"denied_prepare"`
}

type myClientErr struct {
	Errno    int    `json:"errno"`
	SQLState string `json:"sqlState"`
	Message  string `json:"message"`
}

func (s *myServe) runClient(t *testing.T, client, user, password string, useTLS bool) myClientResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var cmd *exec.Cmd
	switch client {
	case "pymysql":
		// Debian's python3-pymysql is installed for /usr/bin/python3.
		cmd = exec.CommandContext(ctx, "/usr/bin/python3", filepath.Join(s.mysqlClients, "pymysql_runner.py"))
	case "mysql2":
		dir := filepath.Join(s.mysqlClients, "node")
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "mysql2")); err != nil {
			t.Fatalf("mysql2 is not installed: run scripts/setup.sh")
		}
		cmd = exec.CommandContext(ctx, needTool(t, "node"), filepath.Join(dir, "runner.js"))
	}
	host, port, _ := net.SplitHostPort(s.addr)
	ca := ""
	if useTLS {
		ca = s.ca.File
	}
	cmd.Env = append(os.Environ(), "KH_HOST="+host, "KH_PORT="+port, "KH_USER="+user, "KH_PASSWORD="+password, "KH_DB="+s.myDB, "KH_SSL_CA="+ca)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	require.NoError(t, cmd.Run(), "%s: %s %s", client, out.String(), errb.String())
	var r myClientResult
	require.NoError(t, json.Unmarshal(out.Bytes(), &r), out.String())
	require.Empty(t, r.Fatal)
	return r
}

// runJava runs a Java client program from source against keyhole and
// returns its "step<TAB>result" lines as a map.
func runJava(t *testing.T, java, classpath, program string, args ...string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, java, append([]string{"-cp", classpath, program}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "java %s:\n%s\n%s", filepath.Base(program), stdout.String(), stderr.String())
	require.Contains(t, stdout.String(), "\ndone\n", stderr.String())
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		if step, result, ok := strings.Cut(line, "\t"); ok {
			got[step] = result
		}
	}
	return got
}

// runPython runs a client program of internal/e2e/mysql with Debian's
// /usr/bin/python3 (where python3-pymysql, -sqlalchemy, -django and
// -mysqldb are installed) against keyhole, and decodes the one JSON
// object it prints.
func (s *myServe) runPython(t *testing.T, program, user, password string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", filepath.Join(s.mysqlClients, program))
	host, port, _ := net.SplitHostPort(s.addr)
	cmd.Env = append(os.Environ(), "KH_HOST="+host, "KH_PORT="+port, "KH_USER="+user, "KH_PASSWORD="+password, "KH_DB="+s.myDB)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	require.NoError(t, cmd.Run(), "%s: %s %s", program, out.String(), errb.String())
	var got map[string]any
	require.NoError(t, json.Unmarshal(out.Bytes(), &got), out.String())
	return got
}

// refusedErrno is the errno of a runner step keyhole refused (the step's
// result is {"errno": ..., "message": ...}); it checks the message is
// keyhole's.
func refusedErrno(t *testing.T, got map[string]any, step string) float64 {
	t.Helper()
	e, _ := got[step].(map[string]any)
	assert.Contains(t, e["message"], "keyhole: permission denied", step)
	n, _ := e["errno"].(float64)
	return n
}
