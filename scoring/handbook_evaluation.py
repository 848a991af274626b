"""The Handbook's protocol through the product's own path: import, `train_model`, the batch API, labels as they come.

For one seed: the book's data (scoring/handbook.py) up to the test week is written as a CSV and imported with
`import_transactions`, labeled except for the `delay` days right before the test week, whose labels a fraud team
does not have yet; `train_model` trains on the labeled weeks and activates the model; the test week is then sent
hour by hour to POST /api/v1/transactions/batch of the ASGI application, and before each hour the labels that
have come by then (a fraud's chargeback arrives `delay` days after it) go to POST /api/v1/labels, as a payment
processor's chargeback feed would send them. The answers' scores are measured as the book measures its models:
AUC ROC and average precision over the week, and card precision@100 per day with the cards already found
compromised on earlier test days left out.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from django.core.management import call_command
from sklearn.metrics import average_precision_score, roc_auc_score

from scoring.handbook import HandbookData, simulate
from scoring.history import write_csv
from scoring.models import ApiKey
from scoring.training import DEFAULT_HOLDOUT

Progress = Callable[[str], None]
METRICS = ("auc_roc", "average_precision", "card_precision_at_100")
BOOK = {  # the book's XGBoost on this protocol: chapter 3 (defaults) and chapter 5 (tuned)
    "book, XGBoost (ch. 3)": {"auc_roc": 0.862, "average_precision": 0.639, "card_precision_at_100": 0.273},
    "book, tuned XGBoost (ch. 5)": {"auc_roc": 0.869, "average_precision": 0.687, "card_precision_at_100": 0.303},
}
TEST_START = datetime(2018, 8, 8, tzinfo=UTC)  # the book's: training from 2018-07-25, 7 days, then 7 of delay
FEATURE_SPAN = timedelta(days=30)  # the longest window a feature reads back
BATCH = 1000  # the batch endpoint's limit
TOP_CARDS = 100


@dataclass(frozen=True)
class Protocol:
    """The weeks of one run: history for features, labeled training weeks, the unlabeled delay, the test week."""

    train_days: int = 7
    delay_days: int = 7
    test_days: int = 7
    test_start: datetime = TEST_START
    label_feed: bool = True  # fraud labels sent to the label API as they arrive during the test week

    @property
    def holdout(self) -> float:
        """train_model's holdout share: its default when the labeled days leave room for it after the label
        delay, else none (the stored model is fitted on every labeled day either way)."""
        return DEFAULT_HOLDOUT if self.train_days * (1 - DEFAULT_HOLDOUT) > self.delay_days else 0.0

    @property
    def delay_start(self) -> datetime:
        return self.test_start - timedelta(days=self.delay_days)

    @property
    def train_start(self) -> datetime:
        return self.delay_start - timedelta(days=self.train_days)

    @property
    def history_start(self) -> datetime:
        """Early enough for the first training row's windows, the label-delayed ones included."""
        return self.train_start - FEATURE_SPAN - timedelta(days=self.delay_days)

    @property
    def test_end(self) -> datetime:
        return self.test_start + timedelta(days=self.test_days)


@dataclass(frozen=True)
class SeedResult:
    seed: int
    metrics: dict[str, float]
    rows: dict[str, int]


def run_seed(
    *, seed: int, protocol: Protocol, train_options: list[str], out: Any, progress: Progress, scale: float = 1.0
) -> SeedResult:
    """One seed of the protocol on the current (scratch) database. `scale` shrinks the book's population (tests)."""
    data = _simulated(seed=seed, scale=scale)
    prefix = f"hb{seed}-"
    progress(f"seed {seed}: {len(data.transactions):,} transactions simulated")
    imported = _import_history(data, protocol=protocol, prefix=prefix, progress=progress)
    _train(protocol=protocol, options=train_options, out=out)
    test = list(data.records(prefix=prefix, since=protocol.test_start, until=protocol.test_end))
    labels = _label_feed(data, protocol=protocol, prefix=prefix) if protocol.label_feed else []
    scores, fed = asyncio.run(_score_through_the_api(test, labels=labels, progress=progress))
    y = np.array([r["is_fraud"] for r in test])
    frame = pd.DataFrame({"card": [r["card_id"] for r in test], "y": y, "score": scores})
    frame["day"] = [r["timestamp"][:10] for r in test]
    return SeedResult(
        seed=seed,
        metrics=book_metrics(frame),
        rows={"imported": imported, "test": len(test), "test_fraud": int(y.sum()), "labels_fed": fed},
    )


def _simulated(*, seed: int, scale: float) -> HandbookData:
    if scale == 1.0:
        return simulate(seed=seed)
    return simulate(seed=seed, customers=max(50, round(5000 * scale)), terminals=max(100, round(10_000 * scale)))


def _import_history(data: HandbookData, *, protocol: Protocol, prefix: str, progress: Progress) -> int:
    """Write the history up to the test week as a CSV and import it; the delay days' labels are left blank."""
    records = data.records(prefix=prefix, since=protocol.history_start, until=protocol.test_start)
    unlabeled_from = protocol.delay_start.isoformat()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "history.csv"
        with open(path, "w", newline="") as f:
            count = write_csv((r if r["timestamp"] < unlabeled_from else r | {"is_fraud": None} for r in records), f)
        progress(
            f"importing {count:,} transactions ({protocol.history_start:%Y-%m-%d} to {protocol.test_start:%Y-%m-%d})"
        )
        call_command("import_transactions", str(path), "--source", prefix.rstrip("-"), stdout=StringIO())
    return count


def _train(*, protocol: Protocol, options: list[str], out: Any) -> None:
    since, until = protocol.train_start.isoformat(), protocol.test_start.isoformat()
    holdout = f"--holdout={protocol.holdout}"
    call_command("train_model", "--since", since, "--until", until, "--activate", holdout, *options, stdout=out)


def _label_feed(data: HandbookData, *, protocol: Protocol, prefix: str) -> list[tuple[datetime, str]]:
    """(when it arrives, external_id) of every fraud label that arrives before the test week ends, not imported."""
    frauds = data.records(prefix=prefix, since=protocol.delay_start, until=protocol.test_end)
    delay = timedelta(days=protocol.delay_days)
    feed = [(datetime.fromisoformat(r["timestamp"]) + delay, r["external_id"]) for r in frauds if r["is_fraud"]]
    return sorted(f for f in feed if f[0] < protocol.test_end)


async def _score_through_the_api(
    records: list[dict[str, Any]], *, labels: list[tuple[datetime, str]], progress: Progress
) -> tuple[np.ndarray, int]:
    """Each hour of `records`: the labels arrived by its start, then its transactions in batches; their scores, and
    how many labels were sent."""
    from channels.db import database_sync_to_async

    _, key = await database_sync_to_async(ApiKey.issue)(name="handbook evaluation")
    client = _Client(key)
    hours = pd.Series([r["timestamp"][:13] for r in records])
    scores: list[float] = []
    fed = 0
    for hour, positions in hours.groupby(hours, sort=True).indices.items():
        start = datetime.fromisoformat(hour + ":00:00+00:00")
        while fed < len(labels) and labels[fed][0] <= start:
            await client.label(external_id=labels[fed][1], at=labels[fed][0])
            fed += 1
        for i in range(0, len(positions), BATCH):
            batch = [_without_label(records[p]) for p in positions[i : i + BATCH]]
            scores += [r["score"] for r in await client.batch(batch)]
        if start.hour == 0:
            progress(f"scored {len(scores):,} of {len(records):,} test transactions, {fed} labels fed")
    return np.array(scores), fed


def _without_label(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "is_fraud"}


class _Client:
    """POSTs to the ASGI application in this process, as a server would hand them to it."""

    def __init__(self, key: str) -> None:
        self.headers = [(b"authorization", f"Bearer {key}".encode()), (b"content-type", b"application/json")]
        self.headers.append((b"host", b"127.0.0.1"))

    async def batch(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        answer = await self._post("/api/v1/transactions/batch", {"transactions": items})
        return answer["results"]

    async def label(self, *, external_id: str, at: datetime) -> None:
        await self._post(
            "/api/v1/labels", {"external_id": external_id, "is_fraud": True, "reported_at": at.isoformat()}
        )

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        from channels.testing import HttpCommunicator

        from fraudsite.asgi import application

        data = orjson.dumps(body)
        headers = [*self.headers, (b"content-length", str(len(data)).encode())]
        communicator = HttpCommunicator(application, "POST", path, body=data, headers=headers)
        response = await communicator.get_response(timeout=120)
        await communicator.wait(timeout=120)
        if response["status"] not in (200, 201):
            raise RuntimeError(f"{path} answered {response['status']}: {response['body'][:500]!r}")
        return orjson.loads(response["body"])


# --- the book's measures ---------------------------------------------------------------------------


def book_metrics(frame: pd.DataFrame) -> dict[str, float]:
    """AUC ROC and average precision over all rows; card precision@100 per day, as the book computes them.

    `frame`: one row a transaction, with `day`, `card`, `y` (fraud) and `score`.
    """
    return {
        "auc_roc": float(roc_auc_score(frame["y"], frame["score"])),
        "average_precision": float(average_precision_score(frame["y"], frame["score"])),
        "card_precision_at_100": card_precision_at_k(frame),
    }


def card_precision_at_k(frame: pd.DataFrame, *, k: int = TOP_CARDS) -> float:
    """Per day, the share of the k highest-scored cards (a card's score: its highest that day) that had a fraud
    that day, always out of k; a card found compromised on an earlier day is left out of the later days. The mean
    over the days."""
    found: set[str] = set()
    precisions = []
    for _, day in frame.groupby("day", sort=True):
        day = day[~day["card"].isin(found)]
        cards = day.groupby("card").agg(score=("score", "max"), y=("y", "max"))
        top = cards.sort_values("score", ascending=False, kind="stable").head(k)
        hits = top.index[top["y"].astype(bool)]
        precisions.append(len(hits) / k)
        found.update(hits)
    return float(np.mean(precisions))


def summary(results: list[SeedResult]) -> dict[str, tuple[float, float]]:
    """Each metric's mean and sample standard deviation over the seeds (sd 0 for one seed)."""
    table = pd.DataFrame([r.metrics for r in results])
    return {m: (float(table[m].mean()), float(table[m].std(ddof=1)) if len(table) > 1 else 0.0) for m in METRICS}
