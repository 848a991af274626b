"""What the service stores: transactions with their scores, review cases, model versions and API keys."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

import numpy as np
from django.conf import settings
from django.db import models, transaction
from django.db.models.functions import Cast
from django.utils import timezone

from scoring.features import FEATURES
from scoring.results import answer
from scoring.storage.fields import FeatureValuesField


class Decision(models.TextChoices):
    APPROVE = "approve", "Approve"
    REVIEW = "review", "Review"
    BLOCK = "block", "Block"


class Channel(models.TextChoices):
    POS = "pos", "Point of sale"
    ECOM = "ecom", "E-commerce"
    ATM = "atm", "ATM"


def hash_key(raw_key: str) -> str:
    """SHA-256 of an API key: keys are long random tokens, so a fast hash is enough."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


class ApiKeyQuerySet(models.QuerySet):
    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)

    def check_key(self, raw_key: str) -> ApiKey | None:
        """The active key matching `raw_key`, or None."""
        if not raw_key:
            return None
        return self.active().filter(key_hash=hash_key(raw_key)).first()


class ApiKey(models.Model):
    """A caller's credential; only its hash is stored, the key itself is shown once."""

    name = models.CharField(max_length=100)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False, help_text="First characters, to tell keys apart")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(cls, *, name: str) -> tuple[ApiKey, str]:
        """Create a key; returns the row and the raw key, which is never stored."""
        raw = "fk_" + secrets.token_urlsafe(32)
        key = cls.objects.create(name=name, key_hash=hash_key(raw), prefix=raw[:10])
        return key, raw

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ActiveModelDeletion(Exception):
    """The active model version cannot be deleted: ingest would have nothing to score with."""

    def __init__(self, version: str) -> None:
        super().__init__(f"model {version} is active and cannot be deleted; activate another version first")


class ModelVersionQuerySet(models.QuerySet):
    def active(self) -> ModelVersion | None:
        return self.filter(is_active=True).order_by("-activated_at", "-id").first()

    def delete(self) -> tuple[int, dict[str, int]]:
        """Delete the selected versions unless the active one is among them."""
        active = self.filter(is_active=True).values_list("version", flat=True).first()
        if active is not None:
            raise ActiveModelDeletion(active)
        return super().delete()


class ModelVersion(models.Model):
    """A trained XGBoost model (XGBoost's own UBJSON format, stored in the row so every process sees it)."""

    version = models.CharField(max_length=80, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    artifact = models.BinaryField(help_text="XGBoost Booster saved as UBJSON")
    features = models.JSONField(help_text="Feature names, in the order the model expects")
    params = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    data_range = models.JSONField(default=dict, blank=True)
    review_threshold = models.FloatField(default=0.5)
    block_threshold = models.FloatField(default=0.9)
    is_active = models.BooleanField(default=False)
    activated_at = models.DateTimeField(null=True, blank=True)

    objects = ModelVersionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=models.Q(is_active=True), name="one_active_model"),
            models.CheckConstraint(
                condition=models.Q(review_threshold__lte=models.F("block_threshold")),
                name="review_threshold_not_above_block",
            ),
        ]

    def __str__(self) -> str:
        return self.version + (" (active)" if self.is_active else "")

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        """Delete this version unless it is the active one (as stored: another process may have activated it)."""
        if self.is_active or ModelVersion.objects.filter(pk=self.pk, is_active=True).exists():
            raise ActiveModelDeletion(self.version)
        return super().delete(*args, **kwargs)

    def activate(self) -> None:
        """Make this the one active version; every server process picks it up within seconds."""
        if list(self.features) != FEATURES:
            raise ValueError(
                f"model {self.version} expects features that this code does not compute "
                f"(trained on {len(self.features)}, the code has {len(FEATURES)}); train a new model"
            )
        from scoring.classifier import check_serves  # classifier builds on this module

        check_serves(self)  # a version that fails here would fail every ingest request once active
        with transaction.atomic():
            ModelVersion.objects.filter(is_active=True).exclude(pk=self.pk).update(is_active=False)
            self.is_active = True
            self.activated_at = timezone.now()
            self.save(update_fields=["is_active", "activated_at"])


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

    # Ground truth, when known: from a resolved case, the payment side's labels or imported history.
    is_fraud = models.BooleanField(null=True, blank=True)
    labeled_at = models.DateTimeField(null=True, blank=True)

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
        ]
        # A constraint rather than unique=True: on PostgreSQL that also builds a second, LIKE-prefix index
        # (varchar_pattern_ops) that nothing here queries and every insert paid for.
        constraints = [models.UniqueConstraint(fields=["external_id"], name="tx_external_id_unique")]

    def __str__(self) -> str:
        return f"{self.external_id} {self.amount} {self.currency} → {self.decision}"

    @property
    def case_id(self) -> int | None:
        """Its case's id when it was flagged (a query unless loaded with `select_related("case")`)."""
        case = getattr(self, "case", None)
        return case.id if case else None

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


class ListKind(models.TextChoices):
    ALLOW = "allow", "Allow (always approve)"
    BLOCK = "block", "Block (always block)"


class ListEntity(models.TextChoices):
    CARD = "card", "Card"
    MERCHANT = "merchant", "Merchant"


class ListEntryQuerySet(models.QuerySet):
    def in_force(self) -> ListEntryQuerySet:
        now = timezone.now()
        return self.filter(models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now))


class ListEntry(models.Model):
    """A card or merchant that is always approved or always blocked, whatever the score."""

    kind = models.CharField(max_length=5, choices=ListKind.choices)
    entity = models.CharField(max_length=8, choices=ListEntity.choices)
    value = models.CharField(max_length=64, help_text="The card_id or merchant_id")
    reason = models.CharField(max_length=200)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)

    objects = ListEntryQuerySet.as_manager()

    class Meta:
        verbose_name = "allow/block list entry"
        verbose_name_plural = "allow/block list"
        constraints = [models.UniqueConstraint(fields=["entity", "value"], name="one_list_entry_per_entity")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.entity} {self.value}"


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
