"""asyncpg's batching and statement flows through keyhole, for
TestAsyncpgFlows.

Reads a libpq keyword/value connection string from KEYHOLE_DSN. Prints a
JSON object with a key per flow: its value, or {"code": SQLSTATE} when it
failed. executemany pipelines Bind/Execute per row behind one Sync;
copy_records_to_table streams binary COPY; a cursor with prefetch reads a
portal with a row limit; a statement from prepare() is bound again after
other statements were refused.
"""
import asyncio
import json
import os
import sys
from decimal import Decimal

import asyncpg


def conninfo():
    kv = dict(part.split("=", 1) for part in os.environ["KEYHOLE_DSN"].split())
    return dict(host=kv["host"], port=int(kv["port"]), user=kv["user"],
                password=kv["password"], database=kv["dbname"], ssl="require")


async def main():
    conn = await asyncpg.connect(**conninfo())
    out = {}

    async def step(name, f):
        try:
            out[name] = await f()
        except asyncpg.PostgresError as e:
            out[name] = {"code": e.sqlstate}

    count = lambda: conn.fetchval("SELECT count(*) FROM orders")
    await step("executemany", lambda: conn.executemany(
        "INSERT INTO orders (customer_id, product_id, total) VALUES ($1, $2, $3)",
        [(1, 1, Decimal("1.01")), (2, 2, Decimal("1.02"))]))
    await step("executemany_denied", lambda: conn.executemany(
        "UPDATE orders SET total = $1 WHERE id = $2", [(Decimal(1), 1), (Decimal(2), 2)]))
    await step("after_executemany", count)
    await step("copy_records", lambda: conn.copy_records_to_table(
        "orders", records=[(1, 1, Decimal("2.01")), (2, 2, Decimal("2.02"))],
        columns=["customer_id", "product_id", "total"]))
    await step("copy_records_denied", lambda: conn.copy_records_to_table(
        "secrets", records=[(9, "k", "v")], columns=["id", "name", "value"]))
    await step("after_copy", count)

    async def cursor(sql):
        ids = []
        async with conn.transaction():
            async for r in conn.cursor(sql, prefetch=2):
                ids.append(r[0])
        return ids
    await step("cursor", lambda: cursor("SELECT id FROM orders WHERE id <= 5 ORDER BY id"))
    await step("cursor_denied", lambda: cursor("SELECT ssn FROM customers"))

    async def prepared():
        st = await conn.prepare("SELECT id FROM orders WHERE id = $1")
        got = [await st.fetchval(1)]
        try:
            await conn.fetch("SELECT email FROM customers")
        except asyncpg.PostgresError as e:
            got.append(e.sqlstate)
        got.append(await st.fetchval(2))
        try:
            await conn.prepare("SELECT ssn FROM customers WHERE id = $1")
        except asyncpg.PostgresError as e:
            got.append(e.sqlstate)
        got.append(await st.fetchval(3))
        return got
    await step("prepared", prepared)

    async def tx_denied():
        try:
            async with conn.transaction():
                await conn.execute("INSERT INTO orders (customer_id, product_id, total) VALUES (1, 1, 3.01)")
                await conn.execute("DELETE FROM orders")
        except asyncpg.PostgresError as e:
            return [e.sqlstate, conn.is_in_transaction()]
        return "ran"
    await step("tx_denied", tx_denied)
    await step("after", count)
    await conn.close()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main())
