"""One webhook request, signed per the Standard Webhooks specification, and what its answer means for the next one.

The HTTP client is the standard library's (urllib) with a timeout on every step; redirects are not followed (a
receiver that moved is a failed delivery that a lead replays to the new URL, never a body sent somewhere else).
"""

from __future__ import annotations

import http.client
import random
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from django.conf import settings
from standardwebhooks.webhooks import Webhook

BODY_START = 200  # bytes of an answer the delivery log keeps
MAX_INTERVAL_SECONDS = 3600.0  # retries never wait longer than this between them
USER_AGENT = "fraudsite-webhooks/1"


@dataclass(frozen=True)
class Answer:
    """What one attempt got: a status (None when no answer came: a timeout, a refused connection) and its
    first bytes, or the error in words."""

    status: int | None
    duration_ms: int
    error: str = ""
    body_start: str = ""
    retry_after: str | None = None  # the Retry-After header as sent

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """Worth trying again: no answer, the receiver's own failure (5xx) or a request to slow down (429). Any
        other answer (a 4xx, a redirect) would be the same next time."""
        return self.status is None or self.status >= 500 or self.status == 429


def headers(secret: str, *, event_id: str, body: bytes, at: datetime) -> dict[str, str]:
    """The request's headers: `webhook-signature` is HMAC-SHA256 over `id.timestamp.body` with the secret."""
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id=event_id, timestamp=at, data=body),
    }


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # urllib then raises HTTPError with the redirect's own status


_opener = urllib.request.build_opener(_NoRedirects)


def post(url: str, *, body: bytes, headers: dict[str, str], timeout: float) -> Answer:
    """POST `body` to `url`; `timeout` bounds the connection and each read (a receiver that never answers costs
    that long, not more)."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    started = time.monotonic()
    try:
        with _opener.open(request, timeout=timeout) as response:
            return _answer(response.status, response.headers.get("Retry-After"), response.read(BODY_START), started)
    except urllib.error.HTTPError as answer:  # a status outside 2xx, with its body
        start = answer.read(BODY_START) if answer.fp is not None else b""
        return _answer(answer.code, answer.headers.get("Retry-After"), start, started)
    except (OSError, http.client.HTTPException, ValueError) as failure:  # timeouts and refusals are OSErrors
        return Answer(status=None, duration_ms=_ms_since(started), error=_in_words(failure))


def _answer(status: int, retry_after: str | None, start: bytes, started: float) -> Answer:
    text = start.decode("utf-8", errors="replace")[:BODY_START]
    return Answer(status=status, duration_ms=_ms_since(started), body_start=text, retry_after=retry_after)


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _in_words(failure: Exception) -> str:
    reason = getattr(failure, "reason", None) or failure  # URLError wraps the socket's error
    if isinstance(reason, TimeoutError):
        return "timed out"
    return (f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__)[:200]


def backoff(attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones: WEBHOOK_RETRY_BASE_SECONDS doubling each time up to
    an hour, half of it at random, so that receivers coming back up are not met by every sender at once."""
    full = min(settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0), MAX_INTERVAL_SECONDS)
    return full / 2 + random.uniform(0, full / 2)


def retry_after_seconds(value: str | None, *, now: datetime) -> float | None:
    """The seconds a Retry-After header asks for (a number, or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when.replace(tzinfo=when.tzinfo or UTC) - now).total_seconds(), 0.0)
