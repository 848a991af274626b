"""Who may call the API (keys) and what is always approved or blocked (lists): what leads manage."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone


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

    @property
    def is_in_force(self) -> bool:
        return self.expires_at is None or self.expires_at > timezone.now()


class ListAction(models.TextChoices):
    ADDED = "added", "Added"
    CHANGED = "changed", "Changed"  # an entry in force replaced (another kind, reason or expiry)
    ENDED = "ended", "Ended early"  # its expiry set to the moment it was ended
    REMOVED = "removed", "Removed"


class ListEntryEvent(models.Model):
    """The lists' audit trail: who added, changed, ended or removed which entry, and when. The entry's fields are
    copied, not linked: a removed entry's record must outlive it."""

    action = models.CharField(max_length=8, choices=ListAction.choices)
    kind = models.CharField(max_length=5, choices=ListKind.choices)
    entity = models.CharField(max_length=8, choices=ListEntity.choices)
    value = models.CharField(max_length=64)
    reason = models.CharField(max_length=200, blank=True, default="")
    expires_at = models.DateTimeField(null=True, blank=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    # The case page it was done from, if any (that case's record says so too).
    case = models.ForeignKey("scoring.Case", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["entity", "value", "at"], name="list_event_entity")]

    def __str__(self) -> str:
        return f"{self.action} {self.kind} {self.entity} {self.value} by {self.actor} at {self.at:%Y-%m-%d %H:%M}"
