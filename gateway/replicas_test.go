package gateway_test

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/approval"
	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/internal/testpg"
	"github.com/keyholedb/keyhole/store"
)

// within polls f until it is true or d passes, and returns how long it
// took. A poll, not an event: what the tests wait for (a grant reaching
// another replica, an expiry) shows only in what the next statement gets.
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

	// A grant approved on A expires on B by its own clock: B refuses from
	// its end, not a poll later.
	pe = pgErr(t, cb, "SELECT email FROM customers WHERE id > 0 ORDER BY id LIMIT 1")
	id3 := requestRE.FindString(pe.Message)
	within(t, 2*time.Second, "third request on A", func() bool {
		_, err := a.g.Approvals().Store().Request(ctx, id3)
		return err == nil
	})
	g3, err := a.g.Approvals().Approve(ctx, approval.Reviewer{Name: "alice"}, id3, approval.Approve{For: 2 * time.Second, Note: "short", Scope: store.ScopeAccess})
	require.NoError(t, err)
	within(t, time.Second, "short grant applies on B", func() bool {
		return query(cb, "SELECT email FROM customers WHERE id > 0 ORDER BY id LIMIT 1") == "ada@example.com"
	})
	// An allowed statement was decided after it was sent and before the
	// grant's end, so it was sent before the end.
	var lastAllowedSent time.Time
	within(t, 4*time.Second, "expiry applies on B", func() bool {
		sent := time.Now()
		if query(cb, "SELECT email FROM customers WHERE id > 0 ORDER BY id LIMIT 1") == "42501" {
			return true
		}
		lastAllowedSent = sent
		return false
	})
	refusedAfter := time.Since(g3.Expires)
	assert.Less(t, refusedAfter, time.Second, "B refused within 1s of the grant's end")
	assert.True(t, lastAllowedSent.Before(g3.Expires), "B never allowed a statement sent after the grant's end")
	t.Logf("grant end -> refused on B: %s", refusedAfter.Round(time.Millisecond))

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

// freeAddr reserves a loopback port for a listener configured before it
// starts (peers must know each other's addresses).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// A CancelRequest that reaches the replica not holding the session is
// forwarded to the one that does, which cancels the running query.
func TestCancelForwardedToTheReplicaHoldingTheSession(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, fixture.ShopSQL(t))
	storeURL := testpg.New(t, "").DSN
	addrA, addrB := freeAddr(t), freeAddr(t)
	cluster := func(n int, listen string) setup {
		return func(c *config.Config) {
			c.Store.URL = storeURL
			c.Listen.Postgres = listen
			c.Cluster = config.Cluster{Replica: n, Peers: map[int]string{1: addrA, 2: addrB}}
			delete(c.Cluster.Peers, n)
		}
	}
	a := start(t, map[string]string{"": up.url()}, approvalPolicy, cluster(1, addrA))
	start(t, map[string]string{"": up.url()}, approvalPolicy, cluster(2, addrB))
	c := a.connect(agent, up.db.Name)
	pid, secret := c.PgConn().PID(), c.PgConn().SecretKey()
	assert.Equal(t, uint32(1), pid>>24, "the key names replica 1")

	done := make(chan error, 1)
	started := time.Now()
	go func() {
		_, err := c.Exec(context.Background(), "SELECT count(*) FROM generate_series(1, 2000000000)")
		done <- err
	}()
	a.waitLog("upstream session ready")
	// The client's cancel connection lands on replica B.
	within(t, 10*time.Second, "query running upstream", func() bool {
		return queryRunning(t, up, "generate_series")
	})
	nc, err := net.Dial("tcp", addrB)
	require.NoError(t, err)
	msg, err := (&pgproto3.CancelRequest{ProcessID: pid, SecretKey: secret}).Encode(nil)
	require.NoError(t, err)
	_, err = nc.Write(msg)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, nc)
	nc.Close()
	select {
	case err := <-done:
		assert.Equal(t, "57014", sqlState(err), "query_canceled")
		assert.Less(t, time.Since(started), 20*time.Second)
	case <-time.After(20 * time.Second):
		t.Fatal("the query was not cancelled")
	}
}

// queryRunning reports whether a backend runs a query containing text.
func queryRunning(t *testing.T, u upstream, text string) bool {
	var n int
	u.adminScan(t, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%'||$1||'%' AND pid <> pg_backend_pid()",
		[]any{text}, &n)
	return n > 0
}
