package pganalyze

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// sessionProbe reads what a new upstream session starts with: the current
// user (what "$user" names) and current_schemas(true), the schemas
// Postgres searches for unqualified names, in order, after role and
// database settings, "$user" and USAGE have been applied (a schema the
// user may not use is not listed), pg_catalog placed. to_json gives the
// list in a quoting encoding/json reads. Every name is schema-qualified
// (CURRENT_USER is a keyword): the path being learned may list a schema
// before pg_catalog. A plain SELECT outside a transaction block changes
// nothing the session's user can observe but pg_stat_activity's last
// query.
const sessionProbe = `SELECT CURRENT_USER, pg_catalog.to_json(pg_catalog.current_schemas(true))`

// SessionProbe implements sqlpolicy.SessionProber. When sessions log in as
// the catalog's login (catalog.Catalog.SessionsShareLogin), they start on
// the catalog's SearchPath and need no probe; otherwise each session must
// learn its own starting path (Session.LearnProbe), or unqualified names
// would be resolved along a path Postgres does not search for it.
func (a *Analyzer) SessionProbe() string {
	if a.cat.SessionsShareLogin {
		return ""
	}
	return sessionProbe
}

// startState is the state an upstream session started in, as the
// session probe read it.
type startState struct {
	// user is current_user at login.
	user string
	// path is current_schemas(true) at login, without temporary schemas
	// (none exist before the session makes a temporary object, and the
	// catalog leaves them out too), pg_catalog placed: exactly what
	// Postgres searches while the session's search_path is the login's.
	path []string
	// gen is the generation of a session in its initial state on this
	// path (see startGeneration).
	gen uint64
}

// LearnProbe implements sqlpolicy.ProbeLearner: the row of sessionProbe.
// From then on the session's login path (what it starts with, and what
// RESET search_path, RESET ALL and DISCARD ALL return to) is the one read,
// not the catalog's, and "$user" in a path the session sets names the
// session's own user.
func (s *Session) LearnProbe(row [][]byte) error {
	if len(row) != 2 {
		return fmt.Errorf("session probe: %d values, want 2", len(row))
	}
	if len(row[0]) == 0 || row[1] == nil {
		return errors.New("session probe: no current user or current_schemas")
	}
	var names []string
	if err := json.Unmarshal(row[1], &names); err != nil || names == nil {
		return fmt.Errorf("session probe: current_schemas is not a JSON array of names: %v", err)
	}
	path := make([]string, 0, len(names))
	for _, n := range names {
		if n == "" {
			return errors.New("session probe: current_schemas: empty schema name")
		}
		if isTempSchema(n) {
			continue
		}
		path = append(path, n)
	}
	path = searchPath(path)
	s.start = &startState{user: string(row[0]), path: path, gen: startGeneration(path)}
	s.changed()
	return nil
}

var _ sqlpolicy.ProbeLearner = (*Session)(nil)

// isTempSchema reports a session's temporary schemas (pg_temp_N and its
// TOAST schema), as catalog.InspectPostgres leaves them out.
func isTempSchema(s string) bool {
	return strings.HasPrefix(s, "pg_temp_") || strings.HasPrefix(s, "pg_toast_temp_")
}

// startGens gives sessions in their initial state on one starting path a
// generation of their own, shared with each other and never with sessions
// on the catalog's path (generation 0) or on another starting path: their
// decisions are cached under it. Analysis in the initial state depends on
// the session only through that path (in a text that sets search_path,
// "$user" and USAGE are resolved as for an unknown user, see
// Analyzer.withChanges), so sessions of different users on one path may
// share. The map holds at most maxStartGens paths (a database has a few);
// past it a session gets a generation of its own.
var startGens struct {
	sync.Mutex
	m map[string]uint64
}

const maxStartGens = 1024

func startGeneration(path []string) uint64 {
	// Schema names hold no NUL byte.
	key := strings.Join(path, "\x00")
	startGens.Lock()
	defer startGens.Unlock()
	if g, ok := startGens.m[key]; ok {
		return g
	}
	g := stateCounter.Add(1)
	if startGens.m == nil {
		startGens.m = make(map[string]uint64)
	}
	if len(startGens.m) < maxStartGens {
		startGens.m[key] = g
	}
	return g
}
