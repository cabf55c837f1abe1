package mycorpus_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/creds"
	"github.com/keyholedb/keyhole/internal/testmariadb"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/myanalyze"
)

// oracleSchema has constraints whose checks look at labelled data: a
// signup's email must be a person's (labelled) email, a token must name a
// row of the secret vault, a person's audit rows (a secret table) keep the
// person from being deleted, and a staff member's credit limit must stay
// below the (labelled) salary, which a stored generated column adds to
// the bonus.
const oracleSchema = `
CREATE TABLE people (id INT PRIMARY KEY, name VARCHAR(50) NOT NULL, email VARCHAR(100) NOT NULL, UNIQUE KEY people_email (email));
CREATE TABLE vault (id INT PRIMARY KEY, secret VARCHAR(100) NOT NULL);
CREATE TABLE signups (id INT AUTO_INCREMENT PRIMARY KEY, email VARCHAR(100) NOT NULL, note VARCHAR(100),
    CONSTRAINT signups_email_fk FOREIGN KEY (email) REFERENCES people (email));
CREATE TABLE tokens (id INT AUTO_INCREMENT PRIMARY KEY, vault_id INT NOT NULL,
    CONSTRAINT tokens_vault_fk FOREIGN KEY (vault_id) REFERENCES vault (id));
CREATE TABLE invites (id INT AUTO_INCREMENT PRIMARY KEY, person_id INT NOT NULL,
    CONSTRAINT invites_person_fk FOREIGN KEY (person_id) REFERENCES people (id));
CREATE TABLE person_audit (id INT AUTO_INCREMENT PRIMARY KEY, person_id INT NOT NULL,
    CONSTRAINT person_audit_fk FOREIGN KEY (person_id) REFERENCES people (id)) COMMENT 'keyhole: secret';
CREATE TABLE staff (id INT PRIMARY KEY, name VARCHAR(50) NOT NULL, salary INT NOT NULL,
    credit_limit INT NOT NULL DEFAULT 0, bonus INT NOT NULL DEFAULT 0, pay INT AS (salary + bonus) STORED,
    reserve INT NOT NULL DEFAULT 0,
    CONSTRAINT staff_limit CHECK (credit_limit <= salary), CONSTRAINT staff_reserve CHECK (reserve <= pay));
INSERT INTO staff (id, name, salary) VALUES (1, 'Ada', 5000);
CREATE TABLE contacts (id INT PRIMARY KEY, email VARCHAR(100) NOT NULL,
    hint VARCHAR(120) DEFAULT (CONCAT('mail ', email)), note VARCHAR(20) DEFAULT 'none');
INSERT INTO contacts (id, email, hint) VALUES (1, 'ada@example.com', 'ask Ada');
CREATE TABLE members (id INT PRIMARY KEY, email VARCHAR(100) NOT NULL, tenant INT NOT NULL, tag VARCHAR(10) NOT NULL DEFAULT 'a',
    handle VARCHAR(120) AS (CONCAT(email, '/', tag)) VIRTUAL,
    UNIQUE KEY member_email (email, tenant), UNIQUE KEY member_handle (handle));
INSERT INTO members (id, email, tenant, tag) VALUES (1, 'ada@example.com', 1, 'a'), (2, 'ada@example.com', 2, 'b');
CREATE TABLE pay (id INT NOT NULL, name VARCHAR(20) NOT NULL, salary INT NOT NULL, PRIMARY KEY (id, salary))
    PARTITION BY RANGE (salary) (PARTITION p_low VALUES LESS THAN (50000), PARTITION p_high VALUES LESS THAN MAXVALUE);
INSERT INTO pay VALUES (1, 'Ada', 40000), (2, 'Alan', 90000);
CREATE TABLE directory (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(50) NOT NULL,
    email VARCHAR(100) DEFAULT (CONCAT(LOWER(name), '@example.com')), UNIQUE KEY directory_email (email));
INSERT INTO directory (name, email) VALUES ('x', 'ada@example.com');
CREATE TABLE visits (id INT AUTO_INCREMENT PRIMARY KEY, patient INT NOT NULL, diagnosis VARCHAR(40) NOT NULL DEFAULT 'hiv',
    UNIQUE KEY visit_diagnosis (patient, diagnosis));
INSERT INTO visits (patient, diagnosis) VALUES (7, 'hiv'), (8, 'flu');
CREATE TABLE tags (id INT AUTO_INCREMENT PRIMARY KEY, owner INT NOT NULL, code VARCHAR(20) DEFAULT NULL,
    UNIQUE KEY tag_code (owner, code));
INSERT INTO tags (owner, code) VALUES (1, 'x');
INSERT INTO people VALUES (1, 'Ada', 'ada@example.com'), (2, 'Alan', 'alan@example.com'), (3, 'Aaron', 'aaron@example.com');
INSERT INTO vault VALUES (7, 'hunter2');
INSERT INTO person_audit (person_id) VALUES (2);
`

const oraclePolicy = `
labels:
  shop.people.email: [pii.email]
  shop.vault: [secret]
  shop.staff.salary: [pii.salary]
  shop.contacts.email: [pii.email]
  shop.members.email: [pii.email]
  shop.pay.salary: [pii.salary]
  shop.directory.email: [pii.email]
  shop.visits.diagnosis: [pii.health]
  shop.tags.code: [pii.code]
roles:
  writer:
    upstream: shop
    allow:
      - select: [shop.people, shop.signups, shop.staff, shop.contacts, shop.members, shop.pay]
      - insert: [shop.signups, shop.tokens, shop.invites, shop.directory, shop.visits, shop.tags]
      - update: [shop.signups, shop.staff, shop.contacts, shop.members]
      - delete: [shop.people]
    deny_labels: [pii.*, secret]
    catalog: true
agents:
  writer-agent: {role: writer}
`

// TestConstraintOracles: a foreign key check answers whether a value is
// in the referenced column (and a RESTRICT whether referencing rows
// exist), and MariaDB asks no privilege on the other table for it, so a
// write the role may make probes labelled data it may not read. Each
// probe is run as a MariaDB user holding exactly the role's grants, once
// with a value that exists and once with one that does not: the outcomes
// differ (the oracle is real), and keyhole refuses the probe. The writes
// whose checks read only unlabelled keys stay allowed.
func TestConstraintOracles(t *testing.T) {
	t.Parallel()
	engine, udb, db := newOracleDB(t)

	probes := []struct {
		name      string
		hit, miss string // the probe with a value that exists, and one that does not
		hitErr    uint16 // MariaDB's answers (errno, 0 for success)
		missErr   uint16
		label     string // the label keyhole refuses it for
	}{
		{"insert looks up a labelled parent column",
			"INSERT INTO signups (email) VALUES ('ada@example.com')",
			"INSERT INTO signups (email) VALUES ('nobody@example.com')", 0, 1452, "pii.email"},
		{"insert select looks up a labelled parent column",
			"INSERT INTO signups (email, note) SELECT 'ada@example.com', name FROM people WHERE id = 1",
			"INSERT INTO signups (email, note) SELECT 'nobody@example.com', name FROM people WHERE id = 1", 0, 1452, "pii.email"},
		{"key update looks up a labelled parent column",
			"UPDATE signups SET email = 'ada@example.com'",
			"UPDATE signups SET email = 'nobody@example.com'", 0, 1452, "pii.email"},
		{"insert looks up a secret table's key",
			"INSERT INTO tokens (vault_id) VALUES (7)",
			"INSERT INTO tokens (vault_id) VALUES (8)", 0, 1452, "secret"},
		{"update checks a CHECK constraint over a labelled column",
			"UPDATE staff SET credit_limit = 4000 WHERE id = 1",
			"UPDATE staff SET credit_limit = 6000 WHERE id = 1", 0, 4025, "pii.salary"},
		{"update checks a CHECK constraint over a generated column over a labelled column",
			"UPDATE staff SET reserve = 4000 WHERE id = 1",
			"UPDATE staff SET reserve = 6000 WHERE id = 1", 0, 4025, "pii.salary"},
		{"update computes a generated column over a labelled column",
			"UPDATE staff SET bonus = 2147470000 WHERE id = 1",
			"UPDATE staff SET bonus = 2147480000 WHERE id = 1", 0, 1264, "pii.salary"},
		{"key update prints a unique key with a labelled column",
			"UPDATE members SET tenant = 2 WHERE id = 1",
			"UPDATE members SET tenant = 3 WHERE id = 1", 1062, 0, "pii.email"},
		{"update prints a unique generated column over a labelled column",
			"UPDATE members SET tag = 'b' WHERE id = 1",
			"UPDATE members SET tag = 'c' WHERE id = 1", 1062, 0, "pii.email"},
		{"insert compares a unique key whose labelled column takes its default expression",
			"INSERT INTO directory (name) VALUES ('Ada')",
			"INSERT INTO directory (name) VALUES ('Zed')", 1062, 0, "pii.email"},
		{"insert compares a unique key whose labelled column takes its constant default",
			"INSERT INTO visits (patient) VALUES (7)",
			"INSERT INTO visits (patient) VALUES (8)", 1062, 0, "pii.health"},
		{"restricted delete looks for a secret table's rows",
			"DELETE FROM people WHERE id = 2",
			"DELETE FROM people WHERE id = 1", 1451, 0, "secret"},
	}
	p := sqlpolicy.Principal{Agent: "writer-agent"}
	for _, tc := range probes {
		hit, miss := testmariadb.Rename(tc.hit, db.Name), testmariadb.Rename(tc.miss, db.Name)
		// The update probes need a row to update.
		setup := "INSERT INTO signups (email) VALUES ('alan@example.com')"
		hitNo, hitMsg, err := mariaOutcome(udb, []string{setup, hit})
		require.NoError(t, err)
		missNo, missMsg, err := mariaOutcome(udb, []string{setup, miss})
		require.NoError(t, err)
		assert.NotEqual(t, hitNo, missNo, "%s: MariaDB answers both alike (%s / %s): no oracle to test", tc.name, hitMsg, missMsg)
		assert.Equal(t, tc.hitErr, hitNo, "%s: %s", tc.name, hitMsg)
		assert.Equal(t, tc.missErr, missNo, "%s: %s", tc.name, missMsg)
		for _, text := range []string{hit, miss} {
			d, _ := engine.Check(p, text, engine.NewSession())
			if assert.False(t, d.Allowed(), "%s: keyhole allows %s", tc.name, text) {
				assert.True(t, hasLabel(d, tc.label), "%s: %s refused without label %s: %s", tc.name, text, tc.label, reasonsJSON(d))
			}
		}
	}

	// INSERT IGNORE skips a conflicting row without an error (0 rows
	// affected instead of 1), and INSERT ... SET leaves columns out too.
	for _, text := range []string{
		"INSERT IGNORE INTO visits (patient) SELECT 7",
		"INSERT INTO directory SET name = 'Ada'",
	} {
		d, _ := engine.Check(p, testmariadb.Rename(text, db.Name), engine.NewSession())
		assert.False(t, d.Allowed(), "keyhole allows %s", text)
	}

	for _, text := range []string{
		"INSERT INTO invites (person_id) VALUES (1)", // people.id is not labelled
		"UPDATE signups SET note = 'x' WHERE id = 1", // no key column
		"UPDATE staff SET name = 'x' WHERE id = 1",   // no constraint or generated column reads name
		"INSERT INTO tags (owner) VALUES (1)",        // the labelled key column defaults to NULL: no conflict
	} {
		d, _ := engine.Check(p, testmariadb.Rename(text, db.Name), engine.NewSession())
		assert.True(t, d.Allowed(), "%s: %s", text, reasonsJSON(d))
	}
}

// newOracleDB loads oracleSchema into a throwaway database and returns
// the engine deciding oraclePolicy over it, and connections as a MariaDB
// user holding exactly the writer role's grants.
func newOracleDB(t *testing.T) (*sqlpolicy.Engine, *sql.DB, *testmariadb.DB) {
	t.Helper()
	user, password := testmariadb.NewUser(t)
	db := testmariadb.New(t, oracleSchema)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin := testmariadb.Open(t, db.DSN)
	cat, err := catalog.LoadMySQL(ctx, admin)
	require.NoError(t, err)
	pol, _, err := sqlpolicy.ParsePolicy([]byte(testmariadb.Rename(oraclePolicy, db.Name)), "oracle.yaml", cat)
	require.NoError(t, err)
	engine := sqlpolicy.NewEngine(pol, cat, myanalyze.New(cat, myanalyze.Options{}), sqlpolicy.EngineOptions{})
	grants, _ := creds.MySQLGrants(pol, cat, pol.Roles["writer"], "'"+user+"'@'%'")
	for _, g := range grants {
		_, err := admin.ExecContext(ctx, g)
		require.NoError(t, err, g)
	}
	udb := testmariadb.Open(t, testmariadb.WithUser(db.DSN, user, password))
	udb.SetMaxIdleConns(0)
	return engine, udb, db
}

func hasLabel(d *sqlpolicy.Decision, label string) bool {
	for _, r := range d.Reasons {
		if r.Label == label {
			return true
		}
	}
	return false
}

// TestDefaultExpressions: a column's DEFAULT expression may name the
// row's other columns (MariaDB 10.2+), and DEFAULT(col), or SET col =
// DEFAULT, evaluates it over the row: contacts.hint's default spells out
// the labelled email. MariaDB asks a privilege on hint alone, so the
// role's own grants return the email; keyhole must refuse it.
func TestDefaultExpressions(t *testing.T) {
	t.Parallel()
	engine, udb, db := newOracleDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p := sqlpolicy.Principal{Agent: "writer-agent"}

	// What MariaDB gives the role's own grants.
	var got string
	require.NoError(t, udb.QueryRowContext(ctx, "SELECT DEFAULT(hint) FROM contacts WHERE id = 1").Scan(&got))
	assert.Equal(t, "mail ada@example.com", got, "the default shows the email to a user without a grant on it")

	for _, texts := range [][]string{
		{"SELECT id, DEFAULT(hint) FROM contacts"},
		{"SELECT id FROM contacts WHERE DEFAULT(hint) LIKE 'mail a%'"},
		{"SELECT d FROM (SELECT DEFAULT(c.hint) AS d FROM contacts c) x"},
		{"UPDATE contacts SET hint = DEFAULT WHERE id = 1", "SELECT hint FROM contacts WHERE id = 1"},
		{"UPDATE contacts SET HINT = DEFAULT WHERE id = 1", "SELECT hint FROM contacts WHERE id = 1"},
		{"UPDATE contacts SET note = DEFAULT(hint) WHERE id = 1", "SELECT note FROM contacts WHERE id = 1"},
	} {
		texts[0] = testmariadb.Rename(texts[0], db.Name)
		errno, msg, err := mariaOutcome(udb, texts)
		require.NoError(t, err)
		assert.Zero(t, errno, "%s: MariaDB refuses it (%s): nothing to show", texts[0], msg)
		d, _ := engine.Check(p, texts[0], engine.NewSession())
		if assert.False(t, d.Allowed(), "keyhole allows %s", texts[0]) {
			assert.True(t, hasLabel(d, "pii.email"), "%s refused without label pii.email: %s", texts[0], reasonsJSON(d))
		}
	}
	for _, text := range []string{
		"SELECT id, hint, DEFAULT(note) FROM contacts",    // a constant default
		"UPDATE contacts SET note = DEFAULT WHERE id = 1", // likewise
		"UPDATE contacts SET hint = 'x' WHERE id = 1",     // no default evaluated
	} {
		d, _ := engine.Check(p, testmariadb.Rename(text, db.Name), engine.NewSession())
		assert.True(t, d.Allowed(), "%s: %s", text, reasonsJSON(d))
	}
}

// TestPartitionSelection: naming partitions (FROM pay PARTITION (p_high))
// keeps the rows whose partitioning expression falls in them, a filter on
// the columns it names, here the labelled salary: MariaDB asks no
// privilege on them, keyhole must refuse it.
func TestPartitionSelection(t *testing.T) {
	t.Parallel()
	engine, udb, db := newOracleDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p := sqlpolicy.Principal{Agent: "writer-agent"}

	var name string
	require.NoError(t, udb.QueryRowContext(ctx, "SELECT name FROM pay PARTITION (p_high)").Scan(&name))
	assert.Equal(t, "Alan", name, "the role's own grants pick the rows by salary")

	for _, text := range []string{
		"SELECT id, name FROM pay PARTITION (p_high)",
		"SELECT COUNT(*) FROM pay PARTITION (p_low, p_high)",
		"SELECT o.name FROM pay o WHERE o.id IN (SELECT id FROM pay PARTITION (p_high))",
		"SELECT d.name FROM (SELECT name FROM shop.pay PARTITION (p_high)) d",
		// A partitioned table is scanned partition by partition: the
		// names come low salaries first (whatever the index).
		"SELECT id, name FROM pay",
		"SELECT name FROM pay USE INDEX ()",
	} {
		d, _ := engine.Check(p, testmariadb.Rename(text, db.Name), engine.NewSession())
		if assert.False(t, d.Allowed(), "keyhole allows %s", text) {
			assert.True(t, hasLabel(d, "pii.salary"), "%s refused without label pii.salary: %s", text, reasonsJSON(d))
		}
	}
	// information_schema.PARTITIONS counts each partition's rows: under
	// RANGE (salary), how many salaries fall in each range.
	var rows int
	require.NoError(t, udb.QueryRowContext(ctx, "SELECT TABLE_ROWS FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'pay' AND PARTITION_NAME = 'p_high'").Scan(&rows))
	assert.Equal(t, 1, rows, "the role's own grants count the rows by salary")
	for _, text := range []string{
		"SELECT PARTITION_NAME, TABLE_ROWS FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'pay'",
		"SELECT PARTITION_NAME, TABLE_ROWS FROM information_schema.PARTITIONS",
	} {
		d, _ := engine.Check(p, text, engine.NewSession())
		if assert.False(t, d.Allowed(), "keyhole allows %s", text) {
			assert.True(t, hasLabel(d, "pii.salary"), "%s refused without label pii.salary: %s", text, reasonsJSON(d))
		}
	}
	for _, text := range []string{
		"SELECT COUNT(*) FROM pay",
		"SELECT PARTITION_NAME, PARTITION_DESCRIPTION FROM information_schema.PARTITIONS WHERE TABLE_NAME = 'pay'",
	} {
		d, _ := engine.Check(p, text, engine.NewSession())
		assert.True(t, d.Allowed(), "%s: %s", text, reasonsJSON(d))
	}
}

// TestIndexHints: an index hint picks the index the server reads a table
// through, and without ORDER BY the rows come back in that index's order:
// FORCE INDEX (people_email) lists the people in the order of their
// (labelled) email, and MariaDB asks no privilege on email for it.
// IGNORE INDEX (PRIMARY) leaves the server the other indexes, which
// keyhole does not all know. Hints naming primary or unique keys read
// their columns; any other hint reads every column of the table.
func TestIndexHints(t *testing.T) {
	t.Parallel()
	engine, udb, db := newOracleDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p := sqlpolicy.Principal{Agent: "writer-agent"}

	ids := func(q string) []int {
		rows, err := udb.QueryContext(ctx, q)
		require.NoError(t, err, q)
		defer rows.Close()
		var out []int
		for rows.Next() {
			var id int
			require.NoError(t, rows.Scan(&id))
			out = append(out, id)
		}
		require.NoError(t, rows.Err())
		return out
	}
	assert.Equal(t, []int{1, 2, 3}, ids("SELECT id FROM people USE INDEX (PRIMARY)"), "primary key order")
	assert.Equal(t, []int{3, 1, 2}, ids("SELECT id FROM people FORCE INDEX (people_email)"),
		"the role's own grants list the ids in email order")

	for _, text := range []string{
		"SELECT id FROM people FORCE INDEX (people_email)",
		"SELECT id FROM people USE INDEX (people_email) LIMIT 1",
		"SELECT id FROM people IGNORE INDEX (PRIMARY)",
		"SELECT s.id FROM signups s JOIN people p FORCE INDEX (people_email) ON p.email = s.email",
		"SELECT id FROM people FORCE INDEX (no_such_index)",
	} {
		d, _ := engine.Check(p, testmariadb.Rename(text, db.Name), engine.NewSession())
		if assert.False(t, d.Allowed(), "keyhole allows %s", text) {
			assert.True(t, hasLabel(d, "pii.email"), "%s refused without label pii.email: %s", text, reasonsJSON(d))
		}
	}
	for _, text := range []string{
		"SELECT id FROM people USE INDEX (PRIMARY)",
		"SELECT id, name FROM people FORCE INDEX FOR ORDER BY (PRIMARY) ORDER BY id",
		"SELECT id FROM people USE INDEX ()",
	} {
		d, _ := engine.Check(p, testmariadb.Rename(text, db.Name), engine.NewSession())
		assert.True(t, d.Allowed(), "%s: %s", text, reasonsJSON(d))
	}
}
