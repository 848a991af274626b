"""Helpers for the job tests: a retrain small enough for a test, uploaded CSVs, and a record of a job's progress."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from scoring import job_runs

# Simulated history of a few thousand rows and a model of a few trees: seconds, not the default half minute.
# Three weeks: training ends a 7-day label delay before the newest quarter, and two weeks left 3.5 days, with
# no fraud in them on some dates.
SMALL_RETRAIN = {"simulate_days": 21, "cards": 200, "trees": 10}
HEADER = "external_id,card_id,merchant_id,amount,currency,timestamp,country,channel,mcc,is_fraud\n"


def history_row(n: int, *, amount: str | None = None) -> str:
    when = (timezone.now() - timedelta(days=1, minutes=n)).isoformat()
    return f"t{n},c{n % 3},m{n % 2},{amount or f'{10 + n}.50'},EUR,{when},DE,pos,5411,{n % 2}"


def history_csv(rows: int, *, bad: set[int] = frozenset()) -> bytes:
    """An importable CSV of `rows` labeled rows (t1, t2, ...); the rows numbered in `bad` have a negative amount."""
    lines = [history_row(n, amount="-5" if n in bad else None) for n in range(1, rows + 1)]
    return (HEADER + "".join(line + "\n" for line in lines)).encode()


def progress_log(
    monkeypatch: pytest.MonkeyPatch, *, on_step: Callable[[str], Any] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Every progress write of the jobs run from now on, as (step, fields); `on_step` is called with each step
    before the job checks whether it must stop (so a cancel made there is seen at that very step)."""
    written: list[tuple[str, dict[str, Any]]] = []
    original = job_runs.Progress.__call__

    def recorded(self: job_runs.Progress, step: str, **fields: Any) -> None:
        written.append((step, fields))
        if on_step is not None:
            on_step(step)
        original(self, step, **fields)

    monkeypatch.setattr(job_runs.Progress, "__call__", recorded)
    return written
