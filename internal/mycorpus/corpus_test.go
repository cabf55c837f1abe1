package mycorpus_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/internal/testmariadb"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/myanalyze"
)

// knownCodes are the values a case's problem may name.
var knownCodes = map[string]bool{}

func init() {
	for _, c := range []sqlpolicy.ReasonCode{
		sqlpolicy.ReasonNoRule, sqlpolicy.ReasonColumnNotAllowed, sqlpolicy.ReasonLabelDenied,
		sqlpolicy.ReasonFunctionDenied, sqlpolicy.ReasonSettingDenied, sqlpolicy.ReasonProblem,
		sqlpolicy.ReasonLimitExceeded,
	} {
		knownCodes[string(c)] = true
	}
	for _, c := range []sqlpolicy.ProblemCode{
		sqlpolicy.ProblemUnparseable, sqlpolicy.ProblemTooComplex, sqlpolicy.ProblemUnsupported,
		sqlpolicy.ProblemUnknownTable, sqlpolicy.ProblemUnknownColumn, sqlpolicy.ProblemUnknownFunction,
		sqlpolicy.ProblemDangerousFunc, sqlpolicy.ProblemDynamicSQL, sqlpolicy.ProblemDataCatalog,
		sqlpolicy.ProblemFileAccess, sqlpolicy.ProblemUnknownPrepared, sqlpolicy.ProblemLocking,
		sqlpolicy.ProblemSessionChange,
	} {
		knownCodes[string(c)] = true
	}
}

// TestCorpusFiles checks the case files themselves: strict YAML, unique
// ids, valid fields, and the corpus size.
func TestCorpusFiles(t *testing.T) {
	t.Parallel()
	cases, err := loadCases()
	require.NoError(t, err)
	seen := map[string]string{}
	counts := map[string]int{}
	for _, c := range cases {
		if prev, dup := seen[c.ID]; dup {
			t.Errorf("case id %q in %s is also in %s", c.ID, c.File, prev)
		}
		seen[c.ID] = c.File
		counts[c.Expect]++
		if err := validateCase(c); err != nil {
			t.Errorf("case %s: %v", c, err)
		}
		if c.Problem != "" && !knownCodes[c.Problem] {
			t.Errorf("case %s: problem %q is not a sqlpolicy reason or problem code", c, c.Problem)
		}
	}
	t.Logf("MySQL corpus: %d cases, %d deny, %d allow", len(cases), counts["deny"], counts["allow"])
	assert.GreaterOrEqual(t, counts["deny"], 200, "deny cases")
	assert.GreaterOrEqual(t, counts["allow"], 100, "allow cases")
}

// shop is the fixture database with a MariaDB user holding exactly the
// policy's grants.
type shop struct {
	name    string // the database's random name, for testmariadb.Rename
	cat     *catalog.Catalog
	policy  *sqlpolicy.Policy
	engine  *sqlpolicy.Engine
	an      *myanalyze.Analyzer
	userDB  *sql.DB // connections as the policy-equivalent user
	grants  []string
	cleanup []func()
}

// newShop loads shop.sql into a throwaway database, reads its catalog as
// the admin account, and creates a user holding exactly the grants
// creds.MySQLGrants derives from the analyst role.
func newShop(t *testing.T) *shop { return newShopFor(t) }

// newShopFor is newShop for any test or fuzz target.
func newShopFor(t testing.TB) *shop {
	t.Helper()
	user, password := testmariadb.NewUser(t)
	b, err := os.ReadFile(shopFile)
	require.NoError(t, err)
	db := testmariadb.New(t, string(b))
	s := &shop{name: db.Name}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin := testmariadb.Open(t, db.DSN)
	s.cat, err = catalog.LoadMySQL(ctx, admin)
	require.NoError(t, err)
	require.NotNil(t, s.cat.Relation(db.Name, "customers"))

	pb, err := os.ReadFile(policyFile)
	require.NoError(t, err)
	pol, warns, err := sqlpolicy.ParsePolicy([]byte(testmariadb.Rename(string(pb), db.Name)), policyFile, s.cat)
	require.NoError(t, err)
	for _, w := range warns {
		t.Logf("policy warning: %v", w)
	}
	s.policy = pol
	s.an = myanalyze.New(s.cat, myanalyze.Options{})
	s.engine = sqlpolicy.NewEngine(pol, s.cat, s.an, sqlpolicy.EngineOptions{})

	grants, notes := creds.MySQLGrants(pol, s.cat, pol.Roles["analyst"], "'"+user+"'@'%'")
	require.NotEmpty(t, grants)
	for _, g := range grants {
		_, err := admin.ExecContext(ctx, g)
		require.NoError(t, err, g)
	}
	t.Logf("grants: %s; notes: %s", strings.Join(grants, " "), strings.Join(notes, "; "))
	s.grants = grants

	udb := testmariadb.Open(t, testmariadb.WithUser(db.DSN, user, password))
	// Every check gets a connection of its own (USE and session state
	// must not leak between cases).
	udb.SetMaxIdleConns(0)
	udb.SetMaxOpenConns(4)
	s.userDB = udb
	return s
}

// privilegeErrnos are MariaDB's "access denied" errors.
var privilegeErrnos = map[uint16]bool{
	1044: true, // ER_DBACCESS_DENIED_ERROR
	1045: true, // ER_ACCESS_DENIED_ERROR
	1095: true, // ER_KILL_DENIED_ERROR
	1142: true, // ER_TABLEACCESS_DENIED_ERROR
	1143: true, // ER_COLUMNACCESS_DENIED_ERROR
	1227: true, // ER_SPECIFIC_ACCESS_DENIED_ERROR
	1370: true, // ER_PROCACCESS_DENIED_ERROR
	1410: true, // ER_CANT_CREATE_USER_WITH_GRANT
	1419: true, // ER_BINLOG_CREATE_ROUTINE_NEED_SUPER
	1698: true, // ER_ACCESS_DENIED_NO_PASSWORD_ERROR
}

// mariaOutcome runs texts as the policy-equivalent user on a connection of
// its own inside a transaction that is rolled back, and returns the errno
// of the first error (0 when every text ran).
func mariaOutcome(db *sql.DB, texts []string) (errno uint16, msg string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		return 0, "", fmt.Errorf("connect as user: %w", err)
	}
	defer conn.Close()
	for _, s := range []string{"SET SESSION max_statement_time = 5", "SET SESSION lock_wait_timeout = 2", "START TRANSACTION"} {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			return 0, "", err
		}
	}
	defer func() { _, _ = conn.ExecContext(context.Background(), "ROLLBACK") }()
	for _, text := range texts {
		if err := runText(ctx, conn, text); err != nil {
			var me *mysql.MySQLError
			if errors.As(err, &me) {
				return me.Number, me.Message, nil
			}
			return 0, "", err
		}
	}
	return 0, "", nil
}

// runText runs a (possibly multi-statement) text and reads every result.
func runText(ctx context.Context, conn *sql.Conn, text string) error {
	rows, err := conn.QueryContext(ctx, text)
	if err != nil {
		return err
	}
	defer rows.Close()
	for {
		for rows.Next() {
		}
		if !rows.NextResultSet() {
			break
		}
	}
	return rows.Err()
}

// forbidden reports whether a column read would leak labelled data.
func forbidden(s *shop, rel sqlpolicy.Rel, column string) bool {
	switch {
	case rel.Schema == s.name && rel.Name == "secrets":
		return true
	case rel.Schema == s.name && rel.Name == "customers":
		return column == "email" || column == "ssn" || column == "phone"
	}
	return false
}

// forbiddenReads lists the labelled columns an Access reads, inside
// PREPAREd and EXPLAINed statements too.
func forbiddenReads(s *shop, a *sqlpolicy.Access) []string {
	var out []string
	var walk func(st *sqlpolicy.Statement)
	walk = func(st *sqlpolicy.Statement) {
		if st == nil {
			return
		}
		for _, col := range st.Columns {
			if col.Mode == sqlpolicy.Read && forbidden(s, col.Rel, col.Column) {
				out = append(out, col.Rel.String()+"."+col.Column)
			}
		}
		for _, tb := range st.Tables {
			if tb.Mode == sqlpolicy.Read && forbidden(s, tb.Rel, "") {
				out = append(out, tb.Rel.String())
			}
		}
		walk(st.Prepared)
		walk(st.Explained)
	}
	if a != nil {
		for i := range a.Statements {
			walk(&a.Statements[i])
		}
	}
	return out
}

func reasonsJSON(d *sqlpolicy.Decision) string {
	b, err := json.Marshal(d.Reasons)
	if err != nil {
		return fmt.Sprintf("%+v", d.Reasons)
	}
	return string(b)
}

func hasReason(d *sqlpolicy.Decision, code string) bool {
	for _, r := range d.Reasons {
		if string(r.Code) == code || string(r.Problem) == code {
			return true
		}
	}
	return false
}

// decide runs a case's texts through the engine in one session, applying
// each allowed text, and returns the last decision and what allowed texts
// read of labelled data.
func decide(s *shop, texts []string) (*sqlpolicy.Decision, []string) {
	sess := s.engine.NewSession()
	p := sqlpolicy.Principal{Agent: agent}
	var d *sqlpolicy.Decision
	var leaks []string
	for i, text := range texts {
		var a *sqlpolicy.Access
		d, a = s.engine.Check(p, text, sess)
		if d.Allowed() {
			leaks = append(leaks, forbiddenReads(s, a)...)
			if i < len(texts)-1 {
				sess.Apply(a)
			}
		}
	}
	return d, leaks
}

// TestCorpus decides every case with the engine and checks the decision,
// the safety invariant (nothing allowed reads a labelled column) and
// agreement with MariaDB's own grants: every allowed case runs as the
// policy-equivalent user, every deny case without `only` is refused there
// with a privilege error, and every `only` case is not.
func TestCorpus(t *testing.T) {
	t.Parallel()
	cases, err := loadCases()
	require.NoError(t, err)
	s := newShop(t)

	// The safety check is only as good as forbiddenReads: it must see the
	// labelled reads the analyzer reports.
	leaks := forbiddenReads(s, s.an.Analyze(testmariadb.Rename("SELECT email, ssn, phone FROM shop.customers; SELECT value FROM shop.secrets", s.name), nil))
	for _, want := range []string{"customers.email", "customers.ssn", "customers.phone", "secrets.value"} {
		assert.Contains(t, strings.Join(leaks, " "), want, "forbiddenReads misses a labelled read")
	}

	var mu sync.Mutex
	var failed []string
	fail := func(id, why string) {
		mu.Lock()
		failed = append(failed, id+": "+why)
		mu.Unlock()
	}
	t.Run("cases", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.ID, func(t *testing.T) {
				t.Parallel()
				checkCase(t, s, c, fail)
			})
		}
	})
	if len(failed) > 0 {
		t.Logf("%d corpus case failure(s):\n  %s", len(failed), strings.Join(failed, "\n  "))
	}
}

func checkCase(t *testing.T, s *shop, c *Case, fail func(id, why string)) {
	texts := make([]string, len(c.SQL))
	for i, q := range c.SQL {
		texts[i] = testmariadb.Rename(q, s.name)
	}
	d, leaks := decide(s, texts)
	got := string(d.Effect)
	if !assert.Equal(t, c.Expect, got, "case %s\n  sql: %s\n  rule: %s\n  reasons: %s", c, c.SQLText(), d.Rule, reasonsJSON(d)) {
		fail(c.ID, fmt.Sprintf("want %s, got %s (reasons %s)", c.Expect, got, reasonsJSON(d)))
	}
	if c.Problem != "" && !d.Allowed() {
		if !assert.True(t, hasReason(d, c.Problem), "case %s: no reason %q\n  reasons: %s", c, c.Problem, reasonsJSON(d)) {
			fail(c.ID, fmt.Sprintf("denied without reason %q (reasons %s)", c.Problem, reasonsJSON(d)))
		}
	}
	if !assert.Empty(t, leaks, "case %s: SAFETY: an allowed text reads labelled data", c) {
		fail(c.ID, fmt.Sprintf("SAFETY: allowed access reads %v", leaks))
	}
	if c.Maria == "skip" {
		return
	}
	errno, msg, err := mariaOutcome(s.userDB, texts)
	require.NoError(t, err, "case %s: running in MariaDB", c)
	switch {
	case d.Allowed() || c.Expect == "allow":
		if !assert.Zero(t, errno, "case %s: keyhole allows it, MariaDB as the policy's user answers %d %s\n  sql: %s", c, errno, msg, c.SQLText()) {
			fail(c.ID, fmt.Sprintf("allowed, MariaDB answers %d %s", errno, msg))
		}
	case c.Only == "":
		if !assert.True(t, privilegeErrnos[errno], "case %s: MariaDB's grants do not refuse it (errno %d %s): mark it only: <why>\n  sql: %s", c, errno, msg, c.SQLText()) {
			fail(c.ID, fmt.Sprintf("deny without only, MariaDB answers %d %s", errno, msg))
		}
	default:
		if !assert.False(t, privilegeErrnos[errno], "case %s: marked only, but MariaDB's grants refuse it (%d %s)", c, errno, msg) {
			fail(c.ID, fmt.Sprintf("marked only, MariaDB refuses with %d %s", errno, msg))
		}
	}
}
