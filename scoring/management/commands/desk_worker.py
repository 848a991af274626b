"""The desk's timed work, the Procfile's `worker`: idle claims go back to the queue, every DESK_WORKER_SECONDS."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import connections

from scoring import cases

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Return idle claims to the queue every DESK_WORKER_SECONDS until SIGTERM or Ctrl-C (--once: one round)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="one round, then exit (for cron and tests)")

    def handle(self, *args: Any, once: bool, **options: Any) -> None:
        if once:
            self.lapse()
            return
        stop = threading.Event()
        # A signal only ends the wait between rounds: a round under way finishes its case's transaction first.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        self.say(
            f"desk worker: claims idle for {settings.CLAIM_TIMEOUT_MINUTES:g} min go back to the queue; "
            f"checking every {settings.DESK_WORKER_SECONDS:g} s"
        )
        if not settings.REDIS_URL:  # the in-memory channel layer reaches no other process
            self.say("desk worker: without REDIS_URL open pages see its changes only when they load again")
        while not stop.is_set():
            try:
                self.lapse()
            except Exception:  # a database outage, a case deleted meanwhile: the next round tries again
                log.exception("desk worker: this round failed; trying again in %g s", settings.DESK_WORKER_SECONDS)
            # Between rounds the worker holds no connection, so a restarted database costs it nothing.
            connections.close_all()
            stop.wait(settings.DESK_WORKER_SECONDS)
        self.say("desk worker: stopped")

    def lapse(self) -> None:
        if lapsed := cases.lapse_idle_claims():
            self.say(f"claims lapsed: case {', '.join(map(str, lapsed))}")

    def say(self, line: str) -> None:
        # Flushed at once: a supervisor's log shows each round's news as it happens, not when a buffer fills.
        self.stdout.write(line)
        self.stdout.flush()
