package pgparse

import (
	"slices"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// Normalize returns what pg.Normalize returns for sql, computed from
// tree, sql's parse (by Parse), instead of parsing sql again. It covers
// SELECT, INSERT, UPDATE, DELETE and EXPLAIN of those, over the nodes
// listed in normWalker.node; for anything else, and wherever libpg_query's
// answer depends on more than the constants' locations (a GROUP BY item
// holding a constant, two constants at one place, a U&” string), it
// reports false and the caller asks pg.Normalize. It is tested equal to
// pg.Normalize on the whole corpus and fuzzed against it.
//
// pg_query_normalize records the location of every A_Const its walker
// (const_record_walker over raw_expression_tree_walker) reaches, numbers
// them $n in walk order after the highest $n the text already uses, and
// replaces each constant's token in the text, found by Postgres's lexer;
// a leading '-' goes with the number. ORDER BY and GROUP BY integers and
// type modifiers stay, since they change what the statement means.
func Normalize(sql string, tree *pg.ParseResult) (string, bool) {
	if strings.IndexByte(sql, 0) >= 0 {
		return "", false // libpg_query sees the text up to the NUL
	}
	var buf [32]constLoc
	w := normWalker{locs: buf[:0]}
	for _, raw := range tree.GetStmts() {
		if !w.stmt(raw.GetStmt()) {
			return "", false
		}
	}
	if len(w.locs) == 0 {
		return sql, true
	}
	slices.SortStableFunc(w.locs, func(a, b constLoc) int { return int(a.loc) - int(b.loc) })
	var b strings.Builder
	b.Grow(len(sql) + 4*len(w.locs))
	last := 0
	for i, c := range w.locs {
		loc := int(c.loc)
		if loc < last || (i > 0 && loc == int(w.locs[i-1].loc)) || loc >= len(sql) {
			return "", false
		}
		n := constLen(sql, loc)
		if n <= 0 {
			return "", false
		}
		b.WriteString(sql[last:loc])
		b.WriteByte('$')
		b.WriteString(strconv.FormatInt(int64(w.maxParam)+int64(c.id), 10))
		last = loc + n
	}
	b.WriteString(sql[last:])
	return b.String(), true
}

type constLoc struct {
	loc int32
	id  int32 // 1-based walk order
}

type normWalker struct {
	locs     []constLoc
	maxParam int32
	bad      bool
}

func (w *normWalker) record(loc int32) {
	if loc < 0 {
		return
	}
	w.locs = append(w.locs, constLoc{loc: loc, id: int32(len(w.locs) + 1)})
}

// stmt walks one statement the way const_record_walker does.
func (w *normWalker) stmt(n *pg.Node) bool {
	switch s := n.GetNode().(type) {
	case *pg.Node_SelectStmt:
		w.sel(s.SelectStmt)
	case *pg.Node_InsertStmt:
		w.node(n)
	case *pg.Node_UpdateStmt:
		w.node(n)
	case *pg.Node_DeleteStmt:
		w.node(n)
	case *pg.Node_ExplainStmt:
		return w.stmt(s.ExplainStmt.GetQuery())
	default:
		return false
	}
	return !w.bad
}

func (w *normWalker) list(l []*pg.Node) {
	for _, n := range l {
		w.node(n)
	}
}

// sel is const_record_walker's SelectStmt case.
func (w *normWalker) sel(s *pg.SelectStmt) {
	if s == nil {
		return
	}
	w.list(s.DistinctClause)
	if s.IntoClause != nil {
		w.bad = true // IntoClause's rel and options: not modelled
		return
	}
	w.list(s.TargetList)
	w.list(s.FromClause)
	w.node(s.WhereClause)
	for _, g := range s.GroupClause {
		if isIntConst(g) {
			continue
		}
		// libpg_query gives a GROUP BY item's constants the numbers of
		// the target list item it fingerprints equal to: not modelled.
		before := len(w.locs)
		w.node(g)
		if len(w.locs) != before {
			w.bad = true
			return
		}
	}
	for _, o := range s.SortClause {
		if sb := o.GetSortBy(); sb != nil && isIntConst(sb.Node) {
			continue
		}
		w.node(o)
	}
	w.node(s.HavingClause)
	w.list(s.WindowClause)
	w.list(s.ValuesLists)
	w.node(s.LimitOffset)
	w.node(s.LimitCount)
	w.list(s.LockingClause)
	if s.WithClause != nil {
		w.with(s.WithClause)
	}
	w.sel(s.Larg)
	w.sel(s.Rarg)
}

func isIntConst(n *pg.Node) bool {
	c := n.GetAConst()
	return c != nil && c.GetIval() != nil
}

func (w *normWalker) with(c *pg.WithClause) {
	for _, cte := range c.Ctes {
		e := cte.GetCommonTableExpr()
		if e == nil {
			w.bad = true
			return
		}
		w.node(e.Ctequery)
	}
}

func (w *normWalker) windowDef(d *pg.WindowDef) {
	if d == nil {
		return
	}
	w.list(d.PartitionClause)
	w.list(d.OrderClause)
	w.node(d.StartOffset)
	w.node(d.EndOffset)
}

// node is const_record_walker's default case: raw_expression_tree_walker's
// children of n, for the node types listed; any other type sets bad.
func (w *normWalker) node(n *pg.Node) {
	if n == nil || w.bad {
		return
	}
	switch x := n.Node.(type) {
	case nil:
	case *pg.Node_AConst:
		w.record(x.AConst.Location)
	case *pg.Node_ParamRef:
		w.maxParam = max(w.maxParam, x.ParamRef.Number)
	case *pg.Node_TypeName:
		// Type modifiers and array bounds stay.
	case *pg.Node_SelectStmt:
		w.sel(x.SelectStmt)
	case *pg.Node_ColumnRef, *pg.Node_AStar, *pg.Node_String_, *pg.Node_Integer, *pg.Node_Float,
		*pg.Node_Boolean, *pg.Node_BitString, *pg.Node_SetToDefault, *pg.Node_SqlvalueFunction,
		*pg.Node_Alias:
	case *pg.Node_List:
		w.list(x.List.Items)
	case *pg.Node_RangeVar:
		// Only its alias, which holds no constants.
	case *pg.Node_ResTarget:
		w.list(x.ResTarget.Indirection)
		w.node(x.ResTarget.Val)
	case *pg.Node_AExpr:
		w.node(x.AExpr.Lexpr)
		w.node(x.AExpr.Rexpr)
	case *pg.Node_BoolExpr:
		w.list(x.BoolExpr.Args)
	case *pg.Node_NullTest:
		w.node(x.NullTest.Arg)
	case *pg.Node_BooleanTest:
		w.node(x.BooleanTest.Arg)
	case *pg.Node_TypeCast:
		w.node(x.TypeCast.Arg)
	case *pg.Node_CollateClause:
		w.node(x.CollateClause.Arg)
	case *pg.Node_FuncCall:
		f := x.FuncCall
		w.list(f.Args)
		w.list(f.AggOrder)
		w.node(f.AggFilter)
		w.windowDef(f.Over)
	case *pg.Node_NamedArgExpr:
		w.node(x.NamedArgExpr.Arg)
	case *pg.Node_SortBy:
		w.node(x.SortBy.Node)
	case *pg.Node_WindowDef:
		w.windowDef(x.WindowDef)
	case *pg.Node_SubLink:
		w.node(x.SubLink.Testexpr)
		w.node(x.SubLink.Subselect)
	case *pg.Node_CaseExpr:
		c := x.CaseExpr
		w.node(c.Arg)
		for _, a := range c.Args {
			when := a.GetCaseWhen()
			if when == nil {
				w.bad = true
				return
			}
			w.node(when.Expr)
			w.node(when.Result)
		}
		w.node(c.Defresult)
	case *pg.Node_RowExpr:
		w.list(x.RowExpr.Args)
	case *pg.Node_CoalesceExpr:
		w.list(x.CoalesceExpr.Args)
	case *pg.Node_MinMaxExpr:
		w.list(x.MinMaxExpr.Args)
	case *pg.Node_AIndices:
		w.node(x.AIndices.Lidx)
		w.node(x.AIndices.Uidx)
	case *pg.Node_AIndirection:
		w.node(x.AIndirection.Arg)
		w.list(x.AIndirection.Indirection)
	case *pg.Node_AArrayExpr:
		w.list(x.AArrayExpr.Elements)
	case *pg.Node_JoinExpr:
		w.node(x.JoinExpr.Larg)
		w.node(x.JoinExpr.Rarg)
		w.node(x.JoinExpr.Quals)
	case *pg.Node_RangeFunction:
		f := x.RangeFunction
		if len(f.Coldeflist) > 0 {
			w.bad = true // ColumnDef: not modelled
			return
		}
		for _, item := range f.Functions {
			l := item.GetList()
			if l == nil || len(l.Items) != 2 || l.Items[1].GetNode() != nil {
				w.bad = true
				return
			}
			w.node(l.Items[0])
		}
	case *pg.Node_RangeSubselect:
		w.node(x.RangeSubselect.Subquery)
	case *pg.Node_GroupingSet:
		w.list(x.GroupingSet.Content)
	case *pg.Node_GroupingFunc:
		w.list(x.GroupingFunc.Args)
	case *pg.Node_MultiAssignRef:
		w.node(x.MultiAssignRef.Source)
	case *pg.Node_LockingClause:
		// Its locked relations are RangeVars: nothing to record.
	case *pg.Node_InsertStmt:
		s := x.InsertStmt
		w.list(s.Cols)
		w.node(s.SelectStmt)
		if oc := s.OnConflictClause; oc != nil {
			if inf := oc.Infer; inf != nil {
				for _, e := range inf.IndexElems {
					ie := e.GetIndexElem()
					if ie == nil {
						w.bad = true
						return
					}
					w.node(ie.Expr)
				}
				w.node(inf.WhereClause)
			}
			w.list(oc.TargetList)
			w.node(oc.WhereClause)
		}
		w.list(s.ReturningList)
		if s.WithClause != nil {
			w.with(s.WithClause)
		}
	case *pg.Node_UpdateStmt:
		s := x.UpdateStmt
		w.list(s.TargetList)
		w.node(s.WhereClause)
		w.list(s.FromClause)
		w.list(s.ReturningList)
		if s.WithClause != nil {
			w.with(s.WithClause)
		}
	case *pg.Node_DeleteStmt:
		s := x.DeleteStmt
		w.list(s.UsingClause)
		w.node(s.WhereClause)
		w.list(s.ReturningList)
		if s.WithClause != nil {
			w.with(s.WithClause)
		}
	default:
		w.bad = true
	}
}

// constLen returns the length of the constant at sql[loc:] as
// fill_in_constant_lengths measures it with Postgres's lexer: a number
// (with the '-' and the spaces after it, for a negative one), a quoted string with its continuations, a dollar-quoted string,
// or a keyword (TRUE, FALSE, NULL). It returns 0 for anything else, or anything it is
// unsure of.
func constLen(sql string, loc int) int {
	i := loc
	if sql[i] == '-' {
		i++
		// Whitespace only: libpg_query measures a comment here oddly.
		for i < len(sql) && isSpace(sql[i]) {
			i++
		}
		if i >= len(sql) || !(isDigit(sql[i]) || sql[i] == '.') {
			return 0
		}
	}
	c := sql[i]
	var end int
	switch {
	case isDigit(c) || c == '.':
		end = numberEnd(sql, i)
	case c == '\'':
		end = quotedEnd(sql, i+1, false)
	case (c == 'e' || c == 'E') && i+1 < len(sql) && sql[i+1] == '\'':
		end = quotedEnd(sql, i+2, true)
	case (c == 'b' || c == 'B' || c == 'x' || c == 'X' || c == 'n' || c == 'N') && i+1 < len(sql) && sql[i+1] == '\'':
		end = quotedEnd(sql, i+2, false)
	case c == '$':
		end = dollarEnd(sql, i)
	case (c == 'u' || c == 'U') && i+1 < len(sql) && sql[i+1] == '&':
		// U&'...' may be followed by UESCAPE: left to libpg_query.
	case isIdentStart(c):
		// TRUE, FALSE, NULL, the ALL of LIMIT ALL: a keyword token.
		end = i
		for end < len(sql) && isIdentByte(sql[end]) {
			end++
		}
	}
	if end <= i {
		return 0
	}
	return end - loc
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80
}

func isIdentByte(c byte) bool { return isIdentStart(c) || isDigit(c) || c == '$' }

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// numberEnd returns the end of the numeric literal at sql[i:], or 0 when
// it is not one the lexer would return whole.
func numberEnd(sql string, i int) int {
	j := i
	if sql[j] == '0' && j+1 < len(sql) {
		switch sql[j+1] {
		case 'x', 'X', 'o', 'O', 'b', 'B':
			j += 2
			for j < len(sql) && (isIdentByte(sql[j]) && sql[j] != '$') {
				j++
			}
			return j // the parser accepted it: it is one token
		}
	}
	digits := func() {
		for j < len(sql) && (isDigit(sql[j]) || sql[j] == '_') {
			j++
		}
	}
	digits()
	if j < len(sql) && sql[j] == '.' {
		if j+1 < len(sql) && sql[j+1] == '.' {
			return j // 1..2: the integer alone
		}
		j++
		digits()
	}
	if j < len(sql) && (sql[j] == 'e' || sql[j] == 'E') {
		k := j + 1
		if k < len(sql) && (sql[k] == '+' || sql[k] == '-') {
			k++
		}
		if k < len(sql) && isDigit(sql[k]) {
			j = k
			digits()
		}
	}
	if j < len(sql) && isIdentByte(sql[j]) {
		return 0
	}
	return j
}

// quotedEnd returns the end of the quoted string whose body starts at i,
// or 0. A string continued on a later line ('a'\n'b') is one token to the
// lexer: such texts report 0.
func quotedEnd(sql string, i int, escapes bool) int {
	for i < len(sql) {
		switch sql[i] {
		case '\\':
			if escapes {
				i += 2
				continue
			}
		case '\'':
			if i+1 < len(sql) && sql[i+1] == '\'' {
				i += 2
				continue
			}
			end := i + 1
			j := end
			for j < len(sql) && (sql[j] == ' ' || sql[j] == '\t' || sql[j] == '\n' || sql[j] == '\r' || sql[j] == '\f' || sql[j] == '\v' ||
				(sql[j] == '-' && j+1 < len(sql) && sql[j+1] == '-')) {
				if sql[j] == '-' {
					return 0
				}
				j++
			}
			if j < len(sql) && sql[j] == '\'' {
				return 0
			}
			return end
		}
		i++
	}
	return 0
}

// dollarEnd returns the end of the dollar-quoted string at sql[i:], or 0.
func dollarEnd(sql string, i int) int {
	j := i + 1
	for j < len(sql) && sql[j] != '$' {
		if !(isIdentStart(sql[j]) || (j > i+1 && isDigit(sql[j]))) {
			return 0
		}
		j++
	}
	if j >= len(sql) {
		return 0
	}
	tag := sql[i : j+1]
	k := strings.Index(sql[j+1:], tag)
	if k < 0 {
		return 0
	}
	return j + 1 + k + len(tag)
}
