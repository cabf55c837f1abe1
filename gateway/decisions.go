package gateway

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// generation is one loaded policy with, per upstream, the engine that
// decides the statements of its roles' agents (its catalog and analyzer).
// A reload builds a whole new generation and swaps it in at once, so a
// role's upstream and the engine deciding for it never disagree.
type generation struct {
	policy  *sqlpolicy.Policy
	engines map[string]*sqlpolicy.Engine // by configured upstream name
	cats    map[string]*catalog.Catalog  // the catalogs the engines use
	dialect map[string]string            // upstream name → dialect
	// first is, per dialect, the engine of its first upstream by name: it
	// redacts texts (any engine of a dialect normalizes alike) and denies
	// unknown agents.
	first map[string]*sqlpolicy.Engine
	// epoch is the generation's sqlpolicy.EpochDecider epoch: unique in
	// the process, never 0.
	epoch uint64
	// routes is, per agent the policy knows, its role and its engine:
	// what policy.Role and route give, looked up once per statement
	// instead of four string-keyed map lookups.
	routes map[string]agentRoute
}

// agentRoute is an agent's role and the engine deciding for it (nil when
// no configured upstream serves the role), with that upstream's name and
// dialect.
type agentRoute struct {
	role        *sqlpolicy.Role
	engine      *sqlpolicy.Engine
	up, dialect string
}

// epochs hands out generation epochs.
var epochs atomic.Uint64

// newGeneration ties a policy to one engine per upstream.
func newGeneration(pol *sqlpolicy.Policy, cats map[string]*catalog.Catalog, engines map[string]*sqlpolicy.Engine, dialect map[string]string) *generation {
	g := &generation{policy: pol, engines: engines, cats: cats, dialect: dialect, first: map[string]*sqlpolicy.Engine{},
		epoch: epochs.Add(1)}
	for _, name := range slices.Sorted(maps.Keys(engines)) {
		if _, ok := g.first[dialect[name]]; !ok {
			g.first[dialect[name]] = engines[name]
		}
	}
	if pol != nil {
		g.routes = make(map[string]agentRoute, len(pol.Agents))
		for agent := range pol.Agents {
			r := pol.Role(agent)
			if r == nil {
				continue
			}
			ar := agentRoute{role: r}
			if up, ok := route(engines, r.Upstream); ok {
				ar.engine, ar.up, ar.dialect = engines[up], up, dialect[up]
			}
			g.routes[agent] = ar
		}
	}
	return g
}

// route is the configured upstream a role's upstream name means: itself,
// or the single upstream "" of --upstream URL, which every role uses.
func route[V any](ups map[string]V, name string) (string, bool) {
	if _, ok := ups[name]; ok {
		return name, true
	}
	if _, ok := ups[""]; ok {
		return "", true
	}
	return "", false
}

// engineFor is the engine deciding for agent, or nil when the policy does
// not know the agent.
func (g *generation) engineFor(agent string) (*sqlpolicy.Engine, string) {
	ar := g.routes[agent]
	return ar.engine, ar.up
}

// router is the sqlpolicy.Decider of one front end: it decides with the
// engine of the agent's upstream in the current generation. An agent the
// policy does not know, or whose upstream is of another dialect, is
// denied.
type router struct {
	dialect string
	gen     *atomic.Pointer[generation]
	// schemaChanged asks the gateway to read the catalogs again.
	schemaChanged chan<- struct{}
}

// SchemaChanged implements sqlpolicy.SchemaNotifier: the front ends call
// it when a statement that changes the schema (DDL) has taken effect, and
// the gateway reads every upstream's schema again, as at SIGHUP, so that
// later statements are decided against the relations as they now are.
// Calls while a reading is due or under way ask for one more, never a
// queue of them.
func (r *router) SchemaChanged() {
	select {
	case r.schemaChanged <- struct{}{}:
	default:
	}
}

var _ sqlpolicy.EpochDecider = (*router)(nil)

// Role implements sqlpolicy.Decider.
func (r *router) Role(agent string) (string, string, bool) {
	ar, ok := r.gen.Load().routes[agent]
	if !ok {
		return "", "", false
	}
	return ar.role.Name, ar.role.Upstream, true
}

// Check implements sqlpolicy.Decider.
func (r *router) Check(p sqlpolicy.Principal, sql string, s sqlpolicy.Session) (*sqlpolicy.Decision, *sqlpolicy.Access) {
	d, a, _ := r.check(r.gen.Load(), p, sql, s)
	return d, a
}

// CheckEpoch implements sqlpolicy.EpochDecider: a generation is immutable
// (a reload, also of the catalog alone, swaps in a new one), and its
// engine decides from the principal, the text and the session's
// generation alone (the decision cache's key), noting allowed accesses in
// the session.
func (r *router) CheckEpoch(p sqlpolicy.Principal, sql string, s sqlpolicy.Session) (*sqlpolicy.Decision, *sqlpolicy.Access, uint64) {
	g := r.gen.Load()
	d, a, e := r.check(g, p, sql, s)
	return d, a, epochOf(g, d, e)
}

// epochOf is the epoch of decision d, made in generation g by engine e
// (nil: not a known agent's engine): g's for an allow by an engine, else 0.
func epochOf(g *generation, d *sqlpolicy.Decision, e *sqlpolicy.Engine) uint64 {
	if e == nil || d == nil || !d.Allowed() {
		return 0
	}
	return g.epoch
}

// Epoch implements sqlpolicy.EpochDecider.
func (r *router) Epoch() uint64 { return r.gen.Load().epoch }

// check is Check in generation g; it also returns the engine that decided
// for a known agent of this front end's dialect (nil otherwise).
func (r *router) check(g *generation, p sqlpolicy.Principal, sql string, s sqlpolicy.Session) (*sqlpolicy.Decision, *sqlpolicy.Access, *sqlpolicy.Engine) {
	ar := g.routes[p.Agent]
	if e := ar.engine; e == nil {
		// Unknown agent: any engine of this dialect denies it by default
		// (and does not cache for it).
		d, a := g.first[r.dialect].Check(p, sql, s)
		return d, a, nil
	} else if ar.dialect != r.dialect {
		return &sqlpolicy.Decision{Effect: sqlpolicy.Deny, Rule: sqlpolicy.RuleDefaultDeny, Agent: p.Agent,
			Message: "keyhole: permission denied: the agent's role uses a database of another protocol",
			Hint:    "connect to keyhole's listener for that database's protocol."}, &sqlpolicy.Access{}, nil
	}
	d, a := ar.engine.Check(p, sql, s)
	return d, a, ar.engine
}

// UpstreamSettings implements sqlpolicy.Decider: the session settings
// (resource limits) of the agent's role, as its upstream's analyzer maps
// them. An unknown agent gets none (its connection is refused anyway).
func (r *router) UpstreamSettings(agent string) map[string]string {
	e, _ := r.gen.Load().engineFor(agent)
	if e == nil {
		return nil
	}
	return e.UpstreamSettings(agent)
}

// LoginProbe implements sqlpolicy.Decider: the session probe of the
// agent's upstream (its analyzer's; none for an agent the policy does not
// know, or of another dialect: everything it sends is denied).
func (r *router) LoginProbe(agent string) string {
	ar := r.gen.Load().routes[agent]
	if ar.engine == nil || ar.dialect != r.dialect {
		return ""
	}
	return ar.engine.LoginProbe(agent)
}

// NewSession implements sqlpolicy.Decider: a session of the front end's
// dialect. Every engine of a dialect uses the same analyzer type, so the
// session stays valid across reloads and upstreams of that dialect.
func (r *router) NewSession() sqlpolicy.Session {
	return r.gen.Load().first[r.dialect].NewSession()
}

// Redact implements sqlpolicy.Decider: any engine of the dialect
// normalizes its texts the same way.
func (r *router) Redact(sql string) (string, string) {
	return r.gen.Load().first[r.dialect].Redact(sql)
}

// changedAgents are the agents of old that cur removes, gives another role,
// or whose role now uses another upstream: their credentials and sessions
// must end rather than run on with authority they no longer have.
func changedAgents(old, cur *generation) []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(old.policy.Agents)) {
		or := old.policy.Role(name)
		nr := cur.policy.Role(name)
		if nr == nil || or == nil || nr.Name != or.Name || nr.Upstream != or.Upstream {
			out = append(out, name)
		}
	}
	return out
}

// checkNames does, for a policy whose roles use several upstreams, what
// sqlpolicy.ParsePolicy does against one catalog: every relation, column,
// procedure and function a role names must exist in its own upstream's
// catalog, and every labelled relation and column in at least one
// upstream's (labels apply by name on every upstream). A typo in a label
// would otherwise leave a column unlabelled.
func checkNames(pol *sqlpolicy.Policy, cats map[string]*catalog.Catalog) (warns []string, err error) {
	var errs []string
	at := func(line int) string {
		if line > 0 {
			return fmt.Sprintf("%s:%d: ", pol.Name, line)
		}
		return pol.Name + ": "
	}
	for _, l := range pol.Labels {
		found := false
		for _, cat := range cats {
			if r := cat.Relation(l.Rel.Schema, l.Rel.Name); r != nil && (l.Column == "" || r.Column(l.Column) != nil) {
				found = true
				break
			}
		}
		if !found {
			what := "relation " + l.Rel.String()
			if l.Column != "" {
				what = "column " + l.Rel.String() + "." + l.Column
			}
			errs = append(errs, fmt.Sprintf("%slabels: %s is in no upstream's catalog", at(l.Line), what))
		}
	}
	for _, rn := range pol.RoleNames() {
		role := pol.Roles[rn]
		name, ok := route(cats, role.Upstream)
		if !ok {
			continue // reported by the caller
		}
		cat := cats[name]
		in := fmt.Sprintf("upstream %s's catalog", role.Upstream)
		for _, rule := range role.Allow {
			for _, tr := range rule.Tables {
				schema, rel, _ := strings.Cut(tr.Pattern, ".")
				switch {
				case rule.Verb == sqlpolicy.VerbCall:
					if rel == "*" {
						continue
					}
					if f := cat.Function(schema, rel); f == nil || f.Kind != "procedure" {
						errs = append(errs, fmt.Sprintf("%s%s: procedure %s is not in %s", at(rule.Line), rule.Name, tr.Pattern, in))
					}
				case rel == "*":
					if len(cat.Relations[schema]) == 0 {
						warns = append(warns, fmt.Sprintf("%s%s: schema %s has no relations in %s", at(rule.Line), rule.Name, schema, in))
					}
				default:
					r := cat.Relation(schema, rel)
					switch {
					case r == nil && rule.Verb == sqlpolicy.VerbDDL:
						warns = append(warns, fmt.Sprintf("%s%s: relation %s is not in %s (yet)", at(rule.Line), rule.Name, tr.Pattern, in))
					case r == nil:
						errs = append(errs, fmt.Sprintf("%s%s: relation %s is not in %s", at(rule.Line), rule.Name, tr.Pattern, in))
					default:
						for _, c := range tr.Columns {
							if r.Column(c) == nil {
								errs = append(errs, fmt.Sprintf("%s%s.%s: column %s is not in %s", at(rule.Line), rule.Name, tr.Pattern, c, in))
							}
						}
					}
				}
			}
		}
		for _, f := range role.Functions {
			schema, fn, _ := strings.Cut(f, ".")
			if fn != "*" && cat.Function(schema, fn) == nil {
				errs = append(errs, fmt.Sprintf("%sroles.%s.functions: function %s is not in %s", at(0), rn, f, in))
			}
		}
	}
	if len(errs) > 0 {
		return warns, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return warns, nil
}
