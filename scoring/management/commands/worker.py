"""The Procfile's `worker`: queued jobs (retrain, history import) and WORKER_DUTIES' functions (scoring/worker.py)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from scoring import worker


class Command(BaseCommand):
    help = (
        "Run queued jobs, and every WORKER_TICK_SECONDS each duty of WORKER_DUTIES, until SIGTERM or Ctrl-C "
        "(--once: one round of duties and the jobs waiting now, then exit)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="one round, then exit (for cron and tests)")

    def handle(self, *args: Any, once: bool, **options: Any) -> None:
        if once:
            worker.run_once(say=self.say)
        else:
            worker.run(say=self.say)

    def say(self, line: str) -> None:
        # Flushed at once: a supervisor's log shows each round's news as it happens, not when a buffer fills.
        self.stdout.write(line)
        self.stdout.flush()
