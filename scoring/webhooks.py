"""Webhooks: the endpoints leads register, the outbox every event is recorded in, and its delivery.

- `register_endpoint`, `update_endpoint`, `set_enabled`, `replay`: every change a person makes (the desk's page, the
  admin, `manage.py webhook`): leads only, written to the admin's history of the endpoint.
- `record(type, data)`: the domain functions (cases, labels, model activation) put an event in the outbox inside the
  transaction of the change it tells of, so a change that rolls back sends nothing and a committed one is delivered
  whatever restarts in between. The ingest write records `transaction.flagged` itself (scoring/storage), in its one
  statement; all of them only while some enabled endpoint wants the type (`subscribed`), so without endpoints they
  cost nothing.
- `sweep()`: the worker's duty (settings.WORKER_DUTIES): fans new events out into one delivery per endpoint that
  wants them, and starts sender threads (scoring/webhook_senders.py) for the due deliveries, which `settle` each
  attempt: delivered, retried later, or failed. `deliver` sends one now, `replay` one again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from scoring import webhook_payloads as payloads
from scoring import webhook_sending as sending
from scoring.models import (
    DeliveryStatus,
    EventType,
    Transaction,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from scoring.refreshed import Refreshed
from scoring.roles import require_lead

log = logging.getLogger(__name__)

FAN_OUT_CHUNK = 500  # events turned into deliveries in one transaction
FAN_OUT_SECONDS = 2.0  # a sweep fans out for about this long, then lets the worker's other duties run


# --- which events anyone wants -------------------------------------------------------------------


class _Subscriptions(Refreshed):
    """The event types some enabled endpoint wants, held in memory and reloaded every few seconds: ingest asks for
    every batch, the database is asked once in a while. An endpoint registered in another process is seen within
    `ttl`; one registered here, at once."""

    ttl = 5.0

    def __init__(self) -> None:
        super().__init__(seconds=lambda: self.ttl)
        self._types: frozenset[str] = frozenset()

    def types(self) -> frozenset[str]:
        self.look()
        return self._types

    def _refresh(self) -> None:
        wanted = WebhookEndpoint.objects.filter(is_enabled=True).values_list("events", flat=True)
        self._types = frozenset(event_type for events in wanted for event_type in events)

    def reset(self) -> None:
        self.expire()


subscriptions = _Subscriptions()


def subscribed(event_type: str) -> bool:
    """Whether some enabled endpoint wants events of this type (as this process last looked)."""
    return event_type in subscriptions.types()


def record(event_type: str, data: Callable[[], dict[str, Any]]) -> WebhookEvent | None:
    """Put an event in the outbox, inside the caller's transaction (the change it tells of); `data` is called only
    when some enabled endpoint wants the type. None when none does."""
    if not connection.in_atomic_block:
        raise RuntimeError("webhook events are recorded inside the transaction of the change they tell of")
    if not subscribed(event_type):
        return None
    event = WebhookEvent(type=event_type, created_at=timezone.now())
    event.payload = payloads.envelope(
        event_id=event.id, event_type=event_type, created_at=event.created_at, data=data()
    )
    event.save(force_insert=True)
    return event


# --- endpoints: what leads change ------------------------------------------------------------------


def register_endpoint(
    url: str, *, events: list[str], user: AbstractBaseUser | None, description: str = "", enabled: bool = True
) -> WebhookEndpoint:
    """A new endpoint; its secret is on the object returned, to be shown once. `user` None: from the shell."""
    require_lead(user, doing="manage webhooks")
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.create(
            url=checked_url(url),
            events=checked_events(events),
            description=description.strip()[:200],
            is_enabled=enabled,
            created_by=user,
        )
        _audit(endpoint, user=user, flag=ADDITION, message=f"registered for {', '.join(endpoint.events)}")
    return endpoint


def update_endpoint(
    endpoint_id: int, *, user: AbstractBaseUser | None, url: str, events: list[str], description: str = ""
) -> WebhookEndpoint:
    """Change where an endpoint is and what it wants (its secret stays: receivers keep verifying)."""
    require_lead(user, doing="manage webhooks")
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id)
        endpoint.url, endpoint.events = checked_url(url), checked_events(events)
        endpoint.description = description.strip()[:200]
        endpoint.save(update_fields=["url", "events", "description"])
        _audit(endpoint, user=user, flag=CHANGE, message=f"now {endpoint.url} for {', '.join(endpoint.events)}")
    return endpoint


def set_enabled(endpoint_id: int, *, enabled: bool, user: AbstractBaseUser | None) -> WebhookEndpoint:
    """Turn an endpoint on or off. Off, it gets no new events; what was pending for it waits until it is back on."""
    require_lead(user, doing="manage webhooks")
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id)
        if endpoint.is_enabled != enabled:
            endpoint.is_enabled = enabled
            endpoint.save(update_fields=["is_enabled"])
            _audit(endpoint, user=user, flag=CHANGE, message="enabled" if enabled else "disabled")
    return endpoint


def replay(delivery_id: int, *, user: AbstractBaseUser | None) -> WebhookDelivery:
    """Send a delivery again now, whatever its state, with a fresh WEBHOOK_RETRY_HOURS of retries; the same event
    id and body, so a receiver that handled it already drops it."""
    require_lead(user, doing="manage webhooks")
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(of=("self",)).select_related("endpoint").get(pk=delivery_id)
        )
        now = timezone.now()
        delivery.status, delivery.next_attempt_at, delivery.retry_until = DeliveryStatus.PENDING, now, retry_until(now)
        delivery.save(update_fields=["status", "next_attempt_at", "retry_until"])
        _audit(delivery.endpoint, user=user, flag=CHANGE, message=f"replayed {delivery.event_id}")
    return delivery


def retry_until(start: datetime) -> datetime:
    return start + timedelta(hours=settings.WEBHOOK_RETRY_HOURS)


def checked_url(url: str) -> str:
    """The URL without surrounding blanks; ValueError unless it is http:// or https://."""
    url = url.strip()
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        raise ValueError(f"{url!r} is not an http:// or https:// URL") from None
    if len(url) > WebhookEndpoint._meta.get_field("url").max_length:
        raise ValueError("the URL is too long")
    return url


def checked_events(events: list[str]) -> list[str]:
    """The event types in one order without repeats; ValueError for none or an unknown one."""
    if unknown := set(events) - set(EventType.values):
        raise ValueError(f"unknown event type(s): {', '.join(sorted(unknown))}")
    if not events:
        raise ValueError("choose at least one event")
    return [event_type for event_type in EventType.values if event_type in events]  # one order, no repeats


def _audit(endpoint: WebhookEndpoint, *, user: AbstractBaseUser | None, flag: int, message: str) -> None:
    """The admin's history of the endpoint (a change from the shell has no user: the log says it), and this process
    sees the change's subscriptions at once after the commit."""
    if user is not None:
        LogEntry.objects.log_actions(user.pk, [endpoint], flag, change_message=message, single_object=True)
    log.info("webhook endpoint %s (%s) %s by %s", endpoint.pk, endpoint.url, message, user or "the shell")
    transaction.on_commit(subscriptions.reset)


# --- fan-out and delivery: the worker's duty --------------------------------------------------------


def sweep(*, wait: bool = False) -> str:
    """Fan new events out into deliveries, and start senders for the due ones (`wait`: until they are all sent or
    scheduled for later, for the shell and tests). What it did, in words ("" for nothing)."""
    events, began = 0, time.monotonic()
    while time.monotonic() - began < FAN_OUT_SECONDS:
        done = fan_out()
        events += done
        if done < FAN_OUT_CHUNK:
            break
    from scoring.webhook_senders import senders  # they send through settle() below

    due = WebhookDelivery.objects.due(now=timezone.now()).filter(endpoint__is_enabled=True)
    started = senders.start(len(due.values_list("id")[: settings.WEBHOOK_CONCURRENCY]))
    if wait:
        senders.join()
    news = [f"{events} event(s) fanned out"] if events else []
    return ", ".join(news + ([f"{started} sender(s) started"] if started else []))


def fan_out(*, limit: int = FAN_OUT_CHUNK) -> int:
    """One delivery of each new event to each enabled endpoint that wants its type and existed when it happened;
    how many events. A transaction.flagged event's body is rendered here, from its stored transaction."""
    with transaction.atomic():
        events = list(WebhookEvent.objects.unsent().select_for_update(skip_locked=True)[:limit])
        if not events:
            return 0
        endpoints = list(WebhookEndpoint.objects.filter(is_enabled=True))
        txs = Transaction.objects.in_bulk([e.transaction_id for e in events if e.payload is None])
        now, deliveries = timezone.now(), []
        for event in events:
            if event.payload is None:
                tx = txs.get(event.transaction_id)
                data = payloads.flagged(tx) if tx else {"transaction_id": event.transaction_id}
                event.payload = payloads.envelope(
                    event_id=event.id, event_type=event.type, created_at=event.created_at, data=data
                )
            event.fanned_out_at = now
            deliveries += [
                WebhookDelivery(event=event, endpoint=endpoint, next_attempt_at=now, retry_until=retry_until(now))
                for endpoint in endpoints
                if event.type in endpoint.events and endpoint.created_at <= event.created_at
            ]
        WebhookDelivery.objects.bulk_create(deliveries, ignore_conflicts=True)  # one per (event, endpoint), ever
        WebhookEvent.objects.bulk_update(events, ["payload", "fanned_out_at"])
    return len(events)


def deliver(delivery_id: int) -> WebhookDelivery:
    """Send one delivery now, whatever its schedule, and record the attempt (the shell's `webhook deliver`)."""
    delivery = WebhookDelivery.objects.select_related("event", "endpoint").get(pk=delivery_id)
    at = timezone.now()
    return settle(delivery.pk, answer=send(delivery, at=at), at=at)


def send(delivery: WebhookDelivery, *, at: datetime) -> sending.Answer:
    """The signed request: the event's stored body, the same on every attempt."""
    body = orjson.dumps(delivery.event.payload)
    headers = sending.headers(delivery.endpoint.secret, event_id=delivery.event_id, body=body, at=at)
    return sending.post(delivery.endpoint.url, body=body, headers=headers, timeout=settings.WEBHOOK_TIMEOUT_SECONDS)


def settle(delivery_id: int, *, answer: sending.Answer, at: datetime) -> WebhookDelivery:
    """Record an attempt and what follows: delivered on a 2xx; tried again later (exponential backoff with jitter,
    no sooner than a Retry-After) on no answer, a 5xx or a 429, until `retry_until`; failed otherwise."""
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(of=("self",)).select_related("endpoint").get(pk=delivery_id)
        )
        WebhookAttempt.objects.create(
            delivery=delivery,
            at=at,
            status_code=answer.status,
            duration_ms=answer.duration_ms,
            error=answer.error,
            body_start=answer.body_start,
        )
        now = timezone.now()
        delivery.attempts += 1
        delivery.last_status, delivery.last_error = answer.status, answer.error
        if answer.ok:
            delivery.status, delivery.delivered_at = DeliveryStatus.SUCCEEDED, now
        elif delivery.status == DeliveryStatus.SUCCEEDED:
            pass  # sent twice (a claim ran out while the first was under way): the one that arrived counts
        elif answer.retryable and (later := _next_try(delivery, answer, now=now)) <= delivery.retry_until:
            delivery.next_attempt_at = later
        else:
            delivery.status = DeliveryStatus.FAILED
        delivery.save()
    if delivery.status == DeliveryStatus.FAILED:
        log.warning(
            "webhook delivery %s of %s to %s failed after %s attempt(s): %s",
            delivery.pk,
            delivery.event_id,
            delivery.endpoint.url,
            delivery.attempts,
            answer.error or f"HTTP {answer.status}",
        )
    return delivery


def _next_try(delivery: WebhookDelivery, answer: sending.Answer, *, now: datetime) -> datetime:
    asked = sending.retry_after_seconds(answer.retry_after, now=now) or 0.0
    return now + timedelta(seconds=max(sending.backoff(delivery.attempts), asked))


# --- figures ------------------------------------------------------------------------------------------


def endpoint_health(*, ids: list[int] | None = None, now: datetime | None = None) -> dict[int, dict[str, int]]:
    """Per endpoint (of `ids`, or all): deliveries pending, pending after a failed attempt (retrying), and failed in
    the last day; an endpoint with none of these is left out."""
    day_ago = (now or timezone.now()) - timedelta(days=1)
    deliveries = WebhookDelivery.objects.filter(endpoint__in=ids) if ids is not None else WebhookDelivery.objects.all()
    pending = deliveries.filter(status=DeliveryStatus.PENDING).values("endpoint_id")
    pending = pending.annotate(pending=Count("id"), retrying=Count("id", filter=Q(attempts__gt=0)))
    failed = deliveries.filter(status=DeliveryStatus.FAILED, created_at__gte=day_ago).values("endpoint_id")
    health: dict[int, dict[str, int]] = {}
    for row in pending:
        health.setdefault(row["endpoint_id"], {}).update(pending=row["pending"], retrying=row["retrying"])
    for row in failed.annotate(failed=Count("id")):
        health.setdefault(row["endpoint_id"], {})["failed"] = row["failed"]
    return health


def queue_depth() -> int:
    """Events not yet fanned out and deliveries not yet delivered: what the worker has to do (for /metrics)."""
    unsent = WebhookEvent.objects.filter(fanned_out_at__isnull=True).count()
    return unsent + WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).count()


def outcomes() -> dict[str, int]:
    """Deliveries by status, every one stored (for /metrics)."""
    counts = WebhookDelivery.objects.values("status").annotate(n=Count("id")).values_list("status", "n")
    return {status: 0 for status in DeliveryStatus.values} | dict(counts)
