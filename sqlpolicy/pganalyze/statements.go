package pganalyze

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// statement analyzes one top-level statement into w.st.
func (w *walker) statement(n *pg.Node) {
	if n == nil || n.Node == nil {
		w.unsupported("empty statement")
		return
	}
	st := w.st
	switch x := n.Node.(type) {
	case *pg.Node_SelectStmt:
		st.Verb, st.Command, st.ReturnsRows = sqlpolicy.VerbSelect, "SELECT", true
		w.readShape(nil, w.query(n, nil))
		if x.SelectStmt.IntoClause != nil || st.Verb == sqlpolicy.VerbDDL {
			// SELECT ... INTO creates a table instead of returning rows.
			st.ReturnsRows = false
		}
	case *pg.Node_InsertStmt:
		cmd := "INSERT"
		if oc := x.InsertStmt.OnConflictClause; oc != nil && oc.Action == pg.OnConflictAction_ONCONFLICT_UPDATE {
			// Written columns not attributed to one action need both
			// insert and update grants.
			cmd = commandUpsert
			st.Upsert = true
		}
		w.dml(n, sqlpolicy.VerbInsert, cmd, len(x.InsertStmt.ReturningList) > 0)
	case *pg.Node_UpdateStmt:
		w.dml(n, sqlpolicy.VerbUpdate, "UPDATE", len(x.UpdateStmt.ReturningList) > 0)
	case *pg.Node_DeleteStmt:
		w.dml(n, sqlpolicy.VerbDelete, "DELETE", len(x.DeleteStmt.ReturningList) > 0)
	case *pg.Node_MergeStmt:
		w.dml(n, sqlpolicy.VerbMerge, "MERGE", len(x.MergeStmt.ReturningList) > 0)
	case *pg.Node_CopyStmt:
		w.copyStmt(x.CopyStmt)
	case *pg.Node_VariableSetStmt:
		w.variableSet(x.VariableSetStmt)
	case *pg.Node_VariableShowStmt:
		st.Verb, st.Command, st.ReturnsRows = sqlpolicy.VerbSet, "SHOW", true
		name := strings.ToLower(x.VariableShowStmt.Name)
		w.setting(sqlpolicy.Setting{Name: name, Show: true})
		w.checkSettingRead(name, "SHOW")
	case *pg.Node_TransactionStmt:
		w.transaction(x.TransactionStmt)
	case *pg.Node_ExplainStmt:
		w.explain(x.ExplainStmt)
	case *pg.Node_PrepareStmt:
		st.Verb, st.Command = sqlpolicy.VerbPrepare, "PREPARE"
		st.PrepareName = x.PrepareStmt.Name
		inner := w.inner(x.PrepareStmt.Query)
		st.Prepared = &inner
	case *pg.Node_ExecuteStmt:
		w.execute(x.ExecuteStmt)
	case *pg.Node_DeallocateStmt:
		st.Verb, st.Command = sqlpolicy.VerbDeallocate, "DEALLOCATE"
		if x.DeallocateStmt.Isall || x.DeallocateStmt.Name == "" {
			st.Command, st.DeallocateAll = "DEALLOCATE ALL", true
		} else {
			st.Deallocate = []string{x.DeallocateStmt.Name}
		}
	case *pg.Node_DiscardStmt:
		st.Verb, st.Command = sqlpolicy.VerbUtility, "DISCARD"
		switch x.DiscardStmt.Target {
		case pg.DiscardMode_DISCARD_ALL:
			// DISCARD ALL is SET SESSION AUTHORIZATION DEFAULT, RESET ALL,
			// DEALLOCATE ALL, CLOSE ALL, UNLISTEN *, and more.
			st.Command, st.DeallocateAll = "DISCARD ALL", true
			w.setting(sqlpolicy.Setting{Name: "session_authorization", Reset: true})
			w.setting(sqlpolicy.Setting{Name: "search_path", Reset: true})
			w.setting(sqlpolicy.Setting{Name: "all", Reset: true})
		case pg.DiscardMode_DISCARD_PLANS, pg.DiscardMode_DISCARD_SEQUENCES, pg.DiscardMode_DISCARD_TEMP:
		default:
			w.unsupported("DISCARD of kind %s", x.DiscardStmt.Target)
		}
	case *pg.Node_ListenStmt:
		st.Verb, st.Command = sqlpolicy.VerbUtility, "LISTEN"
		w.unsupported("LISTEN receives other sessions' NOTIFY payloads (triggers often send whole rows)")
	case *pg.Node_UnlistenStmt:
		st.Verb, st.Command = sqlpolicy.VerbUtility, "UNLISTEN"
	case *pg.Node_NotifyStmt:
		st.Verb, st.Command = sqlpolicy.VerbUtility, "NOTIFY"
		w.unsupported("NOTIFY sends a payload to other sessions' listeners")
	case *pg.Node_DeclareCursorStmt:
		// A cursor returns its query's rows through FETCH: decide it as
		// that query.
		st.Verb, st.Command = sqlpolicy.VerbSelect, "DECLARE CURSOR"
		st.CursorName = x.DeclareCursorStmt.Portalname
		st.CursorHold = x.DeclareCursorStmt.Options&cursorOptHold != 0
		w.readShape(nil, w.query(x.DeclareCursorStmt.Query, nil))
		if len(w.writeVerbs) > 0 {
			w.unsupported("DECLARE CURSOR over a data-modifying query")
		}
	case *pg.Node_FetchStmt:
		st.Verb, st.Command, st.ReturnsRows = sqlpolicy.VerbUtility, "FETCH", true
		st.CursorName = x.FetchStmt.Portalname
		if x.FetchStmt.Ismove {
			st.Command, st.ReturnsRows = "MOVE", false
		}
	case *pg.Node_ClosePortalStmt:
		st.Verb, st.Command = sqlpolicy.VerbUtility, "CLOSE CURSOR"
		st.CursorName = x.ClosePortalStmt.Portalname
		if x.ClosePortalStmt.Portalname == "" {
			st.Command = "CLOSE CURSOR ALL"
		}
	case *pg.Node_LockStmt:
		st.Verb, st.Command = sqlpolicy.VerbLock, "LOCK TABLE"
		if x.LockStmt.Mode == accessShareLock {
			// The lock every SELECT takes (pg_dump takes it on each table
			// it dumps): it blocks only what SELECT blocks, and Postgres
			// asks SELECT on the whole table for it.
			st.Verb = sqlpolicy.VerbSelect
		}
		for _, r := range x.LockStmt.Relations {
			rv := r.GetRangeVar()
			if rv == nil {
				w.unsupported("LOCK of kind %s", nodeName(r.Node))
				continue
			}
			if st.Verb == sqlpolicy.VerbSelect {
				w.readItem(nil, w.rangeVar(rv, newScope(nil), sqlpolicy.Read, false))
				continue
			}
			rel := w.ddlRel(rv)
			if w.resolveRel(rv.Schemaname, rv.Relname) == nil {
				w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownTable, Rel: rel,
					Detail: "relation " + rel.String() + " does not exist"})
			}
			w.table(sqlpolicy.TableRef{Rel: rel, Mode: sqlpolicy.Read})
			w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemLocking, Rel: rel, Detail: "LOCK TABLE blocks other sessions"})
		}
	case *pg.Node_DoStmt:
		st.Verb, st.Command = sqlpolicy.VerbDo, "DO"
		w.unsupported("DO blocks run arbitrary code")
	case *pg.Node_CallStmt:
		st.Verb, st.Command, st.ReturnsRows = sqlpolicy.VerbCall, "CALL", true
		if fc := x.CallStmt.Funccall; fc != nil {
			w.procedure = fc
			w.funcCall(fc, newScope(nil), nil)
		} else {
			w.unsupported("CALL without a procedure")
		}
	case *pg.Node_CreateTableAsStmt:
		w.createTableAs(x.CreateTableAsStmt)
	default:
		w.utility(n)
	}
	w.effects()
}

// cursorOptHold is CURSOR_OPT_HOLD (parsenodes.h): DECLARE ... WITH HOLD.
const cursorOptHold = 0x0020

// commandUpsert is the Command of INSERT ... ON CONFLICT DO UPDATE.
const commandUpsert = "INSERT ... ON CONFLICT DO UPDATE"

// dml analyzes a top-level INSERT/UPDATE/DELETE/MERGE.
func (w *walker) dml(n *pg.Node, verb sqlpolicy.Verb, command string, returning bool) {
	w.st.Verb, w.st.Command, w.st.ReturnsRows = verb, command, returning
	w.readShape(nil, w.query(n, nil))
	for _, v := range w.writeVerbs {
		if v != verb && !(w.st.Upsert && v == sqlpolicy.VerbUpdate) {
			// The policy decides writes by the statement's verb; a
			// data-modifying CTE of another kind would escape it.
			w.unsupported("data-modifying WITH of kind %s inside %s", v, command)
		}
	}
}

// inner analyzes the statement under EXPLAIN or PREPARE.
func (w *walker) inner(n *pg.Node) sqlpolicy.Statement {
	if w.nest >= 8 {
		return sqlpolicy.Statement{Command: "UNKNOWN", Problems: []sqlpolicy.Problem{{
			Code: sqlpolicy.ProblemTooComplex, Detail: "statements nest too deeply"}}}
	}
	in := w.a.statement(n, w.sess, paths{path: w.path, all: w.paths, lost: w.pathLost, changed: w.pathChanged}, w.nest+1)
	if in.LiteralSensitive {
		w.st.LiteralSensitive = true
	}
	return in
}

func (w *walker) explain(e *pg.ExplainStmt) {
	st := w.st
	st.Verb, st.Command, st.ReturnsRows = sqlpolicy.VerbExplain, "EXPLAIN", true
	for _, o := range e.Options {
		de := o.GetDefElem()
		if de == nil {
			w.unsupported("EXPLAIN option of kind %s", nodeName(o.Node))
			continue
		}
		if de.Defname == "analyze" {
			// EXPLAIN (ANALYZE false) is the only way not to run it.
			v, ok := constString(de.Arg)
			v = strings.ToLower(v)
			if de.Arg == nil || !ok || !(v == "false" || v == "off" || v == "0" || v == "no") {
				st.ExplainAnalyze = true
			}
		}
	}
	inner := w.inner(e.Query)
	st.Explained = &inner
	w.explainPartitions(&inner) // constraints.go
	// Problems deny whatever the decision does with the inner statement.
	for _, p := range inner.Problems {
		w.problem(p)
	}
}

func (w *walker) execute(e *pg.ExecuteStmt) {
	st := w.st
	st.Verb, st.Command = sqlpolicy.VerbExecute, "EXECUTE"
	st.ExecuteName = e.Name
	for _, p := range e.Params {
		w.expr(p, newScope(nil), nil)
	}
	if w.sess != nil {
		if p, ok := w.sess.Prepared[e.Name]; ok && p != nil {
			st.Prepared = p
			st.ReturnsRows = p.ReturnsRows
			if !w.sess.PreparedCurrent(e.Name) || w.pathChanged {
				w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemSessionChange,
					Detail: "prepared statement \"" + e.Name + "\" was analyzed before a search_path change, and Postgres resolves its names again; PREPARE it again"})
			}
			return
		}
	}
	w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownPrepared,
		Detail: "prepared statement \"" + e.Name + "\" does not exist in this session"})
}

func (w *walker) transaction(t *pg.TransactionStmt) {
	st := w.st
	st.Verb = sqlpolicy.VerbTransaction
	switch t.Kind {
	case pg.TransactionStmtKind_TRANS_STMT_BEGIN:
		st.Command, st.Tx = "BEGIN", sqlpolicy.TxBegin
	case pg.TransactionStmtKind_TRANS_STMT_START:
		st.Command, st.Tx = "START TRANSACTION", sqlpolicy.TxBegin
	case pg.TransactionStmtKind_TRANS_STMT_COMMIT:
		st.Command, st.Tx = "COMMIT", sqlpolicy.TxEnd
		if t.Chain {
			st.Tx = sqlpolicy.TxBegin
		}
	case pg.TransactionStmtKind_TRANS_STMT_ROLLBACK:
		st.Command, st.Tx = "ROLLBACK", sqlpolicy.TxEnd
		if t.Chain {
			st.Tx = sqlpolicy.TxBegin
		}
	case pg.TransactionStmtKind_TRANS_STMT_SAVEPOINT:
		st.Command, st.Savepoint = "SAVEPOINT", t.SavepointName
	case pg.TransactionStmtKind_TRANS_STMT_RELEASE:
		st.Command, st.Savepoint = "RELEASE", t.SavepointName
	case pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO:
		st.Command, st.Tx, st.Savepoint = "ROLLBACK", sqlpolicy.TxRollbackTo, t.SavepointName
	case pg.TransactionStmtKind_TRANS_STMT_PREPARE, pg.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED,
		pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED:
		st.Command = map[pg.TransactionStmtKind]string{
			pg.TransactionStmtKind_TRANS_STMT_PREPARE:           "PREPARE TRANSACTION",
			pg.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED:   "COMMIT PREPARED",
			pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED: "ROLLBACK PREPARED",
		}[t.Kind]
		if t.Kind == pg.TransactionStmtKind_TRANS_STMT_PREPARE {
			st.Tx = sqlpolicy.TxEnd
		}
		// A prepared transaction outlives the session and its
		// short-lived credentials, holding its locks.
		w.unsupported("%s (two-phase commit) is not supported through the proxy", st.Command)
	default:
		w.unsupported("transaction statement of kind %s", t.Kind)
	}
	w.transactionOptions(t.Options, "", true)
}

// createTableAs analyzes CREATE TABLE AS, SELECT INTO and CREATE
// MATERIALIZED VIEW: a new relation written from a query's reads.
func (w *walker) createTableAs(c *pg.CreateTableAsStmt) {
	st := w.st
	st.Verb, st.Command = sqlpolicy.VerbDDL, "CREATE TABLE AS"
	switch {
	case c.IsSelectInto:
		st.Command = "SELECT INTO"
	case c.Objtype == pg.ObjectType_OBJECT_MATVIEW:
		st.Command = "CREATE MATERIALIZED VIEW"
	}
	if c.Into != nil {
		st.Tables = append(st.Tables, sqlpolicy.TableRef{Rel: w.ddlRel(c.Into.Rel), Mode: sqlpolicy.Write})
	}
	if c.Query.GetExecuteStmt() != nil {
		w.unsupported("CREATE TABLE AS EXECUTE")
		return
	}
	w.readShape(nil, w.query(c.Query, nil))
}

// accessShareLock is AccessShareLock, LockStmt.Mode of LOCK ... IN ACCESS
// SHARE MODE (storage/lockdefs.h).
const accessShareLock = 1
