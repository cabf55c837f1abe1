package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/internal/testpg"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/store"
)

// clock is a settable time for the store under test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// backend opens a fresh store of one kind; url reopens the same one.
type backend struct {
	name string
	open func(t *testing.T) (url string)
}

var backends = []backend{
	{"sqlite", func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "keyhole.db") }},
	{"postgres", func(t *testing.T) string { return testpg.New(t, "").DSN }},
}

// each runs f against every backend, the same suite for both.
func each(t *testing.T, f func(t *testing.T, url string, s *store.Store, c *clock)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			url := b.open(t)
			c := &clock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
			s, err := store.Open(context.Background(), url, store.Options{Now: c.now})
			require.NoError(t, err)
			t.Cleanup(func() { _ = s.Close() })
			f(t, url, s, c)
		})
	}
}

var emailReason = sqlpolicy.Reason{Code: sqlpolicy.ReasonLabelDenied, Verb: sqlpolicy.VerbSelect, Table: "public.customers",
	Column: "email", Label: "pii.email", Rule: "roles.analyst.deny_labels[pii.*]"}

var emailGrant = []sqlpolicy.Exception{{Verb: sqlpolicy.VerbSelect, Table: "public.customers", Columns: []string{"email"}, Labels: []string{"pii.email"}}}

func seen(agent, fp string, at time.Time, n int64) store.Seen {
	return store.Seen{Agent: agent, Role: "analyst", Fingerprint: fp, Statement: "SELECT email FROM customers WHERE id = $1",
		Rule: emailReason.Rule, Reasons: []sqlpolicy.Reason{emailReason}, Message: "denied", Hint: "remove email",
		Purpose: "churn report", Grantable: emailGrant, Count: n, At: at}
}

func TestMigrationsAndReopen(t *testing.T) {
	t.Parallel()
	each(t, func(t *testing.T, url string, s *store.Store, c *clock) {
		ctx := context.Background()
		require.NoError(t, s.Write(ctx, &store.Batch{Seen: []store.Seen{seen("bot", "fp1", c.now(), 1)}}))
		require.NoError(t, s.Close())
		// A restart (and a second replica opening at the same time)
		// migrates nothing twice and keeps the data.
		var wg sync.WaitGroup
		stores := make([]*store.Store, 3)
		errs := make([]error, 3)
		for i := range stores {
			wg.Go(func() { stores[i], errs[i] = store.Open(ctx, url, store.Options{Now: c.now}) })
		}
		wg.Wait()
		for i := range stores {
			require.NoError(t, errs[i])
			defer stores[i].Close()
		}
		r, err := stores[0].Request(ctx, store.RequestID("bot", "fp1"))
		require.NoError(t, err)
		assert.Equal(t, store.StatusPending, r.Status)
		assert.Equal(t, int64(1), r.Count)
	})
}

func TestRequestLifecycle(t *testing.T) {
	t.Parallel()
	each(t, func(t *testing.T, url string, s *store.Store, c *clock) {
		ctx := context.Background()
		id := store.RequestID("bot", "fp1")
		assert.Equal(t, id, store.RequestID("bot", "fp1"), "deterministic")
		assert.NotEqual(t, id, store.RequestID("bot2", "fp1"))
		assert.Regexp(t, `^apr_[a-z2-7]{26}$`, id)

		// Two batches of the same shape: one request, counts add up.
		require.NoError(t, s.Write(ctx, &store.Batch{Seen: []store.Seen{seen("bot", "fp1", c.now(), 3)}}))
		c.add(time.Second)
		require.NoError(t, s.Write(ctx, &store.Batch{Seen: []store.Seen{seen("bot", "fp1", c.now(), 2)}}))
		reqs, err := s.Requests(ctx, store.RequestFilter{})
		require.NoError(t, err)
		require.Len(t, reqs, 1)
		r := &reqs[0]
		assert.Equal(t, id, r.ID)
		assert.Equal(t, int64(5), r.Count)
		assert.Equal(t, store.StatusPending, r.Status)
		assert.Equal(t, "churn report", r.Purpose)
		assert.Equal(t, []sqlpolicy.Reason{emailReason}, r.Reasons)
		assert.Equal(t, emailGrant, r.Grantable)
		assert.Equal(t, c.now().Add(-time.Second).UnixMilli(), r.FirstSeen.UnixMilli())
		assert.Equal(t, c.now().UnixMilli(), r.LastSeen.UnixMilli())

		// Nothing grantable: indexed as blocked, not a request.
		ng := seen("bot", "fp-secret", c.now(), 1)
		ng.Grantable, ng.WhyNot = nil, "label secret is never granted"
		require.NoError(t, s.Write(ctx, &store.Batch{Seen: []store.Seen{ng}}))
		reqs, err = s.Requests(ctx, store.RequestFilter{})
		require.NoError(t, err)
		assert.Len(t, reqs, 1)
		b, err := s.Request(ctx, store.RequestID("bot", "fp-secret"))
		require.NoError(t, err)
		assert.Equal(t, store.StatusBlocked, b.Status)
		_, _, err = s.Approve(ctx, b.ID, store.Approval{Reviewer: "alice", Scope: store.ScopeAccess, Access: emailGrant, Duration: time.Hour})
		require.ErrorIs(t, err, store.ErrConflict)

		v0, err := s.Counter(ctx, "grants")
		require.NoError(t, err)
		g, req, err := s.Approve(ctx, id, store.Approval{Reviewer: "alice", Note: "quarterly churn", Scope: store.ScopeStatement,
			Access: append([]sqlpolicy.Exception(nil), emailGrant...), Duration: 15 * time.Minute, EndSessions: true})
		require.NoError(t, err)
		assert.Equal(t, store.StatusApproved, req.Status)
		assert.Regexp(t, `^grt_`, g.ID)
		assert.Equal(t, "fp1", g.Fingerprint)
		assert.Equal(t, "grant."+g.ID, g.Access[0].Rule)
		assert.Equal(t, c.now().Add(15*time.Minute).UnixMilli(), g.Expires.UnixMilli())
		v1, err := s.Counter(ctx, "grants")
		require.NoError(t, err)
		assert.Greater(t, v1, v0)

		_, _, err = s.Approve(ctx, id, store.Approval{Reviewer: "bob", Scope: store.ScopeAccess, Access: emailGrant, Duration: time.Hour})
		require.ErrorIs(t, err, store.ErrConflict, "already approved")
		_, err = s.Decline(ctx, id, "bob", "no")
		require.ErrorIs(t, err, store.ErrConflict)

		active, err := s.Grants(ctx, store.GrantFilter{ActiveAt: c.now()})
		require.NoError(t, err)
		require.Len(t, active, 1)
		got, err := s.Grant(ctx, g.ID)
		require.NoError(t, err)
		assert.Equal(t, g.Access, got.Access)
		assert.True(t, got.EndSessions)
		assert.Equal(t, "churn report", got.Purpose)

		// A denial from before the approval (written behind) does not
		// reopen it; one after does.
		require.NoError(t, s.Write(ctx, &store.Batch{Seen: []store.Seen{seen("bot", "fp1", c.now().Add(-time.Millisecond), 1)}}))
		r, err = s.Request(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, store.StatusApproved, r.Status)

		c.add(time.Minute)
		g2, err := s.Revoke(ctx, g.ID, "carol", "done")
		require.NoError(t, err)
		assert.Equal(t, "carol", g2.RevokedBy)
		_, err = s.Revoke(ctx, g.ID, "carol", "again")
		require.ErrorIs(t, err, store.ErrConflict)
		active, err = s.Grants(ctx, store.GrantFilter{ActiveAt: c.now()})
		require.NoError(t, err)
		assert.Empty(t, active)

		c.add(time.Second)
		require.NoError(t, s.Write(ctx, &store.Batch{Seen: []store.Seen{seen("bot", "fp1", c.now(), 1)}}))
		r, err = s.Request(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, store.StatusPending, r.Status, "denied again after the revocation: pending again")

		declined, err := s.Decline(ctx, id, "dave", "not for this task")
		require.NoError(t, err)
		assert.Equal(t, store.StatusDeclined, declined.Status)
		c.add(time.Second)
		require.NoError(t, s.Write(ctx, &store.Batch{Seen: []store.Seen{seen("bot", "fp1", c.now(), 4)}}))
		r, err = s.Request(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, store.StatusDeclined, r.Status, "declined stays declined")
		assert.Equal(t, "dave", r.DecidedBy)
		assert.Equal(t, int64(11), r.Count)

		_, err = s.Request(ctx, "apr_nonexistent")
		require.ErrorIs(t, err, store.ErrNotFound)
		_, err = s.Revoke(ctx, "grt_nonexistent", "x", "")
		require.ErrorIs(t, err, store.ErrNotFound)

		require.NoError(t, s.Write(ctx, &store.Batch{Allowed: []store.Allowed{{ID: id, Count: 7, At: c.now()}}}))
		r, err = s.Request(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, int64(7), r.Allowed)
	})
}

func TestExpiryClaimedOnce(t *testing.T) {
	t.Parallel()
	each(t, func(t *testing.T, url string, s *store.Store, c *clock) {
		ctx := context.Background()
		require.NoError(t, s.Write(ctx, &store.Batch{Seen: []store.Seen{seen("bot", "fp1", c.now(), 1)}}))
		g, _, err := s.Approve(ctx, store.RequestID("bot", "fp1"), store.Approval{Reviewer: "alice", Scope: store.ScopeAccess, Access: emailGrant, Duration: time.Minute})
		require.NoError(t, err)
		// The grant names its rules in its own copy: the caller's slice
		// (here shared by parallel tests) is left as it was.
		assert.Empty(t, emailGrant[0].Rule, "Approve wrote into the caller's access")
		assert.Equal(t, "grant."+g.ID, g.Access[0].Rule)
		ended, err := s.EndedUnrecorded(ctx, c.now())
		require.NoError(t, err)
		assert.Empty(t, ended)
		c.add(time.Minute)
		ended, err = s.EndedUnrecorded(ctx, c.now())
		require.NoError(t, err)
		require.Len(t, ended, 1)
		assert.Equal(t, g.ID, ended[0].ID)
		assert.False(t, ended[0].Active(c.now()))

		other, err := store.Open(ctx, url, store.Options{Now: c.now})
		require.NoError(t, err)
		defer other.Close()
		var wins int
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, st := range []*store.Store{s, other, s, other} {
			wg.Go(func() {
				ok, err := st.ClaimEnded(ctx, g.ID)
				assert.NoError(t, err)
				if ok {
					mu.Lock()
					wins++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		assert.Equal(t, 1, wins)
		ended, err = s.EndedUnrecorded(ctx, c.now())
		require.NoError(t, err)
		assert.Empty(t, ended)
	})
}

func TestFeedAgentsSessions(t *testing.T) {
	t.Parallel()
	each(t, func(t *testing.T, url string, s *store.Store, c *clock) {
		ctx := context.Background()
		t0 := c.now()
		other := seen("ops-bot", "fp2", t0, 1)
		other.Role, other.Statement = "ops", "SELECT * FROM secrets"
		other.Reasons = []sqlpolicy.Reason{{Code: sqlpolicy.ReasonLabelDenied, Table: "public.secrets", Label: "secret", Rule: "roles.ops.deny_labels[secret]"}}
		other.Rule, other.Grantable = "roles.ops.deny_labels[secret]", nil
		den := func(agent, role, fp, rule string, at time.Time) store.Denial {
			return store.Denial{At: at, RequestID: store.RequestID(agent, fp), Agent: agent, Role: role, Fingerprint: fp, Rule: rule,
				Session: "s-" + agent, Client: "127.0.0.1:5000", Protocol: "postgres", Database: "shop", Replica: "r1", ErrorCode: "42501"}
		}
		v0, err := s.Counter(ctx, "feed")
		require.NoError(t, err)
		require.NoError(t, s.Write(ctx, &store.Batch{
			Seen: []store.Seen{seen("bot", "fp1", t0, 3), other},
			Denials: []store.Denial{
				den("bot", "analyst", "fp1", emailReason.Rule, t0),
				den("bot", "analyst", "fp1", emailReason.Rule, t0.Add(time.Second)),
				den("bot", "analyst", "fp1", emailReason.Rule, t0.Add(2*time.Second)),
				den("ops-bot", "ops", "fp2", other.Rule, t0.Add(3*time.Second)),
			},
			Replica: &store.Replica{ID: "r1", Addr: "127.0.0.1:6432", Started: t0, Heartbeat: t0},
			Opened: []store.Session{{ID: "s-bot", Replica: "r1", Agent: "bot", Role: "analyst", Client: "127.0.0.1:5000", Started: t0},
				{ID: "s-gone", Replica: "r1", Agent: "bot", Started: t0}},
			Agents: []store.AgentSeen{{Name: "bot", Role: "analyst", Purpose: "churn report", Client: "127.0.0.1:5000", At: t0.Add(2 * time.Second)},
				{Name: "ops-bot", Role: "ops", At: t0.Add(3 * time.Second)}},
		}))
		require.NoError(t, s.Write(ctx, &store.Batch{Closed: []string{"s-gone"}}))
		v1, err := s.Counter(ctx, "feed")
		require.NoError(t, err)
		assert.Greater(t, v1, v0)

		feed, err := s.Feed(ctx, store.FeedFilter{})
		require.NoError(t, err)
		require.Len(t, feed, 2)
		assert.Equal(t, "fp2", feed[0].Fingerprint, "most recent first")
		assert.Equal(t, int64(3), feed[1].Count)
		assert.Equal(t, []string{"bot"}, feed[1].Agents)
		assert.Equal(t, "SELECT email FROM customers WHERE id = $1", feed[1].Statement)
		require.Len(t, feed[1].Requests, 1)
		assert.Equal(t, store.StatusPending, feed[1].Requests[0].Status)

		for _, tc := range []struct {
			name string
			f    store.FeedFilter
			want []string
		}{
			{"agent", store.FeedFilter{Agent: "ops-bot"}, []string{"fp2"}},
			{"role", store.FeedFilter{Role: "analyst"}, []string{"fp1"}},
			{"rule", store.FeedFilter{Rule: other.Rule}, []string{"fp2"}},
			{"label", store.FeedFilter{Label: "pii.email"}, []string{"fp1"}},
			{"table", store.FeedFilter{Table: "public.secrets"}, []string{"fp2"}},
			{"column", store.FeedFilter{Column: "email"}, []string{"fp1"}},
			{"since", store.FeedFilter{Since: t0.Add(2500 * time.Millisecond)}, []string{"fp2"}},
			{"until", store.FeedFilter{Until: t0.Add(time.Second)}, []string{"fp1"}},
			{"nothing", store.FeedFilter{Label: "pii.ssn"}, nil},
			{"injection is a value", store.FeedFilter{Agent: "x' OR '1'='1"}, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				feed, err := s.Feed(ctx, tc.f)
				require.NoError(t, err)
				var got []string
				for _, g := range feed {
					got = append(got, g.Fingerprint)
				}
				assert.Equal(t, tc.want, got)
			})
		}
		f, err := s.Feed(ctx, store.FeedFilter{Until: t0.Add(time.Second)})
		require.NoError(t, err)
		assert.Equal(t, int64(1), f[0].Count, "counts are of the window")

		ds, err := s.Denials(ctx, store.DenialFilter{Fingerprint: "fp1"})
		require.NoError(t, err)
		require.Len(t, ds, 3)
		assert.Equal(t, "s-bot", ds[0].Session)
		assert.Equal(t, "127.0.0.1:5000", ds[0].Client)
		assert.True(t, ds[0].At.After(ds[1].At))

		agents, err := s.Agents(ctx, t0.Add(-time.Minute), t0.Add(-time.Hour))
		require.NoError(t, err)
		require.Len(t, agents, 2)
		assert.Equal(t, "ops-bot", agents[0].Name)
		bot := agents[1]
		assert.Equal(t, "analyst", bot.Role)
		assert.Equal(t, "churn report", bot.Purpose)
		assert.Equal(t, int64(3), bot.Denials)
		require.Len(t, bot.Sessions, 1, "closed sessions are gone")
		assert.Equal(t, "s-bot", bot.Sessions[0].ID)

		// A replica without a heartbeat is not live: its sessions are not
		// counted, and Prune forgets them.
		agents, err = s.Agents(ctx, t0.Add(time.Minute), t0)
		require.NoError(t, err)
		assert.Empty(t, agents[1].Sessions)
		c.add(48 * time.Hour)
		require.NoError(t, s.Prune(ctx, store.Retention{Denials: 24 * time.Hour, History: 90 * 24 * time.Hour, Replicas: time.Hour}))
		ds, err = s.Denials(ctx, store.DenialFilter{})
		require.NoError(t, err)
		assert.Empty(t, ds)
		_, err = s.Request(ctx, store.RequestID("ops-bot", "fp2"))
		require.ErrorIs(t, err, store.ErrNotFound, "a blocked shape not seen within retention is forgotten")
		_, err = s.Request(ctx, store.RequestID("bot", "fp1"))
		require.NoError(t, err, "a pending request is kept")
		reps, err := s.Replicas(ctx, time.Time{})
		require.NoError(t, err)
		assert.Empty(t, reps)
	})
}

func TestLogins(t *testing.T) {
	t.Parallel()
	each(t, func(t *testing.T, url string, s *store.Store, c *clock) {
		ctx := context.Background()
		require.NoError(t, s.CreateLogin(ctx, store.Login{IDHash: "h1", User: "alice", Role: "approver", Method: "password",
			SecretTag: "t1", Created: c.now(), Expires: c.now().Add(time.Hour)}))
		l, err := s.Login(ctx, "h1")
		require.NoError(t, err)
		assert.Equal(t, "alice", l.User)
		assert.Equal(t, "t1", l.SecretTag)
		c.add(2 * time.Hour)
		_, err = s.Login(ctx, "h1")
		require.ErrorIs(t, err, store.ErrNotFound, "expired")
		require.NoError(t, s.CreateLogin(ctx, store.Login{IDHash: "h2", User: "alice", Role: "approver", Method: "password",
			Created: c.now(), Expires: c.now().Add(time.Hour)}))
		require.NoError(t, s.DeleteLoginsOf(ctx, "alice"))
		_, err = s.Login(ctx, "h2")
		require.ErrorIs(t, err, store.ErrNotFound)
	})
}

// A new sqlite store, and its write-ahead log, are the owner's only.
func TestSQLiteFileMode(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keyhole.db")
	s, err := store.Open(context.Background(), "sqlite:"+path, store.Options{})
	require.NoError(t, err)
	defer s.Close()
	for _, p := range []string{path, path + "-wal"} {
		fi, err := os.Stat(p)
		require.NoError(t, err, p)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), p)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	_, err := store.Open(context.Background(), "mysql://x/y", store.Options{})
	require.Error(t, err)
	k, src, err := store.ParseURL("sqlite:///var/lib/keyhole.db")
	require.NoError(t, err)
	assert.Equal(t, store.SQLite, k)
	assert.Equal(t, "/var/lib/keyhole.db", src)
	k, _, err = store.ParseURL("postgres://keyhole@db/keyhole")
	require.NoError(t, err)
	assert.Equal(t, store.Postgres, k)
	_, err = store.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "missing-dir", "x.db"), store.Options{})
	require.Error(t, err)
	assert.False(t, errors.Is(err, store.ErrNotFound))
}

// Replicas starting together on an empty database migrate it once.
func TestMigrateFreshConcurrently(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			url := b.open(t)
			const n = 4
			stores := make([]*store.Store, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					stores[i], errs[i] = store.Open(context.Background(), url, store.Options{})
				})
			}
			close(start)
			wg.Wait()
			for i := range n {
				require.NoError(t, errs[i], "replica %d", i)
				defer stores[i].Close()
			}
			v, err := stores[0].Counter(context.Background(), "grants")
			require.NoError(t, err)
			assert.Equal(t, int64(1), v, "the counters were created once")
		})
	}
}

// An agent's blocked shapes are bounded: one more replaces its least
// recently seen; pending requests are bounded too, the extra kept as
// blocked saying why; other agents are unaffected.
func TestShapesBoundedPerAgent(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			c := &clock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
			s, err := store.Open(ctx, b.open(t), store.Options{Now: c.now, MaxOpenPerAgent: 2, MaxShapesPerAgent: 3})
			require.NoError(t, err)
			defer s.Close()
			blockedSeen := func(agent, fp string) store.Seen {
				v := seen(agent, fp, c.now(), 1)
				v.Grantable, v.WhyNot = nil, "never"
				return v
			}
			for i := range 6 {
				c.add(time.Second)
				require.NoError(t, s.Write(ctx, &store.Batch{Seen: []store.Seen{blockedSeen("flood", fmt.Sprintf("b%d", i))}}))
			}
			require.NoError(t, s.Write(ctx, &store.Batch{Seen: []store.Seen{blockedSeen("calm", "b0")}}))
			got, err := s.Requests(ctx, store.RequestFilter{Agent: "flood", Statuses: []store.Status{store.StatusBlocked}})
			require.NoError(t, err)
			var fps []string
			for _, r := range got {
				fps = append(fps, r.Fingerprint)
			}
			assert.Equal(t, []string{"b5", "b4", "b3"}, fps, "the most recent kept")
			_, err = s.Request(ctx, store.RequestID("calm", "b0"))
			require.NoError(t, err)

			for i := range 4 {
				c.add(time.Second)
				require.NoError(t, s.Write(ctx, &store.Batch{Seen: []store.Seen{seen("flood", fmt.Sprintf("p%d", i), c.now(), 1)}}))
			}
			pending, err := s.Requests(ctx, store.RequestFilter{Agent: "flood", Statuses: []store.Status{store.StatusPending}})
			require.NoError(t, err)
			assert.Len(t, pending, 2)
			r, err := s.Request(ctx, store.RequestID("flood", "p3"))
			require.NoError(t, err)
			assert.Equal(t, store.StatusBlocked, r.Status)
			assert.Contains(t, r.WhyNot, "pending")
			assert.Empty(t, r.Grantable)
			// An open request keeps counting at the bound.
			require.NoError(t, s.Write(ctx, &store.Batch{Seen: []store.Seen{seen("flood", "p0", c.now(), 1)}}))
			r, err = s.Request(ctx, store.RequestID("flood", "p0"))
			require.NoError(t, err)
			assert.Equal(t, store.StatusPending, r.Status)
			assert.Equal(t, int64(2), r.Count)

			// Retention: a pending request not seen within the history
			// window goes.
			c.add(48 * time.Hour)
			require.NoError(t, s.Prune(ctx, store.Retention{History: 24 * time.Hour}))
			pending, err = s.Requests(ctx, store.RequestFilter{Agent: "flood", Statuses: []store.Status{store.StatusPending}})
			require.NoError(t, err)
			assert.Empty(t, pending)
		})
	}
}

// A huge statement makes no huge row.
func TestHugeStatementCut(t *testing.T) {
	t.Parallel()
	each(t, func(t *testing.T, url string, s *store.Store, c *clock) {
		ctx := context.Background()
		v := seen("bot", "huge", c.now(), 1)
		v.Statement = strings.Repeat("x", 4<<20)
		v.Hint = strings.Repeat("h", 1<<20)
		for i := range 500 {
			v.Reasons = append(v.Reasons, sqlpolicy.Reason{Code: sqlpolicy.ReasonColumnNotAllowed, Table: "t", Column: fmt.Sprint(i)})
		}
		require.NoError(t, s.Write(ctx, &store.Batch{Seen: []store.Seen{v}}))
		r, err := s.Request(ctx, store.RequestID("bot", "huge"))
		require.NoError(t, err)
		assert.Less(t, len(r.Statement), store.MaxStatementBytes+100)
		assert.Less(t, len(r.Hint), store.MaxMessageBytes+100)
		assert.Len(t, r.Reasons, store.MaxReasons)
	})
}

// Every filter is a bound value on both backends: SQL in a filter matches
// nothing and breaks nothing.
func TestFiltersAreValues(t *testing.T) {
	t.Parallel()
	each(t, func(t *testing.T, url string, s *store.Store, c *clock) {
		ctx := context.Background()
		require.NoError(t, s.Write(ctx, &store.Batch{Seen: []store.Seen{seen("bot", "fp1", c.now(), 1)},
			Denials: []store.Denial{{At: c.now(), RequestID: store.RequestID("bot", "fp1"), Agent: "bot", Fingerprint: "fp1"}}}))
		for _, inj := range []string{"x' OR '1'='1", "x'; DROP TABLE blocked; --", `x" OR "1"="1`, "%", "_", "x') OR 1=1 --", "$1", "?"} {
			feed, err := s.Feed(ctx, store.FeedFilter{Agent: inj})
			require.NoError(t, err)
			assert.Empty(t, feed, inj)
			for _, f := range []store.FeedFilter{{Role: inj}, {Rule: inj}, {Label: inj}, {Table: inj}, {Column: inj}} {
				feed, err := s.Feed(ctx, f)
				require.NoError(t, err)
				assert.Empty(t, feed, "%q %+v", inj, f)
			}
			reqs, err := s.Requests(ctx, store.RequestFilter{Agent: inj})
			require.NoError(t, err)
			assert.Empty(t, reqs)
			reqs, err = s.Requests(ctx, store.RequestFilter{Fingerprint: inj})
			require.NoError(t, err)
			assert.Empty(t, reqs)
			gs, err := s.Grants(ctx, store.GrantFilter{Agent: inj, RequestID: inj})
			require.NoError(t, err)
			assert.Empty(t, gs)
			ds, err := s.Denials(ctx, store.DenialFilter{Agent: inj, Fingerprint: inj, RequestID: inj})
			require.NoError(t, err)
			assert.Empty(t, ds)
			_, err = s.Request(ctx, inj)
			require.ErrorIs(t, err, store.ErrNotFound)
		}
		reqs, err := s.Requests(ctx, store.RequestFilter{})
		require.NoError(t, err)
		assert.Len(t, reqs, 1, "still there")
	})
}
