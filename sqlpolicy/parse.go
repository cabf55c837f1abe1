package sqlpolicy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/keyholedb/keyhole/catalog"
)

// ParsePolicy parses and validates a policy document; name is the file name
// used in messages. Validation is strict: unknown keys, duplicate keys,
// malformed names and labels, unknown verbs, agents naming missing roles and
// negative max_rows are errors, each with its file:line. With a non-nil
// catalog, relations, columns, functions and procedures the file names must
// exist in it. Roles no agent uses are warnings.
func ParsePolicy(data []byte, name string, cat *catalog.Catalog) (*Policy, []Warning, error) {
	ps := &parser{file: name, cat: cat}
	p := ps.parse(data)
	if len(ps.errs) > 0 {
		return nil, ps.warns, ps.errs
	}
	return p, ps.warns, nil
}

type parser struct {
	file  string
	cat   *catalog.Catalog
	errs  PolicyErrors
	warns []Warning
}

func (ps *parser) errorf(n *yaml.Node, format string, args ...any) {
	e := &PolicyError{File: ps.file, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Col = n.Line, n.Column
	}
	ps.errs = append(ps.errs, e)
}

func (ps *parser) warnf(n *yaml.Node, format string, args ...any) {
	w := Warning{File: ps.file, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		w.Line = n.Line
	}
	ps.warns = append(ps.warns, w)
}

func (ps *parser) parse(data []byte) *Policy {
	p := &Policy{
		Name:   ps.file,
		Roles:  map[string]*Role{},
		Agents: map[string]*Agent{},
		labels: map[Rel]*relLabels{},
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		// yaml.v3 syntax errors read "yaml: line N: ..."; keep them whole.
		ps.errs = append(ps.errs, &PolicyError{File: ps.file, Msg: err.Error()})
		return nil
	}
	for {
		var extra yaml.Node
		err := dec.Decode(&extra)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil || !emptyDocument(&extra) {
			ps.errs = append(ps.errs, &PolicyError{File: ps.file, Line: extra.Line, Col: extra.Column,
				Msg: "a policy file holds one YAML document"})
			return nil
		}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		ps.warnf(nil, "policy is empty: every agent is denied")
		return p
	}
	root := deref(doc.Content[0])
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		ps.warnf(root, "policy is empty: every agent is denied")
		return p
	}
	var labelsN, rolesN, agentsN *yaml.Node
	ps.mapping(root, "policy", func(k, v *yaml.Node) {
		switch k.Value {
		case "labels":
			labelsN = v
		case "roles":
			rolesN = v
		case "agents":
			agentsN = v
		case "never_grant":
			p.NeverGrant = ps.labelPatterns(v, "never_grant")
		default:
			ps.errorf(k, "unknown key %q (want labels, roles, agents, never_grant)", k.Value)
		}
	})
	if labelsN != nil {
		ps.labels(p, labelsN)
	}
	var roleKeys []*yaml.Node
	if rolesN != nil {
		ps.mapping(rolesN, "roles", func(k, v *yaml.Node) {
			if !validName(k.Value) {
				ps.errorf(k, "role name %q: use letters, digits, '_', '-' and '.'", k.Value)
				return
			}
			p.Roles[k.Value] = ps.role(k.Value, v)
			roleKeys = append(roleKeys, k)
		})
	}
	used := map[string]bool{}
	if agentsN != nil {
		ps.mapping(agentsN, "agents", func(k, v *yaml.Node) {
			if !validAgentName(k.Value) {
				ps.errorf(k, "agent name %q: must be printable, without spaces", k.Value)
				return
			}
			a := ps.agent(k.Value, v)
			if a == nil {
				return
			}
			if p.Roles[a.Role] == nil {
				ps.errorf(v, "agent %s: role %q is not defined under roles", a.Name, a.Role)
				return
			}
			used[a.Role] = true
			p.Agents[a.Name] = a
		})
	}
	for _, k := range roleKeys {
		if !used[k.Value] {
			ps.warnf(k, "role %s is not used by any agent", k.Value)
		}
	}
	if len(p.Roles) == 0 && len(ps.errs) == 0 {
		ps.warnf(root, "policy has no roles: every agent is denied")
	}
	return p
}

// emptyDocument reports a document with no content (a stray "---").
func emptyDocument(doc *yaml.Node) bool {
	if len(doc.Content) == 0 {
		return true
	}
	c := doc.Content[0]
	return c.Kind == yaml.ScalarNode && c.Tag == "!!null" && c.Value == ""
}

// deref follows YAML aliases.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// mapping calls fn for each key of a mapping node, rejecting other node
// kinds, non-scalar keys, merge keys and duplicate keys.
func (ps *parser) mapping(n *yaml.Node, what string, fn func(k, v *yaml.Node)) {
	n = deref(n)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		ps.errorf(n, "%s: want a mapping, got %s", what, kindName(n))
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
			ps.errorf(k, "%s: keys must be plain names", what)
			continue
		}
		if seen[k.Value] {
			ps.errorf(k, "%s: duplicate key %q", what, k.Value)
			continue
		}
		seen[k.Value] = true
		fn(k, v)
	}
}

// strings reads a sequence of scalars (a single scalar is not accepted:
// lists are always written as lists).
func (ps *parser) strings(n *yaml.Node, what string) []string {
	n = deref(n)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		ps.errorf(n, "%s: want a list, got %s", what, kindName(n))
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for _, e := range n.Content {
		e = deref(e)
		if e.Kind != yaml.ScalarNode || e.Tag == "!!null" {
			ps.errorf(e, "%s: want a name, got %s", what, kindName(e))
			continue
		}
		out = append(out, e.Value)
	}
	return out
}

func (ps *parser) scalar(n *yaml.Node, what string) (string, bool) {
	n = deref(n)
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		ps.errorf(n, "%s: want a value, got %s", what, kindName(n))
		return "", false
	}
	return n.Value, true
}

func (ps *parser) boolean(n *yaml.Node, what string) (bool, bool) {
	n = deref(n)
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		ps.errorf(n, "%s: want true or false, got %q", what, n.Value)
		return false, false
	}
	var b bool
	if err := n.Decode(&b); err != nil {
		ps.errorf(n, "%s: %v", what, err)
		return false, false
	}
	return b, true
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "an unexpected node"
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == '@') {
			return false
		}
	}
	return true
}

// validAgentName accepts what clients send as the user name: printable
// characters without white space (SPIFFE-style names have ':' and '/').
func validAgentName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// validIdent accepts a plain (unquoted-style) SQL name as stored in the
// catalog: anything but empty, dots, and whitespace. Policy files do not
// quote names; a name with a dot cannot be written.
func validIdent(s string) bool {
	return s != "" && !strings.ContainsAny(s, ". \t\r\n\"*")
}

// labels parses the labels section: "schema.table" or "schema.table.column"
// → list of labels.
func (ps *parser) labels(p *Policy, n *yaml.Node) {
	ps.mapping(n, "labels", func(k, v *yaml.Node) {
		parts := strings.Split(k.Value, ".")
		if len(parts) < 2 || len(parts) > 3 || !allIdents(parts) {
			ps.errorf(k, "labels: key %q: want schema.table or schema.table.column", k.Value)
			return
		}
		rule := LabelRule{Rel: Rel{Schema: parts[0], Name: parts[1]}, Line: k.Line}
		if len(parts) == 3 {
			rule.Column = parts[2]
		}
		if ps.cat != nil {
			r := ps.cat.Relation(rule.Rel.Schema, rule.Rel.Name)
			switch {
			case r == nil:
				ps.errorf(k, "labels: relation %s is not in the catalog", rule.Rel)
				return
			case rule.Column != "" && r.Column(rule.Column) == nil:
				ps.errorf(k, "labels: column %s.%s is not in the catalog", rule.Rel, rule.Column)
				return
			}
		}
		for _, l := range ps.strings(v, "labels."+k.Value) {
			if !catalog.ValidLabel(l) {
				ps.errorf(v, "labels.%s: %q is not a label (lower-case [a-z0-9_-] segments joined by '.')", k.Value, l)
				continue
			}
			if !slices.Contains(rule.Labels, l) {
				rule.Labels = append(rule.Labels, l)
			}
		}
		p.Labels = append(p.Labels, rule)
		rl := p.labels[rule.Rel]
		if rl == nil {
			rl = &relLabels{columns: map[string][]string{}}
			p.labels[rule.Rel] = rl
		}
		if rule.Column == "" {
			rl.table = rule.Labels
		} else {
			rl.columns[rule.Column] = rule.Labels
		}
	})
}

func allIdents(parts []string) bool {
	for _, s := range parts {
		if !validIdent(s) {
			return false
		}
	}
	return true
}

func (ps *parser) role(name string, n *yaml.Node) *Role {
	r := &Role{Name: name, Catalog: true, Limits: DefaultLimits()}
	prefix := "roles." + name
	ps.mapping(n, prefix, func(k, v *yaml.Node) {
		switch k.Value {
		case "description":
			r.Description, _ = ps.scalar(v, prefix+".description")
		case "upstream":
			if s, ok := ps.scalar(v, prefix+".upstream"); ok {
				if !validName(s) {
					ps.errorf(v, "%s.upstream: %q is not a name", prefix, s)
				}
				r.Upstream = s
			}
		case "allow":
			r.Allow = ps.allow(prefix, v)
		case "deny_labels":
			for _, l := range ps.strings(v, prefix+".deny_labels") {
				if !catalog.ValidLabelPattern(l) {
					ps.errorf(v, "%s.deny_labels: %q is not a label pattern (a label, label.* or *)", prefix, l)
					continue
				}
				r.DenyLabels = append(r.DenyLabels, l)
			}
		case "never_grant":
			r.NeverGrant = ps.labelPatterns(v, prefix+".never_grant")
		case "functions":
			for _, f := range ps.strings(v, prefix+".functions") {
				ps.checkFunction(v, prefix+".functions", f, false)
				r.Functions = append(r.Functions, f)
			}
		case "settings":
			for _, s := range ps.strings(v, prefix+".settings") {
				if !validSetting(s) {
					ps.errorf(v, "%s.settings: %q is not a setting name (lower case)", prefix, s)
					continue
				}
				r.Settings = append(r.Settings, s)
			}
		case "catalog":
			if b, ok := ps.boolean(v, prefix+".catalog"); ok {
				r.Catalog = b
			}
		case "explain":
			r.Explain, _ = ps.boolean(v, prefix+".explain")
		case "max_rows":
			s, ok := ps.scalar(v, prefix+".max_rows")
			if !ok {
				return
			}
			nrows, err := strconv.Atoi(s)
			switch {
			case err != nil || v.Tag != "!!int":
				ps.errorf(v, "%s.max_rows: want a whole number, got %q", prefix, s)
			case nrows < 0:
				ps.errorf(v, "%s.max_rows: must not be negative (0 means no cap), got %d", prefix, nrows)
			default:
				r.MaxRows = nrows
			}
		case "limits":
			ps.limits(r, prefix+".limits", v)
		default:
			ps.errorf(k, "%s: unknown key %q (want upstream, allow, deny_labels, functions, settings, catalog, explain, max_rows, limits, never_grant, description)", prefix, k.Value)
		}
	})
	return r
}

// limits parses a role's limits: a mapping of limit name to an amount
// (see parseLimit).
func (ps *parser) limits(r *Role, what string, n *yaml.Node) {
	ps.mapping(n, what, func(k, v *yaml.Node) {
		l := Limit(k.Value)
		if !l.known() {
			names := make([]string, len(AllLimits))
			for i, x := range AllLimits {
				names[i] = string(x)
			}
			ps.errorf(k, "%s: unknown limit %q (want %s)", what, k.Value, strings.Join(names, ", "))
			return
		}
		s, ok := ps.scalar(v, what+"."+k.Value)
		if !ok {
			return
		}
		amount, err := parseLimit(l, s)
		if err != nil {
			ps.errorf(v, "%s.%s: %v", what, k.Value, err)
			return
		}
		r.Limits[l] = amount
		r.LimitsSet = append(r.LimitsSet, l)
	})
}

func validSetting(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// allow parses a role's allow list. Each item is a mapping with exactly one
// verb key whose value is a list of relation patterns, or a mapping from
// relation to its allowed columns.
func (ps *parser) allow(prefix string, n *yaml.Node) []Rule {
	n = deref(n)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		ps.errorf(n, "%s.allow: want a list of {verb: tables} items, got %s", prefix, kindName(n))
		return nil
	}
	var rules []Rule
	for i, item := range n.Content {
		item = deref(item)
		if item.Kind != yaml.MappingNode || len(item.Content) != 2 {
			ps.errorf(item, "%s.allow[%d]: want one {verb: tables} mapping (e.g. select: [public.orders])", prefix, i)
			continue
		}
		k, v := deref(item.Content[0]), deref(item.Content[1])
		verb := Verb(k.Value)
		if !slices.Contains(GrantVerbs, verb) {
			ps.errorf(k, "%s.allow[%d]: unknown verb %q (want select, insert, update, delete, merge, copy, ddl, lock, call)", prefix, i, k.Value)
			continue
		}
		rule := Rule{Verb: verb, Name: fmt.Sprintf("%s.allow[%d].%s", prefix, i, verb), Line: k.Line}
		switch v.Kind {
		case yaml.SequenceNode:
			for _, t := range ps.strings(v, rule.Name) {
				if verb == VerbCall {
					if ps.checkFunction(v, rule.Name, t, true) {
						rule.Tables = append(rule.Tables, TableRule{Pattern: t})
					}
					continue
				}
				if ps.checkRelPattern(v, rule.Name, t, verb) {
					rule.Tables = append(rule.Tables, TableRule{Pattern: t})
				}
			}
		case yaml.MappingNode:
			if verb == VerbCall || verb == VerbDDL || verb == VerbLock || verb == VerbDelete {
				ps.errorf(v, "%s: %s takes a list of names, not column lists", rule.Name, verb)
				continue
			}
			ps.mapping(v, rule.Name, func(tk, tv *yaml.Node) {
				if strings.HasSuffix(tk.Value, ".*") {
					ps.errorf(tk, "%s: column lists need a single relation, not %q", rule.Name, tk.Value)
					return
				}
				if !ps.checkRelPattern(tk, rule.Name, tk.Value, verb) {
					return
				}
				cols := ps.strings(tv, rule.Name+"."+tk.Value)
				if cols == nil {
					cols = []string{}
				}
				rel := ParseRel(tk.Value)
				for _, c := range cols {
					if !validIdent(c) {
						ps.errorf(tv, "%s.%s: %q is not a column name", rule.Name, tk.Value, c)
						continue
					}
					if r := ps.cat.Relation(rel.Schema, rel.Name); r != nil && r.Column(c) == nil {
						ps.errorf(tv, "%s.%s: column %s is not in the catalog", rule.Name, tk.Value, c)
					}
				}
				rule.Tables = append(rule.Tables, TableRule{Pattern: tk.Value, Columns: cols})
			})
		default:
			ps.errorf(v, "%s: want a list of relations or a mapping of relation to columns, got %s", rule.Name, kindName(v))
			continue
		}
		rules = append(rules, rule)
	}
	return rules
}

// checkRelPattern validates "schema.name" or "schema.*". A ddl grant may
// name a relation that does not exist yet (CREATE TABLE).
func (ps *parser) checkRelPattern(n *yaml.Node, what, s string, verb Verb) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 2 || !validIdent(parts[0]) || (parts[1] != "*" && !validIdent(parts[1])) {
		ps.errorf(n, "%s: %q: want schema.table or schema.*", what, s)
		return false
	}
	if ps.cat == nil {
		return true
	}
	if parts[1] == "*" {
		if len(ps.cat.Relations[parts[0]]) == 0 {
			ps.warnf(n, "%s: schema %s has no relations in the catalog", what, parts[0])
		}
		return true
	}
	if ps.cat.Relation(parts[0], parts[1]) == nil {
		if verb == VerbDDL {
			ps.warnf(n, "%s: relation %s is not in the catalog (yet)", what, s)
			return true
		}
		ps.errorf(n, "%s: relation %s is not in the catalog", what, s)
		return false
	}
	return true
}

// checkFunction validates a function or procedure name "schema.name" or
// "schema.*".
func (ps *parser) checkFunction(n *yaml.Node, what, s string, procedure bool) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 2 || !validIdent(parts[0]) || (parts[1] != "*" && !validIdent(parts[1])) {
		ps.errorf(n, "%s: %q: want schema.function or schema.*", what, s)
		return false
	}
	if ps.cat == nil || parts[1] == "*" {
		return true
	}
	f := ps.cat.Function(parts[0], parts[1])
	switch {
	case f == nil:
		ps.errorf(n, "%s: function %s is not in the catalog", what, s)
		return false
	case procedure && f.Kind != "procedure":
		ps.errorf(n, "%s: %s is a %s, not a procedure (call grants name procedures; list functions under functions)", what, s, f.Kind)
		return false
	case !procedure && f.Builtin:
		ps.warnf(n, "%s: %s is built in; built-in functions are allowed without listing them", what, s)
	}
	return true
}

// agent parses {role: name, description: text}.
func (ps *parser) agent(name string, n *yaml.Node) *Agent {
	a := &Agent{Name: name, Line: n.Line}
	prefix := "agents." + name
	ps.mapping(n, prefix, func(k, v *yaml.Node) {
		switch k.Value {
		case "role":
			a.Role, _ = ps.scalar(v, prefix+".role")
		case "description":
			a.Description, _ = ps.scalar(v, prefix+".description")
		default:
			ps.errorf(k, "%s: unknown key %q (want role, description)", prefix, k.Value)
		}
	})
	if a.Role == "" {
		ps.errorf(n, "%s: role is required", prefix)
		return nil
	}
	return a
}

// labelPatterns reads a list of label patterns (never_grant).
func (ps *parser) labelPatterns(n *yaml.Node, what string) []string {
	out := []string{}
	for _, l := range ps.strings(n, what) {
		if !catalog.ValidLabelPattern(l) {
			ps.errorf(n, "%s: %q is not a label pattern (a label, label.* or *)", what, l)
			continue
		}
		out = append(out, l)
	}
	return out
}
