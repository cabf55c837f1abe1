package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/internal/testmariadb"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// myShop is the MySQL shop fixture in a throwaway MariaDB database and a
// login that sees only it (and its NAME_internal twin), so that a catalog
// read with it does not depend on other tests' databases.
type myShop struct {
	db             *testmariadb.DB
	user, password string
	addr           string
	policy         string // examples/policy-mysql.yaml for this database
}

func newMyShop(t *testing.T) myShop {
	t.Helper()
	user, pw := testmariadb.NewUser(t)
	db := testmariadb.New(t, fixture.MySQLShopSQL(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := testmariadb.Open(t, db.DSN).ExecContext(ctx, fmt.Sprintf(
		"GRANT ALL ON `%[1]s`.* TO '%[2]s'@'%%'; GRANT ALL ON `%[1]s_internal`.* TO '%[2]s'@'%%'", db.Name, user))
	require.NoError(t, err)
	cfg, err := mysql.ParseDSN(testmariadb.AdminDSN())
	require.NoError(t, err)
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	require.NoError(t, os.WriteFile(policy, []byte(testmariadb.Rename(fixture.MySQLPolicy, db.Name)), 0o600))
	return myShop{db: db, user: user, password: pw, addr: cfg.Addr, policy: policy}
}

// dsn is a mysql:// DSN of the login, with its password unless bare.
func (s myShop) dsn(bare bool) string {
	if bare {
		return fmt.Sprintf("mysql://%s@%s/%s", s.user, s.addr, s.db.Name)
	}
	return fmt.Sprintf("mysql://%s:%s@%s/%s", s.user, s.password, s.addr, s.db.Name)
}

// keyholeEnv runs the CLI with env added to the environment.
func keyholeEnv(t *testing.T, env []string, stdin string, args ...string) fixture.Result {
	t.Helper()
	cmd := exec.Command(fixture.BuildKeyhole(t), args...)
	cmd.Env = append(append(os.Environ(), "MYSQL_PWD=", "PGPASSWORD="), env...)
	cmd.Stdin = strings.NewReader(stdin)
	return fixture.Run(t, cmd)
}

// TestMySQLCLI: catalog dump, check, labels and vault roles take a
// mysql:// DSN and read MariaDB's schema, decide with the MySQL analyzer
// and write MariaDB grants.
func TestMySQLCLI(t *testing.T) {
	t.Parallel()
	s := newMyShop(t)
	db := s.db.Name
	catFile := filepath.Join(t.TempDir(), "cat.json")

	t.Run("catalog dump", func(t *testing.T) {
		r := keyholeEnv(t, []string{"MYSQL_PWD=" + s.password}, "", "catalog", "dump", "--dsn", s.dsn(true), "-o", catFile)
		require.Equal(t, 0, r.Code, r.Stderr)
		c, err := catalog.ReadFile(catFile)
		require.NoError(t, err)
		assert.Equal(t, "mysql", c.Dialect)
		assert.Equal(t, db, c.Database)
		cust := c.Relation(db, "customers")
		require.NotNil(t, cust)
		assert.Equal(t, []string{"pii.phone"}, cust.Column("phone").Labels, "a MariaDB column comment")
		assert.Contains(t, c.Relation(db, "customer_emails").Definition, "email")
		assert.NotNil(t, c.Relation(db+"_internal", "api_keys"))
		assert.NotNil(t, c.Function(db, "get_ssn"))

		r = keyholeEnv(t, nil, "", "catalog", "dump", "--dsn", s.dsn(false))
		require.Equal(t, 0, r.Code, r.Stderr)
		c, err = catalog.Load(strings.NewReader(r.Stdout))
		require.NoError(t, err)
		assert.NotNil(t, c.Relation(db, "orders"))
	})

	t.Run("a wrong password is neither printed nor echoed", func(t *testing.T) {
		const pw = "Hunter2-topsecret"
		for _, args := range [][]string{
			{"catalog", "dump", "--dsn", strings.Replace(s.dsn(false), s.password, pw, 1)},
			{"labels", "--dsn", strings.Replace(s.dsn(false), s.password, pw, 1)},
			{"check", "--dsn", strings.Replace(s.dsn(false), s.password, pw, 1), "--policy", s.policy, "--agent", "a", "SELECT 1"},
			{"vault", "roles", "--dsn", strings.Replace(s.dsn(false), s.password, pw, 1), "--policy", s.policy},
		} {
			r := keyholeEnv(t, nil, "", args...)
			assert.Equal(t, 2, r.Code, args[0])
			assert.Contains(t, r.Stderr, "1045", "%s: MariaDB's access denied", args[0])
			assert.NotContains(t, r.Stderr+r.Stdout, pw, args[0])
			assert.NotContains(t, r.Stderr+r.Stdout, "topsecret", args[0])
		}
		r := keyholeEnv(t, []string{"MYSQL_PWD=" + pw}, "", "catalog", "dump", "--dsn", s.dsn(true))
		assert.Equal(t, 2, r.Code)
		assert.NotContains(t, r.Stderr, pw)
	})

	t.Run("check", func(t *testing.T) {
		for _, src := range [][]string{{"--dsn", s.dsn(false)}, {"--catalog", catFile}} {
			args := append([]string{"check", "--policy", s.policy, "--agent", "sales-summarizer"}, src...)
			r := keyholeEnv(t, nil, "", append(args, "SELECT c.id, c.name, o.total FROM customers c JOIN orders o USING (id)")...)
			assert.Equal(t, 0, r.Code, "%s\n%s", r.Stdout, r.Stderr)
			assert.True(t, strings.HasPrefix(r.Stdout, "allow"), r.Stdout)

			r = keyholeEnv(t, nil, "", append(args, "--json", "SELECT phone FROM "+db+".customers")...)
			assert.Equal(t, 1, r.Code, r.Stderr)
			var d sqlpolicy.Decision
			require.NoError(t, json.Unmarshal([]byte(r.Stdout), &d))
			require.NotEmpty(t, d.Reasons)
			assert.Equal(t, sqlpolicy.ReasonLabelDenied, d.Reasons[0].Code)
			assert.Equal(t, "pii.phone", d.Reasons[0].Label)

			in := `{"id": 1, "sql": "SELECT email FROM customers"}
{"id": 2, "sql": "SELECT /*!50000 ssn, */ name FROM customers"}
{"id": 3, "sql": "SELECT \"email\" FROM customers"}
{"id": 4, "sql": "INSERT INTO orders (customer_id, product_id, total) VALUES (1, 1, 5)"}
{"id": 5, "sql": "SELECT api_key FROM ` + db + `_internal.api_keys"}
`
			r = keyholeEnv(t, nil, in, args...)
			require.Equal(t, 0, r.Code, r.Stderr)
			var got []string
			sc := bufio.NewScanner(strings.NewReader(r.Stdout))
			for sc.Scan() {
				var l checkLine
				require.NoError(t, json.Unmarshal(sc.Bytes(), &l))
				got = append(got, string(l.ID)+":"+l.Decision)
			}
			// "email" is a string in MariaDB's default sql_mode.
			assert.Equal(t, []string{"1:deny", "2:deny", "3:allow", "4:allow", "5:deny"}, got, src[0])
		}
	})

	t.Run("labels", func(t *testing.T) {
		r := keyholeEnv(t, nil, "", "labels", "--dsn", s.dsn(false), "--policy", s.policy, "--json")
		require.Equal(t, 0, r.Code, r.Stderr)
		var got catalogLabelsJSON
		require.NoError(t, json.Unmarshal([]byte(r.Stdout), &got))
		labels := map[string][]string{}
		for _, c := range got.Columns {
			labels[c.Schema+"."+c.Table+"."+c.Column] = c.Labels
		}
		assert.Equal(t, []string{"pii.phone"}, labels[db+".customers.phone"])
		assert.Equal(t, []string{"pii.email"}, labels[db+".customers.email"])
		assert.Equal(t, []string{"secret"}, labels[db+".secrets.value"])
		assert.Contains(t, labels, db+".customer_emails.email", "views are listed")
		for name := range labels {
			assert.False(t, strings.HasPrefix(name, "information_schema."), name)
		}

		r = keyholeEnv(t, nil, "", "labels", "--catalog", catFile, "--policy", s.policy, "--unlabeled")
		require.Equal(t, 0, r.Code, r.Stderr)
		assert.Contains(t, r.Stdout, db+".orders.total")
		assert.Contains(t, r.Stdout, db+"_internal.api_keys.api_key")
		assert.NotContains(t, r.Stdout, db+".customers.phone")
		assert.NotContains(t, r.Stdout, db+".customers.email ")
	})

	t.Run("vault roles", func(t *testing.T) {
		r := keyholeEnv(t, nil, "", "vault", "roles", "--policy", s.policy, "--dsn", s.dsn(false), "--db-name", "shop")
		require.Equal(t, 0, r.Code, r.Stderr)
		var roles []struct {
			Name                 string   `yaml:"name"`
			DBName               string   `yaml:"db_name"`
			CreationStatements   []string `yaml:"creation_statements"`
			RevocationStatements []string `yaml:"revocation_statements"`
			Notes                []string `yaml:"notes"`
		}
		require.NoError(t, yaml.Unmarshal([]byte(r.Stdout), &roles))
		require.Len(t, roles, 2)
		analyst := roles[0]
		assert.Equal(t, "analyst", analyst.Name)
		assert.Equal(t, "shop", analyst.DBName)
		q := func(s string) string { return strings.ReplaceAll(s, "DB", db) }
		assert.Equal(t, []string{
			`CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}';`,
			q("GRANT SELECT (`id`, `name`, `created_at`) ON `DB`.`customers` TO '{{name}}'@'%';"),
			q("GRANT INSERT ON `DB`.`order_notes` TO '{{name}}'@'%';"),
			q("GRANT SELECT ON `DB`.`orders` TO '{{name}}'@'%';"),
			q("GRANT INSERT ON `DB`.`orders` TO '{{name}}'@'%';"),
		}, analyst.CreationStatements)
		assert.Equal(t, []string{`DROP USER IF EXISTS '{{name}}'@'%';`}, analyst.RevocationStatements)
		assert.Contains(t, analyst.Notes, "max_rows is enforced by keyhole only")

		cat := roles[1]
		assert.Equal(t, "keyhole-catalog", cat.Name)
		assert.Equal(t, []string{
			`CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}';`,
			q("GRANT REFERENCES, SHOW VIEW ON `DB`.* TO '{{name}}'@'%';"),
			q("GRANT SELECT ON `DB`.`customer_contacts` TO '{{name}}'@'%';"),
			q("GRANT SELECT ON `DB`.`customer_emails` TO '{{name}}'@'%';"),
			q("GRANT SELECT ON `DB`.`order_summary` TO '{{name}}'@'%';"),
			"GRANT SELECT (`db`, `name`, `type`) ON `mysql`.`proc` TO '{{name}}'@'%';",
		}, cat.CreationStatements)

		r = keyholeEnv(t, nil, "", "vault", "roles", "--policy", s.policy, "--catalog", catFile, "--db-name", "shop", "--terminate-sessions")
		assert.Equal(t, 2, r.Code)
		assert.Contains(t, r.Stderr, "Postgres revocation options")

		// --connection is checked before Vault is contacted (nothing listens there).
		vault := []string{"VAULT_TOKEN=unused"}
		for _, tc := range []struct{ args, want string }{
			{"--apply --connection mysql://root@127.0.0.1/?sslmode=verify-ca", "use verify-full or require"},
			{"--apply --connection postgres://postgres@127.0.0.1/shop", "a postgres:// URL for roles of a mysql catalog"},
			{"--apply --connection mysql://127.0.0.1/", "names no user"},
			{"--apply --connection mysql://root:s3cr3t-pw@127.0.0.1/?x=1", `parameter "x" not supported`},
			{"--connection mysql://root@127.0.0.1/", "--connection is written with --apply"},
		} {
			args := append([]string{"vault", "roles", "--policy", s.policy, "--catalog", catFile, "--db-name", "shop", "--vault-addr", "http://127.0.0.1:1"},
				strings.Fields(tc.args)...)
			r := keyholeEnv(t, vault, "", args...)
			assert.Equal(t, 2, r.Code, tc.args)
			assert.Contains(t, r.Stderr, tc.want, tc.args)
			assert.NotContains(t, r.Stderr, "s3cr3t-pw", tc.args)
		}
	})
}

// TestAuditProtocol: keyhole audit shows each event's protocol and keeps
// one protocol's with --protocol.
func TestAuditProtocol(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	rec, err := audit.NewFileRecorder(path, audit.FileOptions{})
	require.NoError(t, err)
	now := time.Now().UTC()
	for i, p := range []string{"postgres", "mysql", "mysql", "postgres"} {
		rec.Record(audit.Event{Time: now.Add(time.Duration(i) * time.Second), Kind: audit.KindStatement, Session: "s", Protocol: p,
			Agent: "a" + p, Statement: "SELECT 1", Decision: sqlpolicy.Allow, Rule: "r"})
	}
	require.NoError(t, rec.Close())

	r := keyhole(t, "", "audit", path)
	require.Equal(t, 0, r.Code, r.Stderr)
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	require.Len(t, lines, 6)
	assert.Equal(t, []string{"TIME", "PROTO", "AGENT"}, strings.Fields(lines[0])[:3])
	assert.Equal(t, []string{"postgres", "apostgres"}, strings.Fields(lines[1])[1:3])

	r = keyhole(t, "", "audit", path, "--protocol", "mysql", "--limit", "1", "--json")
	require.Equal(t, 0, r.Code, r.Stderr)
	var ev audit.Event
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &ev))
	assert.Equal(t, "mysql", ev.Protocol)
	assert.Equal(t, now.Add(2*time.Second).Unix(), ev.Time.Unix(), "the newest mysql event")

	r = keyhole(t, "", "audit", path, "--protocol", "oracle")
	assert.Equal(t, 2, r.Code)
}
