"""Cases belong to cards now (migration 0012 filed them): the case-transaction link goes, the one-open-case-per-card
constraint comes, and the default reason codes are seeded. Apart from 0012 so that PostgreSQL has no pending
foreign-key checks from 0012's updates when the case table is altered."""

from django.db import migrations, models

REASONS = [
    ("stolen-card", "Stolen card", "fraud"),
    ("card-testing", "Card testing", "fraud"),
    ("account-takeover", "Account takeover", "fraud"),
    ("friendly-fraud", "Friendly fraud", "fraud"),
    ("merchant-collusion", "Merchant collusion", "fraud"),
    ("false-positive", "False positive", "legitimate"),
]


def seed_reason_codes(apps, schema_editor):
    ReasonCode = apps.get_model("scoring", "ReasonCode")
    for position, (code, label, verdict) in enumerate(REASONS):
        ReasonCode.objects.get_or_create(code=code, defaults={"label": label, "verdict": verdict, "position": position})


class Migration(migrations.Migration):
    dependencies = [
        ("scoring", "0012_one_open_case_per_card"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="case",
            name="transaction",
        ),
        migrations.RunPython(seed_reason_codes, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="case",
            index=models.Index(fields=["card_id", "-opened_at"], name="case_card"),
        ),
        migrations.AddConstraint(
            model_name="case",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status", "open")), fields=("card_id",), name="one_open_case_per_card"
            ),
        ),
    ]
