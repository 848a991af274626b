"""The lists' audit trail: every entry added, changed, ended or removed, by whom, from which case."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("scoring", "0013_cases_belong_to_cards"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="ListEntryEvent",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "action",
                    models.CharField(
                        choices=[
                            ("added", "Added"),
                            ("changed", "Changed"),
                            ("ended", "Ended early"),
                            ("removed", "Removed"),
                        ],
                        max_length=8,
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[("allow", "Allow (always approve)"), ("block", "Block (always block)")], max_length=5
                    ),
                ),
                ("entity", models.CharField(choices=[("card", "Card"), ("merchant", "Merchant")], max_length=8)),
                ("value", models.CharField(max_length=64)),
                ("reason", models.CharField(blank=True, default="", max_length=200)),
                ("expires_at", models.DateTimeField(blank=True, null=True)),
                ("at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "actor",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "case",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="scoring.case",
                    ),
                ),
            ],
            options={
                "ordering": ["at", "id"],
                "indexes": [models.Index(fields=["entity", "value", "at"], name="list_event_entity")],
            },
        ),
    ]
