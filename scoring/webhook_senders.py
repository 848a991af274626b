"""The worker's sender threads: they claim due webhook deliveries one at a time and send them, at most
WEBHOOK_CONCURRENCY at once in a process and at most PER_ENDPOINT to one endpoint, each request bounded by
WEBHOOK_TIMEOUT_SECONDS: an endpoint that hangs holds two threads, never the other endpoints' deliveries.

A sender claims a delivery by moving its next attempt past the request's longest duration (`claim_seconds`): if the
worker dies mid-request, the delivery falls due again after that and is sent again (at least once; receivers drop
repeats by the `webhook-id`, the same on every attempt).
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections import Counter
from datetime import timedelta

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from scoring.models import WebhookDelivery
from scoring.webhooks import send, settle

log = logging.getLogger(__name__)

PER_ENDPOINT = 2  # deliveries a process sends to one endpoint at once


def claim_seconds() -> float:
    """How long a sender holds a delivery: its request's longest time (connecting, the answer's head, its body)
    and a margin to record it."""
    return 3 * settings.WEBHOOK_TIMEOUT_SECONDS + 5


class _Senders:
    """This process's sender threads and what each endpoint has under way."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sending: Counter[int] = Counter()
        self._stopping = threading.Event()

    def start(self, wanted: int) -> int:
        """Start up to `wanted` senders, within WEBHOOK_CONCURRENCY; how many started."""
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            room = max(settings.WEBHOOK_CONCURRENCY - len(self._threads), 0)
            new = [threading.Thread(target=self._run, name="webhook-sender", daemon=True) for _ in range(wanted)][:room]
            self._threads += new
        for thread in new:
            thread.start()
        return len(new)

    def join(self) -> None:
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join()

    def finish(self) -> None:
        """At the process's exit: each sender finishes the request under way and takes no other (what is left
        waits for the next worker), rather than being cut off mid-request and sent again later."""
        self._stopping.set()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=claim_seconds())

    def _claim(self) -> WebhookDelivery | None:
        # Under the lock: two senders of this process never take an endpoint past PER_ENDPOINT.
        with self._lock:
            if self._stopping.is_set():
                return None
            busy = [endpoint for endpoint, n in self._sending.items() if n >= PER_ENDPOINT]
            now = timezone.now()
            with transaction.atomic():
                due = WebhookDelivery.objects.due(now=now).filter(endpoint__is_enabled=True).exclude(endpoint__in=busy)
                delivery = due.select_for_update(skip_locked=True, of=("self",)).select_related("event", "endpoint")
                delivery = delivery.first()
                if delivery is None:
                    return None
                delivery.next_attempt_at = now + timedelta(seconds=claim_seconds())
                delivery.save(update_fields=["next_attempt_at"])
            self._sending[delivery.endpoint_id] += 1
            return delivery

    def _run(self) -> None:
        try:
            while (delivery := self._claim()) is not None:
                try:
                    connections.close_all()  # no connection held while waiting for the receiver
                    at = timezone.now()
                    settle(delivery.pk, answer=send(delivery, at=at), at=at)
                except Exception:  # the claim runs out and the delivery is sent again
                    log.exception("webhook delivery %s: sending failed", delivery.pk)
                finally:
                    with self._lock:
                        self._sending[delivery.endpoint_id] -= 1
                    connections.close_all()
        finally:
            connections.close_all()


senders = _Senders()
atexit.register(senders.finish)
