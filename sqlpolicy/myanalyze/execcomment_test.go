package myanalyze_test

import (
	"context"
	"database/sql"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/internal/testmariadb"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/myanalyze"
)

// TestExecutableComments checks that the analyzer reads what MariaDB runs
// of executable and versioned comments: each text runs on the fixture
// database, and the analysis must read customers.email exactly when the
// server's result has the email column. Texts the analyzer refuses must
// be ones it cannot follow exactly.
func TestExecutableComments(t *testing.T) {
	t.Parallel()
	cat, name := loadShop(t)
	db, err := sql.Open("mysql", testmariadb.WithDatabase(testmariadb.AdminDSN(), name))
	require.NoError(t, err)
	defer db.Close()
	// ORDER BY id where id alone is read: customers_email_uq covers id,
	// and without a total order its email order counts as read.
	cases := []struct {
		sql     string
		refused bool
	}{
		{"SELECT id /*!, email */ FROM customers", false},
		{"SELECT id /*!40000 , email */ FROM customers", false},
		{"SELECT id /*!32311 , email */ FROM customers", false},
		{"SELECT id /*M!100000 , email */ FROM customers", false},
		{"SELECT id /*M! , email */ FROM customers", false},
		// 50700-99999 are MySQL 5.7/8 versions, which MariaDB skips unless
		// marked M!.
		{"SELECT id /*!50700 , email */ FROM customers ORDER BY id", false},
		{"SELECT id /*!80000 , email */ FROM customers ORDER BY id", false},
		{"SELECT id /*M!50700 , email */ FROM customers", false},
		// Versions above the server's are skipped.
		{"SELECT id /*!999999 , email */ FROM customers ORDER BY id", false},
		{"SELECT id /*M!999999 , email */ FROM customers ORDER BY id", false},
		{"SELECT id /*!100000 , email */ FROM customers", false},
		// A 7-digit number: the first six are the version, the seventh
		// digit is content.
		{"SELECT id+/*!1000000 , email */ FROM customers", false},
		// Strings and quoted names inside running content may hold "*/".
		{"SELECT id /*!40000 , '*/' */ FROM customers ORDER BY id", false},
		{"SELECT id /*!40000 , \"*/\", email */ FROM customers", false},
		{"SELECT id /*!40000 , `email`, 1 AS `*/` */ FROM customers", false},
		{"SELECT /*!40001 SQL_NO_CACHE */ id, email FROM customers", false},
		{"SELECT /*!40001 SQL_NO_CACHE */ id FROM customers ORDER BY id", false},
		// A skipped one is a comment to its first "*/".
		{"SELECT id /*!999999 , '*/, email FROM customers", false},
		// A line comment inside running content swallows the "*/".
		{"SELECT id /*!40000 -- */\n, email */ FROM customers", true},
		{"SELECT id /*!40000 # */\n, email */ FROM customers", true},
		{"SELECT id /*!40000 , email /* x */ */ FROM customers", true},
		{"SELECT id /*!999999 /* x */ , email */ FROM customers", true},
		{"SELECT id /*!40000 , email FROM customers", true},
		{"SELECT id /*!40000 , email; SELECT 1 */ FROM customers", true},
		// "--" then a marker: two minus signs to MariaDB, a "-- "
		// comment once the marker is blanked.
		{"SELECT 0 --/*!40000 -ASCII(email) */ FROM customers", true},
		{"SELECT 0 --/*!99999 x */-ASCII(email) FROM customers", true},
		{"SELECT 0 /*!40000 --*/-ASCII(email) FROM customers", true},
		{"SELECT 0 -/*!40000 -ASCII(email) */ AS email FROM customers", false},
	}
	an := myanalyze.New(cat, myanalyze.Options{})
	for _, c := range cases {
		t.Run(c.sql, func(t *testing.T) {
			a := an.Analyze(c.sql, an.NewSession())
			refused := slices.ContainsFunc(problems(a), func(p sqlpolicy.ProblemCode) bool {
				return p == sqlpolicy.ProblemUnsupported || p == sqlpolicy.ProblemUnparseable
			})
			assert.Equal(t, c.refused, refused, "%+v", a.Statements)
			if refused {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			rows, err := db.QueryContext(ctx, c.sql)
			require.NoError(t, err)
			cols, err := rows.Columns()
			require.NoError(t, err)
			require.NoError(t, rows.Close())
			assert.Equal(t, slices.Contains(cols, "email"), slices.Contains(reads(a), "customers.email"),
				"server columns %v, analyzer reads %v", cols, reads(a))
		})
	}
}

// TestExecutableCommentsNeedMariaDB checks that executable comments stay
// refused when the server is not known to be MariaDB: MySQL runs other
// versions (and /*M! not at all).
func TestExecutableCommentsNeedMariaDB(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"", "8.0.36", "5.7.44-log", "10.11.19"} {
		an := myanalyze.New(&catalog.Catalog{Dialect: "mysql", Version: v}, myanalyze.Options{})
		a := an.Analyze("SELECT 1 /*!40000 , 2 */", nil)
		assert.Contains(t, problems(a), sqlpolicy.ProblemUnsupported, "version %q", v)
	}
}
