"""Sending simulated traffic to the API over HTTP: the key it sends, the sender, and the demo's server.

`simulate` sends a simulator's live transactions at a steady rate until stopped; `demo` serves the
dashboard in a daphne process and runs `simulate` against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from django.core.management.base import OutputWrapper
from django.utils import timezone

from scoring.models import ApiKey, hash_key

DEFAULT_URL = "http://127.0.0.1:8000"
STATUS_EVERY = 5.0
RETRY_AFTER = 2.0
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
SERVER_START_SECONDS = 60
NO_KEY = "pass --key or set FRAUD_API_KEY (create one with: manage.py create_api_key NAME)"


class TrafficError(RuntimeError):
    """Simulated traffic cannot be sent: no key for a remote server, or the demo's server did not start."""


# --- the key -------------------------------------------------------------------------------------


def sending_key(given: str | None, *, url: str, out: OutputWrapper) -> tuple[str, ApiKey | None]:
    """The key to send: `given`, $FRAUD_API_KEY, or for a local server a key issued for this run (returned
    as the row to revoke afterwards)."""
    key = given or os.environ.get("FRAUD_API_KEY", "").strip()
    if key:
        return key, None
    if urlsplit(url).hostname not in LOCAL_HOSTS:
        raise TrafficError(NO_KEY)
    row, raw = ApiKey.issue(name="simulate (temporary)")
    out.write("no --key given: issued a temporary key in the local database (revoked on exit)")
    return raw, row


def kept_key(path: Path, *, name: str) -> str:
    """An active key kept in the file at `path`, issued and written there when there is none yet."""
    if path.exists():
        raw = path.read_text().strip()
        if ApiKey.objects.active().filter(key_hash=hash_key(raw)).exists():
            return raw
    _, raw = ApiKey.issue(name=name)
    path.write_text(raw + "\n")
    path.chmod(0o600)
    return raw


# --- sending -------------------------------------------------------------------------------------


def send_live(
    records: Iterator[dict[str, Any]],
    *,
    url: str,
    key: str | None,
    rate: float,
    count: int | None,
    concurrency: int,
    out: OutputWrapper,
) -> str:
    """Send `records` until Ctrl-C or `count`; why sending stopped early ('' when it did not).

    A key issued for this run is revoked afterwards.
    """
    raw, temporary = sending_key(key, url=url, out=out)
    sender = Sender(url=url, key=raw, rate=rate, count=count, concurrency=concurrency, records=records, out=out)
    try:
        asyncio.run(sender.run())
    finally:
        if temporary is not None:
            ApiKey.objects.filter(pk=temporary.pk).update(revoked_at=timezone.now())
    return sender.fatal


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
            tasks = [asyncio.create_task(self._work(session, queue)) for _ in range(self.concurrency)]
            tasks.append(asyncio.create_task(self._status_lines()))
            self.out.write(f"sending {self.rate:g} transactions/s to {self.endpoint} (Ctrl-C stops)")
            await self._produce(queue)
            if not self.stop.is_set():
                await self._until_stopped(queue.join())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
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
            self._reachable()
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
            self.fatal = f"the API refused the key (401: {message}); {NO_KEY}"
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

    def _reachable(self) -> None:
        if self.down_since is not None:
            self.out.write(f"the server answers again (after {time.monotonic() - self.down_since:.0f} s)")
            self.down_since = None

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
            line += " | " + latency_summary(self.latencies)
        return line

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up at once when stopping."""
        if seconds > 0:
            await self._until_stopped(asyncio.sleep(seconds))

    async def _until_stopped(self, awaitable: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(awaitable)
        stopping = asyncio.create_task(self.stop.wait())
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for pending in (task, stopping):
            if not pending.done():
                pending.cancel()


def latency_summary(latencies: list[float]) -> str:
    """The median and 99th percentile of `latencies` (seconds, at least one), in milliseconds."""
    ordered = sorted(latencies)
    p50, p99 = ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"latency p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"


# --- the demo's server -----------------------------------------------------------------------------


def serve_with_traffic(*, port: int, rate: float, key: str, out: OutputWrapper) -> None:
    """Serve the service in a daphne process and send it `rate` simulated transactions a second from a
    `simulate` process, until Ctrl-C, SIGTERM or either process ends; then stop both."""
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
        wait_until_up(base, server=server)
        out.write(f"== serving on {base}; sending {rate:g} simulated transactions/s (Ctrl-C stops all)")
        simulator = subprocess.Popen(
            [sys.executable, "manage.py", "simulate", "--rate", str(rate), "--url", base, "--key", key]
        )
        while server.poll() is None and simulator.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        out.write("\n== stopping")
    finally:
        stop_processes(simulator, server)


def wait_until_up(base: str, *, server: subprocess.Popen[bytes]) -> None:
    """Return once the server at `base` answers its health check; fail when its process ends first."""
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise TrafficError(f"the server stopped (exit {server.returncode}); is port {base} in use?")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise TrafficError(f"the server did not answer on {base} within {SERVER_START_SECONDS} s")


def stop_processes(*processes: subprocess.Popen[bytes] | None) -> None:
    """Terminate each running process in turn, killing one that does not end within ten seconds."""
    for proc in processes:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
