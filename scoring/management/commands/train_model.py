from __future__ import annotations

import argparse
import dataclasses
from datetime import UTC, datetime, time
from typing import Any

import pandas as pd
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_date, parse_datetime

from scoring.measures import METRICS
from scoring.training import (
    DEFAULT_DEPTH,
    DEFAULT_HOLDOUT,
    DEFAULT_SIMULATED_DAYS,
    DEFAULT_TREES,
    MIN_LABELED,
    TrainingError,
    TrainingResult,
    save_model_version,
    train,
    training_frame,
)


class Command(BaseCommand):
    help = (
        "Train a fraud model on the stored labeled history (or on simulated history when too little is "
        "labeled), print its holdout metrics and store it as a new model version."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", type=_moment, help="Train on transactions from this date/time (UTC)")
        parser.add_argument("--until", type=_moment, help="... up to this date/time (UTC, exclusive)")
        then = parser.add_mutually_exclusive_group()
        then.add_argument("--activate", action="store_true", help="Make the new version the active one")
        then.add_argument(
            "--challenger",
            action="store_true",
            help="Make the new version the challenger: scored beside the active one on live traffic, deciding "
            "nothing, compared at /models/challenger/ (replaces any other challenger)",
        )
        parser.add_argument(
            "--simulate-days",
            type=int,
            help=f"Train on this many days of simulated history (default when fewer than {MIN_LABELED:,} "
            f"labeled rows are stored: {DEFAULT_SIMULATED_DAYS})",
        )
        parser.add_argument("--cards", type=int, default=2000, help="Cards in simulated history")
        parser.add_argument("--seed", type=int, default=0, help="Seed of simulated history")
        parser.add_argument("--trees", type=int, default=DEFAULT_TREES, help="Boosting rounds")
        parser.add_argument("--depth", type=int, default=DEFAULT_DEPTH, help="Tree depth")
        parser.add_argument(
            "--holdout",
            type=float,
            default=DEFAULT_HOLDOUT,
            help="Share of the labeled span (the newest) to measure on; 0: none (the stored model always fits on all)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        frame, source = self.training_frame(options)
        try:
            result = train(
                frame,
                n_estimators=options["trees"],
                max_depth=options["depth"],
                holdout_fraction=options["holdout"],
                progress=self.say,
            )
        except TrainingError as exc:
            raise CommandError(str(exc)) from None
        result = dataclasses.replace(result, data_range=result.data_range | {"source": source})
        self.report(result)
        mv = save_model_version(result, activate=options["activate"], challenger=options["challenger"])
        state = (
            "active"
            if mv.is_active
            else "the challenger: compare it at /models/challenger/"
            if mv.is_challenger
            else "not active: activate it in the admin or pass --activate"
        )
        self.stdout.write(self.style.SUCCESS(f"stored model version {mv.version} ({state})"))

    def training_frame(self, options: dict[str, Any]) -> tuple[pd.DataFrame, str]:
        days = options["simulate_days"]
        if days is not None and days < 1:
            raise CommandError("--simulate-days must be at least 1")
        return training_frame(
            since=options["since"],
            until=options["until"],
            simulate_days=days,
            cards=options["cards"],
            seed=options["seed"],
            progress=self.say,
        )

    def report(self, result: TrainingResult) -> None:
        rows, when = result.rows, result.data_range
        self.stdout.write(
            f"\nmeasured: fitted on {rows['train']:,} rows ({rows['train_fraud']:,} frauds) up to {when['train_end']}; "
            f"holdout {rows['holdout']:,} rows ({rows['holdout_fraud']:,} frauds) from {when['holdout_start']}"
        )
        self.stdout.write(
            f"stored: fitted on all {rows['stored_model']:,} labeled rows ({rows['stored_model_fraud']:,} frauds)"
        )
        self.stdout.write(f"{'holdout metric':<24}{'value':>8}")
        for name in METRICS:
            value = result.metrics.get(name)
            self.stdout.write(f"{name:<24}{'n/a' if value is None else f'{value:.3f}':>8}")
        if result.metrics.get("reliability"):
            self.reliability(result.metrics["reliability"], error=result.metrics["calibration_error"])
        self.stdout.write("")

    def reliability(self, table: list[dict[str, Any]], *, error: float) -> None:
        self.stdout.write(f"\nreliability on the holdout (calibration error {error:.4f})")
        self.stdout.write(f"{'score band':<14}{'rows':>10}{'mean score':>12}{'fraud share':>13}")
        for band in table:
            mean, share = band["mean_score"], band["fraud_share"]
            cells = ("–", "–") if mean is None else (f"{mean:.4f}", f"{share:.4f}")
            self.stdout.write(f"{band['band']:<14}{band['rows']:>10,}{cells[0]:>12}{cells[1]:>13}")

    def say(self, message: str) -> None:
        self.stdout.write(f"  {message}")


def _moment(text: str) -> datetime:
    """A date (midnight UTC) or an ISO date-time (UTC unless it names its zone)."""
    moment = parse_datetime(text)
    if moment is None:
        day = parse_date(text)
        if day is None:
            raise argparse.ArgumentTypeError(f"not a date or ISO date-time: {text!r}")
        moment = datetime.combine(day, time(0))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
