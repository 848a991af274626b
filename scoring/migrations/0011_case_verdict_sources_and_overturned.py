"""Cases say who settled them when no person did (the chargeback feed) and whether a fraud label overturned a
legitimate verdict; audit events name a non-person actor. Database defaults: ingest's SQL opens cases and
events without these columns."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('scoring', '0010_amount_with_the_currencys_decimals'),
    ]

    operations = [
        migrations.AddField(
            model_name='case',
            name='overturned',
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.AddField(
            model_name='case',
            name='resolved_via',
            field=models.CharField(blank=True, db_default='', default='', max_length=40),
        ),
        migrations.AddField(
            model_name='caseevent',
            name='via',
            field=models.CharField(blank=True, db_default='', default='', max_length=40),
        ),
    ]
