package sqlpolicy

import "strings"

// Verb is what a statement does, in dialect-neutral terms. Decisions and
// policy rules are written against verbs.
type Verb string

const (
	VerbSelect      Verb = "select"
	VerbInsert      Verb = "insert"
	VerbUpdate      Verb = "update"
	VerbDelete      Verb = "delete"
	VerbMerge       Verb = "merge"
	VerbCopy        Verb = "copy"        // COPY ... TO STDOUT / FROM STDIN (files and programs are Problems)
	VerbDDL         Verb = "ddl"         // CREATE/ALTER/DROP/TRUNCATE/GRANT/COMMENT ...
	VerbSet         Verb = "set"         // SET / RESET / SHOW of a session setting
	VerbTransaction Verb = "transaction" // BEGIN/COMMIT/ROLLBACK/SAVEPOINT/SET TRANSACTION
	VerbPrepare     Verb = "prepare"     // SQL-level PREPARE
	VerbExecute     Verb = "execute"     // SQL-level EXECUTE
	VerbDeallocate  Verb = "deallocate"
	VerbExplain     Verb = "explain"
	VerbCall        Verb = "call"
	VerbDo          Verb = "do"
	VerbLock        Verb = "lock"
	VerbUtility     Verb = "utility" // anything else the analyzer recognises (LISTEN, DISCARD, VACUUM ...)
)

// Mode says whether a table or column is read or written. A column can be
// both (UPDATE t SET a = a + 1): it is then listed twice.
type Mode uint8

const (
	Read Mode = iota + 1
	Write
)

func (m Mode) String() string {
	switch m {
	case Read:
		return "read"
	case Write:
		return "write"
	}
	return "unknown"
}

// Rel names a relation (table, view, materialized view, foreign table,
// catalog relation) by schema and name, both already case-folded / unquoted
// the way the upstream resolves them.
type Rel struct {
	Schema string `json:"schema"`
	Name   string `json:"name"`
}

func (r Rel) String() string { return qualified(r.Schema, r.Name) }

// qualified is schema.name, or name alone when schema is empty.
func qualified(schema, name string) string {
	if schema == "" {
		return name
	}
	return schema + "." + name
}

// ParseRel splits "schema.name" (no quoting support: policy files name
// relations plainly). A name without a dot has an empty schema.
func ParseRel(s string) Rel {
	if i := strings.LastIndexByte(s, '.'); i >= 0 {
		return Rel{Schema: s[:i], Name: s[i+1:]}
	}
	return Rel{Name: s}
}

// TableRef is one relation a statement touches.
type TableRef struct {
	Rel  Rel  `json:"rel"`
	Mode Mode `json:"mode"`
	// Via is the view through which the relation was reached; zero when the
	// statement names the relation itself. Policy allow rules are checked on
	// relations the statement names directly (Via zero); labels are checked
	// on every column read, however it was reached.
	Via Rel `json:"via,omitempty"`
	// System is set by the analyzer for a system catalog relation that
	// holds no data values (Postgres pg_catalog and information_schema
	// relations, MySQL information_schema views of metadata); a role with
	// catalog: true may read it. Catalogs that expose data or other
	// sessions come back as ProblemDataCatalog instead.
	System bool `json:"system,omitempty"`
	// Action is, for a write, the row action that writes the relation:
	// VerbInsert, VerbUpdate, VerbDelete, or VerbMerge for the target of a
	// MERGE. An upsert's target is listed twice (insert and update). Empty
	// for reads and for writes an analyzer does not classify; the
	// statement's verb then decides which grant the write needs.
	Action Verb `json:"action,omitempty"`
	// Merge is set on a write by one of a MERGE's own WHEN clause actions
	// (Action VerbInsert, VerbUpdate or VerbDelete) on its target: a merge
	// grant covers its inserts and updates, but deleting rows needs the
	// delete grant, as Postgres asks DELETE for a MERGE with a DELETE
	// action. Other writes of a MERGE statement (data-modifying CTEs,
	// foreign key actions) need the grant of their own kind.
	Merge bool `json:"merge,omitempty"`
}

// ColumnRef is one column of a relation that a statement reads or writes,
// in any clause. `*`, `t.*` and whole-row references are expanded through
// the catalog into one ColumnRef per column.
type ColumnRef struct {
	Rel    Rel    `json:"rel"`
	Column string `json:"column"`
	Mode   Mode   `json:"mode"`
	Via    Rel    `json:"via,omitempty"`
	// Action is, for a written column, the row action that writes it:
	// VerbInsert for a column an INSERT (or a MERGE's WHEN NOT MATCHED
	// INSERT) fills, VerbUpdate for one a SET changes (UPDATE, ON CONFLICT
	// DO UPDATE, a MERGE's WHEN MATCHED UPDATE). A column both inserted
	// and SET is listed once per action. Empty for reads and for writes an
	// analyzer does not classify.
	Action Verb `json:"action,omitempty"`
	// Merge: as TableRef.Merge, for a column a MERGE's INSERT or UPDATE
	// action writes.
	Merge bool `json:"merge,omitempty"`
	// System: as TableRef.System, for the column's relation.
	System bool `json:"system,omitempty"`
	// Order is set for a column the statement counts as read only because
	// its rows may come back in the order of an index holding the column
	// (MySQL/MariaDB: a scan through a secondary index): that index's
	// name. Refusals then say so and how to fix the order.
	Order string `json:"order,omitempty"`
}

// FuncRef is a function or procedure the statement calls. Schema is the
// schema it resolved to in the catalog ("pg_catalog" for built-ins), or empty
// when it did not resolve (then the analyzer also adds a Problem).
type FuncRef struct {
	Schema string `json:"schema,omitempty"`
	Name   string `json:"name"`
	// Builtin is set by the analyzer for a function that comes with the
	// server (it needs no rule); user-defined functions need one.
	Builtin bool `json:"builtin,omitempty"`
	// Via says what runs the function when the statement does not call it
	// itself: "trigger t on public.x", "check constraint c of public.x".
	Via string `json:"via,omitempty"`
	// Procedure is set on the procedure a CALL statement invokes (for an
	// unqualified name, on every schema's candidate of it). A call grant
	// covers only these: the functions CALL's arguments call run before
	// the procedure, with the session's privileges, like a SELECT's.
	Procedure bool `json:"procedure,omitempty"`
}

func (f FuncRef) String() string { return qualified(f.Schema, f.Name) }

// Setting is a session setting a statement changes (SET, RESET,
// set_config(), SET ROLE ...). Name is lower-case. Reset is true for RESET
// / SET ... TO DEFAULT; Local for SET LOCAL.
type Setting struct {
	Name  string `json:"name"`
	Value string `json:"value,omitempty"`
	Reset bool   `json:"reset,omitempty"`
	Local bool   `json:"local,omitempty"`
	// Show is true for SHOW name (a read of the setting, not a change).
	Show bool `json:"show,omitempty"`
	// Appended is true when the change appends Value to the session's
	// current value rather than replacing it (MySQL's SET sql_mode =
	// CONCAT(@@sql_mode, ',STRICT_TRANS_TABLES')).
	Appended bool `json:"appended,omitempty"`
	// Unknown is true when the new value is not a literal the analyzer
	// could read (Value is then empty), or, for a setting a Limit
	// governs, a value the analyzer cannot turn into an amount.
	Unknown bool `json:"unknown,omitempty"`
	// Guarded is set by the analyzer when the change alters the session's
	// identity or how later text is lexed or resolved (Postgres
	// search_path, standard_conforming_strings off, a multibyte
	// client_encoding; MySQL sql_mode, character sets). Such a change is
	// denied unless the role lists the setting, whether or not the
	// analyzer also reported a ProblemSessionChange.
	Guarded bool `json:"guarded,omitempty"`
	// Kind is the analyzer's judgement of what a change (not a SHOW, not
	// a return to the default) does, when it is not harmless: it says why
	// a refused change was refused.
	Kind SettingKind `json:"kind,omitempty"`
	// Limit is set by the analyzer when the setting is the upstream's
	// knob for a resource Limit (Postgres work_mem: LimitWorkMem), and
	// Amount is what the change asks for, in the limit's unit (nanoseconds
	// or bytes), read the way the upstream reads the value, or Unlimited
	// for a value that lifts the limit (statement_timeout = 0). Both are
	// set on changes only: a return to the default (Reset) goes back to
	// the session's startup value, which keyhole set within the limit.
	Limit  Limit `json:"limit,omitempty"`
	Amount int64 `json:"amount,omitempty"`
}

// SettingKind classifies a setting change that is not harmless.
type SettingKind string

const (
	// SettingResolution changes how names resolve (search_path).
	SettingResolution SettingKind = "resolution"
	// SettingIdentity changes who the session is (role, session
	// authorization).
	SettingIdentity SettingKind = "identity"
	// SettingLexing changes how later text is lexed (string literal
	// escapes, client encodings).
	SettingLexing SettingKind = "lexing"
	// SettingBehavior changes what statements do beyond what the analyzer
	// sees (disabling triggers and rules).
	SettingBehavior SettingKind = "behavior"
	// SettingRecording changes what the server records of the session:
	// its logs (general, slow, binary) and what it replicates, or how
	// (MySQL sql_log_bin, binlog_format, server_id, gtid_seq_no).
	SettingRecording SettingKind = "recording"
	// SettingUnknown is a setting the analyzer does not know to be
	// harmless (custom settings included).
	SettingUnknown SettingKind = "unknown"
)

// TxEffect is what a transaction-control statement does to the
// transaction block.
type TxEffect uint8

const (
	TxNone TxEffect = iota
	// TxBegin leaves a transaction block open: BEGIN, START TRANSACTION,
	// COMMIT AND CHAIN, ROLLBACK AND CHAIN.
	TxBegin
	// TxEnd ends the block: COMMIT, END, ROLLBACK, ABORT, PREPARE
	// TRANSACTION. (COMMIT of a failed block rolls it back.)
	TxEnd
	// TxRollbackTo undoes the block back to a savepoint.
	TxRollbackTo
)

// ProblemCode classifies why the analyzer could not (or would not) model a
// statement. Every Problem makes the decision deny unless a rule names the
// code explicitly (see Policy).
type ProblemCode string

const (
	ProblemUnparseable     ProblemCode = "unparseable"      // parser rejected the text
	ProblemTooComplex      ProblemCode = "too_complex"      // size or nesting bound exceeded before parsing
	ProblemUnsupported     ProblemCode = "unsupported"      // node/statement kind the analyzer does not model
	ProblemUnknownTable    ProblemCode = "unknown_table"    // relation not in the catalog
	ProblemUnknownColumn   ProblemCode = "unknown_column"   // column not found on any relation in scope
	ProblemUnknownFunction ProblemCode = "unknown_function" // function not in the catalog
	ProblemDangerousFunc   ProblemCode = "dangerous_function"
	ProblemDynamicSQL      ProblemCode = "dynamic_sql"      // SQL text inside a string (query_to_xml, ts_stat...)
	ProblemDataCatalog     ProblemCode = "data_catalog"     // catalog relation that holds data values (pg_statistic, pg_authid ...)
	ProblemFileAccess      ProblemCode = "file_access"      // COPY to/from a file or program, pg_read_file ...
	ProblemUnknownPrepared ProblemCode = "unknown_prepared" // EXECUTE of a name never PREPAREd in this session
	ProblemLocking         ProblemCode = "locking"          // FOR UPDATE/SHARE, LOCK TABLE
	ProblemSessionChange   ProblemCode = "session_change"   // setting that alters lexing, identity or name resolution
)

// Problem is something the analyzer could not classify or refuses to model.
type Problem struct {
	Code   ProblemCode `json:"code"`
	Detail string      `json:"detail"`
	// Rel / Column / Func identify the object involved, when there is one.
	Rel     Rel    `json:"rel,omitempty"`
	Column  string `json:"column,omitempty"`
	Func    string `json:"func,omitempty"`
	Setting string `json:"setting,omitempty"`
}

// Statement is the analysis of one statement of a text.
type Statement struct {
	Verb Verb `json:"verb"`
	// Command is the statement's command tag-like name ("SELECT", "CREATE
	// TABLE", "SET", "SHOW", "BEGIN") for messages and audit.
	Command string `json:"command"`
	// Tx is the effect of a transaction-control statement on the
	// transaction block; Session uses it to tell whether a setting change
	// may still be rolled back.
	Tx        TxEffect    `json:"tx,omitempty"`
	Tables    []TableRef  `json:"tables,omitempty"`
	Columns   []ColumnRef `json:"columns,omitempty"`
	Functions []FuncRef   `json:"functions,omitempty"`
	Settings  []Setting   `json:"settings,omitempty"`
	Problems  []Problem   `json:"problems,omitempty"`

	// Prepared is set for SQL-level PREPARE name AS stmt: the name and the
	// analysis of the inner statement. The decision is the inner one's.
	PrepareName string     `json:"prepare_name,omitempty"`
	Prepared    *Statement `json:"prepared,omitempty"`
	// ExecuteName is set for EXECUTE name; the analyzer resolves it through
	// Session.Prepared and copies the prepared statement's access here.
	ExecuteName string `json:"execute_name,omitempty"`
	// Deallocate lists names dropped by DEALLOCATE; DeallocateAll is DEALLOCATE ALL / DISCARD ALL.
	Deallocate    []string `json:"deallocate,omitempty"`
	DeallocateAll bool     `json:"deallocate_all,omitempty"`

	// CursorName is the cursor a DECLARE opens, a FETCH or MOVE reads or
	// a CLOSE closes (empty for CLOSE ALL and other statements): the
	// proxy decides a cursor's DECLARE again before a FETCH when the policy
	// changed since (a cursor may outlive the allow it was opened under).
	// CursorHold marks DECLARE ...
	// WITH HOLD, whose cursor outlives the COMMIT of its transaction. The
	// proxies track such cursors as portals the client may use.
	CursorName string `json:"cursor_name,omitempty"`
	CursorHold bool   `json:"cursor_hold,omitempty"`
	// Savepoint is the savepoint SAVEPOINT sets, RELEASE releases or
	// ROLLBACK TO returns to, as the server names it (folded to lower case
	// unless quoted): the Postgres proxy follows which portals a ROLLBACK
	// TO drops by it.
	Savepoint string `json:"savepoint,omitempty"`

	// Explained is the analysis of the statement under EXPLAIN. Analyze is
	// true for EXPLAIN ANALYZE (the inner statement runs).
	Explained      *Statement `json:"explained,omitempty"`
	ExplainAnalyze bool       `json:"explain_analyze,omitempty"`

	// Upsert is set for an INSERT that may also update existing rows
	// (Postgres ON CONFLICT DO UPDATE, MySQL ON DUPLICATE KEY UPDATE):
	// written columns the analyzer did not attribute to one action need
	// both the insert and the update grant.
	Upsert bool `json:"upsert,omitempty"`

	// ReturnsRows is true when the statement can send rows back (SELECT,
	// RETURNING, SHOW, EXPLAIN, COPY TO STDOUT, FETCH).
	ReturnsRows bool `json:"returns_rows,omitempty"`
	// LiteralSensitive is true when the analysis depended on a literal value
	// (a SET value, a set_config argument, a regclass literal, SQL text in a
	// string). Such statements must not share a cache entry with texts that
	// differ only in literals.
	LiteralSensitive bool `json:"literal_sensitive,omitempty"`

	// Kill is set for a MySQL KILL of a literal connection id. The id is
	// one the client was given, which behind a proxy is the proxy's and
	// not the upstream's: the statement is refused (Problems), and the
	// MySQL front end maps it to the agent's own sessions instead.
	Kill *Kill `json:"kill,omitempty"`
}

// Kill is the target of a MySQL KILL statement.
type Kill struct {
	ConnectionID uint64 `json:"connection_id"`
	// Query is KILL QUERY (stop the statement running there); otherwise
	// KILL [CONNECTION] (end the session).
	Query bool `json:"query,omitempty"`
}

// Access is the analysis of a whole text: one Statement per statement, in
// order. A text with several statements is allowed only if every one is.
type Access struct {
	Statements []Statement `json:"statements"`
}

// LiteralSensitive reports whether any statement's analysis depended on a
// literal value.
func (a *Access) LiteralSensitive() bool {
	for i := range a.Statements {
		if a.Statements[i].LiteralSensitive {
			return true
		}
	}
	return false
}
