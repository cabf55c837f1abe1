package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// mysqlSkippedSchemas are server schemas left out of a MySQL catalog: the
// MySQL analyzer refuses every relation in them without looking (they
// expose grants, other sessions and statistics with data values).
var mysqlSkippedSchemas = []string{"mysql", "performance_schema", "sys"}

// ErrCatalogChanged is returned when the schema changed while it was read
// (information_schema is not transactional in MariaDB); loading again
// usually succeeds.
var ErrCatalogChanged = errors.New("schema changed while the catalog was read")

// LoadMySQL reads the catalog of a MySQL or MariaDB server as db's login
// sees it (see InspectMySQL); warnings are dropped.
func LoadMySQL(ctx context.Context, db *sql.DB) (*Catalog, error) {
	l, err := InspectMySQL(ctx, db)
	if err != nil {
		return nil, err
	}
	return l.Catalog, nil
}

// LoadMySQLDSN connects to dsn (see MySQLConfig), loads its catalog and
// disconnects.
func LoadMySQLDSN(ctx context.Context, dsn string) (*Catalog, error) {
	l, err := InspectMySQLDSN(ctx, dsn)
	if err != nil {
		return nil, err
	}
	return l.Catalog, nil
}

// InspectMySQLDSN is InspectMySQL over a connection of its own.
func InspectMySQLDSN(ctx context.Context, dsn string) (*Loaded, error) {
	cfg, err := MySQLConfig(dsn)
	if err != nil {
		return nil, err
	}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("catalog: mysql dsn: %w", err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	return InspectMySQL(ctx, db)
}

// MySQLConfig parses a MySQL DSN: a URL mysql://user:password@host:port/db
// (also mariadb://; query parameters are passed to the driver), or the
// driver's own form user:password@tcp(host:port)/db. Errors never echo the
// password.
func MySQLConfig(dsn string) (*mysql.Config, error) {
	if !strings.HasPrefix(dsn, "mysql://") && !strings.HasPrefix(dsn, "mariadb://") {
		cfg, err := mysql.ParseDSN(dsn)
		if err != nil {
			return nil, errors.New("catalog: mysql dsn: not a mysql:// URL nor a driver DSN")
		}
		return cfg, nil
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, errors.New("catalog: mysql dsn: malformed URL")
	}
	cfg := mysql.NewConfig()
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	cfg.Net = "tcp"
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "3306")
	}
	cfg.Addr = host
	cfg.DBName = strings.TrimPrefix(u.Path, "/")
	for k, vs := range u.Query() {
		if len(vs) == 0 {
			continue
		}
		if cfg.Params == nil {
			cfg.Params = map[string]string{}
		}
		cfg.Params[k] = vs[len(vs)-1]
	}
	return cfg, nil
}

// InspectMySQL reads the catalog of the server db connects to, as its
// login sees it: every database (but mysql, performance_schema and sys)
// with its tables and views, their columns in ordinal order with comments
// and the labels in them, view definitions, stored functions and
// procedures, the login's current database (Database, SearchPath) and
// lower_case_table_names. information_schema's own views are included
// (System), so `*` over them expands.
//
// It reads on one connection inside a READ ONLY transaction. MariaDB's
// information_schema is not transactional, so a concurrent DDL can still
// show between the queries: a column of a table the table query did not
// return, or a view definition of a view it did not, is ErrCatalogChanged
// after five attempts.
func InspectMySQL(ctx context.Context, db *sql.DB) (*Loaded, error) {
	// information_schema is read object by object, so DDL elsewhere on the
	// server can make two queries disagree: read again a few times. The
	// pauses (20, 40, 80, 160 ms) let a burst of DDL end: three reads in a
	// row, without them, all disagreed while other databases on the server
	// were being created and dropped.
	var err error
	pause := 20 * time.Millisecond
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, err
			case <-time.After(pause):
			}
			pause *= 2
		}
		var l *Loaded
		l, err = inspectMySQL(ctx, db)
		if !errors.Is(err, ErrCatalogChanged) {
			return l, err
		}
	}
	return nil, err
}

func inspectMySQL(ctx context.Context, db *sql.DB) (*Loaded, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("catalog: connect to mysql: %w", err)
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("catalog: begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	l := &Loaded{Catalog: &Catalog{
		Format:     FormatVersion,
		Dialect:    "mysql",
		SearchPath: []string{},
		Relations:  map[string]map[string]*Relation{},
		Functions:  map[string]map[string]*Function{},
	}}
	steps := []struct {
		what string
		run  func(context.Context, *sql.Tx, *Loaded) error
	}{
		{"session", mySession},
		{"relations", myRelations},
		{"columns", myColumns},
		{"views", myViews},
		{"routines", myRoutines},
		{"triggers", myTriggers},
		{"foreign keys", myForeignKeys},
		{"check constraints", myChecks},
		{"indexes", myUniqueKeys},
		{"partitioning", myPartitioning},
	}
	for _, s := range steps {
		if err := s.run(ctx, tx, l); err != nil {
			return nil, fmt.Errorf("catalog: load %s: %w", s.what, err)
		}
	}
	return l, nil
}

func mySession(ctx context.Context, tx *sql.Tx, l *Loaded) error {
	var db sql.NullString
	if err := tx.QueryRowContext(ctx, `SELECT DATABASE(), @@lower_case_table_names, VERSION()`).Scan(&db, &l.Catalog.LowerCaseTableNames, &l.Catalog.Version); err != nil {
		return err
	}
	if db.Valid {
		l.Catalog.Database = db.String
		l.Catalog.SearchPath = []string{db.String}
	}
	return nil
}

// skipSchemas is the SQL condition leaving out mysqlSkippedSchemas.
func skipSchemas(col string) string {
	return col + ` NOT IN ('` + strings.Join(mysqlSkippedSchemas, `', '`) + `')`
}

func myRelations(ctx context.Context, tx *sql.Tx, l *Loaded) error {
	rows, err := tx.QueryContext(ctx, `
SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE, COALESCE(TABLE_COMMENT, '')
FROM information_schema.TABLES
WHERE `+skipSchemas("TABLE_SCHEMA")+`
ORDER BY TABLE_SCHEMA, TABLE_NAME`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var schema, name, typ, comment string
		if err := rows.Scan(&schema, &name, &typ, &comment); err != nil {
			return err
		}
		r := &Relation{Schema: schema, Name: name, Columns: []*Column{}, System: strings.EqualFold(schema, "information_schema")}
		switch typ {
		case "VIEW", "SYSTEM VIEW":
			r.Kind = KindView
			if typ == "SYSTEM VIEW" {
				r.Kind = KindTable // information_schema views are not expanded
			}
		case "SEQUENCE":
			r.Kind = KindSequence
		default:
			r.Kind = KindTable
		}
		if r.Kind != KindView {
			// MariaDB shows "VIEW" as a view's comment; tables carry the
			// DBA's.
			r.Comment = comment
			r.Labels = l.commentLabels(r.String(), comment)
		}
		m := l.Catalog.Relations[schema]
		if m == nil {
			m = map[string]*Relation{}
			l.Catalog.Relations[schema] = m
		}
		m[name] = r
	}
	return rows.Err()
}

func myColumns(ctx context.Context, tx *sql.Tx, l *Loaded) error {
	rows, err := tx.QueryContext(ctx, `
SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, COALESCE(COLUMN_COMMENT, ''), COLUMN_DEFAULT,
       COALESCE(GENERATION_EXPRESSION, '')
FROM information_schema.COLUMNS
WHERE `+skipSchemas("TABLE_SCHEMA")+`
ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var schema, rel, name, typ, comment, gen string
		var def sql.NullString
		if err := rows.Scan(&schema, &rel, &name, &typ, &comment, &def, &gen); err != nil {
			return err
		}
		r := l.Catalog.Relation(schema, rel)
		if r == nil {
			return fmt.Errorf("%w: column %s of unknown table %s.%s", ErrCatalogChanged, name, schema, rel)
		}
		col := &Column{Name: name, Type: typ, Comment: comment, Labels: l.commentLabels(r.String()+"."+name, comment), Generated: gen}
		if def.Valid && gen == "" {
			col.Default = def.String
		}
		r.Columns = append(r.Columns, col)
	}
	return rows.Err()
}

// myViews reads view definitions. MariaDB prints them with every table
// and column qualified by database and table; only the view's definer or
// a login with SHOW VIEW sees them (empty otherwise: the analyzer then
// refuses the view).
func myViews(ctx context.Context, tx *sql.Tx, l *Loaded) error {
	rows, err := tx.QueryContext(ctx, `
SELECT TABLE_SCHEMA, TABLE_NAME, COALESCE(VIEW_DEFINITION, '')
FROM information_schema.VIEWS
WHERE `+skipSchemas("TABLE_SCHEMA"))
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var schema, name, def string
		if err := rows.Scan(&schema, &name, &def); err != nil {
			return err
		}
		r := l.Catalog.Relation(schema, name)
		if r == nil {
			return fmt.Errorf("%w: view %s.%s", ErrCatalogChanged, schema, name)
		}
		r.Definition = def
	}
	return rows.Err()
}

func myRoutines(ctx context.Context, tx *sql.Tx, l *Loaded) error {
	rows, err := tx.QueryContext(ctx, `
SELECT ROUTINE_SCHEMA, ROUTINE_NAME, ROUTINE_TYPE, IS_DETERMINISTIC, SECURITY_TYPE, COALESCE(ROUTINE_BODY, '')
FROM information_schema.ROUTINES
WHERE `+skipSchemas("ROUTINE_SCHEMA")+`
ORDER BY ROUTINE_SCHEMA, ROUTINE_NAME`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var schema, name, typ, det, sec, lang string
		if err := rows.Scan(&schema, &name, &typ, &det, &sec, &lang); err != nil {
			return err
		}
		f := &Function{Schema: schema, Name: name, Kind: strings.ToLower(typ), Volatility: Volatile,
			Language: strings.ToLower(lang), SecurityDefiner: sec == "DEFINER"}
		if det == "YES" {
			f.Volatility = Immutable
		}
		m := l.Catalog.Functions[schema]
		if m == nil {
			m = map[string]*Function{}
			l.Catalog.Functions[schema] = m
		}
		if old := m[name]; old != nil && old.Kind != f.Kind {
			// A function and a procedure may share a name; keep the
			// procedure (CALL needs it; calls of the function are decided
			// as user functions either way).
			f.Kind = "procedure"
		}
		m[name] = f
	}
	return rows.Err()
}

// myTriggers reads the triggers of every table. MariaDB lists a table's
// triggers only to a login with the TRIGGER privilege on it: keyhole's
// login needs it (as it needs SHOW VIEW for view definitions), or writes
// that fire a trigger look like plain writes.
func myTriggers(ctx context.Context, tx *sql.Tx, l *Loaded) error {
	rows, err := tx.QueryContext(ctx, `
SELECT EVENT_OBJECT_SCHEMA, EVENT_OBJECT_TABLE, TRIGGER_NAME, EVENT_MANIPULATION, ACTION_TIMING
FROM information_schema.TRIGGERS
WHERE `+skipSchemas("EVENT_OBJECT_SCHEMA")+`
ORDER BY EVENT_OBJECT_SCHEMA, EVENT_OBJECT_TABLE, ACTION_ORDER, TRIGGER_NAME`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var schema, table string
		var tr Trigger
		if err := rows.Scan(&schema, &table, &tr.Name, &tr.Event, &tr.Timing); err != nil {
			return err
		}
		r := l.Catalog.Relation(schema, table)
		if r == nil {
			return fmt.Errorf("%w: trigger %s of unknown table %s.%s", ErrCatalogChanged, tr.Name, schema, table)
		}
		r.Triggers = append(r.Triggers, tr)
	}
	return rows.Err()
}

// myForeignKeys reads every foreign key with its columns in key order and
// its referential actions.
func myForeignKeys(ctx context.Context, tx *sql.Tx, l *Loaded) error {
	rows, err := tx.QueryContext(ctx, `
SELECT k.TABLE_SCHEMA, k.TABLE_NAME, k.CONSTRAINT_NAME, k.COLUMN_NAME,
       k.REFERENCED_TABLE_SCHEMA, k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME,
       r.UPDATE_RULE, r.DELETE_RULE
FROM information_schema.KEY_COLUMN_USAGE k
JOIN information_schema.REFERENTIAL_CONSTRAINTS r
  ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME
 AND r.TABLE_NAME = k.TABLE_NAME
WHERE k.REFERENCED_TABLE_NAME IS NOT NULL AND `+skipSchemas("k.TABLE_SCHEMA")+`
ORDER BY k.TABLE_SCHEMA, k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var schema, table, name, col, refSchema, refTable, refCol, onUpdate, onDelete string
		if err := rows.Scan(&schema, &table, &name, &col, &refSchema, &refTable, &refCol, &onUpdate, &onDelete); err != nil {
			return err
		}
		r := l.Catalog.Relation(schema, table)
		if r == nil {
			return fmt.Errorf("%w: foreign key %s of unknown table %s.%s", ErrCatalogChanged, name, schema, table)
		}
		n := len(r.ForeignKeys)
		if n == 0 || r.ForeignKeys[n-1].Name != name {
			r.ForeignKeys = append(r.ForeignKeys, ForeignKey{Name: name, RefSchema: refSchema, RefTable: refTable,
				OnUpdate: onUpdate, OnDelete: onDelete})
			n++
		}
		fk := &r.ForeignKeys[n-1]
		fk.Columns = append(fk.Columns, col)
		fk.RefColumns = append(fk.RefColumns, refCol)
	}
	return rows.Err()
}

// myChecks reads every CHECK constraint. MariaDB's CHECK_CONSTRAINTS names
// the table (constraint names are per table there); MySQL 8's does not,
// and its TABLE_CONSTRAINTS does (names are per database). A server
// without the view (MySQL 5.7, which parses CHECK and ignores it) has no
// constraint to read.
func myChecks(ctx context.Context, tx *sql.Tx, l *Loaded) error {
	queries := []string{`
SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, CHECK_CLAUSE
FROM information_schema.CHECK_CONSTRAINTS
WHERE ` + skipSchemas("CONSTRAINT_SCHEMA") + `
ORDER BY CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME`, `
SELECT c.CONSTRAINT_SCHEMA, t.TABLE_NAME, c.CONSTRAINT_NAME, c.CHECK_CLAUSE
FROM information_schema.CHECK_CONSTRAINTS c
JOIN information_schema.TABLE_CONSTRAINTS t
  ON t.CONSTRAINT_SCHEMA = c.CONSTRAINT_SCHEMA AND t.CONSTRAINT_NAME = c.CONSTRAINT_NAME AND t.CONSTRAINT_TYPE = 'CHECK'
WHERE ` + skipSchemas("c.CONSTRAINT_SCHEMA") + `
ORDER BY c.CONSTRAINT_SCHEMA, t.TABLE_NAME, c.CONSTRAINT_NAME`}
	var rows *sql.Rows
	var err error
	for _, q := range queries {
		if rows, err = tx.QueryContext(ctx, q); err == nil {
			break
		}
		var me *mysql.MySQLError
		if !errors.As(err, &me) {
			return err
		}
		switch me.Number {
		case 1109: // ER_UNKNOWN_TABLE: no CHECK_CONSTRAINTS view
			return nil
		case 1054: // ER_BAD_FIELD_ERROR: MySQL's view, without TABLE_NAME
			continue
		}
		return err
	}
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var schema, table string
		var c Check
		if err := rows.Scan(&schema, &table, &c.Name, &c.Clause); err != nil {
			return err
		}
		r := l.Catalog.Relation(schema, table)
		if r == nil {
			return fmt.Errorf("%w: check constraint %s of unknown table %s.%s", ErrCatalogChanged, c.Name, schema, table)
		}
		r.Checks = append(r.Checks, c)
	}
	return rows.Err()
}

// myUniqueKeys reads every index with its columns in key order (a
// functional key part has no COLUMN_NAME: ""): all of them into Indexes,
// the primary and unique keys into UniqueKeys too.
func myUniqueKeys(ctx context.Context, tx *sql.Tx, l *Loaded) error {
	rows, err := tx.QueryContext(ctx, `
SELECT TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, NON_UNIQUE = 0, COALESCE(COLUMN_NAME, '')
FROM information_schema.STATISTICS
WHERE `+skipSchemas("TABLE_SCHEMA")+`
ORDER BY TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var schema, table, name, col string
		var unique bool
		if err := rows.Scan(&schema, &table, &name, &unique, &col); err != nil {
			return err
		}
		r := l.Catalog.Relation(schema, table)
		if r == nil {
			return fmt.Errorf("%w: key %s of unknown table %s.%s", ErrCatalogChanged, name, schema, table)
		}
		n := len(r.Indexes)
		if n == 0 || r.Indexes[n-1].Name != name {
			r.Indexes = append(r.Indexes, Index{Name: name, Unique: unique})
			n++
		}
		r.Indexes[n-1].Columns = append(r.Indexes[n-1].Columns, col)
		if !unique {
			continue
		}
		n = len(r.UniqueKeys)
		if n == 0 || r.UniqueKeys[n-1].Name != name {
			r.UniqueKeys = append(r.UniqueKeys, UniqueKey{Name: name})
			n++
		}
		r.UniqueKeys[n-1].Columns = append(r.UniqueKeys[n-1].Columns, col)
	}
	return rows.Err()
}

// myPartitioning reads the partitioning and subpartitioning expressions
// of partitioned tables (each partition's row repeats them).
func myPartitioning(ctx context.Context, tx *sql.Tx, l *Loaded) error {
	rows, err := tx.QueryContext(ctx, `
SELECT DISTINCT TABLE_SCHEMA, TABLE_NAME, COALESCE(PARTITION_EXPRESSION, ''), SUBPARTITION_METHOD IS NOT NULL,
       COALESCE(SUBPARTITION_EXPRESSION, '')
FROM information_schema.PARTITIONS
WHERE PARTITION_NAME IS NOT NULL AND `+skipSchemas("TABLE_SCHEMA")+`
ORDER BY TABLE_SCHEMA, TABLE_NAME`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var schema, table, expr, subExpr string
		var sub bool
		if err := rows.Scan(&schema, &table, &expr, &sub, &subExpr); err != nil {
			return err
		}
		r := l.Catalog.Relation(schema, table)
		if r == nil {
			return fmt.Errorf("%w: partitions of unknown table %s.%s", ErrCatalogChanged, schema, table)
		}
		exprs := []string{expr}
		if sub {
			exprs = append(exprs, subExpr)
		}
		for _, e := range exprs {
			if !slices.Contains(r.Partitioning, e) {
				r.Partitioning = append(r.Partitioning, e)
			}
		}
	}
	return rows.Err()
}
