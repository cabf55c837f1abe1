// Run SQL statements through node-postgres for keyhole's end-to-end tests.
// Reads a libpq-style connection string from KEYHOLE_DSN and a JSON list of
// SQL texts from stdin; prints a JSON list with, per statement, the rows
// (every value as text) or the SQLSTATE of the error. With
// KEYHOLE_EXTENDED=1 every statement goes through the extended protocol
// (a named prepared statement).
'use strict';
const { Client } = require('pg');

function readStdin() {
  return new Promise((resolve, reject) => {
    let data = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (c) => { data += c; });
    process.stdin.on('end', () => resolve(data));
    process.stdin.on('error', reject);
  });
}

function parseDSN(s) {
  const cfg = {};
  for (const kv of s.trim().split(/\s+/)) {
    const i = kv.indexOf('=');
    cfg[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return {
    host: cfg.host,
    port: Number(cfg.port),
    user: cfg.user,
    password: cfg.password,
    database: cfg.dbname,
    // keyhole's development certificate is self-signed: encrypt, don't verify
    // (libpq's sslmode=require).
    ssl: cfg.sslmode === 'require' ? { rejectUnauthorized: false } : false,
  };
}

async function main() {
  const stmts = JSON.parse(await readStdin());
  const client = new Client(parseDSN(process.env.KEYHOLE_DSN));
  await client.connect();
  const extended = process.env.KEYHOLE_EXTENDED === '1';
  const out = [];
  let n = 0;
  for (const sql of stmts) {
    try {
      const q = extended ? { name: 's' + (n++), text: sql, rowMode: 'array' } : { text: sql, rowMode: 'array' };
      const res = await client.query(q);
      out.push({ rows: res.rows.map((r) => r.map((v) => (v === null ? null : String(v)))) });
    } catch (e) {
      if (!e.code) throw e;
      out.push({ code: e.code, message: e.message });
    }
  }
  await client.end();
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
