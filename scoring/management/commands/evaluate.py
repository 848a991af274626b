from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring.evaluation import Evaluation, evaluate
from scoring.measures import METRICS
from scoring.training import DEFAULT_DEPTH, DEFAULT_TREES, TrainingError

MODELS = {"xgboost": "XGBoost", "logistic_regression": "logistic regr."}


class Command(BaseCommand):
    help = (
        "Simulate labeled history, import it, train on the earlier weeks and score the last week through "
        "the serving path; prints the model's metrics next to a logistic-regression baseline. The imported "
        "rows are rolled back unless --keep (on SQLite the database is locked for writes meanwhile)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=35, help="Days of simulated history")
        parser.add_argument("--test-days", type=int, default=7, help="The last days, scored as live traffic")
        parser.add_argument("--cards", type=int, default=2000, help="Simulated cards")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--trees", type=int, default=DEFAULT_TREES)
        parser.add_argument("--depth", type=int, default=DEFAULT_DEPTH)
        parser.add_argument("--keep", action="store_true", help="Keep the imported history in the database")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["test_days"] < 1 or options["days"] <= options["test_days"]:
            raise CommandError("need --days greater than --test-days, and --test-days of at least 1")
        try:
            result = evaluate(
                days=options["days"],
                test_days=options["test_days"],
                cards=options["cards"],
                seed=options["seed"],
                n_estimators=options["trees"],
                max_depth=options["depth"],
                keep=options["keep"],
                progress=lambda message: self.stdout.write(f"  {message}"),
            )
        except TrainingError as exc:
            raise CommandError(str(exc)) from None
        self.report(result)

    def report(self, result: Evaluation) -> None:
        rows = result.rows
        self.stdout.write(
            f"\ntrained on {rows['train']:,} transactions ({rows['train_fraud']:,} frauds); scored "
            f"{rows['test']:,} later ones ({rows['test_fraud']:,} frauds) through the serving path"
        )
        self.stdout.write(f"{'metric':<24}" + "".join(f"{label:>16}" for label in MODELS.values()))
        for name in METRICS:
            values = [result.metrics[model][name] for model in MODELS]
            self.stdout.write(f"{name:<24}" + "".join(f"{_cell(v):>16}" for v in values))
        verdict = "identical" if not result.mismatched_rows else f"DIFFERENT in {result.mismatched_rows:,} rows"
        self.stdout.write(f"\nserved features vs training features: {verdict}")
        self.stdout.write(self.style.SUCCESS(f"evaluated in {result.seconds:.0f} s"))


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
