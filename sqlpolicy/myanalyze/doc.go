// Package myanalyze is the MySQL/MariaDB analyzer: it parses SQL text with
// TiDB's parser (github.com/pingcap/tidb/pkg/parser) and turns every
// statement into a sqlpolicy.Statement — verb, tables and columns read or
// written in any clause, functions called, session settings changed — by
// resolving names through a catalog.Catalog (catalog.LoadMySQL) the way
// MariaDB's own resolver does (sql_base.cc find_field_in_tables, item.cc
// Item_field::fix_fields / fix_outer_field):
//
//   - an unqualified column binds to the FROM items of its own SELECT; an
//     ON condition sees only the operands of its join; a name found nowhere
//     at one level is looked up in the enclosing SELECTs (a correlated
//     reference); derived tables see no enclosing SELECT (MariaDB 10.11
//     has no LATERAL);
//   - NATURAL JOIN and USING expose the coalesced columns first (in the
//     first operand's order; a RIGHT join swaps the operands), then the
//     rest of each side, and `*` expands in that order;
//   - GROUP BY, HAVING and ORDER BY names may be select-list aliases or
//     FROM columns (the server's preference differs per clause): both
//     bindings are reported;
//   - a qualifier (t.col, db.t.col) names an item by alias, table and
//     database name compared as the server compares them: byte for byte
//     under lower_case_table_names=0, so `C.x` passes over an inner item
//     aliased `c` and may bind to an outer `C`; an item whose name
//     matches only without letter case is reported as a candidate and
//     the search goes on outward;
//   - a table name in the body of a WITH query names a WITH query of its
//     own clause, or of an enclosing clause only while each clause in
//     between is attached directly to a WITH query's body; otherwise it
//     names the table (st_select_lex::find_table_def_in_with_clauses);
//   - where MariaDB would report an ambiguity, every candidate is
//     reported, so the decision covers whichever binding the server
//     makes; a name that binds to nothing is a Problem.
//
// Columns: every column a statement names counts as read, in any clause,
// at any nesting level, and so do the columns of the partitioning
// expression of a table whose partitions it names (FROM t PARTITION (p)
// filters on them). Only views are more precise: a reference to a
// view column reports that column and the base columns that flow into it
// (Via = the view), plus the columns the view's other clauses read.
//
// Text is lexed twice: once by a scanner that follows MariaDB's lexer
// (lex.go) under the session's sql_mode, which refuses what the two
// lexers would read differently (TiDB's /*T! */, SET_VAR hints, control
// and non-ASCII bytes outside quotes), and then by TiDB's parser under
// the same sql_mode. Before both, executable comments (/*! */, /*M! */,
// versioned or not) are replaced by what a MariaDB server of the
// catalog's version runs of them: their content, or nothing for a
// version it skips (expandExecutable); on MySQL, or a server of unknown
// version, they are refused.
//
// Rows come back in the order of the index the server reads them
// through, which it picks by itself: a FROM item reading a table reads
// the columns of every index that order may come from (indexorder.go).
//
// Row counts and sizes (information_schema.TABLES and PARTITIONS columns
// other than the definition's, SHOW TABLE STATUS) are reads of every
// table whose row they may show (statistics.go).
//
// Writes carry their row action: REPLACE writes its table with the delete
// and the insert action, INSERT ... ON DUPLICATE KEY UPDATE is an upsert
// whose SET columns are written by the update action. MariaDB's DEFAULT
// expressions cannot read tables or call stored functions, but they may
// name the row's other columns: DEFAULT(col), and SET col = DEFAULT in an
// UPDATE or ON DUPLICATE KEY UPDATE, evaluate the default over an
// existing row and read those columns (an INSERT's defaults see only the
// new row). User variables hold only values of texts keyhole
// allowed (every read is reported where the value is computed), so they
// carry nothing between statements that the policy did not allow.
//
// A write does more than its statement says when its table has triggers
// or is referenced by foreign keys with actions (effects.go): a write that
// fires a trigger is refused (the body runs with its definer's rights and
// is not analyzed); a delete or key update that cascades reports the
// writes of the referencing tables as its own; the lookups of foreign key
// checks (the parent key a child insert or key update must find, the
// child rows a RESTRICT delete must not) are reads of those key columns,
// with Via = the written table, so their labels apply; so are the
// columns of the generated columns, CHECK constraints and unique keys an
// update recomputes (a failing CHECK (credit_limit <= salary) tells the
// salary, a duplicate key error prints the whole key), and so are those
// of the unique keys an insert fills with a default or generated value
// (the conflict tells whether another row holds it). Settings that change what
// writes do (foreign_key_checks, unique_checks, check_constraint_checks
// off; a fixed timestamp) are guarded like sql_mode. Only functions
// MariaDB 10.11 itself resolves as native count as built-ins: any other
// unqualified name is the current database's stored function or a UDF,
// and so is a built-in its grammar knows as a keyword written quoted
// (`left`(x, 1), `now`(); funcs.go quotedKeywordFuncs) or, for the
// names its lexer takes for functions only when "(" follows at once,
// with a space before "(" (count (id); spacedKeywordFuncs).
//
// DDL (statements.go ddl): on an existing table it writes every column of
// it (an ALTER rewrites the rows, MODIFY/CHANGE replace a column's
// comment and its labels, DROP and TRUNCATE destroy the data); renaming a
// table or a column, and replacing a comment that carries keyhole labels,
// is refused (the policy names tables and columns, and the proxy has the
// catalog read again after DDL). A foreign key it defines reads the
// referenced key (checked at once for the rows the table has or gets),
// and EXCHANGE PARTITION and MERGE's UNION=(...) are DDL on, and a read
// of, the other table.
//
// Resource limits (limits.go): UpstreamSettings maps a role's timeouts to
// MariaDB's max_statement_time and idle_transaction_timeout (MySQL:
// max_execution_time), which the proxy sets with SET SESSION at login;
// every change of those variables (SET, SET SESSION, @@ forms, LOCAL,
// MySQL's MAX_EXECUTION_TIME hint) carries the limit and the amount read
// the way the server reads it, so the decision refuses raising or lifting
// them. SET var = DEFAULT takes the global value, unknown to keyhole.
//
// It fails closed: anything it cannot parse, resolve or does not model
// comes back as a sqlpolicy.Problem, never as a silent omission. MariaDB
// syntax TiDB's parser does not know (INSERT/DELETE ... RETURNING, SET
// STATEMENT ... FOR, HANDLER, CHECKSUM TABLE, sequences' NEXT VALUE FOR
// through nextval) is refused as unparseable or unsupported.
package myanalyze
