package gateway

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/keyholedb/keyhole/approval"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/store"
)

// openApprovals opens the store and starts the approvals service: the
// audit recorder the front ends use becomes one that also indexes what
// the console shows, and reviewer events go to the audit sinks
// themselves.
func (g *Gateway) openApprovals(ctx context.Context) error {
	cfg := g.cfg
	st, err := store.Open(ctx, cfg.Store.URL, store.Options{Password: cfg.Store.Password.Reveal()})
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	g.addCloser(func() error { return st.Close() })
	replica := store.Replica{ID: cfg.Cluster.ReplicaName(), Addr: cfg.Listen.Postgres}
	svc, err := approval.New(ctx, approval.Options{
		Store:        st,
		Audit:        g.rec,
		Logger:       g.log,
		Replica:      replica,
		MaxDuration:  cfg.Approvals.MaxDuration,
		EndSessions:  cfg.Approvals.EndSessions,
		Disabled:     cfg.Approvals.Disabled,
		SyncInterval: cfg.Store.SyncInterval,
		Retention: store.Retention{Denials: cfg.Store.Retention.Denials, History: cfg.Store.Retention.History,
			Replicas: 24 * time.Hour},
		NeverGrantable: func(agent, label string) bool {
			pol := g.gen.Load().policy
			return pol.NeverGrantable(pol.Role(agent), label)
		},
		EndAgent: func(agent string) {
			for _, f := range g.fronts {
				if e, ok := f.fe.(AgentEnder); ok {
					e.EndAgent(agent)
				}
			}
		},
	})
	if err != nil {
		return err
	}
	g.addCloser(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return svc.Close(ctx)
	})
	g.approvals = svc
	g.rec = svc.Recorder(g.rec)
	g.log.Info("store", "kind", st.Kind(), "replica", svc.Replica(), "approvals", !cfg.Approvals.Disabled)
	return nil
}

// decider is the sqlpolicy.Decider of the front end of dialect.
func (g *Gateway) decider(dialect string) sqlpolicy.Decider {
	r := &router{dialect: dialect, gen: &g.gen, schemaChanged: g.schemaChanged}
	if g.approvals == nil {
		return r
	}
	return &approvalDecider{router: r, svc: g.approvals}
}

// approvalDecider is the router with just-in-time access: a statement the
// policy denies is decided again with the agent's grants in force; one
// still denied opens or counts the agent's request for its shape, and the
// agent's error names the request. Statements the policy allows never
// reach the approvals service.
type approvalDecider struct {
	*router
	svc *approval.Service
}

// (It overrides the router's CheckEpoch, which would skip the approvals.)
var _ sqlpolicy.EpochDecider = (*approvalDecider)(nil)

// Check implements sqlpolicy.Decider. Decisions from the engine are shared
// (decision cache): the ones changed here are copies. Decisions made with
// grants are never cached: a grant's end then takes effect at the next
// statement.
func (d *approvalDecider) Check(p sqlpolicy.Principal, sql string, s sqlpolicy.Session) (*sqlpolicy.Decision, *sqlpolicy.Access) {
	dec, acc, _ := d.CheckEpoch(p, sql, s)
	return dec, acc
}

// CheckEpoch implements sqlpolicy.EpochDecider: an allow by the policy
// itself has the router's epoch (approvals never see it); an allow by a
// grant has none, since the grant can end (expire, be revoked) at any
// time.
func (d *approvalDecider) CheckEpoch(p sqlpolicy.Principal, sql string, s sqlpolicy.Session) (*sqlpolicy.Decision, *sqlpolicy.Access, uint64) {
	g := d.gen.Load()
	dec, acc, e := d.check(g, p, sql, s)
	if dec == nil || dec.Allowed() || e == nil {
		return dec, acc, epochOf(g, dec, e)
	}
	dec, acc = d.withApprovals(g, e, p, sql, s, dec, acc)
	return dec, acc, 0
}

// withApprovals decides again, with the agent's grants, a text the policy
// denied, and opens or counts the agent's request for what stays denied.
func (d *approvalDecider) withApprovals(g *generation, e *sqlpolicy.Engine, p sqlpolicy.Principal, sql string, s sqlpolicy.Session,
	dec *sqlpolicy.Decision, acc *sqlpolicy.Access) (*sqlpolicy.Decision, *sqlpolicy.Access) {
	role := g.policy.Role(p.Agent)
	if role == nil {
		return dec, acc
	}
	text := dec.Redacted
	if text == "" {
		text, _ = e.Redact(sql)
	}
	// Requests and statement-scope grants are keyed by a cryptographic
	// hash of the shape (approval.ShapeKey), not the engine's FNV
	// fingerprint, which an agent could make collide; and by the exact
	// text when the analysis depended on a literal.
	shape := approval.ShapeKey(text, sql, false)
	fp, exactOnly := shape, ""
	if acc != nil && acc.LiteralSensitive() {
		fp, exactOnly = approval.ShapeKey(text, sql, true), shape
	}
	now := time.Now()
	if ex, from := d.svc.Exceptions(p.Agent, role.Name, fp, now); len(ex) > 0 {
		nd := e.Policy().DecideWith(p, acc, e.Catalog(), ex)
		nd.Redacted, nd.Fingerprint = text, fp
		if nd.Allowed() {
			if s != nil {
				s.Note(acc)
			}
			d.svc.Used(p.Agent, fp, from, now)
			return nd, acc
		}
		// What the grants do not cover is what the request now asks for.
		dec = nd
	}
	o := d.svc.Denied(approval.Denial{Agent: p.Agent, Role: role.Name, Fingerprint: fp, Shape: exactOnly, Statement: text,
		Purpose: p.Purpose, Decision: dec, At: now})
	id, status := o.ID, o.Status
	fp = o.Fingerprint
	out := *dec
	out.Redacted, out.Fingerprint = text, fp
	switch status {
	case store.StatusPending:
		out.Message += " (access request " + id + ")"
		out.Detail = strings.TrimSpace(out.Detail + " Access request " + id + " is pending review.")
		out.Hint = strings.TrimSpace(out.Hint + " keyhole opened request " + id + "; a reviewer can approve it, then retry the statement.")
	case store.StatusDeclined:
		out.Message += " (access request " + id + " declined)"
		out.Detail = strings.TrimSpace(out.Detail + " Access request " + id + " was declined by a reviewer.")
	}
	return &out, acc
}

// Approvals is the gateway's approvals service (the admin API and tests
// use it).
func (g *Gateway) Approvals() *approval.Service { return g.approvals }
