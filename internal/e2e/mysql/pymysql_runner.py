"""PyMySQL through keyhole: the scenario of mysqlproxy's client tests.

Environment: KH_HOST, KH_PORT, KH_USER, KH_PASSWORD, KH_DB, KH_SSL_CA
(optional: connect with TLS verifying that CA). Prints one JSON object.
"""
import json
import os
import sys

import pymysql


def errinfo(e):
    return {"errno": e.args[0], "message": e.args[1] if len(e.args) > 1 else ""}


def main():
    kw = dict(host=os.environ["KH_HOST"], port=int(os.environ["KH_PORT"]),
              user=os.environ["KH_USER"], password=os.environ["KH_PASSWORD"],
              database=os.environ["KH_DB"], connect_timeout=20)
    if os.environ.get("KH_SSL_CA"):
        kw["ssl"] = {"ca": os.environ["KH_SSL_CA"]}
    out = {}
    try:
        conn = pymysql.connect(**kw)
    except pymysql.err.MySQLError as e:
        out["connect_error"] = errinfo(e)
        print(json.dumps(out))
        return
    cur = conn.cursor()
    cur.execute("SELECT id, name FROM customers ORDER BY id")
    out["rows"] = [list(r) for r in cur.fetchall()]
    try:
        cur.execute("SELECT id, email FROM customers")
    except pymysql.err.MySQLError as e:
        out["denied_column"] = errinfo(e)
    cur.execute("SELECT count(*) FROM orders")
    out["count"] = cur.fetchone()[0]
    try:
        cur.execute("DELETE FROM orders")
    except pymysql.err.MySQLError as e:
        out["denied_write"] = errinfo(e)
    # PyMySQL starts with autocommit off: the insert lives in a transaction.
    cur.execute("INSERT INTO orders (id, item, amount) VALUES (%s, %s, %s)", (100, "x", 1))
    conn.rollback()
    cur.execute("INSERT INTO orders (id, item, amount) VALUES (%s, %s, %s)", (101, "y", 2))
    conn.commit()
    cur.execute("SELECT id, item FROM orders WHERE id = %s", (3,))
    out["param_row"] = list(cur.fetchone())
    conn.close()
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
