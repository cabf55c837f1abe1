package pganalyze_test

import (
	"context"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/internal/testpg"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

// effectsSQL has one table per mechanism that runs code, or writes, when a
// statement reads or writes a relation.
const effectsSQL = `
CREATE FUNCTION f_trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE FUNCTION f_when(int) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT true $$;
CREATE FUNCTION f_check(int) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT true $$;
CREATE FUNCTION f_gen(int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT $1 $$;
CREATE FUNCTION f_idx(text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT $1 $$;
CREATE FUNCTION f_pred(int) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT true $$;
CREATE FUNCTION f_dom(text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT true $$;
CREATE FUNCTION f_domdef() RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$;
CREATE FUNCTION f_pol(int) RETURNS boolean LANGUAGE sql STABLE AS $$ SELECT true $$;
CREATE FUNCTION f_op(int, int) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT true $$;
CREATE OPERATOR public.=== (leftarg = int, rightarg = int, function = f_op);

CREATE TABLE trg (id int PRIMARY KEY, a int, b int);
CREATE TRIGGER t_ins BEFORE INSERT ON trg FOR EACH ROW EXECUTE FUNCTION f_trg();
CREATE TRIGGER t_upd_b AFTER UPDATE OF b ON trg FOR EACH ROW WHEN (f_when(NEW.b)) EXECUTE FUNCTION f_trg();
CREATE TRIGGER t_del AFTER DELETE ON trg FOR EACH STATEMENT EXECUTE FUNCTION f_trg();
CREATE TRIGGER t_off AFTER UPDATE ON trg FOR EACH ROW EXECUTE FUNCTION f_trg();
ALTER TABLE trg DISABLE TRIGGER t_off;

CREATE TABLE chk (id int PRIMARY KEY, a int CHECK (f_check(a)), b int CHECK (b === 1));
CREATE TABLE gen (id int PRIMARY KEY, a int, g int GENERATED ALWAYS AS (f_gen(a)) STORED);
CREATE TABLE idx (id int PRIMARY KEY, a text, n int);
CREATE INDEX ON idx (f_idx(a));
CREATE INDEX ON idx (n) WHERE f_pred(n);
CREATE DOMAIN dmail AS text CHECK (f_dom(VALUE)) DEFAULT f_domdef();
CREATE DOMAIN dmail2 AS dmail;
CREATE TABLE dom (id int PRIMARY KEY, m dmail2);
CREATE TABLE rls (id int PRIMARY KEY, owner int);
ALTER TABLE rls ENABLE ROW LEVEL SECURITY;
CREATE POLICY p_sel ON rls FOR SELECT USING (f_pol(owner));
CREATE TABLE rls_off (id int PRIMARY KEY, owner int);
CREATE POLICY p_off ON rls_off USING (f_pol(owner));

CREATE TABLE ruled (id int PRIMARY KEY, a int);
CREATE TABLE ruled_log (id int);
CREATE RULE r_upd AS ON UPDATE TO ruled DO ALSO INSERT INTO ruled_log VALUES (NEW.id);
CREATE TABLE base (id int PRIMARY KEY, a int);
CREATE VIEW v_instead AS SELECT id, a FROM base;
CREATE TRIGGER t_v INSTEAD OF INSERT ON v_instead FOR EACH ROW EXECUTE FUNCTION f_trg();
CREATE VIEW v_rule AS SELECT id, a FROM base;
CREATE RULE r_v AS ON DELETE TO v_rule DO INSTEAD DELETE FROM base WHERE id = OLD.id;

CREATE TABLE parent (id int PRIMARY KEY, code int UNIQUE, note text);
CREATE TABLE child (id int PRIMARY KEY, pid int REFERENCES parent (id) ON DELETE CASCADE,
                    pcode int DEFAULT 0 REFERENCES parent (code) ON UPDATE SET DEFAULT ON DELETE SET NULL);
CREATE TABLE grandchild (id int PRIMARY KEY, cid int REFERENCES child (id) ON DELETE CASCADE);
CREATE TRIGGER t_gc BEFORE DELETE ON grandchild FOR EACH ROW EXECUTE FUNCTION f_trg();
CREATE TABLE restricted (id int PRIMARY KEY, pid int REFERENCES parent (id) ON DELETE RESTRICT);
CREATE TRIGGER t_trunc BEFORE TRUNCATE ON grandchild FOR EACH STATEMENT EXECUTE FUNCTION f_trg();
CREATE FUNCTION f_evt() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE EVENT TRIGGER e_ddl ON ddl_command_end EXECUTE FUNCTION f_evt();

CREATE TABLE parted (id int, region text) PARTITION BY LIST (region);
CREATE TABLE parted_eu PARTITION OF parted FOR VALUES IN ('eu');
CREATE TRIGGER t_eu BEFORE INSERT ON parted_eu FOR EACH ROW EXECUTE FUNCTION f_trg();
CREATE FUNCTION public.length(integer) RETURNS integer LANGUAGE sql AS $$ SELECT 1 $$;
CREATE FUNCTION f_plus(int, text) RETURNS text LANGUAGE sql AS $$ SELECT $2 $$;
CREATE OPERATOR public.+ (LEFTARG = int, RIGHTARG = text, FUNCTION = f_plus);
CREATE FUNCTION f_eq(text, int) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = int, FUNCTION = f_eq);
CREATE TABLE typed (id int, t text, v varchar(20), n numeric(10,2), big bigint);
CREATE VIEW typed_lengths AS SELECT length(t || 'x') AS lt FROM typed;
CREATE DOMAIN small_id AS int;
CREATE FUNCTION public.cardinality(small_id) RETURNS integer LANGUAGE sql AS $$ SELECT 1 $$;
CREATE FUNCTION f_minus(small_id, text) RETURNS text LANGUAGE sql AS $$ SELECT $2 $$;
CREATE OPERATOR public.- (LEFTARG = small_id, RIGHTARG = text, FUNCTION = f_minus);
CREATE FUNCTION public.upper(bigint[]) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$;
CREATE FUNCTION f_like(int, text) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR public.=~ (LEFTARG = int, RIGHTARG = text, FUNCTION = f_like);
`

var (
	effMu  sync.Once
	effCat *catalog.Catalog
	effErr error
)

func effectsAnalyzer(t *testing.T) *pganalyze.Analyzer {
	t.Helper()
	effMu.Do(func() {
		db := testpg.New(t, effectsSQL)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		effCat, effErr = catalog.LoadPostgresDSN(ctx, db.DSN)
	})
	require.NoError(t, effErr)
	return pganalyze.New(effCat, pganalyze.Options{})
}

// TestEffects checks what a statement's reads and writes run or write
// beyond its text: the functions (with what runs them), the tables written
// by foreign key actions, and the refusal of rules.
func TestEffects(t *testing.T) {
	t.Parallel()
	an := effectsAnalyzer(t)
	tests := []struct {
		name   string
		sql    string
		funcs  []string // non-pg_catalog functions called, "schema.name via ..."
		writes []string // tables written besides the statement's target
		rule   bool     // refused for firing a rule
	}{
		{name: "insert fires row trigger", sql: "INSERT INTO trg (id) VALUES (1)",
			funcs: []string{"public.f_trg via trigger t_ins on public.trg"}},
		{name: "update of b fires trigger and its WHEN", sql: "UPDATE trg SET b = 1",
			funcs: []string{"public.f_trg via trigger t_upd_b on public.trg", "public.f_when via trigger t_upd_b on public.trg"}},
		{name: "update of a fires nothing (t_off disabled)", sql: "UPDATE trg SET a = 1"},
		{name: "delete fires statement trigger", sql: "DELETE FROM trg WHERE false",
			funcs: []string{"public.f_trg via trigger t_del on public.trg"}},
		{name: "select fires nothing", sql: "SELECT id, a, b FROM trg"},
		{name: "copy from fires insert trigger", sql: "COPY trg (id) FROM STDIN",
			funcs: []string{"public.f_trg via trigger t_ins on public.trg"}},
		{name: "merge fires the events of the actions it names", sql: "MERGE INTO trg t USING base b ON b.id = t.id WHEN MATCHED THEN UPDATE SET a = b.a"},
		{name: "merge delete and insert actions", sql: "MERGE INTO trg t USING base b ON b.id = t.id WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT (id) VALUES (b.id)",
			funcs: []string{"public.f_trg via trigger t_del on public.trg", "public.f_trg via trigger t_ins on public.trg"}},
		{name: "merge delete action cascades", sql: "MERGE INTO parent p USING (SELECT 1 AS id) s ON p.id = s.id WHEN MATCHED THEN DELETE",
			funcs:  []string{"public.f_trg via trigger t_gc on public.grandchild"},
			writes: []string{"public.child:delete", "public.child:update", "public.grandchild:delete"}},
		{name: "merge update of a non-key column cascades nothing", sql: "MERGE INTO parent p USING (SELECT 1 AS id) s ON p.id = s.id WHEN MATCHED THEN UPDATE SET note = 'x'"},
		{name: "check constraints with function and operator", sql: "INSERT INTO chk VALUES (1, 1, 1)",
			funcs: []string{"public.f_check via check constraint chk_a_check of public.chk", "public.f_op via check constraint chk_b_check of public.chk"}},
		{name: "update runs every check", sql: "UPDATE chk SET id = 2",
			funcs: []string{"public.f_check via check constraint chk_a_check of public.chk", "public.f_op via check constraint chk_b_check of public.chk"}},
		{name: "delete runs no check", sql: "DELETE FROM chk"},
		{name: "generated column", sql: "INSERT INTO gen (id, a) VALUES (1, 1)",
			funcs: []string{"public.f_gen via generated column g of public.gen"}},
		{name: "index expression and predicate", sql: "UPDATE idx SET n = 1",
			funcs: []string{"public.f_idx via index idx_f_idx_idx of public.idx", "public.f_pred via index idx_n_idx of public.idx"}},
		{name: "domain over domain", sql: "INSERT INTO dom (id) VALUES (1)",
			funcs: []string{"public.f_dom via domain dmail2 of column m of public.dom", "public.f_domdef via domain dmail2 of column m of public.dom"}},
		{name: "row security select policy on read", sql: "SELECT id FROM rls",
			funcs: []string{"public.f_pol via row security policy p_sel of public.rls"}},
		{name: "row security select policy on update", sql: "UPDATE rls SET owner = 1",
			funcs: []string{"public.f_pol via row security policy p_sel of public.rls"}},
		{name: "row security not enabled", sql: "SELECT id FROM rls_off"},
		{name: "update fires rule", sql: "UPDATE ruled SET a = 1", rule: true},
		{name: "insert fires no update rule", sql: "INSERT INTO ruled VALUES (1, 1)"},
		{name: "instead of trigger on a view", sql: "INSERT INTO v_instead VALUES (1, 1)",
			funcs: []string{"public.f_trg via trigger t_v on public.v_instead"}},
		{name: "instead rule on a view", sql: "DELETE FROM v_rule WHERE id = 1", rule: true},
		{name: "delete cascades, sets null, and the cascade fires triggers", sql: "DELETE FROM parent WHERE id = 1",
			funcs:  []string{"public.f_trg via trigger t_gc on public.grandchild"},
			writes: []string{"public.child:delete", "public.child:update", "public.grandchild:delete"}},
		{name: "key update sets default", sql: "UPDATE parent SET code = 2",
			writes: []string{"public.child:update"}},
		{name: "update of a non-key column cascades nothing", sql: "UPDATE parent SET note = 'x'"},
		{name: "truncate fires truncate triggers", sql: "TRUNCATE grandchild",
			funcs: []string{"public.f_evt via event trigger e_ddl (ddl_command_end)", "public.f_trg via trigger t_trunc on public.grandchild"}},
		{name: "truncate cascade reaches referencing tables", sql: "TRUNCATE parent CASCADE",
			funcs:  []string{"public.f_evt via event trigger e_ddl (ddl_command_end)", "public.f_trg via trigger t_trunc on public.grandchild"},
			writes: []string{"public.child:", "public.grandchild:", "public.restricted:"}},
		{name: "DDL fires event triggers", sql: "CREATE TABLE newt (a int)",
			funcs: []string{"public.f_evt via event trigger e_ddl (ddl_command_end)"}},
		{name: "rows routed to a partition fire its triggers", sql: "INSERT INTO parted VALUES (1, 'eu')",
			funcs: []string{"public.f_trg via trigger t_eu on public.parted_eu"}},
		{name: "an update may move rows between partitions", sql: "UPDATE parted SET region = 'eu'",
			funcs: []string{"public.f_trg via trigger t_eu on public.parted_eu"}},
		{name: "a delete fires no insert trigger of a partition", sql: "DELETE FROM parted"},
		{name: "cast to a domain runs its checks", sql: "SELECT 'x'::dmail2",
			funcs: []string{"public.f_dom via conversion to type public.dmail2"}},
		{name: "cast to a built-in type runs nothing", sql: "SELECT CAST('1' AS integer), '{}'::text[]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			acc := an.Analyze(tc.sql, nil)
			require.Len(t, acc.Statements, 1)
			st := acc.Statements[0]
			var funcs, writes []string
			for _, f := range st.Functions {
				if f.Schema != "pg_catalog" {
					s := f.String()
					if f.Via != "" {
						s += " via " + f.Via
					}
					funcs = append(funcs, s)
				}
			}
			target := ""
			if len(st.Tables) > 0 {
				target = st.Tables[0].Rel.String()
			}
			for _, tb := range st.Tables {
				if tb.Mode == sqlpolicy.Write && tb.Rel.String() != target && tb.Via == (sqlpolicy.Rel{}) {
					writes = append(writes, tb.Rel.String()+":"+string(tb.Action))
				}
			}
			sort.Strings(funcs)
			sort.Strings(writes)
			assert.Equal(t, tc.funcs, funcs, "functions")
			assert.Equal(t, tc.writes, writes, "cascaded writes")
			rule := slices.ContainsFunc(st.Problems, func(p sqlpolicy.Problem) bool { return p.Code == sqlpolicy.ProblemUnsupported })
			assert.Equal(t, tc.rule, rule, "refused for a rule: %v", st.Problems)
		})
	}
}

// TestOverloadCandidates checks which schema's function an unqualified
// call reaches when a user function shares a built-in's name: every
// candidate, unless the argument types match one overload exactly.
func TestOverloadCandidates(t *testing.T) {
	t.Parallel()
	an := effectsAnalyzer(t)
	tests := []struct {
		sql     string
		want    []string
		literal bool // the choice depends on a constant's type
	}{
		{"SELECT length(t) FROM typed", []string{"pg_catalog.length"}, false},
		{"SELECT length(typed.t) FROM typed", []string{"pg_catalog.length"}, false},
		{"SELECT length(id) FROM typed", []string{"public.length"}, false},
		{"SELECT length(7)", []string{"public.length"}, true},
		{"SELECT length('x'::text)", []string{"pg_catalog.length"}, false},
		{"SELECT length(n::int) FROM typed", []string{"public.length"}, false},
		// Types the analyzer does not pin down: both.
		{"SELECT length('x')", []string{"pg_catalog.length", "public.length"}, true},
		// varchar converts to text implicitly, never to integer.
		{"SELECT length(v) FROM typed", []string{"pg_catalog.length"}, false},
		// No overload takes a bigint: Postgres fails the call.
		{"SELECT length(big) FROM typed", []string{"pg_catalog.length", "public.length"}, false},
		{"SELECT length(x) FROM (SELECT t AS x FROM typed) s", []string{"pg_catalog.length", "public.length"}, false},
		// id + 1 is typed by the user operator + on the path's choice.
		{"SELECT length(id + 1) FROM typed", []string{"pg_catalog.length", "public.length"}, true},
		{"SELECT pg_catalog.length(id) FROM typed", []string{"pg_catalog.length"}, false},
		// A domain over integer takes an integer (pg_cast lists no such
		// cast), and pg_catalog.cardinality(anyarray) no integer:
		// Postgres calls public.cardinality(small_id).
		{"SELECT cardinality(id) FROM typed", []string{"pg_catalog.cardinality", "public.cardinality"}, false},
		{"SELECT cardinality(1)", []string{"pg_catalog.cardinality", "public.cardinality"}, true},
		// integer[] converts to bigint[] element by element; no
		// pg_catalog.upper takes an array that is not a range.
		{"SELECT upper(ARRAY[id]::int[]) FROM typed", []string{"pg_catalog.upper", "public.upper"}, false},
		{"SELECT upper(ARRAY[t]::text[]) FROM typed", []string{"pg_catalog.upper"}, false},
		// A view's definition names every function outside pg_catalog
		// qualified (the catalog reads it under an empty search_path).
		{"SELECT lt FROM typed_lengths", []string{"pg_catalog.length"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.sql, func(t *testing.T) {
			t.Parallel()
			acc := an.Analyze(tc.sql, nil)
			require.Len(t, acc.Statements, 1)
			var got []string
			for _, f := range acc.Statements[0].Functions {
				if f.Name == "length" || f.Name == "cardinality" || f.Name == "upper" {
					got = append(got, f.String())
				}
			}
			sort.Strings(got)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, tc.literal, acc.Statements[0].LiteralSensitive, "literal sensitive")
		})
	}
}

// TestOperatorCandidates checks which user operators' functions an
// operator use reports: none when the operand types match a built-in
// operator exactly or fit no user operator, the one they match exactly,
// else every user operator they may fit. Implicit "=" (IN, IS DISTINCT
// FROM, CASE x WHEN, JOIN USING) counts.
func TestOperatorCandidates(t *testing.T) {
	t.Parallel()
	an := effectsAnalyzer(t)
	tests := []struct {
		sql     string
		want    []string
		literal bool
	}{
		{"SELECT id + t FROM typed", []string{"public.f_plus"}, false},
		{"SELECT id + 1 FROM typed", nil, true},
		{"SELECT id + '1' FROM typed", nil, true},
		// No text + text: the literal is of unknown type, which the
		// user operator's integer takes.
		{"SELECT '1' + t FROM typed", []string{"public.f_plus"}, true},
		{"SELECT n + id FROM typed", nil, false},
		{"SELECT x + 1 FROM (SELECT id AS x FROM typed) s", nil, true},
		{"SELECT x + y FROM (SELECT id AS x, t AS y FROM typed) s", []string{"public.f_plus"}, false},
		{"SELECT id FROM typed WHERE t IN ('a', 'b')", nil, true},
		{"SELECT id FROM typed WHERE t IN (1, 2)", []string{"public.f_eq"}, true},
		{"SELECT id FROM typed WHERE t IS DISTINCT FROM id", []string{"public.f_eq"}, false},
		{"SELECT CASE t WHEN 'x' THEN 1 END FROM typed", nil, true},
		{"SELECT CASE t WHEN id THEN 1 END FROM typed", []string{"public.f_eq"}, false},
		{"SELECT 1 FROM typed a JOIN typed b USING (t)", nil, false},
		{"SELECT id FROM typed WHERE t = ANY (SELECT t FROM typed)", []string{"public.f_eq"}, false},
		{"SELECT id FROM typed WHERE id = 1", nil, true},
		{"SELECT id FROM typed WHERE t = ANY (string_to_array(t, ','))", []string{"public.f_eq"}, false},
		{"SELECT id FROM typed WHERE t = ANY ('{a,b}')", nil, true},
		// No integer = integer among the user's and the literal is of
		// unknown type: text = int is not the only reading, but the
		// built-in matches exactly.
		{"SELECT id FROM typed WHERE id = ANY ('{1,2}')", nil, true},
		// No integer =~ integer: the array literal's elements are of
		// unknown type, which =~(integer, text) takes.
		{"SELECT id FROM typed WHERE id =~ ANY ('{a,b}')", []string{"public.f_like"}, true},
		{"SELECT id FROM typed WHERE id OPERATOR(pg_catalog.+) 1 > 0", nil, false},
		// integer - text: the user operator on the domain small_id
		// over integer is the only one that fits.
		{"SELECT id - t FROM typed", []string{"public.f_minus"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.sql, func(t *testing.T) {
			t.Parallel()
			acc := an.Analyze(tc.sql, nil)
			require.Len(t, acc.Statements, 1)
			st := acc.Statements[0]
			var got []string
			for _, f := range st.Functions {
				if f.Schema == "public" && f.Via != "" {
					got = append(got, f.String())
				}
			}
			sort.Strings(got)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, tc.literal, st.LiteralSensitive, "literal sensitive")
		})
	}
}
