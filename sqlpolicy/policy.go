package sqlpolicy

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/keyholedb/keyhole/catalog"
)

// Policy is a loaded, validated policy file: labels, roles and the agents
// that use them. It is read-only after loading and safe for concurrent use.
type Policy struct {
	// Name is the file name the policy was read from, for messages.
	Name   string
	Labels []LabelRule
	Roles  map[string]*Role
	Agents map[string]*Agent
	// NeverGrant are label patterns no just-in-time grant may lift for any
	// role (never_grant at the top of the file).
	NeverGrant []string

	// labels indexes Labels by relation.
	labels map[Rel]*relLabels
}

// LabelRule is one entry of the labels section: labels on a whole relation
// (Column empty) or on one column.
type LabelRule struct {
	Rel    Rel
	Column string
	Labels []string
	Line   int
}

type relLabels struct {
	table   []string
	columns map[string][]string
}

// Role is a named set of grants.
type Role struct {
	Name        string
	Description string
	// Upstream names the database the role's agents reach (and the Vault
	// role that issues its credentials).
	Upstream string
	Allow    []Rule
	// DenyLabels are label patterns ("pii.*", "secret") whose columns the
	// role may neither read nor write, whatever Allow says.
	DenyLabels []string
	// Functions are non-built-in functions the role may call
	// ("schema.name" or "schema.*").
	Functions []string
	// Settings are session settings the role may change although the
	// analyzer reports the change as a Problem (e.g. search_path).
	Settings []string
	// Catalog allows reading non-data system catalogs (pg_catalog,
	// information_schema), which drivers use for introspection. Default true.
	Catalog bool
	// Explain allows EXPLAIN of statements the role may run. Default false:
	// plans expose row estimates drawn from column statistics.
	Explain bool
	// MaxRows caps the rows returned per statement; 0 means no cap. It
	// applies to statements that read data, not to those that read only
	// system catalogs.
	MaxRows int
	// Limits are the resource limits of the role's upstream sessions, one
	// amount per Limit (DefaultLimits for those the file does not set).
	Limits map[Limit]int64
	// LimitsSet lists the limits the file sets explicitly.
	LimitsSet []Limit
	// NeverGrant are label patterns no just-in-time grant may lift for
	// this role, in addition to the policy's NeverGrant.
	NeverGrant []string
}

// Rule is one item of a role's allow list: a verb on a list of relations
// (or, for call, procedures).
type Rule struct {
	Verb   Verb
	Tables []TableRule
	// Name is the rule's path in the file, e.g. "roles.analyst.allow[0].select".
	Name string
	Line int
}

// TableRule is one relation pattern of a Rule.
type TableRule struct {
	// Pattern is "schema.name" or "schema.*".
	Pattern string
	// Columns restricts the rule to these columns; nil means every column.
	Columns []string
}

// Agent binds an agent name to a role.
type Agent struct {
	Name        string
	Role        string
	Description string
	Line        int
}

// Warning is a problem in a policy file that does not stop it loading.
type Warning struct {
	File string
	Line int
	Msg  string
}

func (w Warning) String() string { return fmt.Sprintf("%s:%d: %s", w.File, w.Line, w.Msg) }

// PolicyError is one validation error in a policy file.
type PolicyError struct {
	File string
	Line int
	Col  int
	Msg  string
}

func (e *PolicyError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// PolicyErrors is every validation error found in a policy file, in file
// order. errors.As finds each *PolicyError.
type PolicyErrors []*PolicyError

func (es PolicyErrors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Unwrap exposes the individual errors to errors.Is / errors.As.
func (es PolicyErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// GrantVerbs are the verbs a role's allow list may name.
var GrantVerbs = []Verb{VerbSelect, VerbInsert, VerbUpdate, VerbDelete, VerbMerge, VerbCopy, VerbDDL, VerbLock, VerbCall}

// LoadPolicyFile reads and validates a policy file. With a catalog, every
// relation, column and function the file names must exist in it.
func LoadPolicyFile(path string, cat *catalog.Catalog) (*Policy, []Warning, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read policy: %w", err)
	}
	return ParsePolicy(data, path, cat)
}

// Role returns the agent's role, or nil when the agent is unknown.
func (p *Policy) Role(agent string) *Role {
	if p == nil {
		return nil
	}
	a := p.Agents[agent]
	if a == nil {
		return nil
	}
	return p.Roles[a.Role]
}

// RoleNames returns the role names, sorted.
func (p *Policy) RoleNames() []string {
	out := make([]string, 0, len(p.Roles))
	for n := range p.Roles {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// PolicyLabels returns the labels the policy file puts on rel.column,
// including labels on the whole relation.
func (p *Policy) PolicyLabels(rel Rel, column string) []string {
	if p == nil {
		return nil
	}
	rl := p.labels[rel]
	if rl == nil {
		return nil
	}
	if column == "" {
		return rl.table
	}
	if len(rl.table) == 0 {
		return rl.columns[column]
	}
	return append(slices.Clip(rl.columns[column]), rl.table...)
}

// ColumnLabels returns the effective labels of rel.column: the policy
// file's labels on the column and on the relation, and the catalog's
// comment labels on the column and on the relation. A Postgres partition
// or inheritance child holds rows its parents return, so the labels of
// every ancestor and descendant (catalog.Catalog.InheritanceFamily) on
// the column of the same name and on the whole relation count too:
// labelling a partitioned table's column protects it in every partition
// (Postgres copies no comment to them), and a labelled partition's data
// stays protected when read through its parent.
func (p *Policy) ColumnLabels(cat *catalog.Catalog, rel Rel, column string) []string {
	var out []string
	add := func(ls []string) {
		for _, l := range ls {
			if !slices.Contains(out, l) {
				out = append(out, l)
			}
		}
	}
	own := func(rel Rel, r *catalog.Relation) {
		if p != nil {
			if rl := p.labels[rel]; rl != nil {
				add(rl.table)
				if column != "" {
					add(rl.columns[column])
				}
			}
		}
		if r != nil {
			add(r.Labels)
			if column != "" {
				if c := r.Column(column); c != nil {
					add(c.Labels)
				}
			}
		}
	}
	r := cat.Relation(rel.Schema, rel.Name)
	own(rel, r)
	for _, m := range cat.InheritanceFamily(r) {
		own(Rel{Schema: m.Schema, Name: m.Name}, m)
	}
	return out
}
