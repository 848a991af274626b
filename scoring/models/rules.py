"""Analysts' rules: a condition over a transaction (in CEL, scoring/rules.py) and the action it takes, with every
version kept; and the model versions' changes that are not activations (thresholds, challenger, promotion)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from scoring.models.traffic import Decision


class RuleStatus(models.TextChoices):
    DRAFT = "draft", "Draft"  # being written: runs only in backtests
    SHADOW = "shadow", "Shadow"  # runs on live traffic, records its hits, changes nothing
    ACTIVE = "active", "Active"  # runs on live traffic and its action counts
    DISABLED = "disabled", "Disabled"


class RuleQuerySet(models.QuerySet):
    def live(self) -> RuleQuerySet:
        """The rules every transaction is run through: active and shadow, in priority order."""
        return self.filter(status__in=[RuleStatus.ACTIVE, RuleStatus.SHADOW]).order_by("priority", "name")


class Rule(models.Model):
    """A rule as it stands now; `versions` keeps each state it was in, with who made it and why."""

    name = models.CharField(max_length=80, unique=True, help_text="Letters, digits, '_' and '-'; shown to callers")
    description = models.TextField(blank=True, default="")
    condition = models.TextField(
        help_text='A CEL expression, e.g. amount > 500 && card_count_1h >= 3 && country != "PL"'
    )
    action = models.CharField(max_length=8, choices=Decision.choices)
    priority = models.IntegerField(default=100, help_text="Lower runs first; the strongest action wins")
    status = models.CharField(max_length=8, choices=RuleStatus.choices, default=RuleStatus.DRAFT)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = RuleQuerySet.as_manager()

    class Meta:
        ordering = ["priority", "name"]

    def __str__(self) -> str:
        return f"{self.name} (v{self.version}, {self.status})"


class RuleVersion(models.Model):
    """One state of a rule: a copy of its fields after a change, who made it, and the backtest it was published
    with (for a change to `active` or `shadow`)."""

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    change = models.CharField(max_length=20, help_text="created, edited, published, shadowed, disabled, ...")
    name = models.CharField(max_length=80)
    description = models.TextField(blank=True, default="")
    condition = models.TextField()
    action = models.CharField(max_length=8, choices=Decision.choices)
    priority = models.IntegerField()
    status = models.CharField(max_length=8, choices=RuleStatus.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    at = models.DateTimeField(default=timezone.now)
    backtest = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["rule", "-version"]
        constraints = [models.UniqueConstraint(fields=["rule", "version"], name="rule_version_unique")]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}: {self.change} by {self.actor} at {self.at:%Y-%m-%d %H:%M}"


class ModelChangeKind(models.TextChoices):
    THRESHOLDS = "thresholds", "Thresholds changed"
    CHALLENGER = "challenger", "Made the challenger"
    CHALLENGER_ENDED = "challenger_ended", "No longer the challenger"
    PROMOTED = "promoted", "Promoted from challenger"


class ModelChange(models.Model):
    """The audit trail of a model version's changes besides training: thresholds set, challenger marked or
    unmarked, challenger promoted. `before`/`after`: the fields as they were and became."""

    model_version = models.ForeignKey("scoring.ModelVersion", on_delete=models.CASCADE, related_name="changes")
    kind = models.CharField(max_length=20, choices=ModelChangeKind.choices)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    note = models.TextField(blank=True, default="")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.model_version.version}: {self.get_kind_display()} by {self.actor} at {self.at:%Y-%m-%d %H:%M}"
