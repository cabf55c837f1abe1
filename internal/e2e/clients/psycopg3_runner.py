"""Run SQL statements through psycopg 3 for keyhole's end-to-end tests.

Reads a libpq connection string from KEYHOLE_DSN and a JSON list of SQL
texts from stdin. Prints a JSON object: "session", per statement either the
rows (every value as text) or the SQLSTATE of the error (autocommit, client
side cursors); "named", what psycopg's named (server-side) cursors did.

A named cursor is DECLAREd and then used as a protocol portal (Describe);
psycopg fetches with FETCH FORWARD and closes it with CLOSE.
"""
import json
import os
import sys

import psycopg


def rows(rs):
    return [[None if v is None else str(v) for v in r] for r in rs]


def main():
    stmts = json.load(sys.stdin)
    dsn = os.environ["KEYHOLE_DSN"]
    out = {"session": [], "named": {}}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for sql in stmts:
            try:
                with conn.cursor() as cur:
                    cur.execute(sql)
                    out["session"].append({"rows": rows(cur.fetchall()) if cur.description else []})
            except psycopg.Error as e:
                out["session"].append({"code": e.sqlstate or "", "message": str(e).strip()})

    named = out["named"]
    with psycopg.connect(dsn) as conn:
        # In a transaction: fetch in parts, with a parameter.
        with conn.cursor(name="orders_cur") as cur:
            cur.execute("SELECT id FROM orders WHERE id > %s ORDER BY id", (1,))
            named["description"] = [d.name for d in cur.description]
            named["first"] = rows(cur.fetchmany(2))
            named["rest"] = rows(cur.fetchall())
        conn.commit()
        # WITH HOLD outlives the COMMIT.
        with conn.cursor(name="held", withhold=True) as cur:
            cur.execute("SELECT name FROM customers ORDER BY id")
            conn.commit()
            named["held"] = rows(cur.fetchall())
        conn.commit()
        # A cursor over what the policy denies is refused at DECLARE.
        try:
            with conn.cursor(name="bad") as cur:
                cur.execute("SELECT email FROM customers")
                cur.fetchall()
            named["denied"] = ""
        except psycopg.Error as e:
            named["denied"] = e.sqlstate or ""
        conn.rollback()
        # The transaction goes on after a rollback.
        with conn.cursor(name="again") as cur:
            cur.execute("SELECT count(*) FROM orders")
            named["again"] = rows(cur.fetchall())
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
