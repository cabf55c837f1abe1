package approval

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/store"
)

// Defaults of Options.
const (
	DefaultFlushInterval = 50 * time.Millisecond
	DefaultSyncInterval  = 200 * time.Millisecond
	DefaultMaxPending    = 10000
	DefaultMaxDuration   = 24 * time.Hour
	heartbeatEvery       = 5 * time.Second
	// agentsSeenEvery is how often agents' last activity is written. An
	// agent at work is active in every flush interval; writing its row
	// each time cost a store transaction per 50 ms (measured ~2 µs of CPU
	// per statement under sysbench), while the console shows last-seen
	// to the second.
	agentsSeenEvery = time.Second
	// replicaLive is how old a replica's heartbeat may be for its sessions
	// to count as open.
	replicaLive = 30 * time.Second
	pruneEvery  = time.Hour
	maxKnown    = 100000
	// DefaultMaxOpenPerAgent bounds an agent's pending requests (see
	// store.DefaultMaxOpenPerAgent).
	DefaultMaxOpenPerAgent = store.DefaultMaxOpenPerAgent
	// DefaultIndexRate and DefaultIndexBurst bound how many denials per
	// second of one agent the console's index records one by one (a token
	// bucket); the audit log records every one, and the request's count
	// counts every one.
	DefaultIndexRate  = 50
	DefaultIndexBurst = 500
	// MaxStatementBytes is how much of a statement's (redacted) text a
	// request keeps; the rest is cut, and the cut said.
	MaxStatementBytes = store.MaxStatementBytes
	// MaxReasons is how many reasons a request keeps. A denial with more
	// is not approvable: no reviewer can judge a grant of hundreds of
	// columns, and its row would be as large as the statement made it.
	MaxReasons = store.MaxReasons
)

// ErrInvalid is wrapped by errors of a reviewer's input (duration, scope,
// what is granted).
var ErrInvalid = errors.New("invalid approval")

// Options configure a Service.
type Options struct {
	Store *store.Store
	// Audit records reviewer events (the gateway's audit sinks, not the
	// recorder Recorder wraps).
	Audit  audit.Recorder
	Logger *slog.Logger
	// Replica identifies this process in the store (sessions, denials).
	Replica store.Replica
	// MaxDuration caps a grant's duration (default DefaultMaxDuration).
	MaxDuration time.Duration
	// EndSessions is the default of an approval's EndSessions.
	EndSessions bool
	// Disabled: denials are indexed for the console but open no request,
	// and nothing can be approved.
	Disabled  bool
	Retention store.Retention
	// FlushInterval, SyncInterval, MaxPending: see the package doc.
	FlushInterval time.Duration
	SyncInterval  time.Duration
	MaxPending    int
	// MaxOpenPerAgent bounds each agent's pending requests (default
	// DefaultMaxOpenPerAgent).
	MaxOpenPerAgent int
	// NeverGrantable reports whether the current policy forbids granting
	// label to agent's role; nil forbids nothing beyond the decision's own
	// check.
	NeverGrantable func(agent, label string) bool
	// EndAgent ends the agent's sessions on this replica (a grant they
	// used ended and EndSessions was set).
	EndAgent func(agent string)
	Now      func() time.Time
}

// Service is one replica's side of just-in-time approvals.
type Service struct {
	opts Options
	st   *store.Store
	log  *slog.Logger
	now  func() time.Time

	grants   atomic.Pointer[grantSet]
	declined atomic.Pointer[map[string]bool]
	openMu   sync.Mutex
	open     map[string]map[string]bool // agent → its pending request ids (store's, plus this replica's since)
	known    sync.Map                   // request ids this replica opened or counted: audit events name them
	nknown   atomic.Int64
	agents   sync.Map // agent name → *agentState
	// agentIdx is a read-only copy of agents, swapped whole when an agent
	// is added (agentsMu): the per-statement lookup (touchAgent) is then a
	// plain map index, not a sync.Map's hash through an interface.
	agentIdx atomic.Pointer[map[string]*agentState]
	agentsMu sync.Mutex

	mu      sync.Mutex
	room    *sync.Cond // signalled when a flush made room
	pend    pending
	kick    chan struct{}
	flushed atomic.Int64 // flushes done, for Flush
	// flushAgents makes the next flush write agents' last activity even
	// within agentsSeenEvery (Flush asks for everything pending).
	flushAgents atomic.Bool

	subMu sync.Mutex
	subs  map[chan struct{}]struct{}

	healthMu  sync.Mutex
	healthErr error

	refreshMu sync.Mutex
	grantsVer int64
	feedVer   int64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
}

type pending struct {
	seen    map[string]*store.Seen
	allowed map[string]*store.Allowed
	denials []store.Denial
	opened  []store.Session
	closed  []string
}

func (p *pending) size() int {
	return len(p.seen) + len(p.allowed) + len(p.denials) + len(p.opened) + len(p.closed)
}

type agentState struct {
	at      atomic.Int64 // unix ms of the last activity
	written atomic.Int64 // at as last written
	mu      sync.Mutex
	role    string
	client  string
	purpose string
	// tokens and filled are the bucket of denials the index records one
	// by one (DefaultIndexRate, DefaultIndexBurst).
	tokens  float64
	filled  time.Time
	dropped int64
}

// indexDenial reports whether a denial of agent at at is recorded in the
// denial index one by one: an agent flooding denials is sampled there
// (its requests still count every one, the audit log records every one).
func (s *Service) indexDenial(agent string, at time.Time) bool {
	a := s.agentState(agent)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.filled.IsZero() {
		a.tokens, a.filled = DefaultIndexBurst, at
	}
	if dt := at.Sub(a.filled); dt > 0 {
		a.tokens = min(DefaultIndexBurst, a.tokens+dt.Seconds()*DefaultIndexRate)
		a.filled = at
	}
	if a.tokens < 1 {
		if a.dropped++; a.dropped == 1 || a.dropped%10000 == 0 {
			s.log.Warn("approvals: agent floods denials; the console's index samples them (the audit log has every one)",
				"agent", agent, "not_indexed", a.dropped)
		}
		return false
	}
	a.tokens--
	return true
}

// liveGrant is an active grant as decisions see it.
type liveGrant struct {
	store.Grant
	used  atomic.Bool // a statement on this replica ran under it
	ended atomic.Bool // its end was handled here
}

type grantSet struct {
	byAgent map[string][]*liveGrant
	byID    map[string]*liveGrant
}

// New starts a Service: it registers the replica, loads the active grants
// and declined requests, and starts the writer and the sync loop.
func New(ctx context.Context, opts Options) (*Service, error) {
	if opts.Store == nil {
		return nil, errors.New("approval: Options.Store is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxDuration <= 0 {
		opts.MaxDuration = DefaultMaxDuration
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = DefaultFlushInterval
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = DefaultSyncInterval
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = DefaultMaxPending
	}
	if opts.MaxOpenPerAgent <= 0 {
		opts.MaxOpenPerAgent = DefaultMaxOpenPerAgent
	}
	if opts.Replica.ID == "" {
		opts.Replica.ID = store.NewID("r_")
	}
	s := &Service{opts: opts, st: opts.Store, log: opts.Logger.With("component", "approvals", "replica", opts.Replica.ID),
		now: opts.Now, kick: make(chan struct{}, 1), subs: map[chan struct{}]struct{}{}}
	s.room = sync.NewCond(&s.mu)
	s.pend = newPending()
	s.grants.Store(&grantSet{byAgent: map[string][]*liveGrant{}, byID: map[string]*liveGrant{}})
	s.declined.Store(&map[string]bool{})
	s.open = map[string]map[string]bool{}
	now := s.now()
	s.opts.Replica.Started, s.opts.Replica.Heartbeat = now, now
	if err := s.st.StartReplica(ctx, s.opts.Replica); err != nil {
		return nil, err
	}
	if err := s.refresh(ctx); err != nil {
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Go(s.writer)
	s.wg.Go(s.syncer)
	return s, nil
}

func newPending() pending {
	return pending{seen: map[string]*store.Seen{}, allowed: map[string]*store.Allowed{}}
}

// Replica is this replica's id in the store.
func (s *Service) Replica() string { return s.opts.Replica.ID }

// Store is the service's store (the console reads it directly).
func (s *Service) Store() *store.Store { return s.st }

// MaxDuration is the longest grant a reviewer may give.
func (s *Service) MaxDuration() time.Duration { return s.opts.MaxDuration }

// EndSessionsDefault is the default of an approval's EndSessions.
func (s *Service) EndSessionsDefault() bool { return s.opts.EndSessions }

// Close stops the loops, writes what is pending (waiting at most until
// ctx ends) and unregisters the replica.
func (s *Service) Close(ctx context.Context) error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	s.cancel()
	s.wg.Wait()
	var errs []error
	for {
		b := s.take(true)
		if b.Empty() {
			break
		}
		if err := s.st.Write(ctx, b); err != nil {
			errs = append(errs, fmt.Errorf("approvals: write pending requests at shutdown: %w", err))
			break
		}
	}
	s.mu.Lock()
	s.room.Broadcast()
	s.mu.Unlock()
	if err := s.st.StopReplica(ctx, s.opts.Replica.ID); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Healthy reports the last write or sync error, nil when the store is
// keeping up.
func (s *Service) Healthy() error {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	return s.healthErr
}

func (s *Service) setHealth(err error) {
	s.healthMu.Lock()
	s.healthErr = err
	s.healthMu.Unlock()
}

// Subscribe returns a channel that receives (coalesced) whenever the feed,
// requests or grants may have changed, on this replica or another; cancel
// unsubscribes.
func (s *Service) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.subMu.Lock()
	s.subs[ch] = struct{}{}
	s.subMu.Unlock()
	return ch, func() {
		s.subMu.Lock()
		delete(s.subs, ch)
		s.subMu.Unlock()
	}
}

func (s *Service) notify() {
	s.subMu.Lock()
	for ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	s.subMu.Unlock()
}

// --- the statement path ---

// Exceptions are the agent's grants in force at now for a statement of
// fingerprint (a ShapeKey), and the grants they come from (for Used). A
// grant applies to the agent it was approved for while it has the role it
// had then: a grant names tables of that role's upstream, and an agent
// moved to another role (another database, other rules) must not carry it
// along.
func (s *Service) Exceptions(agent, role, fingerprint string, now time.Time) ([]sqlpolicy.Exception, []*liveGrant) {
	if s.opts.Disabled {
		return nil, nil
	}
	gs := s.grants.Load().byAgent[agent]
	if len(gs) == 0 {
		return nil, nil
	}
	var ex []sqlpolicy.Exception
	var from []*liveGrant
	for _, g := range gs {
		if !g.Active(now) || g.Role != role || (g.Scope == store.ScopeStatement && g.Fingerprint != fingerprint) {
			continue
		}
		ex = append(ex, g.Access...)
		from = append(from, g)
	}
	return ex, from
}

// Used records that a statement of the agent's shape ran under grants.
func (s *Service) Used(agent, fingerprint string, grants []*liveGrant, at time.Time) {
	for _, g := range grants {
		g.used.Store(true)
	}
	id := store.RequestID(agent, fingerprint)
	s.mu.Lock()
	a := s.pend.allowed[id]
	if a == nil {
		a = &store.Allowed{ID: id}
		s.pend.allowed[id] = a
	}
	a.Count++
	a.At = at
	s.mu.Unlock()
}

// Denial is a denied statement as the decision wrapper saw it.
type Denial struct {
	Agent, Role, Statement, Purpose string
	// Fingerprint is the statement's ShapeKey; Shape the ShapeKey of its
	// normalized text when Fingerprint is of the exact text (a
	// literal-sensitive statement), else empty. A denial nothing can be
	// granted for is keyed by Shape: only an approvable request needs the
	// exact text, and keying unapprovable ones by it would let an agent
	// open a new row per literal.
	Fingerprint, Shape string
	Decision           *sqlpolicy.Decision
	At                 time.Time
}

// Outcome is what Denied made of a denial: the request's id and the
// fingerprint it is keyed by (what the audit event names), and its status:
// pending (a reviewer can approve it), declined, or blocked (nothing in it
// can be granted).
type Outcome struct {
	ID, Fingerprint string
	Status          store.Status
}

// Denied counts a denial of the agent's statement shape. It may wait
// while the pending writes are full.
func (s *Service) Denied(d Denial) Outcome {
	never := func(label string) bool {
		return s.opts.NeverGrantable != nil && s.opts.NeverGrantable(d.Agent, label)
	}
	reasons := d.Decision.Reasons
	grantable, whyNot := Grantable(reasons, never)
	if len(reasons) > MaxReasons {
		grantable, whyNot = nil, fmt.Sprintf("the statement was denied for %d reasons; a grant is reviewed for at most %d (ask for less, or change the policy)", len(reasons), MaxReasons)
		reasons = reasons[:MaxReasons:MaxReasons]
	}
	if s.opts.Disabled {
		grantable, whyNot = nil, "just-in-time approvals are disabled (approvals.disabled)"
	}
	fp := d.Fingerprint
	if grantable == nil && d.Shape != "" {
		fp = d.Shape
	}
	id := store.RequestID(d.Agent, fp)
	status := store.StatusPending
	switch {
	case grantable == nil:
		status = store.StatusBlocked
	case (*s.declined.Load())[id]:
		status = store.StatusDeclined
	case !s.admit(d.Agent, id):
		grantable, whyNot = nil, fmt.Sprintf("agent %s has %d access requests pending, the most it may (decide or decline some first)", d.Agent, s.opts.MaxOpenPerAgent)
		status = store.StatusBlocked
		// Keyed by the shape like any unapprovable denial: still one row.
		if d.Shape != "" {
			fp = d.Shape
			id = store.RequestID(d.Agent, fp)
		}
	}
	if status != store.StatusBlocked {
		s.remember(id)
	}
	statement := truncate(d.Statement, MaxStatementBytes)
	s.touchAgent(d.Agent, d.Role, "", d.Purpose, d.At)
	out := Outcome{ID: id, Fingerprint: fp, Status: status}
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if v := s.pend.seen[id]; v != nil {
			v.Count++
			v.At = d.At
			v.Role, v.Rule, v.Reasons, v.Message, v.Hint = d.Role, d.Decision.Rule, reasons, d.Decision.Message, d.Decision.Hint
			v.Grantable, v.WhyNot = grantable, whyNot
			if d.Purpose != "" {
				v.Purpose = d.Purpose
			}
			return out
		}
		if s.pend.size() < s.opts.MaxPending || s.closed.Load() {
			break
		}
		s.wake()
		s.room.Wait()
	}
	s.pend.seen[id] = &store.Seen{Agent: d.Agent, Role: d.Role, Fingerprint: fp, Statement: statement,
		Rule: d.Decision.Rule, Reasons: reasons, Message: d.Decision.Message, Hint: d.Decision.Hint,
		Purpose: d.Purpose, Grantable: grantable, WhyNot: whyNot, Count: 1, At: d.At}
	s.wake()
	return out
}

// admit reports whether request id of agent may be pending: it already
// is, or the agent has fewer than MaxOpenPerAgent pending. Replicas each
// admit up to the bound between two loads of the store's counts; the
// store enforces it for all of them (store.Options.MaxOpenPerAgent).
func (s *Service) admit(agent, id string) bool {
	s.openMu.Lock()
	defer s.openMu.Unlock()
	ids := s.open[agent]
	if ids[id] {
		return true
	}
	if len(ids) >= s.opts.MaxOpenPerAgent {
		return false
	}
	if ids == nil {
		ids = map[string]bool{}
		s.open[agent] = ids
	}
	ids[id] = true
	return true
}

// loadOpen replaces the pending request ids with the store's.
func (s *Service) loadOpen(ctx context.Context) error {
	open, err := s.st.PendingIDs(ctx)
	if err != nil {
		return err
	}
	s.openMu.Lock()
	s.open = open
	s.openMu.Unlock()
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

func (s *Service) remember(id string) {
	if _, loaded := s.known.LoadOrStore(id, struct{}{}); !loaded {
		if s.nknown.Add(1) > maxKnown {
			s.known.Clear()
			s.nknown.Store(0)
		}
	}
}

// requestOf is the request id an audit event of a blocked statement
// names, or "" when this replica opened none for it.
func (s *Service) requestOf(agent, fingerprint string) string {
	id := store.RequestID(agent, fingerprint)
	if _, ok := s.known.Load(id); ok {
		return id
	}
	return ""
}

// add queues one index write, waiting while the pending writes are full.
func (s *Service) add(f func(p *pending)) {
	s.mu.Lock()
	for s.pend.size() >= s.opts.MaxPending && !s.closed.Load() {
		s.wake()
		s.room.Wait()
	}
	f(&s.pend)
	s.mu.Unlock()
	s.wake()
}

func (s *Service) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// agentState returns the state of agent, adding it when new.
func (s *Service) agentState(agent string) *agentState {
	if idx := s.agentIdx.Load(); idx != nil {
		if a := (*idx)[agent]; a != nil {
			return a
		}
	}
	s.agentsMu.Lock()
	defer s.agentsMu.Unlock()
	v, _ := s.agents.LoadOrStore(agent, &agentState{})
	a := v.(*agentState)
	var idx map[string]*agentState
	if old := s.agentIdx.Load(); old != nil {
		idx = maps.Clone(*old)
	} else {
		idx = map[string]*agentState{}
	}
	idx[agent] = a
	s.agentIdx.Store(&idx)
	return a
}

func (s *Service) touchAgent(name, role, client, purpose string, at time.Time) {
	if name == "" {
		return
	}
	a := s.agentState(name)
	if ms := at.UnixMilli(); ms > a.at.Load() {
		a.at.Store(ms)
	}
	if role != "" || client != "" || purpose != "" {
		a.mu.Lock()
		if role != "" {
			a.role = role
		}
		if client != "" {
			a.client = client
		}
		if purpose != "" {
			a.purpose = purpose
		}
		a.mu.Unlock()
	}
}

// --- writing behind ---

// take swaps out the pending writes as one batch; agents' last activity
// is included when withAgents is set.
func (s *Service) take(withAgents bool) *store.Batch {
	s.mu.Lock()
	p := s.pend
	s.pend = newPending()
	s.mu.Unlock()
	b := &store.Batch{Denials: p.denials, Opened: p.opened, Closed: p.closed}
	for _, v := range p.seen {
		b.Seen = append(b.Seen, *v)
	}
	for _, v := range p.allowed {
		b.Allowed = append(b.Allowed, *v)
	}
	if !withAgents {
		return b
	}
	s.agents.Range(func(k, v any) bool {
		a := v.(*agentState)
		at := a.at.Load()
		if at > a.written.Load() {
			a.written.Store(at)
			a.mu.Lock()
			b.Agents = append(b.Agents, store.AgentSeen{Name: k.(string), Role: a.role, Client: a.client, Purpose: a.purpose, At: time.UnixMilli(at)})
			a.mu.Unlock()
		}
		return true
	})
	return b
}

func (s *Service) writer() {
	tick := time.NewTicker(s.opts.FlushInterval)
	defer tick.Stop()
	var lastBeat, lastPrune, lastAgents time.Time
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		case <-s.kick:
			// Coalesce what arrives within one interval.
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(s.opts.FlushInterval):
			}
		}
		now := s.now()
		withAgents := now.Sub(lastAgents) >= agentsSeenEvery
		if s.flushAgents.Swap(false) {
			withAgents = true
		}
		if withAgents {
			lastAgents = now
		}
		b := s.take(withAgents)
		if now.Sub(lastBeat) >= heartbeatEvery {
			r := s.opts.Replica
			r.Heartbeat = now
			b.Replica = &r
			lastBeat = now
		}
		changed := len(b.Seen) > 0 || len(b.Denials) > 0 || len(b.Allowed) > 0 || len(b.Opened) > 0 || len(b.Closed) > 0
		for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
			err := s.st.Write(s.ctx, b)
			if err == nil {
				s.setHealth(nil)
				break
			}
			if s.ctx.Err() != nil {
				// Shutting down: Close writes this batch's successors;
				// put this one back first.
				s.putBack(b)
				return
			}
			s.setHealth(fmt.Errorf("store write: %w", err))
			s.log.Error("approvals: cannot write to the store; retrying (statements that add requests wait when the queue is full)", "err", err, "retry_in", backoff)
			select {
			case <-s.ctx.Done():
				s.putBack(b)
				return
			case <-time.After(backoff):
			}
		}
		s.flushed.Add(1)
		s.mu.Lock()
		s.room.Broadcast()
		s.mu.Unlock()
		if changed {
			s.notify()
		}
		if now.Sub(lastPrune) >= pruneEvery {
			lastPrune = now
			if err := s.st.Prune(s.ctx, s.opts.Retention); err != nil && s.ctx.Err() == nil {
				s.log.Warn("approvals: prune", "err", err)
			}
		}
	}
}

// putBack returns an unwritten batch to the pending writes.
func (s *Service) putBack(b *store.Batch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range b.Seen {
		if cur := s.pend.seen[store.RequestID(v.Agent, v.Fingerprint)]; cur != nil {
			cur.Count += v.Count
			continue
		}
		s.pend.seen[store.RequestID(v.Agent, v.Fingerprint)] = &v
	}
	for _, v := range b.Allowed {
		if cur := s.pend.allowed[v.ID]; cur != nil {
			cur.Count += v.Count
			continue
		}
		s.pend.allowed[v.ID] = &v
	}
	s.pend.denials = append(b.Denials, s.pend.denials...)
	s.pend.opened = append(b.Opened, s.pend.opened...)
	s.pend.closed = append(b.Closed, s.pend.closed...)
	for _, a := range b.Agents {
		if v, ok := s.agents.Load(a.Name); ok {
			v.(*agentState).written.Store(0)
		}
	}
}

// Flush writes what is pending now and waits until it is written or ctx
// ends (tests; keyhole itself never waits for the store).
func (s *Service) Flush(ctx context.Context) error {
	start := s.flushed.Load()
	s.flushAgents.Store(true)
	s.wake()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for s.flushed.Load() < start+2 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// --- keeping grants in sync ---

func (s *Service) syncer() {
	tick := time.NewTicker(s.opts.SyncInterval)
	defer tick.Stop()
	var lastEnded, lastOpen time.Time
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		now := s.now()
		s.expire(now)
		gv, err := s.st.Counter(s.ctx, "grants")
		if err == nil {
			s.refreshMu.Lock()
			stale := gv != s.grantsVer
			s.refreshMu.Unlock()
			if stale {
				err = s.refresh(s.ctx)
				s.notify()
			}
		}
		if err == nil {
			var fv int64
			if fv, err = s.st.Counter(s.ctx, "feed"); err == nil {
				s.refreshMu.Lock()
				moved := fv != s.feedVer
				s.feedVer = fv
				s.refreshMu.Unlock()
				if moved {
					s.notify()
					// Other replicas' new requests count against the
					// agents' bound here too.
					if now.Sub(lastOpen) >= time.Second {
						lastOpen = now
						err = s.loadOpen(s.ctx)
					}
				}
			}
		}
		if err != nil && s.ctx.Err() == nil {
			s.setHealth(fmt.Errorf("store sync: %w", err))
			s.log.Warn("approvals: cannot read grants from the store; decisions use the grants last read", "err", err)
		}
		if now.Sub(lastEnded) >= time.Second {
			lastEnded = now
			s.auditEnded(now)
		}
	}
}

// refresh reloads the active grants and the declined requests. Grants in
// force here that the store no longer has active (revoked on another
// replica) end here too.
func (s *Service) refresh(ctx context.Context) error {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	ver, err := s.st.Counter(ctx, "grants")
	if err != nil {
		return err
	}
	now := s.now()
	grants, err := s.st.Grants(ctx, store.GrantFilter{ActiveAt: now, Limit: 100000})
	if err != nil {
		return err
	}
	declined, err := s.st.Requests(ctx, store.RequestFilter{Statuses: []store.Status{store.StatusDeclined}, Limit: 100000})
	if err != nil {
		return err
	}
	old := s.grants.Load()
	next := &grantSet{byAgent: map[string][]*liveGrant{}, byID: map[string]*liveGrant{}}
	for _, g := range grants {
		lg := old.byID[g.ID]
		if lg == nil {
			lg = &liveGrant{Grant: g}
		}
		next.byID[g.ID] = lg
		next.byAgent[g.Agent] = append(next.byAgent[g.Agent], lg)
	}
	s.grants.Store(next)
	d := make(map[string]bool, len(declined))
	for _, r := range declined {
		d[r.ID] = true
	}
	s.declined.Store(&d)
	if err := s.loadOpen(ctx); err != nil {
		return err
	}
	s.grantsVer = ver
	for id, lg := range old.byID {
		if next.byID[id] == nil {
			s.ended(lg)
		}
	}
	return nil
}

// expire handles grants that reached their end: decisions stopped using
// them already (they compare the clock); here the sessions that used
// them end, if the grant says so.
func (s *Service) expire(now time.Time) {
	for _, lg := range s.grants.Load().byID {
		if !lg.Active(now) {
			s.ended(lg)
		}
	}
}

func (s *Service) ended(lg *liveGrant) {
	if !lg.ended.CompareAndSwap(false, true) {
		return
	}
	if lg.EndSessions && lg.used.Load() && s.opts.EndAgent != nil {
		s.log.Info("grant ended; ending the agent's sessions that used it", "grant", lg.ID, "agent", lg.Agent)
		s.opts.EndAgent(lg.Agent)
	}
}

// auditEnded records each grant's expiry once across replicas.
func (s *Service) auditEnded(now time.Time) {
	ended, err := s.st.EndedUnrecorded(s.ctx, now)
	if err != nil {
		return
	}
	for _, g := range ended {
		won, err := s.st.ClaimEnded(s.ctx, g.ID)
		if err != nil || !won || !g.RevokedAt.IsZero() {
			continue // revocations are audited where they are made
		}
		s.record(audit.Event{Time: g.Expires, Kind: audit.KindGrantExpired, Agent: g.Agent, Role: g.Role, Request: g.RequestID,
			Grant: g.ID, Purpose: g.Purpose, Scope: string(g.Scope), Access: g.Access, Expires: g.Expires,
			Fingerprint: g.Fingerprint, Statement: g.Statement})
	}
}

func (s *Service) record(ev audit.Event) {
	if s.opts.Audit == nil {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = s.now()
	}
	ev.Session = "replica:" + s.opts.Replica.ID
	s.opts.Audit.Record(ev)
}
