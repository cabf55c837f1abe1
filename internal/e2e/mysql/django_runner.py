"""Django's MySQL backend (mysqlclient) through keyhole: what Django sends
at connect, its introspection (inspectdb's calls), a model query, a raw
query, a transaction and refusals.

Environment: KH_HOST, KH_PORT, KH_USER, KH_PASSWORD, KH_DB. Prints one
JSON object: each step's result, or {"errno": ..., "message": ...} when
the step was refused.
"""
import json
import os

import django
from django.conf import settings

settings.configure(
    DATABASES={"default": {
        "ENGINE": "django.db.backends.mysql",
        "NAME": os.environ["KH_DB"], "USER": os.environ["KH_USER"], "PASSWORD": os.environ["KH_PASSWORD"],
        "HOST": os.environ["KH_HOST"], "PORT": os.environ["KH_PORT"],
        "OPTIONS": {"connect_timeout": 20},
    }},
    INSTALLED_APPS=[],
    USE_TZ=False,
)
django.setup()

from django.db import connection, models, transaction  # noqa: E402
from django.db.utils import DatabaseError  # noqa: E402


class Order(models.Model):
    id = models.IntegerField(primary_key=True)
    item = models.CharField(max_length=64)
    amount = models.DecimalField(max_digits=10, decimal_places=2)

    class Meta:
        app_label = "kh"
        db_table = "orders"
        managed = False


def step(out, name, fn):
    try:
        out[name] = fn()
    except DatabaseError as e:
        cause = e.__cause__ or e
        args = getattr(cause, "args", ())
        out[name] = {"errno": args[0] if args else 0, "message": args[1] if len(args) > 1 else str(e)}


def main():
    out = {}
    step(out, "connect", lambda: connection.ensure_connection() or "ok")

    def introspect(table):
        with connection.cursor() as c:
            return [d.name for d in connection.introspection.get_table_description(c, table)]

    def table_names():
        with connection.cursor() as c:
            return sorted(connection.introspection.table_names(c))
    step(out, "table_names", table_names)
    step(out, "describe_orders", lambda: introspect("orders"))
    step(out, "describe_customers", lambda: introspect("customers"))

    def constraints():
        with connection.cursor() as c:
            cons = connection.introspection.get_constraints(c, "orders")
            return sorted(k for k, v in cons.items() if v["primary_key"])
    step(out, "constraints_orders", constraints)

    step(out, "model_select", lambda: [o.item for o in Order.objects.filter(id__in=[3, 7]).order_by("id")])

    def raw(sql):
        def run():
            with connection.cursor() as c:
                c.execute(sql)
                return [list(r) for r in c.fetchall()]
        return run
    step(out, "names", raw("SELECT name FROM customers ORDER BY id"))
    step(out, "denied_column", raw("SELECT email FROM customers"))

    def insert():
        with transaction.atomic():
            Order.objects.create(id=101, item="y", amount=2)
        return "ok"
    step(out, "insert", insert)

    def delete():
        with transaction.atomic():
            return Order.objects.all().delete()[0]
    step(out, "denied_write", delete)
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
