"""Review: the cases flagged transactions open, and their audit trail."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models
from django.utils import timezone

if TYPE_CHECKING:
    from scoring.models.traffic import Transaction


class CaseStatus(models.TextChoices):
    OPEN = "open", "Open"
    FRAUD = "fraud", "Confirmed fraud"
    LEGITIMATE = "legitimate", "Legitimate"


# Audit actions written by the ingest write itself (the others are in scoring/cases.py).
OPENED = "opened"
ALERT = "alert"  # a flagged transaction joined the card's open case


def due_after(decision: str) -> timedelta:
    """How long a case of this decision may wait for a verdict (settings.CASE_DUE_HOURS)."""
    return timedelta(hours=settings.CASE_DUE_HOURS[decision])


class CaseQuerySet(models.QuerySet):
    def open(self) -> CaseQuerySet:
        return self.filter(status=CaseStatus.OPEN)

    def queue(self) -> CaseQuerySet:
        """Open cases, riskiest first."""
        return self.open().select_related("assignee").order_by("-top_score", "id")

    def overturned(self) -> CaseQuerySet:
        """Legitimate verdicts that a fraud label overturned, latest verdict first."""
        related = self.select_related("assignee", "resolved_by")
        return related.filter(overturned=True).order_by("-resolved_at", "-id")


class ReasonCode(models.Model):
    """Why a case was resolved the way it was, from a list leads keep (stolen card, false positive, ...)."""

    code = models.SlugField(max_length=40, unique=True)
    label = models.CharField(max_length=100)
    # The verdict the reason goes with ("" for either): a reason that says fraud cannot close a case as legitimate.
    verdict = models.CharField(
        max_length=12, blank=True, default="", choices=[("fraud", "Fraud"), ("legitimate", "Legitimate")]
    )
    is_active = models.BooleanField(default=True)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "label"]

    def __str__(self) -> str:
        return self.label


class Case(models.Model):
    """A card's flagged transactions (its alerts) waiting for, or holding, an analyst's verdict.

    A card has at most one open case: a flagged transaction of a card with an open case joins it (scoring/storage
    does that inside the ingest write). The figures the queue sorts by are kept on the case by that write.
    """

    card_id = models.CharField(max_length=64)
    status = models.CharField(max_length=12, choices=CaseStatus.choices, default=CaseStatus.OPEN)
    decision = models.CharField(max_length=8, default="review", help_text="The strongest decision among its alerts")
    alert_count = models.IntegerField(default=1)
    top_score = models.FloatField(default=0.0)
    # The alerts' amounts added up, when they are all in one currency; None (and currency "") when they are not.
    total_amount = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True, default="")
    last_alert_at = models.DateTimeField(default=timezone.now)
    due_at = models.DateTimeField(default=timezone.now)
    # The assignee's last claim or note: an idle claim lapses CLAIM_TIMEOUT_MINUTES after it.
    assignee_active_at = models.DateTimeField(null=True, blank=True)
    reason = models.ForeignKey(ReasonCode, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.TextField(blank=True, default="")
    opened_at = models.DateTimeField(default=timezone.now)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    # Who resolved it when no person did (the chargeback feed); db_default: ingest's SQL opens cases without it.
    resolved_via = models.CharField(max_length=40, blank=True, default="", db_default="")
    # A fraud label arrived after an analyst's "legitimate": the verdict stays, flagged as overturned.
    overturned = models.BooleanField(default=False, db_default=False)

    objects = CaseQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["status", "-opened_at"], name="case_status_opened"),
            models.Index(fields=["card_id", "-opened_at"], name="case_card"),
            # The queue's verdicts by latest first (dashboards/queue_filters.py): a verdict's columns change when a
            # case is resolved or reopened, never in the ingest write, whose updates stay heap-only.
            models.Index(fields=["status", "-resolved_at", "-id"], name="case_status_resolved"),
            models.Index(fields=["-resolved_at", "-id"], condition=models.Q(overturned=True), name="case_overturned"),
        ]
        # The ingest write's upsert relies on this: a second open case for a card is impossible, even for two
        # batches racing on one card, and a resolved case no longer holds the card's place.
        constraints = [
            models.UniqueConstraint(
                fields=["card_id"], condition=models.Q(status=CaseStatus.OPEN), name="one_open_case_per_card"
            )
        ]

    def __str__(self) -> str:
        return f"Case {self.id} ({self.get_status_display()})"

    @property
    def is_open(self) -> bool:
        return self.status == CaseStatus.OPEN

    @property
    def is_overdue(self) -> bool:
        return self.is_open and self.due_at < timezone.now()

    @property
    def amount_text(self) -> str:
        """Its alerts' total with the currency, or "several currencies" (never added together)."""
        from scoring.results import case_amount

        return case_amount(self)

    def top_alert(self) -> Transaction | None:
        """Its riskiest transaction: what the case page explains first."""
        return self.alerts.order_by("-score", "id").first()


class CaseEvent(models.Model):
    """The audit trail: who did what to a case, and when."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    action = models.CharField(max_length=20)
    note = models.TextField(blank=True, default="")
    via = models.CharField(max_length=40, blank=True, default="", db_default="")  # no actor: who, in words
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor} at {self.at:%Y-%m-%d %H:%M}"
