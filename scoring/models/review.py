"""Review: the cases flagged transactions open, and their audit trail."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from scoring.models.traffic import Transaction


class CaseStatus(models.TextChoices):
    OPEN = "open", "Open"
    FRAUD = "fraud", "Confirmed fraud"
    LEGITIMATE = "legitimate", "Legitimate"


class CaseQuerySet(models.QuerySet):
    def open_for(self, txs: list[Transaction]) -> dict[int, int]:
        """Open a case, with its "opened" audit event, for each of `txs` (stored, in the caller's
        transaction); returns {transaction id: case id}. (On PostgreSQL ingest opens them in its one
        statement: scoring/ingest.py.)"""
        if not txs:
            return {}
        now = timezone.now()
        cases = self.bulk_create([Case(transaction=tx, opened_at=now) for tx in txs])
        CaseEvent.objects.bulk_create([CaseEvent(case=case, action="opened", at=now) for case in cases])
        return {case.transaction_id: case.id for case in cases}

    def open(self) -> CaseQuerySet:
        return self.filter(status=CaseStatus.OPEN)

    def queue(self) -> CaseQuerySet:
        """Open cases, riskiest first."""
        return self.open().select_related("transaction", "assignee").order_by("-transaction__score", "id")

    def overturned(self) -> CaseQuerySet:
        """Legitimate verdicts that a fraud label overturned, latest verdict first."""
        related = self.select_related("transaction", "assignee", "resolved_by")
        return related.filter(overturned=True).order_by("-resolved_at", "-id")


class Case(models.Model):
    """A flagged transaction waiting for, or holding, an analyst's verdict."""

    transaction = models.OneToOneField(Transaction, on_delete=models.CASCADE, related_name="case")
    status = models.CharField(max_length=12, choices=CaseStatus.choices, default=CaseStatus.OPEN)
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
        indexes = [models.Index(fields=["status", "-opened_at"], name="case_status_opened")]

    def __str__(self) -> str:
        return f"Case {self.id} ({self.get_status_display()})"

    @property
    def is_open(self) -> bool:
        return self.status == CaseStatus.OPEN


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
