"""Slow clients: a request whose headers or body do not arrive within a bound is closed.

A client that sends a byte now and then holds a connection, and what the server keeps for it, for as long as
it likes; enough of them and the server has nothing left for anyone else. uvicorn (the Procfile's server)
bounds only the wait between keep-alive requests, so `HeaderDeadlineProtocol` is its HTTP protocol with a
bound on the headers; the body is read by the application, so `BodyDeadline` bounds it there, for the ingest
routes and Django alike. daphne reads the whole request before the application sees it and offers no such
bound (docs/operations.md, "Security").
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from django.conf import settings
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

Scope = dict[str, Any]
TIMED_OUT = b'{"error": "the request body did not arrive in time; send it again"}'
SWEEP_SECONDS = 1.0


class BodyDeadline:
    """An ASGI wrapper: once REQUEST_BODY_TIMEOUT_SECONDS have passed without the whole body, the application
    is told the client left (so it stops reading) and the client gets a 408 and a closed connection.

    A timer per request cost more than the ingest endpoint's own work on a request; instead the reads that are
    waiting are kept in a set, and one timer a second, armed only while the set is not empty, wakes those
    past their deadline. A deadline is thus kept to within a second."""

    def __init__(self, application: Any) -> None:
        self.application = application
        self.waiting: set[_BoundedReceive] = set()
        self.sweep: asyncio.TimerHandle | None = None
        self.sweep_loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.application(scope, receive, send)
        bounded = _BoundedReceive(receive, watch=self)
        await self.application(scope, bounded, send)
        if bounded.timed_out:
            await _send_timeout(send)

    def watch(self, read: _BoundedReceive) -> None:
        self.waiting.add(read)
        loop = asyncio.get_running_loop()
        if self.sweep is None or self.sweep_loop is not loop:  # tests run one loop after another
            self.sweep, self.sweep_loop = loop.call_later(SWEEP_SECONDS, self._wake_the_late), loop

    def _wake_the_late(self) -> None:
        self.sweep = None
        now = time.monotonic()
        for read in [read for read in self.waiting if read.deadline <= now]:
            read.expire()
        if self.waiting:
            self.sweep = asyncio.get_running_loop().call_later(SWEEP_SECONDS, self._wake_the_late)


class _BoundedReceive:
    """`receive` with one deadline for the whole body; after its last part, unbounded again (Django then
    waits on it for the client's disconnect, which may rightly take as long as the response does)."""

    def __init__(self, receive: Any, *, watch: BodyDeadline) -> None:
        self.receive = receive
        self.watcher = watch
        self.deadline = time.monotonic() + settings.REQUEST_BODY_TIMEOUT_SECONDS
        self.body_done = self.timed_out = False
        self.task: asyncio.Task | None = None

    async def __call__(self) -> dict[str, Any]:
        if self.body_done:
            return await self.receive()
        self.task = asyncio.current_task()
        self.watcher.watch(self)
        try:
            message = await self.receive()
        except asyncio.CancelledError:
            if not self.timed_out:
                raise
            self.task.uncancel()  # the cancellation was our deadline's, not the server's
            log.info("closed a request whose body did not arrive within %g s", settings.REQUEST_BODY_TIMEOUT_SECONDS)
            return {"type": "http.disconnect"}
        finally:
            self.watcher.waiting.discard(self)
        self.body_done = message["type"] != "http.request" or not message.get("more_body", False)
        return message

    def expire(self) -> None:
        """Past the deadline while waiting for the body: stop waiting."""
        self.timed_out = self.body_done = True
        self.watcher.waiting.discard(self)
        if self.task is not None:
            self.task.cancel()


async def _send_timeout(send: Any) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(TIMED_OUT)).encode())]
    await send({"type": "http.response.start", "status": 408, "headers": [*headers, (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": TIMED_OUT})


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's default HTTP protocol (httptools), closing a connection whose request headers have not all
    arrived REQUEST_HEADER_TIMEOUT_SECONDS after it opened or after its previous response.

    uvicorn arms its own keep-alive timer only after a response, and disarms it at the next request's first
    byte: nothing bounds a connection that trickles its headers. Start uvicorn with
    `--http fraudsite.middleware:HeaderDeadlineProtocol` (the Procfile does)."""

    header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        waiting = not self.pipeline  # a pipelined request's headers have arrived already
        super().on_response_complete()
        if waiting and not self.transport.is_closing():
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self.header_deadline = self.loop.call_later(settings.REQUEST_HEADER_TIMEOUT_SECONDS, self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None

    def _headers_too_slow(self) -> None:
        self.header_deadline = None
        if not self.transport.is_closing():
            seconds = settings.REQUEST_HEADER_TIMEOUT_SECONDS
            log.info("closed a connection whose request headers did not arrive within %g s", seconds)
            self.transport.close()
