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
		Dialect:   "postgres",
		Relations: map[string]map[string]*Relation{},
		Functions: map[string]map[string]*Function{},
	}}
	steps := []struct {
		what string
		run  func(context.Context, pgx.Tx, *Loaded) error
	}{
		{"database and search path", pgSession},
		{"relations", pgRelations},
		{"columns", pgColumns},
		{"functions", pgFunctions},
	}
	for _, s := range steps {
		if err := s.run(ctx, tx, l); err != nil {
			return nil, fmt.Errorf("catalog: load %s: %w", s.what, err)
		}
	}
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
// (nextval('s'::regclass) records that dependency).
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
                '{}')::text[]
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
		seqs                                 []string
	)
	_, err = pgx.ForEachRow(rows, []any{&schema, &rel, &name, &typ, &comment, &def, &seqs}, func() error {
		r := l.Catalog.Relation(schema, rel)
		if r == nil {
			// Same snapshot as the relations query, so this cannot happen
			// unless the two queries disagree; refuse rather than guess.
			return fmt.Errorf("column %s of unknown relation %s.%s", name, schema, rel)
		}
		col := &Column{
			Name:    name,
			Type:    typ,
			Comment: comment,
			Labels:  l.commentLabels(r.String()+"."+name, comment),
			Default: def,
		}
		if len(seqs) > 0 {
			col.Sequences = slices.Clone(seqs)
		}
		r.Columns = append(r.Columns, col)
		return nil
	})
	return err
}

const functionsSQL = `
SELECT n.nspname, p.proname, p.prokind::text, p.provolatile::text,
       l.lanname, p.prosecdef, p.oid::int8
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_language l ON l.oid = p.prolang
WHERE ` + excludedSchemas + `
ORDER BY n.nspname, p.proname, p.oid`

// Overloads of a name share one Function, so where they differ the entry
// takes the most cautious value: the most volatile volatility, the most
// special kind, Builtin only if every overload is built in, SecurityDefiner
// if any overload is. Language is that of the oldest overload.
func pgFunctions(ctx context.Context, tx pgx.Tx, l *Loaded) error {
	rows, err := tx.Query(ctx, functionsSQL)
	if err != nil {
		return err
	}
	var (
		schema, name, prokind, provolatile, lang string
		secdef                                   bool
		oid                                      int64
	)
	_, err = pgx.ForEachRow(rows, []any{&schema, &name, &prokind, &provolatile, &lang, &secdef, &oid}, func() error {
		kind, ok := prokinds[prokind]
		if !ok {
			return fmt.Errorf("function %s.%s: unknown prokind %q", schema, name, prokind)
		}
		vol, ok := volatilities[provolatile]
		if !ok {
			return fmt.Errorf("function %s.%s: unknown provolatile %q", schema, name, provolatile)
		}
		builtin := oid < firstNormalObjectID || isSystemSchema(schema)
		m := l.Catalog.Functions[schema]
		if m == nil {
			m = map[string]*Function{}
			l.Catalog.Functions[schema] = m
		}
		f := m[name]
		if f == nil {
			m[name] = &Function{
				Schema: schema, Name: name, Kind: kind, Volatility: vol,
				Builtin: builtin, Language: lang, SecurityDefiner: secdef,
			}
			return nil
		}
		if kindRank[kind] > kindRank[f.Kind] {
			f.Kind = kind
		}
		if volRank[vol] > volRank[f.Volatility] {
			f.Volatility = vol
		}
		f.Builtin = f.Builtin && builtin
		f.SecurityDefiner = f.SecurityDefiner || secdef
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
