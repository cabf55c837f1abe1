package mysqlproxy_test

import (
	"slices"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// The wire tests decide with the real engine (newDecider). These wrappers
// are for the protocol corners it does not produce.

// allowing also allows texts the real engine refuses, standing for a
// policy too wide: the wire's own defences must hold anyway.
type allowing struct {
	sqlpolicy.Decider
	texts []string
}

func (a allowing) Check(p sqlpolicy.Principal, sql string, s sqlpolicy.Session) (*sqlpolicy.Decision, *sqlpolicy.Access) {
	if slices.Contains(a.texts, sql) {
		return &sqlpolicy.Decision{Effect: sqlpolicy.Allow, Rule: "test.allowing"}, &sqlpolicy.Access{}
	}
	return a.Decider.Check(p, sql, s)
}

// panicky panics on one text (the engine recovers its own panics; this is
// a Decider that does not): the panic must end only that connection.
type panicky struct{ sqlpolicy.Decider }

func (p panicky) Check(pr sqlpolicy.Principal, sql string, s sqlpolicy.Session) (*sqlpolicy.Decision, *sqlpolicy.Access) {
	if sql == "PANIC" {
		panic("test panic")
	}
	return p.Decider.Check(pr, sql, s)
}
