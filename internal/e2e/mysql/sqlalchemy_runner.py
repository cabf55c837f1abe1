"""SQLAlchemy (over PyMySQL) through keyhole: what an ORM does at connect
and when it reflects tables, then a Core query, an ORM-style insert in a
transaction and a refused column.

Environment: KH_HOST, KH_PORT, KH_USER, KH_PASSWORD, KH_DB. Prints one
JSON object: each step's result, or {"errno": ..., "message": ...} when
the step was refused.
"""
import json
import os

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError


def step(out, name, fn):
    try:
        out[name] = fn()
    except DBAPIError as e:
        orig = e.orig
        out[name] = {"errno": orig.args[0], "message": orig.args[1] if len(orig.args) > 1 else ""}


def main():
    url = sa.engine.URL.create(
        "mysql+pymysql", username=os.environ["KH_USER"], password=os.environ["KH_PASSWORD"],
        host=os.environ["KH_HOST"], port=int(os.environ["KH_PORT"]), database=os.environ["KH_DB"])
    engine = sa.create_engine(url, connect_args={"connect_timeout": 20}, future=True)
    out = {}
    # The first connection runs the dialect's initialize: server version,
    # sql_mode, lower_case_table_names, default schema, collation checks.
    step(out, "connect", lambda: engine.connect().close() or "ok")
    insp = sa.inspect(engine)
    step(out, "table_names", lambda: sorted(insp.get_table_names()))
    step(out, "columns_orders", lambda: [c["name"] for c in insp.get_columns("orders")])
    step(out, "pk_orders", lambda: insp.get_pk_constraint("orders")["constrained_columns"])
    # customers has a labelled column: SHOW CREATE TABLE reads every column.
    step(out, "columns_customers", lambda: [c["name"] for c in insp.get_columns("customers")])

    md = sa.MetaData()
    orders = sa.Table("orders", md, autoload_with=engine)
    customers = sa.Table("customers", md, sa.Column("id", sa.Integer, primary_key=True),
                         sa.Column("name", sa.String(64)), sa.Column("email", sa.String(128)))

    def core_select():
        with engine.connect() as c:
            rows = c.execute(sa.select(orders.c.id, orders.c.item).where(orders.c.id.in_([3, 7])).order_by(orders.c.id))
            return [[r.id, r.item] for r in rows]
    step(out, "core_select", core_select)

    def names():
        with engine.connect() as c:
            return [r.name for r in c.execute(sa.select(customers.c.name).order_by(customers.c.id))]
    step(out, "names", names)

    def denied_column():
        with engine.connect() as c:
            return [list(r) for r in c.execute(sa.select(customers.c.id, customers.c.email))]
    step(out, "denied_column", denied_column)

    def tx():
        with engine.begin() as c:
            c.execute(orders.insert().values(id=101, item="y", amount=2))
        return "ok"
    step(out, "insert", tx)

    def denied_write():
        with engine.begin() as c:
            return c.execute(orders.delete()).rowcount
    step(out, "denied_write", denied_write)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
