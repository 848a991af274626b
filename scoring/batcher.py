"""Micro-batching: concurrent ingest requests of one process are scored and stored together.

Requests are validated as they arrive (in the event loop); their items then queue here. Whenever fewer than
MAX_INFLIGHT batches are running, everything queued (up to MAX_ITEMS) goes as one batch: one thread hop,
one vectorised model call, one database transaction, one group message. While one batch is stored, the
next one is already formed and waiting (Django's thread-sensitive executor runs them one after the other;
a thread pool leaked pooled PostgreSQL connections across event loops). A lone request is never held back
waiting for company: with nothing in flight it starts at once. When a combined batch fails, each request
is retried on its own, so one bad request never fails the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async

from dashboards import broadcast
from scoring.schemas import TransactionIn

log = logging.getLogger(__name__)

MAX_ITEMS = 256
MAX_INFLIGHT = 2


@dataclass
class _Request:
    items: list[TransactionIn]
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """The queue of one event loop; `submit()` answers when the request's rows are committed."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.queue: deque[_Request] = deque()
        self.inflight = 0

    async def submit(self, items: list[TransactionIn]) -> list[Any]:
        future = asyncio.get_running_loop().create_future()
        self.queue.append(_Request(items, future))
        self._start()
        return await future

    def _start(self) -> None:
        while self.queue and self.inflight < MAX_INFLIGHT:
            batch = [self.queue.popleft()]
            size = len(batch[0].items)
            while self.queue and size + len(self.queue[0].items) <= MAX_ITEMS:
                request = self.queue.popleft()
                size += len(request.items)
                batch.append(request)
            self.inflight += 1
            asyncio.get_running_loop().create_task(self._run(batch))

    async def _run(self, batch: list[_Request]) -> None:
        try:
            await self._store(batch)
        finally:
            self.inflight -= 1
            self._start()

    async def _store(self, batch: list[_Request]) -> None:
        items = [item for request in batch for item in request.items]
        try:
            outcomes, events = await database_sync_to_async(self.store)(items)
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0], exc)
                return
            log.warning("a combined batch of %d requests failed (%s); storing them one by one", len(batch), exc)
            for request in batch:
                await self._store([request])
            return
        start = 0
        for request in batch:
            end = start + len(request.items)
            if not request.future.done():
                request.future.set_result(outcomes[start:end])
            start = end
        await broadcast.transactions(events)


def _fail(request: _Request, exc: Exception) -> None:
    if not request.future.done():
        request.future.set_exception(exc)


_batchers: dict[asyncio.AbstractEventLoop, MicroBatcher] = {}


def batcher_for_loop(store: Any) -> MicroBatcher:
    """The running loop's batcher (a server has one loop; tests start a new one per test)."""
    loop = asyncio.get_running_loop()
    batcher = _batchers.get(loop)
    if batcher is None or batcher.store is not store:
        for old in [old for old in _batchers if old.is_closed()]:
            del _batchers[old]
        batcher = _batchers[loop] = MicroBatcher(store)
    return batcher
