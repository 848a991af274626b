"""The request id: taken from the caller's `X-Request-ID` when it is well formed, else made here; returned in the
same header, and carried by every log line written while the request (or the ingest batch it joined) is handled.

A context variable holds the ids in force: one for a request, all of a batch's while the batcher stores it
(scoring/batcher.py), so a line about a batch names every request in it. Context variables follow the work into
the threads that `sync_to_async` and `database_sync_to_async` run it on.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

HEADER = "X-Request-ID"
# Letters, digits and a few separators, as UUIDs and most tracing ids are written: nothing that could forge a
# second log line or a field in one.
WELL_FORMED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

REQUEST_IDS: ContextVar[tuple[str, ...]] = ContextVar("request_ids", default=())


def take(sent: str | None) -> str:
    """The caller's id when it is well formed, else a new one."""
    if sent and WELL_FORMED.fullmatch(sent):
        return sent
    return new_id()


def new_id() -> str:
    """A random id (128 bits, hex): cheaper to make than a UUID, as unique."""
    return os.urandom(16).hex()


def current() -> tuple[str, ...]:
    """The request ids in force here: one in a request, several while a batch of requests is stored."""
    return REQUEST_IDS.get()


class RequestIdMiddleware:
    """Django's side: the id for the request's log lines, and in the answer's header."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if iscoroutinefunction(self):
            return self._acall(request)
        request_id = take(request.headers.get(HEADER))
        token = REQUEST_IDS.set((request_id,))
        try:
            response = self.get_response(request)
        finally:
            REQUEST_IDS.reset(token)
        response[HEADER] = request_id
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        request_id = take(request.headers.get(HEADER))
        # Left set: under ASGI the request has a task, so a context, of its own, and Django's line about a refused
        # or failed answer ("Unauthorized: /metrics"), written once the middleware has returned, carries it too.
        REQUEST_IDS.set((request_id,))
        response = await self.get_response(request)
        response[HEADER] = request_id
        return response
