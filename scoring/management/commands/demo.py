"""`make demo`: everything a first look needs, then the live service with simulated traffic until Ctrl-C."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring import rule_book
from scoring.models import ModelVersion, Rule, RuleStatus, Transaction
from scoring.roles import ensure_roles, ensure_user
from scoring.simulation import live_cards, write_history
from scoring.traffic import TrafficError, kept_key, serve_with_traffic, stop_processes

DEMO_USERS = {"analyst": "analyst-demo", "lead": "lead-demo"}
# Three rules a team might start with, one in each state a rule spends time in: the rules pages have something to
# show, and the live feed and cases name the active one when it hits.
DEMO_RULES = [
    ("big-foreign-online", 'amount > 400 && channel == "ecom" && country != "PL"', "review", RuleStatus.ACTIVE),
    ("card-testing", "amount < 2 && card_count_1h >= 3", "block", RuleStatus.SHADOW),
    ("night-cash", 'hour < 5 && channel == "atm" && amount > 300', "review", RuleStatus.DRAFT),
]


class Command(BaseCommand):
    help = "Set up a demo (logins, API key, starter model) and serve the dashboard with simulated traffic."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--rate", type=float, default=5, help="simulated transactions per second")
        parser.add_argument("--setup-only", action="store_true", help="prepare everything, serve nothing")

    def handle(self, *args: Any, port: int, rate: float, setup_only: bool, **options: Any) -> None:
        ensure_roles()
        ensure_user("analyst", password=DEMO_USERS["analyst"])
        ensure_user("lead", password=DEMO_USERS["lead"], lead=True)
        key = kept_key(Path(settings.VAR_DIR) / "demo-api-key", name="demo")  # a second `make demo` reuses it
        if ModelVersion.objects.active() is None:
            self.stdout.write("== no active model: training a starter model on simulated history")
            call_command("train_model", "--activate", stdout=self.stdout, stderr=self.stderr)
        if not Transaction.objects.exists():
            self.seed_history(rate)
        if not Rule.objects.exists():
            self.seed_rules()
        self.show_ready(f"http://127.0.0.1:{port}", key=key)
        if setup_only:
            return
        # The worker runs the leads' jobs and returns idle claims to the queue; it stops with the server and the
        # simulator.
        worker = subprocess.Popen([sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "worker"])
        try:
            serve_with_traffic(port=port, rate=rate, key=key, out=self.stdout)
        except TrafficError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            stop_processes(worker)

    def seed_history(self, rate: float) -> None:
        """A day of history for the cards the live simulation will use, so that its traffic has a past.

        Without it every card is new to the model, which then flags less of the live traffic.
        """
        cards = live_cards(rate)
        self.stdout.write(f"== one day of history for the {cards:,} simulated cards (about half a minute)")
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "history.csv"
            write_history(path, cards=cards, seed=0, days=1)
            call_command(
                "import_transactions", str(path), "--source", "demo", "--batch-size", "50000", stdout=self.stdout
            )

    def seed_rules(self) -> None:
        """DEMO_RULES, created and published through the rule book as a command's changes."""
        self.stdout.write(f"== {len(DEMO_RULES)} example rules (active, shadow, draft): /rules/")
        for name, condition, action, status in DEMO_RULES:
            rule = rule_book.create_rule(user=None, name=name, condition=condition, action=action)
            if status != RuleStatus.DRAFT:
                rule_book.publish_rule(rule.pk, user=None, status=status)

    def show_ready(self, base: str, *, key: str) -> None:
        self.stdout.write(self.style.SUCCESS("\n== ready"))
        self.stdout.write(
            f"   dashboard   {base}/   (log in as analyst / {DEMO_USERS['analyst']}, "
            f"or lead / {DEMO_USERS['lead']} for the admin's configuration pages)"
        )
        self.stdout.write(f"   admin       {base}/admin/")
        self.stdout.write(f"   API docs    {base}/api/v1/docs")
        self.stdout.write(f"   API key     {key}")
        self.stdout.write("")
