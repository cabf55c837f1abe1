// mysql2 beyond runner.js, for keyhole's driver sweep (internal/e2e
// TestMySQLDrivers): MariaDB's JSON type, the binary protocol with many
// types, multipleStatements, a pool, changeUser, a refusal inside a
// transaction. Environment: KH_HOST, KH_PORT, KH_USER, KH_PASSWORD, KH_DB.
// Prints one JSON object, a key per step: its value, or {errno, sqlState,
// message} when it failed.
'use strict';
const mysql = require('mysql2/promise');

const errinfo = (e) => ({ errno: e.errno, sqlState: e.sqlState, message: e.sqlMessage || e.message });

async function main() {
  const cfg = {
    host: process.env.KH_HOST,
    port: Number(process.env.KH_PORT),
    user: process.env.KH_USER,
    password: process.env.KH_PASSWORD,
    database: process.env.KH_DB,
    connectTimeout: 20000,
    allowPublicKeyRetrieval: true,
    multipleStatements: true,
    supportBigNumbers: true,
    bigNumberStrings: true,
    dateStrings: true,
  };
  const out = {};
  const step = async (name, f) => {
    try {
      out[name] = await f();
    } catch (e) {
      if (e.errno === undefined) throw e;
      out[name] = errinfo(e);
    }
  };
  const conn = await mysql.createConnection(cfg);
  // MariaDB types a JSON value by the column definition's extended
  // metadata (format "json"); mysql2 then parses it.
  for (const m of ['query', 'execute']) {
    await step('json_' + m, async () => {
      const [r] = await conn[m]("SELECT JSON_OBJECT('a', 1) AS j, id FROM orders WHERE id = ?", [1]);
      return { type: typeof r[0].j, value: r[0].j };
    });
  }
  await step('binary_types', async () => {
    const [r] = await conn.execute('SELECT ? AS i, ? AS big, ? AS f, ? AS s, ? AS n, ? AS b, ? AS d, id FROM orders WHERE id = ?',
      [-7, '18446744073709551615', 1.5, 'héllo', null, Buffer.from([0, 255]), '2024-01-02 03:04:05.678', 3]);
    const row = r[0];
    return [String(row.i), String(row.big), String(row.f), row.s, row.n, Buffer.from(row.b).toString('hex'), String(row.d), row.id];
  });
  await step('binary_columns', async () => {
    const [r] = await conn.execute('SELECT id, item, amount FROM orders WHERE id BETWEEN ? AND ? ORDER BY id', [2, 4]);
    return r.map((x) => [x.id, x.item, x.amount]);
  });
  await step('multi', async () => {
    const [r] = await conn.query('SELECT 1 AS a; SELECT count(*) AS n FROM orders');
    return [r[0][0].a, Number(r[1][0].n)];
  });
  await step('multi_denied', async () => conn.query('SELECT 1 AS a; DELETE FROM orders'));
  await step('after_multi_denied', async () => Number((await conn.query('SELECT count(*) AS n FROM orders'))[0][0].n));
  await step('denied_in_tx', async () => {
    await conn.beginTransaction();
    await conn.execute('INSERT INTO orders (id, item, amount) VALUES (?, ?, ?)', [300, 'tx', 1]);
    let code;
    try {
      await conn.query('DELETE FROM orders');
    } catch (e) {
      code = e.errno;
    }
    const [r] = await conn.query('SELECT @@in_transaction AS t');
    await conn.rollback();
    return [code, Number(r[0].t)];
  });
  await step('change_user', async () => conn.changeUser({ user: cfg.user, password: cfg.password, database: cfg.database }));
  await step('after_change_user', async () => (await conn.execute('SELECT item FROM orders WHERE id = ?', [5]))[0][0].item);
  await conn.end();

  const pool = mysql.createPool({ ...cfg, connectionLimit: 3 });
  await step('pool', async () => {
    const rs = await Promise.allSettled([1, 2, 3, 4, 5, 6].map((i) =>
      i === 3 ? pool.execute('SELECT email FROM customers WHERE id = ?', [1]) : pool.execute('SELECT id FROM orders WHERE id = ?', [i])));
    return rs.map((x) => (x.status === 'fulfilled' ? x.value[0][0].id : x.reason.errno));
  });
  await step('pool_after', async () => (await Promise.all([7, 8, 9, 10].map((i) => pool.query('SELECT id FROM orders WHERE id = ?', [i])))).map((r) => r[0][0].id));
  await pool.end();
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.log(JSON.stringify({ fatal: String((e && e.stack) || e) }));
  process.exit(1);
});
