package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runNode runs a Node client program against keyhole's MySQL listener as
// agent and decodes the one JSON object it prints; module is the npm
// package the program needs, installed in dir by scripts/setup.sh.
func (s *myServe) runNode(t *testing.T, dir, module, program, agent string) map[string]any {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "node_modules", module)); err != nil {
		t.Fatalf("%s is not installed in %s: run make setup (scripts/setup.sh)", module, dir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, needTool(t, "node"), filepath.Join(dir, program))
	host, port, _ := net.SplitHostPort(s.addr)
	cmd.Env = append(os.Environ(), "KH_HOST="+host, "KH_PORT="+port, "KH_USER="+agent, "KH_PASSWORD="+s.token(t, agent), "KH_DB="+s.myDB)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	require.NoError(t, cmd.Run(), "%s: %s %s", program, out.String(), errb.String())
	var got map[string]any
	require.NoError(t, json.Unmarshal(out.Bytes(), &got), out.String())
	require.Empty(t, got["fatal"])
	return got
}

// TestMySQLDrivers drives keyhole's MySQL listener with what
// TestMySQLServe leaves out: mysql2's binary protocol with many types,
// MariaDB's JSON type, multipleStatements, a pool, changeUser and a refusal
// inside a transaction; each checks the connection stays usable.
func TestMySQLDrivers(t *testing.T) {
	s := startMyServe(t)

	t.Run("mysql2", func(t *testing.T) {
		before := s.my.count(t, "SELECT count(*) FROM orders")
		got := s.runNode(t, filepath.Join(s.mysqlClients, "node"), "mysql2", "drivers.js", "my-bot")
		// A MariaDB upstream marks a JSON value's column with the extended
		// metadata format "json" when the client negotiated it; keyhole
		// relays that negotiation, so mysql2 parses JSON as it does direct.
		for _, step := range []string{"json_query", "json_execute"} {
			assert.Equal(t, map[string]any{"type": "object", "value": map[string]any{"a": 1.0}}, got[step], step)
		}
		assert.Equal(t, []any{"-7", "18446744073709551615", "1.5", "héllo", nil, "00ff", "2024-01-02 03:04:05.678", 3.0}, got["binary_types"])
		assert.Equal(t, []any{[]any{2.0, "item2", "3.00"}, []any{3.0, "item3", "4.50"}, []any{4.0, "item4", "6.00"}}, got["binary_columns"])
		assert.Equal(t, []any{1.0, float64(before)}, got["multi"])
		assert.EqualValues(t, 1142, refusedErrno(t, got, "multi_denied"), "a multi-statement text with a refused statement runs none of it")
		assert.EqualValues(t, before, got["after_multi_denied"])
		assert.Equal(t, []any{1142.0, 1.0}, got["denied_in_tx"], "the refusal leaves the transaction open")
		cu, _ := got["change_user"].(map[string]any)
		assert.EqualValues(t, 1047, cu["errno"], "COM_CHANGE_USER is refused: %v", got["change_user"])
		assert.Equal(t, "item5", got["after_change_user"], "the connection is usable after the refused changeUser")
		assert.Equal(t, []any{1.0, 2.0, 1143.0, 4.0, 5.0, 6.0}, got["pool"])
		assert.Equal(t, []any{7.0, 8.0, 9.0, 10.0}, got["pool_after"])
		assert.Equal(t, before, s.my.count(t, "SELECT count(*) FROM orders"), "the rolled back insert and refused deletes left the rows")
	})

	// MariaDB Connector/Node.js uses MariaDB's extensions when offered:
	// batch() is one COM_STMT_BULK_EXECUTE, answered with one OK whose
	// affected rows are the batch's (a row at a time, the driver returns
	// one result per row instead).
	t.Run("MariaDB Connector/Node", func(t *testing.T) {
		got := s.runNode(t, filepath.Join(s.mysqlClients, "node"), "mariadb", "mariadb_connector.js", "my-bot")
		assert.Equal(t, map[string]any{"a": 1.0}, got["json"])
		assert.Equal(t, map[string]any{"affectedRows": 3.0}, got["batch"], "one bulk result, as direct")
		assert.EqualValues(t, 1142, refusedErrno(t, got, "batch_denied"))
		assert.Equal(t, []any{[]any{500.0, "1.00"}, []any{501.0, "2.00"}, []any{502.0, "3.00"}}, got["after_batch"], "the refused bulk updated nothing")
		assert.Equal(t, []any{"item2", 1143.0, "item3"}, got["pipelined"])
		assert.Equal(t, "item2", got["timeout"], "a query timeout within the role's limit")
		assert.EqualValues(t, 1142, refusedErrno(t, got, "timeout_lifted"))
		assert.EqualValues(t, 3, got["final"])
		s.my.exec(t, "DELETE FROM orders WHERE id >= 500 AND id < 600")
	})

	// MariaDB Connector/J's batches: keyhole does not offer compression,
	// so the driver talks uncompressed; each batch row or bulk is
	// decided as its statement. With
	// allowMultiQueries and rewriteBatchedStatements a Statement batch is
	// one multi-statement text, refused as a whole when one statement is
	// (MariaDB would run the INSERT before the refused DELETE).
	t.Run("MariaDB Connector/J batches", func(t *testing.T) {
		java := needTool(t, "java")
		const jar = "/usr/share/java/mariadb-java-client.jar"
		if _, err := os.Stat(jar); err != nil {
			t.Fatalf("%s not found: run make setup (scripts/setup.sh as root) to install libmariadb-java", jar)
		}
		for i, tc := range []struct{ opts, final string }{
			{"useServerPrepStmts=true&useBulkStmts=true", "4"},
			{"useCompression=true", "4"},
			{"allowMultiQueries=true&rewriteBatchedStatements=true", "3"},
		} {
			t.Run(tc.opts, func(t *testing.T) {
				first := 1000 * (i + 1)
				url := fmt.Sprintf("jdbc:mariadb://%s/%s?allowPublicKeyRetrieval=true&%s", s.addr, s.myDB, tc.opts)
				got := runJava(t, java, jar, filepath.Join(s.mysqlClients, "MariaJdbcFlows.java"), url, "my-bot", s.token(t, "my-bot"), fmt.Sprint(first))
				assert.Equal(t, map[string]string{
					"batch":                  "ok\t3",
					"batch_denied":           "error\t1142",
					"statement_batch_denied": "error\t1142",
					"prepared_types":         "ok\t1099511627776|héllo|12.345|null|item3",
					"denied_in_tx":           "ok\t1",
					"final":                  "ok\t" + tc.final,
				}, got)
				assert.Equal(t, 0, s.my.count(t, fmt.Sprintf("SELECT count(*) FROM orders WHERE id >= %d AND amount = 9", first)), "the refused batch updated nothing")
				s.my.exec(t, fmt.Sprintf("DELETE FROM orders WHERE id >= %d", first))
			})
		}
	})

	// mysqlclient (MySQLdb): executemany is one multi-row INSERT, callproc
	// a SET then a CALL (refused: the role may call no procedure).
	t.Run("mysqlclient", func(t *testing.T) {
		needPython(t, "MySQLdb")
		got := s.runPython(t, "mysqldb_runner.py", "my-bot", s.token(t, "my-bot"))
		assert.Equal(t, 3.0, got["executemany"])
		assert.EqualValues(t, 1142, refusedErrno(t, got, "executemany_denied"))
		assert.Equal(t, []any{[]any{400.0, "1.00"}, []any{401.0, "2.00"}, []any{402.0, "3.00"}}, got["committed"])
		assert.EqualValues(t, 1142, refusedErrno(t, got, "callproc"))
		assert.Equal(t, []any{[]any{"item5"}}, got["after_callproc"])
		assert.Equal(t, 23.0, got["streamed"], "the 20 rows and the 3 inserted")
		assert.Equal(t, []any{1142.0, 1.0}, got["denied_in_tx"], "the refusal leaves the transaction open")
		assert.Equal(t, []any{[]any{3.0}}, got["final"], "the rolled back insert is gone")
		s.my.exec(t, "DELETE FROM orders WHERE id >= 400 AND id < 500")
	})

	// The mariadb CLI: a sourced file with a refusal in the middle (--force
	// goes on past it), \G, and --binary-mode (a NUL escape in the text
	// reaches the server as written).
	t.Run("mariadb CLI source, \\G, binary mode", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "script.sql")
		writeFile(t, file, "SELECT id, item FROM orders WHERE id = 2\\G\nSELECT email FROM customers;\nSELECT 'after refusal';\n")
		out, errOut, _ := s.cliStdin(t, "my-bot", s.token(t, "my-bot"), "source "+file+"\n", "--force")
		// --batch --skip-column-names: \G prints the row's values alone.
		assert.Contains(t, out, "*************************** 1. row ***************************\n2\nitem2\n")
		assert.Contains(t, errOut, "ERROR 1143 (42000)")
		assert.Contains(t, out, "after refusal", "the script went on after the refusal")

		out, errOut, code := s.cliStdin(t, "my-bot", s.token(t, "my-bot"), "SELECT LENGTH('a\\0b') AS n;\nSELECT item FROM orders WHERE id = 3;\n", "--binary-mode")
		assert.Equal(t, 0, code, errOut)
		assert.Equal(t, "3\nitem3\n", out)
	})

	// mysqldump of a table the role may read: it starts with
	// /*!40100 SET @@SQL_MODE='' */, an executable comment that sets
	// sql_mode, which the analyzer refuses. It must fail at once with
	// keyhole's refusal, not hang or dump part of the table.
	t.Run("mysqldump", func(t *testing.T) {
		bin, err := exec.LookPath("mariadb-dump")
		if err != nil {
			bin = needTool(t, "mysqldump")
		}
		host, port, _ := net.SplitHostPort(s.addr)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "--no-defaults", "-h", host, "-P", port, "--protocol=TCP", "--skip-ssl",
			"-u", "my-bot", "--single-transaction", "--skip-lock-tables", s.myDB, "orders")
		cmd.Env = append(os.Environ(), "MYSQL_PWD="+s.token(t, "my-bot"))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err = cmd.Run()
		require.NoError(t, ctx.Err(), "mysqldump hung")
		if err == nil {
			assert.Contains(t, stdout.String(), "INSERT INTO `orders`")
			return
		}
		assert.Contains(t, stderr.String(), "keyhole: permission denied")
		assert.Contains(t, stderr.String(), "(1142)")
		assert.NotContains(t, stdout.String(), "INSERT INTO", "nothing of the table was dumped")
	})
}

// postgres.js (npm "postgres") pipelines the queries it is given together,
// each with its own Sync, names and reuses prepared statements on its own
// and Describes every statement before it binds it; sql.begin, savepoints,
// cursors (a portal read with a row limit) and COPY streams are its
// flows. A refusal fails only its own query.
func TestPostgresJS(t *testing.T) {
	t.Parallel()
	s := startShop(t)
	node := needTool(t, "node")
	dir := "node"
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "postgres")); err != nil {
		t.Fatalf("postgres.js is not installed in internal/e2e/node: run make setup (scripts/setup.sh)")
	}
	in, err := json.Marshal(sessionSQL())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "postgresjs.js"))
	cmd.Env = append(os.Environ(), "KEYHOLE_DSN="+s.dsn)
	cmd.Stdin = bytes.NewReader(in)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	require.NoError(t, cmd.Run(), "postgresjs.js: %s", e.String())
	var got struct {
		Session         []result       `json:"session"`
		Pipelined       []any          `json:"pipelined"`
		Reused          []int          `json:"reused"`
		Describe        map[string]any `json:"describe"`
		UnsafeMulti     []any          `json:"unsafe_multi"`
		BeginDenied     map[string]any `json:"begin_denied"`
		Begin           []any          `json:"begin"`
		SavepointDenied []any          `json:"savepoint_denied"`
		Cursor          [][]int        `json:"cursor"`
		CursorDenied    map[string]any `json:"cursor_denied"`
		CopyTo          string         `json:"copy_to"`
		CopyFrom        string         `json:"copy_from"`
		CopyFromDenied  map[string]any `json:"copy_from_denied"`
		Final           int            `json:"final"`
	}
	require.NoError(t, json.Unmarshal(o.Bytes(), &got), o.String())
	checkSession(t, got.Session)
	assert.Equal(t, []any{1.0, "42501", 2.0, "Grace Hopper"}, got.Pipelined, "a refused query in a pipeline fails alone")
	assert.Equal(t, []int{3, 4, 5}, got.Reused)
	assert.Equal(t, map[string]any{"types": []any{23.0}, "columns": []any{"id", "total"}}, got.Describe)
	assert.Equal(t, []any{map[string]any{"a": 1.0}, map[string]any{"b": 2.0}}, got.UnsafeMulti)
	assert.Equal(t, "42501", got.BeginDenied["code"])
	assert.Equal(t, []any{"1.02", 6.0}, got.Begin, "the refused transaction's insert was rolled back")
	assert.Equal(t, []any{"42501", 6.0}, got.SavepointDenied, "ROLLBACK TO SAVEPOINT recovers the transaction")
	assert.Equal(t, [][]int{{1, 2}, {3, 4}, {5}}, got.Cursor)
	assert.Equal(t, "42501", got.CursorDenied["code"])
	assert.Equal(t, "1\n2\n3\n", got.CopyTo)
	assert.Equal(t, "done", got.CopyFrom)
	assert.Equal(t, "42501", got.CopyFromDenied["code"])
	assert.Equal(t, 8, got.Final)
	assert.Equal(t, "8", s.up.AdminQuery(t, "SELECT count(*) FROM orders"))
	assert.Equal(t, "4", s.up.AdminQuery(t, "SELECT count(*) FROM customers"))
}

// pgx's SendBatch pipelines a batch's statements with one Sync at the end.
// A refused statement in the middle fails as a Postgres error there does:
// the statements after it are skipped until the Sync, an explicit
// transaction the batch opened stays open and aborted (25P02) until
// ROLLBACK, an implicit one rolls the batch back, and the connection goes
// on. In the describing modes pgx prepares every statement first, so the
// refusal comes before anything ran. CopyFrom of a table the role may not
// read fails at its Describe.
func TestPgxBatch(t *testing.T) {
	t.Parallel()
	s := startShop(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const insert = "INSERT INTO orders (customer_id, product_id, total) VALUES ($1, 1, 1.50)"
	orders := func() string { return s.up.AdminQuery(t, "SELECT count(*) FROM orders") }
	for name, mode := range map[string]pgx.QueryExecMode{
		"exec":            pgx.QueryExecModeExec,
		"cache_statement": pgx.QueryExecModeCacheStatement,
		"describe_exec":   pgx.QueryExecModeDescribeExec,
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := pgx.ParseConfig(s.dsn)
			require.NoError(t, err)
			cfg.DefaultQueryExecMode = mode
			c, err := pgx.ConnectConfig(ctx, cfg)
			require.NoError(t, err)
			defer c.Close(ctx)

			b := &pgx.Batch{}
			b.Queue("SELECT id FROM orders WHERE id = $1", 1)
			b.Queue(insert, 1)
			b.Queue("SELECT email FROM customers WHERE id = $1", 1)
			b.Queue(insert, 2)
			b.Queue("SELECT id FROM orders WHERE id = $1", 2)
			br := c.SendBatch(ctx, b)
			var codes []string
			for range 5 {
				_, err := br.Exec()
				codes = append(codes, sqlstate(err))
			}
			assert.Equal(t, "42501", sqlstate(br.Close()))
			if mode == pgx.QueryExecModeExec {
				assert.Equal(t, []string{"", "", "42501", "42501", "42501"}, codes, "the rest of the batch is skipped until Sync")
			} else {
				for _, c := range codes {
					assert.Equal(t, "42501", c, "the batch failed while pgx prepared it: %v", codes)
				}
			}
			assert.Equal(t, "5", orders(), "the batch's implicit transaction was rolled back")
			assert.Equal(t, byte('I'), c.PgConn().TxStatus())

			b = &pgx.Batch{}
			b.Queue("BEGIN")
			b.Queue(insert, 3)
			b.Queue("DELETE FROM orders")
			b.Queue(insert, 4)
			b.Queue("COMMIT")
			assert.Equal(t, "42501", sqlstate(c.SendBatch(ctx, b).Close()))
			if mode == pgx.QueryExecModeExec {
				assert.Equal(t, byte('E'), c.PgConn().TxStatus(), "BEGIN ran: the transaction is open and aborted")
				_, err = c.Exec(ctx, "SELECT 1")
				assert.Equal(t, "25P02", sqlstate(err))
				_, err = c.Exec(ctx, "ROLLBACK")
				require.NoError(t, err)
			}
			assert.Equal(t, byte('I'), c.PgConn().TxStatus())
			assert.Equal(t, "5", orders())

			var n int
			require.NoError(t, c.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n))
			assert.Equal(t, 5, n, "the connection goes on")

			copied, err := c.CopyFrom(ctx, pgx.Identifier{"customers"}, []string{"id", "name", "email"}, pgx.CopyFromRows([][]any{{9, "x", "x@example.com"}}))
			assert.Equal(t, "42501", sqlstate(err))
			assert.Zero(t, copied)
			copied, err = c.CopyFrom(ctx, pgx.Identifier{"orders"}, []string{"customer_id", "product_id", "total"}, pgx.CopyFromRows([][]any{{1, 1, "2.50"}, {2, 2, "3.50"}}))
			require.NoError(t, err)
			assert.EqualValues(t, 2, copied)
			_, err = s.up.adminExec(t, "DELETE FROM orders WHERE total IN (2.50, 3.50) AND id >= 1000")
			require.NoError(t, err)
		})
	}
}

// pgJDBC's flows (JdbcFlows.java), plain, with server-side statements from
// the first execution and binary transfer, and with its batched inserts
// rewritten: prepared statements, batches, fetch-size portals with
// autocommit off, savepoints, and a refusal in each.
func TestJdbcFlows(t *testing.T) {
	t.Parallel()
	java := needTool(t, "java")
	const jar = "/usr/share/java/postgresql.jar"
	if _, err := os.Stat(jar); err != nil {
		t.Fatalf("%s not found: run make setup (scripts/setup.sh as root) to install libpostgresql-jdbc-java", jar)
	}
	s := startShop(t)
	h, port := s.kh.HostPort()
	for name, opts := range map[string]string{
		"default":                   "",
		"server prepared, binary":   "&prepareThreshold=1&binaryTransfer=true",
		"rewritten batched inserts": "&reWriteBatchedInserts=true",
		// A savepoint before every statement, released after it; a
		// failed statement is rolled back to its savepoint, so the
		// transaction goes on.
		"autosave": "&autosave=always&cleanupSavepoints=true",
		// The same without the release: the savepoints pile up, and the
		// failed statement is rolled back to the newest of them.
		"autosave, savepoints kept": "&autosave=always",
	} {
		t.Run(name, func(t *testing.T) {
			deniedInTx := "error\t25P02"
			if strings.Contains(opts, "autosave") {
				deniedInTx = "ok\t1"
			}
			url := fmt.Sprintf("jdbc:postgresql://%s:%s/%s?sslmode=require%s", h, port, s.kh.dbName(), opts)
			got := runJava(t, java, jar, filepath.Join("clients", "JdbcFlows.java"), url, agentName, s.token)
			assert.Equal(t, map[string]string{
				"prepared":        "ok\t1:49.90,2:19.00,3:219.00",
				"prepared_denied": "error\t42501",
				"batch":           "ok\t3",
				"batch_denied":    "error\t42501",
				"count":           "ok\t8",
				"fetch":           "ok\t8",
				"denied_in_tx":    deniedInTx,
				// The server kept the portal across ROLLBACK TO SAVEPOINT
				// (it was opened before that savepoint); keyhole refused it
				// with 34000 when an earlier savepoint of the transaction
				// had been released, or (autosave) when the portal was
				// opened inside a savepoint released since, or (autosave
				// without the release) after any savepoint.
				"fetch_across_savepoint": "ok\t8",
				"final":                  "ok\t8",
			}, got)
			_, err := s.up.adminExec(t, "DELETE FROM orders WHERE id >= 1000")
			require.NoError(t, err)
		})
	}
}
