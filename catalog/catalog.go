package catalog

import (
	"slices"
	"strings"
)

// FormatVersion is the catalog dump format this keyhole writes and reads.
// It grows when the loaders start recording something the analyzers need
// to decide safely, which a file saved before would lack, so that the
// analyzers would decide as if the database had none of it: 2 added the
// CHECK constraints, unique keys, partitioning and row security policies
// that make checks beyond a statement's text reads of the columns they
// look at; 3 added Column.HasMissing (and Function.ReturnsSet); 4 added
// Relation.Indexes (MySQL/MariaDB), without which an index's cardinality
// and the order of an index scan read every column of its table, and
// (Postgres) Function.ArgCalls, Function.SetsSearchPath and the code that
// comparing and converting values runs (exclusion operators, operator
// classes' functions, partition keys), without which a dump would let
// that code run unlisted. Load refuses a file of another format.
const FormatVersion = 4

// Catalog is the schema of one upstream database as keyhole needs it to
// resolve names and expand `*`: relations with their columns and labels,
// functions, and the login's search path. It is loaded by introspection
// (LoadPostgres) or from a JSON dump (ReadFile), and is read-only once built:
// concurrent readers need no locking.
type Catalog struct {
	// Format is the dump format the catalog was saved in (FormatVersion
	// when the loaders built it; Save writes FormatVersion).
	Format  int    `json:"format"`
	Dialect string `json:"dialect"` // "postgres" or "mysql"
	// Database is the database name the catalog was read from.
	Database string `json:"database"`
	// SearchPath is the login's effective search_path with "$user"
	// substituted and pg_catalog placed where Postgres puts it (first unless
	// listed explicitly), e.g. ["pg_catalog", "public"].
	SearchPath []string `json:"search_path"`
	// Login is the role the catalog was read as (current_user), what
	// "$user" in a search_path stands for in a session of that login
	// (Postgres). Empty: unknown.
	Login string `json:"login,omitempty"`
	// SchemaUsage maps every schema of the database (but pg_toast and
	// temporary schemas) to whether Login has USAGE on it
	// (has_schema_privilege, through granted roles too) (Postgres).
	// Postgres skips a search_path entry naming a schema that does not
	// exist or that the current user lacks USAGE on, so these decide what
	// an unqualified name resolves to. nil (a catalog saved before the
	// field existed, or not read from Postgres): unknown, and an analyzer
	// must then take every schema of a path as possibly skipped and
	// possibly searched.
	SchemaUsage map[string]bool `json:"schema_usage,omitempty"`
	// SessionsShareLogin is set by the loader when every upstream session
	// logs in as Login (one static login for every agent), so that
	// SchemaUsage and Login are the sessions' own. It is not saved: a
	// catalog read from a file, or read with a login other than the
	// sessions' (Vault gives each session its own role), says nothing
	// certain about a session's USAGE or "$user".
	SessionsShareLogin bool `json:"-"`
	// Relations by schema then name (exact, case-sensitive names as stored
	// in pg_class).
	Relations map[string]map[string]*Relation `json:"relations"`
	// Functions by schema then name; overloads share one entry (keyhole
	// decides on names, not signatures).
	Functions map[string]map[string]*Function `json:"functions"`
	// Operators by schema then name (Postgres): an operator runs its
	// function, and an unqualified operator, like a function, resolves
	// among the operators of the name in every schema of the path by the
	// operand types.
	Operators map[string]map[string][]Operator `json:"operators,omitempty"`
	// EventTriggers are the database's enabled event triggers (Postgres):
	// DDL runs their functions with the session's privileges. Event is
	// evtevent (ddl_command_start, ddl_command_end, sql_drop,
	// table_rewrite); Columns are unused.
	EventTriggers []Trigger `json:"event_triggers,omitempty"`
	// TypeFunctions maps a type ("schema.name") to the user functions
	// converting a value to it runs (Postgres): the constraints of a
	// domain (and of the domains it is over), a cast's function, a base
	// type's input function, and those of the types a value of it holds
	// (an array's element type, a composite type's attribute types, a
	// range's subtype): '{1}'::d[] and '(1)'::t check domain d in them.
	TypeFunctions map[string][]string `json:"type_functions,omitempty"`
	// ImplicitCasts maps a type to the types Postgres converts it to
	// implicitly (pg_cast with castcontext 'i'), as format_type prints
	// them: what an argument of that type can be passed as when Postgres
	// chooses a function or operator.
	ImplicitCasts map[string][]string `json:"implicit_casts,omitempty"`
	// LowerCaseTableNames is MySQL's lower_case_table_names: 0 compares
	// database and table names exactly, 1 and 2 case-insensitively.
	LowerCaseTableNames int `json:"lower_case_table_names,omitempty"`
	// Version is the server's version string as the login saw it
	// (MySQL/MariaDB VERSION(), e.g. "10.11.19-MariaDB-0+deb12u1"): the
	// analyzer tells MariaDB from MySQL by it.
	Version string `json:"version,omitempty"`
}

// RelKind is what a relation is.
type RelKind string

const (
	KindTable        RelKind = "table"
	KindView         RelKind = "view"
	KindMatView      RelKind = "materialized_view"
	KindForeignTable RelKind = "foreign_table"
	KindPartitioned  RelKind = "partitioned_table"
	KindSequence     RelKind = "sequence"
)

// Relation is a table, view, materialized view, foreign table or sequence.
type Relation struct {
	Schema string  `json:"schema"`
	Name   string  `json:"name"`
	Kind   RelKind `json:"kind"`
	// Columns in attribute order (attnum), excluding dropped and system
	// columns. `*` expands to these in this order.
	Columns []*Column `json:"columns"`
	// Definition is the view's defining SELECT (pg_get_viewdef), for views
	// and materialized views.
	Definition string `json:"definition,omitempty"`
	Comment    string `json:"comment,omitempty"`
	// Labels are labels on the whole relation, from its comment
	// ("keyhole: secret"); they apply to every column.
	Labels []string `json:"labels,omitempty"`
	// System is true for relations in pg_catalog and information_schema.
	System bool `json:"system,omitempty"`
	// Triggers are the relation's triggers, one entry per event (MySQL:
	// information_schema.TRIGGERS, whose bodies run with their definer's
	// privileges; Postgres: pg_trigger without internal and disabled
	// ones, whose functions run with the privileges of the session).
	Triggers []Trigger `json:"triggers,omitempty"`
	// ForeignKeys are the relation's foreign keys with their referential
	// actions: a delete or key update of the referenced row can write this
	// table (CASCADE, SET NULL, SET DEFAULT).
	ForeignKeys []ForeignKey `json:"foreign_keys,omitempty"`
	// Rules are a Postgres relation's rewrite rules other than a view's
	// _RETURN rule (pg_rewrite), without disabled ones: their actions
	// run, with the relation owner's privileges, in place of or besides
	// the statement that writes the relation.
	Rules []Rule `json:"rules,omitempty"`
	// Children are the relation's partitions and inheritance children
	// ("schema.name", pg_inherits): rows a write routes or reaches there
	// fire their triggers and constraints (Postgres).
	Children []string `json:"children,omitempty"`
	// Parents are the relations it is a partition or inheritance child of
	// ("schema.name"), the reverse of Children: LoadPostgres and Load fill
	// them in. A scan of a parent returns its descendants' rows, so a
	// label on one member of the family protects the data in all of them
	// (InheritanceFamily).
	Parents []string `json:"parents,omitempty"`
	// Calls are the user-defined functions Postgres runs for the rows a
	// statement reads or writes in the relation, beyond the statement's
	// own expressions: check constraints, generated columns, index
	// expressions and predicates, constraints and defaults of the
	// domains of its columns, row security policies.
	Calls []ImplicitCall `json:"calls,omitempty"`
	// Checks are a table's CHECK constraints, table- and column-level
	// (MySQL/MariaDB information_schema.CHECK_CONSTRAINTS; Postgres
	// pg_constraint contype 'c', with the columns they name, those a
	// partition or child inherits included): the server evaluates them
	// over the whole new row of every insert and update.
	Checks []Check `json:"checks,omitempty"`
	// UniqueKeys are a table's primary and unique keys, each its columns
	// in key order (MySQL/MariaDB information_schema.STATISTICS; ""
	// stands for an expression, a MySQL 8 functional key part). Postgres:
	// its unique and exclusion indexes, each with every column the index
	// reads (key columns, and those its expressions and predicate name,
	// from pg_depend). A write that changes a key column compares the
	// whole key with every other row's, and fails on a conflict.
	UniqueKeys []UniqueKey `json:"unique_keys,omitempty"`
	// Indexes are every index of a MySQL/MariaDB table (primary, unique,
	// plain, FULLTEXT, SPATIAL), each its columns in key order
	// (information_schema.STATISTICS; "" stands for an expression). An
	// index's CARDINALITY counts the distinct values of its columns, and
	// a scan through it returns the rows in the order of its columns.
	Indexes []Index `json:"indexes,omitempty"`
	// Partitioning are a partitioned MySQL/MariaDB table's partitioning
	// and subpartitioning expressions (information_schema.PARTITIONS; ""
	// for KEY () over the primary key): naming partitions (FROM t
	// PARTITION (p)) filters the rows by them. For a Postgres partitioned
	// table, the columns its partition key reads
	// (pg_partitioned_table.partattrs, and the columns its key
	// expressions name): naming one of its partitions filters the rows
	// by them.
	Partitioning []string `json:"partitioning,omitempty"`
	// RowPolicies are a Postgres table's row security policies while row
	// security is enabled on it (relrowsecurity): for a session subject
	// to them, the rows a statement reads, updates or deletes are those
	// their USING expressions pass, and a new row must pass their WITH
	// CHECK expressions.
	RowPolicies []RowPolicy `json:"row_policies,omitempty"`
}

// RowPolicy is one row security policy of a Postgres table.
type RowPolicy struct {
	Name string `json:"name"`
	// Events are the statements' row events it applies to (SELECT,
	// INSERT, UPDATE, DELETE; FOR ALL: all of them).
	Events []string `json:"events"`
	// Reads are the columns its expressions name, of the table or of
	// other tables its subqueries read (pg_depend).
	Reads []ColumnOf `json:"reads,omitempty"`
}

// ColumnOf is a column of a relation.
type ColumnOf struct {
	Schema string `json:"schema"`
	Table  string `json:"table"`
	Column string `json:"column"`
}

// UniqueKey is one primary or unique key of a MySQL/MariaDB table.
type UniqueKey struct {
	Name    string   `json:"name"`
	Columns []string `json:"columns"`
}

// Index is one index of a MySQL/MariaDB table.
type Index struct {
	Name    string   `json:"name"`
	Unique  bool     `json:"unique,omitempty"`
	Columns []string `json:"columns"`
}

// Check is one CHECK constraint of a table.
type Check struct {
	Name string `json:"name"`
	// Clause is the condition as the server prints it (CHECK_CLAUSE;
	// Postgres pg_get_expr).
	Clause string `json:"clause"`
	// Columns are the columns the condition names (Postgres conkey).
	Columns []string `json:"columns,omitempty"`
	// NotValid is set for a Postgres constraint added NOT VALID and not
	// validated since: existing rows may violate it, and Postgres
	// evaluates every CHECK constraint on every updated row, so an UPDATE
	// of any column fails or not with the columns it names.
	NotValid bool `json:"not_valid,omitempty"`
}

// Trigger is one trigger of a table (of a view: INSTEAD OF) for one event.
type Trigger struct {
	Name string `json:"name"`
	// Event is INSERT, UPDATE, DELETE or TRUNCATE; Timing BEFORE, AFTER or
	// INSTEAD OF.
	Event  string `json:"event"`
	Timing string `json:"timing"`
	// Level is ROW or STATEMENT (Postgres; MySQL triggers are row
	// triggers). A statement trigger fires even when no row is written.
	Level string `json:"level,omitempty"`
	// Columns are the columns of UPDATE OF: the trigger fires only for
	// an UPDATE that sets one of them (Postgres).
	Columns []string `json:"columns,omitempty"`
	// Functions are the functions the trigger runs, as "schema.name":
	// its trigger function and those its WHEN condition calls (Postgres).
	Functions []string `json:"functions,omitempty"`
}

// Rule is one rewrite rule of a Postgres relation.
type Rule struct {
	Name string `json:"name"`
	// Event is INSERT, UPDATE or DELETE.
	Event string `json:"event"`
	// Instead is set for DO INSTEAD rules (else DO ALSO).
	Instead bool `json:"instead,omitempty"`
}

// ImplicitCall is a function Postgres runs on some events of a relation.
type ImplicitCall struct {
	// Source is what runs it: "check constraint x", "index y",
	// "generated column z", "domain d of column c", "row security policy p".
	Source string `json:"source"`
	// Events are the statements' row events that run it: SELECT (row
	// security policies), INSERT, UPDATE, DELETE.
	Events []string `json:"events"`
	// Function is the function as "schema.name".
	Function string `json:"function"`
}

// ForeignKey is a foreign key of the table holding it (the child).
type ForeignKey struct {
	Name    string   `json:"name"`
	Columns []string `json:"columns"`
	// RefSchema.RefTable (RefColumns) is the referenced (parent) key.
	RefSchema  string   `json:"ref_schema"`
	RefTable   string   `json:"ref_table"`
	RefColumns []string `json:"ref_columns"`
	// OnUpdate and OnDelete are the referential actions as the server
	// prints them: CASCADE, SET NULL, SET DEFAULT, RESTRICT, NO ACTION.
	OnUpdate string `json:"on_update"`
	OnDelete string `json:"on_delete"`
}

// Column is one column of a relation.
type Column struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	Comment string `json:"comment,omitempty"`
	// Labels from the column comment ("keyhole: pii.email pii.contact").
	Labels []string `json:"labels,omitempty"`
	// Default is the column's default expression as pg_get_expr prints it
	// with an empty search_path (every name outside pg_catalog
	// schema-qualified), or empty. A statement that fills the column with
	// its default (an INSERT that omits it, DEFAULT, DEFAULT VALUES, SET
	// col = DEFAULT) runs the expression with the agent's privileges.
	// Identity columns and generated columns have none: Postgres advances
	// an identity column's sequence without checking privileges on it.
	Default string `json:"default,omitempty"`
	// HasMissing is set when Postgres keeps a value for the column in
	// pg_attribute.attmissingval (atthasmissing): ADD COLUMN ... DEFAULT
	// v on a table stores v there, not in the rows, and every row that
	// existed then reads the column as v until it is updated, even once
	// the default is dropped. Reading attmissingval reads such columns.
	HasMissing bool `json:"has_missing,omitempty"`
	// Sequences are the sequences Default advances (its nextval calls),
	// as "schema.name", from pg_depend; running the default needs USAGE
	// or UPDATE on each.
	Sequences []string `json:"sequences,omitempty"`
	// Generated is a generated column's expression (MySQL
	// GENERATION_EXPRESSION): reading the column reveals the columns the
	// expression reads.
	Generated string `json:"generated,omitempty"`
	// GeneratedReads are the other columns of the relation a generated
	// column's expression reads (Postgres GENERATED ALWAYS AS, from
	// pg_depend): reading the column reveals them, although Postgres asks
	// a privilege on the generated column alone.
	GeneratedReads []string `json:"generated_reads,omitempty"`
}

// Volatility is a function's pg_proc.provolatile.
type Volatility string

const (
	Immutable Volatility = "immutable"
	Stable    Volatility = "stable"
	Volatile  Volatility = "volatile"
)

// Function is a function, aggregate, window function or procedure.
type Function struct {
	Schema     string     `json:"schema"`
	Name       string     `json:"name"`
	Kind       string     `json:"kind"` // "function", "aggregate", "window", "procedure"
	Volatility Volatility `json:"volatility"`
	// Builtin is true for functions that come with the server (pg_catalog,
	// information_schema, oid below FirstNormalObjectId).
	Builtin bool `json:"builtin,omitempty"`
	// Language is the implementation language (internal, c, sql, plpgsql).
	Language string `json:"language,omitempty"`
	// SecurityDefiner is true when any overload runs with its owner's rights.
	SecurityDefiner bool `json:"security_definer,omitempty"`
	// ReturnsSet is true when any overload returns a set (Postgres
	// pg_proc.proretset): in a select list it changes the row count.
	ReturnsSet bool `json:"returns_set,omitempty"`
	// ArgCalls are the user functions Postgres runs converting a call's
	// arguments to an overload's parameter types or its result to the
	// return type (Postgres, any overload): the check constraints of a
	// domain among them (or inside an array, composite or range type
	// among them), a cast's function, a base type's input function. A
	// call runs them though the statement names only the function.
	ArgCalls []string `json:"arg_calls,omitempty"`
	// SetsSearchPath is set when every overload fixes its own search_path
	// (CREATE FUNCTION ... SET search_path, pg_proc.proconfig): its body
	// resolves unqualified names the same under any session search_path.
	// Without it the body resolves them under the session's path, which
	// a session that changes its search_path chooses (Postgres).
	SetsSearchPath bool `json:"sets_search_path,omitempty"`
	// Overloads are the argument lists of the name's overloads (Postgres).
	// A call names a function, not an overload, and Postgres chooses among
	// the functions of the name in every schema of the search path by the
	// argument types: the analyzer uses them to tell which schema's
	// function a call whose argument types it knows reaches.
	Overloads []Signature `json:"overloads,omitempty"`
}

// Operator is one operator of a name.
type Operator struct {
	// Left and Right are the operand types as format_type prints them;
	// Left is empty for a prefix operator.
	Left  string `json:"left,omitempty"`
	Right string `json:"right"`
	// Function is the function it runs, as "schema.name".
	Function string `json:"function"`
}

// Signature is the input argument list of one overload.
type Signature struct {
	// Args are the argument types as format_type prints them without a
	// type modifier ("integer", "text", "character varying").
	Args []string `json:"args"`
	// Defaults counts the trailing arguments that have defaults.
	Defaults int `json:"defaults,omitempty"`
	// Variadic is set when the last argument is VARIADIC.
	Variadic bool `json:"variadic,omitempty"`
}

// Relation returns the relation schema.name, or nil.
func (c *Catalog) Relation(schema, name string) *Relation {
	if c == nil {
		return nil
	}
	return c.Relations[schema][name]
}

// ResolveRelation finds an unqualified relation name along searchPath (the
// catalog's own SearchPath when searchPath is nil), the way Postgres does:
// the first schema that has it wins. pg_catalog is searched first unless the
// path lists it explicitly.
func (c *Catalog) ResolveRelation(name string, searchPath []string) *Relation {
	for _, s := range c.effectivePath(searchPath) {
		if r := c.Relation(s, name); r != nil {
			return r
		}
	}
	return nil
}

// Function returns the function schema.name, or nil.
func (c *Catalog) Function(schema, name string) *Function {
	if c == nil {
		return nil
	}
	return c.Functions[schema][name]
}

// ResolveFunction finds an unqualified function name along searchPath, as
// ResolveRelation does.
func (c *Catalog) ResolveFunction(name string, searchPath []string) *Function {
	for _, s := range c.effectivePath(searchPath) {
		if f := c.Function(s, name); f != nil {
			return f
		}
	}
	return nil
}

// SchemaSearched says whether Postgres searches schema s when a session's
// search_path names it: known is false when the catalog cannot tell.
// pg_catalog and pg_temp are always searched (the session's temporary
// schema holds nothing the catalog knows); a schema the catalog does not
// list did not exist when it was read, and is skipped; whether a session
// has USAGE on an existing one is known only when sessions log in as the
// catalog's login (SessionsShareLogin).
func (c *Catalog) SchemaSearched(s string) (searched, known bool) {
	if s == "pg_catalog" || s == "pg_temp" {
		return true, true
	}
	if c == nil || c.SchemaUsage == nil {
		return false, false
	}
	usage, exists := c.SchemaUsage[s]
	if !exists {
		return false, true
	}
	if !c.SessionsShareLogin {
		return false, false
	}
	return usage, true
}

// EffectivePath is searchPath (the catalog's own when nil) as Postgres
// searches it: pg_catalog first unless the path lists it.
func (c *Catalog) EffectivePath(searchPath []string) []string { return c.effectivePath(searchPath) }

func (c *Catalog) effectivePath(searchPath []string) []string {
	if searchPath == nil && c != nil {
		searchPath = c.SearchPath
	}
	for _, s := range searchPath {
		if s == "pg_catalog" {
			return searchPath
		}
	}
	if c != nil && c.Dialect == "mysql" {
		return searchPath
	}
	return append([]string{"pg_catalog"}, searchPath...)
}

// OperatorsNamed returns the operators called name in schema.
func (c *Catalog) OperatorsNamed(schema, name string) []Operator {
	if c == nil {
		return nil
	}
	return c.Operators[schema][name]
}

// Column returns the named column of r, or nil.
func (r *Relation) Column(name string) *Column {
	for _, col := range r.Columns {
		if col.Name == name {
			return col
		}
	}
	return nil
}

// GeneratedFrom returns the other columns of r that generated column c's
// expression names, directly or through other generated columns: reading
// c reveals them. It is nil for a column that is not generated. MySQL and
// MariaDB print the names in GENERATION_EXPRESSION backticked, so a name
// counts where it stands between backticks; a loose match can only name
// one column too many. Postgres's are listed in GeneratedReads.
func (r *Relation) GeneratedFrom(c *Column) []*Column {
	var out []*Column
	seen := map[*Column]bool{c: true}
	var walk func(c *Column)
	walk = func(c *Column) {
		if c.Generated == "" && len(c.GeneratedReads) == 0 {
			return
		}
		expr := strings.ToLower(c.Generated)
		for _, other := range r.Columns {
			if seen[other] || !slices.Contains(c.GeneratedReads, other.Name) &&
				(expr == "" || !strings.Contains(expr, "`"+strings.ToLower(other.Name)+"`")) {
				continue
			}
			seen[other] = true
			out = append(out, other)
			walk(other)
		}
	}
	walk(c)
	return out
}

// Rel is the relation's qualified name as "schema.name".
func (r *Relation) String() string { return r.Schema + "." + r.Name }

// RelationQualified returns the relation named "schema.name" (as Children
// and Parents hold them), or nil. A schema or relation name may itself
// hold a dot, so every split is tried.
func (c *Catalog) RelationQualified(qualified string) *Relation {
	for i := 0; i < len(qualified); i++ {
		if qualified[i] != '.' {
			continue
		}
		if r := c.Relation(qualified[:i], qualified[i+1:]); r != nil {
			return r
		}
	}
	return nil
}

// InheritanceFamily returns the relations whose rows are r's or include
// r's (Postgres partitions and inheritance children): its ancestors and
// its descendants, transitively, without r itself and without siblings.
// A scan of a parent returns its descendants' rows, so the same data is
// reached by naming any of them: a label on a column of one member
// applies to the column of that name in the others (a partition's
// columns are its parent's, an inheritance child's inherited columns
// keep their names), and a label on a whole member to all of them.
func (c *Catalog) InheritanceFamily(r *Relation) []*Relation {
	if r == nil || len(r.Parents) == 0 && len(r.Children) == 0 {
		return nil
	}
	var out []*Relation
	inOut := map[*Relation]bool{r: true}
	walk := func(next func(*Relation) []string) {
		queue := []*Relation{r}
		queued := map[*Relation]bool{r: true}
		for i := 0; i < len(queue) && i < 100000; i++ {
			for _, q := range next(queue[i]) {
				m := c.RelationQualified(q)
				if m == nil || queued[m] {
					continue
				}
				queued[m] = true
				queue = append(queue, m)
				if !inOut[m] {
					inOut[m] = true
					out = append(out, m)
				}
			}
		}
	}
	walk(func(m *Relation) []string { return m.Parents })
	walk(func(m *Relation) []string { return m.Children })
	return out
}

// linkParents fills every relation's Parents from the Children of the
// others (a catalog saved before Parents existed has Children only).
func (c *Catalog) linkParents() {
	for _, rels := range c.Relations {
		for _, r := range rels {
			if r == nil {
				continue
			}
			for _, child := range r.Children {
				cr := c.RelationQualified(child)
				if cr != nil && !slices.Contains(cr.Parents, r.String()) {
					cr.Parents = append(cr.Parents, r.String())
				}
			}
		}
	}
	for _, rels := range c.Relations {
		for _, r := range rels {
			if r != nil && len(r.Parents) > 1 {
				slices.Sort(r.Parents)
			}
		}
	}
}
