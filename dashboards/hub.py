"""One channel-layer subscription per server process for the dashboard group, fanned out to its sockets.

When every socket joined the group itself, the layer delivered (and with Redis, decoded) each group
message once per socket, and each socket counted it into figures of its own: the work for every stored
batch grew with the dashboards open. The hub receives each message once, counts it once into the process's
live figures, and hands it to every socket of the process as a plain function call.

Redis pub/sub keeps nothing for a subscriber that is reconnecting, and a broadcast that fails or times out
is skipped (the row is stored all the same). So every DASHBOARD_RECONCILE_SECONDS the hub asks the database
which transactions it stored more than SETTLED_SECONDS earlier, and delivers those that never came through
the layer, once: a Redis restart costs the dashboards a few seconds' delay, not the rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, Protocol

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from dashboards import broadcast
from dashboards.stats import LiveStats, open_cases, recent_stats
from scoring.metrics import SOCKETS
from scoring.models import Transaction
from scoring.results import feed_events

log = logging.getLogger(__name__)
OPEN_CASES_SECONDS = 1.0
SETTLED_SECONDS = 2.0  # a stored batch's broadcast has arrived by then (BROADCAST_TIMEOUT_SECONDS is 1), unless lost
SEEN_SECONDS = 30.0  # how long the hub remembers the ids it delivered, so that none is delivered twice


class Listener(Protocol):
    def deliver(self, message: dict[str, Any]) -> None: ...


class Hub:
    """The dashboard group, as seen by one process (one event loop)."""

    def __init__(self) -> None:
        self.listeners: set[Listener] = set()
        self.stats = LiveStats()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._channel = ""
        self._figures: tuple[int, dict[str, Any]] = (-1, {})
        self._open_cases: int | None = None
        self.open_cases_at = 0.0  # wall-clock time the latest count's query started (pages compare it)
        self._counted_at = -OPEN_CASES_SECONDS
        self._counting: asyncio.Task[None] | None = None
        self._reconciling: asyncio.Task[None] | None = None
        self._seen: set[int] = set()  # ids delivered in the last SEEN_SECONDS
        self._seen_at: deque[tuple[float, list[int]]] = deque()

    async def join(self, listener: Listener) -> None:
        """Start receiving the group's messages for `listener` (the first one subscribes the process)."""
        async with self._lock:
            if self._task is None:
                layer = get_channel_layer()
                self._channel = await layer.new_channel()
                await layer.group_add(broadcast.DASHBOARD_GROUP, self._channel)
                self.stats = LiveStats()
                self.stats.seed(await database_sync_to_async(recent_stats)())
                self._task = asyncio.create_task(self._receive(layer))
                if settings.DASHBOARD_RECONCILE_SECONDS > 0:
                    self._reconciling = asyncio.create_task(self._reconcile(since=timezone.now()))
            if listener not in self.listeners:
                self.listeners.add(listener)
                SOCKETS.inc()

    async def leave(self, listener: Listener) -> None:
        """Stop delivering to `listener` (the last one to leave unsubscribes the process)."""
        async with self._lock:
            if listener in self.listeners:  # a socket closed for being slow leaves twice
                self.listeners.remove(listener)
                SOCKETS.dec()
            if self.listeners or self._task is None:
                return
            for task in (self._task, self._counting, self._reconciling):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            self._task = self._counting = self._reconciling = None
            await get_channel_layer().group_discard(broadcast.DASHBOARD_GROUP, self._channel)

    def figures(self) -> dict[str, Any]:
        """The live figures (a `stats` message's body), computed once a second for all sockets."""
        second = int(time.time())
        if self._figures[0] != second:
            self._figures = (second, self.stats.snapshot())
        return self._figures[1]

    def open_cases(self) -> int | None:
        """The latest open-case count, without waiting (None until the first is in).

        Once the count is a second old, one query refreshes it in the background: one query a second
        per process however many sockets ask. When every socket awaited its own query, a stats tick held
        up the socket's transaction frames: the count is slow over many open cases, and the sockets queued
        theirs on one database thread, so frames waited far longer than a flush.
        """
        if self._counting is None and time.monotonic() - self._counted_at >= OPEN_CASES_SECONDS:
            self._counting = asyncio.create_task(self._count_open_cases())
        return self._open_cases

    async def _count_open_cases(self) -> None:
        try:
            # Not on the thread-sensitive executor: its one thread also serves Django's sync views.
            count = database_sync_to_async(open_cases, thread_sensitive=False, executor=query_thread())
            started = time.time()
            self._open_cases, self.open_cases_at = await count(), started
        except DatabaseError as exc:  # keep the last count; the next tick tries again
            log.warning("could not count open cases: %s", exc)
        finally:
            self._counted_at = time.monotonic()
            self._counting = None

    async def _receive(self, layer: Any) -> None:
        while True:
            try:
                message = await layer.receive(self._channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # the layer reconnects by itself; keep listening
                log.exception("dashboard hub could not receive from the channel layer")
                await asyncio.sleep(1)
                continue
            self._take(message)

    def _take(self, message: dict[str, Any]) -> None:
        """Count a group message into the figures and hand it to every socket; transactions delivered before
        (by catch_up(), then late through the layer, or the other way round) are left out."""
        if message.get("type") == broadcast.TRANSACTIONS_EVENT:
            items = [item for item in message["items"] if item[broadcast.PACKED_ID] not in self._seen]
            if not items:
                return
            if len(items) < len(message["items"]):
                message = {**message, "items": items}
            self._remember([item[broadcast.PACKED_ID] for item in items])
            self.stats.add(broadcast.packed_figures(items))
        for listener in list(self.listeners):
            try:
                listener.deliver(message)
            except Exception:
                log.exception("a dashboard socket failed to take a message")

    def _remember(self, ids: list[int]) -> None:
        now = time.monotonic()
        self._seen.update(ids)
        self._seen_at.append((now, ids))
        while self._seen_at and self._seen_at[0][0] < now - SEEN_SECONDS:
            self._seen.difference_update(self._seen_at.popleft()[1])

    async def _reconcile(self, *, since: datetime) -> None:
        while True:
            await asyncio.sleep(settings.DASHBOARD_RECONCILE_SECONDS)
            until = timezone.now() - timedelta(seconds=SETTLED_SECONDS)
            if until <= since:
                continue
            try:
                await self.catch_up(since, until)
            except DatabaseError as exc:  # the same span again next time
                log.warning("could not check the dashboards for lost transactions: %s", exc)
                continue
            since = until

    async def catch_up(self, start: datetime, end: datetime) -> int:
        """Deliver the transactions stored from `start` up to `end` that never came through the channel layer;
        how many there were."""
        in_thread = functools.partial(database_sync_to_async, thread_sensitive=False, executor=query_thread())
        stored = await in_thread(_stored_ids)(start, end)
        lost = [tx_id for tx_id in stored if tx_id not in self._seen]
        if lost:
            events = await in_thread(_events)(lost)
            log.warning(
                "%d stored transactions never came through the channel layer: delivered from the database", len(lost)
            )
            self._take({"type": broadcast.TRANSACTIONS_EVENT, "items": [broadcast.pack(event) for event in events]})
        return len(lost)


def _stored_ids(start: datetime, end: datetime) -> list[int]:
    return list(Transaction.objects.received_between(start, end).values_list("id", flat=True))


def _events(ids: list[int]) -> list[dict[str, Any]]:
    return feed_events(list(Transaction.objects.filter(id__in=ids).order_by("id")))


@functools.cache
def query_thread() -> ThreadPoolExecutor:
    """The process's one thread for its background queries (open-case counts, lost transactions)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="dashboard-queries")


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def hub() -> Hub:
    """This event loop's hub: one per server process (tests start a loop per test)."""
    loop = asyncio.get_running_loop()
    if loop not in _hubs:
        _hubs[loop] = Hub()
    return _hubs[loop]
