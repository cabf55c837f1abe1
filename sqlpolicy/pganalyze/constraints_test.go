package pganalyze_test

import (
	"context"
	"slices"
	"strings"
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

// constraintsSQL has the constraints whose checks read columns a
// statement does not name (constraints.go).
const constraintsSQL = `
CREATE TABLE people (id int PRIMARY KEY, email text UNIQUE, name text);
CREATE TABLE signups (id int PRIMARY KEY, email text REFERENCES people (email), note text);
CREATE TABLE audit (id int PRIMARY KEY, person_id int REFERENCES people (id) ON DELETE RESTRICT);
CREATE TABLE staff (id int PRIMARY KEY, name text, salary int, cap int, bonus int,
    pay int GENERATED ALWAYS AS (salary + bonus) STORED, reserve int,
    CHECK (cap <= salary), CHECK (reserve <= pay));
CREATE VIEW staff_caps AS SELECT id, cap FROM staff;
CREATE VIEW signup_emails AS SELECT id, email FROM signups;
CREATE TABLE members (id int PRIMARY KEY, email text, tenant int, note text, UNIQUE (email, tenant));
CREATE TABLE pay (id int, name text, salary int, dept int REFERENCES people (id)) PARTITION BY RANGE (salary);
CREATE TABLE pay_low PARTITION OF pay FOR VALUES FROM (MINVALUE) TO (50000);
CREATE TABLE pay_high PARTITION OF pay FOR VALUES FROM (50000) TO (MAXVALUE) PARTITION BY LIST ((id % 2));
CREATE TABLE pay_high_even PARTITION OF pay_high FOR VALUES IN (0);
CREATE TABLE pay_high_rest PARTITION OF pay_high DEFAULT;
CREATE VIEW high_names AS SELECT name FROM pay_high;
CREATE TABLE regions (id int, code text, PRIMARY KEY (id, code)) PARTITION BY LIST (code);
CREATE TABLE regions_eu PARTITION OF regions FOR VALUES IN ('eu');
CREATE TABLE region_refs (id int, region_id int, code text, FOREIGN KEY (region_id, code) REFERENCES regions (id, code) ON DELETE CASCADE);
CREATE TABLE capped (id int PRIMARY KEY, name text, salary int);
ALTER TABLE capped ADD CONSTRAINT salary_cap CHECK (salary < 100) NOT VALID;
CREATE TABLE rls_pay (id int PRIMARY KEY, name text, salary int, owner text);
ALTER TABLE rls_pay ENABLE ROW LEVEL SECURITY;
CREATE POLICY low ON rls_pay FOR SELECT USING (salary < 5000);
CREATE POLICY mine ON rls_pay FOR UPDATE USING (true) WITH CHECK (owner = current_user);
CREATE TABLE notes (id int PRIMARY KEY, body text);
CREATE TABLE notes_x (x int) INHERITS (notes);
`

var (
	conOnce sync.Once
	conCat  *catalog.Catalog
	conErr  error
)

func constraintsAnalyzer(t *testing.T) *pganalyze.Analyzer {
	t.Helper()
	conOnce.Do(func() {
		db := testpg.New(t, constraintsSQL)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conCat, conErr = catalog.LoadPostgresDSN(ctx, db.DSN)
	})
	require.NoError(t, conErr)
	return pganalyze.New(conCat, pganalyze.Options{})
}

// TestConstraintReads checks the columns a statement reads through the
// checks Postgres makes beyond its text (internal/corpus
// TestConstraintOracles shows each on the real server): foreign key
// lookups, the constraints of an updated row, partition bounds. They are
// reported with Via (labels apply, no grant is needed); none for writes
// and reads that make no such check.
func TestConstraintReads(t *testing.T) {
	t.Parallel()
	an := constraintsAnalyzer(t)
	tests := []struct {
		name, sql string
		want      []string // the columns read with Via
	}{
		{"insert looks up the parent key", "INSERT INTO signups (id, email) VALUES (1, 'a')",
			[]string{"public.people.email@public.signups"}},
		{"insert select", "INSERT INTO signups (id) SELECT id FROM people",
			[]string{"public.people.email@public.signups"}},
		{"copy from", "COPY signups (id, email) FROM STDIN",
			[]string{"public.people.email@public.signups"}},
		{"merge insert", "MERGE INTO signups s USING people p ON p.id = s.id WHEN NOT MATCHED THEN INSERT (id, email) VALUES (p.id, 'x')",
			[]string{"public.people.email@public.signups"}},
		{"update of the key", "UPDATE signups SET email = 'a'",
			[]string{"public.people.email@public.signups"}},
		{"update of another column", "UPDATE signups SET note = 'a'", nil},
		{"upsert update of the key", "INSERT INTO signups (id, note) VALUES (1, 'a') ON CONFLICT (id) DO UPDATE SET email = 'b'",
			[]string{"public.people.email@public.signups"}},
		{"delete looks for referencing rows", "DELETE FROM people WHERE id = 1",
			[]string{"public.audit.person_id@public.people", "public.pay.dept@public.people", "public.signups.email@public.people"}},
		{"key update looks for referencing rows", "UPDATE people SET email = 'x'",
			[]string{"public.people.email@public.people", "public.signups.email@public.people"}},
		{"update of a column no key references", "UPDATE people SET name = 'x'", nil},
		{"delete from a partition of a referenced table", "DELETE FROM regions_eu",
			[]string{"public.region_refs.code@public.regions", "public.region_refs.region_id@public.regions", "public.regions_eu.code@public.regions_eu"}},
		{"insert into a partition checks the parent's foreign key", "INSERT INTO pay_low (id, name, salary) VALUES (1, 'a', 1)",
			[]string{"public.people.id@public.pay_low"}},
		{"insert routed to partitions", "INSERT INTO pay (id, name, salary) VALUES (1, 'a', 1)",
			[]string{"public.people.id@public.pay"}},
		{"update checks a CHECK over a set column", "UPDATE staff SET cap = 1",
			[]string{"public.staff.cap@public.staff", "public.staff.salary@public.staff"}},
		{"update checks a CHECK over a generated column", "UPDATE staff SET reserve = 1",
			[]string{"public.staff.bonus@public.staff", "public.staff.pay@public.staff", "public.staff.reserve@public.staff", "public.staff.salary@public.staff"}},
		{"update recomputes a generated column and the CHECK over it", "UPDATE staff SET bonus = 1",
			[]string{"public.staff.bonus@public.staff", "public.staff.pay@public.staff", "public.staff.reserve@public.staff", "public.staff.salary@public.staff"}},
		{"update of a column no constraint reads", "UPDATE staff SET name = 'x'", nil},
		{"merge update checks a CHECK over a set column", "MERGE INTO staff s USING (SELECT 1 AS id) v ON s.id = v.id WHEN MATCHED THEN UPDATE SET cap = 1",
			[]string{"public.staff.cap@public.staff", "public.staff.salary@public.staff"}},
		{"update through a view checks the base table's CHECK", "UPDATE staff_caps SET cap = 1",
			[]string{"public.staff.cap@public.staff", "public.staff.salary@public.staff"}},
		{"insert through a view looks up the base table's foreign key", "INSERT INTO signup_emails (id, email) VALUES (1, 'x')",
			[]string{"public.people.email@public.signups"}},
		{"every update evaluates a NOT VALID check", "UPDATE capped SET name = 'x'",
			[]string{"public.capped.salary@public.capped"}},
		{"an insert evaluates a NOT VALID check on its own values", "INSERT INTO capped (id, name) VALUES (1, 'x')", nil},
		{"insert evaluates its own values only", "INSERT INTO staff (id, cap) VALUES (1, 1)", nil},
		{"update compares a unique key", "UPDATE members SET tenant = 2",
			[]string{"public.members.email@public.members", "public.members.tenant@public.members"}},
		{"upsert's update compares a unique key", "INSERT INTO members (id, tenant) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET tenant = 2",
			[]string{"public.members.email@public.members", "public.members.tenant@public.members"}},
		{"update of a column in no key", "UPDATE members SET note = 'x'", nil},
		{"a partition filters by its parent's key", "SELECT name FROM pay_low",
			[]string{"public.pay_low.salary@public.pay_low"}},
		{"a sub-partition by every ancestor's", "SELECT name FROM pay_high_even",
			[]string{"public.pay_high_even.id@public.pay_high_even", "public.pay_high_even.salary@public.pay_high_even"}},
		{"the default partition", "SELECT count(*) FROM pay_high_rest",
			[]string{"public.pay_high_rest.id@public.pay_high_rest", "public.pay_high_rest.salary@public.pay_high_rest"}},
		{"a partition through a view", "SELECT name FROM high_names",
			[]string{"public.pay_high.name@public.high_names", "public.pay_high.salary@public.high_names"}},
		{"an update of a partition", "UPDATE pay_low SET name = 'x'",
			[]string{"public.pay_low.salary@public.pay_low"}},
		{"a delete from a partition", "DELETE FROM pay_low",
			[]string{"public.pay_low.salary@public.pay_low"}},
		{"copy of a partition", "COPY pay_low TO STDOUT",
			[]string{"public.pay_low.salary@public.pay_low"}},
		{"the parent does not filter", "SELECT name FROM pay", nil},
		{"an insert into a partition checks its own values", "INSERT INTO pay_high_even (id, name, salary) VALUES (2, 'a', 60000)",
			[]string{"public.people.id@public.pay_high_even"}},
		{"an inheritance child is no filter", "SELECT body FROM notes_x", nil},
		{"row security filters the rows read", "SELECT name FROM rls_pay",
			[]string{"public.rls_pay.salary@public.rls_pay"}},
		{"and those an update reads, and checks the new row", "UPDATE rls_pay SET name = 'x'",
			[]string{"public.rls_pay.owner@public.rls_pay", "public.rls_pay.salary@public.rls_pay"}},
		{"no policy for inserts", "INSERT INTO rls_pay (id, name) VALUES (1, 'x')", nil},
		{"explain shows a row count per partition", "EXPLAIN SELECT name FROM pay",
			[]string{"public.pay.salary@public.pay", "public.pay_high.id@public.pay", "public.pay_high.salary@public.pay"}},
		{"explain analyze of a sub-partitioned partition", "EXPLAIN ANALYZE SELECT name FROM pay_high",
			[]string{"public.pay_high.id@public.pay_high", "public.pay_high.salary@public.pay_high"}},
		{"explain of an unpartitioned table", "EXPLAIN ANALYZE SELECT note FROM signups", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			acc := an.Analyze(tc.sql, nil)
			require.Len(t, acc.Statements, 1)
			st := acc.Statements[0]
			var got []string
			for _, c := range colStrings(st.Columns) {
				if strings.Contains(c, "@") && !strings.Contains(c, ":w") {
					got = append(got, c)
				}
			}
			assert.Equal(t, tc.want, got)
			assert.Empty(t, st.Problems)
			for _, c := range st.Columns {
				if c.Via != (sqlpolicy.Rel{}) && c.Mode == sqlpolicy.Read {
					assert.True(t, slices.ContainsFunc(st.Tables, func(tr sqlpolicy.TableRef) bool { return tr.Rel == c.Rel }),
						"%s read without its table", c.Rel)
				}
			}
		})
	}
}

// TestPartitionTableoid: tableoid tells which partition a row of a
// partitioned table is in, i.e. the range of its partition key; the
// analyzer refuses system columns of user tables.
func TestPartitionTableoid(t *testing.T) {
	t.Parallel()
	an := constraintsAnalyzer(t)
	for _, sql := range []string{
		"SELECT tableoid::regclass, name FROM pay",
		"SELECT name FROM pay WHERE tableoid = 'pay_low'::regclass",
		"UPDATE pay SET name = 'x' RETURNING tableoid",
	} {
		acc := an.Analyze(sql, nil)
		require.Len(t, acc.Statements, 1)
		assert.Contains(t, problemCodes(acc.Statements[0].Problems), string(sqlpolicy.ProblemUnsupported), sql)
	}
}
