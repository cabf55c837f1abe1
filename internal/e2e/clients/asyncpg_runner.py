"""Run SQL statements through asyncpg for keyhole's end-to-end tests.

Reads a libpq keyword/value connection string from KEYHOLE_DSN and a JSON
list of SQL texts from stdin. Prints a JSON object: "session", per
statement either the rows (every value as text) or the SQLSTATE of the
error; "cursor", the ids an asyncpg cursor (a protocol portal fetched with
a row limit) returned in batches of two; "settings", what the server
reports for client_encoding and application_name.

asyncpg sends client_encoding='utf-8' in its startup packet.
"""
import asyncio
import json
import os
import sys

import asyncpg


def conninfo():
    kv = dict(part.split("=", 1) for part in os.environ["KEYHOLE_DSN"].split())
    return dict(host=kv["host"], port=int(kv["port"]), user=kv["user"],
                password=kv["password"], database=kv["dbname"], ssl="require")


async def main():
    stmts = json.load(sys.stdin)
    conn = await asyncpg.connect(**conninfo())
    session = []
    for sql in stmts:
        try:
            rows = await conn.fetch(sql)
            session.append({"rows": [[None if v is None else str(v) for v in r] for r in rows]})
        except asyncpg.PostgresError as e:
            session.append({"code": e.sqlstate or "", "message": str(e)})
    batches = []
    async with conn.transaction():
        cur = await conn.cursor("SELECT id FROM orders ORDER BY id")
        while True:
            batch = await cur.fetch(2)
            if not batch:
                break
            batches.append([r["id"] for r in batch])
    settings = {
        "client_encoding": conn.get_settings().client_encoding,
        "application_name": await conn.fetchval("SHOW application_name"),
    }
    await conn.close()
    json.dump({"session": session, "cursor": batches, "settings": settings}, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main())
