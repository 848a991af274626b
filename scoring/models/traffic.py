"""Traffic: transactions as received and scored (and imported history), and the merchants' hourly counts."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

import numpy as np
from django.db import models
from django.db.models.functions import Cast
from django.utils import timezone

from scoring.models.versions import ModelVersion
from scoring.results import answer
from scoring.storage.fields import FeatureValuesField


class Decision(models.TextChoices):
    APPROVE = "approve", "Approve"
    REVIEW = "review", "Review"
    BLOCK = "block", "Block"


class LabelSource(models.TextChoices):
    ANALYST = "analyst", "Analyst"
    CHARGEBACK = "chargeback", "Chargeback"
    IMPORT = "import", "Import"


class Channel(models.TextChoices):
    POS = "pos", "Point of sale"
    ECOM = "ecom", "E-commerce"
    ATM = "atm", "ATM"


def _shortest_float32(value: float) -> float:
    """The shortest decimal that reads back as the same float32 (354.02, not 354.0199890136719)."""
    return float(str(np.float32(value)))


IMPORTED = "imported:"  # model_version of imported history: "imported:<source>"
FEED_LOOKBACK = 100_000  # ids the live feed and a dashboard's resume look back over (see _lately_scored)


class TransactionQuerySet(models.QuerySet):
    def scored(self) -> TransactionQuerySet:
        """Traffic the service scored, without imported history: what the live dashboards show and count.

        Imported rows carry score 0 and `approve` without having been scored; shown live, a fresh import
        (the demo's history ends now) filled the feed with them and the figures with its last 15 minutes.
        """
        return self.exclude(model_version__startswith=IMPORTED)

    def imported(self) -> TransactionQuerySet:
        """Imported history only (the admin's filter)."""
        return self.filter(model_version__startswith=IMPORTED)

    def received_between(self, start: datetime, end: datetime) -> TransactionQuerySet:
        """Scored transactions stored from `start` up to `end` (the dashboards' check for lost pushes)."""
        return self.scored().filter(received_at__gte=start, received_at__lt=end)

    def after_id(self, after_id: int, *, limit: int) -> list[Transaction]:
        """The newest `limit` scored transactions with id > after_id, in id order (dashboard resume)."""
        rows = list(self._lately_scored().filter(id__gt=after_id).order_by("-id")[:limit])
        rows.reverse()
        return rows

    def newest(self, limit: int) -> TransactionQuerySet:
        """The newest `limit` scored transactions (the live feed)."""
        return self._lately_scored().order_by("-id")[:limit]

    def _lately_scored(self) -> TransactionQuerySet:
        """Scored transactions among the newest FEED_LOOKBACK ids.

        Right after a large import and before any traffic, finding the newest scored rows meant reading every
        imported row, in proportion to the history's size. The bound keeps that read to FEED_LOOKBACK rows; with
        no traffic since the import, the feed starts empty.
        """
        top = self.order_by("-id").values_list("id", flat=True).first()
        return self.scored().filter(id__gt=(top or 0) - FEED_LOOKBACK)

    def merchant_figures(self, merchant_id: str, *, now: datetime) -> dict[str, Any]:
        """A merchant's activity by event time: last 24 h and 7 days, flagged share, confirmed frauds."""
        day, week = now - timedelta(days=1), now - timedelta(days=7)
        flagged = ~models.Q(decision=Decision.APPROVE)
        figures = self.filter(merchant_id=merchant_id).aggregate(
            count_24h=models.Count("id", filter=models.Q(timestamp__gte=day)),
            count_7d=models.Count("id", filter=models.Q(timestamp__gte=week)),
            flagged_7d=models.Count("id", filter=models.Q(timestamp__gte=week) & flagged),
            frauds=models.Count("id", filter=models.Q(is_fraud=True)),
            total=models.Count("id"),
        )
        figures["flagged_share_7d"] = figures["flagged_7d"] / figures["count_7d"] if figures["count_7d"] else None
        return figures


class Transaction(models.Model):
    """One scored payment as received; the score and reasons are those given to the caller."""

    external_id = models.CharField(max_length=64)  # unique: see Meta.constraints
    card_id = models.CharField(max_length=64)
    merchant_id = models.CharField(max_length=64)
    # Up to 4 decimals: a currency has as many as ISO 4217 gives it (JPY 0, EUR 2, BHD 3, CLF 4).
    amount = models.DecimalField(max_digits=14, decimal_places=4)
    # The amount as the features read it, converted once when the row is stored: PostgreSQL converts a numeric
    # to float8 through its text (and strtod), and a row is read again for every later transaction of its card
    # within 30 days. Exactly float(amount): both round the decimal correctly.
    amount_float = models.GeneratedField(
        expression=Cast("amount", models.FloatField()), output_field=models.FloatField(), db_persist=True
    )
    currency = models.CharField(max_length=3)
    timestamp = models.DateTimeField(help_text="Event time, as sent by the caller")
    country = models.CharField(max_length=2, blank=True, default="")
    channel = models.CharField(max_length=4, choices=Channel.choices, blank=True, default="")
    mcc = models.CharField(max_length=4, blank=True, default="")

    score = models.FloatField()
    decision = models.CharField(max_length=8, choices=Decision.choices)
    reasons = models.JSONField(default=list)
    features = FeatureValuesField(default=list, help_text="Feature values the model saw, in its feature order")
    model_version = models.CharField(max_length=80)
    received_at = models.DateTimeField(default=timezone.now)
    # The active rules that hit, as the caller was told ([{"name", "action"}]), and the shadow rules that hit
    # (their names): a shadow rule changes nothing, its hits are what its page compares.
    rules = models.JSONField(default=list, blank=True, db_default=models.Value([], models.JSONField()))
    shadow_rules = models.JSONField(default=list, blank=True, db_default=models.Value([], models.JSONField()))
    # The challenger model's score of the same features, beside the champion's; it never decides anything.
    challenger_score = models.FloatField(null=True, blank=True)
    challenger_version = models.CharField(max_length=80, blank=True, default="", db_default="")

    # Ground truth, when known: from a resolved case, the payment side's labels or imported history.
    is_fraud = models.BooleanField(null=True, blank=True)
    labeled_at = models.DateTimeField(null=True, blank=True)
    label_source = models.CharField(max_length=12, choices=LabelSource.choices, blank=True, default="", db_default="")
    # The card's case this flagged transaction opened or joined (an alert of it).
    case = models.ForeignKey(
        "scoring.Case", null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts", db_index=False
    )

    objects = TransactionQuerySet.as_manager()

    class Meta:
        indexes = [
            # Covering: a batch's card histories come from the index alone (PostgreSQL), not from one
            # heap page per history row (a card's rows are scattered among everyone else's).
            models.Index(
                fields=["card_id", "timestamp"], include=["amount_float", "merchant_id"], name="tx_card_history"
            ),
            models.Index(fields=["merchant_id", "timestamp"], name="tx_merchant_time"),
            models.Index(fields=["timestamp"], name="tx_time"),
            models.Index(fields=["decision", "-id"], name="tx_decision_id"),
            models.Index(fields=["received_at"], name="tx_received"),  # the dashboards' last 15 minutes
            # Partial: most transactions are never flagged, and an index entry for each would cost every insert.
            models.Index(fields=["case"], condition=models.Q(case__isnull=False), name="tx_case"),
        ]
        # A constraint rather than unique=True: on PostgreSQL that also builds a second, LIKE-prefix index
        # (varchar_pattern_ops) that nothing here queries and every insert paid for.
        constraints = [models.UniqueConstraint(fields=["external_id"], name="tx_external_id_unique")]

    def __str__(self) -> str:
        return f"{self.external_id} {self.amount} {self.currency} → {self.decision}"

    @property
    def label_origin(self) -> str:
        """Where its label came from: analyst, chargeback or import ("" while unlabeled)."""
        if self.is_fraud is None:
            return ""
        return self.label_source or (LabelSource.IMPORT if self.is_imported else "")

    def result(self, *, case_id: int | None) -> dict[str, Any]:
        """The API's answer for this transaction (201/200 bodies and GET)."""
        return answer(self, self, id=self.id, model_version=self.model_version, case_id=case_id)

    def feature_values(self) -> dict[str, float | None]:
        """The values the model saw, by feature name (None where a value was missing); empty for rows that were
        not scored (imported history) or whose model version is no longer stored."""
        names = self._feature_names
        if names is None or len(names) != len(self.features):
            return {}
        return {name: (None if v != v else _shortest_float32(v)) for name, v in zip(names, self.features, strict=True)}

    @property
    def is_imported(self) -> bool:
        """Imported history: stored with score 0 and `approve`, never scored here."""
        return self.model_version.startswith(IMPORTED)

    @cached_property
    def _feature_names(self) -> list[str] | None:
        if not self.features:
            return None
        return ModelVersion.objects.filter(version=self.model_version).values_list("features", flat=True).first()


class MerchantHour(models.Model):
    """A merchant's transactions and confirmed frauds in one hour: the state its features are read from.

    Kept up to date in the same database transaction as the rows it counts (scoring/aggregates.py), so
    scoring reads a bounded number of rows per merchant, never its whole history, and every server
    process sees the same figures.
    """

    merchant_id = models.CharField(max_length=64)
    hour = models.BigIntegerField(help_text="Hours since the epoch (UTC)")
    count = models.IntegerField(default=0)
    fraud_count = models.IntegerField(default=0)

    class Meta:
        # On PostgreSQL its index also carries count and fraud_count (INCLUDE, migration 0009): window sums read
        # a merchant's hours from the index alone. Not declared here: Django leaves a unique constraint with
        # INCLUDE out altogether on SQLite, which has no such index.
        constraints = [models.UniqueConstraint(fields=["merchant_id", "hour"], name="one_row_per_merchant_hour")]

    def __str__(self) -> str:
        return f"{self.merchant_id} @ hour {self.hour}: {self.count} ({self.fraud_count} fraud)"
