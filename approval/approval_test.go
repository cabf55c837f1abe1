package approval_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/approval"
	"github.com/keyholedb/keyhole/audit"
	sp "github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/store"
)

func TestGrantable(t *testing.T) {
	t.Parallel()
	never := func(l string) bool { return l == "secret" }
	label := func(table, col, l string) sp.Reason {
		return sp.Reason{Code: sp.ReasonLabelDenied, Verb: sp.VerbSelect, Table: table, Column: col, Label: l}
	}
	cases := []struct {
		name    string
		reasons []sp.Reason
		want    []sp.Exception
		whyNot  string
	}{
		{name: "a labelled column", reasons: []sp.Reason{label("public.c", "email", "pii.email")},
			want: []sp.Exception{{Verb: sp.VerbSelect, Table: "public.c", Columns: []string{"email"}, Labels: []string{"pii.email"}}}},
		{name: "columns and labels merge per table", reasons: []sp.Reason{label("public.c", "phone", "pii.phone"), label("public.c", "email", "pii.email"),
			{Code: sp.ReasonColumnNotAllowed, Verb: sp.VerbSelect, Table: "public.c", Column: "notes"}},
			want: []sp.Exception{{Verb: sp.VerbSelect, Table: "public.c", Columns: []string{"email", "notes", "phone"}, Labels: []string{"pii.email", "pii.phone"}}}},
		{name: "no grant on a table: all of it", reasons: []sp.Reason{{Code: sp.ReasonNoRule, Verb: sp.VerbInsert, Table: "public.o"}},
			want: []sp.Exception{{Verb: sp.VerbInsert, Table: "public.o"}}},
		{name: "a relation label", reasons: []sp.Reason{label("public.t", "", "internal")},
			want: []sp.Exception{{Verb: sp.VerbSelect, Table: "public.t", Labels: []string{"internal"}}}},
		{name: "never grantable", reasons: []sp.Reason{label("public.c", "email", "pii.email"), label("public.s", "v", "secret")}, whyNot: "label secret is never granted"},
		{name: "a problem", reasons: []sp.Reason{{Code: sp.ReasonProblem, Problem: sp.ProblemUnparseable}}, whyNot: "only the policy"},
		{name: "a function", reasons: []sp.Reason{{Code: sp.ReasonFunctionDenied, Func: "public.f"}}, whyNot: "only the policy"},
		{name: "the token scope", reasons: []sp.Reason{{Code: sp.ReasonScopeDenied, Verb: sp.VerbSelect, Table: "public.o"}}, whyNot: "only the policy"},
		{name: "ddl", reasons: []sp.Reason{{Code: sp.ReasonNoRule, Verb: sp.VerbDDL, Table: "public.o"}}, whyNot: "grants cover"},
		{name: "nothing", whyNot: "no reason"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, why := approval.Grantable(tc.reasons, never)
			assert.Equal(t, tc.want, got)
			if tc.whyNot == "" {
				assert.Empty(t, why)
			} else {
				assert.Contains(t, why, tc.whyNot)
			}
		})
	}
	offered := []sp.Exception{{Verb: sp.VerbSelect, Table: "public.c", Columns: []string{"email", "phone"}, Labels: []string{"pii.email", "pii.phone"}},
		{Verb: sp.VerbInsert, Table: "public.o"}}
	for name, want := range map[string][]sp.Exception{
		"another table":        {{Verb: sp.VerbSelect, Table: "public.x"}},
		"another verb":         {{Verb: sp.VerbUpdate, Table: "public.o"}},
		"another column":       {{Verb: sp.VerbSelect, Table: "public.c", Columns: []string{"ssn"}}},
		"another label":        {{Verb: sp.VerbSelect, Table: "public.c", Columns: []string{"email"}, Labels: []string{"pii.ssn"}}},
		"widened to the table": {{Verb: sp.VerbSelect, Table: "public.c"}},
		"no column":            {{Verb: sp.VerbSelect, Table: "public.c", Columns: []string{}}},
		"nothing":              nil,
	} {
		assert.ErrorIs(t, approval.Subset(want, offered), approval.ErrInvalid, name)
	}
	require.NoError(t, approval.Subset([]sp.Exception{{Verb: sp.VerbSelect, Table: "public.c", Columns: []string{"phone"}, Labels: []string{"pii.phone"}},
		{Verb: sp.VerbInsert, Table: "public.o", Columns: []string{"id"}}}, offered))
}

// Denials write behind without losing one: many goroutines deny shapes
// concurrently with a tiny queue; every count arrives, and statements
// wait (rather than drop) while the queue is full.
func TestDenialsWriteBehindWithoutLoss(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "k.db"), store.Options{})
	require.NoError(t, err)
	defer st.Close()
	svc, err := approval.New(ctx, approval.Options{Store: st, MaxPending: 3, FlushInterval: 5 * time.Millisecond})
	require.NoError(t, err)
	dec := &sp.Decision{Effect: sp.Deny, Rule: "r", Reasons: []sp.Reason{{Code: sp.ReasonNoRule, Verb: sp.VerbSelect, Table: "public.o"}}}
	const workers, each, shapes = 8, 50, 10
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				fp := fmt.Sprintf("fp%d", (w+i)%shapes)
				o := svc.Denied(approval.Denial{Agent: "bot", Role: "analyst", Fingerprint: fp, Statement: "SELECT 1", Decision: dec, At: time.Now()})
				assert.Equal(t, store.RequestID("bot", fp), o.ID)
				assert.Equal(t, store.StatusPending, o.Status)
			}
		})
	}
	wg.Wait()
	require.NoError(t, svc.Close(ctx))
	reqs, err := st.Requests(ctx, store.RequestFilter{})
	require.NoError(t, err)
	require.Len(t, reqs, shapes)
	var total int64
	for _, r := range reqs {
		total += r.Count
	}
	assert.Equal(t, int64(workers*each), total, "no denial lost")
}

// A replica's revocation reaches another replica's decisions within the
// sync interval, and its expiry at once (grants carry their end).
func TestGrantsSyncAcrossServices(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := "sqlite:" + filepath.Join(t.TempDir(), "k.db")
	st1, err := store.Open(ctx, path, store.Options{})
	require.NoError(t, err)
	defer st1.Close()
	st2, err := store.Open(ctx, path, store.Options{})
	require.NoError(t, err)
	defer st2.Close()
	ended := make(chan string, 4)
	a, err := approval.New(ctx, approval.Options{Store: st1})
	require.NoError(t, err)
	defer a.Close(ctx)
	b, err := approval.New(ctx, approval.Options{Store: st2, EndAgent: func(agent string) { ended <- agent }})
	require.NoError(t, err)
	defer b.Close(ctx)
	dec := &sp.Decision{Effect: sp.Deny, Rule: "r", Reasons: []sp.Reason{{Code: sp.ReasonNoRule, Verb: sp.VerbSelect, Table: "public.o"}}}
	id := a.Denied(approval.Denial{Agent: "bot", Role: "analyst", Fingerprint: "fp", Decision: dec, At: time.Now()}).ID
	require.NoError(t, a.Flush(ctx))
	end := true
	g, err := a.Approve(ctx, approval.Reviewer{Name: "alice"}, id, approval.Approve{For: time.Hour, Note: "n", EndSessions: &end})
	require.NoError(t, err)
	deadline := time.Now().Add(time.Second)
	for {
		ex, from := b.Exceptions("bot", "analyst", "fp", time.Now())
		if len(ex) == 1 {
			b.Used("bot", "fp", from, time.Now())
			break
		}
		require.True(t, time.Now().Before(deadline), "the grant did not reach the other service within 1s")
		time.Sleep(5 * time.Millisecond) // a poll: b learns of the grant from the store, which signals nothing
	}
	ex, _ := b.Exceptions("bot", "analyst", "other-fp", time.Now())
	assert.Empty(t, ex, "a statement-scoped grant covers its shape only")
	ex, _ = b.Exceptions("bot", "analyst", "fp", g.Expires)
	assert.Empty(t, ex, "not at its end")
	ex, _ = b.Exceptions("bot", "admin", "fp", time.Now())
	assert.Empty(t, ex, "not once the agent has another role")
	ex, _ = b.Exceptions("other-bot", "analyst", "fp", time.Now())
	assert.Empty(t, ex, "not for another agent")
	_, err = a.Revoke(ctx, approval.Reviewer{Name: "alice"}, g.ID, "done")
	require.NoError(t, err)
	select {
	case agent := <-ended:
		assert.Equal(t, "bot", agent, "the sessions that used it end")
	case <-time.After(2 * time.Second):
		t.Fatal("the revocation did not end the agent's sessions on the other service")
	}
	ex, _ = b.Exceptions("bot", "analyst", "fp", time.Now())
	assert.Empty(t, ex)
}

// The key of a shape is a cryptographic hash of 128 bits; a
// literal-sensitive statement's key is of its exact text, so a grant for
// one literal never covers another.
func TestShapeKey(t *testing.T) {
	t.Parallel()
	norm := "SELECT nextval($1)"
	a := approval.ShapeKey(norm, "SELECT nextval('a')", false)
	assert.Regexp(t, `^[0-9a-f]{32}$`, a)
	assert.Equal(t, a, approval.ShapeKey(norm, "SELECT nextval('b')", false), "literals are one shape")
	ea := approval.ShapeKey(norm, "SELECT nextval('a')", true)
	eb := approval.ShapeKey(norm, "SELECT nextval('b')", true)
	assert.NotEqual(t, ea, eb, "literal-sensitive: each literal its own key")
	assert.NotEqual(t, a, ea)
	assert.NotEqual(t, approval.ShapeKey("x", "x", false), approval.ShapeKey("x", "x", true), "the two kinds of key never meet")
}

func deny(reasons ...sp.Reason) *sp.Decision {
	return &sp.Decision{Effect: sp.Deny, Rule: "r", Reasons: reasons}
}

func noRule(table string) sp.Reason {
	return sp.Reason{Code: sp.ReasonNoRule, Verb: sp.VerbSelect, Table: table}
}

// An agent sending many distinct denied statements opens at most
// MaxOpenPerAgent requests; beyond, shapes are blocked (not approvable) and
// the agent is not told of a request; other agents are not affected; the
// store holds the bound across replicas.
func TestOpenRequestsBoundedPerAgent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := "sqlite:" + filepath.Join(t.TempDir(), "k.db")
	st1, err := store.Open(ctx, path, store.Options{MaxOpenPerAgent: 3})
	require.NoError(t, err)
	defer st1.Close()
	st2, err := store.Open(ctx, path, store.Options{MaxOpenPerAgent: 3})
	require.NoError(t, err)
	defer st2.Close()
	a, err := approval.New(ctx, approval.Options{Store: st1, MaxOpenPerAgent: 3})
	require.NoError(t, err)
	defer a.Close(ctx)
	b, err := approval.New(ctx, approval.Options{Store: st2, MaxOpenPerAgent: 3})
	require.NoError(t, err)
	defer b.Close(ctx)
	for i := range 6 {
		o := a.Denied(approval.Denial{Agent: "flood", Role: "analyst", Fingerprint: fmt.Sprintf("fp%d", i), Statement: "SELECT 1",
			Decision: deny(noRule(fmt.Sprintf("public.t%d", i))), At: time.Now()})
		if i < 3 {
			assert.Equal(t, store.StatusPending, o.Status, "shape %d", i)
		} else {
			assert.Equal(t, store.StatusBlocked, o.Status, "shape %d is one too many", i)
		}
	}
	o := a.Denied(approval.Denial{Agent: "flood", Role: "analyst", Fingerprint: "fp0", Decision: deny(noRule("public.t0")), At: time.Now()})
	assert.Equal(t, store.StatusPending, o.Status, "an open request still counts")
	o = a.Denied(approval.Denial{Agent: "calm", Role: "analyst", Fingerprint: "fp9", Decision: deny(noRule("public.t9")), At: time.Now()})
	assert.Equal(t, store.StatusPending, o.Status, "another agent has its own bound")
	// The other replica has not seen these yet; the store holds the
	// bound for both.
	for i := 10; i < 14; i++ {
		b.Denied(approval.Denial{Agent: "flood", Role: "analyst", Fingerprint: fmt.Sprintf("fp%d", i), Decision: deny(noRule("public.x")), At: time.Now()})
	}
	require.NoError(t, a.Flush(ctx))
	require.NoError(t, b.Flush(ctx))
	pending, err := st1.Requests(ctx, store.RequestFilter{Agent: "flood", Statuses: []store.Status{store.StatusPending}})
	require.NoError(t, err)
	assert.Len(t, pending, 3)
	blocked, err := st1.Requests(ctx, store.RequestFilter{Agent: "flood", Statuses: []store.Status{store.StatusBlocked}})
	require.NoError(t, err)
	require.NotEmpty(t, blocked)
	for _, r := range blocked {
		assert.Contains(t, r.WhyNot, "access requests pending")
		assert.Empty(t, r.Grantable)
	}
	// Deciding one makes room.
	_, err = a.Decline(ctx, approval.Reviewer{Name: "alice"}, pending[0].ID, "no")
	require.NoError(t, err)
	o = a.Denied(approval.Denial{Agent: "flood", Role: "analyst", Fingerprint: "fp20", Decision: deny(noRule("public.t20")), At: time.Now()})
	assert.Equal(t, store.StatusPending, o.Status)
}

// A huge statement, or one denied for very many reasons, makes no huge
// row: the text is cut (saying so), the reasons are bounded, and a denial
// with more reasons than a reviewer can judge is not approvable.
func TestHugeDenialBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "k.db"), store.Options{})
	require.NoError(t, err)
	defer st.Close()
	svc, err := approval.New(ctx, approval.Options{Store: st})
	require.NoError(t, err)
	defer svc.Close(ctx)
	huge := "SELECT '" + strings.Repeat("é", 1<<20) + "'"
	var many []sp.Reason
	for i := range 1000 {
		many = append(many, sp.Reason{Code: sp.ReasonColumnNotAllowed, Verb: sp.VerbSelect, Table: "public.t", Column: fmt.Sprintf("c%d", i)})
	}
	o1 := svc.Denied(approval.Denial{Agent: "bot", Role: "analyst", Fingerprint: "big", Statement: huge, Decision: deny(noRule("public.t")), At: time.Now()})
	o2 := svc.Denied(approval.Denial{Agent: "bot", Role: "analyst", Fingerprint: "wide", Statement: "SELECT *", Decision: deny(many...), At: time.Now()})
	assert.Equal(t, store.StatusPending, o1.Status)
	assert.Equal(t, store.StatusBlocked, o2.Status)
	require.NoError(t, svc.Flush(ctx))
	r1, err := st.Request(ctx, o1.ID)
	require.NoError(t, err)
	assert.LessOrEqual(t, len(r1.Statement), approval.MaxStatementBytes+100)
	assert.Contains(t, r1.Statement, "[cut:")
	assert.True(t, utf8.ValidString(r1.Statement))
	r2, err := st.Request(ctx, o2.ID)
	require.NoError(t, err)
	assert.Len(t, r2.Reasons, approval.MaxReasons)
	assert.Empty(t, r2.Grantable)
	assert.Contains(t, r2.WhyNot, "1000 reasons")
}

// An agent flooding denials is sampled in the console's denial index (a
// token bucket per agent); another agent's denials are indexed.
func TestDenialIndexRateBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "k.db"), store.Options{})
	require.NoError(t, err)
	defer st.Close()
	svc, err := approval.New(ctx, approval.Options{Store: st})
	require.NoError(t, err)
	defer svc.Close(ctx)
	rec := svc.Recorder(discard{})
	at := time.Now()
	for range 3 * approval.DefaultIndexBurst {
		rec.Record(audit.Event{Time: at, Kind: audit.KindStatement, Decision: sp.Deny, Agent: "flood", Fingerprint: "fp"})
	}
	rec.Record(audit.Event{Time: at, Kind: audit.KindStatement, Decision: sp.Deny, Agent: "calm", Fingerprint: "fp"})
	require.NoError(t, svc.Flush(ctx))
	ds, err := st.Denials(ctx, store.DenialFilter{Agent: "flood", Limit: 10000})
	require.NoError(t, err)
	assert.Len(t, ds, approval.DefaultIndexBurst)
	ds, err = st.Denials(ctx, store.DenialFilter{Agent: "calm"})
	require.NoError(t, err)
	assert.Len(t, ds, 1)
}

type discard struct{}

func (discard) Record(audit.Event) {}
func (discard) Close() error       { return nil }
