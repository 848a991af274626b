"""One channel-layer subscription per server process for the dashboard group, fanned out to its sockets.

When every socket joined the group itself, the layer delivered (and with Redis, decoded) each group
message once per socket, and each socket counted it into figures of its own: with 20 dashboards, 20 times
the work for every stored batch. The hub receives each message once, counts it once into the process's
live figures, and hands it to every socket of the process as a plain function call.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import DatabaseError

from dashboards import broadcast
from dashboards.stats import LiveStats, open_cases, recent_stats

log = logging.getLogger(__name__)
OPEN_CASES_SECONDS = 1.0


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
            self.listeners.add(listener)

    async def leave(self, listener: Listener) -> None:
        """Stop delivering to `listener` (the last one to leave unsubscribes the process)."""
        async with self._lock:
            self.listeners.discard(listener)
            if self.listeners or self._task is None:
                return
            for task in (self._task, self._counting):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            self._task = self._counting = None
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
        up the socket's transaction frames: the count took 36-49 ms over 250,000 open cases, and up to
        20 sockets queued theirs on one database thread, so frames waited for hundreds of milliseconds.
        """
        if self._counting is None and time.monotonic() - self._counted_at >= OPEN_CASES_SECONDS:
            self._counting = asyncio.create_task(self._count_open_cases())
        return self._open_cases

    async def _count_open_cases(self) -> None:
        try:
            # Not on the thread-sensitive executor: its one thread also serves Django's sync views.
            count = database_sync_to_async(open_cases, thread_sensitive=False, executor=_counter())
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
            if message.get("type") == broadcast.TRANSACTIONS_EVENT:
                self.stats.add(broadcast.packed_figures(message["items"]))
            for listener in list(self.listeners):
                try:
                    listener.deliver(message)
                except Exception:
                    log.exception("a dashboard socket failed to take a message")


@functools.cache
def _counter() -> ThreadPoolExecutor:
    """The process's one thread for open-case counts."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="open-cases")


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def hub() -> Hub:
    """This event loop's hub: one per server process (tests start a loop per test)."""
    loop = asyncio.get_running_loop()
    if loop not in _hubs:
        _hubs[loop] = Hub()
    return _hubs[loop]
