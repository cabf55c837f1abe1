package myanalyze

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pingcap/tidb/pkg/parser/mysql"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// Session is one MySQL connection's state that changes how later text is
// lexed and resolved: the current database, the sql_mode read at connect,
// the client character set, SQL-level prepared statements, and whether a
// transaction is open. The proxy owns one per client connection:
//
//   - after connecting upstream, SetSQLMode(@@session.sql_mode) and
//     SetClientCharset(the handshake's character set);
//   - SetDatabase after COM_INIT_DB succeeded (or Check the text
//     "USE `db`" and Apply it), and whenever the upstream reports a schema
//     change (SESSION_TRACK_SCHEMA);
//   - Reset on COM_RESET_CONNECTION (and COM_CHANGE_USER, if ever relayed),
//     then SetSQLMode / SetDatabase again with what the reset connection has;
//   - Apply after an allowed text ran without error (Engine.Check calls
//     Note before it runs).
//
// A Session is not safe for concurrent use. It implements
// sqlpolicy.Session; Analyzer.NewSession returns one.
type Session struct {
	// db is the current database; "" with dbSet false means the login's
	// (the catalog's Database).
	db    string
	dbSet bool
	// dbLost is set when a text that may have changed the current
	// database was allowed but not reported as applied (it failed, or
	// the proxy has not said): unqualified names are refused until
	// SetDatabase or an applied USE.
	dbLost bool
	// mode is the lexing-relevant sql_mode; modeProblem is set when the
	// connection's sql_mode is not one keyhole models (ORACLE, an unknown
	// flag): every text is refused.
	mode        mysql.SQLMode
	modeSet     bool
	modeProblem string
	// charsetProblem is set for a client character set that can hide a
	// backslash or a quote in a multibyte character.
	charsetProblem string
	// prepared maps SQL-level PREPARE names (case-insensitive in MySQL,
	// stored lower-case) to the analysis of the prepared statement, and
	// prepDB to the database it was analyzed under.
	prepared map[string]*sqlpolicy.Statement
	prepDB   map[string]string
	inTx     bool
	// defMode is the analyzer's default sql_mode (Options.SQLMode), which
	// a session lexes under until it is told its own.
	defMode mysql.SQLMode

	generation uint64
}

var _ sqlpolicy.Session = (*Session)(nil)

// stateCounter hands out process-unique generations for sessions with
// prepared statements or lost track of their database.
var stateCounter atomic.Uint64

// stateIDs interns the (database, lexing mode) states of sessions without
// other state: sessions that agree share decision cache entries. The key
// space is bounded: a database must exist in the catalog for USE to be
// allowed, and only a few mode bits count.
var (
	stateMu  sync.Mutex
	stateIDs = map[stateKey]uint64{}
)

type stateKey struct {
	db    string
	dbSet bool
	// mode is the lexing part of the sql_mode the session's texts are
	// lexed under: the one it was told, else the analyzer's default.
	mode    mysql.SQLMode
	problem string
}

// Generation implements sqlpolicy.Session: 0 for a session in the
// analyzer's initial state (the login's database, texts lexed as under the
// analyzer's default sql_mode), else an id of its (database, lexing mode)
// state, shared by sessions in the same state, or a process-unique value
// for a session with prepared statements or a lost database. Texts
// normalize (NormalizeIn) and analyze alike in sessions of one generation.
func (s *Session) Generation() uint64 {
	if s == nil {
		return 0
	}
	return s.generation
}

func (s *Session) changed() {
	if len(s.prepared) > 0 || s.dbLost {
		s.generation = stateCounter.Add(1)
		return
	}
	mode := s.defMode
	if s.modeSet {
		mode = s.mode
	}
	k := stateKey{db: s.db, dbSet: s.dbSet, mode: mode & lexBits, problem: s.modeProblem + s.charsetProblem}
	if k == (stateKey{mode: s.defMode & lexBits}) {
		s.generation = 0
		return
	}
	stateMu.Lock()
	defer stateMu.Unlock()
	id, ok := stateIDs[k]
	if !ok {
		id = stateCounter.Add(1)
		if len(stateIDs) < 1<<16 {
			stateIDs[k] = id
		}
	}
	s.generation = id
}

// lexBits are the sql_mode flags that change lexing or parsing.
const lexBits = mysql.ModeANSIQuotes | mysql.ModeNoBackslashEscapes | mysql.ModePipesAsConcat |
	mysql.ModeIgnoreSpace | mysql.ModeHighNotPrecedence

// Database returns the session's current database ("" when it is the
// login's) and whether the session knows it.
func (s *Session) Database() (db string, known bool) {
	return s.db, !s.dbLost
}

// SetDatabase records the current database, as reported by the upstream
// (after COM_INIT_DB or USE succeeded, or from session state tracking).
func (s *Session) SetDatabase(db string) {
	s.db, s.dbSet, s.dbLost = db, true, false
	s.changed()
}

// SetSQLMode records the connection's sql_mode as the upstream reports it
// (SELECT @@session.sql_mode at connect, and after COM_RESET_CONNECTION).
// A mode keyhole does not model (ORACLE, MSSQL, DB2, POSTGRESQL, MAXDB,
// or a flag it does not know) makes every later text be refused, and is
// returned as an error so the proxy can end the connection with a clear
// message instead.
func (s *Session) SetSQLMode(mode string) error {
	m, err := parseSQLMode(mode)
	s.modeSet = true
	if err != nil {
		s.mode, s.modeProblem = 0, err.Error()
		s.changed()
		return err
	}
	s.mode, s.modeProblem = m, ""
	s.changed()
	return nil
}

// SetClientCharset records the connection's client character set (the
// handshake's collation, or character_set_client). Character sets whose
// multibyte characters can end in a backslash or quote byte (big5, cp932,
// gbk, gb18030, sjis) are refused: the parser would see a string end
// where MariaDB sees an escaped character. The error is also remembered:
// every later text is refused.
func (s *Session) SetClientCharset(cs string) error {
	if safeCharset(cs) {
		s.charsetProblem = ""
		s.changed()
		return nil
	}
	s.charsetProblem = fmt.Sprintf("client character set %q is not supported (use utf8mb4)", cs)
	s.changed()
	return fmt.Errorf("myanalyze: %s", s.charsetProblem)
}

// InTransaction reports whether a transaction may be open.
func (s *Session) InTransaction() bool { return s.inTx }

// Reset implements sqlpolicy.Session: a new connection's state (the
// login's database, no prepared statements, no transaction). The sql_mode
// and character set go back to the analyzer's defaults: the proxy sets
// what the reset connection reports.
func (s *Session) Reset() { *s = Session{defMode: s.defMode} }

// Note implements sqlpolicy.Session. A text that changes the database or
// prepares or deallocates statements can fail half-way (MariaDB stops a
// multi-statement text at its first error) after the change took effect:
// until Apply confirms it, the database is unknown and the names it
// (de)allocates are forgotten, so EXECUTE of them is refused.
func (s *Session) Note(a *sqlpolicy.Access) {
	if s == nil || a == nil {
		return
	}
	changed := false
	for i := range a.Statements {
		st := &a.Statements[i]
		if ran(st).Tx == sqlpolicy.TxBegin {
			s.inTx = true
		}
		// A role allowed to change sql_mode or the character set (its
		// settings list names them): until Apply says which value took
		// effect, nothing more can be lexed safely.
		for _, set := range runSettings(st) {
			if lexingSetting(set) {
				s.modeProblem = "sql_mode or the client character set changed in a text that did not complete; reconnect"
				changed = true
			}
		}
		if useDB(st) != "" {
			s.dbLost = true
			changed = true
		}
		for _, n := range prepNames(st) {
			if _, ok := s.prepared[n]; ok {
				delete(s.prepared, n)
				delete(s.prepDB, n)
				changed = true
			}
		}
		if st.DeallocateAll && len(s.prepared) > 0 {
			s.prepared, s.prepDB = nil, nil
			changed = true
		}
	}
	if changed {
		s.changed()
	}
}

// NoteMark implements sqlpolicy.Session. The MySQL proxy runs one
// command at a time (the next is decided once the answer is in), so no
// text is ever noted behind one in flight: marks are not needed.
func (s *Session) NoteMark() uint64 { return 0 }

// ApplyMarked implements sqlpolicy.Session: Apply (see NoteMark).
func (s *Session) ApplyMarked(a *sqlpolicy.Access, _ uint64) { s.Apply(a) }

// Apply implements sqlpolicy.Session: the effects of a text that ran
// without error. The generation is recomputed only when the state it
// identifies changed: the proxies apply every statement that ran, and
// recomputing takes a lock every session shares.
func (s *Session) Apply(a *sqlpolicy.Access) {
	if s == nil || a == nil {
		return
	}
	changed := false
	for i := range a.Statements {
		st := &a.Statements[i]
		if db := useDB(st); db != "" {
			s.db, s.dbSet, s.dbLost = db, true, false
			changed = true
		}
		if st.PrepareName != "" && st.Prepared != nil || len(st.Deallocate) > 0 {
			changed = true
		}
		switch {
		case st.PrepareName != "" && st.Prepared != nil:
			if s.prepared == nil {
				s.prepared = map[string]*sqlpolicy.Statement{}
				s.prepDB = map[string]string{}
			}
			s.prepared[st.PrepareName] = st.Prepared
			s.prepDB[st.PrepareName] = s.db
		case len(st.Deallocate) > 0:
			for _, n := range st.Deallocate {
				delete(s.prepared, n)
				delete(s.prepDB, n)
			}
		}
		switch ran(st).Tx {
		case sqlpolicy.TxBegin:
			s.inTx = true
		case sqlpolicy.TxEnd:
			s.inTx = false
		}
		for _, set := range runSettings(st) {
			if lexingSetting(set) {
				s.applyLexing(set)
				changed = true
			}
		}
	}
	if changed {
		s.changed()
	}
}

// runSettings are the settings a statement changes when it runs: its own
// and those of the prepared statement EXECUTE runs.
func runSettings(st *sqlpolicy.Statement) []sqlpolicy.Setting {
	if st.Verb == sqlpolicy.VerbExecute && st.Prepared != nil && len(st.Prepared.Settings) > 0 {
		return append(slices.Clip(st.Settings), st.Prepared.Settings...)
	}
	return st.Settings
}

// lexingSetting reports a change of sql_mode or of the client or
// connection character set (which a role may be allowed to make). Adding
// inert modes to the session's own sql_mode (MariaDB Connector/J's
// CONCAT(@@sql_mode, ',STRICT_TRANS_TABLES')) leaves lexing as it was.
func lexingSetting(set sqlpolicy.Setting) bool {
	if set.Show || set.Name == "sql_mode" && addsOnlyInertModes(set) {
		return false
	}
	switch set.Name {
	case "sql_mode", "names", "character_set", "character_set_client", "character_set_connection", "collation_connection":
		return true
	}
	return false
}

// applyLexing records an applied change of sql_mode or character set: a
// literal value is taken; a computed value or a reset to the server's
// default is not known, and everything after it is refused.
func (s *Session) applyLexing(set sqlpolicy.Setting) {
	unknown := func(what string) {
		s.modeProblem = what + " changed to a value keyhole could not read; reconnect"
	}
	if set.Unknown || set.Reset {
		unknown(set.Name)
		return
	}
	switch set.Name {
	case "sql_mode":
		if set.Appended {
			// CONCAT(@@sql_mode, ',FLAG'): the flags join the session's.
			m, err := parseSQLMode(set.Value)
			if err != nil {
				s.mode, s.modeProblem = 0, err.Error()
				return
			}
			s.mode, s.modeProblem = s.mode|m, ""
			return
		}
		if err := s.SetSQLMode(set.Value); err != nil {
			return
		}
	case "collation_connection":
		cs, _, _ := strings.Cut(set.Value, "_")
		if err := s.SetClientCharset(cs); err != nil {
			return
		}
		s.modeProblem = ""
	default:
		if err := s.SetClientCharset(set.Value); err != nil {
			return
		}
		s.modeProblem = ""
	}
}

// ApplyUncommitted implements sqlpolicy.Session. MySQL has no pipelined
// implicit transactions that roll back session state: USE, PREPARE and
// DEALLOCATE take effect when they run.
func (s *Session) ApplyUncommitted(a *sqlpolicy.Access) { s.Apply(a) }

// ran is the statement whose effects on the session st has when it
// runs: for EXECUTE, the prepared statement. MariaDB prepares USE, BEGIN,
// COMMIT and SET too, and each EXECUTE switches the database, the
// transaction or the setting as the statement itself would.
func ran(st *sqlpolicy.Statement) *sqlpolicy.Statement {
	if st.Verb == sqlpolicy.VerbExecute && st.Prepared != nil {
		return st.Prepared
	}
	return st
}

// useDB is the database a USE statement, or EXECUTE of a prepared one,
// switches to ("" for others). The analyzer reports USE as a utility
// statement whose one Setting is "database" with the database name as
// its value.
func useDB(st *sqlpolicy.Statement) string {
	st = ran(st)
	if st.Command != "USE" {
		return ""
	}
	for _, set := range st.Settings {
		if set.Name == settingDatabase {
			return set.Value
		}
	}
	return ""
}

// prepNames are the prepared statement names a statement replaces or
// drops.
func prepNames(st *sqlpolicy.Statement) []string {
	if st.PrepareName != "" {
		return append([]string{st.PrepareName}, st.Deallocate...)
	}
	return st.Deallocate
}

// settingDatabase is the pseudo-setting a USE statement reports.
const settingDatabase = "database"

// safeCharset reports character sets in which every byte below 0x80 is
// the ASCII character it looks like, in every position.
func safeCharset(cs string) bool {
	switch strings.ToLower(strings.TrimSpace(cs)) {
	case "utf8mb4", "utf8", "utf8mb3", "latin1", "ascii", "binary":
		return true
	}
	return false
}

// parseSQLMode turns an sql_mode value into the parser's flags. Flags
// that change only values, dates, DDL or error handling are accepted and
// ignored; the lexing ones map to the parser's; combination modes other
// than ANSI and TRADITIONAL (which MariaDB expands in @@sql_mode anyway)
// and flags keyhole does not know are errors.
func parseSQLMode(v string) (mysql.SQLMode, error) {
	var m mysql.SQLMode
	for _, f := range strings.Split(v, ",") {
		f = strings.ToUpper(strings.TrimSpace(f))
		switch f {
		case "":
		case "ANSI_QUOTES":
			m |= mysql.ModeANSIQuotes
		case "NO_BACKSLASH_ESCAPES":
			m |= mysql.ModeNoBackslashEscapes
		case "PIPES_AS_CONCAT":
			m |= mysql.ModePipesAsConcat
		case "IGNORE_SPACE":
			m |= mysql.ModeIgnoreSpace
		case "HIGH_NOT_PRECEDENCE":
			m |= mysql.ModeHighNotPrecedence
		case "ANSI":
			m |= mysql.ModeANSIQuotes | mysql.ModePipesAsConcat | mysql.ModeIgnoreSpace
		case "MYSQL323", "MYSQL40":
			// MariaDB expands both to include HIGH_NOT_PRECEDENCE.
			m |= mysql.ModeHighNotPrecedence
		case "REAL_AS_FLOAT", "ONLY_FULL_GROUP_BY", "NO_UNSIGNED_SUBTRACTION", "NO_DIR_IN_CREATE",
			"NO_KEY_OPTIONS", "NO_TABLE_OPTIONS", "NO_FIELD_OPTIONS",
			"NO_AUTO_VALUE_ON_ZERO", "STRICT_TRANS_TABLES", "STRICT_ALL_TABLES", "NO_ZERO_IN_DATE",
			"NO_ZERO_DATE", "ALLOW_INVALID_DATES", "ERROR_FOR_DIVISION_BY_ZERO", "TRADITIONAL",
			"NO_AUTO_CREATE_USER", "NO_ENGINE_SUBSTITUTION", "PAD_CHAR_TO_FULL_LENGTH",
			"EMPTY_STRING_IS_NULL", "SIMULTANEOUS_ASSIGNMENT", "TIME_ROUND_FRACTIONAL":
		default:
			return 0, fmt.Errorf("myanalyze: sql_mode %s is not supported", f)
		}
	}
	return m, nil
}
