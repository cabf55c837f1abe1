package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// Denial is one blocked statement as the audit recorded it.
type Denial struct {
	ID          int64     `json:"id"`
	At          time.Time `json:"at"`
	RequestID   string    `json:"request_id"`
	Agent       string    `json:"agent"`
	Role        string    `json:"role,omitempty"`
	Fingerprint string    `json:"fingerprint"`
	Rule        string    `json:"rule,omitempty"`
	Session     string    `json:"session,omitempty"`
	Client      string    `json:"client,omitempty"`
	Protocol    string    `json:"protocol,omitempty"`
	Database    string    `json:"database,omitempty"`
	Replica     string    `json:"replica,omitempty"`
	ErrorCode   string    `json:"error_code,omitempty"`
}

// Session is an agent connection that authenticated and has not closed.
type Session struct {
	ID       string    `json:"id"`
	Replica  string    `json:"replica"`
	Agent    string    `json:"agent"`
	Role     string    `json:"role,omitempty"`
	Client   string    `json:"client,omitempty"`
	Protocol string    `json:"protocol,omitempty"`
	Database string    `json:"database,omitempty"`
	Started  time.Time `json:"started"`
}

// AgentSeen is the latest activity of an agent.
type AgentSeen struct {
	Name, Role, Purpose, Client string
	At                          time.Time
}

// Batch is what one write-behind flush records, in one transaction.
type Batch struct {
	Seen    []Seen
	Allowed []Allowed
	Denials []Denial
	Opened  []Session
	Closed  []string // session ids
	Agents  []AgentSeen
	Replica *Replica // heartbeat
}

// Empty reports whether b records nothing.
func (b *Batch) Empty() bool {
	return len(b.Seen) == 0 && len(b.Allowed) == 0 && len(b.Denials) == 0 && len(b.Opened) == 0 &&
		len(b.Closed) == 0 && len(b.Agents) == 0 && b.Replica == nil
}

// Write records a batch in one transaction: all of it or, on error,
// nothing (the caller retries the same batch).
func (s *Store) Write(ctx context.Context, b *Batch) error {
	if b.Empty() {
		return nil
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.recordSeen(ctx, tx, b.Seen); err != nil {
			return err
		}
		if err := s.recordAllowed(ctx, tx, b.Allowed); err != nil {
			return err
		}
		for _, d := range b.Denials {
			if _, err := s.exec(ctx, tx, `INSERT INTO denials (at, block_id, agent, role, fingerprint, rule, session, client, protocol, dbname, replica, error_code)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, ms(d.At), d.RequestID, d.Agent, d.Role, d.Fingerprint, d.Rule, d.Session, d.Client,
				d.Protocol, d.Database, d.Replica, d.ErrorCode); err != nil {
				return fmt.Errorf("store: record denial: %w", err)
			}
		}
		if len(b.Denials) > 0 || len(b.Seen) > 0 {
			if err := s.bump(ctx, tx, "feed"); err != nil {
				return err
			}
		}
		for _, se := range b.Opened {
			if _, err := s.exec(ctx, tx, `INSERT INTO sessions (id, replica, agent, role, client, protocol, dbname, started_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`, se.ID, se.Replica, se.Agent, se.Role, se.Client, se.Protocol, se.Database, ms(se.Started)); err != nil {
				return fmt.Errorf("store: record session: %w", err)
			}
		}
		for _, id := range b.Closed {
			if _, err := s.exec(ctx, tx, `DELETE FROM sessions WHERE id = ?`, id); err != nil {
				return fmt.Errorf("store: record session end: %w", err)
			}
		}
		for _, a := range b.Agents {
			if _, err := s.exec(ctx, tx, `INSERT INTO agents (name, role, purpose, last_client, last_seen) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET
	role = CASE WHEN excluded.role <> '' THEN excluded.role ELSE agents.role END,
	purpose = CASE WHEN excluded.purpose <> '' THEN excluded.purpose ELSE agents.purpose END,
	last_client = CASE WHEN excluded.last_client <> '' THEN excluded.last_client ELSE agents.last_client END,
	last_seen = CASE WHEN excluded.last_seen > agents.last_seen THEN excluded.last_seen ELSE agents.last_seen END`,
				a.Name, a.Role, a.Purpose, a.Client, ms(a.At)); err != nil {
				return fmt.Errorf("store: record agent: %w", err)
			}
		}
		if r := b.Replica; r != nil {
			if err := s.heartbeat(ctx, tx, r); err != nil {
				return err
			}
		}
		return nil
	})
}

// FeedFilter selects blocked statements for the live feed. Zero fields
// select everything; Until zero means now.
type FeedFilter struct {
	Agent, Role, Rule, Label, Table, Column string
	Since, Until                            time.Time
	Limit                                   int // groups; default 200
}

// FeedGroup is the denials of one statement shape in the filter's window.
type FeedGroup struct {
	Fingerprint string             `json:"fingerprint"`
	Statement   string             `json:"statement"`
	Rule        string             `json:"rule"`
	Reasons     []sqlpolicy.Reason `json:"reasons"`
	Count       int64              `json:"count"`
	Agents      []string           `json:"agents"`
	First       time.Time          `json:"first"`
	Last        time.Time          `json:"last"`
	// Requests are the requests of the shape, one per agent.
	Requests []Request `json:"requests"`
}

func (f FeedFilter) where() (string, []any) {
	where, args := []string{"1 = 1"}, []any{}
	add := func(cond string, v any) {
		where = append(where, cond)
		args = append(args, v)
	}
	if f.Agent != "" {
		add("d.agent = ?", f.Agent)
	}
	if f.Role != "" {
		add("d.role = ?", f.Role)
	}
	if f.Rule != "" {
		add("d.rule = ?", f.Rule)
	}
	if !f.Since.IsZero() {
		add("d.at >= ?", ms(f.Since))
	}
	if !f.Until.IsZero() {
		add("d.at < ?", ms(f.Until))
	}
	for _, c := range []struct{ col, v string }{{"label", f.Label}, {"tbl", f.Table}, {"col", f.Column}} {
		if c.v != "" {
			add("EXISTS (SELECT 1 FROM blocked_reasons r WHERE r.block_id = d.block_id AND r."+c.col+" = ?)", c.v)
		}
	}
	return strings.Join(where, " AND "), args
}

// Feed groups the filter's denials by statement shape, most recent first.
func (s *Store) Feed(ctx context.Context, f FeedFilter) ([]FeedGroup, error) {
	where, args := f.where()
	limit := f.Limit
	if limit <= 0 {
		limit = 200
	}
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT d.fingerprint, COUNT(*), MIN(d.at), MAX(d.at) FROM denials d WHERE `+where+`
GROUP BY d.fingerprint ORDER BY MAX(d.at) DESC, d.fingerprint LIMIT ?`), args...)
	if err != nil {
		return nil, fmt.Errorf("store: feed: %w", err)
	}
	var out []FeedGroup
	for rows.Next() {
		var g FeedGroup
		var first, last int64
		if err := rows.Scan(&g.Fingerprint, &g.Count, &first, &last); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: feed: %w", err)
		}
		g.First, g.Last = fromMS(first), fromMS(last)
		out = append(out, g)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: feed: %w", err)
	}
	for i := range out {
		g := &out[i]
		reqs, err := s.Requests(ctx, RequestFilter{Fingerprint: g.Fingerprint,
			Statuses: []Status{StatusPending, StatusApproved, StatusDeclined, StatusBlocked}, Limit: 50})
		if err != nil {
			return nil, err
		}
		for _, r := range reqs {
			if f.Agent != "" && r.Agent != f.Agent {
				continue
			}
			if g.Statement == "" {
				g.Statement, g.Rule, g.Reasons = r.Statement, r.Rule, r.Reasons
			}
			g.Agents = append(g.Agents, r.Agent)
			g.Requests = append(g.Requests, r)
		}
	}
	return out, nil
}

// DenialFilter selects denials.
type DenialFilter struct {
	Fingerprint, Agent, RequestID string
	Since                         time.Time
	Limit                         int // default 100
}

// Denials lists denials, newest first.
func (s *Store) Denials(ctx context.Context, f DenialFilter) ([]Denial, error) {
	where, args := []string{"1 = 1"}, []any{}
	if f.Fingerprint != "" {
		where, args = append(where, "fingerprint = ?"), append(args, f.Fingerprint)
	}
	if f.Agent != "" {
		where, args = append(where, "agent = ?"), append(args, f.Agent)
	}
	if f.RequestID != "" {
		where, args = append(where, "block_id = ?"), append(args, f.RequestID)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "at >= ?"), append(args, ms(f.Since))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id, at, block_id, agent, role, fingerprint, rule, session, client, protocol, dbname, replica, error_code
FROM denials WHERE `+strings.Join(where, " AND ")+` ORDER BY at DESC, id DESC LIMIT ?`), args...)
	if err != nil {
		return nil, fmt.Errorf("store: denials: %w", err)
	}
	defer rows.Close()
	var out []Denial
	for rows.Next() {
		var d Denial
		var at int64
		if err := rows.Scan(&d.ID, &at, &d.RequestID, &d.Agent, &d.Role, &d.Fingerprint, &d.Rule, &d.Session, &d.Client,
			&d.Protocol, &d.Database, &d.Replica, &d.ErrorCode); err != nil {
			return nil, fmt.Errorf("store: denials: %w", err)
		}
		d.At = fromMS(at)
		out = append(out, d)
	}
	return out, rows.Err()
}

// AgentInfo is an agent as the console lists it.
type AgentInfo struct {
	Name       string    `json:"name"`
	Role       string    `json:"role"`
	Purpose    string    `json:"purpose,omitempty"`
	LastClient string    `json:"last_client,omitempty"`
	LastSeen   time.Time `json:"last_seen"`
	// Sessions are its open sessions on live replicas.
	Sessions []Session `json:"sessions"`
	// Denials is how many of its statements were blocked since the
	// Agents call's since.
	Denials int64 `json:"denials"`
}

// Agents lists agents seen, most recent first, with their open sessions
// on replicas whose heartbeat is newer than live and their denials since.
func (s *Store) Agents(ctx context.Context, live, since time.Time) ([]AgentInfo, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT a.name, a.role, a.purpose, a.last_client, a.last_seen,
	(SELECT COUNT(*) FROM denials d WHERE d.agent = a.name AND d.at >= ?)
FROM agents a ORDER BY a.last_seen DESC, a.name LIMIT 1000`), ms(since))
	if err != nil {
		return nil, fmt.Errorf("store: agents: %w", err)
	}
	var out []AgentInfo
	idx := map[string]int{}
	for rows.Next() {
		var a AgentInfo
		var last int64
		if err := rows.Scan(&a.Name, &a.Role, &a.Purpose, &a.LastClient, &last, &a.Denials); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: agents: %w", err)
		}
		a.LastSeen = fromMS(last)
		idx[a.Name] = len(out)
		out = append(out, a)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: agents: %w", err)
	}
	sessions, err := s.Sessions(ctx, live, "")
	if err != nil {
		return nil, err
	}
	for _, se := range sessions {
		if i, ok := idx[se.Agent]; ok {
			out[i].Sessions = append(out[i].Sessions, se)
		}
	}
	return out, nil
}

// Sessions lists open sessions (of agent, when not empty) on replicas
// whose heartbeat is newer than live.
func (s *Store) Sessions(ctx context.Context, live time.Time, agent string) ([]Session, error) {
	query := `SELECT s.id, s.replica, s.agent, s.role, s.client, s.protocol, s.dbname, s.started_at
FROM sessions s JOIN replicas r ON r.id = s.replica WHERE r.heartbeat >= ?`
	args := []any{ms(live)}
	if agent != "" {
		query += " AND s.agent = ?"
		args = append(args, agent)
	}
	rows, err := s.db.QueryContext(ctx, s.q(query+" ORDER BY s.started_at DESC LIMIT 5000"), args...)
	if err != nil {
		return nil, fmt.Errorf("store: sessions: %w", err)
	}
	defer rows.Close()
	var out []Session
	for rows.Next() {
		var se Session
		var started int64
		if err := rows.Scan(&se.ID, &se.Replica, &se.Agent, &se.Role, &se.Client, &se.Protocol, &se.Database, &started); err != nil {
			return nil, fmt.Errorf("store: sessions: %w", err)
		}
		se.Started = fromMS(started)
		out = append(out, se)
	}
	return out, rows.Err()
}

// Replica is one keyhole process sharing the store.
type Replica struct {
	ID        string    `json:"id"`
	Addr      string    `json:"addr,omitempty"`
	Started   time.Time `json:"started"`
	Heartbeat time.Time `json:"heartbeat"`
}

func (s *Store) heartbeat(ctx context.Context, tx *sql.Tx, r *Replica) error {
	if _, err := s.exec(ctx, tx, `INSERT INTO replicas (id, addr, started_at, heartbeat) VALUES (?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET addr = excluded.addr, started_at = excluded.started_at, heartbeat = excluded.heartbeat`,
		r.ID, r.Addr, ms(r.Started), ms(r.Heartbeat)); err != nil {
		return fmt.Errorf("store: heartbeat: %w", err)
	}
	return nil
}

// StartReplica registers a replica that is starting: sessions a previous
// process of the same id left behind are gone.
func (s *Store) StartReplica(ctx context.Context, r Replica) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `DELETE FROM sessions WHERE replica = ?`, r.ID); err != nil {
			return fmt.Errorf("store: start replica: %w", err)
		}
		return s.heartbeat(ctx, tx, &r)
	})
}

// StopReplica removes a replica that stops cleanly, with its sessions.
func (s *Store) StopReplica(ctx context.Context, id string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `DELETE FROM sessions WHERE replica = ?`, id); err != nil {
			return fmt.Errorf("store: stop replica: %w", err)
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM replicas WHERE id = ?`, id); err != nil {
			return fmt.Errorf("store: stop replica: %w", err)
		}
		return nil
	})
}

// Replicas lists replicas whose heartbeat is newer than live.
func (s *Store) Replicas(ctx context.Context, live time.Time) ([]Replica, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id, addr, started_at, heartbeat FROM replicas WHERE heartbeat >= ? ORDER BY id`), ms(live))
	if err != nil {
		return nil, fmt.Errorf("store: replicas: %w", err)
	}
	defer rows.Close()
	var out []Replica
	for rows.Next() {
		var r Replica
		var started, hb int64
		if err := rows.Scan(&r.ID, &r.Addr, &started, &hb); err != nil {
			return nil, fmt.Errorf("store: replicas: %w", err)
		}
		r.Started, r.Heartbeat = fromMS(started), fromMS(hb)
		out = append(out, r)
	}
	return out, rows.Err()
}

// Retention says how long Prune keeps what; a zero duration keeps that
// part forever.
type Retention struct {
	// Denials: the denial index and blocked shapes not seen since.
	Denials time.Duration
	// History: decided requests and ended grants, and pending requests
	// not seen since (nobody decided them and the agent stopped asking).
	History time.Duration
	// Replicas: replicas (and their sessions) without a heartbeat since.
	Replicas time.Duration
}

// Prune deletes what retention no longer keeps and expired logins.
func (s *Store) Prune(ctx context.Context, r Retention) error {
	now := s.now()
	return s.tx(ctx, func(tx *sql.Tx) error {
		den, hist, reps := ms(now.Add(-r.Denials)), ms(now.Add(-r.History)), ms(now.Add(-r.Replicas))
		steps := []struct {
			q    string
			keep time.Duration
			arg  int64
		}{
			{`DELETE FROM denials WHERE at < ?`, r.Denials, den},
			{`DELETE FROM blocked_reasons WHERE block_id IN (SELECT id FROM blocked WHERE status = 'blocked' AND last_seen < ?)`, r.Denials, den},
			{`DELETE FROM blocked WHERE status = 'blocked' AND last_seen < ?`, r.Denials, den},
			{`DELETE FROM blocked_reasons WHERE block_id IN (SELECT id FROM blocked WHERE status = 'pending' AND last_seen < ?)`, r.History, hist},
			{`DELETE FROM blocked WHERE status = 'pending' AND last_seen < ?`, r.History, hist},
			{`DELETE FROM blocked_reasons WHERE block_id IN (SELECT id FROM blocked WHERE status IN ('approved', 'declined') AND last_seen < ? AND decided_at < ?)`, r.History, hist},
			{`DELETE FROM grants WHERE expires_at < ? OR (revoked_at <> 0 AND revoked_at < ?)`, r.History, hist},
			{`DELETE FROM logins WHERE expires_at < ?`, -1, ms(now)},
			{`DELETE FROM sessions WHERE replica IN (SELECT id FROM replicas WHERE heartbeat < ?)`, r.Replicas, reps},
			{`DELETE FROM replicas WHERE heartbeat < ?`, r.Replicas, reps},
		}
		for _, st := range steps {
			if st.keep == 0 {
				continue
			}
			args := []any{st.arg}
			if strings.Count(st.q, "?") == 2 {
				args = append(args, st.arg)
			}
			if _, err := s.exec(ctx, tx, st.q, args...); err != nil {
				return fmt.Errorf("store: prune: %w", err)
			}
		}
		if r.History == 0 {
			return nil
		}
		// Decided requests whose grants are gone and that were not seen
		// within the history window.
		if _, err := s.exec(ctx, tx, `DELETE FROM blocked WHERE status IN ('approved', 'declined') AND last_seen < ? AND decided_at < ?
	AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.request_id = blocked.id)`, ms(now.Add(-r.History)), ms(now.Add(-r.History))); err != nil {
			return fmt.Errorf("store: prune: %w", err)
		}
		return nil
	})
}
