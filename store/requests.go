package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// Status is where a request stands.
type Status string

const (
	// StatusPending: waiting for a reviewer.
	StatusPending Status = "pending"
	// StatusApproved: a reviewer granted it (see its grants).
	StatusApproved Status = "approved"
	// StatusDeclined: a reviewer refused it; further denials of the shape
	// count but do not reopen it.
	StatusDeclined Status = "declined"
	// StatusBlocked: a blocked shape nothing can be granted for (a
	// never-grantable label, an unparseable statement ...): indexed for
	// the console, not a request.
	StatusBlocked Status = "blocked"
)

// RequestID is the id of the request of agent for a statement shape: the
// same on every replica, so replicas agree on it without asking each
// other. It is 128 bits of SHA-256: the agent chooses its statements, so
// it chooses fingerprints, and with a short id it could find two shapes
// of one id, have the innocent one approved, and run the other.
func RequestID(agent, fingerprint string) string {
	h := sha256.Sum256([]byte(agent + "\x00" + fingerprint))
	return "apr_" + strings.ToLower(b32.EncodeToString(h[:16]))
}

// Request is one blocked statement shape of one agent, and the access
// request it opened when something in it can be granted.
type Request struct {
	ID          string             `json:"id"`
	Agent       string             `json:"agent"`
	Role        string             `json:"role"`
	Fingerprint string             `json:"fingerprint"`
	Statement   string             `json:"statement"`
	Rule        string             `json:"rule"`
	Reasons     []sqlpolicy.Reason `json:"reasons"`
	// Message and Hint are what the agent was told (the hint as the
	// policy wrote it, without the request note keyhole adds).
	Message string `json:"message,omitempty"`
	Hint    string `json:"hint,omitempty"`
	// Purpose is the purpose claim of the agent's token.
	Purpose string `json:"purpose,omitempty"`
	// Grantable is what approving may grant; empty when nothing can be
	// (then WhyNot says why and Status is StatusBlocked).
	Grantable []sqlpolicy.Exception `json:"grantable"`
	WhyNot    string                `json:"why_not,omitempty"`
	Status    Status                `json:"status"`
	// Count is how often the shape was denied for the agent; Allowed how
	// often it was allowed since it was first blocked (under a grant).
	Count       int64     `json:"count"`
	Allowed     int64     `json:"allowed"`
	FirstSeen   time.Time `json:"first_seen"`
	LastSeen    time.Time `json:"last_seen"`
	LastAllowed time.Time `json:"last_allowed,omitzero"`
	DecidedBy   string    `json:"decided_by,omitempty"`
	DecidedAt   time.Time `json:"decided_at,omitzero"`
	Note        string    `json:"note,omitempty"`
}

// Seen is one or more denials of a shape for an agent, to record.
type Seen struct {
	Agent, Role, Fingerprint, Statement, Rule string
	Reasons                                   []sqlpolicy.Reason
	Message, Hint, Purpose                    string
	Grantable                                 []sqlpolicy.Exception
	WhyNot                                    string
	Count                                     int64
	At                                        time.Time
}

// Allowed counts allowed statements of a blocked shape (the statement ran
// under a grant, or the policy changed).
type Allowed struct {
	ID    string
	Count int64
	At    time.Time
}

const requestCols = `id, agent, role, fingerprint, statement, rule, reasons, message, hint, purpose, grantable, why_not, status, count, allowed, first_seen, last_seen, last_allowed, decided_by, decided_at, note`

func scanRequest(sc interface{ Scan(...any) error }) (*Request, error) {
	var r Request
	var reasons, grantable, status string
	var first, last, lastAllowed, decided int64
	if err := sc.Scan(&r.ID, &r.Agent, &r.Role, &r.Fingerprint, &r.Statement, &r.Rule, &reasons, &r.Message, &r.Hint, &r.Purpose,
		&grantable, &r.WhyNot, &status, &r.Count, &r.Allowed, &first, &last, &lastAllowed, &r.DecidedBy, &decided, &r.Note); err != nil {
		return nil, err
	}
	r.Status = Status(status)
	r.FirstSeen, r.LastSeen, r.LastAllowed, r.DecidedAt = fromMS(first), fromMS(last), fromMS(lastAllowed), fromMS(decided)
	if err := json.Unmarshal([]byte(reasons), &r.Reasons); err != nil {
		return nil, fmt.Errorf("store: request %s reasons: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(grantable), &r.Grantable); err != nil {
		return nil, fmt.Errorf("store: request %s grantable: %w", r.ID, err)
	}
	return &r, nil
}

// Sizes a request keeps of what the agent's statement made: the text (as
// redacted), what the agent was told, and the reasons. The rest is cut
// (and the cut said), so that a huge statement makes no huge row.
const (
	MaxStatementBytes = 16 << 10
	MaxMessageBytes   = 4 << 10
	MaxReasons        = 100
)

// recordSeen upserts denials of shapes: a new shape opens a request
// (pending when something can be granted, else blocked); a known one
// counts. A declined request stays declined. An approved one whose
// denial came after the approval (its grant expired, was revoked, or did
// not cover the statement) is pending again.
//
// Each agent has at most maxOpen pending requests (a shape that would be
// one more is kept as blocked, saying why) and maxShapes blocked shapes
// (one more replaces the agent's least recently seen).
func (s *Store) recordSeen(ctx context.Context, tx *sql.Tx, seen []Seen) error {
	for _, v := range seen {
		id := RequestID(v.Agent, v.Fingerprint)
		var curAgent, curFP, curStatus string
		var curDecided int64
		err := tx.QueryRowContext(ctx, s.q(`SELECT agent, fingerprint, status, decided_at FROM blocked WHERE id = ?`), id).
			Scan(&curAgent, &curFP, &curStatus, &curDecided)
		exists := err == nil
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return fmt.Errorf("store: record request %s: %w", id, err)
		case curAgent != v.Agent || curFP != v.Fingerprint:
			// Two shapes with one id (RequestID's 128 bits make this a
			// theoretical case): never let one's denial rewrite the
			// other's request, which a reviewer may be approving.
			continue
		}
		if len(v.Reasons) > MaxReasons {
			v.Reasons = v.Reasons[:MaxReasons]
		}
		v.Statement = truncate(v.Statement, MaxStatementBytes)
		v.Message, v.Hint = truncate(v.Message, MaxMessageBytes), truncate(v.Hint, MaxMessageBytes)
		at := ms(v.At)
		status := StatusPending
		if len(v.Grantable) == 0 {
			status = StatusBlocked
		}
		staysOpen := exists && (curStatus == string(StatusPending) || curStatus == string(StatusDeclined) ||
			(curStatus == string(StatusApproved) && at <= curDecided))
		if status == StatusPending && !staysOpen {
			var n int
			if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM blocked WHERE agent = ? AND status = 'pending'`), v.Agent).Scan(&n); err != nil {
				return fmt.Errorf("store: record request %s: %w", id, err)
			}
			if n >= s.maxOpen {
				status, v.Grantable = StatusBlocked, nil
				v.WhyNot = fmt.Sprintf("agent %s has %d access requests pending, the most it may (decide or decline some first)", v.Agent, n)
			}
		}
		if status == StatusBlocked && !exists {
			if err := s.evictShapes(ctx, tx, v.Agent); err != nil {
				return err
			}
		}
		reasons, _ := json.Marshal(nonNil(v.Reasons))
		grantable, _ := json.Marshal(nonNilEx(v.Grantable))
		_, err = s.exec(ctx, tx, `INSERT INTO blocked (`+requestCols+`)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, 0, '', 0, '')
ON CONFLICT (id) DO UPDATE SET
	count = blocked.count + excluded.count,
	last_seen = CASE WHEN excluded.last_seen > blocked.last_seen THEN excluded.last_seen ELSE blocked.last_seen END,
	role = excluded.role, statement = excluded.statement, rule = excluded.rule, reasons = excluded.reasons,
	message = excluded.message, hint = excluded.hint, grantable = excluded.grantable, why_not = excluded.why_not,
	purpose = CASE WHEN excluded.purpose <> '' THEN excluded.purpose ELSE blocked.purpose END,
	status = CASE
		WHEN blocked.status = 'declined' THEN blocked.status
		WHEN blocked.status = 'approved' AND excluded.last_seen <= blocked.decided_at THEN blocked.status
		ELSE excluded.status END
WHERE blocked.agent = excluded.agent AND blocked.fingerprint = excluded.fingerprint`,
			id, v.Agent, v.Role, v.Fingerprint, v.Statement, v.Rule, string(reasons), v.Message, v.Hint, v.Purpose,
			string(grantable), v.WhyNot, string(status), v.Count, at, at)
		if err != nil {
			return fmt.Errorf("store: record request %s: %w", id, err)
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM blocked_reasons WHERE block_id = ?`, id); err != nil {
			return fmt.Errorf("store: record request %s: %w", id, err)
		}
		for _, r := range v.Reasons {
			if _, err := s.exec(ctx, tx, `INSERT INTO blocked_reasons (block_id, code, verb, tbl, col, label, rule) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				id, string(r.Code), string(r.Verb), r.Table, r.Column, r.Label, r.Rule); err != nil {
				return fmt.Errorf("store: record request %s: %w", id, err)
			}
		}
	}
	return nil
}

// evictShapes makes room for one more blocked shape of agent: at
// maxShapes, its least recently seen blocked shapes go.
func (s *Store) evictShapes(ctx context.Context, tx *sql.Tx, agent string) error {
	var n int
	if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM blocked WHERE agent = ? AND status = 'blocked'`), agent).Scan(&n); err != nil {
		return fmt.Errorf("store: count shapes: %w", err)
	}
	if n < s.maxShapes {
		return nil
	}
	victims := `SELECT id FROM blocked WHERE agent = ? AND status = 'blocked' ORDER BY last_seen, id LIMIT ?`
	k := n - s.maxShapes + 1
	if _, err := s.exec(ctx, tx, `DELETE FROM blocked_reasons WHERE block_id IN (`+victims+`)`, agent, k); err != nil {
		return fmt.Errorf("store: evict shapes: %w", err)
	}
	if _, err := s.exec(ctx, tx, `DELETE FROM blocked WHERE id IN (`+victims+`)`, agent, k); err != nil {
		return fmt.Errorf("store: evict shapes: %w", err)
	}
	return nil
}

// truncate cuts s to at most n bytes on a UTF-8 boundary and says so.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("… [cut: %d of %d bytes kept]", cut, len(s))
}

// PendingIDs are the pending requests' ids per agent.
func (s *Store) PendingIDs(ctx context.Context) (map[string]map[string]bool, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT agent, id FROM blocked WHERE status = 'pending'`)
	if err != nil {
		return nil, fmt.Errorf("store: pending requests: %w", err)
	}
	defer rows.Close()
	out := map[string]map[string]bool{}
	for rows.Next() {
		var agent, id string
		if err := rows.Scan(&agent, &id); err != nil {
			return nil, fmt.Errorf("store: pending requests: %w", err)
		}
		if out[agent] == nil {
			out[agent] = map[string]bool{}
		}
		out[agent][id] = true
	}
	return out, rows.Err()
}

func (s *Store) recordAllowed(ctx context.Context, tx *sql.Tx, allowed []Allowed) error {
	for _, a := range allowed {
		if _, err := s.exec(ctx, tx, `UPDATE blocked SET allowed = allowed + ?,
	last_allowed = CASE WHEN ? > last_allowed THEN ? ELSE last_allowed END WHERE id = ?`, a.Count, ms(a.At), ms(a.At), a.ID); err != nil {
			return fmt.Errorf("store: record allowed %s: %w", a.ID, err)
		}
	}
	return nil
}

func nonNil(r []sqlpolicy.Reason) []sqlpolicy.Reason {
	if r == nil {
		return []sqlpolicy.Reason{}
	}
	return r
}

func nonNilEx(e []sqlpolicy.Exception) []sqlpolicy.Exception {
	if e == nil {
		return []sqlpolicy.Exception{}
	}
	return e
}

// Request returns the request of that id.
func (s *Store) Request(ctx context.Context, id string) (*Request, error) {
	r, err := scanRequest(s.db.QueryRowContext(ctx, s.q(`SELECT `+requestCols+` FROM blocked WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("request %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: request %s: %w", id, err)
	}
	return r, nil
}

// RequestFilter selects requests. Zero fields select everything.
type RequestFilter struct {
	// Statuses; empty means pending, approved and declined (requests,
	// not merely blocked shapes).
	Statuses    []Status
	Agent       string
	Fingerprint string
	Limit       int // default 500
}

// Requests lists requests, most recently seen first.
func (s *Store) Requests(ctx context.Context, f RequestFilter) ([]Request, error) {
	where, args := []string{}, []any{}
	sts := f.Statuses
	if len(sts) == 0 {
		sts = []Status{StatusPending, StatusApproved, StatusDeclined}
	}
	ph := make([]string, len(sts))
	for i, st := range sts {
		ph[i] = "?"
		args = append(args, string(st))
	}
	where = append(where, "status IN ("+strings.Join(ph, ",")+")")
	if f.Agent != "" {
		where = append(where, "agent = ?")
		args = append(args, f.Agent)
	}
	if f.Fingerprint != "" {
		where = append(where, "fingerprint = ?")
		args = append(args, f.Fingerprint)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 500
	}
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+requestCols+` FROM blocked WHERE `+strings.Join(where, " AND ")+` ORDER BY last_seen DESC, id LIMIT ?`), args...)
	if err != nil {
		return nil, fmt.Errorf("store: requests: %w", err)
	}
	defer rows.Close()
	var out []Request
	for rows.Next() {
		r, err := scanRequest(rows)
		if err != nil {
			return nil, fmt.Errorf("store: requests: %w", err)
		}
		out = append(out, *r)
	}
	return out, rows.Err()
}

// Decline refuses a pending request.
func (s *Store) Decline(ctx context.Context, id, reviewer, note string) (*Request, error) {
	var out *Request
	err := s.tx(ctx, func(tx *sql.Tx) error {
		r, err := s.lockRequest(ctx, tx, id)
		if err != nil {
			return err
		}
		if r.Status != StatusPending {
			return fmt.Errorf("request %s is %s, not pending: %w", id, r.Status, ErrConflict)
		}
		now := s.now()
		if _, err := s.exec(ctx, tx, `UPDATE blocked SET status = 'declined', decided_by = ?, decided_at = ?, note = ? WHERE id = ?`,
			reviewer, ms(now), note, id); err != nil {
			return fmt.Errorf("store: decline %s: %w", id, err)
		}
		r.Status, r.DecidedBy, r.DecidedAt, r.Note = StatusDeclined, reviewer, fromMS(ms(now)), note
		out = r
		return s.bump(ctx, tx, "grants")
	})
	return out, err
}

// lockRequest reads a request inside tx, locking its row on Postgres
// (SQLite's immediate transaction already holds the database's write lock).
func (s *Store) lockRequest(ctx context.Context, tx *sql.Tx, id string) (*Request, error) {
	query := `SELECT ` + requestCols + ` FROM blocked WHERE id = ?`
	if s.kind == Postgres {
		query += " FOR UPDATE"
	}
	r, err := scanRequest(tx.QueryRowContext(ctx, s.q(query), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("request %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: request %s: %w", id, err)
	}
	return r, nil
}

// bump advances a change counter (readers poll it to notice changes made
// by other replicas).
func (s *Store) bump(ctx context.Context, tx *sql.Tx, name string) error {
	if _, err := s.exec(ctx, tx, `UPDATE counters SET version = version + 1 WHERE name = ?`, name); err != nil {
		return fmt.Errorf("store: bump %s: %w", name, err)
	}
	return nil
}

// Counter returns a change counter: "grants" changes with every approval,
// decline and revocation; "feed" with every batch of denials recorded.
func (s *Store) Counter(ctx context.Context, name string) (int64, error) {
	var v int64
	if err := s.db.QueryRowContext(ctx, s.q(`SELECT version FROM counters WHERE name = ?`), name).Scan(&v); err != nil {
		return 0, fmt.Errorf("store: counter %s: %w", name, err)
	}
	return v, nil
}
