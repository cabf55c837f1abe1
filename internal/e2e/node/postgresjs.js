// Run keyhole's end-to-end flows through postgres.js (npm "postgres"),
// which pipelines queries, names and reuses prepared statements on its own
// and Describes each before binding it. Reads a libpq-style connection
// string from KEYHOLE_DSN and a JSON list of SQL texts from stdin. Prints a
// JSON object: "session", per statement the rows (every value as text) or
// the SQLSTATE; then a key per flow: its value, or {code} when it failed.
'use strict';
const postgres = require('postgres');
const { pipeline } = require('stream/promises');
const { Readable } = require('stream');

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
    // keyhole's development certificate is self-signed: encrypt, don't verify.
    ssl: cfg.sslmode === 'require' ? { rejectUnauthorized: false } : false,
    max: 1,
    connect_timeout: 20,
    onnotice: () => {},
  };
}

const text = (rows) => rows.map((r) => r.map((v) => (v === null ? null : String(v))));

async function main() {
  const stmts = JSON.parse(await readStdin());
  const sql = postgres(parseDSN(process.env.KEYHOLE_DSN));
  const out = { session: [] };
  for (const q of stmts) {
    try {
      out.session.push({ rows: text(await sql.unsafe(q, [], { prepare: true }).values()) });
    } catch (e) {
      if (!e.code) throw e;
      out.session.push({ code: e.code, message: e.message });
    }
  }
  const step = async (name, f) => {
    try {
      out[name] = await f();
    } catch (e) {
      if (!e.code || e.code.length !== 5) throw e;
      out[name] = { code: e.code };
    }
  };
  // Queries issued together are pipelined on the one connection, each
  // with its own Sync: a refused one fails alone.
  await step('pipelined', async () => (await Promise.allSettled([
    sql`SELECT id FROM orders WHERE id = ${1}`,
    sql`SELECT email FROM customers WHERE id = ${1}`,
    sql`SELECT id FROM orders WHERE id = ${2}`,
    sql`SELECT name FROM customers WHERE id = ${3}`,
  ])).map((r) => (r.status === 'fulfilled' ? r.value[0].id || r.value[0].name : r.reason.code)));
  // The same text again: postgres.js binds its named prepared statement.
  await step('reused', async () => {
    const ids = [];
    for (const id of [3, 4, 5]) ids.push((await sql`SELECT id FROM orders WHERE id = ${id}`)[0].id);
    return ids;
  });
  await step('describe', async () => {
    const d = await sql`SELECT id, total FROM orders WHERE id = ${1}`.describe();
    return { types: d.types, columns: d.columns.map((c) => c.name) };
  });
  await step('unsafe_multi', async () => (await sql.unsafe('SELECT 1 AS a; SELECT 2 AS b')).map((r) => r[0]));
  // A refusal inside sql.begin rolls the transaction back; the
  // connection goes on.
  await step('begin_denied', async () => sql.begin(async (tx) => {
    await tx`INSERT INTO orders (customer_id, product_id, total) VALUES (1, 1, 1.01)`;
    await tx`DELETE FROM orders`;
  }));
  await step('begin', async () => sql.begin(async (tx) => {
    const [r] = await tx`INSERT INTO orders (customer_id, product_id, total) VALUES (1, 1, 1.02) RETURNING total`;
    const [n] = await tx`SELECT count(*)::int AS n FROM orders`;
    return [r.total, n.n];
  }));
  await step('savepoint_denied', async () => sql.begin(async (tx) => {
    let code;
    try {
      await tx.savepoint((sp) => sp`UPDATE orders SET total = 0`);
    } catch (e) {
      code = e.code;
    }
    const [n] = await tx`SELECT count(*)::int AS n FROM orders`;
    return [code, n.n];
  }));
  await step('cursor', async () => {
    const batches = [];
    for await (const rows of sql`SELECT id FROM orders WHERE id <= 5 ORDER BY id`.cursor(2)) batches.push(rows.map((r) => r.id));
    return batches;
  });
  await step('cursor_denied', async () => {
    for await (const rows of sql`SELECT ssn FROM customers`.cursor(2)) void rows;
    return 'read';
  });
  await step('copy_to', async () => {
    let s = '';
    for await (const chunk of await sql`COPY (SELECT id FROM orders WHERE id <= 3 ORDER BY id) TO STDOUT`.readable()) s += chunk;
    return s;
  });
  await step('copy_from', async () => {
    await pipeline(Readable.from(['1\t1\t2.01\n', '2\t2\t2.02\n']), await sql`COPY orders (customer_id, product_id, total) FROM STDIN`.writable());
    return 'done';
  });
  await step('copy_from_denied', async () => {
    await pipeline(Readable.from(['9\tx\tx@example.com\n']), await sql`COPY customers (id, name, email) FROM STDIN`.writable());
    return 'done';
  });
  await step('final', async () => (await sql`SELECT count(*)::int AS n FROM orders`)[0].n);
  await sql.end({ timeout: 5 });
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
