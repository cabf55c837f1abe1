// Package pganalyze is the Postgres analyzer: it parses SQL text with
// pg_query (the Postgres parser itself, via libpg_query) and turns every
// statement into a sqlpolicy.Statement — verb, tables and columns read or
// written in any clause, functions called, session settings changed — by
// resolving names through a catalog.Catalog the way Postgres would.
//
// Names resolve the way Postgres's parse analysis resolves them
// (namespace.go, resolve.go, from.go): what each clause of each query
// level can see (earlier FROM items only from LATERAL subqueries and
// functions, JOIN ON only the join's two sides, an aliased join hiding
// the items inside it), the columns of each FROM item in Postgres's order
// (merged USING/NATURAL columns first, column alias lists by position),
// qualified names as table.column, schema.table.column and
// catalog.schema.table.column only, output names as FigureColname gives
// them. Where the analyzer cannot tell what a name binds to (a function
// whose result columns it does not know), it reads everything the name
// may bind to, in outer levels too.
//
// Columns: every column a query names counts as read, in any clause and at
// any nesting level, as Postgres's own column privileges do (an unused
// column of a materialized CTE is still evaluated, so it can leak through
// an error). Only views are more precise: a reference to a view column
// reports that column and the base columns that flow into it (Via = the
// view), plus every column the view's other clauses read.
//
// Writes carry the row action that makes them (ColumnRef.Action,
// TableRef.Action): an upsert's inserted columns and its SET columns are
// told apart, and a MERGE's target is written once per kind of action
// its WHEN clauses take (Merge set), so that its DELETE action needs the
// delete grant. Columns a statement leaves to their default run the default
// expression with the agent's privileges, so its sequence writes and
// function calls are reported (catalog.Column.Default and Sequences).
// When the session says more than one search path may be in effect
// (Session.SearchPaths), every unqualified relation and function
// name is resolved under each and every resolution is reported.
// A path the session set is searched as Postgres searches it: entries
// naming a schema that does not exist or that the current user lacks
// USAGE on are skipped, and "$user" names the login's schema
// (catalog.Catalog.SchemaUsage, Login). Where the catalog cannot know
// (sessions log in as other roles than the catalog's, a catalog file
// without the field, after SET ROLE), each such entry may or may not be
// searched and every resulting resolution is reported; an unknown
// "$user" makes unqualified names refused.
//
// The login's path (a session's starting one, and what RESET and DISCARD
// ALL return to) is the catalog's SearchPath while sessions log in as the
// catalog's login (catalog.Catalog.SessionsShareLogin). Otherwise
// (Vault) Analyzer.SessionProbe names a query the proxy runs after login,
// and Session.LearnProbe takes the session's own user and
// current_schemas(true) from its row: unqualified names then resolve along
// the path Postgres searches for that session. Such sessions cache their
// decisions under a generation per starting path (never 0, the catalog's
// path's). After SET ROLE a learned starting path is no longer the
// current user's: unqualified names under it are refused for the rest
// of the session. Resets (RESET ROLE, DISCARD ALL) are no identity
// change: alone they leave the login the current user.
//
// Code a statement runs without naming it (effects.go, overload.go,
// operator.go): an unqualified function or operator reaches the one of
// that name in any schema of the path that fits the argument types best,
// so every candidate counts unless the types the analyzer knows decide
// (an exact match, or types a candidate cannot take); casts to domains
// and user types run their checks and functions; writes run their
// tables' (and partitions') triggers, check constraints, generated
// columns, index expressions, domains and row security policies, and
// DDL the database's event triggers. Those functions are reported as
// called (FuncRef.Via says what runs them). Writes that fire a rule are
// refused; foreign key actions and TRUNCATE ... CASCADE are reported as
// the statement's own writes. The catalog lists all of these.
//
// DDL (ddl.go): on an existing relation it writes every column of it and
// its expressions are decided like a statement's; renaming or moving a
// relation or a column, and replacing a comment that carries keyhole
// labels, is refused (the policy names relations and columns, and the
// proxy has the catalog read again after DDL).
//
// Checks whose outcome shows what the statement does not name
// (constraints.go) are reads, reported with Via like a view's: foreign
// key lookups in the other table, the CHECK constraints, generated
// columns and unique keys an UPDATE evaluates over the whole row, a
// partition's bounds on its ancestors' partition key columns, and the
// row security policies that decide which rows a statement sees.
//
// Settings: a change of a setting that enforces a role's resource limit
// (statement_timeout, work_mem ...) carries the limit and the amount it
// asks for, read exactly as Postgres reads the value (units, rounding, 0
// = no timeout); UpstreamSettings maps a role's limits to the startup
// parameters that put them in force. Reads of pg_settings are reads of
// the settings a query selects by name.
//
// Normal forms (literals replaced by $n, for the decision cache and the
// audit) come from pg_query's Normalize, from the parse tree when the
// text is analyzed anyway (pgparse.Normalize), or, for a literal variant
// of a statement the cache holds, from FastNormal: a Go lexer that takes
// only texts it cuts into tokens exactly as Postgres's lexer does.
//
// It fails closed: anything it cannot parse, resolve or does not model
// comes back as a sqlpolicy.Problem, never as a silent omission. Input is
// bounded by a cheap pre-scan before it reaches the C parser, whose
// recursion can overflow the thread stack (a crash recover cannot catch)
// on very long operator or join chains.
package pganalyze
