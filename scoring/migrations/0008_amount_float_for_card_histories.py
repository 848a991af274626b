"""The amount as a float, stored beside it and in the card-history index: the features read a row again for
every later transaction of its card within 30 days.

On PostgreSQL adding a stored generated column rewrites the table (once).
"""

import django.db.models.functions.comparison
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('scoring', '0007_features_as_values'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='transaction',
            name='tx_card_history',
        ),
        migrations.AddField(
            model_name='transaction',
            name='amount_float',
            field=models.GeneratedField(db_persist=True, expression=django.db.models.functions.comparison.Cast('amount', models.FloatField()), output_field=models.FloatField()),
        ),
        migrations.AddIndex(
            model_name='transaction',
            index=models.Index(fields=['card_id', 'timestamp'], include=('amount_float', 'merchant_id'), name='tx_card_history'),
        ),
    ]
