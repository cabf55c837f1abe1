package pganalyze

import (
	"fmt"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

// ddlCommands names the DDL statements the analyzer recognises. Their
// target relation (when they have one) is reported as a write of the
// relation and of every column it has (ddlTarget); the expressions inside
// them are reported like any statement's (ddlContent).
var ddlCommands = map[string]string{
	"CreateStmt": "CREATE TABLE", "AlterTableStmt": "ALTER TABLE", "DropStmt": "DROP",
	"TruncateStmt": "TRUNCATE TABLE", "IndexStmt": "CREATE INDEX", "ViewStmt": "CREATE VIEW",
	"RenameStmt": "ALTER", "AlterObjectSchemaStmt": "ALTER", "AlterOwnerStmt": "ALTER",
	"CommentStmt": "COMMENT", "GrantStmt": "GRANT", "CreateSeqStmt": "CREATE SEQUENCE",
	"AlterSeqStmt": "ALTER SEQUENCE", "CreateSchemaStmt": "CREATE SCHEMA",
	"CreateDomainStmt": "CREATE DOMAIN", "AlterDomainStmt": "ALTER DOMAIN", "DefineStmt": "CREATE",
	"CompositeTypeStmt": "CREATE TYPE", "CreateEnumStmt": "CREATE TYPE", "CreateRangeStmt": "CREATE TYPE",
	"AlterEnumStmt": "ALTER TYPE", "CreateTrigStmt": "CREATE TRIGGER", "CreatePolicyStmt": "CREATE POLICY",
	"AlterPolicyStmt": "ALTER POLICY", "RuleStmt": "CREATE RULE", "RefreshMatViewStmt": "REFRESH MATERIALIZED VIEW",
	"ClusterStmt": "CLUSTER", "ReindexStmt": "REINDEX", "CreateStatsStmt": "CREATE STATISTICS",
	"AlterStatsStmt": "ALTER STATISTICS", "CreatedbStmt": "CREATE DATABASE", "DropdbStmt": "DROP DATABASE",
	"AlterDatabaseStmt": "ALTER DATABASE", "AlterDatabaseRefreshCollStmt": "ALTER DATABASE",
	"AlterDefaultPrivilegesStmt": "ALTER DEFAULT PRIVILEGES", "AlterFunctionStmt": "ALTER FUNCTION",
	"AlterTypeStmt": "ALTER TYPE", "AlterCollationStmt": "ALTER COLLATION",
	"CreateOpClassStmt": "CREATE OPERATOR CLASS", "CreateOpFamilyStmt": "CREATE OPERATOR FAMILY",
	"AlterOpFamilyStmt": "ALTER OPERATOR FAMILY", "AlterOperatorStmt": "ALTER OPERATOR",
	"CreateCastStmt": "CREATE CAST", "CreateTransformStmt": "CREATE TRANSFORM",
	"AlterTsdictionaryStmt": "ALTER TEXT SEARCH DICTIONARY", "AlterTsconfigurationStmt": "ALTER TEXT SEARCH CONFIGURATION",
	"CreatePublicationStmt": "CREATE PUBLICATION", "AlterPublicationStmt": "ALTER PUBLICATION",
	"DropOwnedStmt": "DROP OWNED", "ReassignOwnedStmt": "REASSIGN OWNED", "SecLabelStmt": "SECURITY LABEL",
	"AlterObjectDependsStmt": "ALTER", "CreateForeignTableStmt": "CREATE FOREIGN TABLE",
	"AlterTableMoveAllStmt": "ALTER TABLE", "CreateAmStmt": "CREATE ACCESS METHOD",
	"ConstraintsSetStmt": "SET CONSTRAINTS", "CreateFunctionStmt": "CREATE FUNCTION",
	"DropTableSpaceStmt": "DROP TABLESPACE", "AlterTableSpaceOptionsStmt": "ALTER TABLESPACE",
	"DropSubscriptionStmt": "DROP SUBSCRIPTION", "DropUserMappingStmt": "DROP USER MAPPING",
	"AlterFdwStmt": "ALTER FOREIGN DATA WRAPPER", "AlterForeignServerStmt": "ALTER SERVER",
}

// dangerousDDL run code outside the analyzer's view, change identities or
// persistent settings, or reach outside the database.
var dangerousDDL = map[string][2]string{
	"LoadStmt":                   {"LOAD", "LOAD loads a shared library into the server"},
	"AlterSystemStmt":            {"ALTER SYSTEM", "ALTER SYSTEM changes the server configuration"},
	"CreateExtensionStmt":        {"CREATE EXTENSION", "CREATE EXTENSION runs extension scripts"},
	"AlterExtensionStmt":         {"ALTER EXTENSION", "ALTER EXTENSION runs extension scripts"},
	"AlterExtensionContentsStmt": {"ALTER EXTENSION", "ALTER EXTENSION changes extension membership"},
	"CreatePlangStmt":            {"CREATE LANGUAGE", "CREATE LANGUAGE installs a procedural language"},
	"CreateRoleStmt":             {"CREATE ROLE", "role management changes identities"},
	"AlterRoleStmt":              {"ALTER ROLE", "role management changes identities"},
	"AlterRoleSetStmt":           {"ALTER ROLE", "ALTER ROLE SET changes settings of later sessions"},
	"DropRoleStmt":               {"DROP ROLE", "role management changes identities"},
	"GrantRoleStmt":              {"GRANT ROLE", "role membership changes identities"},
	"AlterDatabaseSetStmt":       {"ALTER DATABASE", "ALTER DATABASE SET changes settings of later sessions"},
	"CreateSubscriptionStmt":     {"CREATE SUBSCRIPTION", "a subscription connects to another server"},
	"AlterSubscriptionStmt":      {"ALTER SUBSCRIPTION", "a subscription connects to another server"},
	"CreateFdwStmt":              {"CREATE FOREIGN DATA WRAPPER", "foreign data wrappers reach outside the database"},
	"CreateForeignServerStmt":    {"CREATE SERVER", "foreign servers reach outside the database"},
	"CreateUserMappingStmt":      {"CREATE USER MAPPING", "user mappings hold credentials"},
	"AlterUserMappingStmt":       {"ALTER USER MAPPING", "user mappings hold credentials"},
	"ImportForeignSchemaStmt":    {"IMPORT FOREIGN SCHEMA", "foreign schemas reach outside the database"},
	"CreateEventTrigStmt":        {"CREATE EVENT TRIGGER", "event triggers run code on other sessions' DDL"},
	"AlterEventTrigStmt":         {"ALTER EVENT TRIGGER", "event triggers run code on other sessions' DDL"},
	"CreateTableSpaceStmt":       {"CREATE TABLESPACE", "tablespaces name server directories"},
	"CreateConversionStmt":       {"CREATE CONVERSION", "encoding conversions change how text is read"},
	"CheckPointStmt":             {"CHECKPOINT", "CHECKPOINT forces server-wide I/O"},
}

// trustedLanguages run without access to the server's files or processes.
var trustedLanguages = map[string]bool{"sql": true, "plpgsql": true, "plperl": true, "pltcl": true, "plv8": true}

// utility analyzes the statements that are neither queries nor DML.
func (w *walker) utility(n *pg.Node) {
	st := w.st
	kind := nodeName(n.Node)
	if d, ok := dangerousDDL[kind]; ok {
		st.Verb, st.Command = sqlpolicy.VerbDDL, d[0]
		if kind == "CheckPointStmt" {
			st.Verb = sqlpolicy.VerbUtility
		}
		w.unsupported("%s", d[1])
		return
	}
	if x, ok := n.Node.(*pg.Node_VacuumStmt); ok {
		st.Verb, st.Command = sqlpolicy.VerbUtility, "VACUUM"
		if !x.VacuumStmt.IsVacuumcmd {
			st.Command = "ANALYZE"
		}
		if len(x.VacuumStmt.Rels) == 0 {
			// Without a list it runs on every table the login may
			// maintain: no grant names that, so it is not modelled.
			w.unsupported("%s without a table list acts on every table", st.Command)
		}
		for _, r := range x.VacuumStmt.Rels {
			if vr := r.GetVacuumRelation(); vr != nil && vr.Relation != nil {
				w.ddlTarget(vr.Relation)
			}
		}
		return
	}
	cmd, ok := ddlCommands[kind]
	if !ok {
		st.Verb, st.Command = sqlpolicy.VerbUtility, strings.ToUpper(strings.TrimSuffix(kind, "Stmt"))
		w.unsupported("statement %s is not modelled", kind)
		return
	}
	st.Verb, st.Command = sqlpolicy.VerbDDL, cmd
	w.ddlContent(n)
	switch x := n.Node.(type) {
	case *pg.Node_CreateStmt:
		w.ddlTarget(x.CreateStmt.Relation)
		if x.CreateStmt.Relation.GetRelpersistence() == "t" {
			st.Command = "CREATE TABLE"
		}
	case *pg.Node_CreateForeignTableStmt:
		if x.CreateForeignTableStmt.BaseStmt != nil {
			w.ddlTarget(x.CreateForeignTableStmt.BaseStmt.Relation)
		}
	case *pg.Node_AlterTableStmt:
		w.ddlTarget(x.AlterTableStmt.Relation)
	case *pg.Node_IndexStmt:
		w.ddlTarget(x.IndexStmt.Relation)
	case *pg.Node_ViewStmt:
		w.ddlTarget(x.ViewStmt.View)
	case *pg.Node_RenameStmt:
		w.ddlTarget(x.RenameStmt.Relation)
		if rs := x.RenameStmt; rs.Relation != nil && (isRelationObject(rs.RenameType) || rs.RenameType == pg.ObjectType_OBJECT_COLUMN) {
			w.unsupported(renameRefusal)
		}
	case *pg.Node_AlterObjectSchemaStmt:
		w.ddlTarget(x.AlterObjectSchemaStmt.Relation)
		if as := x.AlterObjectSchemaStmt; as.Relation != nil && isRelationObject(as.ObjectType) {
			w.unsupported(renameRefusal)
		}
	case *pg.Node_AlterOwnerStmt:
		w.ddlTarget(x.AlterOwnerStmt.Relation)
	case *pg.Node_CreateSeqStmt:
		w.ddlTarget(x.CreateSeqStmt.Sequence)
	case *pg.Node_AlterSeqStmt:
		w.ddlTarget(x.AlterSeqStmt.Sequence)
	case *pg.Node_CreateTrigStmt:
		w.ddlTarget(x.CreateTrigStmt.Relation)
	case *pg.Node_CreatePolicyStmt:
		w.ddlTarget(x.CreatePolicyStmt.Table)
	case *pg.Node_AlterPolicyStmt:
		w.ddlTarget(x.AlterPolicyStmt.Table)
	case *pg.Node_RuleStmt:
		w.ddlTarget(x.RuleStmt.Relation)
	case *pg.Node_RefreshMatViewStmt:
		w.ddlTarget(x.RefreshMatViewStmt.Relation)
	case *pg.Node_ClusterStmt:
		w.ddlTarget(x.ClusterStmt.Relation)
	case *pg.Node_ReindexStmt:
		w.ddlTarget(x.ReindexStmt.Relation)
	case *pg.Node_TruncateStmt:
		w.truncateCascade = x.TruncateStmt.Behavior == pg.DropBehavior_DROP_CASCADE
		for _, r := range x.TruncateStmt.Relations {
			w.ddlTarget(r.GetRangeVar())
		}
	case *pg.Node_GrantStmt:
		st.Command = "GRANT"
		if !x.GrantStmt.IsGrant {
			st.Command = "REVOKE"
		}
		if x.GrantStmt.Objtype == pg.ObjectType_OBJECT_TABLE || x.GrantStmt.Objtype == pg.ObjectType_OBJECT_SEQUENCE {
			for _, o := range x.GrantStmt.Objects {
				w.ddlTarget(o.GetRangeVar())
			}
		}
	case *pg.Node_DropStmt:
		st.Command = "DROP " + objectWord(x.DropStmt.RemoveType)
		if isRelationObject(x.DropStmt.RemoveType) {
			for _, o := range x.DropStmt.Objects {
				w.ddlNamed(o.GetList())
			}
		}
	case *pg.Node_CommentStmt:
		if isRelationObject(x.CommentStmt.Objtype) {
			l := x.CommentStmt.Object.GetList()
			w.ddlNamed(l)
			if rv := rangeVarOf(names(l.GetItems())); rv != nil {
				if rel := w.resolveRel(rv.Schemaname, rv.Relname); rel != nil && len(rel.Labels) > 0 {
					w.unsupported(labelCommentRefusal)
				}
			}
		} else if x.CommentStmt.Objtype == pg.ObjectType_OBJECT_COLUMN {
			// A column's comment can carry labels ("keyhole: pii.ssn"):
			// changing it writes that column.
			if l := x.CommentStmt.Object.GetList(); l != nil && len(l.Items) > 1 {
				col, _ := strVal(l.Items[len(l.Items)-1])
				rv := rangeVarOf(names(l.Items[:len(l.Items)-1]))
				w.ddlTargetColumns(rv, []string{col})
				if rv != nil {
					if rel := w.resolveRel(rv.Schemaname, rv.Relname); rel != nil {
						if c := rel.Column(col); c != nil && len(c.Labels) > 0 {
							w.unsupported(labelCommentRefusal)
						}
					}
				}
			}
		}
	case *pg.Node_CreateFunctionStmt:
		if x.CreateFunctionStmt.IsProcedure {
			st.Command = "CREATE PROCEDURE"
		}
		lang := "sql"
		for _, o := range x.CreateFunctionStmt.Options {
			if de := o.GetDefElem(); de != nil && de.Defname == "language" {
				if s, ok := strVal(de.Arg); ok {
					lang = strings.ToLower(s)
				}
			}
		}
		if !trustedLanguages[lang] {
			w.unsupported("functions in language %s run with the server's rights", lang)
		}
	}
}

func isRelationObject(t pg.ObjectType) bool {
	switch t {
	case pg.ObjectType_OBJECT_TABLE, pg.ObjectType_OBJECT_VIEW, pg.ObjectType_OBJECT_MATVIEW,
		pg.ObjectType_OBJECT_FOREIGN_TABLE, pg.ObjectType_OBJECT_SEQUENCE:
		return true
	}
	return false
}

func objectWord(t pg.ObjectType) string {
	s := strings.TrimPrefix(t.String(), "OBJECT_")
	return strings.ReplaceAll(s, "_", " ")
}

// ddlTarget reports the relation a DDL statement changes. DDL on an
// existing relation also writes every column of it (VACUUM and ANALYZE,
// which share this, do not): ALTER TABLE evaluates expressions over any
// column on every row (ALTER COLUMN ... TYPE ... USING, ADD CHECK, index
// expressions), and Postgres's errors quote the value they fail on
// (invalid input syntax for type integer: "078-05-1120"); DROP, TRUNCATE
// and ALTER COLUMN TYPE destroy or rewrite the data; RENAME, SET SCHEMA
// and COMMENT move a column out from under the labels keyed by its name
// or carried by its comment, and GRANT hands it to other roles. So a
// role may change a relation with a labelled column only where it may
// write that column.
func (w *walker) ddlTarget(rv *pg.RangeVar) {
	w.ddlTargetColumns(rv, nil)
}

// ddlTargetColumns is ddlTarget writing only cols (nil: every column).
func (w *walker) ddlTargetColumns(rv *pg.RangeVar, cols []string) {
	if rv == nil {
		return
	}
	r := w.ddlRel(rv)
	w.table(sqlpolicy.TableRef{Rel: r, Mode: sqlpolicy.Write})
	if w.st.Verb != sqlpolicy.VerbDDL {
		return
	}
	rel := w.cat.Relation(r.Schema, r.Name)
	if rel == nil || (rv.Catalogname != "" && rv.Catalogname != w.cat.Database) {
		return
	}
	if cols == nil {
		cols = catalogColumnNames(rel)
	}
	for _, c := range cols {
		w.column(sqlpolicy.ColumnRef{Rel: r, Column: c, Mode: sqlpolicy.Write})
	}
}

// ddlNamed reports a relation named by a list of String nodes.
func (w *walker) ddlNamed(l *pg.List) {
	if l == nil {
		return
	}
	w.ddlTarget(rangeVarOf(names(l.Items)))
}

// rangeVarOf makes a RangeVar of a qualified name (nil if it is not one).
func rangeVarOf(parts []string) *pg.RangeVar {
	switch len(parts) {
	case 1:
		return &pg.RangeVar{Relname: parts[0]}
	case 2:
		return &pg.RangeVar{Schemaname: parts[0], Relname: parts[1]}
	case 3:
		return &pg.RangeVar{Catalogname: parts[0], Schemaname: parts[1], Relname: parts[2]}
	}
	return nil
}

// ddlContent reports what the expressions inside a DDL statement run and
// read. Postgres evaluates them with the caller's rights: a column default
// or ALTER COLUMN ... TYPE ... USING can call query_to_xml or pg_read_file
// and store the result in a column the role may read, a CHECK constraint
// or index expression runs its functions on every row, a trigger runs
// its function on later writes. keyhole's catalog learns of a new
// default, trigger, rule, policy or view definition only when it is read
// again (SIGHUP), so what they will run is decided here:
//   - every function call (and a trigger's function) is reported and
//     classified like a statement's, every user operator's function and
//     every conversion to a type whose checks or cast run functions;
//   - a view's query counts as read now (CREATE [OR REPLACE] VIEW), as if
//     it ran: later reads of the view expand the definition the catalog
//     had when it was loaded;
//   - a subquery is refused: Postgres allows none in defaults, checks,
//     USING, index and generated expressions, and the places that allow
//     one (row security policies, rule actions) apply it to later
//     statements the analyzer would decide without it;
//   - a rule is refused: it rewrites later statements on the relation
//     (an ON SELECT rule turns an empty table into a view).
//
// A column an expression names belongs to the DDL's own relation, whose
// every column ddlTarget writes. Every other relation a DDL statement
// names is changed by it as well and written the same way: ATTACH
// PARTITION makes it a partition whose rows the parent's scans return
// (under the parent's name, which the catalog knows without the
// partition and so without its labels), INHERIT, INHERITS and PARTITION
// OF make it a parent, a constraint trigger's FROM and CREATE
// STATISTICS change it. Only a foreign key's referenced table is read
// (its referenced columns: inserting a value is an oracle on them), and
// LIKE copies a definition without data.
func (w *walker) ddlContent(n *pg.Node) {
	switch x := n.Node.(type) {
	case *pg.Node_ViewStmt:
		w.readShape(nil, w.query(x.ViewStmt.Query, nil))
		return
	case *pg.Node_RuleStmt:
		w.unsupported("CREATE RULE rewrites later statements on %s, which keyhole would decide without the rule", x.RuleStmt.GetRelation().GetRelname())
		return
	case *pg.Node_CreateTrigStmt:
		w.ddlFunc(&pg.FuncCall{Funcname: x.CreateTrigStmt.Funcname})
	case *pg.Node_CreateForeignTableStmt:
		// A foreign table reads what its wrapper's options name:
		// file_fdw's filename (a server file) or program (a shell
		// command run as the server), postgres_fdw's remote table.
		w.unsupported("a foreign table reads what its options name (a server file, a program's output, another server's table)")
	case *pg.Node_AlterTableStmt:
		for _, c := range x.AlterTableStmt.Cmds {
			switch c.GetAlterTableCmd().GetSubtype() {
			case pg.AlterTableType_AT_GenericOptions, pg.AlterTableType_AT_AlterColumnGenericOptions:
				// OPTIONS (...) of a foreign table or its columns.
				w.unsupported("changing a foreign table's options changes what it reads (a server file, a program's output, another server's table)")
			case pg.AlterTableType_AT_AttachPartition, pg.AlterTableType_AT_AddInherit:
				// The parent's scans then return the existing
				// relation's rows, under the parent's name, grants and
				// labels as the catalog knows them until it is read
				// again.
				w.unsupported("ATTACH PARTITION and INHERIT make a parent's scans return another relation's rows, which keyhole's catalog does not know until it is read again")
			}
		}
	}
	// The relation whose columns the statement's expressions name.
	var exprRel *pg.RangeVar
	switch x := n.Node.(type) {
	case *pg.Node_AlterTableStmt:
		exprRel = x.AlterTableStmt.Relation
	case *pg.Node_IndexStmt:
		exprRel = x.IndexStmt.Relation
	case *pg.Node_CreatePolicyStmt:
		exprRel = x.CreatePolicyStmt.Table
	case *pg.Node_AlterPolicyStmt:
		exprRel = x.AlterPolicyStmt.Table
	case *pg.Node_CreateTrigStmt:
		exprRel = x.CreateTrigStmt.Relation
	}
	var target *catalog.Relation
	if exprRel != nil {
		target = w.resolveRel(exprRel.Schemaname, exprRel.Relname)
	}
	notChanged := map[*pg.RangeVar]bool{}
	eachMessage(n.ProtoReflect(), func(m protoreflect.Message) {
		switch x := m.Interface().(type) {
		case *pg.ColumnRef:
			if target != nil {
				w.ddlColumnRef(target, x)
			}
		case *pg.RangeVar:
			if !notChanged[x] {
				w.ddlTarget(x)
			}
		case *pg.TableLikeClause:
			notChanged[x.Relation] = true
		case *pg.FuncCall:
			w.ddlFunc(x)
		case *pg.SubLink:
			w.unsupported("subquery in %s", w.st.Command)
		case *pg.SelectStmt, *pg.InsertStmt, *pg.UpdateStmt, *pg.DeleteStmt, *pg.MergeStmt:
			w.unsupported("query in %s", w.st.Command)
		case *pg.A_Expr:
			w.untypedOperator(x.Name)
			w.operatorName(x.Name)
		case *pg.TypeCast:
			if x.TypeName != nil {
				w.castFunctions(x.TypeName)
			}
		case *pg.ColumnDef:
			if x.TypeName != nil {
				w.castFunctions(x.TypeName)
			}
		case *pg.Constraint:
			if x.Pktable != nil {
				notChanged[x.Pktable] = true
				w.ddlReferences(x.Pktable, names(x.PkAttrs))
			}
		}
	})
}

// ddlFunc reports a function a DDL statement calls.
func (w *walker) ddlFunc(fc *pg.FuncCall) {
	schema, name, ok := funcName(fc.Funcname)
	if !ok {
		w.unsupported("function name of an unexpected form")
		return
	}
	f := w.resolveFunc(schema, name)
	if f == nil {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownFunction,
			Detail: fmt.Sprintf("function %s does not exist", qualified(schema, name)), Func: qualified(schema, name)})
	}
	w.reportFunc(schema, name, f, fc, newScope(nil))
}

// ddlReferences reports the columns a foreign key references as read
// (every column when it names none: the primary key).
func (w *walker) ddlReferences(rv *pg.RangeVar, cols []string) {
	rel := w.resolveRel(rv.Schemaname, rv.Relname)
	if rel == nil {
		w.problem(sqlpolicy.Problem{Code: sqlpolicy.ProblemUnknownTable, Rel: sqlpolicy.Rel{Schema: rv.Schemaname, Name: rv.Relname},
			Detail: fmt.Sprintf("relation %q does not exist", qualified(rv.Schemaname, rv.Relname))})
		return
	}
	r := sqlpolicy.Rel{Schema: rel.Schema, Name: rel.Name}
	w.table(sqlpolicy.TableRef{Rel: r, Mode: sqlpolicy.Read})
	if len(cols) == 0 {
		cols = catalogColumnNames(rel)
	}
	for _, c := range cols {
		w.column(sqlpolicy.ColumnRef{Rel: r, Column: c, Mode: sqlpolicy.Read})
	}
}

// labelCommentRefusal refuses changing a comment that carries keyhole
// labels ("keyhole: pii.ssn"): the labels bind every role, and the
// catalog is read again after DDL, so a role that may write the column
// (one whose deny_labels do not cover the label) would take it away from
// the roles that may not read it.
const labelCommentRefusal = "the comment carries keyhole labels, which apply to every role; labels are changed by the database's owners outside keyhole"

// renameRefusal refuses renaming a relation or a column, or moving a
// relation to another schema. keyhole's policy, its labels and its
// grants name relations and columns, and the catalog is read again after
// DDL: a rename moves the data under the rules of the new name (ALTER
// TABLE orders RENAME TO o2, then ALTER TABLE audit_log RENAME TO orders,
// and SELECT * FROM orders reads audit_log under orders' select grant; a
// column renamed onto a granted column's name is read under that grant),
// and a policy label on the old name no longer applies.
const renameRefusal = "renaming or moving a relation or a column would put its data under the policy's rules for another name; rename it outside keyhole (a migration), then reload keyhole"

// ddlColumnRef reports the column of rel an expression in DDL names as
// read: ALTER COLUMN a TYPE ... USING b copies b into a, a CHECK or an
// index expression over b succeeds or fails by b's values, a trigger's
// WHEN reads OLD.b and NEW.b. A name that is not one of rel's columns (a
// whole-row reference, *) reads every column.
func (w *walker) ddlColumnRef(rel *catalog.Relation, cr *pg.ColumnRef) {
	r := sqlpolicy.Rel{Schema: rel.Schema, Name: rel.Name}
	var cols []string
	if len(cr.Fields) > 0 {
		if name, ok := strVal(cr.Fields[len(cr.Fields)-1]); ok && rel.Column(name) != nil {
			cols = []string{name}
		}
	}
	if cols == nil {
		cols = catalogColumnNames(rel)
	}
	for _, c := range cols {
		w.column(sqlpolicy.ColumnRef{Rel: r, Column: c, Mode: sqlpolicy.Read})
	}
}
