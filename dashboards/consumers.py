"""The analysts' live socket: coalesced transaction pushes, live figures, case changes, resume by id.

Sockets take the dashboard group's messages from their process's hub (dashboards/hub.py), which
receives each once. Only the push loop writes to the socket, at most once per FLUSH_SECONDS, so a slow
browser never holds up the delivery of messages to the others.

Flow control: every frame carries a `seq`; a client that answers `{"type": "ack", "seq": N}` (the
dashboard's own pages do) gets no new frame while MAX_UNACKED are unanswered, and is closed (4408; it
reconnects and resumes by id) once it has been stalled for DASHBOARD_STALL_SECONDS or MAX_PENDING
transactions wait for it. daphne applies no write backpressure, so without this a stalled browser would
grow the server's send buffer without bound. Clients that never ack (API.md does not ask them to) get
every frame as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from operator import itemgetter
from typing import Any

import orjson
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from dashboards import broadcast
from dashboards.hub import hub
from scoring.models import Transaction
from scoring.results import feed_events
from scoring.roles import can_review

log = logging.getLogger(__name__)

# At most one transaction frame per FLUSH_SECONDS per socket, however busy ingest is. A shorter rest between
# frames got transactions to the sockets sooner at the same server CPU (docs/performance.md), and the page
# draws at its own pace whatever the frame rate.
FLUSH_SECONDS = 0.008
STATS_SECONDS = 1.0
MAX_PENDING = 5000  # a socket that falls this far behind is closed; the browser resumes from the database
MAX_UNACKED = 20  # frames in flight to an acking client: a fraction of a second's at the flush rate
RESUME_LIMIT = 500
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NO_ROLE = 4403  # logged in, but neither an analyst nor a lead
CLOSE_TOO_SLOW = 4408


class DashboardConsumer(AsyncWebsocketConsumer):
    """One analyst's dashboard."""

    # The hub receives the group's messages for the whole process: no channel-layer channel per socket.
    channel_layer_alias = "dashboards-use-the-hub"

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not await database_sync_to_async(can_review)(user):
            await self.close(code=CLOSE_NO_ROLE)
            return
        self.pending: list[list[Any]] = []  # see broadcast.pack
        self.cases: list[dict[str, Any]] = []
        self.seq = 0  # frames sent
        self.acked: int | None = None  # last frame the client acknowledged; None: it does not ack
        self.stalled_since: float | None = None
        self.wake = asyncio.Event()  # something is waiting to be sent
        self.sending = False  # a send is waiting on the server's transport (uvicorn's backpressure)
        self.dropped = False
        self.replayed: set[int] = set()
        self.replaying = False
        self.closing: asyncio.Task[None] | None = None
        self.hub = hub()
        await self.hub.join(self)  # only after the user check
        await self.accept()
        self.pusher = asyncio.create_task(self._push_loop())

    async def disconnect(self, code: int) -> None:
        pusher = getattr(self, "pusher", None)
        if pusher is not None:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pusher
        if getattr(self, "hub", None) is not None:
            await self.hub.leave(self)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            message = orjson.loads(text_data or bytes_data or b"")
        except orjson.JSONDecodeError:
            return
        if not isinstance(message, dict):
            return
        if message.get("type") == broadcast.MSG_ACK:
            seq = message.get("seq")
            if _count(seq) and seq <= self.seq:
                self.acked = max(seq, self.acked or 0)
                if self.stalled_since is not None:
                    self.wake.set()  # caught up: send what waited
        elif message.get("type") == broadcast.MSG_RESUME:
            after_id = message.get("after_id")
            if _count(after_id):
                await self._resume(after_id)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels runs close_old_connections in a thread before every handler: one thread hop per
        # message from the browser, which acks every frame. Our handlers only touch the database
        # through database_sync_to_async, which does that itself, so the hop is skipped.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # --- the dashboard group's messages, from the hub ----------------------------------------

    def deliver(self, message: dict[str, Any]) -> None:
        """Take a group message: buffered here, sent by the push loop."""
        if self.dropped:
            return
        if message["type"] == broadcast.TRANSACTIONS_EVENT:
            self.pending.extend(message["items"])
            # A burst bigger than the bound is fine for a socket that keeps up: the next flush carries it.
            too_far = len(self.pending) > MAX_PENDING and (self._unanswered() or self.sending)
            if too_far and self.closing is None:
                self.closing = asyncio.create_task(self._drop(f"fell {MAX_PENDING} transactions behind"))
                return
        elif message["type"] == broadcast.CASE_EVENT:
            self.cases.append({"type": broadcast.MSG_CASE, **message["case"]})
        self.wake.set()

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
        """Send what is waiting as soon as something is, then rest FLUSH_SECONDS: a lone transaction goes
        out at once, a flood in one frame per FLUSH_SECONDS; an idle socket costs one wake-up a second."""
        loop = asyncio.get_running_loop()
        next_stats = loop.time() + STATS_SECONDS
        while not self.dropped:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=max(next_stats - loop.time(), 0))
            self.wake.clear()
            stalled = self._stalled_for()
            if stalled is not None:
                if stalled > settings.DASHBOARD_STALL_SECONDS:
                    await self._drop(f"acknowledged nothing for {stalled:.0f} s")
                elif len(self.pending) > MAX_PENDING:
                    await self._drop(f"fell {MAX_PENDING} transactions behind")
                if loop.time() >= next_stats:
                    next_stats = loop.time() + STATS_SECONDS
            else:
                for case in self._take_cases():
                    await self._send(case)
                await self._flush()
                # Stats wait for the process's first open-case count (a tick later), never for a query.
                if loop.time() >= next_stats and (count := self.hub.open_cases()) is not None:
                    counts = {"open_cases": count, "open_cases_at": self.hub.open_cases_at}
                    await self._send({"type": broadcast.MSG_STATS, **self.hub.figures(), **counts})
                    next_stats = loop.time() + STATS_SECONDS
            await asyncio.sleep(FLUSH_SECONDS)

    def _take_cases(self) -> list[dict[str, Any]]:
        cases, self.cases = self.cases, []
        return cases

    def _unanswered(self) -> bool:
        """Whether an acking client has MAX_UNACKED frames unanswered."""
        return self.acked is not None and self.seq - self.acked >= MAX_UNACKED

    def _stalled_for(self) -> float | None:
        """Seconds an acking client has had MAX_UNACKED frames unanswered, or None when it keeps up."""
        if not self._unanswered():
            self.stalled_since = None
            return None
        now = time.monotonic()
        if self.stalled_since is None:
            self.stalled_since = now
        return now - self.stalled_since

    async def _drop(self, why: str) -> None:
        """Close a socket that cannot keep up and stop buffering for it; the browser reconnects and resumes."""
        if self.dropped:
            return
        self.dropped = True
        log.warning("dashboard socket %s; closing it so that it resumes from the database", why)
        self.pending.clear()
        self.cases.clear()
        await self.hub.leave(self)
        await self.close(code=CLOSE_TOO_SLOW)

    async def _flush(self) -> None:
        if self.replaying or not self.pending:
            return
        items, self.pending = self.pending, []
        if self.replayed:
            items = [item for item in items if item[broadcast.PACKED_ID] not in self.replayed]
        if items:
            items.sort(key=itemgetter(broadcast.PACKED_ID))  # two processes' batches may interleave
            await self._send_items([item[broadcast.PACKED_JSON] for item in items])

    async def _send(self, message: dict[str, Any]) -> None:
        if self.dropped:
            return
        self.seq += 1
        await self._write(orjson.dumps({**message, "seq": self.seq}))

    async def _send_items(self, encoded: list[bytes]) -> None:
        """A `transactions` frame from items already encoded by broadcast.pack."""
        if self.dropped:
            return
        self.seq += 1
        await self._write(b'{"type":"transactions","items":[%b],"seq":%d}' % (b",".join(encoded), self.seq))

    async def _write(self, data: bytes) -> None:
        self.sending = True
        try:
            await self.send(text_data=data.decode())
        finally:
            self.sending = False


def _count(value: Any) -> bool:
    """A non-negative JSON integer (not a boolean)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _replay(after_id: int) -> list[dict[str, Any]]:
    """The newest RESUME_LIMIT transactions after `after_id`, in id order, as pushed live."""
    return feed_events(Transaction.objects.after_id(after_id, limit=RESUME_LIMIT))
