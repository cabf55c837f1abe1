package myanalyze_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/catalog"
	"github.com/keyholedb/keyhole/internal/testmariadb"
	"github.com/keyholedb/keyhole/sqlpolicy"
	"github.com/keyholedb/keyhole/sqlpolicy/myanalyze"
)

// shop is the fixture database (testdata/mysql/shop.sql) loaded once per
// test binary; its name is random, so cases write "shop" and go through
// testmariadb.Rename.
var (
	shopOnce sync.Once
	shopCat  *catalog.Catalog
	shopName string
	shopErr  error
	shopDone func()
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shopDone != nil {
		shopDone()
	}
	os.Exit(code)
}

// loadShop creates the fixture database outside any one test (several
// tests share it) and returns its catalog read as the admin account.
func loadShop(t *testing.T) (*catalog.Catalog, string) {
	t.Helper()
	shopOnce.Do(func() {
		b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "mysql", "shop.sql"))
		if err != nil {
			shopErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		admin, err := sql.Open("mysql", testmariadb.WithDatabase(testmariadb.AdminDSN(), ""))
		if err != nil {
			shopErr = err
			return
		}
		name := testmariadb.RandName("kh_shop_")
		shopDone = func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, _ = admin.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+name+"`")
			_, _ = admin.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+name+"_internal`")
			admin.Close()
		}
		for _, db := range []string{name, name + "_internal"} {
			if _, shopErr = admin.ExecContext(ctx, "CREATE DATABASE `"+db+"`"); shopErr != nil {
				return
			}
		}
		db, err := sql.Open("mysql", testmariadb.WithDatabase(testmariadb.AdminDSN(), name))
		if err != nil {
			shopErr = err
			return
		}
		defer db.Close()
		if _, shopErr = db.ExecContext(ctx, testmariadb.Rename(string(b), name)); shopErr != nil {
			return
		}
		shopCat, shopErr = catalog.LoadMySQL(ctx, db)
		shopName = name
	})
	require.NoError(t, shopErr, "fixture database (is MariaDB running on 127.0.0.1:3306?)")
	return shopCat, shopName
}

// analyze analyzes sql (with "shop" renamed) in a fresh session of the
// shop catalog.
func analyze(t *testing.T, sql string) *sqlpolicy.Access {
	t.Helper()
	cat, name := loadShop(t)
	an := myanalyze.New(cat, myanalyze.Options{})
	return an.Analyze(testmariadb.Rename(sql, name), an.NewSession())
}
