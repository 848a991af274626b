"""Micro-batching: concurrent ingest requests of one process are scored and stored together.

Requests are validated as they arrive (in the event loop); their items then queue here. Whenever fewer than
MAX_INFLIGHT batches are running (or one more, when FULL_BATCH items wait), everything queued
(up to MAX_ITEMS) goes as one batch: one thread hop, one vectorised model call, one database transaction,
one group message. With INGEST_THREADS=3 (the default on PostgreSQL) the batches are stored at once on
threads of a process-wide pool: while one waits for the database, another computes. With 1 they run one
after the other in Django's thread-sensitive executor, while the next batch forms; in-process tests use
that, because a test's database transaction is visible only to its own thread. A lone request is never
held back waiting for company: with nothing in flight it starts at once. When a combined batch fails, each
request is retried on its own, so one bad request never fails the others; when it fails because the database
cannot be reached, its requests and every queued one fail at once instead (see `_store`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError

from fraudsite import request_id
from scoring import metrics
from scoring.schemas import TransactionIn

log = logging.getLogger(__name__)

MAX_ITEMS = 256
MAX_INFLIGHT = 2
# One batch more may start when this many items wait: work that big pays for its own batch, and the third batch
# computes while two wait for the database. Three at all times made single POSTs' batches smaller (and slower);
# a threshold of 100 was never reached by many single POSTs, and the server's core idled with two in flight.
# The measurements behind this number: docs/performance.md, "Moved from code comments", scoring/batcher.py.
FULL_BATCH = 32


@cache
def _threads(count: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=count, thread_name_prefix="ingest")


def _in_thread(store: Any) -> Any:
    """`store` as a coroutine function, run as INGEST_THREADS says (see the module's docstring)."""
    if settings.INGEST_THREADS > 1:
        return database_sync_to_async(store, thread_sensitive=False, executor=_threads(settings.INGEST_THREADS))
    return database_sync_to_async(store)


@dataclass
class _Request:
    items: list[TransactionIn]
    future: asyncio.Future = field(repr=False)
    request_ids: tuple[str, ...] = ()  # what the request's log lines carry (fraudsite/request_id.py)


AfterCommit = Callable[[list[dict[str, Any]]], Awaitable[None]]


class MicroBatcher:
    """The queue of one event loop; `submit()` answers when the request's rows are committed.

    `store(items)` returns (outcomes, events); `after_commit(events)` runs once the batch is committed
    (ingest hands it the broadcast)."""

    def __init__(self, store: Any, *, after_commit: AfterCommit) -> None:
        self.store = store
        self.after_commit = after_commit
        self.queue: deque[_Request] = deque()
        self.queued = 0  # items in the queue
        self.inflight = 0
        self.down_at = float("-inf")  # when a batch last found the database unreachable (time.monotonic())
        self.down_error: Exception | None = None

    async def submit(self, items: list[TransactionIn]) -> list[Any]:
        future = asyncio.get_running_loop().create_future()
        self.queue.append(_Request(items, future, request_id.current()))
        self.queued += len(items)
        self._start()
        return await future

    def _start(self) -> None:
        while self.queue and self._may_start():
            batch = [self.queue.popleft()]
            size = len(batch[0].items)
            while self.queue and size + len(self.queue[0].items) <= MAX_ITEMS:
                request = self.queue.popleft()
                size += len(request.items)
                batch.append(request)
            self.queued -= size
            self.inflight += 1
            asyncio.get_running_loop().create_task(self._run(batch))

    def _may_start(self) -> bool:
        return self.inflight < MAX_INFLIGHT or (self.inflight < MAX_INFLIGHT + 1 and self.queued >= FULL_BATCH)

    async def _run(self, batch: list[_Request]) -> None:
        try:
            await self._store(batch)
        finally:
            self.inflight -= 1
            self._start()

    async def _store(self, batch: list[_Request]) -> None:
        # The batch's task began in the context of the request that started it: every line about the batch, here
        # and in the thread that stores it, names all of its requests instead.
        request_id.REQUEST_IDS.set(tuple(rid for request in batch for rid in request.request_ids))
        items = [item for request in batch for item in request.items]
        try:
            outcomes, events = await _in_thread(self._store_unless_down)(items, since=time.monotonic())
        except (OperationalError, InterfaceError) as exc:
            # The database is down (or its pool had no connection within DB_POOL_TIMEOUT). Every queued request
            # would wait that long again for the same answer, one batch after another, and a retry request by
            # request longer still: they all get it now, and the caller retries.
            self._fail_all(batch, exc)
            return
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
        metrics.BATCH_ITEMS.observe(len(items))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("stored a batch of %d transactions from %d requests", len(items), len(batch))
        await self.after_commit(events)

    def _store_unless_down(self, items: list[TransactionIn], *, since: float) -> Any:
        """`store(items)`, or at once the error of a batch that found the database unreachable after this one
        was handed to the threads: with one thread, in-flight batches wait there one after another."""
        if self.down_at > since and self.down_error is not None:
            raise self.down_error
        try:
            return self.store(items)
        except (OperationalError, InterfaceError) as exc:
            # Noted here, in the thread: the next batch may be on its way in it before the loop hears of this.
            self.down_at, self.down_error = time.monotonic(), exc
            raise

    def _fail_all(self, batch: list[_Request], exc: Exception) -> None:
        log.warning("database unavailable: failing %d batched and %d queued requests", len(batch), len(self.queue))
        for request in [*batch, *self.queue]:
            _fail(request, exc)
        self.queue.clear()
        self.queued = 0


def _fail(request: _Request, exc: Exception) -> None:
    if not request.future.done():
        request.future.set_exception(exc)


_batchers: dict[asyncio.AbstractEventLoop, MicroBatcher] = {}


def batcher_for_loop(store: Any, *, after_commit: AfterCommit) -> MicroBatcher:
    """The running loop's batcher (a server has one loop; tests start a new one per test)."""
    loop = asyncio.get_running_loop()
    batcher = _batchers.get(loop)
    if batcher is None or batcher.store is not store or batcher.after_commit is not after_commit:
        for old in [old for old in _batchers if old.is_closed()]:
            del _batchers[old]
        batcher = _batchers[loop] = MicroBatcher(store, after_commit=after_commit)
    return batcher
