package sqlpolicy_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/keyholedb/keyhole/sqlpolicy"
)

// ChangesSchema picks the texts after which the front ends have the
// catalog read again: DDL, but not the DDL-verb commands that change only
// data or storage.
func TestChangesSchema(t *testing.T) {
	t.Parallel()
	acc := func(sts ...sqlpolicy.Statement) *sqlpolicy.Access { return &sqlpolicy.Access{Statements: sts} }
	ddl := func(cmd string) sqlpolicy.Statement {
		return sqlpolicy.Statement{Verb: sqlpolicy.VerbDDL, Command: cmd}
	}
	sel := sqlpolicy.Statement{Verb: sqlpolicy.VerbSelect, Command: "SELECT"}
	assert.False(t, sqlpolicy.ChangesSchema(nil))
	assert.False(t, sqlpolicy.ChangesSchema(acc(sel)))
	assert.True(t, sqlpolicy.ChangesSchema(acc(sel, ddl("CREATE TABLE"))))
	assert.True(t, sqlpolicy.ChangesSchema(acc(ddl("COMMENT"))), "comments carry labels")
	for _, cmd := range []string{"TRUNCATE", "TRUNCATE TABLE", "SET CONSTRAINTS", "REFRESH MATERIALIZED VIEW", "CLUSTER", "REINDEX"} {
		assert.False(t, sqlpolicy.ChangesSchema(acc(ddl(cmd))), cmd)
	}
}
