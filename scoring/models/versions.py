"""Model versions: the trained models, one of them active."""

from __future__ import annotations

import logging
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from scoring.features import FEATURES
from scoring.models.webhooks import EventType

log = logging.getLogger(__name__)


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
    # The challenger scores every live transaction in the shadow of the active version (its score stored beside
    # the active one's) until a lead promotes it or ends it.
    is_challenger = models.BooleanField(default=False)
    # Bumped with every change a serving process must pick up without a new version (thresholds).
    updated_at = models.DateTimeField(default=timezone.now)

    objects = ModelVersionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=models.Q(is_active=True), name="one_active_model"),
            models.UniqueConstraint(
                fields=["is_challenger"], condition=models.Q(is_challenger=True), name="one_challenger_model"
            ),
            models.CheckConstraint(
                condition=~models.Q(is_active=True, is_challenger=True), name="champion_not_challenger"
            ),
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
        """Make this the one active version; every server process picks it up within seconds. The challenger is
        promoted instead (scoring/challenger.py: it stops being the challenger, audited)."""
        if self.is_challenger:
            raise ValueError(f"model {self.version} is the challenger: promote it, which makes it the active version")
        if list(self.features) != FEATURES:
            raise ValueError(
                f"model {self.version} expects features that this code does not compute "
                f"(trained on {len(self.features)}, the code has {len(FEATURES)}); train a new model"
            )
        from scoring.classifier import check_serves  # classifier builds on this module

        check_serves(self)  # a version that fails here would fail every ingest request once active
        from scoring import webhook_payloads, webhooks  # both build on the models

        with transaction.atomic():
            others = ModelVersion.objects.filter(is_active=True).exclude(pk=self.pk)
            previous = others.values_list("version", flat=True).first()
            others.update(is_active=False)
            self.is_active = True
            self.activated_at = timezone.now()
            webhooks.record(EventType.MODEL_ACTIVATED, lambda: webhook_payloads.activated(self, previous=previous))
            self.save(update_fields=["is_active", "activated_at"])
            fields = {"model_version": self.version}
            transaction.on_commit(lambda: log.info("model %s activated", self.version, extra=fields))
