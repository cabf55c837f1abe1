package approval

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/store"
)

// Reviewer is who acts.
type Reviewer struct {
	Name string
	// Via is how the reviewer signed in ("password", "proxy", "token").
	Via string
}

// Approve is a reviewer's approval of a request.
type Approve struct {
	// For is how long the grant lasts, at most Options.MaxDuration.
	For time.Duration
	// Scope: store.ScopeStatement (this statement shape only, the
	// default) or store.ScopeAccess (the access in any statement).
	Scope store.Scope
	// Access is what is granted, a subset of the request's Grantable;
	// empty means all of it.
	Access []sqlpolicy.Exception
	// Note says why; required.
	Note string
	// EndSessions overrides the configured default.
	EndSessions *bool
}

// Approve grants request id as a timed grant. The grant takes effect on
// this replica before Approve returns.
func (s *Service) Approve(ctx context.Context, who Reviewer, id string, a Approve) (*store.Grant, error) {
	a.Note = strings.TrimSpace(a.Note)
	switch {
	case s.opts.Disabled:
		return nil, fmt.Errorf("%w: just-in-time approvals are disabled (approvals.disabled)", ErrInvalid)
	case a.For <= 0:
		return nil, fmt.Errorf("%w: a grant needs a positive duration", ErrInvalid)
	case a.For > s.opts.MaxDuration:
		return nil, fmt.Errorf("%w: %s is longer than the maximum of %s (approvals.max_duration)", ErrInvalid, a.For, s.opts.MaxDuration)
	case a.Note == "":
		return nil, fmt.Errorf("%w: say why (a note is required)", ErrInvalid)
	}
	if a.Scope == "" {
		a.Scope = store.ScopeStatement
	}
	if a.Scope != store.ScopeStatement && a.Scope != store.ScopeAccess {
		return nil, fmt.Errorf("%w: scope %q: want statement or access", ErrInvalid, a.Scope)
	}
	req, err := s.st.Request(ctx, id)
	if err != nil {
		return nil, err
	}
	if len(req.Grantable) == 0 {
		return nil, fmt.Errorf("%w: request %s has nothing that can be granted: %s", ErrInvalid, id, req.WhyNot)
	}
	access := a.Access
	if len(access) == 0 {
		access = req.Grantable
	}
	if err := Subset(access, req.Grantable); err != nil {
		return nil, err
	}
	// The policy may have changed since the request was opened.
	for _, e := range access {
		if !slices.Contains(sqlpolicy.ExceptionVerbs, e.Verb) {
			return nil, fmt.Errorf("%w: %s cannot be granted", ErrInvalid, e.Verb)
		}
		for _, l := range e.Labels {
			if s.opts.NeverGrantable != nil && s.opts.NeverGrantable(req.Agent, l) {
				return nil, fmt.Errorf("%w: label %s is never granted (never_grant in the policy)", ErrInvalid, l)
			}
		}
	}
	end := s.opts.EndSessions
	if a.EndSessions != nil {
		end = *a.EndSessions
	}
	// (store.Approve names the grant's rules in a copy of its own.)
	g, req, err := s.st.Approve(ctx, id, store.Approval{Reviewer: who.Name, Note: a.Note, Scope: a.Scope, Access: access,
		Duration: a.For, EndSessions: end})
	if err != nil {
		return nil, err
	}
	if err := s.refresh(ctx); err != nil {
		s.log.Warn("approvals: reload grants after an approval", "err", err)
	}
	s.notify()
	s.log.Info("request approved", "request", id, "grant", g.ID, "agent", g.Agent, "reviewer", who.Name, "for", a.For.String(), "scope", a.Scope)
	s.record(audit.Event{Kind: audit.KindGrantApproved, Agent: g.Agent, Role: g.Role, Request: id, Grant: g.ID,
		Reviewer: who.Name, Note: a.Note, Purpose: g.Purpose, Scope: string(g.Scope), Access: g.Access, Expires: g.Expires,
		Fingerprint: req.Fingerprint, Statement: req.Statement, AuthMethod: who.Via})
	return g, nil
}

// Decline refuses a pending request. Later denials of the shape count
// but tell the agent a reviewer declined it.
func (s *Service) Decline(ctx context.Context, who Reviewer, id, note string) (*store.Request, error) {
	note = strings.TrimSpace(note)
	r, err := s.st.Decline(ctx, id, who.Name, note)
	if err != nil {
		return nil, err
	}
	if err := s.refresh(ctx); err != nil {
		s.log.Warn("approvals: reload after a decline", "err", err)
	}
	s.notify()
	s.log.Info("request declined", "request", id, "agent", r.Agent, "reviewer", who.Name)
	s.record(audit.Event{Kind: audit.KindRequestDeclined, Agent: r.Agent, Role: r.Role, Request: id, Reviewer: who.Name,
		Note: note, Purpose: r.Purpose, Fingerprint: r.Fingerprint, Statement: r.Statement, AuthMethod: who.Via})
	return r, nil
}

// Revoke ends a grant now. It stops applying on this replica before
// Revoke returns, on the others within one sync interval.
func (s *Service) Revoke(ctx context.Context, who Reviewer, grantID, note string) (*store.Grant, error) {
	note = strings.TrimSpace(note)
	g, err := s.st.Revoke(ctx, grantID, who.Name, note)
	if err != nil {
		return nil, err
	}
	if err := s.refresh(ctx); err != nil {
		// Decisions still compare the clock, not the revocation: drop it
		// from memory by hand so it stops here at once.
		s.dropGrant(grantID)
		s.log.Warn("approvals: reload after a revocation", "err", err)
	}
	s.notify()
	s.log.Info("grant revoked", "grant", grantID, "agent", g.Agent, "reviewer", who.Name)
	s.record(audit.Event{Kind: audit.KindGrantRevoked, Agent: g.Agent, Role: g.Role, Request: g.RequestID, Grant: g.ID,
		Reviewer: who.Name, Note: note, Purpose: g.Purpose, Scope: string(g.Scope), Access: g.Access, Expires: g.Expires,
		Fingerprint: g.Fingerprint, Statement: g.Statement, AuthMethod: who.Via})
	return g, nil
}

func (s *Service) dropGrant(id string) {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	old := s.grants.Load()
	lg := old.byID[id]
	if lg == nil {
		return
	}
	next := &grantSet{byAgent: map[string][]*liveGrant{}, byID: map[string]*liveGrant{}}
	for gid, g := range old.byID {
		if gid != id {
			next.byID[gid] = g
			next.byAgent[g.Agent] = append(next.byAgent[g.Agent], g)
		}
	}
	s.grants.Store(next)
	s.ended(lg)
}

// Audit records a reviewer event that is not an approval (a console
// login, a failed one) on the service's audit sinks.
func (s *Service) Audit(ev audit.Event) { s.record(ev) }
