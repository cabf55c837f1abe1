"""Run SQL statements through psycopg2 for keyhole's end-to-end tests.

Reads a libpq connection string from KEYHOLE_DSN and a JSON list of SQL
texts from stdin; prints a JSON list with, per statement, either the rows
(every value as text) or the SQLSTATE of the error. Autocommit, so a denied
statement does not abort the ones after it.
"""
import json
import os
import sys

import psycopg2


def main():
    stmts = json.load(sys.stdin)
    conn = psycopg2.connect(os.environ["KEYHOLE_DSN"])
    conn.autocommit = True
    out = []
    for sql in stmts:
        cur = conn.cursor()
        try:
            cur.execute(sql)
            rows = cur.fetchall() if cur.description is not None else []
            out.append({"rows": [[None if v is None else str(v) for v in r] for r in rows]})
        except psycopg2.Error as e:
            out.append({"code": e.pgcode or "", "message": str(e).strip()})
        finally:
            cur.close()
    conn.close()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
