"""The Prometheus instruments the service counts into; GET /metrics (fraudsite/metrics.py) exposes them with what
it reads at scrape time.

Each server process counts its own (prometheus_client's default registry) and Prometheus scrapes each process
as its own target; docs/operations.md says why not the client's multiprocess mode. The client's metrics are
thread-safe. Ingest is the hot path, so it costs little: a request is one counter, one latency observation, an
increment per decision it holds and one lock for all its scores; a stored batch, its size.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Info
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from scoring.ingest import Outcome

INGEST_REQUESTS = Counter(
    "fraud_ingest_requests",
    "Ingest API requests answered, by route, method and HTTP status",
    ["route", "method", "code"],
)
INGEST_SECONDS = Histogram(
    "fraud_ingest_request_duration_seconds",
    "Ingest API requests, from the application receiving the request to its answer sent",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BATCH_ITEMS = Histogram(
    "fraud_ingest_batch_items",
    "Transactions per stored ingest batch (concurrent requests combined; a batch request's items)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000),  # a batch request of up to 1,000 is one batch
)
DECISIONS = Counter("fraud_decisions", "Newly scored transactions, by decision", ["decision"])
RULE_HITS = Counter(
    "fraud_rule_hits",
    "Newly scored transactions a live rule hit, by rule and its status (active or shadow)",
    ["rule", "status"],
)
MODEL = Info("fraud_model", "The model version this process scored its latest transactions with")
SOCKETS = Gauge("fraud_dashboard_sockets", "Dashboard sockets this process serves")
PUSH_SECONDS = Histogram(
    "fraud_push_duration_seconds",
    "Pushes to the dashboards after a commit: from the hand-over to the channel layer's group_send done",
    ["event"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
PUSH_FAILURES = Counter(
    "fraud_push_failures", "Pushes the channel layer refused or took too long for (dashboards resume)", ["event"]
)


class BatchHistogram(Collector):
    """A histogram observed a batch of values at a time, under one lock (prometheus_client's Histogram takes
    two locks for every value, which a batch of a few hundred scores would pay a few hundred times)."""

    def __init__(self, name: str, documentation: str, *, buckets: Sequence[float]) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = list(buckets)
        self._lock = threading.Lock()
        self._counts = [0] * (len(self.bounds) + 1)  # the last: above every bound
        self._sum = 0.0

    def observe_many(self, values: Sequence[float]) -> None:
        """Count every value; the lock is taken once."""
        bounds = self.bounds
        slots = [bisect_left(bounds, value) for value in values]  # the first bound at or above it ("le")
        total = sum(values)
        with self._lock:
            counts = self._counts
            for slot in slots:
                counts[slot] += 1
            self._sum += total

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for bound, count in zip([*self.bounds, float("inf")], counts, strict=True):
            running += count
            cumulative.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=cumulative, sum_value=total)

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation, buckets=[("+Inf", 0)], sum_value=0)


SCORES = BatchHistogram(
    "fraud_score", "Scores of newly scored transactions", buckets=[round(0.05 * step, 2) for step in range(1, 21)]
)
REGISTRY.register(SCORES)

_requests: dict[tuple[str, str, int], Any] = {}  # the labelled children, found without the metric's lock
_latency: dict[tuple[str, str], Any] = {}
_decisions: dict[str, Any] = {}
_rule_hits: dict[tuple[str, str], Any] = {}
_model = [""]  # the version MODEL says


def count_request(*, route: str, method: str, status: int, seconds: float) -> None:
    """One ingest request answered."""
    key = (route, method, status)
    counter = _requests.get(key) or _requests.setdefault(key, INGEST_REQUESTS.labels(route, method, str(status)))
    counter.inc()
    timer = _latency.get(key[:2]) or _latency.setdefault(key[:2], INGEST_SECONDS.labels(route, method))
    timer.observe(seconds)


def count_scored(outcomes: Sequence[Outcome]) -> None:
    """What one request's transactions were scored: decisions and scores of those it stored (an answer from a
    stored row is not counted again), and the model version."""
    decisions: dict[str, int] = {}
    scores = []
    for outcome in outcomes:
        if outcome.created:
            result = outcome.result
            decisions[result["decision"]] = decisions.get(result["decision"], 0) + 1
            scores.append(result["score"])
    if not scores:
        return
    for decision, count in decisions.items():
        counter = _decisions.get(decision) or _decisions.setdefault(decision, DECISIONS.labels(decision))
        counter.inc(count)
    SCORES.observe_many(scores)
    if (version := result["model_version"]) != _model[0]:
        _model[0] = version
        MODEL.info({"version": version})


def count_rule_hits(hits: dict[tuple[str, str], int]) -> None:
    """A stored batch's rule hits: {(rule name, status): transactions it hit}."""
    for key, count in hits.items():
        counter = _rule_hits.get(key) or _rule_hits.setdefault(key, RULE_HITS.labels(*key))
        counter.inc(count)
