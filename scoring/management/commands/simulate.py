from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.utils import timezone

from scoring.history import write_csv
from scoring.models import ApiKey
from scoring.simulation import Simulator

DEFAULT_URL = "http://127.0.0.1:8000"
STATUS_EVERY = 5.0
RETRY_AFTER = 2.0
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
CARD_RATE = 1.4 / 86400  # a simulated card's transactions per second
MAX_LIVE_CARDS = 250_000  # ~150 MB; beyond, simulated time runs faster than real time


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
            sim = self.simulator(cards=options["cards"] or 2000, seed=options["seed"])
            self.write_history(sim, path=options["write_csv"], days=options["days"])
            return
        if options["rate"] <= 0 or options["concurrency"] < 1:
            raise CommandError("--rate must be positive and --concurrency at least 1")
        natural = options["cards"] or live_cards(options["rate"])
        sim = self.simulator(cards=natural, seed=options["seed"])
        speed = options["rate"] / (natural * CARD_RATE)
        self.stdout.write(f"{natural:,} simulated cards: simulated time runs at {speed:.1f}x real time")
        key, temporary = self.api_key(options["key"], url=options["url"])
        sender = Sender(
            url=options["url"],
            key=key,
            rate=options["rate"],
            count=options["count"],
            concurrency=options["concurrency"],
            records=sim.live(),
            out=self.stdout,
        )
        try:
            asyncio.run(sender.run())
        finally:
            if temporary is not None:
                ApiKey.objects.filter(pk=temporary.pk).update(revoked_at=timezone.now())
        if sender.fatal:
            raise CommandError(sender.fatal)

    def simulator(self, *, cards: int, seed: int) -> Simulator:
        return Simulator(seed=seed, cards=cards, merchants=max(5, cards // 5))

    def api_key(self, given: str | None, *, url: str) -> tuple[str, ApiKey | None]:
        """The key to send: --key, $FRAUD_API_KEY, or for a local server a key issued here for this run."""
        key = given or os.environ.get("FRAUD_API_KEY", "").strip()
        if key:
            return key, None
        if urlsplit(url).hostname not in LOCAL_HOSTS:
            raise CommandError("pass --key or set FRAUD_API_KEY (create one with: manage.py create_api_key NAME)")
        row, raw = ApiKey.issue(name="simulate (temporary)")
        self.stdout.write("no --key given: issued a temporary key in the local database (revoked on exit)")
        return raw, row

    def write_history(self, sim: Simulator, *, path: Path, days: int) -> None:
        end = timezone.now().replace(microsecond=0)
        with open(path, "w", newline="") as f:
            count = write_csv(sim.history(start=end - timedelta(days=days), end=end), f)
        self.stdout.write(f"wrote {count:,} labeled transactions ({days} days) to {path}")
        self.stdout.write(f"import them with: python manage.py import_transactions {path}")


class Sender:
    """Posts transactions at a steady rate with a few requests in flight; retries while the server is down."""

    def __init__(
        self,
        *,
        url: str,
        key: str,
        rate: float,
        count: int | None,
        concurrency: int,
        records: Iterator[dict[str, Any]],
        out: OutputWrapper,
    ) -> None:
        self.endpoint = url.rstrip("/") + "/api/v1/transactions"
        self.headers = {"Authorization": f"Bearer {key}"}
        self.rate, self.count, self.concurrency = rate, count, concurrency
        self.records, self.out = records, out
        self.stop = asyncio.Event()
        self.fatal = ""
        self.stats: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.down_since: float | None = None
        self.started = time.monotonic()

    async def run(self) -> None:
        self._on_interrupt()
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=self.concurrency * 2)
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(headers=self.headers, timeout=timeout) as session:
            workers = [asyncio.create_task(self._work(session, queue)) for _ in range(self.concurrency)]
            status = asyncio.create_task(self._status_lines())
            self.out.write(f"sending {self.rate:g} transactions/s to {self.endpoint} (Ctrl-C stops)")
            await self._produce(queue)
            if not self.stop.is_set():
                await self._until_stopped(queue.join())
            for task in [*workers, status]:
                task.cancel()
            await asyncio.gather(*workers, status, return_exceptions=True)
        self.out.write("stopped: " + self._status())
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)

    def _on_interrupt(self) -> None:
        loop = asyncio.get_running_loop()

        def first_interrupt() -> None:
            self.out.write("\nstopping (Ctrl-C again to quit at once)")
            self.stop.set()
            loop.remove_signal_handler(signal.SIGINT)

        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread, or no signals
            loop.add_signal_handler(signal.SIGINT, first_interrupt)

    async def _produce(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        loop = asyncio.get_running_loop()
        interval, next_at, produced = 1.0 / self.rate, loop.time(), 0
        while not self.stop.is_set() and (self.count is None or produced < self.count):
            await self._pause(next_at - loop.time())
            if self.stop.is_set():
                return
            record = next(self.records)
            record.pop("is_fraud", None)
            await self._until_stopped(queue.put(record))
            produced += 1
            next_at = max(next_at + interval, loop.time() - 1.0)  # after a stall, no burst to catch up

    async def _work(self, session: aiohttp.ClientSession, queue: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            body = await queue.get()
            try:
                await self._send(session, body)
            finally:
                queue.task_done()

    async def _send(self, session: aiohttp.ClientSession, body: dict[str, Any]) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                status, answer = await self._post(session, body)
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                self._unreachable(exc)
                await self._pause(RETRY_AFTER)
                continue
            if self.down_since is not None:
                self.out.write(f"the server answers again (after {time.monotonic() - self.down_since:.0f} s)")
                self.down_since = None
            self._record(status, answer, latency=time.monotonic() - started)
            if status == 503:
                await self._pause(RETRY_AFTER)
                continue
            return

    async def _post(self, session: aiohttp.ClientSession, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        async with session.post(self.endpoint, json=body) as response:
            try:
                answer = await response.json(content_type=None)
            except ValueError:  # not JSON: a proxy's error page, say
                answer = None
            return response.status, answer if isinstance(answer, dict) else {}

    def _record(self, status: int, answer: dict[str, Any], *, latency: float) -> None:
        self.stats["sent"] += 1
        if 200 <= status < 300:
            self.stats["2xx"] += 1
            self.stats[answer.get("decision", "?")] += 1
            self.latencies.append(latency)
            return
        self.stats["errors"] += 1
        message = answer.get("error", "")
        if status == 401:
            self.fatal = (
                f"the API refused the key (401: {message}); pass --key or set FRAUD_API_KEY "
                "(create one with: manage.py create_api_key NAME)"
            )
            self.stop.set()
        elif self.stats[f"status {status}"] == 0:
            self.out.write(f"the server answered {status}: {message or answer} (retrying 503s)")
        self.stats[f"status {status}"] += 1

    def _unreachable(self, exc: Exception) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.out.write(
                f"cannot reach {self.endpoint} ({exc.__class__.__name__}: {exc}); is the server up? "
                f"(manage.py runserver, or make demo) - retrying every {RETRY_AFTER:g} s"
            )

    async def _status_lines(self) -> None:
        while True:
            since, sent = time.monotonic(), self.stats["sent"]
            await asyncio.sleep(STATUS_EVERY)
            self.out.write(self._status(rate=(self.stats["sent"] - sent) / (time.monotonic() - since)))
            self.latencies = []

    def _status(self, *, rate: float | None = None) -> str:
        s = self.stats
        if rate is None:
            rate = s["sent"] / max(time.monotonic() - self.started, 1e-9)
        line = f"sent {s['sent']:,} ({rate:.1f}/s), 2xx {s['2xx']:,}, errors {s['errors']:,}"
        line += f" | approve {s['approve']:,}, review {s['review']:,}, block {s['block']:,}"
        if self.down_since is not None:
            line += f" | server unreachable for {time.monotonic() - self.down_since:.0f} s"
        elif self.latencies:
            ordered = sorted(self.latencies)
            p50, p99 = ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
            line += f" | latency p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"
        return line

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up at once when stopping."""
        if seconds > 0:
            await self._until_stopped(asyncio.sleep(seconds))

    async def _until_stopped(self, awaitable: Any) -> None:
        task = asyncio.ensure_future(awaitable)
        stopping = asyncio.create_task(self.stop.wait())
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for pending in (task, stopping):
            if not pending.done():
                pending.cancel()


def live_cards(rate: float) -> int:
    """How many simulated cards make `rate` transactions a second at a card's natural pace (capped)."""
    return min(MAX_LIVE_CARDS, max(100, round(rate / CARD_RATE)))
