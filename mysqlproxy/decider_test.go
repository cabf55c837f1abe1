package mysqlproxy_test

import (
	"strings"
	"sync"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// tableDecider is a sqlpolicy.Decider for wire tests ONLY. It does not
// parse SQL: it looks each text up in a fixed table (whitespace collapsed,
// case folded, a trailing ';' dropped) and denies anything not listed.
// It exists so the proxy's wire behaviour can be tested before the MySQL
// analyzer (sqlpolicy/myanalyze) lands; end-to-end tests build their
// Decider in newDecider, the one place to switch to
// sqlpolicy.NewEngine(policy, catalog, myanalyze.New(...)).
type tableDecider struct {
	mu     sync.Mutex
	agents map[string]string // agent → role
	table  map[string]*sqlpolicy.Decision
	// checked counts Check calls per text, to tell re-checks apart.
	checked  map[string]int
	sessions []*testSession
}

func newTableDecider() *tableDecider {
	return &tableDecider{agents: map[string]string{}, table: map[string]*sqlpolicy.Decision{}, checked: map[string]int{}}
}

func normText(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(s, ";")
	return strings.ToLower(strings.Join(strings.Fields(s), " "))
}

// allow lists texts as allowed for role with the role's max_rows.
func (d *tableDecider) allow(role string, maxRows int, texts ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, t := range texts {
		d.table[normText(t)] = &sqlpolicy.Decision{Effect: sqlpolicy.Allow, Rule: "roles." + role + ".allow[0]", Role: role, MaxRows: maxRows}
	}
}

// denyColumn lists a text as denied because of a labelled column, as the
// real engine renders it.
func (d *tableDecider) denyColumn(role, text, table, column, label string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	rule := "roles." + role + ".deny_labels[pii.*]"
	d.table[normText(text)] = &sqlpolicy.Decision{
		Effect: sqlpolicy.Deny, Rule: rule, Role: role,
		Reasons: []sqlpolicy.Reason{{Code: sqlpolicy.ReasonLabelDenied, Verb: sqlpolicy.VerbSelect, Table: table, Column: column, Label: label, Rule: rule}},
		Message: "keyhole: permission denied: column " + table + "." + column + " is labelled " + label + ", which role " + role + " may not read",
		Detail:  "Denied by rule " + rule + ".",
		Hint:    "You may read instead: " + table + ".id, " + table + ".name",
	}
}

// denyTable lists a text as denied because no rule allows verb on table.
func (d *tableDecider) denyTable(role, text string, verb sqlpolicy.Verb, table string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.table[normText(text)] = &sqlpolicy.Decision{
		Effect: sqlpolicy.Deny, Rule: sqlpolicy.RuleDefaultDeny, Role: role,
		Reasons: []sqlpolicy.Reason{{Code: sqlpolicy.ReasonNoRule, Verb: verb, Table: table, Rule: sqlpolicy.RuleDefaultDeny}},
		Message: "keyhole: permission denied: role " + role + " may not " + string(verb) + " " + table,
		Detail:  "Denied by rule default-deny.",
		Hint:    "Role " + role + " may select from the orders and customers tables.",
	}
}

// forget removes a text (it is then denied).
func (d *tableDecider) forget(text string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.table, normText(text))
}

func (d *tableDecider) checks(text string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.checked[normText(text)]
}

func (d *tableDecider) Role(agent string) (string, string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, ok := d.agents[agent]
	return r, "shop", ok
}

func (d *tableDecider) Check(p sqlpolicy.Principal, sql string, s sqlpolicy.Session) (*sqlpolicy.Decision, *sqlpolicy.Access) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := normText(sql)
	d.checked[k]++
	acc := &sqlpolicy.Access{Statements: []sqlpolicy.Statement{{Command: k}}}
	if _, ok := d.agents[p.Agent]; !ok {
		return &sqlpolicy.Decision{Effect: sqlpolicy.Deny, Rule: sqlpolicy.RuleDefaultDeny, Message: "keyhole: unknown agent"}, acc
	}
	if dec, ok := d.table[k]; ok {
		if dec.Allowed() && s != nil {
			s.Note(acc)
		}
		return dec, acc
	}
	return &sqlpolicy.Decision{
		Effect: sqlpolicy.Deny, Rule: sqlpolicy.RuleDefaultDeny,
		Reasons: []sqlpolicy.Reason{{Code: sqlpolicy.ReasonProblem, Problem: sqlpolicy.ProblemUnsupported, Detail: "not in the wire-test table"}},
		Message: "keyhole: permission denied: statement not in the wire-test table",
	}, acc
}

func (d *tableDecider) NewSession() sqlpolicy.Session {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := &testSession{}
	d.sessions = append(d.sessions, s)
	return s
}

// lastSession is the session of the newest connection.
func (d *tableDecider) lastSession() *testSession {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sessions[len(d.sessions)-1]
}

func (d *tableDecider) Redact(sql string) (string, string) { return normText(sql), "fp" }

// UpstreamSettings: the wire tests set no resource limits.
func (d *tableDecider) UpstreamSettings(string) map[string]string { return nil }

// testSession records what the proxy reports to the analyzer's session.
type testSession struct {
	mu       sync.Mutex
	applied  []string
	resets   int
	database string
	sqlMode  string
}

// SetSQLMode is the method the proxy expects of the MySQL analyzer's
// session for the connection's sql_mode.
func (s *testSession) SetSQLMode(mode string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sqlMode = mode
}

func (s *testSession) Generation() uint64                   { return 0 }
func (s *testSession) Note(*sqlpolicy.Access)               {}
func (s *testSession) ApplyUncommitted(a *sqlpolicy.Access) { s.Apply(a) }
func (s *testSession) Apply(a *sqlpolicy.Access) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range a.Statements {
		s.applied = append(s.applied, st.Command)
	}
}
func (s *testSession) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resets++
}

// SetDatabase is the method the proxy expects of the MySQL analyzer's
// session.
func (s *testSession) SetDatabase(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.database = name
}
