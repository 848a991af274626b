"""`make demo`: everything a first look needs, then the live service with simulated traffic until Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from io import StringIO
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring.management.commands.simulate import live_cards
from scoring.models import ApiKey, ModelVersion, Transaction, hash_key
from scoring.roles import ensure_roles, make_analyst

DEMO_USERS = {"analyst": "analyst-demo", "lead": "lead-demo"}


class Command(BaseCommand):
    help = "Set up a demo (logins, API key, starter model) and serve the dashboard with simulated traffic."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--rate", type=float, default=5, help="simulated transactions per second")
        parser.add_argument("--setup-only", action="store_true", help="prepare everything, serve nothing")

    def handle(self, *args: Any, port: int, rate: float, setup_only: bool, **options: Any) -> None:
        self.ensure_users()
        key = self.ensure_api_key()
        if ModelVersion.objects.active() is None:
            self.stdout.write("== no active model: training a starter model on simulated history")
            call_command("train_model", "--activate", stdout=self.stdout, stderr=self.stderr)
        if not Transaction.objects.exists():
            self.seed_history(rate)
        base = f"http://127.0.0.1:{port}"
        self.stdout.write(self.style.SUCCESS("\n== ready"))
        self.stdout.write(
            f"   dashboard   {base}/   (log in as analyst / {DEMO_USERS['analyst']}, "
            f"or lead / {DEMO_USERS['lead']} for the admin's configuration pages)"
        )
        self.stdout.write(f"   admin       {base}/admin/")
        self.stdout.write(f"   API docs    {base}/api/v1/docs")
        self.stdout.write(f"   API key     {key}")
        self.stdout.write("")
        if not setup_only:
            self.serve(port=port, rate=rate, key=key)

    def seed_history(self, rate: float) -> None:
        """A day of history for the cards the live simulation will use, so that its traffic has a past.

        Without it every card is new to the model: in the first minute at 20 tx/s (1,222 transactions, two
        demos side by side at 05:20 UTC), 3.7 % of live traffic was flagged without it against 5.4 % with this
        day imported (about 2 % of the simulated traffic is fraud, about 9 % at night).
        """
        cards = live_cards(rate)
        self.stdout.write(f"== one day of history for the {cards:,} simulated cards (about half a minute)")
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "history.csv"
            command = ["--write-csv", str(path), "--days", "1", "--cards", str(cards)]
            call_command("simulate", *command, stdout=StringIO())
            call_command(
                "import_transactions", str(path), "--source", "demo", "--batch-size", "50000", stdout=self.stdout
            )

    def ensure_users(self) -> None:
        ensure_roles()
        users = get_user_model().objects
        analyst = users.filter(username="analyst").first()
        if analyst is None:
            analyst = users.create_user("analyst", password=DEMO_USERS["analyst"])
            make_analyst(analyst)
        if not users.filter(username="lead").exists():
            users.create_superuser("lead", password=DEMO_USERS["lead"])

    def ensure_api_key(self) -> str:
        """The demo's key, kept in var/ so a second `make demo` reuses it."""
        path = Path(settings.VAR_DIR) / "demo-api-key"
        if path.exists():
            raw = path.read_text().strip()
            if ApiKey.objects.active().filter(key_hash=hash_key(raw)).exists():
                return raw
        _, raw = ApiKey.issue(name="demo")
        path.write_text(raw + "\n")
        path.chmod(0o600)
        return raw

    def serve(self, *, port: int, rate: float, key: str) -> None:
        # Ctrl-C stops all even when a script started us with SIGINT ignored (background jobs), and so
        # does SIGTERM (`kill`, a supervisor): without it the server and the simulator would live on.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        base = f"http://127.0.0.1:{port}"
        daphne = Path(sys.executable).with_name("daphne")
        server = subprocess.Popen(
            [str(daphne), "-v", "0", "-b", "127.0.0.1", "-p", str(port), "fraudsite.asgi:application"]
        )
        simulator = None
        try:
            self.wait_until_up(base, server)
            self.stdout.write(f"== serving on {base}; sending {rate:g} simulated transactions/s (Ctrl-C stops all)")
            simulator = subprocess.Popen(
                [sys.executable, "manage.py", "simulate", "--rate", str(rate), "--url", base, "--key", key]
            )
            while server.poll() is None and simulator.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            self.stdout.write("\n== stopping")
        finally:
            for proc in (simulator, server):
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        proc.kill()

    def wait_until_up(self, base: str, server: subprocess.Popen) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise CommandError(f"the server stopped (exit {server.returncode}); is port {base} in use?")
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=1):
                    return
            except OSError:
                time.sleep(0.3)
        raise CommandError(f"the server did not answer on {base} within 60 s")
