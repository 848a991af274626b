"""The analysts' live socket: coalesced transaction pushes, live figures, case changes, resume by id."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from dashboards import broadcast
from dashboards.stats import LiveStats, open_cases_now, recent_stats
from scoring.models import Case, Transaction

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.05  # one frame per socket every 50 ms at most: cheap at any ingest rate
STATS_SECONDS = 1.0
MAX_PENDING = 5000  # a socket that falls this far behind is closed; the browser resumes from the database
RESUME_LIMIT = 500
CLOSE_UNAUTHENTICATED = 4401
CLOSE_TOO_SLOW = 4408


class DashboardConsumer(AsyncWebsocketConsumer):
    """One analyst's dashboard."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        # Join only after the user check (the class attribute `groups` would join before it).
        await self.channel_layer.group_add(broadcast.DASHBOARD_GROUP, self.channel_name)
        self.pending: list[dict[str, Any]] = []
        self.replayed: set[int] = set()
        self.replaying = False
        self.stats = LiveStats()
        await self.accept()
        self.stats.seed(await database_sync_to_async(recent_stats)())
        self.pusher = asyncio.create_task(self._push_loop())

    async def disconnect(self, code: int) -> None:
        pusher = getattr(self, "pusher", None)
        if pusher is not None:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pusher
        await self.channel_layer.group_discard(broadcast.DASHBOARD_GROUP, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            message = orjson.loads(text_data or bytes_data or b"")
        except orjson.JSONDecodeError:
            return
        if isinstance(message, dict) and message.get("type") == broadcast.MSG_RESUME:
            after_id = message.get("after_id")
            if isinstance(after_id, int) and not isinstance(after_id, bool) and after_id >= 0:
                await self._resume(after_id)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels runs close_old_connections in a thread before every handler: one thread hop per
        # socket per pushed message. Our handlers only touch the database through
        # database_sync_to_async, which does that itself, so the hop is skipped.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # --- channel-layer events ---------------------------------------------------------------

    async def dashboard_transactions(self, event: dict[str, Any]) -> None:
        """New transactions: buffered here, sent by the push loop in one frame."""
        self.pending.extend(event["items"])
        self.stats.add(event["items"])
        if len(self.pending) > MAX_PENDING:
            log.warning("dashboard socket fell %d transactions behind; closing it so it resumes", MAX_PENDING)
            self.pending.clear()
            await self.close(code=CLOSE_TOO_SLOW)

    async def dashboard_case(self, event: dict[str, Any]) -> None:
        await self._send({"type": broadcast.MSG_CASE, **event["case"]})

    # --- internals -----------------------------------------------------------------------------

    async def _resume(self, after_id: int) -> None:
        self.replaying = True
        try:
            rows = await database_sync_to_async(_replay)(after_id)
            self.replayed = {row["id"] for row in rows}
            if rows:
                await self._send({"type": broadcast.MSG_TRANSACTIONS, "items": rows, "replay": True})
        finally:
            self.replaying = False
        await self._flush()

    async def _push_loop(self) -> None:
        ticks_per_stats = round(STATS_SECONDS / FLUSH_SECONDS)
        tick = 0
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await self._flush()
            tick += 1
            if tick % ticks_per_stats == 0:
                figures = self.stats.snapshot()
                figures["open_cases"] = await open_cases_now()
                await self._send({"type": broadcast.MSG_STATS, **figures})

    async def _flush(self) -> None:
        if self.replaying or not self.pending:
            return
        items, self.pending = self.pending, []
        if self.replayed:
            items = [item for item in items if item["id"] not in self.replayed]
        if items:
            items.sort(key=lambda item: item["id"])
            await self._send({"type": broadcast.MSG_TRANSACTIONS, "items": items})

    async def _send(self, message: dict[str, Any]) -> None:
        await self.send(text_data=orjson.dumps(message).decode())


def _replay(after_id: int) -> list[dict[str, Any]]:
    """The newest RESUME_LIMIT transactions after `after_id`, in id order, as pushed live."""
    rows = Transaction.objects.after_id(after_id, limit=RESUME_LIMIT)
    case_ids = dict(Case.objects.filter(transaction__in=rows).values_list("transaction_id", "id"))
    return [tx.event(case_id=case_ids.get(tx.id)) for tx in rows]
