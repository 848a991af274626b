"""How long search and the card and merchant pages take on a store of a million transactions (PostgreSQL).

    createdb fraudsite_search_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fraudsite_search_bench .venv/bin/python manage.py migrate
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fraudsite_search_bench .venv/bin/python bench/search_timing.py

On an empty database it first stores ROWS transactions (SQL, a minute): 50,000 cards of about 20 each, 2,000
merchants of which a few hold most rows (the busiest about 8 %), simulator-like ids; and 20,000 resolved cases.
Then it prints the median and the slowest of repeated calls, in-process (Django's test client for the pages).
Use a database of its own: it is never emptied.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROWS = 1_000_000
FILL = """
INSERT INTO scoring_transaction (external_id, card_id, merchant_id, amount, currency, "timestamp", country, channel,
    mcc, score, decision, reasons, model_version, received_at, is_fraud, features, label_source)
SELECT 'sim0-' || substr(md5(i::text), 1, 6) || lpad(i::text, 9, '0'),
       'c' || lpad(floor(random() * 50000)::int::text, 6, '0'),
       'm' || lpad(floor(2000 * power(random(), 3))::int::text, 5, '0'),
       round((random() * 500)::numeric, 2), 'EUR', now() - make_interval(secs => 2 * i), 'NL', 'ecom', '5411',
       random(), CASE WHEN random() < 0.05 THEN 'review' WHEN random() < 0.02 THEN 'block' ELSE 'approve' END,
       '[]'::jsonb, 'bench', now(), CASE WHEN random() < 0.01 THEN true END, '{}'::real[], ''
FROM generate_series(1, %s) AS i
"""


def timed(label: str, call: Callable[[], object], *, rounds: int) -> None:
    call()  # warm: plans cached, pages in memory
    runs = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        runs.append((time.perf_counter() - start) * 1000)
    print(f"{label:48s} median {statistics.median(runs):7.1f} ms   slowest {max(runs):7.1f} ms")


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fraudsite.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from dashboards import search
    from scoring.models import Case, Transaction
    from scoring.roles import ensure_roles, make_analyst

    assert connection.vendor == "postgresql", "set DATABASE_URL to a PostgreSQL database of its own"
    if not Transaction.objects.exists():
        with connection.cursor() as cursor:
            cursor.execute(FILL, [ROWS])
            cursor.execute("VACUUM ANALYZE scoring_transaction")
        cases = [Case(card_id=f"c{i:06d}", status="fraud", decision="block", top_score=0.9) for i in range(20_000)]
        Case.objects.bulk_create(cases)
    ensure_roles()
    user, _ = get_user_model().objects.get_or_create(username="search-bench")
    make_analyst(user)
    client = Client()
    client.force_login(user)

    newest = Transaction.objects.order_by("-id").values_list("external_id", flat=True).first() or ""
    print(f"{Transaction.objects.count():,} transactions, {Case.objects.count():,} cases")
    for q in ("c012345", "c0123", "c", "m00000", "m0", newest, newest[:8], "#12345", "1", "nothing-here"):
        timed(f"search.find({q!r})", lambda q=q: search.find(q), rounds=15)
    for url in ("/search?q=c01", "/search?q=c012345", "/cards/c012345/", "/merchants/m01500/", "/merchants/m00000/"):
        timed(f"GET {url}", lambda url=url: client.get(url), rounds=5)
    timed("GET /merchants/m00000/?page=1000", lambda: client.get("/merchants/m00000/?page=1000"), rounds=3)


if __name__ == "__main__":
    main()
