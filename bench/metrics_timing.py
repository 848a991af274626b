"""What the metrics and the request id add to one ingest request, in-process (no server, no database).

    .venv/bin/python bench/metrics_timing.py

Times each addition alone and a single POST's together (the best of 7 repeats of 20,000 calls), as
scoring/endpoint.py and scoring/batcher.py make them: the header read and the id, the context variable, the
request's counter and latency, its decisions and scores, and a batch's size.
"""

from __future__ import annotations

import os
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fraudsite.settings")

import django

django.setup()

from fraudsite import request_id  # noqa: E402
from scoring import metrics  # noqa: E402
from scoring.endpoint import _header  # noqa: E402
from scoring.ingest import Outcome  # noqa: E402

CALLS, REPEATS = 20_000, 7
HEADERS = [(b"host", b"x"), (b"authorization", b"Bearer fk_x"), (b"content-type", b"application/json")]
SCOPE = {"headers": [*HEADERS, (b"content-length", b"300")]}
DECISIONS = ("approve", "review", "block")


def outcomes(n: int) -> list[Outcome]:
    return [
        Outcome({"score": i / n, "decision": DECISIONS[i % 3], "model_version": "v1"}, created=True) for i in range(n)
    ]


ONE, HUNDRED = outcomes(1), outcomes(100)


def single_post() -> None:
    rid = request_id.take(_header(SCOPE, b"x-request-id"))
    token = request_id.REQUEST_IDS.set((rid,))
    metrics.count_scored(ONE)
    request_id.REQUEST_IDS.reset(token)
    metrics.count_request(route="transactions", method="POST", status=201, seconds=0.012)


CASES: dict[str, Callable[[], object]] = {
    "the header read and a new id": lambda: request_id.take(_header(SCOPE, b"x-request-id")),
    "the context variable set and reset": lambda: request_id.REQUEST_IDS.reset(request_id.REQUEST_IDS.set(("a",))),
    "count_request (counter, latency)": lambda: metrics.count_request(
        route="transactions", method="POST", status=201, seconds=0.012
    ),
    "count_scored, 1 transaction": lambda: metrics.count_scored(ONE),
    "count_scored, 100 transactions": lambda: metrics.count_scored(HUNDRED),
    "a batch's size (per batch)": lambda: metrics.BATCH_ITEMS.observe(8),
    "a single POST's additions together": single_post,
}

if __name__ == "__main__":
    for name, call in CASES.items():
        best = min(timeit.repeat(call, number=CALLS, repeat=REPEATS)) / CALLS * 1e6
        print(f"{best:8.2f} µs  {name}")
