package sqlpolicy

import (
	"strings"
	"sync/atomic"
)

// Session is the per-connection state that changes how later text is
// resolved: the search path and the SQL-level prepared statements. The
// proxies own one per client connection and call Apply after a statement
// the policy allowed has run successfully upstream.
//
// A Session is not safe for concurrent use; a connection serves one
// statement at a time.
type Session struct {
	// SearchPath is the effective search_path of the upstream login, in
	// order, with "$user" already substituted. Empty means the catalog's.
	SearchPath []string
	// Prepared maps SQL-level PREPARE names to the analysis of the prepared
	// statement.
	Prepared map[string]*Statement
	// generation identifies the current state; see Generation.
	generation uint64
}

// stateCounter hands out process-unique generations, so two sessions that
// each prepared a statement named "s1" never share a cache key.
var stateCounter atomic.Uint64

// Generation identifies the session state that affects resolution. It is 0
// for a session in its initial state (no prepared statements, the login's
// search path), so such sessions share decision cache entries; any change
// gives a process-unique value.
func (s *Session) Generation() uint64 {
	if s == nil {
		return 0
	}
	return s.generation
}

func (s *Session) changed() {
	if len(s.Prepared) == 0 && s.SearchPath == nil {
		s.generation = 0
		return
	}
	s.generation = stateCounter.Add(1)
}

// Apply records the effects of statements that ran: PREPARE adds a name,
// DEALLOCATE removes it. Settings are not applied: a setting change that
// would affect resolution is denied by the policy unless explicitly allowed,
// and an allowed search_path change is recorded here.
func (s *Session) Apply(a *Access) {
	for i := range a.Statements {
		st := &a.Statements[i]
		switch {
		case st.PrepareName != "" && st.Prepared != nil:
			if s.Prepared == nil {
				s.Prepared = make(map[string]*Statement)
			}
			s.Prepared[st.PrepareName] = st.Prepared
			s.changed()
		case st.DeallocateAll:
			if len(s.Prepared) > 0 {
				s.Prepared = nil
				s.changed()
			}
		case len(st.Deallocate) > 0:
			for _, n := range st.Deallocate {
				delete(s.Prepared, n)
			}
			s.changed()
		}
		for _, set := range st.Settings {
			if set.Name == "search_path" && !set.Show && !set.Local {
				s.SearchPath = nil
				if !set.Reset {
					s.SearchPath = splitSearchPath(set.Value)
				}
				s.changed()
			}
		}
	}
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
