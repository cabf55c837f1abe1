package pganalyze

import (
	pg "github.com/pganalyze/pg_query_go/v6"
)

// The name Postgres gives an unnamed select-list column decides what
// outer references to a derived table, CTE or NATURAL join bind to, so
// it follows FigureColnameInternal (parse_target.c) exactly.

// nameSubLink records the output name of a scalar subquery: Postgres
// names the column after the subquery's first output column.
func (w *walker) nameSubLink(sl *pg.SubLink, sh shape) {
	if w.subLinkNames == nil {
		w.subLinkNames = make(map[*pg.SubLink]subLinkName)
	}
	var n subLinkName
	if len(sh.cols) > 0 && sh.cols[0].kind == colNamed {
		n = subLinkName{name: sh.cols[0].name, known: true}
	}
	w.subLinkNames[sl] = n
}

type subLinkName struct {
	name  string
	known bool
}

// figureColname returns the name Postgres gives an unnamed select-list
// expression, and false when the analyzer cannot tell (a scalar subquery
// whose first column it cannot name). n must have been walked already.
func (w *walker) figureColname(n *pg.Node) (string, bool) {
	name, strength, known := w.colnameInternal(n)
	if !known {
		return "", false
	}
	if strength == 0 {
		return "?column?", true
	}
	return name, true
}

// colnameInternal is FigureColnameInternal: strength 2 is a good name, 1
// a second-best one, 0 none.
func (w *walker) colnameInternal(n *pg.Node) (name string, strength int, known bool) {
	if n == nil {
		return "", 0, true
	}
	switch x := n.Node.(type) {
	case *pg.Node_ColumnRef:
		for _, f := range x.ColumnRef.Fields {
			if s, ok := strVal(f); ok {
				name = s
			}
		}
		if name != "" {
			return name, 2, true
		}
	case *pg.Node_AIndirection:
		for _, f := range x.AIndirection.Indirection {
			if s, ok := strVal(f); ok {
				name = s
			}
		}
		if name != "" {
			return name, 2, true
		}
		return w.colnameInternal(x.AIndirection.Arg)
	case *pg.Node_FuncCall:
		f := x.FuncCall.Funcname
		if len(f) > 0 {
			if s, ok := strVal(f[len(f)-1]); ok {
				return s, 2, true
			}
		}
	case *pg.Node_AExpr:
		if x.AExpr.Kind == pg.A_Expr_Kind_AEXPR_NULLIF {
			return "nullif", 2, true
		}
	case *pg.Node_TypeCast:
		name, strength, known = w.colnameInternal(x.TypeCast.Arg)
		if known && strength <= 1 {
			if tn := x.TypeCast.TypeName; tn != nil && len(tn.Names) > 0 {
				if s, ok := strVal(tn.Names[len(tn.Names)-1]); ok {
					return s, 1, true
				}
			}
		}
		return name, strength, known
	case *pg.Node_CollateClause:
		return w.colnameInternal(x.CollateClause.Arg)
	case *pg.Node_GroupingFunc:
		return "grouping", 2, true
	case *pg.Node_SubLink:
		switch x.SubLink.SubLinkType {
		case pg.SubLinkType_EXISTS_SUBLINK:
			return "exists", 2, true
		case pg.SubLinkType_ARRAY_SUBLINK:
			return "array", 2, true
		case pg.SubLinkType_EXPR_SUBLINK:
			sn, ok := w.subLinkNames[x.SubLink]
			if !ok || !sn.known {
				return "", 0, false
			}
			return sn.name, 2, true
		}
	case *pg.Node_CaseExpr:
		name, strength, known = w.colnameInternal(x.CaseExpr.Defresult)
		if known && strength <= 1 {
			return "case", 1, true
		}
		return name, strength, known
	case *pg.Node_AArrayExpr:
		return "array", 2, true
	case *pg.Node_RowExpr:
		return "row", 2, true
	case *pg.Node_CoalesceExpr:
		return "coalesce", 2, true
	case *pg.Node_MinMaxExpr:
		if x.MinMaxExpr.Op == pg.MinMaxOp_IS_GREATEST {
			return "greatest", 2, true
		}
		return "least", 2, true
	case *pg.Node_SqlvalueFunction:
		if s := sqlValueName(x.SqlvalueFunction.Op); s != "" {
			return s, 2, true
		}
	case *pg.Node_XmlExpr:
		if s := xmlExprName(x.XmlExpr.Op); s != "" {
			return s, 2, true
		}
	case *pg.Node_XmlSerialize:
		return "xmlserialize", 2, true
	}
	return "", 0, true
}

func sqlValueName(op pg.SQLValueFunctionOp) string {
	switch op {
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_DATE:
		return "current_date"
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_TIME, pg.SQLValueFunctionOp_SVFOP_CURRENT_TIME_N:
		return "current_time"
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP, pg.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP_N:
		return "current_timestamp"
	case pg.SQLValueFunctionOp_SVFOP_LOCALTIME, pg.SQLValueFunctionOp_SVFOP_LOCALTIME_N:
		return "localtime"
	case pg.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP, pg.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP_N:
		return "localtimestamp"
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_ROLE:
		return "current_role"
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_USER:
		return "current_user"
	case pg.SQLValueFunctionOp_SVFOP_USER:
		return "user"
	case pg.SQLValueFunctionOp_SVFOP_SESSION_USER:
		return "session_user"
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_CATALOG:
		return "current_catalog"
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_SCHEMA:
		return "current_schema"
	}
	return ""
}

func xmlExprName(op pg.XmlExprOp) string {
	switch op {
	case pg.XmlExprOp_IS_XMLCONCAT:
		return "xmlconcat"
	case pg.XmlExprOp_IS_XMLELEMENT:
		return "xmlelement"
	case pg.XmlExprOp_IS_XMLFOREST:
		return "xmlforest"
	case pg.XmlExprOp_IS_XMLPARSE:
		return "xmlparse"
	case pg.XmlExprOp_IS_XMLPI:
		return "xmlpi"
	case pg.XmlExprOp_IS_XMLROOT:
		return "xmlroot"
	case pg.XmlExprOp_IS_XMLSERIALIZE:
		return "xmlserialize"
	}
	return ""
}
