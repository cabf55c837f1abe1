package pganalyze

import (
	"slices"
	"strings"
	"sync/atomic"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// MaxSearchPaths bounds the search paths a Session keeps as possibly in
// effect. Past it the session has lost track: unqualified relation and
// function names are refused until a search_path change that certainly
// took effect (see Apply).
const MaxSearchPaths = 8

// Session is the per-connection state that changes how later text is
// resolved: the search path and the SQL-level prepared statements. The
// proxies own one per client connection and call Apply after a statement
// the policy allowed has run successfully upstream.
//
// The login's search path is the catalog's (catalog.Catalog.SearchPath)
// unless the session learned its own from the upstream after login
// (LearnProbe): with Vault dynamic credentials each session logs in as
// another role than the catalog's, whose starting path may differ.
//
// After login the session does not query the upstream for its
// search_path. It keeps
// every search path that may be in effect: a change made inside a
// transaction block, by SET LOCAL, or in a text or pipeline that may still
// fail, can be rolled back (ROLLBACK, ROLLBACK TO SAVEPOINT, an error in an
// implicit transaction), so the earlier paths stay candidates until a
// change certainly sticks. The analyzer resolves unqualified names under
// every candidate, and the policy must allow every relation they may name.
//
// A Session is not safe for concurrent use; a connection serves one
// statement at a time. It implements sqlpolicy.Session; Analyzer.NewSession
// returns one.
type Session struct {
	// SearchPath is the search_path most recently set, in order, as set
	// ("$user" and schemas Postgres would skip included: the analyzer
	// resolves it against the catalog, see Analyzer.searched). nil means
	// the login's: the session's starting path when it learned one
	// (LearnProbe), else the catalog's.
	SearchPath []string
	// Prepared maps SQL-level PREPARE names to the analysis of the prepared
	// statement.
	Prepared map[string]*sqlpolicy.Statement

	// paths, when more than one search path may be in effect, lists every
	// one (nil entries: the login's), SearchPath's value first; nil when
	// SearchPath alone is.
	paths [][]string
	// pathLost is set when the candidates exceeded MaxSearchPaths or a
	// change's value was unknown.
	pathLost bool
	// notes counts the Notes of texts that may change the search path
	// (NoteMark). notedAt holds, for each entry
	// of paths, the count when a Note last added or met it (0: only
	// applied), and lostAt the count when a Note lost track: a settled
	// change of a text keeps what was noted after its decision (its mark),
	// by texts that may still run after it (pipelined simple Queries).
	notes   uint64
	notedAt []uint64
	lostAt  uint64
	// inTx is set while a transaction block may be open (BEGIN applied or
	// allowed, and no COMMIT/ROLLBACK applied since).
	inTx bool
	// pathEpoch counts search path changes; prepEpoch is the epoch each
	// prepared statement was analyzed in. Postgres re-resolves a prepared
	// statement's names when search_path changes, so an older analysis no
	// longer describes what EXECUTE runs.
	pathEpoch uint64
	prepEpoch map[string]uint64
	// identity is set once a SET ROLE or SET SESSION AUTHORIZATION (a
	// policy may allow them) may have run: the current user is then no
	// longer the login, so neither its USAGE on schemas nor what "$user"
	// names is the catalog's (see Analyzer.searched).
	identity bool
	// generation identifies the current state; see Generation.
	generation uint64
	// start is what the upstream session started with (LearnProbe); nil
	// when sessions start on the catalog's path.
	start *startState
	// recent is the engine's memo of the session's last fast-path text.
	recent sqlpolicy.RecentText
}

// RecentText implements sqlpolicy.RecentKeeper.
func (s *Session) RecentText() *sqlpolicy.RecentText { return &s.recent }

// stateCounter hands out process-unique generations, so two sessions that
// each prepared a statement named "s1" never share a cache key.
var stateCounter atomic.Uint64

// Generation identifies the session state that affects resolution. It is 0
// for a session in its initial state (no prepared statements, the login's
// search path and no other candidate) on the catalog's path, so such
// sessions share decision cache entries. A session in its initial state on
// a starting path it learned (LearnProbe) has the generation of that path,
// shared only with sessions that started on the same path. Any change
// gives a process-unique value.
func (s *Session) Generation() uint64 {
	if s == nil {
		return 0
	}
	return s.generation
}

func (s *Session) changed() {
	if len(s.Prepared) == 0 && s.SearchPath == nil && s.paths == nil && !s.pathLost && !s.identity {
		s.generation = 0
		if s.start != nil {
			s.generation = s.start.gen
		}
		return
	}
	s.generation = stateCounter.Add(1)
}

// SearchPaths reports the search paths that may be in effect. With one
// (the usual case) paths is nil and SearchPath (nil: the login's) is it;
// otherwise paths lists every candidate, SearchPath's value first, a nil
// entry standing for the login's path. ok is false when the session lost
// track (more than MaxSearchPaths candidates, or a change to a value that
// was not a literal): unqualified names cannot be resolved safely.
func (s *Session) SearchPaths() (paths [][]string, ok bool) {
	if s == nil {
		return nil, true
	}
	return s.paths, !s.pathLost
}

var _ sqlpolicy.Session = (*Session)(nil)

// Reset returns the session to the state of a new connection (the login's
// search path, no prepared statements, no transaction block). What the
// session learned of its login stays: the upstream session is the same.
func (s *Session) Reset() {
	// (The Note count goes on: marks taken before stay below later notes.)
	*s = Session{start: s.start, notes: s.notes}
	s.changed()
}

// Apply records the effects of a text that ran successfully upstream, as
// a whole (a simple Query answered without error): PREPARE adds a name,
// DEALLOCATE removes it, transaction control opens and closes the block,
// and search_path changes (SET, RESET, set_config, DISCARD ALL) move the
// session's search path. A search_path change outside a transaction block
// has then certainly taken effect and replaces every candidate; one inside
// a block, or by SET LOCAL, may be undone and is added to the candidates.
//
// Other settings are not applied: a setting change that would affect
// resolution is denied by the policy unless explicitly allowed.
func (s *Session) Apply(a *sqlpolicy.Access) { s.apply(a, true, s.notes) }

// NoteMark implements sqlpolicy.Session: the number of Notes so far of
// texts that may change the search path.
func (s *Session) NoteMark() uint64 { return s.notes }

// ApplyMarked is Apply for a text decided when NoteMark gave mark. A text
// the client pipelined behind it was decided, and noted, before this one's
// answer came, and runs after it: a search_path change of this text that
// sticks replaces every candidate but those noted after mark (a later SET
// in flight may still put them in effect).
func (s *Session) ApplyMarked(a *sqlpolicy.Access, mark uint64) { s.apply(a, true, mark) }

// ApplyUncommitted is Apply for statements whose implicit transaction may
// still be rolled back by a later error: an extended-protocol Execute
// answered before its Sync (a pipeline). Their search_path changes are
// added to the candidates without dropping any.
func (s *Session) ApplyUncommitted(a *sqlpolicy.Access) { s.apply(a, false, 0) }

func (s *Session) apply(a *sqlpolicy.Access, settled bool, mark uint64) {
	if a == nil {
		return
	}
	for i := range a.Statements {
		st := &a.Statements[i]
		switch {
		case st.PrepareName != "" && st.Prepared != nil:
			if s.Prepared == nil {
				s.Prepared = make(map[string]*sqlpolicy.Statement)
			}
			s.Prepared[st.PrepareName] = st.Prepared
			if s.prepEpoch == nil {
				s.prepEpoch = make(map[string]uint64)
			}
			s.prepEpoch[st.PrepareName] = s.pathEpoch
			s.changed()
		case st.DeallocateAll:
			if len(s.Prepared) > 0 {
				s.Prepared = nil
				s.changed()
			}
		case len(st.Deallocate) > 0:
			for _, n := range st.Deallocate {
				delete(s.Prepared, n)
				delete(s.prepEpoch, n)
			}
			s.changed()
		}
		switch st.Tx {
		case sqlpolicy.TxBegin:
			s.inTx = true
		case sqlpolicy.TxEnd:
			s.inTx = false
		}
		for _, set := range runSettings(st) {
			if identitySetting(set) && !s.identity {
				s.identity = true
				s.changed()
			}
			if set.Name != "search_path" || set.Show {
				continue
			}
			s.setPath(set, settled && !s.inTx && !set.Local, mark)
			s.pathEpoch++
			s.changed()
		}
	}
}

// identitySetting reports a change of who the session is. It stays
// noted even after RESET ROLE: keyhole does not follow which user is
// current, only that it may not be the login. A reset (RESET ROLE, RESET
// SESSION AUTHORIZATION, DISCARD ALL) is none: while nothing changed who
// the session is, the session and current user are the login, and a
// reset leaves them so. (A reset after SET ROLE does not clear the note:
// a SET ROLE noted may still be in flight behind it.)
func identitySetting(set sqlpolicy.Setting) bool {
	return !set.Show && !set.Reset && (set.Name == "role" || set.Name == "session_authorization")
}

// runSettings returns the settings a statement changes when it runs: its
// own, and those of the statement EXECUTE or EXPLAIN ANALYZE runs (not
// those of a statement PREPARE only prepares).
func runSettings(st *sqlpolicy.Statement) []sqlpolicy.Setting {
	switch {
	case st.Verb == sqlpolicy.VerbExecute && st.Prepared != nil && len(st.Prepared.Settings) > 0:
		return append(slices.Clip(st.Settings), st.Prepared.Settings...)
	case st.ExplainAnalyze && st.Explained != nil && len(st.Explained.Settings) > 0:
		return append(slices.Clip(st.Settings), st.Explained.Settings...)
	}
	return st.Settings
}

// PreparedCurrent reports whether the prepared statement name was analyzed
// under the search paths now possibly in effect. Postgres re-resolves a
// prepared statement's names after a search_path change, so EXECUTE of an
// older one must not be decided on its old analysis.
func (s *Session) PreparedCurrent(name string) bool {
	if s == nil {
		return true
	}
	e, ok := s.prepEpoch[name]
	return !ok || e == s.pathEpoch
}

// Note records, when a text is allowed and before it runs, what it may do
// to the search path and the transaction block: a text that fails after
// a COMMIT in its middle has changed the path without ever being applied.
// It only adds candidates. A prepared statement name the text prepares
// again or deallocates is forgotten until Apply says what it names: an
// EXECUTE of it pipelined behind this text is decided before the text
// runs, and runs after it (so it is refused as unknown meanwhile; a
// PREPARE that fails, of a name that exists, leaves it forgotten).
func (s *Session) Note(a *sqlpolicy.Access) {
	if s == nil || a == nil {
		return
	}
	counted := false
	for i := range a.Statements {
		st := &a.Statements[i]
		if st.Tx == sqlpolicy.TxBegin {
			s.inTx = true
		}
		if s.forget(st) {
			s.changed()
		}
		for _, set := range runSettings(st) {
			if identitySetting(set) && !s.identity {
				s.identity = true
				s.changed()
			}
			if set.Name != "search_path" || set.Show {
				continue
			}
			if !counted {
				// (Only texts that may change the path count: a Note of
				// anything else writes nothing.)
				s.notes++
				counted = true
			}
			before := len(s.paths)
			lost := s.pathLost
			s.addCandidate(pathOf(set), set.Unknown, s.notes)
			if len(s.paths) != before || s.pathLost != lost {
				s.pathEpoch++
				s.changed()
			}
		}
	}
}

// forget drops the prepared statement names st prepares or deallocates
// (see Note) and reports whether it dropped any.
func (s *Session) forget(st *sqlpolicy.Statement) bool {
	drop := func(n string) bool {
		if _, ok := s.Prepared[n]; !ok {
			return false
		}
		delete(s.Prepared, n)
		delete(s.prepEpoch, n)
		return true
	}
	switch {
	case st.PrepareName != "":
		return drop(st.PrepareName)
	case st.DeallocateAll:
		if len(s.Prepared) == 0 {
			return false
		}
		s.Prepared, s.prepEpoch = nil, nil
		return true
	}
	dropped := false
	for _, n := range st.Deallocate {
		dropped = drop(n) || dropped
	}
	return dropped
}

// pathOf is the search path a search_path change sets: nil for a reset to
// the login's.
func pathOf(set sqlpolicy.Setting) []string {
	if set.Reset {
		return nil
	}
	p := splitSearchPath(set.Value)
	if p == nil {
		p = []string{}
	}
	return p
}

// setPath applies one search_path change. certain means it sticks: it
// then replaces every candidate but those noted after mark (by texts that
// may run after this one).
func (s *Session) setPath(set sqlpolicy.Setting, certain bool, mark uint64) {
	p := pathOf(set)
	if certain {
		paths, notedAt := s.paths, s.notedAt
		s.paths, s.notedAt = nil, nil
		s.pathLost = set.Unknown || s.lostAt > mark
		s.SearchPath = p
		for i, q := range paths {
			if notedAt[i] > mark {
				s.addCandidate(q, false, notedAt[i])
			}
		}
		return
	}
	s.addCandidate(p, set.Unknown, 0)
	if !set.Local {
		s.SearchPath = p
		// Keep SearchPath's value first among the candidates.
		if i := s.indexPath(p); i > 0 {
			s.paths[0], s.paths[i] = s.paths[i], s.paths[0]
		}
	}
}

// addCandidate adds p to the paths that may be in effect; noted is the
// Note count when a Note adds it (0 from Apply).
func (s *Session) addCandidate(p []string, unknown bool, noted uint64) {
	if unknown {
		s.lose(noted)
	}
	if s.paths == nil {
		if samePath(s.SearchPath, p) {
			if noted > 0 {
				// SearchPath itself may be what a later text sets: it
				// becomes a candidate that a settled change keeps.
				s.paths, s.notedAt = [][]string{s.SearchPath}, []uint64{noted}
			}
			return
		}
		s.paths, s.notedAt = [][]string{s.SearchPath}, []uint64{0}
	}
	if i := s.indexPath(p); i >= 0 {
		s.notedAt[i] = max(s.notedAt[i], noted)
		return
	}
	if len(s.paths) >= MaxSearchPaths {
		s.lose(noted)
		return
	}
	s.paths = append(s.paths, p)
	s.notedAt = append(s.notedAt, noted)
}

// lose records that the session lost track of its search path (by a Note
// at count noted, or 0 from Apply).
func (s *Session) lose(noted uint64) {
	s.pathLost = true
	s.lostAt = max(s.lostAt, noted)
}

func (s *Session) indexPath(p []string) int {
	return slices.IndexFunc(s.paths, func(q []string) bool { return samePath(q, p) })
}

// samePath compares two paths; nil (the login's) equals only nil.
func samePath(a, b []string) bool {
	if (a == nil) != (b == nil) {
		return false
	}
	return slices.Equal(a, b)
}

// splitSearchPath turns the analyzer's normalised search_path value (names
// separated by commas, already unquoted) into a list.
func splitSearchPath(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
