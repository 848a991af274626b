"""Amounts keep up to 4 decimals: a currency has as many as ISO 4217 gives it (JPY 0, EUR 2, BHD 3, CLF 4).

PostgreSQL cannot change the type of a column a generated column reads, so the float copy and the card-history
index that carries it are dropped and made again around the change (a rewrite of the table, once).
"""

import django.db.models.functions.comparison
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("scoring", "0009_merchant_hours_covering")]

    operations = [
        migrations.RemoveIndex(model_name="transaction", name="tx_card_history"),
        migrations.RemoveField(model_name="transaction", name="amount_float"),
        migrations.AlterField(
            model_name="transaction", name="amount", field=models.DecimalField(decimal_places=4, max_digits=14)
        ),
        migrations.AddField(
            model_name="transaction",
            name="amount_float",
            field=models.GeneratedField(
                db_persist=True,
                expression=django.db.models.functions.comparison.Cast("amount", models.FloatField()),
                output_field=models.FloatField(),
            ),
        ),
        migrations.AddIndex(
            model_name="transaction",
            index=models.Index(
                fields=["card_id", "timestamp"], include=("amount_float", "merchant_id"), name="tx_card_history"
            ),
        ),
    ]
