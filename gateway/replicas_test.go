package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/approval"
	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/internal/testpg"
	"github.com/keyholedb/keyhole/store"
)

// within polls f until it is true or d passes, and returns how long it
// took.
func within(t *testing.T, d time.Duration, what string, f func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !f() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// Two keyhole processes share one Postgres store: a request opened
// through one is seen (and approved) on the other, and the grant, its
// revocation and its expiry apply on both within a second.
func TestReplicasShareRequestsAndGrants(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, fixture.ShopSQL(t))
	storeURL := testpg.New(t, "").DSN
	replica := func(n int) setup {
		return func(c *config.Config) {
			c.Store.URL = storeURL
			c.Cluster.Replica = n
		}
	}
	a := start(t, map[string]string{"": up.url()}, approvalPolicy, replica(1))
	b := start(t, map[string]string{"": up.url()}, approvalPolicy, replica(2))
	ctx := context.Background()
	ca := a.connect(agent, up.db.Name)
	cb := b.connect(agent, up.db.Name)

	// Denied through B; A's reviewers see the request.
	pe := pgErr(t, cb, "SELECT email FROM customers WHERE id = 1")
	require.NotNil(t, pe)
	id := requestRE.FindString(pe.Message)
	require.NotEmpty(t, id)
	// The same shape through A names the same request.
	pe = pgErr(t, ca, "SELECT email FROM customers WHERE id = 2")
	require.NotNil(t, pe)
	assert.Equal(t, id, requestRE.FindString(pe.Message))
	within(t, 2*time.Second, "request visible on A", func() bool {
		r, err := a.g.Approvals().Store().Request(ctx, id)
		return err == nil && r.Count == 2
	})
	sessions, err := a.g.Approvals().Store().Sessions(ctx, time.Now().Add(-time.Minute), agent)
	require.NoError(t, err)
	replicas := map[string]bool{}
	for _, s := range sessions {
		replicas[s.Replica] = true
	}
	assert.Equal(t, map[string]bool{"replica-1": true, "replica-2": true}, replicas, "sessions of both replicas")

	g, err := a.g.Approvals().Approve(ctx, approval.Reviewer{Name: "alice"}, id, approval.Approve{For: time.Hour, Note: "replicas", Scope: store.ScopeAccess})
	require.NoError(t, err)
	assert.Equal(t, "ada@example.com", query(ca, "SELECT email FROM customers WHERE id = 1"), "at once where approved")
	onB := within(t, time.Second, "grant applies on B", func() bool {
		return query(cb, "SELECT email FROM customers WHERE id = 1") == "ada@example.com"
	})
	_, err = a.g.Approvals().Revoke(ctx, approval.Reviewer{Name: "alice"}, g.ID, "over")
	require.NoError(t, err)
	assert.Equal(t, "42501", query(ca, "SELECT email FROM customers WHERE id = 1"))
	revokedB := within(t, time.Second, "revocation applies on B", func() bool {
		return query(cb, "SELECT email FROM customers WHERE id = 1") == "42501"
	})
	t.Logf("approval on A -> allowed on B: %s; revocation on A -> refused on B: %s", onB.Round(time.Millisecond), revokedB.Round(time.Millisecond))

	// Declined on B: A tells its agent so within the sync interval.
	pe = pgErr(t, ca, "SELECT id, email FROM customers")
	id2 := requestRE.FindString(pe.Message)
	within(t, 2*time.Second, "second request on B", func() bool {
		_, err := b.g.Approvals().Store().Request(ctx, id2)
		return err == nil
	})
	_, err = b.g.Approvals().Decline(ctx, approval.Reviewer{Name: "bob"}, id2, "no")
	require.NoError(t, err)
	within(t, time.Second, "decline known on A", func() bool {
		pe := pgErr(t, ca, "SELECT id, email FROM customers")
		return pe != nil && pe.Code == "42501" && requestRE.FindString(pe.Message) == id2 &&
			strings.Contains(pe.Message, "declined")
	})
}
