"""How long a rule's backtest takes over a million stored transactions (PostgreSQL), as `make bench`'s last phase.

    createdb fraudsite_backtest_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fraudsite_backtest_bench .venv/bin/python manage.py migrate
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fraudsite_backtest_bench .venv/bin/python bench/backtest_timing.py

On an empty database it first stores ROWS transactions over the last 30 days (SQL, a minute or two): every one
scored by a model version "bench" with a value for each of its features, 10 % labeled; and ACTIVE other active
rules for the overlaps. Then it times backtests of a three-clause condition over the 30 days and prints each,
and the slowest as `backtest_1m_seconds=...` for the bench's summary. Use a database of its own: it is never
emptied.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROWS = 1_000_000
CONDITION = 'amount > 500.0 && card_count_1h >= 3.0 && country != "PL"'
OTHERS = [  # active rules of the kinds analysts write: fields, features, score, lists
    'amount > 2000.0 && channel == "ecom"',
    "card_count_1h >= 5.0 && score > 0.5",
    "merchant_fraud_share_1d > 0.5",
    'hour < 5 && country != "NL"',
    "card_blocked || merchant_blocked",
]
FILL = """
INSERT INTO scoring_transaction (external_id, card_id, merchant_id, amount, currency, "timestamp", country, channel,
    mcc, score, decision, reasons, model_version, received_at, is_fraud, features, label_source, rules, shadow_rules,
    challenger_version)
SELECT 'bt-' || lpad(i::text, 9, '0'),
       'c' || lpad(floor(random() * 50000)::int::text, 6, '0'),
       'm' || lpad(floor(2000 * power(random(), 3))::int::text, 5, '0'),
       round((random() * 1000)::numeric, 2), (ARRAY['EUR', 'PLN', 'USD'])[1 + floor(random() * 3)::int],
       now() - make_interval(secs => 2.5 * i), (ARRAY['NL', 'PL', 'DE', 'FR'])[1 + floor(random() * 4)::int],
       (ARRAY['pos', 'ecom', 'atm'])[1 + floor(random() * 3)::int], '5411',
       random(), CASE WHEN random() < 0.05 THEN 'review' WHEN random() < 0.02 THEN 'block' ELSE 'approve' END,
       '[]'::jsonb, 'bench', now(),
       CASE WHEN random() < 0.02 THEN true WHEN random() < 0.1 THEN false END,
       (SELECT array_agg(floor(random() * 7)::real) FROM generate_series(1, %s) WHERE i > 0), '', '[]', '[]', ''
FROM generate_series(1, %s) AS i
"""


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fraudsite.settings")
    import django

    django.setup()
    from django.db import connection

    from scoring.backtest import backtest
    from scoring.features import FEATURES
    from scoring.models import ModelVersion, Rule, Transaction

    assert connection.vendor == "postgresql", "set DATABASE_URL to a PostgreSQL database of its own"
    if not Transaction.objects.exists():
        started = time.perf_counter()
        ModelVersion.objects.get_or_create(version="bench", defaults={"artifact": b"", "features": FEATURES})
        with connection.cursor() as cursor:
            cursor.execute(FILL, [len(FEATURES), ROWS])
            cursor.execute("VACUUM ANALYZE scoring_transaction")
        for n, condition in enumerate(OTHERS):
            Rule.objects.create(name=f"other-{n}", condition=condition, action="review", status="active")
        print(f"stored {ROWS:,} transactions in {time.perf_counter() - started:.0f} s")
    print(f"{Transaction.objects.count():,} transactions, {Rule.objects.filter(status='active').count()} active rules")
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        result = backtest(CONDITION, days=30)
        runs.append(time.perf_counter() - started)
        print(
            f"backtest of {CONDITION!r} over 30 days: {result.transactions:,} rows, {result.hits:,} hits, "
            f"{runs[-1]:.2f} s"
        )
    print(f"backtest_1m_seconds={max(runs):.2f}")


if __name__ == "__main__":
    main()
