package myanalyze

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// statement dispatches on the statement kind.
func (w *walker) statement(n ast.StmtNode) {
	st := w.st
	switch x := n.(type) {
	case *ast.SelectStmt, *ast.SetOprStmt:
		st.Verb, st.Command, st.ReturnsRows = sqlpolicy.VerbSelect, "SELECT", true
		w.query(x.(ast.ResultSetNode), nil, nil)
		if s, ok := x.(*ast.SelectStmt); ok && s.SelectIntoOpt != nil && s.SelectIntoOpt.Tp == ast.SelectIntoVars {
			st.ReturnsRows = false
		}
	case *ast.InsertStmt:
		w.insert(x)
	case *ast.UpdateStmt:
		w.update(x)
	case *ast.DeleteStmt:
		w.delete(x)
	case *ast.SetStmt:
		w.set(x)
	case *ast.ShowStmt:
		w.show(x)
	case *ast.UseStmt:
		st.Verb, st.Command = sqlpolicy.VerbUtility, "USE"
		if w.a.lookupSchema(x.DBName) == "" {
			w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownTable, Rel: sqlpolicy.Rel{Schema: x.DBName},
				Detail: fmt.Sprintf("database %s does not exist (or keyhole's login cannot see it)", x.DBName)})
			return
		}
		w.setting(sqlpolicy.Setting{Name: settingDatabase, Value: w.a.lookupSchema(x.DBName)})
	case *ast.BeginStmt:
		st.Verb, st.Command, st.Tx = sqlpolicy.VerbTransaction, "BEGIN", sqlpolicy.TxBegin
		if x.AsOf != nil || x.CausalConsistencyOnly || x.Mode != "" {
			w.unsupported("BEGIN options of TiDB are not MariaDB syntax")
		}
	case *ast.CommitStmt:
		st.Verb, st.Command, st.Tx = sqlpolicy.VerbTransaction, "COMMIT", sqlpolicy.TxEnd
		if x.CompletionType == ast.CompletionTypeChain {
			st.Tx = sqlpolicy.TxBegin
		}
	case *ast.RollbackStmt:
		st.Verb, st.Command, st.Tx = sqlpolicy.VerbTransaction, "ROLLBACK", sqlpolicy.TxEnd
		switch {
		case x.SavepointName != "":
			st.Tx = sqlpolicy.TxRollbackTo
		case x.CompletionType == ast.CompletionTypeChain:
			st.Tx = sqlpolicy.TxBegin
		}
	case *ast.SavepointStmt:
		st.Verb, st.Command = sqlpolicy.VerbTransaction, "SAVEPOINT"
	case *ast.ReleaseSavepointStmt:
		st.Verb, st.Command = sqlpolicy.VerbTransaction, "RELEASE SAVEPOINT"
	case *ast.PrepareStmt:
		w.prepare(x)
	case *ast.ExecuteStmt:
		w.execute(x)
	case *ast.DeallocateStmt:
		st.Verb, st.Command = sqlpolicy.VerbDeallocate, "DEALLOCATE"
		st.Deallocate = []string{strings.ToLower(x.Name)}
	case *ast.ExplainStmt:
		w.explain(x)
	case *ast.CallStmt:
		st.Verb, st.Command, st.ReturnsRows = sqlpolicy.VerbCall, "CALL", true
		if x.Procedure == nil {
			w.unsupported("CALL without a procedure")
			return
		}
		db := x.Procedure.Schema.O
		if db == "" {
			db = w.db
		}
		name := w.findFunc(db, x.Procedure.FnName.O)
		if name == "" {
			w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownFunction, Func: x.Procedure.FnName.O,
				Detail: fmt.Sprintf("procedure %s.%s does not exist", db, x.Procedure.FnName.O)})
		} else {
			// The one function a call grant covers; its arguments' calls
			// are decided as in any expression.
			w.fn(sqlpolicy.FuncRef{Schema: db, Name: name, Procedure: true})
		}
		sc := newScope(nil)
		for _, a := range x.Procedure.Args {
			w.expr(a, sc, nil, clauseWhere)
		}
	case *ast.DoStmt:
		// DO evaluates expressions and discards the results: a SELECT
		// without rows.
		st.Verb, st.Command = sqlpolicy.VerbSelect, "DO"
		sc := newScope(nil)
		for _, e := range x.Exprs {
			w.expr(e, sc, nil, clauseWhere)
		}
	case *ast.LoadDataStmt:
		st.Verb, st.Command = sqlpolicy.VerbCopy, "LOAD DATA"
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemFileAccess,
			Detail: "LOAD DATA reads a file (LOCAL: from the client) into a table; use INSERT"})
	case *ast.LockTablesStmt:
		st.Verb, st.Command = sqlpolicy.VerbLock, "LOCK TABLES"
		for _, tl := range x.TableLocks {
			if it := w.resolveTable(tl.Table, nil, 0, false); it != nil && it.rel != nil {
				w.table(sqlpolicy.TableRef{Rel: relOf(it.rel), Mode: sqlpolicy.Read})
			}
		}
	case *ast.UnlockTablesStmt:
		st.Verb, st.Command = sqlpolicy.VerbUtility, "UNLOCK TABLES"
	case *ast.KillStmt:
		st.Verb, st.Command = sqlpolicy.VerbUtility, "KILL"
		if x.Expr == nil && !x.TiDBExtension {
			// Reported for the proxy, which gave the client its
			// connection ids; the id is a literal the decision cache
			// must not share between texts.
			st.Kill = &sqlpolicy.Kill{ConnectionID: x.ConnectionID, Query: x.Query}
			st.LiteralSensitive = true
		}
		w.unsupported("KILL must be sent alone and name one of the agent's own connections by the id keyhole gave it")
	case *ast.TruncateTableStmt:
		w.ddl("TRUNCATE", x.Table)
	case *ast.DropTableStmt:
		if x.IsView {
			w.ddl("DROP VIEW", x.Tables...)
		} else {
			w.ddl("DROP TABLE", x.Tables...)
		}
	case *ast.AlterTableStmt:
		w.ddl("ALTER TABLE", x.Table)
		var rel *catalog.Relation
		if it := x.Table; it != nil {
			db := it.Schema.O
			if db == "" {
				db = w.db
			}
			rel = w.lookupRel(db, it.Name.O)
		}
		for _, spec := range x.Specs {
			w.ddlOthers(x.Table, spec.NewColumns, append([]*ast.Constraint{spec.Constraint}, spec.NewConstraints...), spec.Options)
			if spec.Tp == ast.AlterTableExchangePartition {
				w.exchanged(x.Table, spec.NewTable)
			}
			if renames(spec) {
				w.unsupported(renameRefusal)
				break
			}
			if rel != nil && dropsLabelComment(rel, spec) {
				w.unsupported(labelCommentRefusal)
				break
			}
		}
	case *ast.CreateIndexStmt:
		w.ddl("CREATE INDEX", x.Table)
	case *ast.DropIndexStmt:
		w.ddl("DROP INDEX", x.Table)
	case *ast.CreateTableStmt:
		w.ddl("CREATE TABLE", x.Table)
		w.ddlOthers(x.Table, x.Cols, x.Constraints, x.Options)
		if x.Select != nil {
			w.query(x.Select, nil, nil)
		}
		if x.ReferTable != nil {
			if it := w.resolveTable(x.ReferTable, nil, sqlpolicy.Read, false); it != nil {
				w.readCols(nil, it.cols)
			}
		}
	case *ast.RenameTableStmt:
		for _, tt := range x.TableToTables {
			w.ddl("RENAME TABLE", tt.OldTable, tt.NewTable)
		}
		w.unsupported(renameRefusal)
	case *ast.SetRoleStmt, *ast.SetDefaultRoleStmt, *ast.SetPwdStmt:
		st.Verb, st.Command = sqlpolicy.VerbSet, "SET"
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemSessionChange, Setting: "role",
			Detail: "SET ROLE, SET DEFAULT ROLE and SET PASSWORD change the session's identity or credentials"})
	default:
		st.Command = strings.ToUpper(strings.TrimSuffix(strings.TrimPrefix(fmt.Sprintf("%T", n), "*ast."), "Stmt"))
		w.unsupported("%s statements are not modelled", st.Command)
	}
}

// lookupSchema returns the catalog's spelling of a database name, or "".
func (a *Analyzer) lookupSchema(db string) string {
	if _, ok := a.cat.Relations[db]; ok {
		return db
	}
	if isInfoSchema(db) || a.lowerNames {
		for s := range a.cat.Relations {
			if strings.EqualFold(s, db) {
				return s
			}
		}
	}
	return ""
}

// ddl reports a DDL statement on tables (which need not exist yet).
func (w *walker) ddl(command string, tables ...*ast.TableName) {
	w.st.Verb, w.st.Command = sqlpolicy.VerbDDL, command
	for _, tn := range tables {
		if tn == nil {
			continue
		}
		db := tn.Schema.O
		if db == "" {
			db = w.db
		}
		if db == "" || w.ts.dbLost && tn.Schema.O == "" {
			w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownTable, Rel: sqlpolicy.Rel{Name: tn.Name.O},
				Detail: fmt.Sprintf("no database known for %q: qualify it", tn.Name.O)})
			continue
		}
		name := tn.Name.O
		r := w.lookupRel(db, name)
		if r != nil {
			db, name = r.Schema, r.Name
		}
		rel := sqlpolicy.Rel{Schema: db, Name: name}
		w.table(sqlpolicy.TableRef{Rel: rel, Mode: sqlpolicy.Write})
		if r == nil {
			continue
		}
		// DDL on an existing table writes every column of it: an ALTER
		// rewrites the rows (a new CHECK, a type change or an index
		// fails on the first value it cannot take, and the error quotes
		// it), MODIFY or CHANGE without COMMENT drops a column's comment
		// and its labels with it, DROP and TRUNCATE destroy the data. A
		// table with a column the role may not write (a label it denies)
		// is not the role's to change.
		for _, c := range r.Columns {
			w.column(sqlpolicy.ColumnRef{Rel: rel, Column: c.Name, Mode: sqlpolicy.Write})
		}
	}
}

// ddlOthers reports what a table definition (CREATE TABLE, an ALTER TABLE
// clause) does with tables other than target:
//
//   - a foreign key (FOREIGN KEY ... REFERENCES, or REFERENCES on a
//     column) is checked against the referenced table's key at once for
//     the rows the table has (ALTER TABLE ... ADD) or gets (CREATE TABLE
//     ... SELECT 2 AS x REFERENCES secrets (id) fails with 1452 exactly
//     when secrets has no id 2), and for every later write: as for the
//     checks of an existing foreign key (effects.go), the referenced
//     columns are read with Via = target, and MariaDB asks no privilege
//     on them;
//   - a MERGE table's UNION=(t, ...) reads and writes the rows of those
//     tables as its own: DDL on each of them, and a read of all their
//     columns.
func (w *walker) ddlOthers(target *ast.TableName, cols []*ast.ColumnDef, cons []*ast.Constraint, opts []*ast.TableOption) {
	if target == nil {
		return
	}
	via := w.ddlRel(target)
	refer := func(ref *ast.ReferenceDef) {
		if ref == nil || ref.Table == nil {
			return
		}
		parent := w.ddlRel(ref.Table)
		if parent == via {
			// A key of the table itself (a self-reference).
			return
		}
		if r := w.cat.Relation(parent.Schema, parent.Name); r == nil {
			w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownTable, Rel: parent,
				Detail: fmt.Sprintf("the foreign key references %s, which keyhole does not know", parent)})
			return
		}
		var names []string
		for _, k := range ref.IndexPartSpecifications {
			if k.Column == nil {
				names = append(names, "")
				continue
			}
			names = append(names, k.Column.Name.O)
		}
		if len(names) == 0 || slices.Contains(names, "") {
			// REFERENCES t without columns names its primary key; an
			// expression part may name any column.
			names = allColumns(w.cat.Relation(parent.Schema, parent.Name))
		}
		w.checkRead(parent, names, via)
	}
	for _, c := range cols {
		if c == nil {
			continue
		}
		for _, o := range c.Options {
			if o != nil && o.Tp == ast.ColumnOptionReference {
				refer(o.Refer)
			}
		}
	}
	for _, c := range cons {
		if c != nil && c.Tp == ast.ConstraintForeignKey {
			refer(c.Refer)
		}
	}
	for _, o := range opts {
		if o == nil || o.Tp != ast.TableOptionUnion {
			continue
		}
		for _, tn := range o.TableNames {
			w.exchanged(nil, tn)
		}
	}
}

// exchanged reports the tables whose rows trade places with a table's:
// ALTER TABLE t EXCHANGE PARTITION p WITH TABLE u moves u's rows into t
// and p's into u, and a MERGE table's UNION=(u) shows u's rows as its
// own. Each is DDL on every column of it (as for t), and a read of all
// its columns, which the other table then shows.
func (w *walker) exchanged(target, other *ast.TableName) {
	for _, tn := range []*ast.TableName{target, other} {
		if tn == nil {
			continue
		}
		w.ddl(w.st.Command, tn)
		if it := w.resolveTable(tn, nil, sqlpolicy.Read, false); it != nil {
			w.readCols(nil, it.cols)
		}
	}
}

// ddlRel is the relation a DDL statement's table name names, spelled as
// the catalog spells it when it is there.
func (w *walker) ddlRel(tn *ast.TableName) sqlpolicy.Rel {
	db := tn.Schema.O
	if db == "" {
		db = w.db
	}
	if r := w.lookupRel(db, tn.Name.O); r != nil {
		return relOf(r)
	}
	return sqlpolicy.Rel{Schema: db, Name: tn.Name.O}
}

// renameRefusal refuses renaming a table or a column. keyhole's policy,
// its labels and its grants name tables and columns, and the catalog is
// read again after DDL: a rename moves the data under the rules of the
// new name (RENAME TABLE orders TO o2, audit_log TO orders, and SELECT *
// FROM orders reads audit_log under orders' select grant; a column
// renamed onto a granted column's name is read under that grant), and a
// policy label on the old name no longer applies.
const renameRefusal = "renaming a table or a column would put its data under the policy's rules for another name; rename it outside keyhole (a migration), then reload keyhole"

// labelCommentRefusal refuses changing a comment that carries keyhole
// labels ("keyhole: pii.ssn"): the labels bind every role, and the
// catalog is read again after DDL, so a role that may write the column
// (one whose deny_labels do not cover the label) would take it away from
// the roles that may not read it.
const labelCommentRefusal = "the comment carries keyhole labels, which apply to every role; labels are changed by the database's owners outside keyhole"

// dropsLabelComment reports whether an ALTER TABLE clause replaces a
// comment of rel that carries keyhole labels: the table's (COMMENT =), or
// a column's (MODIFY and CHANGE give the column a new definition, and its
// comment is the new definition's, empty when it has none).
func dropsLabelComment(rel *catalog.Relation, spec *ast.AlterTableSpec) bool {
	switch spec.Tp {
	case ast.AlterTableOption:
		if len(rel.Labels) == 0 {
			return false
		}
		for _, o := range spec.Options {
			if o.Tp == ast.TableOptionComment {
				return true
			}
		}
	case ast.AlterTableModifyColumn, ast.AlterTableChangeColumn:
		name := ""
		if spec.OldColumnName != nil {
			name = spec.OldColumnName.Name.O
		} else if len(spec.NewColumns) > 0 && spec.NewColumns[0].Name != nil {
			name = spec.NewColumns[0].Name.Name.O
		}
		for _, c := range rel.Columns {
			if strings.EqualFold(c.Name, name) {
				return len(c.Labels) > 0
			}
		}
	}
	return false
}

// renames reports whether an ALTER TABLE clause renames the table or a
// column (CHANGE old new ... with another name).
func renames(spec *ast.AlterTableSpec) bool {
	switch spec.Tp {
	case ast.AlterTableRenameTable, ast.AlterTableRenameColumn:
		return true
	case ast.AlterTableChangeColumn:
		return spec.OldColumnName == nil || len(spec.NewColumns) == 0 || spec.NewColumns[0].Name == nil ||
			!strings.EqualFold(spec.OldColumnName.Name.O, spec.NewColumns[0].Name.Name.O)
	}
	return false
}

// prepare analyzes PREPARE name FROM 'text': the text is analyzed as the
// statement a later EXECUTE runs. PREPARE ... FROM @var is dynamic SQL.
func (w *walker) prepare(x *ast.PrepareStmt) {
	st := w.st
	st.Verb, st.Command = sqlpolicy.VerbPrepare, "PREPARE"
	st.PrepareName = strings.ToLower(x.Name)
	st.LiteralSensitive = true
	if x.SQLVar != nil {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemDynamicSQL,
			Detail: "PREPARE ... FROM a variable runs text keyhole cannot see; prepare from a string literal"})
		return
	}
	if w.nest > 0 {
		w.unsupported("nested PREPARE")
		return
	}
	if p := (scanner{s: x.SQLText, mode: lexModeOf(w.ts.mode), maxDepth: w.a.opts.MaxDepth, maxTerms: w.a.opts.MaxTerms}).check(); p != nil {
		w.problem(*p)
		return
	}
	if hasSetStatement(x.SQLText) {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemSessionChange, Detail: "SET STATEMENT ... FOR in a prepared statement"})
		return
	}
	stmts, p := w.a.parse(x.SQLText, w.ts.mode)
	if p != nil {
		w.problem(*p)
		return
	}
	if len(stmts) != 1 {
		w.unsupported("PREPARE of %d statements (MariaDB prepares one)", len(stmts))
		return
	}
	switch stmts[0].(type) {
	case *ast.PrepareStmt, *ast.ExecuteStmt, *ast.DeallocateStmt:
		w.unsupported("PREPARE of a PREPARE, EXECUTE or DEALLOCATE")
		return
	}
	inner := w.a.statement(stmts[0], w.ts, w.nest+1)
	st.Prepared = &inner
}

// execute resolves EXECUTE name through the session's prepared
// statements and copies the prepared statement's analysis.
func (w *walker) execute(x *ast.ExecuteStmt) {
	st := w.st
	st.Verb, st.Command = sqlpolicy.VerbExecute, "EXECUTE"
	name := strings.ToLower(x.Name)
	st.ExecuteName = name
	sc := newScope(nil)
	for _, e := range x.UsingVars {
		w.expr(e, sc, nil, clauseWhere)
	}
	p, db, ok := w.ts.preparedStmt(name)
	if !ok {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownPrepared,
			Detail: fmt.Sprintf("prepared statement %q was not prepared by an allowed PREPARE in this session", name)})
		return
	}
	if db != w.db {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownPrepared,
			Detail: fmt.Sprintf("prepared statement %q was analyzed in database %q, the session is now in %q; PREPARE it again", name, db, w.db)})
		return
	}
	cp := *p
	st.Prepared = &cp
	st.ReturnsRows = p.ReturnsRows
}

// explain analyzes EXPLAIN / DESCRIBE.
func (w *walker) explain(x *ast.ExplainStmt) {
	st := w.st
	if sh, ok := x.Stmt.(*ast.ShowStmt); ok {
		// DESCRIBE t is SHOW COLUMNS FROM t.
		w.show(sh)
		st.Command = "DESCRIBE"
		return
	}
	st.Verb, st.Command, st.ReturnsRows = sqlpolicy.VerbExplain, "EXPLAIN", true
	if x.Stmt == nil || x.SQLDigest != "" || x.PlanDigest != "" || x.Explore {
		w.unsupported("EXPLAIN of a digest")
		return
	}
	inner := w.a.statement(x.Stmt, w.ts, w.nest+1)
	st.Explained = &inner
	st.ExplainAnalyze = x.Analyze
}
