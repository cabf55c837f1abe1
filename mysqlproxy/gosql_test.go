package mysqlproxy_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

func TestGoSQLDriver(t *testing.T) {
	e := newEnv(t, envOpts{maxRows: 1000})
	for _, interpolate := range []bool{false, true} {
		t.Run(map[bool]string{false: "binary", true: "interpolated"}[interpolate], func(t *testing.T) {
			c := e.cfg("analyst-bot")
			c.InterpolateParams = interpolate
			db := e.open(c)
			ctx := context.Background()

			rows, err := db.QueryContext(ctx, "SELECT id, item, amount FROM orders ORDER BY id")
			require.NoError(t, err)
			n := 0
			for rows.Next() {
				var id int
				var item, amount string
				require.NoError(t, rows.Scan(&id, &item, &amount))
				n++
				assert.Equal(t, n, id)
			}
			require.NoError(t, rows.Err())
			assert.Equal(t, 20, n)

			// A denied column: 1143 (42000), and the session goes on.
			_, err = db.QueryContext(ctx, "SELECT id, email FROM customers")
			require.Error(t, err)
			assert.EqualValues(t, 1143, errno(err))
			assert.Equal(t, "42000", sqlstate(err))
			assert.Contains(t, err.Error(), "pii.email")
			var id int
			var item string
			require.NoError(t, db.QueryRowContext(ctx, "SELECT id, item FROM orders WHERE id = ?", 3).Scan(&id, &item))
			assert.Equal(t, "item3", item)

			// A denied write leaves the rows.
			before := e.count("orders")
			_, err = db.ExecContext(ctx, "DELETE FROM orders WHERE id = ?", 1)
			assert.EqualValues(t, 1142, errno(err))
			assert.Equal(t, before, e.count("orders"))
		})
	}
}

func TestPreparedReexecuted(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	sc := e.conn(e.cfg("analyst-bot"))
	st, err := sc.PrepareContext(ctx, "SELECT id, item FROM orders WHERE id = ?")
	require.NoError(t, err)
	for _, want := range []int{1, 7, 20} {
		var id int
		var item string
		require.NoError(t, st.QueryRowContext(ctx, want).Scan(&id, &item))
		assert.Equal(t, want, id)
	}
	// A policy reload between executes that takes orders away: the
	// cached statement is refused.
	e.setPolicy(t, `
labels:
  %[1]s.customers.email: [pii.email]
roles:
  analyst:
    upstream: shop
    allow:
      - select: [%[1]s.customers]
    deny_labels: [pii.*]
`+testAgents)
	e.reload(t)
	var id int
	err = st.QueryRowContext(ctx, 2).Scan(&id)
	assert.EqualValues(t, 1142, errno(err))
	require.NoError(t, st.Close())

	// A denied prepare never reaches the server.
	_, err = sc.PrepareContext(ctx, "SELECT email FROM customers WHERE id = ?")
	assert.EqualValues(t, 1143, errno(err))
	var one int
	require.NoError(t, sc.QueryRowContext(ctx, "SELECT 1").Scan(&one))
}

func TestTransactions(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	db := e.open(e.cfg("analyst-bot"))
	before := e.count("orders")

	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = tx.ExecContext(ctx, "INSERT INTO orders (id, item, amount) VALUES (?, ?, ?)", 100, "x", 1)
	require.NoError(t, err)
	// A refused statement does not end the transaction (MySQL keeps a
	// transaction open after a statement error): the insert commits.
	_, err = tx.ExecContext(ctx, "DELETE FROM orders WHERE id = ?", 100)
	assert.EqualValues(t, 1142, errno(err))
	require.NoError(t, tx.Commit())
	assert.Equal(t, before+1, e.count("orders"))

	tx, err = db.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = tx.ExecContext(ctx, "INSERT INTO orders (id, item, amount) VALUES (?, ?, ?)", 101, "y", 2)
	require.NoError(t, err)
	require.NoError(t, tx.Rollback())
	assert.Equal(t, before+1, e.count("orders"))
}

func TestMultiStatements(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.cfg("analyst-bot")
	c.MultiStatements = true
	db := e.open(c)
	ctx := context.Background()

	rows, err := db.QueryContext(ctx, "SELECT id FROM orders WHERE id <= 2; SELECT id, name FROM customers ORDER BY id")
	require.NoError(t, err)
	var ids []int
	for rows.Next() {
		var id int
		require.NoError(t, rows.Scan(&id))
		ids = append(ids, id)
	}
	require.True(t, rows.NextResultSet())
	var names []string
	for rows.Next() {
		var id int
		var name string
		require.NoError(t, rows.Scan(&id, &name))
		names = append(names, name)
	}
	require.NoError(t, rows.Close())
	assert.Equal(t, []int{1, 2}, ids)
	assert.Equal(t, []string{"ann", "bob"}, names)

	// One denied statement refuses the whole text before anything runs.
	before := e.count("orders")
	_, err = db.ExecContext(ctx, "SELECT id FROM orders; DELETE FROM orders")
	assert.EqualValues(t, 1142, errno(err))
	assert.Equal(t, before, e.count("orders"))
}

func TestMaxRows(t *testing.T) {
	e := newEnv(t, envOpts{maxRows: 10})
	ctx := context.Background()
	for _, interpolate := range []bool{true, false} {
		c := e.cfg("analyst-bot")
		c.InterpolateParams = interpolate
		sc := e.conn(c)
		start := time.Now()
		// 10^10 rows: only a kill ends it in time.
		rows, err := sc.QueryContext(ctx, "SELECT a.id, a.pad FROM big a JOIN big b")
		require.NoError(t, err)
		n := 0
		for rows.Next() {
			n++
		}
		err = rows.Err()
		require.Error(t, err)
		assert.EqualValues(t, 1104, errno(err))
		assert.Equal(t, 10, n)
		_ = rows.Close()
		took := time.Since(start)
		t.Logf("cut after %v", took)
		assert.Less(t, took, 30*time.Second)
		// The connection is usable, and the upstream statement is gone.
		var one int
		require.NoError(t, sc.QueryRowContext(ctx, "SELECT 1").Scan(&one))
		assert.Eventually(t, func() bool {
			var running int
			err := e.direct().QueryRow("SELECT count(*) FROM information_schema.PROCESSLIST WHERE USER = ? AND INFO LIKE 'SELECT a.id, a.pad FROM big a JOIN big b%'", e.upUser).Scan(&running)
			return err == nil && running == 0
		}, 5*time.Second, 20*time.Millisecond, "the upstream statement still runs")
	}
	// Within the cap nothing is cut.
	sc := e.conn(e.cfg("analyst-bot"))
	rows, err := sc.QueryContext(ctx, "SELECT id FROM big LIMIT 5")
	require.NoError(t, err)
	n := 0
	for rows.Next() {
		n++
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, 5, n)
	var cut *audit.Event
	for _, ev := range e.audit.Events() {
		if ev.Kind == audit.KindStatement && ev.ErrorCode == "1104/42000" {
			cut = &ev
		}
	}
	require.NotNil(t, cut)
	assert.Equal(t, sqlpolicy.Allow, cut.Decision)
	assert.EqualValues(t, 10, cut.Rows)
	assert.Equal(t, "mysql", cut.Protocol)
}

func TestAudit(t *testing.T) {
	e := newEnv(t, envOpts{})
	r := e.dialRaw(t)
	r.login(e, "analyst-bot")
	rows, _ := r.query("SELECT id, name FROM customers ORDER BY id")
	require.Len(t, rows, 2)
	_, last := r.query("SELECT id, email FROM customers")
	assertErr(t, last, 1143, "42000")
	r.command([]byte{0x01})
	require.True(t, r.closed())

	var kinds []audit.Kind
	require.Eventually(t, func() bool {
		evs := e.audit.Events()
		return len(evs) > 0 && evs[len(evs)-1].Kind == audit.KindClose
	}, 5*time.Second, 10*time.Millisecond)
	evs := e.audit.Events()
	for _, ev := range evs {
		kinds = append(kinds, ev.Kind)
		assert.Equal(t, "mysql", ev.Protocol)
		assert.NotEmpty(t, ev.Session)
	}
	assert.Equal(t, []audit.Kind{audit.KindConnect, audit.KindAuthOK, audit.KindStatement, audit.KindStatement, audit.KindClose}, kinds)
	allowed, denied := evs[2], evs[3]
	assert.Equal(t, sqlpolicy.Allow, allowed.Decision)
	assert.EqualValues(t, 2, allowed.Rows)
	assert.Equal(t, "analyst-bot", allowed.Agent)
	assert.Equal(t, "analyst", allowed.Role)
	assert.Equal(t, e.db.Name, allowed.Database)
	assert.Equal(t, sqlpolicy.Deny, denied.Decision)
	assert.Equal(t, "1143/42000", denied.ErrorCode)
	assert.Equal(t, "roles.analyst.deny_labels[pii.*]", denied.Rule)
	require.NotEmpty(t, denied.Reasons)
	assert.Equal(t, "email", denied.Reasons[0].Column)
}

// TestDenialErrnos: a statement refused because it names what does not
// exist gets the errno and SQLSTATE the server itself gives for it (the
// same text sent directly, as keyhole's login), so that drivers and agents
// can branch on them; a refusal by the policy gets 1142 or 1143.
func TestDenialErrnos(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	through := e.conn(e.cfg("analyst-bot"))
	c, err := mysql.ParseDSN(e.db.DSN)
	require.NoError(t, err)
	c.User, c.Passwd = e.upUser, e.upPW
	direct := e.conn(c)
	for _, tc := range []struct {
		sql   string
		num   uint16
		state string
	}{
		{"SELEC id FROM orders", 1064, "42000"},
		{"SELECT id FROM no_such_table", 1146, "42S02"},
		{"SELECT no_such_column FROM orders", 1054, "42S22"},
		{"SELECT no_such_function(id) FROM orders", 1305, "42000"},
		{"EXECUTE no_such_statement", 1243, "HY000"},
		{"SELECT email FROM customers", 1143, "42000"},
		{"DELETE FROM orders", 1142, "42000"},
	} {
		t.Run(tc.sql, func(t *testing.T) {
			_, err := through.ExecContext(ctx, tc.sql)
			assert.Equal(t, tc.num, errno(err), "%v", err)
			assert.Equal(t, tc.state, sqlstate(err))
			if tc.num != 1142 && tc.num != 1143 {
				_, err = direct.ExecContext(ctx, tc.sql)
				assert.Equal(t, tc.num, errno(err), "the server's own: %v", err)
				assert.Equal(t, tc.state, sqlstate(err))
			}
		})
	}
}
