package pgproxy_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/audit"
)

// Protocol-level (Parse) and SQL-level (PREPARE) prepared statements share
// one namespace in Postgres. A DEALLOCATE of a Parsed name followed by a
// PREPARE of it, or a Close of a PREPAREd name followed by a Parse of it,
// puts another text under the name than the one keyhole decided it as:
// after the policy narrows, a Bind (or EXECUTE) of the name must not be
// decided on the old text while the server runs the new one.
func TestPreparedNamespaceIsShared(t *testing.T) {
	e := newEnv(t, envOpts{raw: true})
	_, narrowed := e.ordersRevoked()

	r := e.raw(t)
	r.login(e, "analyst-bot")
	// DEALLOCATE drops a Parsed statement; PREPARE reuses its name.
	assert.Equal(t, []string{"Z:I"}, r.exchange(&pgproto3.Parse{Name: "p1", Query: "SELECT 1"}))
	assert.Equal(t, []string{"C", "Z:I"}, r.query("DEALLOCATE p1"))
	assert.Equal(t, []string{"C", "Z:I"}, r.query("PREPARE p1 AS SELECT id FROM orders"))
	// DEALLOCATE ALL (and DISCARD ALL) drop every Parsed statement.
	assert.Equal(t, []string{"Z:I"}, r.exchange(&pgproto3.Parse{Name: "p3", Query: "SELECT 3"}))
	assert.Equal(t, []string{"C", "Z:I"}, r.query("DEALLOCATE ALL"))
	assert.Equal(t, []string{"C", "Z:I"}, r.query("PREPARE p3 AS SELECT id FROM orders"))
	// A Close of a PREPAREd name drops it; a Parse reuses the name.
	assert.Equal(t, []string{"C", "Z:I"}, r.query("PREPARE p2 AS SELECT 2"))
	assert.Equal(t, []string{"3", "Z:I"}, r.exchange(&pgproto3.Close{ObjectType: 'S', Name: "p2"}))
	assert.Equal(t, []string{"Z:I"}, r.exchange(&pgproto3.Parse{Name: "p2", Query: "SELECT id FROM orders"}))

	e.setPolicy(narrowed)
	require.NoError(t, e.g.ReloadPolicy())
	assert.Equal(t, []string{"E:42501", "Z:I"}, r.query("SELECT id FROM orders"))
	for _, name := range []string{"p1", "p3"} {
		assert.Equal(t, []string{"E:26000", "Z:I"}, r.exchange(&pgproto3.Bind{PreparedStatement: name}, &pgproto3.Execute{}),
			"Bind %s runs the PREPAREd text, not the Parsed one", name)
	}
	assert.Equal(t, []string{"E:42501", "Z:I"}, r.exchange(&pgproto3.Bind{PreparedStatement: "p2"}, &pgproto3.Execute{}),
		"the Parse of p2 is decided again")
	// keyhole no longer knows p2 as a PREPAREd statement: refused as
	// Postgres refuses an unknown name.
	assert.Equal(t, []string{"E:26000", "Z:I"}, r.query("EXECUTE p2"), "EXECUTE p2 runs the Parsed text, not the PREPAREd one")

	for _, ev := range e.audit.Events() {
		if ev.Kind == audit.KindStatement {
			assert.NotContains(t, []string{"SELECT 1", "SELECT 2", "SELECT 3"}, ev.Statement, "audited as a text the server did not run")
		}
	}
}
