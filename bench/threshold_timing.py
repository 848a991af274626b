"""How long a version's threshold figures take on a store of a million scored transactions (PostgreSQL).

    createdb fraudsite_threshold_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fraudsite_threshold_bench .venv/bin/python manage.py migrate
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fraudsite_threshold_bench .venv/bin/python bench/threshold_timing.py

On an empty database it first trains a small model on random rows and stores ROWS transactions of the last 30 days
(SQL, a minute or two), each with feature values of that model's list (random, the amount large for a few), most
labeled. Then it prints the time of threshold_figures() (read, score, count) for 7 and 30 days, and of reading the
figures at every threshold. Use a database of its own: it is never emptied.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROWS = 1_000_000
FILL = """
INSERT INTO scoring_transaction (external_id, card_id, merchant_id, amount, currency, "timestamp", country, channel,
    mcc, score, decision, reasons, model_version, received_at, is_fraud, features, label_source)
SELECT 'thr-' || i, 'c' || floor(random() * 50000)::int, 'm' || floor(random() * 2000)::int, a.amount,
       CASE WHEN random() < 0.8 THEN 'EUR' ELSE 'USD' END, now() - make_interval(secs => 2.5 * i), 'NL', 'ecom',
       '5411', 0.1, 'approve', '[]'::jsonb, %s, now(),
       CASE WHEN random() < 0.7 THEN a.amount > 1000 END,
       array_prepend(a.amount::real, array(SELECT (random() * 2 - 1)::real FROM generate_series(2, %s) WHERE i > 0)), ''
FROM generate_series(1, %s) AS i, LATERAL (SELECT round(exp(4 + 2 * (random() + random() - 1))::numeric, 2)
    AS amount) AS a
"""


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fraudsite.settings")
    import django

    django.setup()
    import numpy as np
    import xgboost as xgb
    from django.db import connection

    from scoring import thresholds
    from scoring.classifier import version_name
    from scoring.features import FEATURE_INDEX, FEATURES
    from scoring.models import ModelVersion, Transaction

    assert connection.vendor == "postgresql", "set DATABASE_URL to a PostgreSQL database of its own"
    assert FEATURE_INDEX["amount"] == 0, "the fill puts the amount first"
    version = ModelVersion.objects.filter(version__startswith="bench-").first()
    if version is None:
        rng = np.random.default_rng(26)
        x = rng.uniform(-1, 1, size=(20_000, len(FEATURES))).astype(np.float32)
        x[:, 0] = rng.lognormal(4.0, 2.0, size=len(x))
        params = {"max_depth": 6, "eta": 0.3, "objective": "binary:logistic", "nthread": 1, "seed": 26}
        booster = xgb.train(params, xgb.DMatrix(x, label=x[:, 0] > 1000), num_boost_round=100)
        artifact = bytes(booster.save_raw("ubj"))
        version = ModelVersion.objects.create(
            version=f"bench-{version_name(artifact)}", artifact=artifact, features=FEATURES
        )
    if not Transaction.objects.exists():
        start = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(FILL, [version.version, len(FEATURES), ROWS])
            cursor.execute("VACUUM ANALYZE scoring_transaction")
        print(f"stored {ROWS:,} transactions in {time.perf_counter() - start:.0f} s")
    for days in (7, 30):
        start = time.perf_counter()
        figures = thresholds.threshold_figures(version, days=days)
        took = time.perf_counter() - start
        start = time.perf_counter()
        figures.points()
        read = (time.perf_counter() - start) * 1000
        print(
            f"{days:2d} days: {figures.rows:,} rows scored ({figures.labeled:,} labeled) in {took:.1f} s; "
            f"every threshold read in {read:.1f} ms"
        )


if __name__ == "__main__":
    main()
