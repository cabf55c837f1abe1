package mycorpus_test

import (
	"database/sql"
	"fmt"
	"os"
	"strings"
	"testing"

	_ "github.com/go-sql-driver/mysql"
)

func TestRaw(t *testing.T) {
	db, err := sql.Open("mysql", "root@tcp(127.0.0.1:3306)/kh5shop?multiStatements=true")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	for _, q := range strings.Split(os.Getenv("QS"), "\n@@\n") {
		rows, err := db.Query(q)
		if err != nil {
			fmt.Printf("%q ERR %v\n", q, err)
			continue
		}
		cols, _ := rows.Columns()
		var out []string
		for rows.Next() {
			vals := make([]sql.RawBytes, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			rows.Scan(ptrs...)
			var r []string
			for _, v := range vals {
				r = append(r, string(v))
			}
			out = append(out, strings.Join(r, "|"))
		}
		rows.Close()
		fmt.Printf("%q cols=%v rows=%v\n", q, cols, out)
	}
}
