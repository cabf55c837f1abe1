package catalog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// firstNormalObjectID is Postgres's FirstNormalObjectId: objects with a
// lower oid were created by initdb, i.e. come with the server.
const firstNormalObjectID = 16384

// ErrInTransaction is returned by InspectPostgres and LoadPostgres for a
// connection that is inside a transaction block.
var ErrInTransaction = errors.New("connection is in a transaction")

// Loaded is the result of an introspection: the catalog and the problems
// that did not stop it from loading (a comment with an invalid label, for
// one). Warnings are for the operator: keyhole logs them at start and on
// reload, and `keyhole labels` prints them.
type Loaded struct {
	Catalog  *Catalog
	Warnings []string
}

// LoadPostgres reads the catalog of the database conn is connected to, as
// conn's login sees it. Warnings (see InspectPostgres) are dropped; callers
// that report them use InspectPostgres.
func LoadPostgres(ctx context.Context, conn *pgx.Conn) (*Catalog, error) {
	l, err := InspectPostgres(ctx, conn)
	if err != nil {
		return nil, err
	}
	return l.Catalog, nil
}

// LoadPostgresDSN connects to dsn, loads its catalog and disconnects.
func LoadPostgresDSN(ctx context.Context, dsn string) (*Catalog, error) {
	l, err := InspectPostgresDSN(ctx, dsn)
	if err != nil {
		return nil, err
	}
	return l.Catalog, nil
}

// InspectPostgresDSN is InspectPostgres over a connection of its own.
func InspectPostgresDSN(ctx context.Context, dsn string) (*Loaded, error) {
	// pgx's connect and parse errors redact the password, so wrapping them
	// does not leak it.
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("catalog: connect to postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return InspectPostgres(ctx, conn)
}

// InspectPostgres reads the catalog of the database conn is connected to:
// every relation of every schema (pg_catalog and information_schema marked
// System; pg_toast and temporary schemas left out), their columns in attnum
// order, comments and the labels in them, view definitions (with every
// relation schema-qualified), and every function. It runs a handful of
// queries in one read-only repeatable-read transaction, so they see one
// snapshot of the system catalogs; conn must not be in a transaction.
//
// SearchPath is current_schemas(true) without temporary schemas: the
// schemas Postgres actually searches for unqualified names, in order, with
// "$user" substituted, schemas that do not exist or that the login lacks
// USAGE on left out (Postgres skips those too), and pg_catalog first unless
// search_path lists it elsewhere. It reflects role and database settings
// (ALTER ROLE/DATABASE ... SET search_path) and any search_path in the DSN,
// which is why it is read from the live session rather than from pg_settings.
func InspectPostgres(ctx context.Context, conn *pgx.Conn) (*Loaded, error) {
	// The snapshot transaction below must not nest in (and its rollback
	// must not end) a transaction of the caller's.
	if st := conn.PgConn().TxStatus(); st != 'I' {
		return nil, fmt.Errorf("catalog: %w (status %q)", ErrInTransaction, st)
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("catalog: begin: %w", err)
	}
	// Read-only: rolling back is all the cleanup there is.
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	l := &Loaded{Catalog: &Catalog{
		Format:    FormatVersion,
		Dialect:   "postgres",
		Relations: map[string]map[string]*Relation{},
		Functions: map[string]map[string]*Function{},
		Operators: map[string]map[string][]Operator{},
	}}
	steps := []struct {
		what string
		run  func(context.Context, pgx.Tx, *Loaded) error
	}{
		{"database and search path", pgSession},
		{"relations", pgRelations},
		{"columns", pgColumns},
		{"functions", pgFunctions},
		{"triggers", pgTriggers},
		{"rules", pgRules},
		{"foreign keys", pgForeignKeys},
		{"implicit calls", pgImplicitCalls},
		{"operators", pgOperators},
		{"implicit casts", pgImplicitCasts},
		{"type functions", pgTypeFunctions},
		{"event triggers", pgEventTriggers},
		{"inheritance", pgChildren},
		{"check constraints", pgChecks},
		{"unique keys", pgUniqueKeys},
		{"partition keys", pgPartitionKeys},
		{"row security policies", pgRowPolicies},
	}
	for _, s := range steps {
		if err := s.run(ctx, tx, l); err != nil {
			return nil, fmt.Errorf("catalog: load %s: %w", s.what, err)
		}
	}
	l.Catalog.linkParents()
	return l, nil
}

func pgSession(ctx context.Context, tx pgx.Tx, l *Loaded) error {
	var path []string
	if err := tx.QueryRow(ctx,
		`SELECT pg_catalog.current_database(), pg_catalog.current_schemas(true)::pg_catalog.text[]`,
	).Scan(&l.Catalog.Database, &path); err != nil {
		return err
	}
	// With an empty search_path pg_get_viewdef schema-qualifies every
	// relation and non-pg_catalog function it prints, so a Definition means
	// the same whatever path it is later analyzed under; and the queries
	// below resolve only to pg_catalog, whatever objects a user created on
	// the login's path. SET LOCAL ends with the transaction and so never
	// touches the caller's session.
	if _, err := tx.Exec(ctx, `SET LOCAL search_path = ''`); err != nil {
		return err
	}
	// has_schema_privilege checks the current user with the privileges of
	// the roles it inherits, as Postgres's search path does.
	rows, err := tx.Query(ctx, `SELECT CURRENT_USER::pg_catalog.text, n.nspname::pg_catalog.text,
		pg_catalog.has_schema_privilege(n.oid, 'USAGE')
		FROM pg_catalog.pg_namespace n WHERE `+excludedSchemas)
	if err != nil {
		return err
	}
	l.Catalog.SchemaUsage = map[string]bool{}
	var schema string
	var usage bool
	if _, err := pgx.ForEachRow(rows, []any{&l.Catalog.Login, &schema, &usage}, func() error {
		l.Catalog.SchemaUsage[schema] = usage
		return nil
	}); err != nil {
		return err
	}
	l.Catalog.SearchPath = []string{}
	for _, s := range path {
		// The session's own temp schema (pg_temp_N) exists only if this
		// connection made temp objects; it is no part of the login's path.
		if isTempSchema(s) {
			continue
		}
		l.Catalog.SearchPath = append(l.Catalog.SearchPath, s)
	}
	return nil
}

func isTempSchema(s string) bool {
	return strings.HasPrefix(s, "pg_temp_") || strings.HasPrefix(s, "pg_toast_temp_")
}

// excludedSchemas leaves out TOAST storage and the temporary schemas of all
// sessions: their contents are not addressable by agents' SQL (temp tables
// are per-session and not known at load time).
const excludedSchemas = `n.nspname <> 'pg_toast'
	AND n.nspname NOT LIKE 'pg\_temp\_%'
	AND n.nspname NOT LIKE 'pg\_toast\_temp\_%'`

// relkinds maps pg_class.relkind to RelKind for the kinds keyhole models;
// indexes ('i', 'I'), TOAST tables ('t') and composite types ('c') are not
// relations a statement can read.
var relkinds = map[string]RelKind{
	"r": KindTable,
	"p": KindPartitioned,
	"v": KindView,
	"m": KindMatView,
	"f": KindForeignTable,
	"S": KindSequence,
}

const relationsSQL = `
SELECT n.nspname, c.relname, c.relkind::text,
       coalesce(d.description, ''),
       CASE WHEN c.relkind IN ('v', 'm') THEN coalesce(pg_get_viewdef(c.oid, true), '') ELSE '' END
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_description d
       ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
  AND ` + excludedSchemas + `
ORDER BY n.nspname, c.relname`

func pgRelations(ctx context.Context, tx pgx.Tx, l *Loaded) error {
	rows, err := tx.Query(ctx, relationsSQL)
	if err != nil {
		return err
	}
	var schema, name, relkind, comment, def string
	_, err = pgx.ForEachRow(rows, []any{&schema, &name, &relkind, &comment, &def}, func() error {
		r := &Relation{
			Schema:     schema,
			Name:       name,
			Kind:       relkinds[relkind],
			Columns:    []*Column{},
			Definition: def,
			Comment:    comment,
			System:     isSystemSchema(schema),
		}
		r.Labels = l.commentLabels(r.String(), comment)
		m := l.Catalog.Relations[schema]
		if m == nil {
			m = map[string]*Relation{}
			l.Catalog.Relations[schema] = m
		}
		m[name] = r
		return nil
	})
	return err
}

// columnsSQL reads the columns with their defaults. Generated columns
// (attgenerated) keep their expression in pg_attrdef too, but it is not
// a default a statement can ask for; identity columns have no pg_attrdef
// row. A default's sequences are the sequences its expression depends on
// (nextval('s'::regclass) records that dependency). A generated
// column's expression depends on the other columns it reads (and,
// internally, on the column itself).
const columnsSQL = `
SELECT n.nspname, c.relname, a.attname,
       format_type(a.atttypid, a.atttypmod),
       coalesce(d.description, ''),
       coalesce(pg_get_expr(ad.adbin, ad.adrelid), ''),
       coalesce((SELECT array_agg(sn.nspname || '.' || s.relname ORDER BY sn.nspname, s.relname)
                 FROM pg_depend dep
                 JOIN pg_class s ON s.oid = dep.refobjid
                 JOIN pg_namespace sn ON sn.oid = s.relnamespace
                 WHERE dep.classid = 'pg_attrdef'::regclass AND dep.objid = ad.oid
                   AND dep.refclassid = 'pg_class'::regclass AND s.relkind = 'S'),
                '{}')::text[],
       coalesce((SELECT array_agg(ra.attname::text ORDER BY ra.attnum)
                 FROM pg_attrdef gd
                 JOIN pg_depend dep ON dep.classid = 'pg_attrdef'::regclass AND dep.objid = gd.oid
                  AND dep.refclassid = 'pg_class'::regclass AND dep.refobjid = gd.adrelid
                  AND dep.refobjsubid > 0 AND dep.refobjsubid <> gd.adnum
                 JOIN pg_attribute ra ON ra.attrelid = gd.adrelid AND ra.attnum = dep.refobjsubid
                 WHERE a.attgenerated <> '' AND gd.adrelid = a.attrelid AND gd.adnum = a.attnum),
                '{}')::text[],
       a.atthasmissing
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_description d
       ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = a.attnum
LEFT JOIN pg_attrdef ad
       ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum AND a.attgenerated = ''
WHERE a.attnum > 0 AND NOT a.attisdropped
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
  AND ` + excludedSchemas + `
ORDER BY n.nspname, c.relname, a.attnum`

func pgColumns(ctx context.Context, tx pgx.Tx, l *Loaded) error {
	rows, err := tx.Query(ctx, columnsSQL)
	if err != nil {
		return err
	}
	var (
		schema, rel, name, typ, comment, def string
		seqs, genReads                       []string
		hasMissing                           bool
	)
	_, err = pgx.ForEachRow(rows, []any{&schema, &rel, &name, &typ, &comment, &def, &seqs, &genReads, &hasMissing}, func() error {
		r := l.Catalog.Relation(schema, rel)
		if r == nil {
			// Same snapshot as the relations query, so this cannot happen
			// unless the two queries disagree; refuse rather than guess.
			return fmt.Errorf("column %s of unknown relation %s.%s", name, schema, rel)
		}
		col := &Column{
			Name:       name,
			Type:       typ,
			Comment:    comment,
			Labels:     l.commentLabels(r.String()+"."+name, comment),
			Default:    def,
			HasMissing: hasMissing,
		}
		if len(seqs) > 0 {
			col.Sequences = slices.Clone(seqs)
		}
		if len(genReads) > 0 {
			col.GeneratedReads = slices.Clone(genReads)
		}
		r.Columns = append(r.Columns, col)
		return nil
	})
	return err
}

// functionsSQL reads every function with what converting to its
// parameter and result types runs (typeConv: a call coerces its
// arguments to the parameter types, a domain's among them checked, and
// the result to the return type) and whether it fixes its search_path.
const functionsSQL = `
WITH RECURSIVE ` + funcDeps + `,
` + typeConv + `
SELECT n.nspname, p.proname, p.prokind::text, p.provolatile::text,
       l.lanname, p.prosecdef, p.oid::int8,
       array(SELECT format_type(u.t, NULL) FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY u(t, i) ORDER BY u.i),
       p.pronargdefaults::int, p.provariadic <> 0, p.proretset,
       array(SELECT DISTINCT cn.nspname || '.' || cp.proname FROM typeconvq tc
             JOIN pg_proc cp ON cp.oid = tc.fn JOIN pg_namespace cn ON cn.oid = cp.pronamespace
             WHERE tc.typ = ANY (coalesce(p.proallargtypes, p.proargtypes::oid[]) || p.prorettype)
             ORDER BY 1),
       EXISTS (SELECT FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=%')
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_language l ON l.oid = p.prolang
WHERE ` + excludedSchemas + `
ORDER BY n.nspname, p.proname, p.oid`

// Overloads of a name share one Function, so where they differ the entry
// takes the most cautious value: the most volatile volatility, the most
// special kind, Builtin only if every overload is built in, SecurityDefiner
// and ReturnsSet if any overload is, SetsSearchPath if every one does,
// the ArgCalls of all. Language is that of the oldest overload.
func pgFunctions(ctx context.Context, tx pgx.Tx, l *Loaded) error {
	rows, err := tx.Query(ctx, functionsSQL)
	if err != nil {
		return err
	}
	var (
		schema, name, prokind, provolatile, lang string
		secdef, variadic, retset, setsPath       bool
		oid                                      int64
		args, argCalls                           []string
		defaults                                 int
	)
	_, err = pgx.ForEachRow(rows, []any{&schema, &name, &prokind, &provolatile, &lang, &secdef, &oid, &args, &defaults, &variadic, &retset, &argCalls, &setsPath}, func() error {
		kind, ok := prokinds[prokind]
		if !ok {
			return fmt.Errorf("function %s.%s: unknown prokind %q", schema, name, prokind)
		}
		vol, ok := volatilities[provolatile]
		if !ok {
			return fmt.Errorf("function %s.%s: unknown provolatile %q", schema, name, provolatile)
		}
		// Only what initdb created is built in: an extension (adminpack,
		// pg_surgery, dblink ...) or a DBA may install functions into
		// pg_catalog later, and those are user code like any other.
		builtin := oid < firstNormalObjectID
		m := l.Catalog.Functions[schema]
		if m == nil {
			m = map[string]*Function{}
			l.Catalog.Functions[schema] = m
		}
		sig := Signature{Args: slices.Clone(args), Defaults: defaults, Variadic: variadic}
		f := m[name]
		if f == nil {
			m[name] = &Function{
				Schema: schema, Name: name, Kind: kind, Volatility: vol,
				Builtin: builtin, Language: lang, SecurityDefiner: secdef, ReturnsSet: retset,
				SetsSearchPath: setsPath, Overloads: []Signature{sig},
			}
			if len(argCalls) > 0 {
				m[name].ArgCalls = slices.Clone(argCalls)
			}
			return nil
		}
		f.Overloads = append(f.Overloads, sig)
		for _, c := range argCalls {
			if !slices.Contains(f.ArgCalls, c) {
				f.ArgCalls = append(f.ArgCalls, c)
			}
		}
		f.SetsSearchPath = f.SetsSearchPath && setsPath
		if kindRank[kind] > kindRank[f.Kind] {
			f.Kind = kind
		}
		if volRank[vol] > volRank[f.Volatility] {
			f.Volatility = vol
		}
		f.Builtin = f.Builtin && builtin
		f.SecurityDefiner = f.SecurityDefiner || secdef
		f.ReturnsSet = f.ReturnsSet || retset
		return nil
	})
	return err
}

var prokinds = map[string]string{"f": "function", "a": "aggregate", "w": "window", "p": "procedure"}

var kindRank = map[string]int{"function": 0, "window": 1, "aggregate": 2, "procedure": 3}

var volatilities = map[string]Volatility{"i": Immutable, "s": Stable, "v": Volatile}

var volRank = map[Volatility]int{Immutable: 0, Stable: 1, Volatile: 2}

func isSystemSchema(s string) bool { return s == "pg_catalog" || s == "information_schema" }

// commentLabels parses the labels in the comment of object. A bad label is a
// warning, not a load failure (one typo in a comment must not take the proxy
// down); the object keeps its valid labels and gets InvalidLabel too.
func (l *Loaded) commentLabels(object, comment string) []string {
	labels, err := ParseCommentLabels(comment)
	if err != nil {
		l.Warnings = append(l.Warnings, fmt.Sprintf("%s: comment: %v; labelled %s until fixed", object, err, InvalidLabel))
		labels = sortedSet(append(labels, InvalidLabel))
	}
	return labels
}

// userFunc is a pg_proc row that is not built in: created after initdb and
// outside the system schemas (see pgFunctions).
const userFunc = `p.oid >= 16384 AND fn.nspname NOT IN ('pg_catalog', 'information_schema')`

// funcDeps maps catalog objects (classid, objid) to the functions their
// stored expressions call: the dependencies Postgres records on functions
// (recordDependencyOnExpr), and on operators, whose functions they run.
const funcDeps = `
funcdeps AS (
	SELECT d.classid, d.objid, d.refobjid AS fn
	FROM pg_depend d WHERE d.refclassid = 'pg_proc'::regclass
	UNION
	SELECT d.classid, d.objid, o.oprcode::oid
	FROM pg_depend d JOIN pg_operator o ON o.oid = d.refobjid
	WHERE d.refclassid = 'pg_operator'::regclass AND o.oprcode <> 0
)`

// typeConv maps types (typeconv.typ) to the user functions converting a
// value to them runs: a domain's check constraints, a cast's function,
// a base type's input and receive functions, and those of every type a
// value of the type holds (typeedges: a domain's base type, an array's
// element type, a composite type's attributes, a range's subtype, a
// multirange's range), since Postgres converts those parts too: '{1}'
// as d[], '(1)' or ROW(1) as a composite with a d attribute, and
// jsonb_populate_record into one, all check d. It follows funcDeps.
// typeconvq leaves out the casts and input functions written in C, for
// what a write of a column or a call of a function converts without a
// cast in the text (TypeFunctions, for casts the text names, keeps them).
const typeConv = `typeedges(parent, sub) AS (
	SELECT oid, typbasetype FROM pg_type WHERE typtype = 'd'
	UNION ALL
	SELECT oid, typelem FROM pg_type WHERE typelem <> 0
	UNION ALL
	SELECT t.oid, a.atttypid FROM pg_type t JOIN pg_attribute a ON a.attrelid = t.typrelid
	WHERE t.typrelid <> 0 AND a.attnum > 0 AND NOT a.attisdropped
	UNION ALL
	SELECT rngtypid, rngsubtype FROM pg_range
	UNION ALL
	SELECT rngmultitypid, rngtypid FROM pg_range
),
typedirect(typ, fn, checks) AS (
	SELECT k.contypid, fd.fn, true FROM pg_constraint k
	JOIN funcdeps fd ON fd.classid = 'pg_constraint'::regclass AND fd.objid = k.oid
	WHERE k.contypid <> 0
	UNION
	SELECT c.casttarget, c.castfunc, false FROM pg_cast c WHERE c.castfunc <> 0
	UNION
	SELECT t.oid, t.typinput, false FROM pg_type t WHERE t.typtype = 'b'
	UNION
	SELECT t.oid, t.typreceive, false FROM pg_type t WHERE t.typtype = 'b' AND t.typreceive <> 0
),
typeconv(typ, fn, checks) AS (
	SELECT d.typ, d.fn, d.checks FROM typedirect d
	JOIN pg_proc p ON p.oid = d.fn JOIN pg_namespace fn ON fn.oid = p.pronamespace
	WHERE ` + userFunc + `
	UNION
	SELECT e.parent, c.fn, c.checks FROM typeconv c JOIN typeedges e ON e.sub = c.typ
),
-- What converting to a type runs beyond a cast the text names: a
-- domain's checks, whatever their language, and casts and input
-- functions that can run queries (an extension's C input function and
-- casts, hstore's or citext's, parse what they are given; counting them
-- would make every write of a citext column call citextin).
typeconvq(typ, fn) AS (
	SELECT tc.typ, tc.fn FROM typeconv tc
	JOIN pg_proc p ON p.oid = tc.fn JOIN pg_language l ON l.oid = p.prolang
	WHERE tc.checks OR l.lanname NOT IN ('c', 'internal')
)`

// triggersSQL reads the triggers that can fire: not the internal ones
// (foreign key and deferred unique checks, modelled by ForeignKeys) and
// not disabled ones (tgenabled 'D'); replica and always triggers count,
// whatever session_replication_role. tgtype is a bit set (trigger.h):
// ROW 1, BEFORE 2, INSERT 4, DELETE 8, UPDATE 16, TRUNCATE 32, INSTEAD 64.
// A trigger runs its function and what its WHEN condition calls.
const triggersSQL = `
WITH ` + funcDeps + `
SELECT n.nspname, c.relname, t.tgname, t.tgtype::int,
       coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
                 WHERE a.attrelid = t.tgrelid AND a.attnum = ANY (t.tgattr::int2[])), '{}')::text[],
       (SELECT array_agg(DISTINCT fn.nspname || '.' || p.proname)
        FROM pg_proc p JOIN pg_namespace fn ON fn.oid = p.pronamespace
        WHERE p.oid = t.tgfoid
           OR p.oid IN (SELECT fd.fn FROM funcdeps fd WHERE fd.classid = 'pg_trigger'::regclass AND fd.objid = t.oid))::text[]
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT t.tgisinternal AND t.tgenabled <> 'D'
  AND ` + excludedSchemas + `
ORDER BY n.nspname, c.relname, t.tgname`

// Trigger type bits (tgtype, catalog/pg_trigger.h).
const (
	tgRow      = 1 << 0
	tgBefore   = 1 << 1
	tgInsert   = 1 << 2
	tgDelete   = 1 << 3
	tgUpdate   = 1 << 4
	tgTruncate = 1 << 5
	tgInstead  = 1 << 6
)

func pgTriggers(ctx context.Context, tx pgx.Tx, l *Loaded) error {
	rows, err := tx.Query(ctx, triggersSQL)
	if err != nil {
		return err
	}
	var (
		schema, rel, name string
		tgtype            int
		cols, funcs       []string
	)
	_, err = pgx.ForEachRow(rows, []any{&schema, &rel, &name, &tgtype, &cols, &funcs}, func() error {
		r := l.Catalog.Relation(schema, rel)
		if r == nil {
			// A trigger on a relation kind keyhole does not load (none
			// that a statement can write).
			return nil
		}
		tr := Trigger{Name: name, Timing: "AFTER", Level: "STATEMENT", Functions: slices.Clone(funcs)}
		switch {
		case tgtype&tgInstead != 0:
			tr.Timing = "INSTEAD OF"
		case tgtype&tgBefore != 0:
			tr.Timing = "BEFORE"
		}
		if tgtype&tgRow != 0 {
			tr.Level = "ROW"
		}
		for _, ev := range []struct {
			bit  int
			name string
		}{{tgInsert, "INSERT"}, {tgUpdate, "UPDATE"}, {tgDelete, "DELETE"}, {tgTruncate, "TRUNCATE"}} {
			if tgtype&ev.bit == 0 {
				continue
			}
			e := tr
			e.Event = ev.name
			if ev.name == "UPDATE" && len(cols) > 0 {
				e.Columns = slices.Clone(cols)
			}
			r.Triggers = append(r.Triggers, e)
		}
		return nil
	})
	return err
}

// rulesSQL reads the rewrite rules of relations other than a view's
// _RETURN rule, without disabled ones. ev_type: 2 UPDATE, 3 INSERT, 4
// DELETE (1, SELECT, is only ever _RETURN).
const rulesSQL = `
SELECT n.nspname, c.relname, r.rulename, r.ev_type::text, r.is_instead
FROM pg_rewrite r
JOIN pg_class c ON c.oid = r.ev_class
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE r.rulename <> '_RETURN' AND r.ev_enabled <> 'D'
  AND ` + excludedSchemas + `
ORDER BY n.nspname, c.relname, r.rulename`

var ruleEvents = map[string]string{"1": "SELECT", "2": "UPDATE", "3": "INSERT", "4": "DELETE"}

func pgRules(ctx context.Context, tx pgx.Tx, l *Loaded) error {
	rows, err := tx.Query(ctx, rulesSQL)
	if err != nil {
		return err
	}
	var (
		schema, rel, name, ev string
		instead               bool
	)
	_, err = pgx.ForEachRow(rows, []any{&schema, &rel, &name, &ev, &instead}, func() error {
		r := l.Catalog.Relation(schema, rel)
		if r == nil {
			return nil
		}
		event, ok := ruleEvents[ev]
		if !ok {
			return fmt.Errorf("rule %s on %s.%s: unknown ev_type %q", name, schema, rel, ev)
		}
		r.Rules = append(r.Rules, Rule{Name: name, Event: event, Instead: instead})
		return nil
	})
	return err
}

// foreignKeysSQL reads every foreign key declared on a table (constraints
// a partition inherits from its parent, conparentid <> 0, are the
// parent's), with its columns and the referenced ones in key order.
// confupdtype/confdeltype: a NO ACTION, r RESTRICT, c CASCADE, n SET
// NULL, d SET DEFAULT.
const foreignKeysSQL = `
SELECT n.nspname, c.relname, k.conname,
       array(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY u(attnum, i)
             JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.attnum ORDER BY u.i),
       rn.nspname, rc.relname,
       array(SELECT a.attname::text FROM unnest(k.confkey) WITH ORDINALITY u(attnum, i)
             JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.attnum ORDER BY u.i),
       k.confupdtype::text, k.confdeltype::text
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class rc ON rc.oid = k.confrelid
JOIN pg_namespace rn ON rn.oid = rc.relnamespace
WHERE k.contype = 'f' AND k.conparentid = 0
  AND ` + excludedSchemas + `
ORDER BY n.nspname, c.relname, k.conname`

var fkActions = map[string]string{"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}

func pgForeignKeys(ctx context.Context, tx pgx.Tx, l *Loaded) error {
	rows, err := tx.Query(ctx, foreignKeysSQL)
	if err != nil {
		return err
	}
	var (
		schema, rel, name, refSchema, refRel, upd, del string
		cols, refCols                                  []string
	)
	_, err = pgx.ForEachRow(rows, []any{&schema, &rel, &name, &cols, &refSchema, &refRel, &refCols, &upd, &del}, func() error {
		r := l.Catalog.Relation(schema, rel)
		if r == nil {
			return nil
		}
		onUpdate, ok1 := fkActions[upd]
		onDelete, ok2 := fkActions[del]
		if !ok1 || !ok2 {
			return fmt.Errorf("foreign key %s on %s.%s: unknown action %q/%q", name, schema, rel, upd, del)
		}
		r.ForeignKeys = append(r.ForeignKeys, ForeignKey{Name: name, Columns: slices.Clone(cols),
			RefSchema: refSchema, RefTable: refRel, RefColumns: slices.Clone(refCols),
			OnUpdate: onUpdate, OnDelete: onDelete})
		return nil
	})
	return err
}

// implicitCallsSQL reads the user functions Postgres runs for a
// relation's rows beyond a statement's own expressions: what check
// constraints, generated columns, indexes (expressions and predicates),
// the constraints and defaults of the domains of its columns (domains
// over domains too) and, when row security is on, its policies call. The
// events are those that evaluate them: checks, generated columns, index
// entries and domains on INSERT and UPDATE; a policy on its command's
// events (FOR ALL on all).
//
// Also the code that comparing and converting values runs: converting a
// new row's values to its columns' types (typeConv: domains inside arrays
// and composite types too), an exclusion constraint's operators (checked
// against every other row on INSERT and UPDATE), the support functions
// and operators of an index's operator classes (a btree index calls its
// comparison function for every entry it inserts, and for scans the
// planner chooses for a read, as a built-in operator of the family does
// not show), and a partition key's expressions and operator classes
// (routing an inserted row, checking a partition's bounds, pruning a
// read); those of a partition key count for every partition of the
// tree, whose bounds are checked on rows written to it directly. Of
// operator classes and exclusion operators only functions in a language
// that can run queries count: C functions come from extensions a
// superuser installed (pg_trgm, btree_gist, citext) and compute what
// their operator class defines, and counting them would make every read
// of a table with such an index call them.
const implicitCallsSQL = `
WITH RECURSIVE ` + funcDeps + `,
` + typeConv + `,
opfamilyfuncs(family, fn) AS (
	SELECT f.family, f.fn FROM (
		SELECT amprocfamily, amproc::oid FROM pg_amproc
		UNION
		SELECT ao.amopfamily, o.oprcode::oid FROM pg_amop ao JOIN pg_operator o ON o.oid = ao.amopopr
	) f(family, fn)
	JOIN pg_proc p ON p.oid = f.fn JOIN pg_language l ON l.oid = p.prolang
	WHERE l.lanname NOT IN ('c', 'internal')
),
domains(top, t) AS (
	SELECT oid, oid FROM pg_type WHERE typtype = 'd'
	UNION
	SELECT d.top, b.typbasetype FROM domains d JOIN pg_type b ON b.oid = d.t WHERE b.typtype = 'd'
),
src(rel, what, events, fn) AS (
	SELECT k.conrelid, 'check constraint ' || k.conname, '{INSERT,UPDATE}'::text[], fd.fn
	FROM pg_constraint k JOIN funcdeps fd ON fd.classid = 'pg_constraint'::regclass AND fd.objid = k.oid
	WHERE k.contype = 'c' AND k.conrelid <> 0
	UNION ALL
	SELECT ad.adrelid, 'generated column ' || a.attname, '{INSERT,UPDATE}', fd.fn
	FROM pg_attrdef ad
	JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum AND a.attgenerated <> ''
	JOIN funcdeps fd ON fd.classid = 'pg_attrdef'::regclass AND fd.objid = ad.oid
	UNION ALL
	SELECT i.indrelid, 'index ' || ic.relname, '{INSERT,UPDATE}', fd.fn
	FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
	JOIN funcdeps fd ON fd.classid = 'pg_class'::regclass AND fd.objid = i.indexrelid
	UNION ALL
	SELECT a.attrelid, 'domain ' || dt.typname || ' of column ' || a.attname, '{INSERT,UPDATE}', fd.fn
	FROM pg_attribute a
	JOIN domains d ON d.top = a.atttypid
	JOIN pg_type dt ON dt.oid = a.atttypid
	JOIN funcdeps fd ON (fd.classid = 'pg_type'::regclass AND fd.objid = d.t)
	                 OR (fd.classid = 'pg_constraint'::regclass
	                     AND fd.objid IN (SELECT k.oid FROM pg_constraint k WHERE k.contypid = d.t))
	WHERE a.attnum > 0 AND NOT a.attisdropped
	UNION ALL
	SELECT p.polrelid, 'row security policy ' || p.polname,
	       CASE p.polcmd WHEN 'r' THEN '{SELECT}' WHEN 'a' THEN '{INSERT}' WHEN 'w' THEN '{UPDATE}'
	                     WHEN 'd' THEN '{DELETE}' ELSE '{SELECT,INSERT,UPDATE,DELETE}' END::text[], fd.fn
	FROM pg_policy p
	JOIN pg_class pc ON pc.oid = p.polrelid AND pc.relrowsecurity
	JOIN funcdeps fd ON fd.classid = 'pg_policy'::regclass AND fd.objid = p.oid
	UNION ALL
	SELECT a.attrelid, 'type ' || format_type(a.atttypid, NULL) || ' of column ' || a.attname, '{INSERT,UPDATE}', tc.fn
	FROM pg_attribute a JOIN typeconvq tc ON tc.typ = a.atttypid
	WHERE a.attnum > 0 AND NOT a.attisdropped
	  -- (a domain's own constraints are the source above's)
	  AND NOT EXISTS (SELECT FROM domains d JOIN pg_constraint k ON k.contypid = d.t
	                  JOIN funcdeps fd ON fd.classid = 'pg_constraint'::regclass AND fd.objid = k.oid
	                  WHERE d.top = a.atttypid AND fd.fn = tc.fn)
	UNION ALL
	SELECT k.conrelid, 'exclusion constraint ' || k.conname, '{INSERT,UPDATE}', o.oprcode::oid
	FROM pg_constraint k CROSS JOIN LATERAL unnest(k.conexclop) x(op)
	JOIN pg_operator o ON o.oid = x.op
	JOIN pg_proc op ON op.oid = o.oprcode JOIN pg_language ol ON ol.oid = op.prolang
	WHERE k.contype = 'x' AND k.conrelid <> 0 AND ol.lanname NOT IN ('c', 'internal')
	UNION ALL
	SELECT i.indrelid, 'operator class ' || oc.opcname || ' of index ' || ic.relname, '{SELECT,INSERT,UPDATE}', f.fn
	FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
	CROSS JOIN LATERAL unnest(i.indclass::oid[]) u(opc)
	JOIN pg_opclass oc ON oc.oid = u.opc
	JOIN opfamilyfuncs f ON f.family = oc.opcfamily
	UNION ALL
	SELECT pr.relid::oid, 'partition key of ' || pc.relname, '{SELECT,INSERT,UPDATE}', fd.fn
	FROM pg_partitioned_table pt JOIN pg_class pc ON pc.oid = pt.partrelid
	CROSS JOIN LATERAL pg_partition_tree(pt.partrelid) pr
	JOIN funcdeps fd ON fd.classid = 'pg_class'::regclass AND fd.objid = pt.partrelid
	UNION ALL
	SELECT pr.relid::oid, 'operator class ' || oc.opcname || ' of the partition key of ' || pc.relname,
	       '{SELECT,INSERT,UPDATE}', f.fn
	FROM pg_partitioned_table pt JOIN pg_class pc ON pc.oid = pt.partrelid
	CROSS JOIN LATERAL pg_partition_tree(pt.partrelid) pr
	CROSS JOIN LATERAL unnest(pt.partclass::oid[]) u(opc)
	JOIN pg_opclass oc ON oc.oid = u.opc
	JOIN opfamilyfuncs f ON f.family = oc.opcfamily
)
SELECT DISTINCT n.nspname, c.relname, s.what, s.events, fn.nspname || '.' || p.proname
FROM src s
JOIN pg_class c ON c.oid = s.rel
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_proc p ON p.oid = s.fn
JOIN pg_namespace fn ON fn.oid = p.pronamespace
WHERE ` + userFunc + `
  AND ` + excludedSchemas + `
ORDER BY 1, 2, 3, 5`

func pgImplicitCalls(ctx context.Context, tx pgx.Tx, l *Loaded) error {
	rows, err := tx.Query(ctx, implicitCallsSQL)
	if err != nil {
		return err
	}
	var (
		schema, rel, what, fn string
		events                []string
	)
	_, err = pgx.ForEachRow(rows, []any{&schema, &rel, &what, &events, &fn}, func() error {
		r := l.Catalog.Relation(schema, rel)
		if r == nil {
			return nil
		}
		r.Calls = append(r.Calls, ImplicitCall{Source: what, Events: slices.Clone(events), Function: fn})
		return nil
	})
	return err
}

// operatorsSQL reads every operator with its operand types and function
// (shell operators, oprcode 0, cannot be called).
const operatorsSQL = `
SELECT n.nspname, o.oprname,
       CASE WHEN o.oprleft = 0 THEN '' ELSE format_type(o.oprleft, NULL) END,
       format_type(o.oprright, NULL),
       fn.nspname || '.' || p.proname
FROM pg_operator o
JOIN pg_namespace n ON n.oid = o.oprnamespace
JOIN pg_proc p ON p.oid = o.oprcode
JOIN pg_namespace fn ON fn.oid = p.pronamespace
WHERE ` + excludedSchemas + `
ORDER BY n.nspname, o.oprname, o.oid`

func pgOperators(ctx context.Context, tx pgx.Tx, l *Loaded) error {
	rows, err := tx.Query(ctx, operatorsSQL)
	if err != nil {
		return err
	}
	var schema, name, left, right, fn string
	_, err = pgx.ForEachRow(rows, []any{&schema, &name, &left, &right, &fn}, func() error {
		m := l.Catalog.Operators[schema]
		if m == nil {
			m = map[string][]Operator{}
			l.Catalog.Operators[schema] = m
		}
		m[name] = append(m[name], Operator{Left: left, Right: right, Function: fn})
		return nil
	})
	return err
}

const implicitCastsSQL = `
SELECT format_type(c.castsource, NULL), format_type(c.casttarget, NULL)
FROM pg_cast c
WHERE c.castcontext = 'i'
ORDER BY 1, 2`

func pgImplicitCasts(ctx context.Context, tx pgx.Tx, l *Loaded) error {
	rows, err := tx.Query(ctx, implicitCastsSQL)
	if err != nil {
		return err
	}
	var from, to string
	_, err = pgx.ForEachRow(rows, []any{&from, &to}, func() error {
		if l.Catalog.ImplicitCasts == nil {
			l.Catalog.ImplicitCasts = map[string][]string{}
		}
		l.Catalog.ImplicitCasts[from] = append(l.Catalog.ImplicitCasts[from], to)
		return nil
	})
	return err
}

// typeFunctionsSQL reads the user functions a conversion to a type runs
// (typeConv).
const typeFunctionsSQL = `
WITH RECURSIVE ` + funcDeps + `,
` + typeConv + `
SELECT DISTINCT tn.nspname || '.' || ty.typname, fn.nspname || '.' || p.proname
FROM typeconv conv
JOIN pg_type ty ON ty.oid = conv.typ
JOIN pg_namespace tn ON tn.oid = ty.typnamespace
JOIN pg_proc p ON p.oid = conv.fn
JOIN pg_namespace fn ON fn.oid = p.pronamespace
ORDER BY 1, 2`

func pgTypeFunctions(ctx context.Context, tx pgx.Tx, l *Loaded) error {
	rows, err := tx.Query(ctx, typeFunctionsSQL)
	if err != nil {
		return err
	}
	var typ, fn string
	_, err = pgx.ForEachRow(rows, []any{&typ, &fn}, func() error {
		if l.Catalog.TypeFunctions == nil {
			// Left nil when empty, as a file read back has it.
			l.Catalog.TypeFunctions = map[string][]string{}
		}
		l.Catalog.TypeFunctions[typ] = append(l.Catalog.TypeFunctions[typ], fn)
		return nil
	})
	return err
}

const eventTriggersSQL = `
SELECT e.evtname, e.evtevent, fn.nspname || '.' || p.proname
FROM pg_event_trigger e
JOIN pg_proc p ON p.oid = e.evtfoid
JOIN pg_namespace fn ON fn.oid = p.pronamespace
WHERE e.evtenabled <> 'D'
ORDER BY e.evtname`

func pgEventTriggers(ctx context.Context, tx pgx.Tx, l *Loaded) error {
	rows, err := tx.Query(ctx, eventTriggersSQL)
	if err != nil {
		return err
	}
	var name, event, fn string
	_, err = pgx.ForEachRow(rows, []any{&name, &event, &fn}, func() error {
		l.Catalog.EventTriggers = append(l.Catalog.EventTriggers, Trigger{Name: name, Event: event, Functions: []string{fn}})
		return nil
	})
	return err
}

const childrenSQL = `
SELECT pn.nspname, p.relname, cn.nspname || '.' || c.relname
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_namespace cn ON cn.oid = c.relnamespace
JOIN pg_class p ON p.oid = i.inhparent
JOIN pg_namespace pn ON pn.oid = p.relnamespace
WHERE c.relkind IN ('r', 'p', 'f')
ORDER BY 1, 2, 3`

func pgChildren(ctx context.Context, tx pgx.Tx, l *Loaded) error {
	rows, err := tx.Query(ctx, childrenSQL)
	if err != nil {
		return err
	}
	var schema, rel, child string
	_, err = pgx.ForEachRow(rows, []any{&schema, &rel, &child}, func() error {
		if r := l.Catalog.Relation(schema, rel); r != nil {
			r.Children = append(r.Children, child)
		}
		return nil
	})
	return err
}

// checksSQL reads every CHECK constraint of a table with the columns it
// names (conkey), those a partition or inheritance child inherits
// included (each is a constraint of the child too). NOT VALID ones count:
// Postgres checks them on every new row.
const checksSQL = `
SELECT n.nspname, c.relname, k.conname, pg_get_expr(k.conbin, k.conrelid),
       array(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY u(attnum, i)
             JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.attnum ORDER BY u.i),
       NOT k.convalidated
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE k.contype = 'c' AND k.conrelid <> 0
  AND ` + excludedSchemas + `
ORDER BY n.nspname, c.relname, k.conname`

func pgChecks(ctx context.Context, tx pgx.Tx, l *Loaded) error {
	rows, err := tx.Query(ctx, checksSQL)
	if err != nil {
		return err
	}
	var (
		schema, rel, name, clause string
		cols                      []string
		notValid                  bool
	)
	_, err = pgx.ForEachRow(rows, []any{&schema, &rel, &name, &clause, &cols, &notValid}, func() error {
		if r := l.Catalog.Relation(schema, rel); r != nil {
			r.Checks = append(r.Checks, Check{Name: name, Clause: clause, Columns: slices.Clone(cols), NotValid: notValid})
		}
		return nil
	})
	return err
}

// uniqueKeysSQL reads every unique and exclusion index (primary keys,
// UNIQUE and EXCLUDE constraints, CREATE UNIQUE INDEX) with every column
// it reads: its key columns (indkey) and the columns its expressions and
// predicate name (an index depends on each column it uses, pg_depend).
const uniqueKeysSQL = `
SELECT n.nspname, c.relname, ic.relname,
       array(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = i.indrelid AND a.attnum > 0 AND NOT a.attisdropped
               AND (a.attnum = ANY (i.indkey::int2[])
                    OR a.attnum IN (SELECT d.refobjsubid FROM pg_depend d
                                    WHERE d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid
                                      AND d.refclassid = 'pg_class'::regclass AND d.refobjid = i.indrelid))
             ORDER BY a.attnum)
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE (i.indisunique OR i.indisexclusion)
  AND ` + excludedSchemas + `
ORDER BY n.nspname, c.relname, ic.relname`

func pgUniqueKeys(ctx context.Context, tx pgx.Tx, l *Loaded) error {
	rows, err := tx.Query(ctx, uniqueKeysSQL)
	if err != nil {
		return err
	}
	var (
		schema, rel, name string
		cols              []string
	)
	_, err = pgx.ForEachRow(rows, []any{&schema, &rel, &name, &cols}, func() error {
		if r := l.Catalog.Relation(schema, rel); r != nil && !r.System {
			r.UniqueKeys = append(r.UniqueKeys, UniqueKey{Name: name, Columns: slices.Clone(cols)})
		}
		return nil
	})
	return err
}

// partitionKeysSQL reads the columns each partitioned table's partition
// key reads: the plain key columns (partattrs) and the columns its key
// expressions name, on which Postgres makes the table's columns depend
// internally (pg_depend from the column to the table, deptype 'i'). A key
// whose expressions name no column Postgres records reads every column
// (as far as keyhole knows).
const partitionKeysSQL = `
SELECT n.nspname, c.relname,
       array(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
               AND (a.attnum = ANY (pt.partattrs::int2[])
                    OR (0 = ANY (pt.partattrs::int2[]) AND (a.attnum IN
                        (SELECT d.objsubid FROM pg_depend d
                         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.objsubid > 0
                           AND d.refclassid = 'pg_class'::regclass AND d.refobjid = c.oid AND d.refobjsubid = 0
                           AND d.deptype = 'i')
                       OR NOT EXISTS (SELECT FROM pg_depend d
                         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.objsubid > 0
                           AND d.refclassid = 'pg_class'::regclass AND d.refobjid = c.oid AND d.refobjsubid = 0
                           AND d.deptype = 'i'))))
             ORDER BY a.attnum)
FROM pg_partitioned_table pt
JOIN pg_class c ON c.oid = pt.partrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE ` + excludedSchemas + `
ORDER BY n.nspname, c.relname`

func pgPartitionKeys(ctx context.Context, tx pgx.Tx, l *Loaded) error {
	rows, err := tx.Query(ctx, partitionKeysSQL)
	if err != nil {
		return err
	}
	var (
		schema, rel string
		cols        []string
	)
	_, err = pgx.ForEachRow(rows, []any{&schema, &rel, &cols}, func() error {
		if r := l.Catalog.Relation(schema, rel); r != nil {
			r.Partitioning = slices.Clone(cols)
		}
		return nil
	})
	return err
}

// rowPoliciesSQL reads the row security policies of the tables that have
// row security enabled, with the columns their USING and WITH CHECK
// expressions name (a policy depends on each, pg_depend).
const rowPoliciesSQL = `
SELECT n.nspname, c.relname, p.polname,
       CASE p.polcmd WHEN 'r' THEN '{SELECT}' WHEN 'a' THEN '{INSERT}' WHEN 'w' THEN '{UPDATE}'
                     WHEN 'd' THEN '{DELETE}' ELSE '{SELECT,INSERT,UPDATE,DELETE}' END::text[],
       coalesce(array_agg(rn.nspname::text ORDER BY rn.nspname, rc.relname, a.attnum) FILTER (WHERE a.attname IS NOT NULL), '{}'),
       coalesce(array_agg(rc.relname::text ORDER BY rn.nspname, rc.relname, a.attnum) FILTER (WHERE a.attname IS NOT NULL), '{}'),
       coalesce(array_agg(a.attname::text ORDER BY rn.nspname, rc.relname, a.attnum) FILTER (WHERE a.attname IS NOT NULL), '{}')
FROM pg_policy p
JOIN pg_class c ON c.oid = p.polrelid AND c.relrowsecurity
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_depend d ON d.classid = 'pg_policy'::regclass AND d.objid = p.oid
     AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0
LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
LEFT JOIN pg_class rc ON rc.oid = d.refobjid
LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
WHERE ` + excludedSchemas + `
GROUP BY n.nspname, c.relname, p.polname, p.polcmd
ORDER BY n.nspname, c.relname, p.polname`

func pgRowPolicies(ctx context.Context, tx pgx.Tx, l *Loaded) error {
	rows, err := tx.Query(ctx, rowPoliciesSQL)
	if err != nil {
		return err
	}
	var (
		schema, rel, name                string
		events, rschemas, rtables, rcols []string
	)
	_, err = pgx.ForEachRow(rows, []any{&schema, &rel, &name, &events, &rschemas, &rtables, &rcols}, func() error {
		r := l.Catalog.Relation(schema, rel)
		if r == nil {
			return nil
		}
		if len(rschemas) != len(rcols) || len(rtables) != len(rcols) {
			return fmt.Errorf("row security policy %s on %s.%s: mismatched columns", name, schema, rel)
		}
		p := RowPolicy{Name: name, Events: slices.Clone(events)}
		for i := range rcols {
			p.Reads = append(p.Reads, ColumnOf{Schema: rschemas[i], Table: rtables[i], Column: rcols[i]})
		}
		r.RowPolicies = append(r.RowPolicies, p)
		return nil
	})
	return err
}
