from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring.handbook_evaluation import BOOK, METRICS, Protocol, SeedResult, run_seed, summary
from scoring.models import Transaction

TRAIN_DAYS = 28  # four labeled weeks: a fraud team has more than one, and the model ranks better with them
LABELS = {"auc_roc": "AUC ROC", "average_precision": "avg precision", "card_precision_at_100": "card prec@100"}


class Command(BaseCommand):
    help = (
        "The Fraud Detection Handbook's benchmark through the product's own path: for each seed, simulate the "
        "book's data, import the history (the week before the test week without labels), train_model --activate, "
        "score the test week through the batch API while fraud labels arrive a week late, and print AUC ROC, "
        "average precision and card precision@100 next to the book's. Needs a scratch database: with --flush it "
        "ERASES EVERYTHING in the configured database before each seed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--seeds", type=int, nargs="+", default=[0])
        parser.add_argument(
            "--train-days",
            type=int,
            default=TRAIN_DAYS,
            help=f"Labeled days to train on, a label delay before the test week (the book: 7; default {TRAIN_DAYS})",
        )
        parser.add_argument(
            "--no-label-feed", action="store_true", help="Send no fraud labels during the test week (they come late)"
        )
        parser.add_argument("--flush", action="store_true", help="Erase the whole database before each seed")
        parser.add_argument("--scale", type=float, default=1.0, help="Share of the book's customers and terminals")
        parser.add_argument("--trees", type=int, help="Passed to train_model")
        parser.add_argument("--depth", type=int, help="Passed to train_model")

    def handle(self, *args: Any, **options: Any) -> None:
        protocol = Protocol(train_days=options["train_days"], label_feed=not options["no_label_feed"])
        train_options = [f"--{name}={options[name]}" for name in ("trees", "depth") if options[name] is not None]
        results = []
        for seed in options["seeds"]:
            self.fresh_database(flush=options["flush"])
            result = run_seed(
                seed=seed,
                protocol=protocol,
                train_options=train_options,
                out=self.stdout,
                progress=self.say,
                scale=options["scale"],
            )
            self.say(f"seed {seed}: {result.rows}")
            results.append(result)
            self.table(results, final=False)
        self.table(results, final=True)

    def fresh_database(self, *, flush: bool) -> None:
        if flush:
            call_command("flush", interactive=False, verbosity=0)
        elif Transaction.objects.exists():
            raise CommandError("the database holds transactions: run on a scratch database with --flush")

    def table(self, results: list[SeedResult], *, final: bool) -> None:
        self.stdout.write("\n" + f"{'':<30}" + "".join(f"{LABELS[m]:>16}" for m in METRICS))
        for result in results if final else results[-1:]:
            self.row(f"seed {result.seed}", [f"{result.metrics[m]:.3f}" for m in METRICS])
        if final:
            means = summary(results)
            self.row(f"mean ± sd ({len(results)} seeds)", [f"{means[m][0]:.3f} ± {means[m][1]:.3f}" for m in METRICS])
            for name, figures in BOOK.items():
                self.row(name, [f"{figures[m]:.3f}" for m in METRICS])
        self.stdout.write("")

    def row(self, label: str, cells: list[str]) -> None:
        self.stdout.write(f"{label:<30}" + "".join(f"{cell:>16}" for cell in cells))

    def say(self, message: str) -> None:
        self.stdout.write(f"  {message}")
