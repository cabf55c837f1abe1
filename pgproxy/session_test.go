package pgproxy_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keyholedb/keyhole/audit"
	"github.com/keyholedb/keyhole/sqlpolicy"
)

func TestSQLPrepareExecute(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	c := e.connect(pgx.QueryExecModeSimpleProtocol)
	// EXECUTE is decided through the session's record of what PREPARE
	// prepared, which keyhole updates only after PREPARE ran upstream.
	_, err := c.Exec(ctx, "EXECUTE nope")
	assert.Equal(t, "26000", sqlState(err), "an unknown prepared statement, as Postgres answers it: %v", err)
	_, err = c.Exec(ctx, "PREPARE q AS SELECT count(*) FROM orders")
	require.NoError(t, err)
	var n int
	require.NoError(t, c.QueryRow(ctx, "EXECUTE q").Scan(&n))
	assert.Equal(t, 20, n)
	_, err = c.Exec(ctx, "PREPARE s AS SELECT value FROM secrets")
	assert.Equal(t, "42501", sqlState(err))
	_, err = c.Exec(ctx, "EXECUTE s")
	assert.Equal(t, "26000", sqlState(err), "the refused PREPARE prepared nothing")
}

func TestAuditEvents(t *testing.T) {
	t.Parallel()
	m := &metrics{}
	e := newEnv(t, envOpts{maxRows: 5, metrics: m})
	ctx := context.Background()
	token := e.signer("analyst-bot", time.Hour)
	cfg, err := pgx.ParseConfig("postgres://analyst-bot:" + token + "@" + e.addr + "/" + e.db.Name + "?sslmode=disable")
	require.NoError(t, err)
	c, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	var n int
	require.NoError(t, c.QueryRow(ctx, "SELECT count(*) FROM orders WHERE item = 'literal-x'").Scan(&n))
	_, err = c.Exec(ctx, "SELECT email FROM customers")
	assert.Equal(t, "42501", sqlState(err))
	rows, err := c.Query(ctx, "SELECT id FROM orders")
	require.NoError(t, err)
	for rows.Next() {
	}
	assert.Equal(t, "54000", sqlState(rows.Err()), "err: %v", rows.Err())
	require.NoError(t, c.Close(ctx))

	require.Eventually(t, func() bool {
		for _, ev := range e.audit.Events() {
			if ev.Kind == audit.KindClose {
				return true
			}
		}
		return false
	}, 5*time.Second, 20*time.Millisecond)
	m.mu.Lock()
	assert.Equal(t, 1, m.opened)
	assert.Equal(t, 1, m.closed)
	assert.Equal(t, map[sqlpolicy.Effect]int{sqlpolicy.Allow: 2, sqlpolicy.Deny: 1}, m.decided)
	m.mu.Unlock()
	evs := e.audit.Events()
	raw, err := json.Marshal(evs)
	require.NoError(t, err)
	assert.NotContains(t, string(raw), token)
	assert.NotContains(t, string(raw), "upstream-secret-pw")
	assert.NotContains(t, string(raw), "literal-x", "statements are redacted")

	var kinds []audit.Kind
	var stmts []audit.Event
	for _, ev := range evs {
		kinds = append(kinds, ev.Kind)
		assert.NotEmpty(t, ev.Session)
		assert.Equal(t, "postgres", ev.Protocol)
		if ev.Kind == audit.KindStatement {
			stmts = append(stmts, ev)
		}
	}
	assert.Equal(t, audit.KindConnect, kinds[0])
	assert.Contains(t, kinds, audit.KindAuthOK)
	require.Len(t, stmts, 3)
	assert.Equal(t, sqlpolicy.Allow, stmts[0].Decision)
	assert.EqualValues(t, 1, stmts[0].Rows)
	assert.NotEmpty(t, stmts[0].Fingerprint)
	assert.Equal(t, sqlpolicy.Deny, stmts[1].Decision)
	assert.Equal(t, "42501", stmts[1].ErrorCode)
	assert.NotEmpty(t, stmts[1].Reasons)
	assert.Equal(t, "54000", stmts[2].ErrorCode)
	assert.EqualValues(t, 6, stmts[2].Rows)
	for _, ev := range stmts {
		assert.Equal(t, "analyst-bot", ev.Agent)
		assert.Equal(t, "analyst", ev.Role)
	}
}

// metrics records what the proxy reports.
type metrics struct {
	mu                                         sync.Mutex
	opened, closed, authFailed, upErr, dropped int
	decided                                    map[sqlpolicy.Effect]int
	// started counts upstream sessions by reused; kept is every value
	// the kept-sessions gauge was set to.
	started map[bool]int
	kept    []int
}

func (m *metrics) UpstreamSessionStarted(_ string, reused bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started == nil {
		m.started = map[bool]int{}
	}
	m.started[reused]++
}

func (m *metrics) UpstreamSessionsKept(_ string, n int) {
	m.mu.Lock()
	m.kept = append(m.kept, n)
	m.mu.Unlock()
}

func (m *metrics) ConnectionOpened(string) { m.mu.Lock(); m.opened++; m.mu.Unlock() }
func (m *metrics) ConnectionClosed(string) { m.mu.Lock(); m.closed++; m.mu.Unlock() }
func (m *metrics) AuthFailed(string)       { m.mu.Lock(); m.authFailed++; m.mu.Unlock() }
func (m *metrics) LoginDropped(string)     { m.mu.Lock(); m.dropped++; m.mu.Unlock() }
func (m *metrics) UpstreamError(string)    { m.mu.Lock(); m.upErr++; m.mu.Unlock() }
func (m *metrics) StatementDecided(_ string, eff sqlpolicy.Effect, _ string, _ time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.decided == nil {
		m.decided = map[sqlpolicy.Effect]int{}
	}
	m.decided[eff]++
}

func TestAuditRawStatements(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{raw: true})
	ctx := context.Background()
	c := e.connect(pgx.QueryExecModeSimpleProtocol)
	var n int
	require.NoError(t, c.QueryRow(ctx, "SELECT count(*) FROM orders WHERE item = 'literal-y'").Scan(&n))
	var found bool
	for _, ev := range e.audit.Events() {
		if ev.Kind == audit.KindStatement && ev.Statement == "SELECT count(*) FROM orders WHERE item = 'literal-y'" {
			found = true
			assert.NotEmpty(t, ev.Fingerprint)
		}
	}
	assert.True(t, found)
}

// A SET search_path executed in an extended-protocol pipeline is undone by
// Postgres when a later statement before the Sync fails. keyhole must not
// resolve later names under the rolled-back path only: here the policy
// allows internal.orders but not public.orders, and after the rollback
// Postgres resolves "orders" to public.orders again. The login has USAGE
// on internal, so under internal, public "orders" is internal.orders
// (without it Postgres skips internal: TestSearchPathSkipsSchemaWithoutUsage).
func TestPipelineRolledBackSearchPath(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	pathAgent(t, e, "internal.orders")

	connect := func() *pgx.Conn {
		c, err := pgx.Connect(ctx, e.dsn("path-bot"))
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		return c
	}

	// The path change that sticks makes orders mean internal.orders.
	c := connect()
	_, err := c.Exec(ctx, "SET search_path TO internal, public", pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err)
	var id int
	require.NoError(t, c.QueryRow(ctx, "SELECT id FROM orders").Scan(&id), "orders resolves to internal.orders after a committed SET")
	assert.Equal(t, 424242, id, "Postgres read internal.orders")

	// The same change in a pipeline that fails is rolled back upstream.
	c = connect()
	b := &pgx.Batch{}
	b.Queue("SET search_path TO internal, public")
	b.Queue("SELECT 1/0")
	err = c.SendBatch(ctx, b).Close()
	require.Error(t, err)
	assert.Equal(t, "22012", sqlState(err), "err: %v", err)
	var path string
	require.NoError(t, c.QueryRow(ctx, "SHOW search_path").Scan(&path))
	assert.NotContains(t, path, "internal", "Postgres rolled the SET back")
	_, err = c.Exec(ctx, "SELECT id FROM orders")
	assert.Equal(t, "42501", sqlState(err), "orders may be public.orders again: err %v", err)
}

// Postgres skips a search_path entry naming a schema the current user
// lacks USAGE on (or that does not exist), and "$user" unless a usable
// schema of the user's name exists. keyhole must resolve a session-set
// path the same way: deciding "orders" as internal.orders while Postgres
// reads public.orders let a policy that allows only internal.orders read
// public.orders; deciding it as public.orders while "$user" made it the
// login's own schema's orders let a policy that allows only public.orders
// read that one.
func TestSearchPathSkipsSchemaWithoutUsage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	// internal is the superuser's, and the login gets no USAGE on it; the
	// schema named after the login is usable.
	_, err := e.direct().Exec(ctx, `CREATE SCHEMA internal; CREATE TABLE internal.orders (id int PRIMARY KEY);
		CREATE SCHEMA `+e.upUser+`; CREATE TABLE `+e.upUser+`.orders (id int PRIMARY KEY);
		INSERT INTO `+e.upUser+`.orders VALUES (7);
		GRANT USAGE ON SCHEMA `+e.upUser+` TO `+e.upUser+`; GRANT SELECT ON `+e.upUser+`.orders TO `+e.upUser)
	require.NoError(t, err)
	t.Cleanup(func() {
		if c, err := pgx.Connect(context.Background(), e.db.DSN); err == nil {
			_, _ = c.Exec(context.Background(), "DROP SCHEMA "+e.upUser+" CASCADE")
			_ = c.Close(context.Background())
		}
	})
	e.setPolicy(`
roles:
  internal-only:
    upstream: shop
    allow:
      - select: [internal.orders]
    settings: [search_path]
  public-only:
    upstream: shop
    allow:
      - select: [public.orders]
    settings: [search_path]
agents:
  internal-bot: {role: internal-only}
  public-bot: {role: public-only}
`)
	require.NoError(t, e.g.Reload(), "the schema is read again: internal and the login's schema are new")

	connect := func(agent string) *pgx.Conn {
		c, err := pgx.Connect(ctx, e.dsn(agent))
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		return c
	}

	t.Run("schema without USAGE", func(t *testing.T) {
		c := connect("internal-bot")
		_, err := c.Exec(ctx, "SET search_path TO internal, public", pgx.QueryExecModeSimpleProtocol)
		require.NoError(t, err)
		var n int
		err = c.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n)
		assert.Equal(t, "42501", sqlState(err), "Postgres reads public.orders, which the policy does not allow: got %d rows, err %v", n, err)
		// The same through set_config, and with a function: internal is
		// skipped for functions too, so count is pg_catalog's either way.
		_, err = c.Exec(ctx, "SELECT set_config('search_path', 'internal, public', false)", pgx.QueryExecModeSimpleProtocol)
		require.NoError(t, err)
		err = c.QueryRow(ctx, "SELECT count(*) FROM orders", pgx.QueryExecModeSimpleProtocol).Scan(&n)
		assert.Equal(t, "42501", sqlState(err), "got %d rows, err %v", n, err)
		// Qualified, the allowed table is still readable.
		_, err = c.Exec(ctx, "SELECT count(*) FROM internal.orders")
		assert.Equal(t, "42501", sqlState(err), "allowed by keyhole, refused by Postgres (no USAGE): err %v", err)
	})

	t.Run("$user names the login's schema", func(t *testing.T) {
		c := connect("public-bot")
		_, err := c.Exec(ctx, `SET search_path TO "$user", public`, pgx.QueryExecModeSimpleProtocol)
		require.NoError(t, err)
		var n int
		err = c.QueryRow(ctx, "SELECT min(id) FROM orders").Scan(&n)
		assert.Equal(t, "42501", sqlState(err), "Postgres reads %s.orders, which the policy does not allow: got %d, err %v", e.upUser, n, err)
		// A path whose entries all drop out but public resolves to it.
		_, err = c.Exec(ctx, `SET search_path TO no_such_schema, internal, public`, pgx.QueryExecModeSimpleProtocol)
		require.NoError(t, err)
		require.NoError(t, c.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n), "orders is public.orders")
		assert.Equal(t, 20, n)
	})
}

// A client pipelines simple Queries: the next one is decided while the
// earlier ones run. Here the first sets search_path to public and the
// second to internal, public (it then waits on a lock); a third, sent once
// the first is answered, is decided while the second still runs, and runs
// after it. Applying the first change (it stuck) must not forget that the
// second may still put internal first: "orders" may then be
// internal.orders, which the policy does not allow.
func TestPipelinedSearchPathStaysCandidate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	pathAgent(t, e, "public.orders")

	pc, err := pgconn.Connect(ctx, e.dsn("path-bot"))
	require.NoError(t, err)
	hc, err := pc.Hijack()
	require.NoError(t, err)
	defer hc.Conn.Close()
	_ = hc.Conn.SetDeadline(time.Now().Add(30 * time.Second))
	fe := hc.Frontend

	// The second Query waits on a lock of public.orders until released.
	release := e.lockOrders()

	fe.Send(&pgproto3.Query{String: "SET search_path TO public"})
	fe.Send(&pgproto3.Query{String: "SET search_path TO internal, public; SELECT count(*) FROM public.orders"})
	require.NoError(t, fe.Flush())
	// The first answer: SET, then ReadyForQuery.
	for {
		m, err := fe.Receive()
		require.NoError(t, err)
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			t.Fatalf("the first SET failed: %s %s", e.Code, e.Message)
		}
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	// The second waits on the lock; the third is decided now.
	require.Eventually(t, func() bool { return e.waiting() == 1 }, 10*time.Second, 10*time.Millisecond)
	fe.Send(&pgproto3.Query{String: "SELECT id FROM orders"})
	require.NoError(t, fe.Flush())
	// A sleep, not an event: keyhole decides the third as it reads it,
	// and an allowed text leaves no trace before it runs (after the
	// second, which the lock holds). Too short a sleep could only let
	// the test pass without the third being decided early, never fail it.
	time.Sleep(200 * time.Millisecond)
	release()

	var third []pgproto3.BackendMessage
	for ready := 0; ready < 2; {
		m, err := fe.Receive()
		require.NoError(t, err)
		switch m := m.(type) {
		case *pgproto3.ReadyForQuery:
			ready++
		case *pgproto3.ErrorResponse:
			if ready == 0 {
				t.Fatalf("the second Query failed: %s %s", m.Code, m.Message)
			}
			third = append(third, &pgproto3.ErrorResponse{Code: m.Code, Message: m.Message})
		case *pgproto3.DataRow:
			if ready == 1 {
				third = append(third, &pgproto3.DataRow{Values: [][]byte{append([]byte(nil), m.Values[0]...)}})
			}
		}
	}
	require.Len(t, third, 1, "the third Query's answer: %v", third)
	er, ok := third[0].(*pgproto3.ErrorResponse)
	require.True(t, ok, "the third Query ran: it read %q (internal.orders)", third[0])
	assert.Equal(t, "42501", er.Code, "orders may be internal.orders: %s", er.Message)
}

// pathAgent makes internal.orders (createInternalOrders) and gives agent
// path-bot a role that may read table, one of internal.orders and
// public.orders, and set search_path.
func pathAgent(t *testing.T, e *env, table string) {
	t.Helper()
	createInternalOrders(t, e)
	e.setPolicy(`
roles:
  pathy:
    upstream: shop
    allow:
      - select: [` + table + `]
    settings: [search_path]
agents:
  path-bot: {role: pathy}
`)
	require.NoError(t, e.g.Reload(), "the schema is read again: internal.orders is new")
}

// createInternalOrders makes internal.orders (one row, id 424242), a table
// named like public.orders, readable by the upstream login, which also has
// USAGE on internal; and drops the schema when the test ends.
func createInternalOrders(t *testing.T, e *env) {
	t.Helper()
	_, err := e.direct().Exec(context.Background(), `CREATE SCHEMA internal; CREATE TABLE internal.orders (id int PRIMARY KEY);
		INSERT INTO internal.orders VALUES (424242);
		GRANT USAGE ON SCHEMA internal TO `+e.upUser+`; GRANT SELECT ON internal.orders TO `+e.upUser)
	require.NoError(t, err)
	t.Cleanup(func() {
		// The role is dropped after the database; its grants must go first.
		if c, err := pgx.Connect(context.Background(), e.db.DSN); err == nil {
			_, _ = c.Exec(context.Background(), "DROP SCHEMA internal CASCADE")
			_ = c.Close(context.Background())
		}
	})
}
