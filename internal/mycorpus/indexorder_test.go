package mycorpus_test

import (
	"context"
	"database/sql"
	"slices"
	"strings"
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

// indexSchema has indexes over labelled columns: a secondary index holds
// the primary key too, so by_ssn covers SELECT id, and by_name_ssn
// orders the rows of one name by ssn. members has a unique index on a
// labelled column (as a customer's email usually has), by_tax, and one
// on a column the role may read, by_mrn, whose values '7' and '07' both
// equal 7; by_mrn_tax orders the rows of one mrn by tax.
const indexSchema = `
CREATE TABLE patients (id INT PRIMARY KEY, name VARCHAR(20) NOT NULL, ssn VARCHAR(20), ward VARCHAR(200),
    KEY by_ssn (ssn), KEY by_name_ssn (name, ssn), KEY by_ward (ward)) ENGINE=InnoDB;
INSERT INTO patients VALUES (1, 'b', '9', 'w1'), (2, 'a', '3', 'w1'), (3, 'a', '1', 'w2'), (4, 'c', '5', 'w2'), (5, 'a', '2', 'w3');
CREATE TABLE members (id INT PRIMARY KEY, name VARCHAR(20) NOT NULL, tax VARCHAR(20), mrn VARCHAR(20), note VARCHAR(200),
    UNIQUE KEY by_tax (tax), UNIQUE KEY by_mrn (mrn), KEY by_mrn_tax (mrn, tax)) ENGINE=InnoDB;
INSERT INTO members VALUES (1, 'b', 't5', '7', 'x'), (2, 'a', 't1', '07', 'x'), (3, 'a', 't3', 'm3', 'x'), (4, 'c', NULL, 'm4', 'x'), (5, 'a', 't2', NULL, 'x');
CREATE TABLE codes (id VARCHAR(20) PRIMARY KEY, ssn VARCHAR(20), KEY by_ssn (ssn)) ENGINE=InnoDB;
INSERT INTO codes VALUES ('a', '9'), ('b', '1'), ('c', '5');
CREATE TABLE plain (id INT PRIMARY KEY, name VARCHAR(20), ssn VARCHAR(20), KEY by_name (name)) ENGINE=InnoDB;
INSERT INTO plain VALUES (1, 'x', '1'), (2, 'y', '2');
CREATE VIEW patient_ids AS SELECT id FROM patients;
CREATE TABLE ppay (id INT NOT NULL, salary INT NOT NULL, ssn VARCHAR(20), note VARCHAR(200), KEY by_ssn_id (ssn, id))
    PARTITION BY RANGE (salary) (PARTITION p_low VALUES LESS THAN (50000), PARTITION p_high VALUES LESS THAN MAXVALUE);
INSERT INTO ppay VALUES (1, 60000, '9', 'x'), (2, 70000, '3', 'x'), (3, 80000, '1', 'x'), (4, 10000, '5', 'x');
ANALYZE TABLE patients, plain, ppay, members, codes;
`

const indexPolicy = `
labels:
  shop.patients.ssn: [pii.ssn]
  shop.members.tax: [pii.ssn]
  shop.codes.ssn: [pii.ssn]
  shop.plain.ssn: [pii.ssn]
  shop.ppay.ssn: [pii.ssn]
roles:
  reader:
    upstream: shop
    allow:
      - select: [shop.patients, shop.plain, shop.patient_ids, shop.ppay, shop.members, shop.codes]
    deny_labels: [pii.*]
    catalog: true
agents:
  reader-agent: {role: reader}
`

// TestIndexOrder: without an ORDER BY that sorts them completely, MariaDB
// returns rows in the order of the index it reads them through, which it
// picks by itself (a covering scan of the smallest index, a ref or range
// access), and asks no privilege on that index's columns: SELECT id FROM
// patients lists the ids in ssn order. For each query, the index the
// server's plan reads the table through (EXPLAIN's key) must be one whose
// columns keyhole counts as read; queries that may come back in the
// order of a labelled column are refused, the others allowed. An index's
// CARDINALITY (SHOW INDEX) reads the columns of the indexes, not the
// whole table.
func TestIndexOrder(t *testing.T) {
	t.Parallel()
	db := testmariadb.New(t, indexSchema)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin := testmariadb.Open(t, db.DSN)
	cat, err := catalog.LoadMySQL(ctx, admin)
	require.NoError(t, err)
	pol, _, err := sqlpolicy.ParsePolicy([]byte(testmariadb.Rename(indexPolicy, db.Name)), "index.yaml", cat)
	require.NoError(t, err)
	an := myanalyze.New(cat, myanalyze.Options{})
	engine := sqlpolicy.NewEngine(pol, cat, an, sqlpolicy.EngineOptions{})
	user, password := testmariadb.NewUser(t)
	grants, _ := creds.MySQLGrants(pol, cat, pol.Roles["reader"], "'"+user+"'@'%'")
	for _, g := range grants {
		_, err := admin.ExecContext(ctx, g)
		require.NoError(t, err, g)
	}
	udb := testmariadb.Open(t, testmariadb.WithUser(db.DSN, user, password))
	udb.SetMaxIdleConns(0)

	ids := func(q string) []int { return queryIDs(ctx, t, udb, q) }
	assert.Equal(t, []int{3, 5, 2, 4, 1}, ids("SELECT id FROM patients"), "the role's own grants list the ids in ssn order")
	assert.Equal(t, []int{3, 5, 2}, ids("SELECT id FROM patients WHERE name = 'a'"), "the a's in ssn order")
	assert.Equal(t, []int{3, 5, 2, 4, 1}, queryIDs(ctx, t, admin, "SELECT id FROM patient_ids"), "through a view too")
	assert.Equal(t, []int{3, 2, 1}, ids("SELECT id FROM ppay PARTITION (p_high)"), "a partition's ids in ssn order")

	// keys is the index EXPLAIN says the server reads patients or plain
	// through ("" for none, PRIMARY for a clustered scan).
	keys := func(q string) []string {
		rows, err := admin.QueryContext(ctx, "EXPLAIN "+q)
		require.NoError(t, err, q)
		defer rows.Close()
		cols, err := rows.Columns()
		require.NoError(t, err)
		var out []string
		for rows.Next() {
			vals := make([]sql.NullString, len(cols))
			ptrs := make([]any, len(vals))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			require.NoError(t, rows.Scan(ptrs...))
			key, typ := "", ""
			for i, c := range cols {
				switch c {
				case "key":
					key = vals[i].String
				case "type":
					typ = vals[i].String
				}
			}
			if key == "" && typ == "ALL" {
				key = "PRIMARY"
			}
			if key != "" {
				out = append(out, strings.Split(key, ",")...)
			}
		}
		return out
	}
	indexCols := map[string][]string{"PRIMARY": {"id"}, "by_ssn_id": {"ssn", "id"}, "by_ssn": {"ssn"}, "by_name_ssn": {"name", "ssn"}, "by_ward": {"ward"}, "by_name": {"name"}, "by_tax": {"tax"}, "by_mrn": {"mrn"}, "by_mrn_tax": {"mrn", "tax"}}
	reads := func(q string) []string {
		var out []string
		for _, st := range an.Analyze(q, an.NewSession()).Statements {
			for _, c := range st.Columns {
				if c.Mode == sqlpolicy.Read {
					out = append(out, c.Column)
				}
			}
		}
		return out
	}
	// hints force each index in turn where a query has {h}: a query
	// whose rows and order do not depend on the index the server reads
	// returns the same through every one.
	hints := map[string][]string{
		"patients": {"", "FORCE INDEX (PRIMARY)", "FORCE INDEX (by_ssn)", "FORCE INDEX (by_name_ssn)", "FORCE INDEX (by_ward)", "IGNORE INDEX (PRIMARY)"},
		"members":  {"", "FORCE INDEX (PRIMARY)", "FORCE INDEX (by_tax)", "FORCE INDEX (by_mrn)", "FORCE INDEX (by_mrn_tax)", "IGNORE INDEX (PRIMARY)"},
	}
	labelledIndex := map[string]bool{"by_ssn": true, "by_name_ssn": true, "by_tax": true, "by_mrn_tax": true}
	for _, c := range []struct {
		sql   string
		allow bool
		// fixed: the result is the same through every index of hints,
		// and at least one of them is over a labelled column (EXPLAIN).
		// leaks: the result differs between them.
		fixed, leaks bool
	}{
		{"SELECT id FROM patients", false, false, false},
		{"SELECT GROUP_CONCAT(id) FROM patients", false, false, false},
		{"SELECT id FROM patients WHERE name = 'a'", false, false, false},
		{"SELECT id, name FROM patients", false, false, false},
		{"SELECT p.id FROM patients p JOIN plain q ON q.id = p.id", false, false, false},
		{"SELECT id FROM patient_ids", false, false, false},
		// The partition selection reads salary to pick partitions, not
		// from the rows: by_ssn_id still covers the ids.
		{"SELECT id FROM ppay PARTITION (p_high)", false, false, false},
		{"SELECT id, note FROM ppay PARTITION (p_high)", true, false, false},
		{"SELECT id FROM patients WHERE ward = 'w2'", true, false, false},
		{"SELECT id, ward FROM patients", true, false, false},
		// by_name_ssn starts with a column the query reads: keyhole does
		// not tell a WHERE or ORDER BY on name (a ref access or an
		// ordered scan through it) from a select list, and refuses.
		{"SELECT id, name, ward FROM patients", false, false, false},
		{"SELECT id, name, ward FROM patients USE INDEX (PRIMARY) WHERE name = 'a'", true, false, false},
		{"SELECT COUNT(*) FROM patients", true, false, false},
		{"SELECT id FROM patients USE INDEX (PRIMARY)", true, false, false},
		{"SELECT id FROM patients FORCE INDEX (by_ward)", true, false, false},
		{"SELECT id FROM patients USE INDEX ()", true, false, false},
		{"SELECT id FROM patients FORCE INDEX (by_ssn)", false, false, false},
		{"SELECT id FROM patients USE INDEX FOR ORDER BY (PRIMARY)", false, false, false},
		{"SELECT id, name FROM plain", true, false, false},
		{"SELECT name FROM plain WHERE name > 'a'", true, false, false},
		{"SHOW INDEX FROM plain", true, false, false},
		{"SELECT INDEX_NAME, CARDINALITY FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'plain'", true, false, false},
		{"SHOW INDEX FROM patients", false, false, false},

		// A total ORDER BY: plain columns including the primary key.
		{"SELECT id FROM patients {h} ORDER BY id", true, true, false},
		{"SELECT id, name FROM patients {h} ORDER BY id DESC LIMIT 3", true, true, false},
		{"SELECT id, name FROM patients {h} WHERE name = 'a' ORDER BY name, id", true, true, false},
		{"SELECT p.id, UPPER(p.name) FROM patients p {h} WHERE p.name <> 'x' ORDER BY p.name DESC, p.id", true, true, false},
		// A unique index on a labelled column covers every query of the
		// primary key alone.
		{"SELECT id FROM members {h} ORDER BY id LIMIT 3", true, true, false},
		{"SELECT id FROM members", false, false, false},
		// A string key is sorted on its first max_sort_length bytes
		// (which the session may lower): not taken apart.
		{"SELECT id FROM codes ORDER BY id", false, false, false},
		// Ties: the rows of one name come in the order of the index.
		{"SELECT id, name FROM patients {h} ORDER BY name", false, false, true},
		{"SELECT id FROM patients {h} ORDER BY name", false, false, true},
		// An alias is what ORDER BY names first: this orders by name.
		{"SELECT id AS pid, name AS id FROM patients {h} ORDER BY id", false, false, true},
		// GROUP_CONCAT concatenates in the order it reads, whatever the
		// statement's ORDER BY.
		{"SELECT GROUP_CONCAT(id) FROM patients {h} ORDER BY id", false, false, true},
		{"SELECT id, RAND(1) FROM patients ORDER BY id", false, false, false},
		{"SELECT id, @n := @n + 1 FROM patients ORDER BY id", false, false, false},
		// Not taken apart: joins, derived tables and views stay refused.
		{"SELECT p.id FROM patients p JOIN plain q ON q.id = p.id ORDER BY p.id, q.id", false, false, false},
		{"SELECT id FROM (SELECT id FROM patients ORDER BY id LIMIT 10) d ORDER BY id", false, false, false},
		{"SELECT id FROM patient_ids ORDER BY id", false, false, false},
		{"SELECT id FROM ppay ORDER BY id", false, false, false},
		// At most one row: the primary key or a unique index equal to a
		// literal of its kind.
		{"SELECT id, name FROM patients {h} WHERE id = 3", true, true, false},
		{"SELECT GROUP_CONCAT(name) FROM patients {h} WHERE id = 2", true, true, false},
		{"SELECT id, mrn FROM members {h} WHERE mrn = 'm3'", true, true, false},
		{"SELECT id FROM members {h} WHERE id = 2", true, true, false},
		// mrn = 7 converts: '7' and '07' both match.
		{"SELECT id, mrn FROM members {h} WHERE mrn = 7", false, false, true},
		{"SELECT id, name FROM patients WHERE id = 3 OR id = 5", false, false, false},
		// A string converts (id = '3x' matches 3): not taken apart.
		{"SELECT id, name FROM patients WHERE id = '3'", false, false, false},
		// One row of order-insensitive aggregates.
		{"SELECT COUNT(id), MIN(id), MAX(id), SUM(id), AVG(id) FROM patients {h}", true, true, false},
		{"SELECT COUNT(id), MIN(id), SUM(id) FROM members {h}", true, true, false},
		{"SELECT COUNT(*) FROM patients {h} WHERE name = 'a'", true, true, false},
		{"SELECT COUNT(DISTINCT name) FROM patients {h}", true, true, false},
		{"SELECT id, COUNT(*) FROM patients {h}", false, false, true},
		{"SELECT GROUP_CONCAT(id) FROM patients {h}", false, false, true},
		{"SELECT MIN(name) FROM patients", false, false, false},
	} {
		t.Run(c.sql, func(t *testing.T) {
			sql := strings.Replace(c.sql, " {h}", "", 1)
			d, _ := engine.Check(sqlpolicy.Principal{Agent: "reader-agent"}, sql, engine.NewSession())
			assert.Equal(t, c.allow, d.Allowed(), "%s", reasonsJSON(d))
			if !c.allow && !d.Allowed() {
				assert.True(t, hasLabel(d, "pii.ssn"), "refused without label pii.ssn: %s", reasonsJSON(d))
			}
			if strings.HasPrefix(sql, "SHOW") || strings.Contains(sql, "information_schema") {
				return
			}
			if c.fixed || c.leaks {
				want := queryRows(ctx, t, admin, sql)
				differs, labelled := false, false
				table := "patients"
				if strings.Contains(sql, "members") {
					table = "members"
				}
				for _, h := range hints[table] {
					q := strings.Replace(c.sql, "{h}", h, 1)
					got := queryRows(ctx, t, admin, q)
					if c.fixed {
						assert.Equal(t, want, got, "%s", q)
					}
					differs = differs || !slices.Equal(want, got)
					for _, k := range keys(q) {
						labelled = labelled || labelledIndex[k]
					}
				}
				if c.fixed {
					assert.True(t, labelled, "no hint made the server read through an index over a labelled column")
					return
				}
				assert.True(t, differs, "the same rows whatever the index: not a leak")
			}
			got := reads(sql)
			if len(got) == 0 {
				// No column of the rows comes back (COUNT(*)): no order.
				return
			}
			for _, k := range keys(sql) {
				for _, col := range indexCols[k] {
					assert.True(t, slices.Contains(got, col), "the server reads through %s, keyhole's reads %v lack %s", k, got, col)
				}
			}
		})
	}

	// A refusal for the order alone names the index, not a column the
	// query does not name, and its hint's two fixes are allowed.
	t.Run("refusal names the index and the fix", func(t *testing.T) {
		d, _ := engine.Check(sqlpolicy.Principal{Agent: "reader-agent"}, "SELECT id FROM members", engine.NewSession())
		require.False(t, d.Allowed())
		assert.Regexp(t, `in the order of its index by_(mrn_)?tax on tax, which is labelled pii.ssn`, d.Message)
		assert.Contains(t, d.Hint, "The query does not name tax")
		assert.Contains(t, d.Hint, "FROM members USE INDEX (PRIMARY)")
		assert.Contains(t, d.Hint, "ORDER BY id")
		assert.NotContains(t, d.Hint, "Remove tax")
		for _, fixed := range []string{"SELECT id FROM members USE INDEX (PRIMARY)", "SELECT id FROM members ORDER BY id"} {
			d, _ := engine.Check(sqlpolicy.Principal{Agent: "reader-agent"}, fixed, engine.NewSession())
			assert.True(t, d.Allowed(), "%s: %s", fixed, reasonsJSON(d))
		}
		// A query naming the column gets the usual refusal.
		d, _ = engine.Check(sqlpolicy.Principal{Agent: "reader-agent"}, "SELECT id, tax FROM members", engine.NewSession())
		assert.Contains(t, d.Hint, "Remove tax from the query")
	})
}

// queryIDs runs q, whose rows are one integer each, and returns them in
// the order the server sent them.
func queryIDs(ctx context.Context, t *testing.T, db *sql.DB, q string) []int {
	t.Helper()
	rows, err := db.QueryContext(ctx, q)
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

// queryRows runs q and returns its rows, each as its values joined by
// tabs, in the order the server sent them.
func queryRows(ctx context.Context, t *testing.T, db *sql.DB, q string) []string {
	t.Helper()
	rows, err := db.QueryContext(ctx, q)
	require.NoError(t, err, q)
	defer rows.Close()
	cols, err := rows.Columns()
	require.NoError(t, err)
	var out []string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		require.NoError(t, rows.Scan(ptrs...))
		line := make([]string, len(vals))
		for i, v := range vals {
			line[i] = v.String
			if !v.Valid {
				line[i] = "NULL"
			}
		}
		out = append(out, strings.Join(line, "\t"))
	}
	require.NoError(t, rows.Err())
	return out
}
