// mysql2 through keyhole: the scenario of mysqlproxy's client tests.
// Environment: KH_HOST, KH_PORT, KH_USER, KH_PASSWORD, KH_DB, KH_SSL_CA
// (optional: TLS verifying that CA). Prints one JSON object.
'use strict';
const fs = require('fs');
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
  };
  if (process.env.KH_SSL_CA) {
    cfg.ssl = { ca: fs.readFileSync(process.env.KH_SSL_CA) };
  } else {
    // Without TLS, caching_sha2_password's full authentication (a token)
    // encrypts with keyhole's RSA key; mysql2 fetches it only on opt-in.
    cfg.allowPublicKeyRetrieval = true;
  }
  const out = {};
  let conn;
  try {
    conn = await mysql.createConnection(cfg);
  } catch (e) {
    out.connect_error = errinfo(e);
    console.log(JSON.stringify(out));
    return;
  }
  const [rows] = await conn.query('SELECT id, name FROM customers ORDER BY id');
  out.rows = rows.map((r) => [r.id, r.name]);
  try {
    await conn.query('SELECT id, email FROM customers');
  } catch (e) {
    out.denied_column = errinfo(e);
  }
  const [cnt] = await conn.query('SELECT count(*) AS n FROM orders');
  out.count = Number(cnt[0].n);
  try {
    await conn.query('DELETE FROM orders');
  } catch (e) {
    out.denied_write = errinfo(e);
  }
  await conn.beginTransaction();
  await conn.execute('INSERT INTO orders (id, item, amount) VALUES (?, ?, ?)', [100, 'x', 1]);
  await conn.rollback();
  await conn.beginTransaction();
  await conn.execute('INSERT INTO orders (id, item, amount) VALUES (?, ?, ?)', [101, 'y', 2]);
  await conn.commit();
  // Binary prepared statement, executed again from mysql2's cache.
  out.prepared = [];
  for (const id of [3, 7]) {
    const [r] = await conn.execute('SELECT id, item FROM orders WHERE id = ?', [id]);
    out.prepared.push([r[0].id, r[0].item]);
  }
  try {
    await conn.execute('SELECT email FROM customers WHERE id = ?', [1]);
  } catch (e) {
    out.denied_prepare = errinfo(e);
  }
  await conn.end();
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.log(JSON.stringify({ fatal: String(e && e.stack || e) }));
  process.exit(1);
});
