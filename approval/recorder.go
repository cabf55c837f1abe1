package approval

import (
	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/store"
)

// Recorder wraps the audit sinks: every event goes to rec first (the
// system of record), then what the console needs is indexed — blocked
// statements (with the session and client that sent them), sessions
// opening and closing, agents' last activity. A blocked statement's
// event names the request it opened (Event.Request).
func (s *Service) Recorder(rec audit.Recorder) audit.Recorder {
	return &recorder{rec: rec, s: s}
}

type recorder struct {
	rec audit.Recorder
	s   *Service
}

func (r *recorder) Close() error { return r.rec.Close() }

// healthChecker is an audit sink that reports its health (the gateway's
// /healthz asks the recorder it was given, which is this one).
type healthChecker interface{ Healthy() error }

// Healthy passes the sinks' health check through.
func (r *recorder) Healthy() error {
	if h, ok := r.rec.(healthChecker); ok {
		return h.Healthy()
	}
	return nil
}

func (r *recorder) Record(ev audit.Event) {
	s := r.s
	blocked := ev.Kind == audit.KindStatement && ev.Decision == sqlpolicy.Deny && ev.Agent != ""
	if blocked && ev.Request == "" {
		ev.Request = s.requestOf(ev.Agent, ev.Fingerprint)
	}
	r.rec.Record(ev)
	switch {
	case blocked:
		s.touchAgent(ev.Agent, ev.Role, ev.Client, "", ev.Time)
		d := store.Denial{At: ev.Time, RequestID: store.RequestID(ev.Agent, ev.Fingerprint), Agent: ev.Agent, Role: ev.Role,
			Fingerprint: ev.Fingerprint, Rule: ev.Rule, Session: ev.Session, Client: ev.Client, Protocol: ev.Protocol,
			Database: ev.Database, Replica: s.opts.Replica.ID, ErrorCode: ev.ErrorCode}
		if s.indexDenial(ev.Agent, ev.Time) {
			s.add(func(p *pending) { p.denials = append(p.denials, d) })
		}
	case ev.Kind == audit.KindStatement:
		s.touchAgent(ev.Agent, "", "", "", ev.Time)
	case ev.Kind == audit.KindAuthOK:
		s.touchAgent(ev.Agent, ev.Role, ev.Client, "", ev.Time)
		se := store.Session{ID: ev.Session, Replica: s.opts.Replica.ID, Agent: ev.Agent, Role: ev.Role, Client: ev.Client,
			Protocol: ev.Protocol, Database: ev.Database, Started: ev.Time}
		s.add(func(p *pending) { p.opened = append(p.opened, se) })
	case ev.Kind == audit.KindClose && ev.Agent != "":
		s.touchAgent(ev.Agent, "", "", "", ev.Time)
		id := ev.Session
		s.add(func(p *pending) { p.closed = append(p.closed, id) })
	}
}
