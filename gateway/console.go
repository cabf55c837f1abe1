package gateway

import (
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/keyholedb/keyhole/admin"
	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// consoleHandler builds the reviewers' console and API (nil when there is
// no approvals service).
func (g *Gateway) consoleHandler() (http.Handler, error) {
	if g.approvals == nil {
		return nil, nil
	}
	cfg := g.cfg
	if cfg.Console.UsersFile == "" && cfg.Console.ProxyAuth == nil {
		g.log.Warn("the console has no reviewers: set console.users_file (keyhole reviewers add) or console.proxy_auth; until then only /healthz and /metrics answer")
	}
	var pa *admin.ProxyAuth
	if p := cfg.Console.ProxyAuth; p != nil {
		nets, err := admin.ParseTrusted(p.Trusted)
		if err != nil {
			return nil, err
		}
		pa = &admin.ProxyAuth{Trusted: nets, UserHeader: p.UserHeader, GroupsHeader: p.GroupsHeader, Approvers: p.Approvers, Viewers: p.Viewers}
	}
	return admin.NewConsole(admin.ConsoleOptions{
		Approvals:  g.approvals,
		Policy:     &policyView{g: g},
		UsersFile:  cfg.Console.UsersFile,
		ProxyAuth:  pa,
		SessionTTL: cfg.Console.SessionTTL,
		TLS:        cfg.Console.TLS,
		Durations:  cfg.Approvals.Durations,
		AuditFile:  cfg.Audit.File,
		Lockout:    cfg.Identity.Lockout,
		Logger:     g.log,
		Done:       g.ctx.Done(),
	})
}

// policyView is admin.PolicyView over the policy generation in force,
// computed once per generation.
type policyView struct {
	g      *Gateway
	mu     sync.Mutex
	gen    *generation
	matrix []admin.MatrixRole
	unlab  []admin.UnlabelledColumn
}

func (v *policyView) RoleOf(agent string) string {
	if r := v.g.gen.Load().policy.Role(agent); r != nil {
		return r.Name
	}
	return ""
}

func (v *policyView) current() {
	gen := v.g.gen.Load()
	if v.gen == gen {
		return
	}
	v.gen, v.matrix, v.unlab = gen, matrixOf(gen), unlabelledOf(gen)
}

func (v *policyView) Matrix() []admin.MatrixRole {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.current()
	return v.matrix
}

func (v *policyView) Unlabelled() []admin.UnlabelledColumn {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.current()
	return v.unlab
}

// maxMatrixRelations bounds one role's part of the matrix page.
const maxMatrixRelations = 500

// relations lists a catalog's non-system relations that hold rows,
// sorted.
func relations(cat *catalog.Catalog) []*catalog.Relation {
	var out []*catalog.Relation
	for _, schema := range slices.Sorted(maps.Keys(cat.Relations)) {
		for _, name := range slices.Sorted(maps.Keys(cat.Relations[schema])) {
			r := cat.Relations[schema][name]
			if !r.System && r.Kind != catalog.KindSequence {
				out = append(out, r)
			}
		}
	}
	return out
}

// matrixOf decides, for every role, a select of each column alone: the
// decision engine's own answer, not a re-implementation of it.
func matrixOf(gen *generation) []admin.MatrixRole {
	pol := gen.policy
	agentOf := map[string]string{}
	for _, a := range slices.Sorted(maps.Keys(pol.Agents)) {
		if _, ok := agentOf[pol.Agents[a].Role]; !ok {
			agentOf[pol.Agents[a].Role] = a
		}
	}
	var out []admin.MatrixRole
	for _, rn := range pol.RoleNames() {
		role := pol.Roles[rn]
		mr := admin.MatrixRole{Role: rn, Upstream: role.Upstream, Agent: agentOf[rn]}
		up, ok := route(gen.cats, role.Upstream)
		if !ok || mr.Agent == "" {
			out = append(out, mr)
			continue
		}
		cat := gen.cats[up]
		for i, r := range relations(cat) {
			if i == maxMatrixRelations {
				break
			}
			rel := sqlpolicy.Rel{Schema: r.Schema, Name: r.Name}
			mt := admin.MatrixTable{Table: rel.String()}
			for _, col := range r.Columns {
				a := &sqlpolicy.Access{Statements: []sqlpolicy.Statement{{Verb: sqlpolicy.VerbSelect, Command: "SELECT", ReturnsRows: true,
					Tables:  []sqlpolicy.TableRef{{Rel: rel, Mode: sqlpolicy.Read}},
					Columns: []sqlpolicy.ColumnRef{{Rel: rel, Column: col.Name, Mode: sqlpolicy.Read}}}}}
				d := pol.Decide(sqlpolicy.Principal{Agent: mr.Agent}, a, cat)
				cell := admin.MatrixCell{Column: col.Name, Read: d.Allowed(), Labels: pol.ColumnLabels(cat, rel, col.Name)}
				for _, l := range cell.Labels {
					if pol.NeverGrantable(role, l) {
						cell.NeverGrant = true
					}
				}
				if !d.Allowed() && len(d.Reasons) > 0 {
					switch rs := d.Reasons[0]; rs.Code {
					case sqlpolicy.ReasonLabelDenied:
						cell.Blocked = "label " + rs.Label + " (" + rs.Rule + ")"
					case sqlpolicy.ReasonColumnNotAllowed:
						cell.Blocked = "not in the role's column list"
					case sqlpolicy.ReasonNoRule:
						cell.Blocked = "no grant"
					default:
						cell.Blocked = string(rs.Code)
					}
				}
				mt.Columns = append(mt.Columns, cell)
			}
			mr.Tables = append(mr.Tables, mt)
		}
		out = append(out, mr)
	}
	return out
}

// piiNames are column-name patterns that suggest personal data, with the
// label to suggest; the first match wins.
var piiNames = []struct {
	re    *regexp.Regexp
	label string
}{
	{regexp.MustCompile(`e_?mail`), "pii.email"},
	{regexp.MustCompile(`phone|mobile|(^|_)fax($|_)|msisdn`), "pii.phone"},
	{regexp.MustCompile(`(^|_)ssn($|_)|social_?security|national_?id|(^|_)nin($|_)`), "pii.ssn"},
	{regexp.MustCompile(`passport`), "pii.passport"},
	{regexp.MustCompile(`birth|(^|_)dob($|_)`), "pii.dob"},
	{regexp.MustCompile(`address|street|(^|_)zip($|_)|post_?code|postal`), "pii.address"},
	{regexp.MustCompile(`first_?name|last_?name|full_?name|surname|given_?name|family_?name`), "pii.name"},
	{regexp.MustCompile(`(^|_)ip($|_)|ip_?addr`), "pii.ip"},
	{regexp.MustCompile(`iban|account_?number|card_?number|credit_?card|(^|_)cvv($|_)|(^|_)pan($|_)`), "pii.financial"},
	{regexp.MustCompile(`salary|income|wage`), "pii.financial"},
	{regexp.MustCompile(`tax_?id|(^|_)tin($|_)`), "pii.tax_id"},
	{regexp.MustCompile(`password|passwd|api_?key|secret|(^|_)token($|_)`), "secret"},
	{regexp.MustCompile(`gender|ethnic|religio|(^|_)race($|_)|diagnos|medical|health`), "pii.sensitive"},
	{regexp.MustCompile(`latitude|longitude|(^|_)geo($|_)|(^|_)lat($|_)|(^|_)lng($|_)|(^|_)lon($|_)`), "pii.location"},
}

// unlabelledOf lists columns without a label whose names look personal.
func unlabelledOf(gen *generation) []admin.UnlabelledColumn {
	var out []admin.UnlabelledColumn
	for _, up := range slices.Sorted(maps.Keys(gen.cats)) {
		cat := gen.cats[up]
		for _, r := range relations(cat) {
			rel := sqlpolicy.Rel{Schema: r.Schema, Name: r.Name}
			for _, col := range r.Columns {
				if len(gen.policy.ColumnLabels(cat, rel, col.Name)) > 0 {
					continue
				}
				name := strings.ToLower(col.Name)
				for _, p := range piiNames {
					if p.re.MatchString(name) {
						out = append(out, admin.UnlabelledColumn{Upstream: up, Table: rel.String(), Column: col.Name, Type: col.Type, Suggest: p.label})
						break
					}
				}
			}
		}
	}
	return out
}
