package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// Scope is what a grant covers.
type Scope string

const (
	// ScopeStatement: statements of exactly the request's shape
	// (fingerprint), and within them only Access.
	ScopeStatement Scope = "statement"
	// ScopeAccess: Access in any statement of the agent.
	ScopeAccess Scope = "access"
)

// Grant is a reviewer's timed approval.
type Grant struct {
	ID          string                `json:"id"`
	RequestID   string                `json:"request_id,omitempty"`
	Agent       string                `json:"agent"`
	Role        string                `json:"role,omitempty"`
	Scope       Scope                 `json:"scope"`
	Fingerprint string                `json:"fingerprint,omitempty"`
	Statement   string                `json:"statement,omitempty"`
	Access      []sqlpolicy.Exception `json:"access"`
	Purpose     string                `json:"purpose,omitempty"`
	ApprovedBy  string                `json:"approved_by"`
	Note        string                `json:"note,omitempty"`
	Created     time.Time             `json:"created"`
	Expires     time.Time             `json:"expires"`
	// EndSessions: when the grant ends, the agent's sessions that used it
	// end too.
	EndSessions bool      `json:"end_sessions,omitempty"`
	RevokedAt   time.Time `json:"revoked_at,omitzero"`
	RevokedBy   string    `json:"revoked_by,omitempty"`
	RevokeNote  string    `json:"revoke_note,omitempty"`
}

// Active reports whether the grant is in force at now.
func (g *Grant) Active(now time.Time) bool {
	return g.RevokedAt.IsZero() && now.Before(g.Expires)
}

// Ended is when the grant stopped being in force (revoked or expired),
// zero while it is active at now.
func (g *Grant) Ended(now time.Time) time.Time {
	switch {
	case !g.RevokedAt.IsZero():
		return g.RevokedAt
	case !now.Before(g.Expires):
		return g.Expires
	}
	return time.Time{}
}

const grantCols = `id, request_id, agent, role, scope, fingerprint, statement, access, purpose, approved_by, note, created_at, expires_at, end_sessions, revoked_at, revoked_by, revoke_note`

func scanGrant(sc interface{ Scan(...any) error }) (*Grant, error) {
	var g Grant
	var scope, access string
	var created, expires, revoked int64
	var end int
	if err := sc.Scan(&g.ID, &g.RequestID, &g.Agent, &g.Role, &scope, &g.Fingerprint, &g.Statement, &access, &g.Purpose,
		&g.ApprovedBy, &g.Note, &created, &expires, &end, &revoked, &g.RevokedBy, &g.RevokeNote); err != nil {
		return nil, err
	}
	g.Scope = Scope(scope)
	g.Created, g.Expires, g.RevokedAt = fromMS(created), fromMS(expires), fromMS(revoked)
	g.EndSessions = end != 0
	if err := json.Unmarshal([]byte(access), &g.Access); err != nil {
		return nil, fmt.Errorf("store: grant %s access: %w", g.ID, err)
	}
	return &g, nil
}

// Approval is a reviewer's approval of a request.
type Approval struct {
	Reviewer string
	Note     string
	Scope    Scope
	// Access is what the grant adds; the caller has checked it against
	// the request's Grantable and the policy's never_grant.
	Access      []sqlpolicy.Exception
	Duration    time.Duration
	EndSessions bool
}

// Approve grants a pending (or declined) request: it creates the grant
// and marks the request approved, in one transaction.
func (s *Store) Approve(ctx context.Context, requestID string, a Approval) (*Grant, *Request, error) {
	if a.Duration <= 0 {
		return nil, nil, errors.New("store: approval duration must be positive")
	}
	if len(a.Access) == 0 {
		return nil, nil, errors.New("store: approval grants nothing")
	}
	if a.Scope != ScopeStatement && a.Scope != ScopeAccess {
		return nil, nil, fmt.Errorf("store: approval scope %q", a.Scope)
	}
	var g *Grant
	var req *Request
	err := s.tx(ctx, func(tx *sql.Tx) error {
		r, err := s.lockRequest(ctx, tx, requestID)
		if err != nil {
			return err
		}
		if r.Status != StatusPending && r.Status != StatusDeclined {
			return fmt.Errorf("request %s is %s: %w", requestID, r.Status, ErrConflict)
		}
		now := s.now().Truncate(time.Millisecond)
		// The grant's own copy of the access: its rules are named below,
		// and the caller's slice is not the store's to write.
		g = &Grant{ID: NewID("grt_"), RequestID: r.ID, Agent: r.Agent, Role: r.Role, Scope: a.Scope, Statement: r.Statement,
			Access: slices.Clone(a.Access), Purpose: r.Purpose, ApprovedBy: a.Reviewer, Note: a.Note, Created: now,
			Expires: now.Add(a.Duration), EndSessions: a.EndSessions}
		if a.Scope == ScopeStatement {
			g.Fingerprint = r.Fingerprint
		}
		for i := range g.Access {
			g.Access[i].Rule = "grant." + g.ID
		}
		access, _ := json.Marshal(g.Access)
		if _, err := s.exec(ctx, tx, `INSERT INTO grants (`+grantCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, '', '')`,
			g.ID, g.RequestID, g.Agent, g.Role, string(g.Scope), g.Fingerprint, g.Statement, string(access), g.Purpose,
			g.ApprovedBy, g.Note, ms(g.Created), ms(g.Expires), b2i(g.EndSessions)); err != nil {
			return fmt.Errorf("store: insert grant: %w", err)
		}
		if _, err := s.exec(ctx, tx, `UPDATE blocked SET status = 'approved', decided_by = ?, decided_at = ?, note = ? WHERE id = ?`,
			a.Reviewer, ms(now), a.Note, r.ID); err != nil {
			return fmt.Errorf("store: approve %s: %w", r.ID, err)
		}
		r.Status, r.DecidedBy, r.DecidedAt, r.Note = StatusApproved, a.Reviewer, now, a.Note
		req = r
		return s.bump(ctx, tx, "grants")
	})
	if err != nil {
		return nil, nil, err
	}
	return g, req, nil
}

// Revoke ends an active grant now.
func (s *Store) Revoke(ctx context.Context, grantID, reviewer, note string) (*Grant, error) {
	var g *Grant
	err := s.tx(ctx, func(tx *sql.Tx) error {
		query := `SELECT ` + grantCols + ` FROM grants WHERE id = ?`
		if s.kind == Postgres {
			query += " FOR UPDATE"
		}
		var err error
		g, err = scanGrant(tx.QueryRowContext(ctx, s.q(query), grantID))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("grant %s: %w", grantID, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("store: grant %s: %w", grantID, err)
		}
		now := s.now().Truncate(time.Millisecond)
		if !g.Active(now) {
			return fmt.Errorf("grant %s already ended: %w", grantID, ErrConflict)
		}
		if _, err := s.exec(ctx, tx, `UPDATE grants SET revoked_at = ?, revoked_by = ?, revoke_note = ? WHERE id = ?`,
			ms(now), reviewer, note, grantID); err != nil {
			return fmt.Errorf("store: revoke %s: %w", grantID, err)
		}
		g.RevokedAt, g.RevokedBy, g.RevokeNote = now, reviewer, note
		return s.bump(ctx, tx, "grants")
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

// Grant returns the grant of that id.
func (s *Store) Grant(ctx context.Context, id string) (*Grant, error) {
	g, err := scanGrant(s.db.QueryRowContext(ctx, s.q(`SELECT `+grantCols+` FROM grants WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("grant %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: grant %s: %w", id, err)
	}
	return g, nil
}

// GrantFilter selects grants.
type GrantFilter struct {
	// ActiveAt, when set, selects the grants in force then.
	ActiveAt  time.Time
	Agent     string
	RequestID string
	Limit     int // default 500
}

// Grants lists grants, newest first.
func (s *Store) Grants(ctx context.Context, f GrantFilter) ([]Grant, error) {
	where, args := []string{"1 = 1"}, []any{}
	if !f.ActiveAt.IsZero() {
		where = append(where, "revoked_at = 0 AND expires_at > ?")
		args = append(args, ms(f.ActiveAt))
	}
	if f.Agent != "" {
		where = append(where, "agent = ?")
		args = append(args, f.Agent)
	}
	if f.RequestID != "" {
		where = append(where, "request_id = ?")
		args = append(args, f.RequestID)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 500
	}
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+grantCols+` FROM grants WHERE `+strings.Join(where, " AND ")+` ORDER BY created_at DESC, id LIMIT ?`), args...)
	if err != nil {
		return nil, fmt.Errorf("store: grants: %w", err)
	}
	defer rows.Close()
	var out []Grant
	for rows.Next() {
		g, err := scanGrant(rows)
		if err != nil {
			return nil, fmt.Errorf("store: grants: %w", err)
		}
		out = append(out, *g)
	}
	return out, rows.Err()
}

// EndedUnrecorded lists grants that ended (expired or revoked) by now and
// whose end no replica has yet claimed (ClaimEnded).
func (s *Store) EndedUnrecorded(ctx context.Context, now time.Time) ([]Grant, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+grantCols+` FROM grants WHERE ended = 0 AND (revoked_at <> 0 OR expires_at <= ?) ORDER BY expires_at LIMIT 500`), ms(now))
	if err != nil {
		return nil, fmt.Errorf("store: ended grants: %w", err)
	}
	defer rows.Close()
	var out []Grant
	for rows.Next() {
		g, err := scanGrant(rows)
		if err != nil {
			return nil, fmt.Errorf("store: ended grants: %w", err)
		}
		out = append(out, *g)
	}
	return out, rows.Err()
}

// ClaimEnded marks a grant's end as recorded and reports whether this
// call did it: of several replicas noticing an expiry, exactly one
// audits it.
func (s *Store) ClaimEnded(ctx context.Context, id string) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE grants SET ended = 1 WHERE id = ? AND ended = 0`), id)
	if err != nil {
		return false, fmt.Errorf("store: claim ended %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}
