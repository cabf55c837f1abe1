package corpus_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/internal/corpus"
	"github.com/keyholedb/keyhole/internal/fixture"
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
	for _, su := range corpus.Suites {
		cases, err := corpus.LoadCases(fixture.Path(t, su.CasesDir))
		require.NoError(t, err)
		counts := map[string]int{}
		for _, c := range cases {
			if prev, dup := seen[c.ID]; dup {
				t.Errorf("case id %q in %s is also in %s", c.ID, c.File, prev)
			}
			seen[c.ID] = c.File
			counts[c.Expect]++
			if err := corpus.ValidateCase(c); err != nil {
				t.Errorf("case %s: %v", c, err)
			}
			if c.Problem != "" && !knownCodes[c.Problem] {
				t.Errorf("case %s: problem %q is not a sqlpolicy reason or problem code", c, c.Problem)
			}
		}
		t.Logf("suite %s: %d cases, %d deny, %d allow", su.Name, len(cases), counts["deny"], counts["allow"])
		assert.GreaterOrEqual(t, counts["deny"], su.MinDeny, "suite %s: deny cases", su.Name)
		assert.GreaterOrEqual(t, counts["allow"], su.MinAllow, "suite %s: allow cases", su.Name)
	}
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

// TestCorpus decides every case of every suite with the engine and checks
// the decision, the safety invariant (nothing allowed reads a labelled
// column) and agreement with Postgres's own grants.
func TestCorpus(t *testing.T) {
	t.Parallel()
	for _, su := range corpus.Suites {
		t.Run(su.Name, func(t *testing.T) {
			t.Parallel()
			runSuite(t, su)
		})
	}
}

func runSuite(t *testing.T, su corpus.Suite) {
	cases, err := corpus.LoadCases(fixture.Path(t, su.CasesDir))
	require.NoError(t, err)
	s := corpus.NewShop(t, su)

	pol, warns, err := sqlpolicy.LoadPolicyFile(fixture.Path(t, su.Policy), s.Cat)
	require.NoError(t, err)
	for _, w := range warns {
		t.Logf("policy warning: %v", w)
	}
	an := pganalyze.New(s.Cat, pganalyze.Options{})
	eng := sqlpolicy.NewEngine(pol, s.Cat, an, sqlpolicy.EngineOptions{})
	p := sqlpolicy.Principal{Agent: su.Agent}

	// The safety invariant below is only as good as forbiddenReads' reading
	// of an Access: check that it sees labelled reads the analyzer reports.
	leaks := corpus.ForbiddenReads(an.Analyze("SELECT email, ssn, phone FROM customers; SELECT value FROM public.secrets", an.NewSession()))
	for _, want := range []string{"public.customers.email", "public.customers.ssn", "public.customers.phone", "public.secrets.value"} {
		assert.Contains(t, leaks, want, "forbiddenReads misses a labelled read")
	}
	assert.Empty(t, corpus.ForbiddenReads(an.Analyze("SELECT id, name FROM customers", an.NewSession())))

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
				checkCase(t, c, eng, p, s.RoleDSN, pgSlots, fail)
			})
		}
	})
	if len(failed) > 0 {
		t.Logf("suite %s: %d corpus case failure(s):\n  %s", su.Name, len(failed), strings.Join(failed, "\n  "))
	}
}

func checkCase(t *testing.T, c *corpus.Case, eng *sqlpolicy.Engine, p sqlpolicy.Principal, roleDSN string,
	pgSlots chan struct{}, fail func(id, why string)) {
	sess := eng.NewSession()
	var d *sqlpolicy.Decision
	var leaks []string
	for i, text := range c.SQL {
		var a *sqlpolicy.Access
		d, a = eng.Check(p, text, sess)
		require.NotNil(t, d, "nil decision")
		if d.Allowed() {
			leaks = append(leaks, corpus.ForbiddenReads(a)...)
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
	code, msg, err := corpus.PGOutcome(roleDSN, c.SQL)
	<-pgSlots
	require.NoError(t, err, "case %s: running in Postgres", c)
	if d.Allowed() && !assert.NotEqual(t, corpus.InsufficientPrivilege, code,
		"case %s: keyhole allowed what Postgres's own grants refuse: %s\n  sql: %s", c, msg, c.SQLText()) {
		fail(c.ID, "keyhole allowed, Postgres grants refuse: "+msg)
	}
	if c.Expect == "allow" && !assert.NotEqual(t, corpus.InsufficientPrivilege, code,
		"case %s: corpus expects allow but Postgres's grants refuse: %s\n  sql: %s", c, msg, c.SQLText()) {
		fail(c.ID, "corpus expects allow, Postgres grants refuse: "+msg)
	}
	if c.PG == "denied" && !assert.Equal(t, corpus.InsufficientPrivilege, code,
		"case %s: tagged pg: denied but Postgres answered %q %s\n  sql: %s", c, code, msg, c.SQLText()) {
		fail(c.ID, fmt.Sprintf("pg: denied but Postgres answered %q %s", code, msg))
	}
	if code != "" && code != corpus.InsufficientPrivilege && (c.Expect == "allow" || d.Allowed()) {
		t.Logf("case %s: Postgres error %s (%s) — not a privilege error", c.ID, code, msg)
	}
}
