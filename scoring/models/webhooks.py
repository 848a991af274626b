"""Webhooks: the endpoints leads register, the outbox of events, and each event's delivery to each endpoint with
every attempt made (scoring/webhooks.py does the work)."""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone


class EventType(models.TextChoices):
    TRANSACTION_FLAGGED = "transaction.flagged", "A transaction was flagged (review or block)"
    CASE_RESOLVED = "case.resolved", "A case was resolved"
    CASE_OVERTURNED = "case.overturned", "A legitimate verdict was overturned by a fraud label"
    LABEL_RECEIVED = "label.received", "The payment side labeled a transaction"
    MODEL_ACTIVATED = "model.activated", "A model version was activated"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


def new_secret() -> str:
    """A signing secret as the Standard Webhooks specification writes one: `whsec_` and base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def new_event_id() -> str:
    """The event's stable id, sent as `webhook-id` on every attempt, for receivers to drop repeats by."""
    return f"msg_{uuid.uuid4().hex}"


class WebhookEndpoint(models.Model):
    """A receiver's URL and the events it wants. The secret signs every delivery; it is shown once, on creation."""

    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True, default="")
    events = models.JSONField(default=list, help_text="The event types it receives")
    secret = models.CharField(max_length=100, default=new_secret, editable=False)
    is_enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.url


class WebhookEventQuerySet(models.QuerySet):
    def unsent(self) -> WebhookEventQuerySet:
        """Events not yet fanned out into deliveries, oldest first."""
        return self.filter(fanned_out_at__isnull=True).order_by("created_at", "id")


class WebhookEvent(models.Model):
    """The outbox: an event recorded in the same database transaction as the change it tells of.

    A `transaction.flagged` event is written by the ingest statement with its transaction only; its payload is
    rendered from the stored transaction and case when the worker fans it out (neither changes what it says).
    """

    id = models.CharField(primary_key=True, max_length=36, default=new_event_id, editable=False)
    type = models.CharField(max_length=40, choices=EventType.choices)
    payload = models.JSONField(null=True, blank=True)
    # What a transaction.flagged event is about. No index: nothing looks events up by it.
    transaction = models.ForeignKey(
        "scoring.Transaction", null=True, blank=True, on_delete=models.CASCADE, db_index=False, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    fanned_out_at = models.DateTimeField(null=True, blank=True)

    objects = WebhookEventQuerySet.as_manager()

    class Meta:
        indexes = [
            # The sweep's look for new events reads only these.
            models.Index(fields=["created_at"], condition=models.Q(fanned_out_at__isnull=True), name="webhook_unsent")
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class WebhookDeliveryQuerySet(models.QuerySet):
    def due(self, *, now: datetime) -> WebhookDeliveryQuerySet:
        return self.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now).order_by("next_attempt_at", "id")


class WebhookDelivery(models.Model):
    """One event on its way to one endpoint: pending until a 2xx answer (succeeded) or until retries run out."""

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # When it is tried next; while a worker sends it, when that worker's claim on it runs out.
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # Retries stop after this (a day after the delivery was made or replayed, WEBHOOK_RETRY_HOURS).
    retry_until = models.DateTimeField(default=timezone.now)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True, help_text="The last answer's HTTP status")
    last_error = models.CharField(max_length=200, blank=True, default="")
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = WebhookDeliveryQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["event", "endpoint"], name="one_delivery_per_endpoint")]
        indexes = [
            models.Index(
                fields=["next_attempt_at"], condition=models.Q(status=DeliveryStatus.PENDING), name="webhook_due"
            ),
            models.Index(fields=["endpoint", "-created_at"], name="webhook_endpoint_log"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} → {self.endpoint_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One HTTP request of a delivery, as the delivery log shows it."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)  # None: no answer (timeout, refused)
    duration_ms = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=200, blank=True, default="")
    body_start = models.CharField(max_length=200, blank=True, default="", help_text="The answer's first bytes")

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.status_code or self.error}"
