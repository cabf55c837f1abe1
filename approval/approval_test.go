package approval_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/approval"
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
				id, status := svc.Denied(approval.Denial{Agent: "bot", Role: "analyst", Fingerprint: fp, Statement: "SELECT 1", Decision: dec, At: time.Now()})
				assert.Equal(t, store.RequestID("bot", fp), id)
				assert.Equal(t, store.StatusPending, status)
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
	id, _ := a.Denied(approval.Denial{Agent: "bot", Fingerprint: "fp", Decision: dec, At: time.Now()})
	require.NoError(t, a.Flush(ctx))
	end := true
	g, err := a.Approve(ctx, approval.Reviewer{Name: "alice"}, id, approval.Approve{For: time.Hour, Note: "n", EndSessions: &end})
	require.NoError(t, err)
	deadline := time.Now().Add(time.Second)
	for {
		ex, from := b.Exceptions("bot", "fp", time.Now())
		if len(ex) == 1 {
			b.Used("bot", "fp", from, time.Now())
			break
		}
		require.True(t, time.Now().Before(deadline), "the grant did not reach the other service within 1s")
		time.Sleep(5 * time.Millisecond)
	}
	ex, _ := b.Exceptions("bot", "other-fp", time.Now())
	assert.Empty(t, ex, "a statement-scoped grant covers its shape only")
	ex, _ = b.Exceptions("bot", "fp", g.Expires)
	assert.Empty(t, ex, "not at its end")
	_, err = a.Revoke(ctx, approval.Reviewer{Name: "alice"}, g.ID, "done")
	require.NoError(t, err)
	select {
	case agent := <-ended:
		assert.Equal(t, "bot", agent, "the sessions that used it end")
	case <-time.After(2 * time.Second):
		t.Fatal("the revocation did not end the agent's sessions on the other service")
	}
	ex, _ = b.Exceptions("bot", "fp", time.Now())
	assert.Empty(t, ex)
}
