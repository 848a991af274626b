"""Transactions keep the features their model saw as a list in its feature order, not a JSON object.

PostgreSQL: `real[]` (see FeatureValuesField): the JSON objects were 70 % of a row, and parsing them most of
an insert's cost. Each stored object becomes the list of its model version's features (`ModelVersion.features`;
for a version no longer stored, FEATURES as they were when this was written), missing or null values NaN.
Rows without features (imported history) keep none. Backwards, the lists become objects again by the same
names.

It rewrites every scored row in one UPDATE (`migrate` took 4 s over 100,000 rows here): on a large table, run it in a quiet
hour and VACUUM (ANALYZE) the table afterwards.
"""

import json
import math

from django.db import migrations

import scoring.models

# The feature names when this migration was written: for rows whose model version is no longer stored.
FEATURES_THEN = [
    "amount",
    *[f"card_{kind}_{w}" for kind in ("count", "sum", "avg") for w in ("1h", "1d", "7d", "30d")],
    "amount_vs_card_avg_30d",
    "seconds_since_card_prev",
    "card_distinct_merchants_1d",
    *[f"merchant_{kind}_{w}" for kind in ("count", "fraud_count", "fraud_share") for w in ("1d", "7d", "30d")],
    "hour_of_day",
    "is_night",
    "is_weekend",
    "channel",
]

_TO_ARRAYS = """
ALTER TABLE {t} ADD COLUMN feature_values real[] NOT NULL DEFAULT '{{}}';
UPDATE {t} AS tx SET feature_values = ARRAY(
    SELECT coalesce((tx.features ->> name)::real, 'NaN')
    FROM jsonb_array_elements_text(
        coalesce((SELECT features FROM {mv} WHERE version = tx.model_version), %s::jsonb)
    ) WITH ORDINALITY AS names(name, position)
    ORDER BY position
) WHERE tx.features <> '{{}}'::jsonb;
ALTER TABLE {t} DROP COLUMN features;
ALTER TABLE {t} RENAME COLUMN feature_values TO features;
ALTER TABLE {t} ALTER COLUMN features DROP DEFAULT;
"""

_TO_OBJECTS = """
ALTER TABLE {t} ADD COLUMN feature_object jsonb NOT NULL DEFAULT '{{}}';
UPDATE {t} AS tx SET feature_object = (
    SELECT coalesce(jsonb_object_agg(name, CASE WHEN value = 'NaN' THEN NULL ELSE value END), '{{}}')
    FROM jsonb_array_elements_text(
        coalesce((SELECT features FROM {mv} WHERE version = tx.model_version), %s::jsonb)
    ) WITH ORDINALITY AS names(name, position)
    JOIN unnest(tx.features) WITH ORDINALITY AS v(value, position) USING (position)
) WHERE cardinality(tx.features) > 0;
ALTER TABLE {t} DROP COLUMN features;
ALTER TABLE {t} RENAME COLUMN feature_object TO features;
ALTER TABLE {t} ALTER COLUMN features DROP DEFAULT;
"""


def _names(apps) -> dict[str, list[str]]:
    return dict(apps.get_model("scoring", "ModelVersion").objects.values_list("version", "features"))


def forwards(apps, schema_editor) -> None:
    _convert(apps, schema_editor, sql=_TO_ARRAYS, row=_to_values)


def backwards(apps, schema_editor) -> None:
    _convert(apps, schema_editor, sql=_TO_OBJECTS, row=_to_object)


def _convert(apps, schema_editor, *, sql: str, row) -> None:
    connection = schema_editor.connection
    tx_table = apps.get_model("scoring", "Transaction")._meta.db_table
    if connection.vendor == "postgresql":
        mv_table = apps.get_model("scoring", "ModelVersion")._meta.db_table
        statement = sql.format(t=connection.ops.quote_name(tx_table), mv=connection.ops.quote_name(mv_table))
        with connection.cursor() as cursor:
            for part in filter(None, (part.strip() for part in statement.split(";"))):
                cursor.execute(part, [json.dumps(FEATURES_THEN)] if "%s" in part else None)
        return
    # Elsewhere the column is text either way (JSON): rewrite each row's value.
    names = _names(apps)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, model_version, features FROM {tx_table}")
        updates = [(row(json.loads(value), names.get(version, FEATURES_THEN)), pk) for pk, version, value in cursor]
        cursor.executemany(f"UPDATE {tx_table} SET features = %s WHERE id = %s", updates)


def _to_values(stored: dict, names: list[str]) -> str:
    return json.dumps([stored.get(name) for name in names] if stored else [])


def _to_object(stored: list, names: list[str]) -> str:
    return json.dumps({name: (None if v is None or math.isnan(v) else v) for name, v in zip(names, stored)})


class Migration(migrations.Migration):
    dependencies = [("scoring", "0006_transaction_insert_autovacuum")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(forwards, backwards, elidable=False)],
            state_operations=[
                migrations.AlterField(
                    model_name="transaction",
                    name="features",
                    field=scoring.models.FeatureValuesField(
                        default=list, help_text="Feature values the model saw, in its feature order"
                    ),
                ),
            ],
        ),
    ]
