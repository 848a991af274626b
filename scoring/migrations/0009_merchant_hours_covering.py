"""PostgreSQL: the merchant hours' unique index carries the counts (INCLUDE), so window sums read no heap.

A merchant's window counts sum up to 888 of its hours (30 days and the 7-day label delay). Every merchant's
current hour is written at the same time, so in a store that has run for a month one merchant's hours lie on
888 different heap pages, and the read visited each. Measured here, served by uvicorn, batches of 100 from 4
connections, every one of 2,000 merchants with 900 hours stored in hour order and vacuumed (two pairs):
3,994-4,207 against 2,030-2,229 tx/s, PostgreSQL 0.27-0.35 against 0.77-0.85 ms of CPU a transaction; single
POSTs from 16 connections there (one pair) 1,223 against 674, PostgreSQL 0.57 against 1.42. The price: updating
a count is no longer a HOT update (the index holds it), so each one adds an entry to both of the table's
indexes until vacuum. On an empty store batches showed no difference (two pairs) and single POSTs from 16
connections lost 2-16 % in four pairs (1,640-1,866 against 1,668-2,004 tx/s, PostgreSQL 0.27-0.30 against
0.25-0.30 ms), then +3 %, +1 % and -24 % in three rounds with the same code on both (in the last the server's own
CPU a transaction, which no index changes, rose by a third); over the month `make bench` imports (~96 hours a merchant, written merchant by merchant) batches
showed no difference (two pairs). Rebuilding the index holds the table's lock for as long as the build takes.

Done here rather than with `UniqueConstraint(include=...)` in the model: Django leaves such a constraint out
altogether on SQLite (no covering indexes there), and the upserts' ON CONFLICT needs it.
"""

from django.db import migrations

NAME = "one_row_per_merchant_hour"


def _replace(apps, schema_editor, *, include: str) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("scoring", "MerchantHour")._meta.db_table)
    schema_editor.execute(
        f"ALTER TABLE {table} DROP CONSTRAINT {NAME}, ADD CONSTRAINT {NAME} UNIQUE (merchant_id, hour){include}"
    )


def forwards(apps, schema_editor) -> None:
    _replace(apps, schema_editor, include=" INCLUDE (count, fraud_count)")


def backwards(apps, schema_editor) -> None:
    _replace(apps, schema_editor, include="")


class Migration(migrations.Migration):
    dependencies = [("scoring", "0008_amount_float_for_card_histories")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
