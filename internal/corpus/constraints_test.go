package corpus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/internal/corpus"
	"github.com/keyholedb/keyhole/internal/testpg"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/pganalyze"
)

// oracleSchema has constraints whose checks look at labelled data: a
// signup's email must be a person's (labelled) email, a token must name
// a row of the secret vault, a person's audit rows (a secret table) keep
// the person from being deleted, a staff member's credit limit must stay
// below the (labelled) salary, which a stored generated column adds to
// the bonus, a member's (labelled) email is unique per tenant, and pay
// is partitioned by the (labelled) salary, its high range again by id.
// ROLE is replaced by the role holding exactly oraclePolicy's grants.
const oracleSchema = `
CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL, email text NOT NULL UNIQUE);
CREATE TABLE vault (id int PRIMARY KEY, secret text NOT NULL);
COMMENT ON TABLE vault IS 'keyhole: secret';
CREATE TABLE signups (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text NOT NULL REFERENCES people (email), note text);
CREATE TABLE tokens (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, vault_id int NOT NULL REFERENCES vault (id));
CREATE TABLE invites (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, person_id int NOT NULL REFERENCES people (id));
CREATE TABLE person_audit (id serial PRIMARY KEY, person_id int NOT NULL REFERENCES people (id));
COMMENT ON TABLE person_audit IS 'keyhole: secret';
CREATE TABLE staff (id int PRIMARY KEY, name text NOT NULL, salary int NOT NULL,
    credit_limit int NOT NULL DEFAULT 0, bonus int NOT NULL DEFAULT 0,
    pay int GENERATED ALWAYS AS (salary + bonus) STORED, reserve int NOT NULL DEFAULT 0,
    CONSTRAINT staff_limit CHECK (credit_limit <= salary), CONSTRAINT staff_reserve CHECK (reserve <= pay));
CREATE TABLE capped (id int PRIMARY KEY, name text NOT NULL, salary int NOT NULL);
CREATE TABLE rls_pay (id int PRIMARY KEY, name text NOT NULL, salary int NOT NULL);
ALTER TABLE rls_pay ENABLE ROW LEVEL SECURITY;
CREATE POLICY low ON rls_pay FOR SELECT USING (salary < 5000);
CREATE TABLE members (id int PRIMARY KEY, email text NOT NULL, tenant int NOT NULL, UNIQUE (email, tenant));
CREATE TABLE pay (id int NOT NULL, name text NOT NULL, salary int NOT NULL) PARTITION BY RANGE (salary);
CREATE TABLE pay_low PARTITION OF pay FOR VALUES FROM (MINVALUE) TO (50000);
CREATE TABLE pay_high PARTITION OF pay FOR VALUES FROM (50000) TO (MAXVALUE) PARTITION BY LIST ((id % 2));
CREATE TABLE pay_high_even PARTITION OF pay_high FOR VALUES IN (0);
CREATE TABLE pay_high_rest PARTITION OF pay_high DEFAULT;
CREATE TABLE region_pay (id int NOT NULL, region text NOT NULL, name text NOT NULL) PARTITION BY LIST (region);
CREATE TABLE region_pay_eu PARTITION OF region_pay FOR VALUES IN ('eu');

INSERT INTO people VALUES (1, 'Ada', 'ada@example.com'), (2, 'Alan', 'alan@example.com'), (3, 'Grace', 'grace@example.com');
INSERT INTO vault VALUES (7, 'hunter2');
INSERT INTO person_audit (person_id) VALUES (2);
INSERT INTO signups (email) VALUES ('grace@example.com');
INSERT INTO staff (id, name, salary) VALUES (1, 'Ada', 5000);
INSERT INTO capped VALUES (1, 'Ada', 5000), (2, 'Alan', 3000);
ALTER TABLE capped ADD CONSTRAINT capped_salary CHECK (salary < 4000) NOT VALID;
INSERT INTO rls_pay VALUES (1, 'Ada', 4000), (2, 'Alan', 9000);
INSERT INTO members VALUES (1, 'ada@example.com', 1), (2, 'ada@example.com', 2);
INSERT INTO pay VALUES (1, 'Ada', 40000), (2, 'Alan', 90000), (3, 'Grace', 95000);
INSERT INTO region_pay VALUES (1, 'eu', 'Ada');

GRANT SELECT (id, name) ON people TO ROLE;
GRANT DELETE, UPDATE (id) ON people TO ROLE;
GRANT SELECT, INSERT, UPDATE ON signups TO ROLE;
GRANT INSERT ON tokens, invites TO ROLE;
GRANT SELECT (id, name, credit_limit, bonus, reserve), UPDATE (name, credit_limit, bonus, reserve) ON staff TO ROLE;
GRANT SELECT (id, tenant), UPDATE (tenant) ON members TO ROLE;
GRANT SELECT (id, name), UPDATE (name) ON capped TO ROLE;
GRANT SELECT (id, name) ON rls_pay TO ROLE;
GRANT SELECT (id, name), UPDATE (name), DELETE ON pay, pay_low, pay_high, pay_high_even, pay_high_rest TO ROLE;
GRANT SELECT ON region_pay, region_pay_eu TO ROLE;
`

const oraclePolicy = `
labels:
  public.people.email: [pii.email]
  public.staff.salary: [pii.salary]
  public.members.email: [pii.email]
  public.capped.salary: [pii.salary]
  public.rls_pay.salary: [pii.salary]
  public.pay.salary: [pii.salary]
roles:
  writer:
    upstream: shop
    allow:
      - select: {public.people: [id, name]}
      - delete: [public.people]
      - update: {public.people: [id]}
      - select: [public.signups]
      - insert: [public.signups, public.tokens, public.invites]
      - update: [public.signups]
      - merge: [public.signups]
      - select: {public.staff: [id, name, credit_limit, bonus, reserve]}
      - update: {public.staff: [name, credit_limit, bonus, reserve]}
      - select: {public.capped: [id, name]}
      - select: {public.rls_pay: [id, name]}
      - update: {public.capped: [name]}
      - select: {public.members: [id, tenant]}
      - update: {public.members: [tenant]}
      - select: {public.pay: [id, name], public.pay_low: [id, name], public.pay_high: [id, name], public.pay_high_even: [id, name], public.pay_high_rest: [id, name]}
      - update: {public.pay: [name], public.pay_low: [name], public.pay_high: [name], public.pay_high_even: [name], public.pay_high_rest: [name]}
      - delete: [public.pay, public.pay_low, public.pay_high, public.pay_high_even, public.pay_high_rest]
      - select: [public.region_pay, public.region_pay_eu]
    deny_labels: [pii.*, secret]
    explain: true
agents:
  writer-agent: {role: writer}
`

// TestConstraintOracles: Postgres's foreign key checks run as the table
// owner and answer whether a value is in the referenced key (or whether
// child rows reference a key), an UPDATE's CHECK constraints, generated
// columns and unique keys are evaluated over the whole new row, and a
// partition holds only the rows whose partition key is in its bounds:
// a statement the role may run then reveals labelled values it may not
// read. Each probe runs as a Postgres role holding exactly the policy's
// grants, once with a value that hits and once with one that does not:
// the outcomes differ (the oracle is real), and keyhole refuses both for
// the label. Statements whose checks read only unlabelled columns stay
// allowed.
func TestConstraintOracles(t *testing.T) {
	t.Parallel()
	eng, roleDSN := newOracleDB(t)
	p := sqlpolicy.Principal{Agent: "writer-agent"}

	probes := []struct {
		name      string
		hit, miss string // a probe whose check finds the value, and one whose check does not
		hitCode   string // SQLSTATE, "" for success
		missCode  string
		label     string // the label keyhole refuses it for
	}{
		{"insert looks up a labelled parent column",
			"INSERT INTO signups (email) VALUES ('ada@example.com')",
			"INSERT INTO signups (email) VALUES ('nobody@example.com')", "", "23503", "pii.email"},
		{"insert select looks up a labelled parent column",
			"INSERT INTO signups (email, note) SELECT 'ada@example.com', name FROM people WHERE id = 1",
			"INSERT INTO signups (email, note) SELECT 'nobody@example.com', name FROM people WHERE id = 1", "", "23503", "pii.email"},
		{"copy looks up a labelled parent column",
			"COPY signups (email) FROM STDIN\nada@example.com",
			"COPY signups (email) FROM STDIN\nnobody@example.com", "", "23503", "pii.email"},
		{"merge insert looks up a labelled parent column",
			"MERGE INTO signups s USING (SELECT 'ada@example.com' AS e) v ON false WHEN NOT MATCHED THEN INSERT (email) VALUES (v.e)",
			"MERGE INTO signups s USING (SELECT 'nobody@example.com' AS e) v ON false WHEN NOT MATCHED THEN INSERT (email) VALUES (v.e)", "", "23503", "pii.email"},
		{"key update looks up a labelled parent column",
			"UPDATE signups SET email = 'ada@example.com'",
			"UPDATE signups SET email = 'nobody@example.com'", "", "23503", "pii.email"},
		{"insert looks up a secret table's key",
			"INSERT INTO tokens (vault_id) VALUES (7)",
			"INSERT INTO tokens (vault_id) VALUES (8)", "", "23503", "secret"},
		{"delete looks for a secret table's referencing rows",
			"DELETE FROM people WHERE id = 2",
			"DELETE FROM people WHERE id = 1", "23503", "", "secret"},
		{"key update looks for a secret table's referencing rows",
			"UPDATE people SET id = 20 WHERE id = 2",
			"UPDATE people SET id = 20 WHERE id = 1", "23503", "", "secret"},
		{"update checks a CHECK constraint over a labelled column",
			"UPDATE staff SET credit_limit = 4000 WHERE id = 1",
			"UPDATE staff SET credit_limit = 6000 WHERE id = 1", "", "23514", "pii.salary"},
		{"update checks a CHECK constraint over a generated column over a labelled column",
			"UPDATE staff SET reserve = 4000 WHERE id = 1",
			"UPDATE staff SET reserve = 6000 WHERE id = 1", "", "23514", "pii.salary"},
		{"update computes a generated column over a labelled column",
			"UPDATE staff SET bonus = 2147470000 WHERE id = 1",
			"UPDATE staff SET bonus = 2147480000 WHERE id = 1", "", "22003", "pii.salary"},
		{"every update evaluates a NOT VALID check over a labelled column",
			"UPDATE capped SET name = 'x' WHERE id = 2",
			"UPDATE capped SET name = 'x' WHERE id = 1", "", "23514", "pii.salary"},
		{"row security shows the rows whose labelled salary passes its policy",
			"SELECT 1/count(*) FROM rls_pay WHERE name = 'Ada'",
			"SELECT 1/count(*) FROM rls_pay WHERE name = 'Alan'", "", "22012", "pii.salary"},
		{"key update compares a unique key with a labelled column",
			"UPDATE members SET tenant = 3 WHERE id = 1",
			"UPDATE members SET tenant = 2 WHERE id = 1", "", "23505", "pii.email"},
		{"a partition holds the rows whose labelled key is in its range",
			"SELECT 1/count(*) FROM pay_high WHERE name = 'Alan'",
			"SELECT 1/count(*) FROM pay_high WHERE name = 'Ada'", "", "22012", "pii.salary"},
		{"a default sub-partition holds the rows in no other",
			"SELECT 1/count(*) FROM pay_high_rest WHERE name = 'Grace'",
			"SELECT 1/count(*) FROM pay_high_rest WHERE name = 'Ada'", "", "22012", "pii.salary"},
		{"a partition's row count of an update",
			"UPDATE pay_low SET name = name WHERE id = 1 RETURNING 1/(id - id)",
			"UPDATE pay_low SET name = name WHERE id = 2 RETURNING 1/(id - id)", "22012", "", "pii.salary"},
		{"a partition's row count of a delete",
			"DELETE FROM pay_low WHERE id = 1 RETURNING 1/(id - id)",
			"DELETE FROM pay_low WHERE id = 2 RETURNING 1/(id - id)", "22012", "", "pii.salary"},
	}
	for _, tc := range probes {
		hitCode, hitMsg, err := roleOutcome(roleDSN, tc.hit)
		require.NoError(t, err, tc.name)
		missCode, missMsg, err := roleOutcome(roleDSN, tc.miss)
		require.NoError(t, err, tc.name)
		assert.Equal(t, tc.hitCode, hitCode, "%s: %s", tc.name, hitMsg)
		assert.Equal(t, tc.missCode, missCode, "%s: %s", tc.name, missMsg)
		for _, text := range []string{tc.hit, tc.miss} {
			text, _, _ = strings.Cut(text, "\n")
			d, _ := eng.Check(p, text, eng.NewSession())
			if assert.False(t, d.Allowed(), "%s: keyhole allows %s", tc.name, text) {
				assert.True(t, hasLabel(d, tc.label), "%s: %s refused without label %s: %s", tc.name, text, tc.label, reasonsJSON(d))
			}
		}
	}

	for _, text := range []string{
		"INSERT INTO invites (person_id) VALUES (1)", // people.id is not labelled
		"UPDATE signups SET note = 'x' WHERE id = 1", // no key column
		"UPDATE staff SET name = 'x' WHERE id = 1",   // no constraint reads name
		"SELECT id, name FROM pay",                   // the parent: no filter
		"UPDATE pay SET name = 'x' WHERE id = 1",     // likewise
		"SELECT id, name FROM region_pay_eu",         // partitioned by an unlabelled column
	} {
		d, _ := eng.Check(p, text, eng.NewSession())
		assert.True(t, d.Allowed(), "%s: %s", text, reasonsJSON(d))
		code, msg, err := roleOutcome(roleDSN, text)
		require.NoError(t, err)
		assert.NotEqual(t, corpus.InsufficientPrivilege, code, "%s: %s", text, msg)
	}
}

// newOracleDB loads oracleSchema into a throwaway database, and returns
// the engine deciding oraclePolicy over it and a DSN of the role holding
// exactly the policy's grants.
func newOracleDB(t *testing.T) (*sqlpolicy.Engine, string) {
	t.Helper()
	role := testpg.NewRole(t, "")
	db := testpg.New(t, strings.ReplaceAll(oracleSchema, "ROLE", role))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cat, err := catalog.LoadPostgresDSN(ctx, db.DSN)
	require.NoError(t, err)
	pol, _, err := sqlpolicy.ParsePolicy([]byte(oraclePolicy), "oracle.yaml", cat)
	require.NoError(t, err)
	eng := sqlpolicy.NewEngine(pol, cat, pganalyze.New(cat, pganalyze.Options{}), sqlpolicy.EngineOptions{CacheBytes: -1})
	return eng, testpg.WithUser(db.DSN, role, "")
}

// roleOutcome runs text as the role in a rolled-back transaction and
// returns the SQLSTATE of its error ("" when it ran). A COPY ... FROM
// STDIN text carries its data after its first line.
func roleOutcome(dsn, text string) (code, msg string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", "", err
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		return "", "", err
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if stmt, data, ok := strings.Cut(text, "\n"); ok {
		_, err = conn.PgConn().CopyFrom(ctx, strings.NewReader(data+"\n"), stmt)
	} else {
		_, err = tx.Exec(ctx, text)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code, pe.Message, nil
	}
	return "", "", err
}

func hasLabel(d *sqlpolicy.Decision, label string) bool {
	for _, r := range d.Reasons {
		if r.Label == label {
			return true
		}
	}
	return false
}

// TestExplainPartitions: EXPLAIN ANALYZE shows a scan node per partition
// with its exact row count, so a query that filters on unlabelled
// columns only tells which partition, i.e. which range of the labelled
// partition key, each matching row is in. keyhole refuses the EXPLAIN
// of a partitioned table keyed on a labelled column, and keeps allowing
// the query itself and EXPLAIN of other tables.
func TestExplainPartitions(t *testing.T) {
	t.Parallel()
	eng, roleDSN := newOracleDB(t)
	p := sqlpolicy.Principal{Agent: "writer-agent"}
	const explain = "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT name FROM pay WHERE name = 'Ada'"

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, roleDSN)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, explain)
	require.NoError(t, err)
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	assert.Contains(t, strings.Join(lines, "\n"), "Seq Scan on pay_low pay_1 (actual rows=1",
		"the role's own grants show Ada's row in the partition of salaries below 50000")

	d, _ := eng.Check(p, explain, eng.NewSession())
	if assert.False(t, d.Allowed(), "keyhole allows %s", explain) {
		assert.True(t, hasLabel(d, "pii.salary"), "refused without label pii.salary: %s", reasonsJSON(d))
	}
	for _, text := range []string{
		"SELECT name FROM pay WHERE name = 'Ada'",
		"EXPLAIN ANALYZE SELECT note FROM signups WHERE note = 'x'",
		"EXPLAIN ANALYZE SELECT name FROM region_pay WHERE name = 'Ada'", // keyed on an unlabelled column
	} {
		d, _ := eng.Check(p, text, eng.NewSession())
		assert.True(t, d.Allowed(), "%s: %s", text, reasonsJSON(d))
	}
}
