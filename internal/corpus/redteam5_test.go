package corpus_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/internal/corpus"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

// rt5Case is a statement decided for the test's agent; leaks says whether,
// run as the fixture's owner (what keyhole's upstream login usually is),
// it writes the labelled value into public.leak_sink: every statement
// keyhole refuses here does, every one it allows does not.
type rt5Case struct {
	sql     string
	allowed bool
	leaks   bool
}

// rt5Shop loads the shop fixture and extra (as the owner), reads the
// catalog again and returns an engine deciding policy for agent bot.
func rt5Shop(t *testing.T, extra, policy string) (*sqlpolicy.Engine, *pgx.Conn) {
	t.Helper()
	shop := corpus.NewShop(t, corpus.Suites[0])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, shop.DB.DSN)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	_, err = conn.Exec(ctx, `
CREATE TABLE public.leak_sink (v text);
-- What every function below does: copy a labelled value where a role that
-- may read leak_sink finds it, with the privileges of the session.
CREATE FUNCTION public.snoop() RETURNS void LANGUAGE sql VOLATILE
    AS $$ INSERT INTO public.leak_sink SELECT ssn FROM public.customers WHERE id = 1 $$;
`+extra)
	require.NoError(t, err)
	cat, err := catalog.LoadPostgres(ctx, conn)
	require.NoError(t, err)
	pol, _, err := sqlpolicy.ParsePolicy([]byte(policy), "redteam5.yaml", cat)
	require.NoError(t, err)
	return sqlpolicy.NewEngine(pol, cat, pganalyze.New(cat, pganalyze.Options{}), sqlpolicy.EngineOptions{CacheBytes: -1}), conn
}

// runRT5 decides every case, and runs it as the owner in a rolled-back
// transaction to see whether it leaks.
func runRT5(t *testing.T, eng *sqlpolicy.Engine, conn *pgx.Conn, cases []rt5Case) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := sqlpolicy.Principal{Agent: "bot"}
	for _, tc := range cases {
		d, _ := eng.Check(p, tc.sql, eng.NewSession())
		assert.Equal(t, tc.allowed, d.Allowed(), "%s: %s %s", tc.sql, d.Rule, reasonsJSON(d))

		tx, err := conn.Begin(ctx)
		require.NoError(t, err)
		// Reads use an index wherever one serves.
		_, err = tx.Exec(ctx, "SET LOCAL enable_seqscan = off")
		require.NoError(t, err)
		_, err = tx.Exec(ctx, tc.sql)
		require.NoError(t, err, "as the owner: %s", tc.sql)
		var n int
		require.NoError(t, tx.QueryRow(ctx, "SELECT count(*) FROM public.leak_sink WHERE v = '078-05-1120'").Scan(&n))
		assert.Equal(t, tc.leaks, n > 0, "%s: %d ssn copies in leak_sink", tc.sql, n)
		require.NoError(t, tx.Rollback(ctx))
	}
}

// TestComparisonCode: what Postgres runs to compare and place the values
// of a row, which no expression of the statement names. An exclusion
// constraint calls its operators' functions against the other rows on
// every INSERT and UPDATE; an index calls its operator class's support
// function (a btree's comparison function) for every entry it inserts and
// for the scans a read uses; a partition key's expression and operator
// class run to route a row, to check a partition's bounds and to prune a
// read. All run with the session's privileges; the catalog listed none of
// them, so an insert into such a table was allowed with no function list.
func TestComparisonCode(t *testing.T) {
	t.Parallel()
	eng, conn := rt5Shop(t, `
CREATE FUNCTION public.snoop_eq(a integer, b integer) RETURNS boolean LANGUAGE plpgsql VOLATILE
    AS $$ BEGIN PERFORM public.snoop(); RETURN a = b; END $$;
CREATE FUNCTION public.snoop_cmp(a integer, b integer) RETURNS integer LANGUAGE plpgsql VOLATILE
    AS $$ BEGIN PERFORM public.snoop(); RETURN btint4cmp(a, b); END $$;
CREATE FUNCTION public.snoop_bucket(v integer) RETURNS integer LANGUAGE plpgsql IMMUTABLE
    AS $$ BEGIN PERFORM public.snoop(); RETURN v % 2; END $$;
CREATE OPERATOR public.=# (LEFTARG = integer, RIGHTARG = integer, FUNCTION = public.snoop_eq, COMMUTATOR = =#);
CREATE OPERATOR CLASS public.snoop_int_ops FOR TYPE integer USING btree AS
    OPERATOR 1 <, OPERATOR 2 <=, OPERATOR 3 =#, OPERATOR 4 >=, OPERATOR 5 >,
    FUNCTION 1 public.snoop_cmp(integer, integer);
CREATE TABLE public.bookings (id integer, room integer, EXCLUDE USING btree (room public.snoop_int_ops WITH =#));
INSERT INTO public.bookings VALUES (1, 1);
CREATE TABLE public.rooms (id integer, floor integer);
CREATE INDEX rooms_floor ON public.rooms (floor public.snoop_int_ops);
INSERT INTO public.rooms SELECT g, g FROM generate_series(1, 10) g;
CREATE TABLE public.slots (id integer, v integer) PARTITION BY LIST (public.snoop_bucket(v));
CREATE TABLE public.slots_even PARTITION OF public.slots FOR VALUES IN (0);
CREATE TABLE public.slots_odd PARTITION OF public.slots FOR VALUES IN (1);
CREATE TABLE public.shelves (id integer) PARTITION BY RANGE (id public.snoop_int_ops);
CREATE TABLE public.shelves_low PARTITION OF public.shelves FOR VALUES FROM (0) TO (100);
CREATE TABLE public.plain_rooms (id integer PRIMARY KEY, floor integer);
CREATE INDEX plain_rooms_floor ON public.plain_rooms (floor);
TRUNCATE public.leak_sink;
`, `
labels:
  public.customers.ssn: [pii.ssn]
roles:
  clerk:
    allow:
      - select: [public.bookings, public.rooms, public.slots, public.plain_rooms, public.leak_sink]
      - insert: [public.bookings, public.rooms, public.slots, public.slots_odd, public.shelves, public.plain_rooms]
      - update: [public.bookings]
    deny_labels: [pii.*]
agents:
  bot: {role: clerk}
`)
	runRT5(t, eng, conn, []rt5Case{
		{sql: "INSERT INTO bookings VALUES (2, 2)", leaks: true},
		{sql: "UPDATE bookings SET room = 3", leaks: true},
		{sql: "INSERT INTO rooms VALUES (11, 11)", leaks: true},
		{sql: "SELECT id FROM rooms WHERE floor > 8", leaks: true},
		{sql: "INSERT INTO slots VALUES (1, 3)", leaks: true},
		{sql: "INSERT INTO slots_odd VALUES (1, 3)", leaks: true},
		{sql: "INSERT INTO shelves VALUES (5)", leaks: true},
		{sql: "INSERT INTO plain_rooms VALUES (11, 11)", allowed: true},
		{sql: "SELECT id FROM plain_rooms WHERE floor > 8", allowed: true},
	})
}

// TestDomainCoercion: converting a value to a domain runs the domain's
// CHECK constraints, and so the functions they call, with the session's
// privileges: a call of a listed function whose parameter or result is of
// such a domain, a cast or literal of a composite type with a field of it
// (or of an array of it), jsonb_populate_record into one, and a write of
// a column whose type is an array or a composite over it. The catalog
// listed a domain's functions for casts to the domain itself and for
// columns of the domain only, and nothing for a function's parameters.
func TestDomainCoercion(t *testing.T) {
	t.Parallel()
	eng, conn := rt5Shop(t, `
CREATE FUNCTION public.snoop_ok(v integer) RETURNS boolean LANGUAGE plpgsql VOLATILE
    AS $$ BEGIN PERFORM public.snoop(); RETURN true; END $$;
CREATE DOMAIN public.room_no AS integer CHECK (public.snoop_ok(VALUE));
CREATE FUNCTION public.room_label(r public.room_no) RETURNS text LANGUAGE plpgsql STABLE
    AS $$ BEGIN RETURN 'room ' || r; END $$;
CREATE FUNCTION public.first_room() RETURNS public.room_no LANGUAGE plpgsql STABLE
    AS $$ BEGIN RETURN 1; END $$;
CREATE FUNCTION public.label(r integer) RETURNS text LANGUAGE plpgsql STABLE
    AS $$ BEGIN RETURN 'room ' || r; END $$;
CREATE TYPE public.stay AS (room public.room_no, guest text);
CREATE TABLE public.stays (id integer, rooms public.room_no[], stay public.stay);
`, `
labels:
  public.customers.ssn: [pii.ssn]
roles:
  clerk:
    allow:
      - select: [public.orders]
      - insert: [public.stays]
    functions: [public.room_label, public.first_room, public.label]
    deny_labels: [pii.*]
agents:
  bot: {role: clerk}
`)
	runRT5(t, eng, conn, []rt5Case{
		{sql: "SELECT room_label(5)", leaks: true},
		{sql: "SELECT room_label(id) FROM orders", leaks: true},
		{sql: "SELECT first_room()", leaks: true},
		{sql: "SELECT '(5,ada)'::stay", leaks: true},
		{sql: "SELECT ROW(5, 'ada')::stay", leaks: true},
		{sql: "SELECT * FROM jsonb_populate_record(NULL::stay, '{\"room\": 5}')", leaks: true},
		{sql: "SELECT '{5}'::room_no[]", leaks: true},
		{sql: "INSERT INTO stays (id, rooms) VALUES (1, '{5}')", leaks: true},
		{sql: "INSERT INTO stays (id, stay) VALUES (1, '(5,ada)')", leaks: true},
		{sql: "SELECT label(5)", allowed: true},
		{sql: "SELECT label(id) FROM orders", allowed: true},
	})
}

// TestSearchPathFunctionBody: a function body resolves its unqualified
// names under the session's search_path unless the function sets its
// own. An agent that may SET search_path and call a listed function made
// it read a same-named table of another schema (internal.orders here,
// labelled secret) with the session's privileges; keyhole allowed the
// call, as it allowed it under the login's path. A function that sets its
// search_path stays allowed.
func TestSearchPathFunctionBody(t *testing.T) {
	t.Parallel()
	eng, conn := rt5Shop(t, `
CREATE FUNCTION public.order_notes() RETURNS text LANGUAGE sql STABLE
    AS $$ SELECT string_agg(id::text, ',' ORDER BY id) FROM orders $$;
CREATE FUNCTION public.order_notes_pinned() RETURNS text LANGUAGE sql STABLE SET search_path = public
    AS $$ SELECT string_agg(id::text, ',' ORDER BY id) FROM orders $$;
UPDATE internal.orders SET id = 4242;
`, `
labels:
  internal.orders: [secret]
roles:
  clerk:
    allow:
      - select: [public.orders]
    functions: [public.order_notes, public.order_notes_pinned]
    settings: [search_path]
    deny_labels: [secret]
agents:
  bot: {role: clerk}
`)
	p := sqlpolicy.Principal{Agent: "bot"}
	for _, tc := range []struct {
		texts   []string
		allowed bool
	}{
		{[]string{"SELECT order_notes()"}, true},
		{[]string{"SET search_path = internal, public", "SELECT order_notes()"}, false},
		{[]string{"SET search_path = internal, public", "SELECT public.order_notes()"}, false},
		{[]string{"SET search_path = internal, public", "SELECT order_notes_pinned()"}, true},
		{[]string{"SET search_path = internal, public", "RESET search_path", "SELECT order_notes()"}, true},
	} {
		sess := eng.NewSession()
		var d *sqlpolicy.Decision
		for i, text := range tc.texts {
			var a *sqlpolicy.Access
			d, a = eng.Check(p, text, sess)
			if i < len(tc.texts)-1 {
				require.True(t, d.Allowed(), "%s: %s", text, reasonsJSON(d))
				sess.Apply(a)
			}
		}
		assert.Equal(t, tc.allowed, d.Allowed(), "%v: %s %s", tc.texts, d.Rule, reasonsJSON(d))
	}

	// As the owner: the same call reads internal.orders after the SET.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.Background()) }()
	var before, after, pinned string
	require.NoError(t, tx.QueryRow(ctx, "SELECT public.order_notes()").Scan(&before))
	_, err = tx.Exec(ctx, "SET LOCAL search_path = internal, public")
	require.NoError(t, err)
	require.NoError(t, tx.QueryRow(ctx, "SELECT public.order_notes()").Scan(&after))
	require.NoError(t, tx.QueryRow(ctx, "SELECT public.order_notes_pinned()").Scan(&pinned))
	assert.Equal(t, "4242", after, "the body read internal.orders")
	assert.NotEqual(t, before, after)
	assert.Equal(t, before, pinned, "a function that sets its search_path reads public.orders")
}
