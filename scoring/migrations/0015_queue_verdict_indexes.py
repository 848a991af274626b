"""Indexes for the review queue's verdicts listed latest first, and for its overturned verdicts."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("scoring", "0014_list_entry_events"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="case",
            index=models.Index(fields=["status", "-resolved_at", "-id"], name="case_status_resolved"),
        ),
        migrations.AddIndex(
            model_name="case",
            index=models.Index(
                condition=models.Q(("overturned", True)), fields=["-resolved_at", "-id"], name="case_overturned"
            ),
        ),
    ]
