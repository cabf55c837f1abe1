package gateway_test

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/approval"
	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/internal/fixture"
	"github.com/keyholedb/keyhole/internal/testpg"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/store"
)

// approvalPolicy is the design's policy with a second analyst and
// never-grantable labels.
const approvalPolicy = fixture.Policy + "  other-bot: {role: analyst}\nnever_grant: [secret, pii.ssn]\n"

var requestRE = regexp.MustCompile(`apr_[a-z2-7]{26}`)

// pgErr runs sql and returns its error as a *pgconn.PgError (nil when it
// ran).
func pgErr(t *testing.T, c *pgx.Conn, sql string) *pgconn.PgError {
	t.Helper()
	rows, err := c.Query(context.Background(), sql)
	if err == nil {
		for rows.Next() {
		}
		rows.Close()
		err = rows.Err()
	}
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	require.True(t, errors.As(err, &pe), "%v", err)
	return pe
}

var alice = approval.Reviewer{Name: "alice", Via: "test"}

func TestApprovalsThroughTheProxy(t *testing.T) {
	t.Parallel()
	for name, storeURL := range map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return "" },
		"postgres": func(t *testing.T) string { return testpg.New(t, "").DSN },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t, fixture.ShopSQL(t))
			url := storeURL(t)
			e := start(t, map[string]string{"": up.url()}, approvalPolicy, func(c *config.Config) { c.Store.URL = url })
			svc := e.g.Approvals()
			require.NotNil(t, svc)
			ctx := context.Background()
			c := e.connect(agent, up.db.Name)
			other := e.connect("other-bot", up.db.Name)

			// A denial opens a request and the agent's error names it.
			pe := pgErr(t, c, "SELECT email FROM customers WHERE id = 1")
			require.NotNil(t, pe)
			assert.Equal(t, "42501", pe.Code)
			id := requestRE.FindString(pe.Message)
			require.NotEmpty(t, id, pe.Message)
			assert.Contains(t, pe.Hint, "request "+id+"; a reviewer can approve it")
			assert.Contains(t, pe.Detail, id)
			// Another literal is the same shape: the same request, counted.
			pe = pgErr(t, c, "SELECT email FROM customers WHERE id = 2")
			require.NotNil(t, pe)
			assert.Equal(t, id, requestRE.FindString(pe.Message))
			require.NoError(t, svc.Flush(ctx))
			req, err := svc.Store().Request(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, store.StatusPending, req.Status)
			assert.Equal(t, int64(2), req.Count)
			assert.Equal(t, agent, req.Agent)
			assert.Equal(t, "analyst", req.Role)
			assert.Equal(t, []sqlpolicy.Exception{{Verb: sqlpolicy.VerbSelect, Table: "public.customers",
				Columns: []string{"email"}, Labels: []string{"pii.email"}}}, req.Grantable)
			ds, err := svc.Store().Denials(ctx, store.DenialFilter{RequestID: id})
			require.NoError(t, err)
			require.Len(t, ds, 2, "the audit events are indexed with their session")
			assert.NotEmpty(t, ds[0].Session)
			assert.NotEmpty(t, ds[0].Client)

			// Never-grantable: no request is named.
			pe = pgErr(t, c, "SELECT ssn FROM customers WHERE id = 1")
			require.NotNil(t, pe)
			assert.Equal(t, "42501", pe.Code)
			assert.NotRegexp(t, requestRE, pe.Message+pe.Hint+pe.Detail)

			_, err = svc.Approve(ctx, alice, id, approval.Approve{For: 2 * svc.MaxDuration(), Note: "x"})
			require.ErrorIs(t, err, approval.ErrInvalid, "longer than the maximum")
			_, err = svc.Approve(ctx, alice, id, approval.Approve{For: time.Hour})
			require.ErrorIs(t, err, approval.ErrInvalid, "a note is required")
			_, err = svc.Approve(ctx, alice, id, approval.Approve{For: time.Hour, Note: "x", Access: []sqlpolicy.Exception{
				{Verb: sqlpolicy.VerbSelect, Table: "public.customers", Columns: []string{"email", "ssn"}, Labels: []string{"pii.email", "pii.ssn"}}}})
			require.ErrorIs(t, err, approval.ErrInvalid, "more than was requested")

			g, err := svc.Approve(ctx, alice, id, approval.Approve{For: time.Hour, Note: "churn analysis"})
			require.NoError(t, err)
			assert.Equal(t, store.ScopeStatement, g.Scope)
			assert.Equal(t, "ada@example.com", query(c, "SELECT email FROM customers WHERE id = 1"))
			e.waitLog("statement allowed", "grant."+g.ID)
			assert.Equal(t, "42501", query(other, "SELECT email FROM customers WHERE id = 1"), "the grant is the agent's, and the cache kept the policy's denial for others")
			assert.Equal(t, "42501", query(c, "SELECT email FROM customers WHERE id = 1 AND name <> 'x'"), "another statement shape")
			assert.Equal(t, "42501", query(c, "SELECT ssn FROM customers WHERE id = 1"), "never granted")

			_, err = svc.Revoke(ctx, alice, g.ID, "done")
			require.NoError(t, err)
			assert.Equal(t, "42501", query(c, "SELECT email FROM customers WHERE id = 1"), "a revocation applies to the next statement")

			// Access scope: the column in any statement, until it expires.
			pe = pgErr(t, c, "SELECT id, email FROM customers ORDER BY id LIMIT 1")
			require.NotNil(t, pe)
			id2 := requestRE.FindString(pe.Message)
			require.NotEmpty(t, id2)
			require.NoError(t, svc.Flush(ctx))
			g2, err := svc.Approve(ctx, alice, id2, approval.Approve{For: 1500 * time.Millisecond, Scope: store.ScopeAccess, Note: "export"})
			require.NoError(t, err)
			assert.Equal(t, "ada@example.com", query(c, "SELECT email FROM customers WHERE id = 1"))
			assert.Equal(t, "42501", query(c, "SELECT email, phone FROM customers WHERE id = 1"), "only what was granted")
			within(t, 10*time.Second, "the grant expires", func() bool {
				return query(c, "SELECT email FROM customers WHERE id = 1") == "42501"
			})
			assert.False(t, time.Now().Before(g2.Expires), "refused only once it expired")

			// Declined: the agent hears so; the request is not reopened.
			r3 := pgErr(t, c, "SELECT id, email FROM customers")
			id3 := requestRE.FindString(r3.Message)
			require.NoError(t, svc.Flush(ctx))
			_, err = svc.Decline(ctx, alice, id3, "not for this task")
			require.NoError(t, err)
			pe = pgErr(t, c, "SELECT id, email FROM customers")
			require.NotNil(t, pe)
			assert.Contains(t, pe.Message, id3+" declined")

			// Every reviewer action is in the audit log.
			require.NoError(t, svc.Flush(ctx))
			evs, err := audit.ReadFile(e.audit, audit.Filter{})
			require.NoError(t, err)
			kinds := map[audit.Kind]int{}
			var approvedSeen, blockedSeen int
			for _, ev := range evs {
				kinds[ev.Kind]++
				if ev.Kind == audit.KindGrantApproved && ev.Grant == g.ID {
					approvedSeen++
					assert.Equal(t, "alice", ev.Reviewer)
					assert.Equal(t, "churn analysis", ev.Note)
					assert.Equal(t, id, ev.Request)
					assert.Equal(t, g.Expires.UnixMilli(), ev.Expires.UnixMilli())
				}
				if ev.Kind == audit.KindStatement && ev.Decision == sqlpolicy.Deny && ev.Fingerprint == req.Fingerprint && ev.Agent == agent {
					blockedSeen++
					assert.Equal(t, id, ev.Request, "a blocked statement's event names its request")
				}
			}
			// The checks above ran: each kind of event was there.
			assert.Equal(t, 1, approvedSeen, "the first grant's approval event")
			assert.NotZero(t, blockedSeen, "the blocked statement's events")
			assert.Equal(t, 2, kinds[audit.KindGrantApproved])
			assert.Equal(t, 1, kinds[audit.KindGrantRevoked])
			assert.Equal(t, 1, kinds[audit.KindRequestDeclined])
		})
	}
}

// request denies sql for c and returns the request its error names ("" for
// none).
func request(t *testing.T, c *pgx.Conn, sql string) string {
	t.Helper()
	pe := pgErr(t, c, sql)
	require.NotNil(t, pe, "%s ran", sql)
	require.Equal(t, "42501", pe.Code, "%s: %s", sql, pe.Message)
	return requestRE.FindString(pe.Message)
}

// A grant adds exactly what was approved, for the statement it was
// approved for, to the agent in the role it had: an agent cannot widen a
// grant by choosing its statements (colliding fingerprints, other
// literals of a literal-sensitive statement), by changing role, or by
// reading a never-grantable column through a view.
func TestGrantScopeEscalation(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, fixture.ShopSQL(t)+`
CREATE SEQUENCE seq_a; CREATE SEQUENCE seq_b;
CREATE VIEW cust_ssn AS SELECT id, ssn FROM customers;
CREATE VIEW cust_contact AS SELECT id, upper(email) AS mail FROM customers;`)
	pol := fixture.PolicyRoles + `  auditor:
    upstream: shop
    allow:
      - select: [public.orders, public.customers]
    deny_labels: [pii.*, secret]
` + fixture.PolicyAgents + "  other-bot: {role: analyst}\nnever_grant: [secret, pii.ssn]\n"
	e := start(t, map[string]string{"": up.url()}, pol)
	svc := e.g.Approvals()
	ctx := context.Background()
	c := e.connect(agent, up.db.Name)
	approve := func(id string, scope store.Scope) *store.Grant {
		t.Helper()
		require.NotEmpty(t, id)
		require.NoError(t, svc.Flush(ctx))
		g, err := svc.Approve(ctx, alice, id, approval.Approve{For: time.Hour, Scope: scope, Note: "test"})
		require.NoError(t, err)
		return g
	}

	t.Run("shape key is a cryptographic hash", func(t *testing.T) {
		id := request(t, c, "SELECT email FROM customers WHERE id = 7")
		require.NoError(t, svc.Flush(ctx))
		r, err := svc.Store().Request(ctx, id)
		require.NoError(t, err)
		assert.Regexp(t, `^[0-9a-f]{32}$`, r.Fingerprint, "128 bits, not the engine's 64-bit FNV")
		assert.Equal(t, approval.ShapeKey(r.Statement, "", false), r.Fingerprint)
	})

	t.Run("literal-sensitive statements are keyed by their exact text", func(t *testing.T) {
		a := request(t, c, "SELECT nextval('seq_a')")
		b := request(t, c, "SELECT nextval('seq_b')")
		require.NotEmpty(t, a)
		require.NotEmpty(t, b)
		assert.NotEqual(t, a, b, "another literal is another request: the agent cannot change what a reviewer is looking at")
		require.NoError(t, svc.Flush(ctx))
		ra, err := svc.Store().Request(ctx, a)
		require.NoError(t, err)
		assert.Equal(t, "public.seq_a", ra.Grantable[0].Table, "the request still asks for seq_a")
		approve(a, store.ScopeStatement)
		assert.Equal(t, "1", query(c, "SELECT nextval('seq_a')"))
		assert.Equal(t, "42501", query(c, "SELECT nextval('seq_b')"))
		assert.Equal(t, "42501", query(c, "SELECT nextval('public.seq_a')"), "the same relation by another literal: not the approved statement")
	})

	t.Run("never_grant through a view or a derived column", func(t *testing.T) {
		for _, sql := range []string{"SELECT ssn FROM cust_ssn", "SELECT * FROM cust_ssn", "SELECT upper(ssn) FROM customers", "SELECT id FROM customers WHERE ssn LIKE '1%'"} {
			id := request(t, c, sql)
			if id == "" {
				continue // blocked outright: nothing to approve
			}
			require.NoError(t, svc.Flush(ctx))
			r, err := svc.Store().Request(ctx, id)
			require.NoError(t, err)
			if r.Status != store.StatusPending {
				continue
			}
			t.Logf("%s: approvable as %+v", sql, r.Grantable)
			approve(id, store.ScopeAccess)
			assert.Equal(t, "42501", query(c, sql), "%s: pii.ssn is never granted, whatever was approved", sql)
		}
	})

	t.Run("a grant is the role's", func(t *testing.T) {
		id := request(t, c, "SELECT email FROM customers WHERE id = 1")
		approve(id, store.ScopeAccess)
		require.Equal(t, "ada@example.com", query(c, "SELECT email FROM customers WHERE id = 1"))
		for _, sql := range []string{"UPDATE customers SET email = 'x' WHERE id = 1 RETURNING email", "DELETE FROM customers WHERE id = 1 RETURNING email",
			"SELECT phone FROM customers WHERE id = 1", "SELECT value FROM secrets WHERE id = 1"} {
			assert.Equal(t, "42501", query(c, sql), "%s: a select grant on customers.email is that and nothing else", sql)
		}
		// never_grant is consulted at each decision, not only when the
		// grant was made.
		e.writePolicy(strings.Replace(pol, "never_grant: [secret, pii.ssn]", "never_grant: [secret, pii.ssn, pii.email]", 1))
		require.NoError(t, e.g.Reload())
		assert.Equal(t, "42501", query(c, "SELECT email FROM customers WHERE id = 1"), "a label made never_grant after the approval")
		e.writePolicy(pol)
		require.NoError(t, e.g.Reload())
		require.Equal(t, "ada@example.com", query(c, "SELECT email FROM customers WHERE id = 1"))
		moved := strings.Replace(pol, "sales-summarizer: {role: analyst}", "sales-summarizer: {role: auditor}", 1)
		require.NotEqual(t, pol, moved)
		e.writePolicy(moved)
		require.NoError(t, e.g.Reload())
		// The role change ends the agent's sessions; a new one has the
		// auditor's role, and the analyst's grant does not follow it.
		c2 := e.connect(agent, up.db.Name)
		assert.Equal(t, "42501", query(c2, "SELECT email FROM customers WHERE id = 1"), "approved for the analyst role, not the auditor")
	})
}
