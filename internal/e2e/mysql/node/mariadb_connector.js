// MariaDB Connector/Node.js (npm "mariadb") through keyhole, for
// TestMySQLDrivers: it uses MariaDB's own protocol extensions when the
// server offers them: batch() as one COM_STMT_BULK_EXECUTE, extended
// column metadata (JSON), and pipelining (commands sent before the
// previous answer). Environment: KH_HOST, KH_PORT, KH_USER, KH_PASSWORD,
// KH_DB. Prints one JSON object, a key per step: its value, or {errno,
// sqlState, message} when it failed.
'use strict';
const mariadb = require('mariadb');

const errinfo = (e) => ({ errno: e.errno, sqlState: e.sqlState, message: e.text || e.message });
const plain = (v) => JSON.parse(JSON.stringify(v, (k, x) => (typeof x === 'bigint' ? Number(x) : x)));

async function main() {
  const cfg = {
    host: process.env.KH_HOST,
    port: Number(process.env.KH_PORT),
    user: process.env.KH_USER,
    password: process.env.KH_PASSWORD,
    database: process.env.KH_DB,
    connectTimeout: 20000,
    allowPublicKeyRetrieval: true,
  };
  const out = {};
  const step = async (name, f) => {
    try {
      out[name] = plain(await f());
    } catch (e) {
      if (e.errno === undefined) throw e;
      out[name] = errinfo(e);
    }
  };
  const conn = await mariadb.createConnection({ ...cfg, pipelining: true });
  await step('json', async () => (await conn.query("SELECT JSON_OBJECT('a', 1) AS j"))[0].j);
  // Bulk: one OK for the three rows, as from the server itself.
  await step('batch', async () => {
    const r = await conn.batch('INSERT INTO orders (id, item, amount) VALUES (?, ?, ?)', [[500, 'b0', 1], [501, 'b1', 2], [502, 'b2', 3]]);
    return Array.isArray(r) ? { results: r.length } : { affectedRows: r.affectedRows };
  });
  await step('batch_denied', async () => conn.batch('UPDATE orders SET amount = ? WHERE id = ?', [[9, 500], [9, 501]]));
  await step('after_batch', async () => (await conn.query('SELECT id, amount FROM orders WHERE id >= 500 AND id < 600 ORDER BY id')).map((r) => [r.id, r.amount]));
  await step('pipelined', async () => (await Promise.allSettled([
    conn.execute('SELECT item FROM orders WHERE id = ?', [2]),
    conn.execute('SELECT email FROM customers WHERE id = ?', [1]),
    conn.execute('SELECT item FROM orders WHERE id = ?', [3]),
  ])).map((r) => (r.status === 'fulfilled' ? r.value[0].item : r.reason.errno)));
  // A query timeout: the driver sends SET STATEMENT max_statement_time=1.5
  // FOR the query; within the role's limit it runs, and 0 (no limit) is
  // refused.
  await step('timeout', async () => (await conn.query({ sql: 'SELECT item FROM orders WHERE id = 2', timeout: 1500 }))[0].item);
  await step('timeout_lifted', async () => conn.query('SET STATEMENT max_statement_time=0 FOR SELECT item FROM orders WHERE id = 2'));
  await step('final', async () => (await conn.query('SELECT count(*) AS n FROM orders WHERE id >= 500 AND id < 600'))[0].n);
  await conn.end();
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.log(JSON.stringify({ fatal: String((e && e.stack) || e) }));
  process.exit(1);
});
