from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring.simulation import MAX_LIVE_CARDS, Simulator, live_cards, speed, write_history
from scoring.traffic import DEFAULT_URL, TrafficError, send_live


class Command(BaseCommand):
    help = (
        "Send simulated live transactions to the API at a steady rate until Ctrl-C (or --count), printing "
        "a status line every few seconds. With --write-csv, write a labeled history file instead."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rate", type=float, default=10.0, help="Transactions per second")
        parser.add_argument("--url", default=DEFAULT_URL, help=f"The service (default {DEFAULT_URL})")
        parser.add_argument("--key", help="API key (default: $FRAUD_API_KEY, or a temporary local key)")
        parser.add_argument("--count", type=int, help="Stop after this many transactions")
        parser.add_argument("--seed", type=int, default=0, help="Simulation seed (same seed, same cards)")
        parser.add_argument(
            "--cards",
            type=int,
            help="Simulated cards (default: as many as make --rate their natural pace, at most "
            f"{MAX_LIVE_CARDS:,}, so that velocities and hours of day look real; 2,000 for --write-csv)",
        )
        parser.add_argument("--concurrency", type=int, default=8, help="Requests in flight at most")
        parser.add_argument("--write-csv", type=Path, metavar="FILE", help="Write labeled history to FILE and exit")
        parser.add_argument("--days", type=int, default=35, help="Days of history for --write-csv")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["write_csv"]:
            cards, days = options["cards"] or 2000, options["days"]
            self.write_history(options["write_csv"], cards=cards, seed=options["seed"], days=days)
            return
        if options["rate"] <= 0 or options["concurrency"] < 1:
            raise CommandError("--rate must be positive and --concurrency at least 1")
        cards = options["cards"] or live_cards(options["rate"])
        sim = Simulator.for_cards(cards=cards, seed=options["seed"])
        pace = speed(rate=options["rate"], cards=cards)
        self.stdout.write(f"{cards:,} simulated cards: simulated time runs at {pace:.1f}x real time")
        send = {name: options[name] for name in ("url", "key", "rate", "count", "concurrency")}
        try:
            fatal = send_live(sim.live(), **send, out=self.stdout)
        except TrafficError as exc:
            raise CommandError(str(exc)) from exc
        if fatal:
            raise CommandError(fatal)

    def write_history(self, path: Path, *, cards: int, seed: int, days: int) -> None:
        count = write_history(path, cards=cards, seed=seed, days=days)
        self.stdout.write(f"wrote {count:,} labeled transactions ({days} days) to {path}")
        self.stdout.write(f"import them with: python manage.py import_transactions {path}")
