"""psycopg 3's batching flows through keyhole, for TestPsycopg3Flows.

Reads a libpq keyword/value connection string from KEYHOLE_DSN. Prints a
JSON object with a key per flow: its value, or {"code": SQLSTATE} when it
failed. Pipeline mode sends several Parse/Bind/Execute groups before one
Sync; executemany runs in a pipeline too; copy streams COPY FROM STDIN.
"""
import json
import os
import sys
from decimal import Decimal

import psycopg

out = {}


def step(name, f):
    try:
        out[name] = f()
    except psycopg.Error as e:
        out[name] = {"code": e.sqlstate}


def ints(rows):
    return [[int(v) for v in r] for r in rows]


with psycopg.connect(os.environ["KEYHOLE_DSN"], autocommit=True) as conn:
    def pipeline():
        with conn.pipeline():
            a = conn.execute("SELECT id FROM orders WHERE id = %s", (1,))
            b = conn.execute("SELECT count(*) FROM orders")
            return [ints(a.fetchall()), ints(b.fetchall())]
    step("pipeline", pipeline)

    def pipeline_denied():
        with conn.pipeline():
            conn.execute("INSERT INTO orders (customer_id, product_id, total) VALUES (1, 1, 4.01)")
            conn.execute("SELECT email FROM customers WHERE id = %s", (1,))
            conn.execute("INSERT INTO orders (customer_id, product_id, total) VALUES (1, 1, 4.02)")
        return "ran"
    step("pipeline_denied", pipeline_denied)
    step("after_pipeline", lambda: ints(conn.execute("SELECT count(*) FROM orders").fetchall()))

    def executemany(sql, rows, returning=False):
        with conn.cursor() as cur:
            cur.executemany(sql, rows, returning=returning)
            if not returning:
                return cur.rowcount
            got = []
            while True:
                got += [[str(v) for v in r] for r in cur.fetchall()]
                if not cur.nextset():
                    return got
    step("executemany", lambda: executemany(
        "INSERT INTO orders (customer_id, product_id, total) VALUES (%s, %s, %s) RETURNING total",
        [(1, 1, Decimal("5.01")), (2, 2, Decimal("5.02"))], returning=True))
    step("executemany_denied", lambda: executemany(
        "UPDATE orders SET total = %s WHERE id = %s", [(Decimal(1), 1), (Decimal(2), 2)]))

    def copy_in(sql, rows):
        with conn.cursor() as cur:
            with cur.copy(sql) as cp:
                for r in rows:
                    cp.write_row(r)
            return cur.rowcount
    step("copy", lambda: copy_in("COPY orders (customer_id, product_id, total) FROM STDIN", [(1, 1, "6.01"), (2, 2, "6.02")]))
    step("copy_denied", lambda: copy_in("COPY secrets (id, name, value) FROM STDIN", [(9, "k", "v")]))

    def copy_out():
        with conn.cursor() as cur:
            with cur.copy("COPY (SELECT id FROM orders WHERE id <= 3 ORDER BY id) TO STDOUT") as cp:
                return [list(r) for r in cp.rows()]
    step("copy_out", copy_out)
    step("after", lambda: ints(conn.execute("SELECT count(*) FROM orders").fetchall()))

with psycopg.connect(os.environ["KEYHOLE_DSN"]) as conn:
    # Not autocommit: the pipeline runs in the transaction psycopg opened;
    # the refusal aborts it until rollback.
    def tx_pipeline():
        try:
            with conn.pipeline():
                conn.execute("INSERT INTO orders (customer_id, product_id, total) VALUES (1, 1, 7.01)")
                conn.execute("DELETE FROM orders")
                conn.execute("SELECT 1")
        except psycopg.Error as e:
            return [e.sqlstate, conn.info.transaction_status.name]
        return "ran"
    step("tx_pipeline_denied", tx_pipeline)
    conn.rollback()
    step("after_rollback", lambda: ints(conn.execute("SELECT count(*) FROM orders").fetchall()))
    conn.rollback()

json.dump(out, sys.stdout)
