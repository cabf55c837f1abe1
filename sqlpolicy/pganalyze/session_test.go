package pganalyze_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	sp "github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

func setPath(v string) sp.Statement {
	return sp.Statement{Verb: sp.VerbSet, Command: "SET", Settings: []sp.Setting{{Name: "search_path", Value: v}}}
}

func setLocalPath(v string) sp.Statement {
	return sp.Statement{Verb: sp.VerbSet, Command: "SET", Settings: []sp.Setting{{Name: "search_path", Value: v, Local: true}}}
}

func resetPath() sp.Statement {
	return sp.Statement{Verb: sp.VerbSet, Command: "RESET", Settings: []sp.Setting{{Name: "search_path", Reset: true}}}
}

func txStmt(cmd string, fx sp.TxEffect) sp.Statement {
	return sp.Statement{Verb: sp.VerbTransaction, Command: cmd, Tx: fx}
}

// TestSessionSearchPaths checks which search paths a session keeps as
// possibly in effect after texts that ran (each step is one Apply).
func TestSessionSearchPaths(t *testing.T) {
	t.Parallel()
	ip := []string{"internal", "public"}
	pub := []string{"public"}
	tests := []struct {
		name   string
		texts  [][]sp.Statement
		uncomm bool       // apply with ApplyUncommitted
		path   []string   // SearchPath
		paths  [][]string // SearchPaths (nil: SearchPath alone)
		lost   bool
		gen0   bool // generation 0
	}{
		{name: "initial", gen0: true},
		{name: "set sticks outside a block", texts: [][]sp.Statement{{setPath("internal, public")}}, path: ip},
		{name: "set then reset", texts: [][]sp.Statement{{setPath("internal, public")}, {resetPath()}}, gen0: true},
		{name: "set then set", texts: [][]sp.Statement{{setPath("internal, public")}, {setPath("public")}}, path: pub},
		{name: "set inside a block", texts: [][]sp.Statement{{setPath("internal, public")}, {txStmt("BEGIN", sp.TxBegin)}, {setPath("public")}},
			path: pub, paths: [][]string{pub, ip}},
		{name: "rolled back", texts: [][]sp.Statement{{setPath("internal, public")}, {txStmt("BEGIN", sp.TxBegin)}, {setPath("public")},
			{txStmt("ROLLBACK", sp.TxEnd)}},
			path: pub, paths: [][]string{pub, ip}},
		{name: "after the block a set sticks again", texts: [][]sp.Statement{{setPath("internal, public")}, {txStmt("BEGIN", sp.TxBegin)},
			{setPath("public")}, {txStmt("ROLLBACK", sp.TxEnd)}, {setPath("public")}},
			path: pub},
		{name: "rollback to savepoint keeps the block open", texts: [][]sp.Statement{{txStmt("BEGIN", sp.TxBegin)},
			{txStmt("ROLLBACK", sp.TxRollbackTo)}, {setPath("public")}},
			path: pub, paths: [][]string{pub, nil}},
		{name: "set local", texts: [][]sp.Statement{{txStmt("BEGIN", sp.TxBegin)}, {setLocalPath("internal, public")}},
			paths: [][]string{nil, ip}},
		{name: "set local outside a block", texts: [][]sp.Statement{{setLocalPath("internal, public")}},
			paths: [][]string{nil, ip}},
		{name: "one text with begin and set", texts: [][]sp.Statement{{txStmt("BEGIN", sp.TxBegin), setPath("public"), txStmt("COMMIT", sp.TxEnd)}},
			path: pub, paths: [][]string{pub, nil}},
		{name: "commit and chain keeps a block open", texts: [][]sp.Statement{{txStmt("BEGIN", sp.TxBegin)}, {txStmt("COMMIT", sp.TxBegin)},
			{setPath("public")}},
			path: pub, paths: [][]string{pub, nil}},
		{name: "uncommitted (pipeline)", texts: [][]sp.Statement{{setPath("internal, public")}, {resetPath()}}, uncomm: true,
			paths: [][]string{nil, ip}},
		{name: "unknown value", texts: [][]sp.Statement{{txStmt("BEGIN", sp.TxBegin)},
			{{Verb: sp.VerbSet, Settings: []sp.Setting{{Name: "search_path", Unknown: true}}}}},
			path: []string{}, paths: [][]string{{}, nil}, lost: true},
		{name: "unknown value that sticks", texts: [][]sp.Statement{{{Verb: sp.VerbSet, Settings: []sp.Setting{{Name: "search_path", Unknown: true}}}}},
			path: []string{}, lost: true},
		{name: "empty path is not the login's", texts: [][]sp.Statement{{setPath("")}}, path: []string{}},
		{name: "too many candidates", texts: [][]sp.Statement{{txStmt("BEGIN", sp.TxBegin)},
			{setPath("a")}, {setPath("b")}, {setPath("c")}, {setPath("d")}, {setPath("e")}, {setPath("f")}, {setPath("g")},
			{setPath("h")}, {setPath("i")}},
			path: []string{"i"}, paths: [][]string{{"g"}, nil, {"a"}, {"b"}, {"c"}, {"d"}, {"e"}, {"f"}}, lost: true},
		{name: "show is no change", texts: [][]sp.Statement{{{Verb: sp.VerbSet, Command: "SHOW", Settings: []sp.Setting{{Name: "search_path", Show: true}}}}},
			gen0: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := &pganalyze.Session{}
			for _, text := range tc.texts {
				a := &sp.Access{Statements: text}
				if tc.uncomm {
					s.ApplyUncommitted(a)
				} else {
					s.Apply(a)
				}
			}
			assert.Equal(t, tc.path, s.SearchPath, "SearchPath")
			paths, ok := s.SearchPaths()
			assert.Equal(t, tc.paths, paths, "SearchPaths")
			assert.Equal(t, !tc.lost, ok, "SearchPaths ok")
			assert.Equal(t, tc.gen0, s.Generation() == 0, "generation 0")
		})
	}
}

// TestSessionGenerations: every state change gets a new, process-unique
// generation, so the decision cache never answers for another state.
func TestSessionGenerations(t *testing.T) {
	t.Parallel()
	s := &pganalyze.Session{}
	seen := map[uint64]bool{0: true}
	for _, st := range []sp.Statement{txStmt("BEGIN", sp.TxBegin), setPath("a"), setPath("b"), txStmt("ROLLBACK", sp.TxEnd), setPath("c")} {
		before := s.Generation()
		s.Apply(&sp.Access{Statements: []sp.Statement{st}})
		if st.Tx != sp.TxNone {
			assert.Equal(t, before, s.Generation(), "transaction control alone changes no resolution")
			continue
		}
		assert.False(t, seen[s.Generation()], "generation %d reused", s.Generation())
		seen[s.Generation()] = true
	}
}

// TestSessionPreparedCurrent: a statement prepared before a search_path
// change is no longer current (Postgres resolves its names again), and a
// search_path change that EXECUTE runs counts like one made directly.
func TestSessionPreparedCurrent(t *testing.T) {
	t.Parallel()
	s := &pganalyze.Session{}
	inner := &sp.Statement{Verb: sp.VerbSelect, Command: "SELECT"}
	s.Apply(&sp.Access{Statements: []sp.Statement{{Verb: sp.VerbPrepare, PrepareName: "q", Prepared: inner}}})
	assert.True(t, s.PreparedCurrent("q"))
	assert.True(t, s.PreparedCurrent("never-prepared"))

	setter := &sp.Statement{Verb: sp.VerbSelect, Settings: []sp.Setting{{Name: "search_path", Value: "internal,public"}}}
	s.Apply(&sp.Access{Statements: []sp.Statement{{Verb: sp.VerbPrepare, PrepareName: "set", Prepared: setter}}})
	assert.Nil(t, s.SearchPath, "PREPARE does not run the statement")
	assert.True(t, s.PreparedCurrent("q"))

	s.Apply(&sp.Access{Statements: []sp.Statement{{Verb: sp.VerbExecute, ExecuteName: "set", Prepared: setter}}})
	assert.Equal(t, []string{"internal", "public"}, s.SearchPath, "EXECUTE runs the set_config")
	assert.False(t, s.PreparedCurrent("q"))
	assert.False(t, s.PreparedCurrent("set"))

	s.Apply(&sp.Access{Statements: []sp.Statement{{Verb: sp.VerbPrepare, PrepareName: "q", Prepared: inner}}})
	assert.True(t, s.PreparedCurrent("q"), "prepared again")
}

// TestSessionPipelinedSet: a client pipelines simple Queries, so a text
// is decided (and noted) while earlier ones still run. When an earlier
// text's search_path change is applied and sticks, what the later texts
// may still set stays a candidate: the later SET runs after it.
func TestSessionPipelinedSet(t *testing.T) {
	t.Parallel()
	pub, hr := []string{"public"}, []string{"hr", "public"}
	first := &sp.Access{Statements: []sp.Statement{setPath("public")}}
	second := &sp.Access{Statements: []sp.Statement{setPath("hr, public")}}
	unknown := &sp.Access{Statements: []sp.Statement{{Verb: sp.VerbSet, Settings: []sp.Setting{{Name: "search_path", Unknown: true}}}}}

	s := &pganalyze.Session{}
	s.Note(first)
	m1 := s.NoteMark()
	s.Note(second)
	m2 := s.NoteMark()
	s.ApplyMarked(first, m1)
	paths, ok := s.SearchPaths()
	assert.True(t, ok)
	assert.Equal(t, pub, s.SearchPath)
	assert.Equal(t, [][]string{pub, hr}, paths, "the second SET is still in flight")
	s.ApplyMarked(second, m2)
	paths, ok = s.SearchPaths()
	assert.True(t, ok)
	assert.Equal(t, hr, s.SearchPath)
	assert.Nil(t, paths, "nothing is in flight any more")

	// A later text whose value keyhole cannot know keeps the session
	// lost when an earlier change sticks.
	s = &pganalyze.Session{}
	s.Note(first)
	m1 = s.NoteMark()
	s.Note(unknown)
	s.ApplyMarked(first, m1)
	_, ok = s.SearchPaths()
	assert.False(t, ok, "an unknown search_path may still be set")

	// A later text setting the path the earlier one leaves: still a
	// candidate, though equal to SearchPath then.
	s = &pganalyze.Session{}
	s.Apply(&sp.Access{Statements: []sp.Statement{setPath("hr, public")}})
	s.Note(first)
	m1 = s.NoteMark()
	s.Note(second)
	s.ApplyMarked(first, m1)
	paths, _ = s.SearchPaths()
	assert.Equal(t, [][]string{pub, hr}, paths)

	// Apply (no mark) keeps its meaning: nothing noted is in flight.
	s = &pganalyze.Session{}
	s.Note(first)
	s.Note(second)
	s.Apply(first)
	paths, _ = s.SearchPaths()
	assert.Nil(t, paths)
	assert.Equal(t, pub, s.SearchPath)
}

// TestSessionPipelinedPrepare: a text that prepares a name again (or
// deallocates it) makes the name unknown from its decision until its
// answer: an EXECUTE pipelined behind it is decided meanwhile, and runs
// on what the text prepares, not on the earlier statement.
func TestSessionPipelinedPrepare(t *testing.T) {
	t.Parallel()
	prep := func(body string) sp.Statement {
		return sp.Statement{Verb: sp.VerbPrepare, Command: "PREPARE", PrepareName: "p",
			Prepared: &sp.Statement{Verb: sp.VerbSelect, Command: body}}
	}
	s := &pganalyze.Session{}
	s.Apply(&sp.Access{Statements: []sp.Statement{prep("first")}})
	require.Contains(t, s.Prepared, "p")
	again := &sp.Access{Statements: []sp.Statement{{Verb: sp.VerbDeallocate, Deallocate: []string{"p"}}, prep("second")}}
	gen := s.Generation()
	s.Note(again)
	assert.NotContains(t, s.Prepared, "p", "p is being prepared again: unknown until the answer")
	assert.NotEqual(t, gen, s.Generation(), "a decision cached for the earlier p must not answer")
	s.Apply(again)
	require.Contains(t, s.Prepared, "p")
	assert.Equal(t, "second", s.Prepared["p"].Command)

	s.Note(&sp.Access{Statements: []sp.Statement{{Verb: sp.VerbDeallocate, DeallocateAll: true}}})
	assert.Empty(t, s.Prepared)
}
