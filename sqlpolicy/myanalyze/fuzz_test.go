package myanalyze_test

import (
	"testing"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/myanalyze"
)

// fuzzCatalog is a small catalog built in memory, so the fuzz target needs
// no database.
func fuzzCatalog() *catalog.Catalog {
	col := func(names ...string) []*catalog.Column {
		var out []*catalog.Column
		for _, n := range names {
			out = append(out, &catalog.Column{Name: n, Type: "int"})
		}
		return out
	}
	return &catalog.Catalog{
		Dialect: "mysql", Database: "shop", SearchPath: []string{"shop"},
		Relations: map[string]map[string]*catalog.Relation{
			"shop": {
				"customers": {Schema: "shop", Name: "customers", Kind: catalog.KindTable, Columns: col("id", "name", "email", "ssn")},
				"orders":    {Schema: "shop", Name: "orders", Kind: catalog.KindTable, Columns: col("id", "customer_id", "total")},
				"v": {Schema: "shop", Name: "v", Kind: catalog.KindView, Columns: col("id", "e"),
					Definition: "select `shop`.`customers`.`id` AS `id`,`shop`.`customers`.`email` AS `e` from `shop`.`customers`"},
			},
			"information_schema": {
				"COLUMNS": {Schema: "information_schema", Name: "COLUMNS", Kind: catalog.KindTable, System: true, Columns: col("TABLE_NAME", "COLUMN_NAME")},
			},
		},
		Functions: map[string]map[string]*catalog.Function{"shop": {"f": {Schema: "shop", Name: "f", Kind: "function"}}},
	}
}

// FuzzAnalyze feeds arbitrary text to the analyzer: it must never panic
// (a parser panic becomes a Problem) and never allow a text it could not
// parse.
func FuzzAnalyze(f *testing.F) {
	for _, s := range []string{
		"SELECT * FROM customers c JOIN orders o USING (id) WHERE c.email = 'x'",
		"WITH RECURSIVE r (a) AS (SELECT 1 UNION ALL SELECT a + 1 FROM r WHERE a < 3) SELECT * FROM r",
		"SELECT e FROM v NATURAL RIGHT JOIN (SELECT id FROM orders) d",
		"INSERT INTO orders (id) VALUES (1) ON DUPLICATE KEY UPDATE total = VALUES(total)",
		"UPDATE orders o JOIN customers c ON c.id = o.customer_id SET o.total = 1 WHERE c.ssn > ''",
		"PREPARE s FROM 'SELECT f(1)'; EXECUTE s; DEALLOCATE PREPARE s",
		"SELECT 1 /*! , 2 */", "SET NAMES gbk", "SHOW COLUMNS FROM customers",
		"SELECT (SELECT x FROM (SELECT email AS x) d) FROM customers GROUP BY 1 HAVING x",
		"SELECT id /*!40000 , email */ FROM customers", "SELECT 0 --/*!40000 -ASCII(email) */ FROM customers",
		"/*!40100 SET @@SQL_MODE='' */", "SELECT /*M!100000 email, */ id FROM customers /*!99999 x */",
		"SELECT id FROM customers USE INDEX (PRIMARY) ORDER BY id",
	} {
		f.Add(s)
	}
	// Without a server version executable comments are refused; with
	// MariaDB's they are expanded as the server runs them.
	mariadb := fuzzCatalog()
	mariadb.Version = "10.11.19-MariaDB-0+deb12u1"
	analyzers := []*myanalyze.Analyzer{
		myanalyze.New(fuzzCatalog(), myanalyze.Options{MaxBytes: 1 << 16}),
		myanalyze.New(mariadb, myanalyze.Options{MaxBytes: 1 << 16}),
	}
	f.Fuzz(func(t *testing.T, sql string) {
		for _, an := range analyzers {
			fuzzAnalyze(t, an, sql)
		}
	})
}

// fuzzAnalyze runs one text through an, checking what FuzzAnalyze promises.
func fuzzAnalyze(t *testing.T, an *myanalyze.Analyzer, sql string) {
	t.Helper()
	s := an.NewSession()
	a := an.Analyze(sql, s)
	if a == nil || len(a.Statements) == 0 && len(sql) > 0 && hasContent(sql) {
		// An empty Access is fine only for texts of comments and
		// white space.
		if a == nil {
			t.Fatalf("nil Access for %q", sql)
		}
	}
	for _, st := range a.Statements {
		for _, p := range st.Problems {
			if p.Code == "" {
				t.Fatalf("problem without a code for %q", sql)
			}
		}
	}
	s.Note(a)
	s.Apply(a)
	_, _ = an.Normalize(sql)
	_ = sqlpolicy.Access{}
}

func hasContent(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] > ' ' {
			return true
		}
	}
	return false
}
