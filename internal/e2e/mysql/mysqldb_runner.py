"""mysqlclient (MySQLdb, libmariadb) through keyhole, for TestMySQLDrivers:
executemany (which mysqlclient rewrites into one multi-row INSERT),
a refused executemany, callproc (SET @_p_0 then CALL), a server-side
streaming cursor (SSCursor) and a refusal inside a transaction.

Environment: KH_HOST, KH_PORT, KH_USER, KH_PASSWORD, KH_DB. Prints one
JSON object: each step's result, or {"errno": ..., "message": ...} when
the step failed.
"""
import json
import os

import MySQLdb
import MySQLdb.cursors

conn = MySQLdb.connect(host=os.environ["KH_HOST"], port=int(os.environ["KH_PORT"]),
                       user=os.environ["KH_USER"], password=os.environ["KH_PASSWORD"],
                       database=os.environ["KH_DB"], connect_timeout=20)
out = {}


def step(name, f):
    try:
        out[name] = f()
    except MySQLdb.Error as e:
        out[name] = {"errno": e.args[0], "message": e.args[1] if len(e.args) > 1 else ""}


def rows(sql, args=None, cursorclass=None):
    cur = conn.cursor(cursorclass) if cursorclass else conn.cursor()
    try:
        cur.execute(sql, args)
        return [list(r) for r in cur.fetchall()]
    finally:
        cur.close()


def executemany(sql, args):
    cur = conn.cursor()
    try:
        return cur.executemany(sql, args)
    finally:
        cur.close()


step("executemany", lambda: executemany(
    "INSERT INTO orders (id, item, amount) VALUES (%s, %s, %s)", [(400, "a", 1), (401, "b", 2), (402, "c", 3)]))
step("executemany_denied", lambda: executemany("UPDATE orders SET amount = %s WHERE id = %s", [(9, 400), (9, 401)]))
step("committed", lambda: (conn.commit(), rows("SELECT id, amount FROM orders WHERE id BETWEEN %s AND %s ORDER BY id", (400, 499)))[1])


def callproc():
    cur = conn.cursor()
    try:
        cur.callproc("no_such_grant", (1,))
        return "ran"
    finally:
        cur.close()


step("callproc", callproc)
step("after_callproc", lambda: rows("SELECT item FROM orders WHERE id = %s", (5,)))
step("streamed", lambda: len(rows("SELECT id FROM orders", cursorclass=MySQLdb.cursors.SSCursor)))


def denied_in_tx():
    cur = conn.cursor()
    try:
        cur.execute("INSERT INTO orders (id, item, amount) VALUES (410, 't', 1)")
        try:
            cur.execute("DELETE FROM orders")
        except MySQLdb.Error as e:
            code = e.args[0]
        cur.execute("SELECT @@in_transaction")
        return [code, cur.fetchone()[0]]
    finally:
        conn.rollback()
        cur.close()


step("denied_in_tx", denied_in_tx)
step("final", lambda: rows("SELECT count(*) FROM orders WHERE id BETWEEN %s AND %s", (400, 499)))
conn.close()
print(json.dumps(out, default=str))
