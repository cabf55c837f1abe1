package sqlpolicy_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/internal/fixture"
	sp "github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

const limitsPolicy = fixture.PolicyRoles + `  analyst2:
    allow:
      - select: [public.orders]
  batch:
    allow:
      - select: [public.orders]
    limits:
      statement_timeout: 1h30m
      idle_in_transaction_timeout: unlimited
      work_mem: 256MB
      maintenance_work_mem: 1GiB
      temp_buffers: 16 MB
` + fixture.PolicyAgents + `  batch-bot: {role: batch}
  analyst2-bot: {role: analyst2}
`

func TestParsePolicyLimits(t *testing.T) {
	t.Parallel()
	p := mustPolicy(t, limitsPolicy, testCatalog())

	// A role without a limits section gets the documented defaults.
	analyst := p.Roles["analyst"]
	assert.Equal(t, sp.DefaultLimits(), analyst.Limits)
	assert.Empty(t, analyst.LimitsSet)
	assert.Equal(t, map[sp.Limit]int64{
		sp.LimitStatementTimeout:         int64(5 * time.Minute),
		sp.LimitIdleInTransactionTimeout: int64(2 * time.Minute),
		sp.LimitWorkMem:                  4 << 20,
		sp.LimitMaintenanceWorkMem:       64 << 20,
		sp.LimitTempBuffers:              8 << 20,
	}, analyst.Limits)

	batch := p.Roles["batch"]
	assert.Equal(t, map[sp.Limit]int64{
		sp.LimitStatementTimeout:         int64(90 * time.Minute),
		sp.LimitIdleInTransactionTimeout: sp.Unlimited,
		sp.LimitWorkMem:                  256 << 20,
		sp.LimitMaintenanceWorkMem:       1 << 30,
		sp.LimitTempBuffers:              16 << 20,
	}, batch.Limits)
	assert.ElementsMatch(t, sp.AllLimits, batch.LimitsSet)
	// Each role has its own map.
	analyst.Limits[sp.LimitWorkMem] = 1
	assert.Equal(t, int64(4<<20), p.Roles["analyst2"].Limits[sp.LimitWorkMem])

	errs := []struct {
		name, limits, want string
	}{
		{"unknown limit", "      cpu: 2\n", `unknown limit "cpu"`},
		{"duration syntax", "      statement_timeout: 5 minutes\n", "want a duration"},
		{"bare number duration", "      statement_timeout: 300\n", "want a duration"},
		{"zero duration", "      statement_timeout: 0s\n", "less than 1ms"},
		{"sub-millisecond", "      idle_in_transaction_timeout: 500us\n", "less than 1ms"},
		{"negative duration", "      statement_timeout: -5s\n", "less than 1ms"},
		{"bare number size", "      work_mem: 4096\n", "want a size"},
		{"lower-case unit", "      work_mem: 64mb\n", "want a size"},
		{"fractional size", "      work_mem: 1.5GB\n", "want a size"},
		{"tiny size", "      work_mem: 512kB\n", "less than 1MB"},
		{"huge size", "      work_mem: 99999999999TB\n", "too large"},
		{"not a scalar", "      work_mem: [1MB]\n", "want a value"},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := "roles:\n  a:\n    limits:\n" + tc.limits + "agents:\n  x: {role: a}\n"
			_, _, err := sp.ParsePolicy([]byte(src), "p.yaml", nil)
			var pe sp.PolicyErrors
			require.True(t, errors.As(err, &pe), "want a policy error, got %v", err)
			require.Len(t, pe, 1)
			assert.Equal(t, 4, pe[0].Line)
			assert.Contains(t, pe[0].Msg, tc.want)
		})
	}
}

func TestFormatLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		l    sp.Limit
		n    int64
		want string
	}{
		{sp.LimitStatementTimeout, int64(5 * time.Minute), "5m"},
		{sp.LimitStatementTimeout, int64(90 * time.Second), "90s"},
		{sp.LimitStatementTimeout, int64(1500 * time.Millisecond), "1500ms"},
		{sp.LimitStatementTimeout, int64(2 * time.Hour), "2h"},
		{sp.LimitStatementTimeout, sp.Unlimited, "unlimited"},
		{sp.LimitWorkMem, 4 << 20, "4MB"},
		{sp.LimitWorkMem, 1536 << 10, "1536kB"},
		{sp.LimitWorkMem, 2 << 40, "2TB"},
		{sp.LimitWorkMem, 1000, "1000B"},
	} {
		assert.Equal(t, tc.want, sp.FormatLimit(tc.l, tc.n))
	}
}

func setting(name string, l sp.Limit, amount int64) sp.Statement {
	return sp.Statement{Verb: sp.VerbSet, Command: "SET",
		Settings: []sp.Setting{{Name: name, Value: "v", Limit: l, Amount: amount}}}
}

func TestDecideLimits(t *testing.T) {
	t.Parallel()
	cat := testCatalog()
	p := mustPolicy(t, limitsPolicy, cat)
	batch := sp.Principal{Agent: "batch-bot"}
	cases := []struct {
		name  string
		pr    sp.Principal
		st    sp.Statement
		allow bool
		rule  string
	}{
		{"at the default", analyst, setting("work_mem", sp.LimitWorkMem, 4<<20), true, ""},
		{"over the default", analyst, setting("work_mem", sp.LimitWorkMem, 4<<20+1024), false, "roles.analyst.limits.work_mem"},
		{"lifting a timeout", analyst, setting("statement_timeout", sp.LimitStatementTimeout, sp.Unlimited), false, "roles.analyst.limits.statement_timeout"},
		{"shorter timeout", analyst, setting("statement_timeout", sp.LimitStatementTimeout, int64(time.Second)), true, ""},
		{"role's own limit", batch, setting("work_mem", sp.LimitWorkMem, 256<<20), true, ""},
		{"over the role's own limit", batch, setting("work_mem", sp.LimitWorkMem, 257<<20), false, "roles.batch.limits.work_mem"},
		{"unlimited role", batch, setting("idle_in_transaction_session_timeout", sp.LimitIdleInTransactionTimeout, sp.Unlimited), true, ""},
		{"unreadable value", analyst, sp.Statement{Verb: sp.VerbSet, Settings: []sp.Setting{
			{Name: "work_mem", Limit: sp.LimitWorkMem, Unknown: true}}}, false, "roles.analyst.limits.work_mem"},
		{"unreadable value, unlimited role", batch, sp.Statement{Verb: sp.VerbSet, Settings: []sp.Setting{
			{Name: "idle_in_transaction_session_timeout", Limit: sp.LimitIdleInTransactionTimeout, Unknown: true}}}, true, ""},
		{"reset", analyst, sp.Statement{Verb: sp.VerbSet, Settings: []sp.Setting{
			{Name: "statement_timeout", Limit: sp.LimitStatementTimeout, Reset: true}}}, true, ""},
		{"show", analyst, sp.Statement{Verb: sp.VerbSet, Settings: []sp.Setting{
			{Name: "work_mem", Limit: sp.LimitWorkMem, Amount: 1 << 40, Show: true}}}, true, ""},
		{"limit the policy does not know", analyst, setting("cpu", sp.Limit("cpu_seconds"), 1), false, sp.RuleDefaultDeny},
		{"inside a prepared statement", analyst, sp.Statement{Verb: sp.VerbPrepare, PrepareName: "p",
			Prepared: &sp.Statement{Verb: sp.VerbSelect, Settings: []sp.Setting{
				{Name: "statement_timeout", Limit: sp.LimitStatementTimeout, Amount: sp.Unlimited}}}}, false, "roles.analyst.limits.statement_timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := p.Decide(tc.pr, access(tc.st), cat)
			if tc.allow {
				assert.Equal(t, sp.Allow, d.Effect, "%+v", d.Reasons)
				return
			}
			require.Equal(t, sp.Deny, d.Effect)
			assert.Equal(t, tc.rule, d.Rule)
			assert.Equal(t, sp.ReasonLimitExceeded, d.Reasons[0].Code)
			assert.Equal(t, sp.SQLStateInsufficientPrivilege, d.SQLState)
		})
	}

	t.Run("texts", func(t *testing.T) {
		t.Parallel()
		d := p.Decide(analyst, access(setting("work_mem", sp.LimitWorkMem, 2<<40)), cat)
		assert.Equal(t, `keyhole: permission denied: role analyst may not change work_mem: work_mem = 'v' is 2TB, over the limit of 4MB (keyhole's default)`, d.Message)
		assert.Equal(t, "Role analyst may set work_mem to at most 4MB (memory per sort or hash step; larger steps spill to disk); "+
			"use a value within it, written as a literal with its unit, or leave work_mem as keyhole set it when the session started.", d.Hint)
		d = p.Decide(batch, access(setting("work_mem", sp.LimitWorkMem, 2<<40)), cat)
		assert.NotContains(t, d.Message, "default", "the batch role sets work_mem itself")
	})
}

// TestUpstreamSettings: the decision contract hands the proxies the
// upstream settings of an agent's role; with the Postgres analyzer, the
// startup parameters that enforce the limits (an unlimited one is left
// to the server).
func TestUpstreamSettings(t *testing.T) {
	t.Parallel()
	cat := testCatalog()
	p := mustPolicy(t, limitsPolicy, cat)
	e := sp.NewEngine(p, cat, pganalyze.New(cat, pganalyze.Options{}), sp.EngineOptions{})
	h := sp.NewHolder(e)
	for _, d := range []sp.Decider{e, h} {
		assert.Equal(t, map[string]string{
			"statement_timeout":                   "300000",
			"idle_in_transaction_session_timeout": "120000",
			"work_mem":                            "4096kB",
			"maintenance_work_mem":                "65536kB",
			"temp_buffers":                        "8192kB",
		}, d.UpstreamSettings("sales-summarizer"))
		assert.Equal(t, map[string]string{
			"statement_timeout":    "5400000",
			"work_mem":             "262144kB",
			"maintenance_work_mem": "1048576kB",
			"temp_buffers":         "16384kB",
		}, d.UpstreamSettings("batch-bot"))
		assert.Nil(t, d.UpstreamSettings("nobody"))
	}
	assert.Nil(t, sp.NewHolder(nil).UpstreamSettings("sales-summarizer"), "an empty holder")
	// An analyzer that cannot map limits maps none.
	assert.Nil(t, sp.NewEngine(p, cat, newFakeAnalyzer(nil), sp.EngineOptions{}).UpstreamSettings("sales-summarizer"))
}
