package corpus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/internal/testpg"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

// knownCodes are the values a case's problem may name: reason codes and
// analyzer problem codes.
var knownCodes = map[string]bool{}

func init() {
	for _, c := range []sqlpolicy.ReasonCode{
		sqlpolicy.ReasonNoRule, sqlpolicy.ReasonColumnNotAllowed, sqlpolicy.ReasonLabelDenied,
		sqlpolicy.ReasonFunctionDenied, sqlpolicy.ReasonSettingDenied, sqlpolicy.ReasonLimitExceeded, sqlpolicy.ReasonScopeDenied,
		sqlpolicy.ReasonUnknownAgent, sqlpolicy.ReasonProblem,
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
	seen := map[string]string{}
	for _, su := range suites {
		cases, err := loadCases(su.casesDir)
		require.NoError(t, err)
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
		t.Logf("suite %s: %d cases, %d deny, %d allow", su.name, len(cases), counts["deny"], counts["allow"])
		assert.GreaterOrEqual(t, counts["deny"], su.minDeny, "suite %s: deny cases", su.name)
		assert.GreaterOrEqual(t, counts["allow"], su.minAllow, "suite %s: allow cases", su.name)
	}
}

// forbidden reports whether a column read would leak labelled data: the
// labelled customers columns and anything in the secret table.
func forbidden(rel sqlpolicy.Rel, column string) bool {
	switch {
	case rel.Schema == "public" && rel.Name == "secrets":
		return true
	case rel.Schema == "public" && rel.Name == "customers":
		return column == "email" || column == "ssn" || column == "phone"
	}
	return false
}

// forbiddenReads lists the labelled columns an Access reads, looking inside
// PREPAREd and EXPLAINed statements too.
func forbiddenReads(a *sqlpolicy.Access) []string {
	var out []string
	var walk func(st *sqlpolicy.Statement)
	walk = func(st *sqlpolicy.Statement) {
		if st == nil {
			return
		}
		for _, col := range st.Columns {
			if col.Mode == sqlpolicy.Read && forbidden(col.Rel, col.Column) {
				out = append(out, col.Rel.String()+"."+col.Column)
			}
		}
		for _, tb := range st.Tables {
			if tb.Mode == sqlpolicy.Read && forbidden(tb.Rel, "") {
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

// shop is the fixture database with a role holding exactly the policy's
// grants.
type shop struct {
	db *testpg.DB
	// roleDSN connects as the policy-equivalent role.
	roleDSN string
	cat     *catalog.Catalog
}

// unlabelledCustomerColumns are the customers columns the analyst may
// read: every column of the table except the labelled ones.
func unlabelledCustomerColumns(cat *catalog.Catalog) []string {
	rel := cat.Relation("public", "customers")
	if rel == nil {
		return nil
	}
	var cols []string
	for _, c := range rel.Columns {
		if !forbidden(sqlpolicy.Rel{Schema: "public", Name: "customers"}, c.Name) {
			cols = append(cols, pgx.Identifier{c.Name}.Sanitize())
		}
	}
	return cols
}

// newShop loads shop.sql into a throwaway database, reads its catalog as
// the superuser, and creates a login role holding exactly su's grants.
func newShop(t *testing.T, su suite) *shop {
	t.Helper()
	// The role first: cleanups run last-in first-out, so the database (in
	// which the role holds privileges) is dropped before the role.
	role := testpg.NewRole(t, "")
	db := testpg.New(t, fixture.ShopSQL(t))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, db.DSN)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	cat, err := catalog.LoadPostgres(ctx, conn)
	require.NoError(t, err)
	require.NotNil(t, cat.Relation("public", "customers"), "public.customers missing from the catalog")

	for _, stmt := range su.grants(cat, pgx.Identifier{role}.Sanitize()) {
		_, err := conn.Exec(ctx, stmt)
		require.NoError(t, err, stmt)
	}
	return &shop{db: db, roleDSN: testpg.WithUser(db.DSN, role, ""), cat: cat}
}

// pgOutcome runs texts as the policy-equivalent role inside a transaction
// that is rolled back, on a connection of its own, and returns the SQLSTATE
// of the first error ("" when every text ran).
func pgOutcome(dsn string, texts []string) (code, msg string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", "", fmt.Errorf("connect as role: %w", err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		return "", "", err
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(ctx, "SET LOCAL statement_timeout = '5s'; SET LOCAL lock_timeout = '2s'"); err != nil {
		return "", "", err
	}
	for _, text := range texts {
		var err error
		if copyFromStdin.MatchString(text) {
			// A plain Exec would leave the server waiting for COPY data;
			// send none.
			_, err = conn.PgConn().CopyFrom(ctx, strings.NewReader(""), text)
		} else {
			_, err = tx.Exec(ctx, text)
		}
		if err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) {
				return pe.Code, pe.Message, nil
			}
			return "", "", err
		}
	}
	return "", "", nil
}

// copyFromStdin matches a text that is a single COPY ... FROM STDIN.
var copyFromStdin = regexp.MustCompile(`(?is)^\s*copy\b[^;]*\bfrom\s+stdin\b[^;]*;?\s*$`)

// pgInsufficientPrivilege is SQLSTATE 42501.
const pgInsufficientPrivilege = "42501"

// TestCorpus decides every case of every suite with the engine and checks
// the decision, the safety invariant (nothing allowed reads a labelled
// column) and agreement with Postgres's own grants.
func TestCorpus(t *testing.T) {
	t.Parallel()
	for _, su := range suites {
		t.Run(su.name, func(t *testing.T) {
			t.Parallel()
			runSuite(t, su)
		})
	}
}

func runSuite(t *testing.T, su suite) {
	cases, err := loadCases(su.casesDir)
	require.NoError(t, err)
	s := newShop(t, su)

	pol, warns, err := sqlpolicy.LoadPolicyFile(su.policy, s.cat)
	require.NoError(t, err)
	for _, w := range warns {
		t.Logf("policy warning: %v", w)
	}
	an := pganalyze.New(s.cat, pganalyze.Options{})
	eng := sqlpolicy.NewEngine(pol, s.cat, an, sqlpolicy.EngineOptions{})
	p := sqlpolicy.Principal{Agent: su.agent}

	// The safety invariant below is only as good as forbiddenReads' reading
	// of an Access: check that it sees labelled reads the analyzer reports.
	leaks := forbiddenReads(an.Analyze("SELECT email, ssn, phone FROM customers; SELECT value FROM public.secrets", an.NewSession()))
	for _, want := range []string{"public.customers.email", "public.customers.ssn", "public.customers.phone", "public.secrets.value"} {
		assert.Contains(t, leaks, want, "forbiddenReads misses a labelled read")
	}
	assert.Empty(t, forbiddenReads(an.Analyze("SELECT id, name FROM customers", an.NewSession())))

	// Bound the connections the Postgres checks open at once.
	pgSlots := make(chan struct{}, 4)
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
				checkCase(t, c, eng, p, s.roleDSN, pgSlots, fail)
			})
		}
	})
	if len(failed) > 0 {
		t.Logf("suite %s: %d corpus case failure(s):\n  %s", su.name, len(failed), strings.Join(failed, "\n  "))
	}
}

func checkCase(t *testing.T, c *Case, eng *sqlpolicy.Engine, p sqlpolicy.Principal, roleDSN string,
	pgSlots chan struct{}, fail func(id, why string)) {
	sess := eng.NewSession()
	var d *sqlpolicy.Decision
	var leaks []string
	for i, text := range c.SQL {
		var a *sqlpolicy.Access
		d, a = eng.Check(p, text, sess)
		require.NotNil(t, d, "nil decision")
		if d.Allowed() {
			leaks = append(leaks, forbiddenReads(a)...)
			if i < len(c.SQL)-1 {
				sess.Apply(a)
			}
		}
	}
	got := string(d.Effect)
	if !assert.Equal(t, c.Expect, got,
		"case %s\n  sql: %s\n  rule: %s\n  reasons: %s", c, c.SQLText(), d.Rule, reasonsJSON(d)) {
		fail(c.ID, fmt.Sprintf("want %s, got %s (rule %s, reasons %s)", c.Expect, got, d.Rule, reasonsJSON(d)))
	}
	if c.Problem != "" && !d.Allowed() {
		if !assert.True(t, hasReason(d, c.Problem),
			"case %s: no reason with code/problem %q\n  sql: %s\n  reasons: %s", c, c.Problem, c.SQLText(), reasonsJSON(d)) {
			fail(c.ID, fmt.Sprintf("denied without reason %q (reasons %s)", c.Problem, reasonsJSON(d)))
		}
	}
	if !assert.Empty(t, leaks, "case %s: SAFETY: an allowed text reads labelled data\n  sql: %s", c, c.SQLText()) {
		fail(c.ID, fmt.Sprintf("SAFETY: allowed access reads %v", leaks))
	}

	// Ground truth: Postgres with the policy's grants.
	if c.PG == "skip" || (c.Expect != "allow" && !d.Allowed() && c.PG != "denied") {
		return
	}
	pgSlots <- struct{}{}
	code, msg, err := pgOutcome(roleDSN, c.SQL)
	<-pgSlots
	require.NoError(t, err, "case %s: running in Postgres", c)
	if d.Allowed() && !assert.NotEqual(t, pgInsufficientPrivilege, code,
		"case %s: keyhole allowed what Postgres's own grants refuse: %s\n  sql: %s", c, msg, c.SQLText()) {
		fail(c.ID, "keyhole allowed, Postgres grants refuse: "+msg)
	}
	if c.Expect == "allow" && !assert.NotEqual(t, pgInsufficientPrivilege, code,
		"case %s: corpus expects allow but Postgres's grants refuse: %s\n  sql: %s", c, msg, c.SQLText()) {
		fail(c.ID, "corpus expects allow, Postgres grants refuse: "+msg)
	}
	if c.PG == "denied" && !assert.Equal(t, pgInsufficientPrivilege, code,
		"case %s: tagged pg: denied but Postgres answered %q %s\n  sql: %s", c, code, msg, c.SQLText()) {
		fail(c.ID, fmt.Sprintf("pg: denied but Postgres answered %q %s", code, msg))
	}
	if code != "" && code != pgInsufficientPrivilege && (c.Expect == "allow" || d.Allowed()) {
		t.Logf("case %s: Postgres error %s (%s) — not a privilege error", c.ID, code, msg)
	}
}
