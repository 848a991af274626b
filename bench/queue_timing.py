"""How long the review queue's filters take on a store of a million cases (PostgreSQL), and which index each reads.

    createdb fraudsite_queue_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fraudsite_queue_bench .venv/bin/python manage.py migrate
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fraudsite_queue_bench .venv/bin/python bench/queue_timing.py

On a database without cases it first stores them (SQL, under a minute): a year of RESOLVED verdicts by ten
analysts (30 % fraud, 0.5 % of the legitimate ones overturned, 3 % without a total: several currencies) and OPEN
open cases from the last two days, a third of them claimed. Then, for each filter, the median and slowest of repeated
reads of a page of cases and of its count (what the page runs), and the first scan of its plan. Use a database of
its own: it is never emptied.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

RESOLVED, OPEN = 998_000, 2_000
FILL = """
INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined)
SELECT '!', false, 'bench-analyst' || i, '', '', '', true, true, now() FROM generate_series(0, 9) AS i;
INSERT INTO scoring_case (card_id, status, decision, alert_count, top_score, total_amount, currency, last_alert_at,
    due_at, assignee_id, note, opened_at, resolved_by_id, resolved_at, resolved_via, overturned)
SELECT 'card-' || i, CASE WHEN random() < 0.3 THEN 'fraud' ELSE 'legitimate' END,
       CASE WHEN random() < 0.4 THEN 'block' ELSE 'review' END, 1 + floor(random() * 3)::int, 0.5 + random() / 2,
       round((random() * 2000)::numeric, 2), 'EUR', now() - make_interval(secs => 31 * i),
       now() - make_interval(secs => 31 * i) + interval '24 hours', %(first_user)s + i %% 10, '',
       now() - make_interval(secs => 31 * i), %(first_user)s + i %% 10,
       now() - make_interval(secs => 31 * i) + interval '3 hours', '', false
FROM generate_series(1, %(resolved)s) AS i;
UPDATE scoring_case SET total_amount = NULL, currency = '' WHERE random() < 0.03;
UPDATE scoring_case SET overturned = true WHERE status = 'legitimate' AND random() < 0.005;
INSERT INTO scoring_case (card_id, status, decision, alert_count, top_score, total_amount, currency, last_alert_at,
    due_at, assignee_id, note, opened_at, resolved_via, overturned)
SELECT 'open-card-' || i, 'open', CASE WHEN random() < 0.4 THEN 'block' ELSE 'review' END,
       1 + floor(random() * 3)::int, 0.5 + random() / 2, round((random() * 2000)::numeric, 2), 'EUR', now(),
       now() + make_interval(hours => floor(random() * 28)::int - 4),
       CASE WHEN random() < 0.3 THEN %(first_user)s + i %% 10 END, '',
       now() - make_interval(mins => floor(random() * 2880)::int), '', false
FROM generate_series(1, %(open)s) AS i;
ANALYZE scoring_case;
"""


def timed(label: str, call: Callable[[], object], *, rounds: int = 5) -> str:
    call()  # warm: plans cached, pages in memory
    runs = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        runs.append((time.perf_counter() - start) * 1000)
    return f"{label} {statistics.median(runs):7.1f} ms (slowest {max(runs):7.1f})"


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fraudsite.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from dashboards.queue_filters import QueueFilter
    from scoring.models import Case

    assert connection.vendor == "postgresql", "set DATABASE_URL to a PostgreSQL database of its own"
    if not Case.objects.exists():
        print(f"storing {RESOLVED + OPEN:,} cases ...", flush=True)
        first_user = (get_user_model().objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1
        with connection.cursor() as cursor:
            cursor.execute(FILL, {"first_user": first_user, "resolved": RESOLVED, "open": OPEN})
    user = get_user_model().objects.filter(username__startswith="bench-analyst").order_by("id").first()
    filters = {
        "the open queue by risk (the default)": QueueFilter(),
        "open, mine, score at least 0.8": QueueFilter(assignee="mine", score_min=0.8),
        "open by amount": QueueFilter(sort="amount"),
        "open and overdue, due soonest": QueueFilter(overdue=True, sort="due"),
        "fraud, latest verdict first": QueueFilter(status="fraud", sort="resolved"),
        "legitimate, mine, latest verdict first": QueueFilter(status="legitimate", assignee="mine", sort="resolved"),
        "overturned verdicts (?overturned=1)": QueueFilter(status="any", overturned=True, sort="resolved"),
        "fraud, oldest first": QueueFilter(status="fraud", sort="age"),
        "card id prefix, any status": QueueFilter(status="any", q="card-1234"),
        "fraud by risk": QueueFilter(status="fraud"),
        "legitimate over 1,000 by amount": QueueFilter(status="legitimate", amount_min=Decimal(1000), sort="amount"),
        "any status by risk": QueueFilter(status="any"),
    }
    for label, chosen in filters.items():
        cases = chosen.cases(user=user, now=timezone.now())
        plan = next((line.strip() for line in cases[:50].explain().splitlines() if "on scoring_case" in line), "")
        page = timed("page", lambda cases=cases: list(cases[:50]))
        count = timed("count", cases.count)
        print(f"{label:42s} {page}   {count}   {plan.split('  (')[0].lstrip('-> ')}", flush=True)


if __name__ == "__main__":
    main()
