"""Allow and block lists: who may put what on them, the entries in force held in memory, and how they override the
model's decision.

Every change to the lists goes through `add_entry`, `end_entry` or `remove_entry`, from the desk and the admin
alike: each checks the role, writes the audit record and makes this process use the change at once (the others
within `_Lists.ttl`).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone

from scoring.announce import broadcaster
from scoring.classifier import Scored
from scoring.models import Case, CaseEvent, Decision, ListEntity, ListEntry, ListKind
from scoring.models.access import ListAction, ListEntryEvent
from scoring.refreshed import Refreshed
from scoring.results import case_event
from scoring.roles import can_review, is_lead, require_lead
from scoring.schemas import TransactionIn

log = logging.getLogger(__name__)
ANALYST_MAX_DAYS = 90  # an analyst's block runs out within this; what stays longer is a lead's decision
DEFAULT_DAYS = 30  # the expiry the desk offers first
LISTED = "listed"  # the case event saying that a card or merchant of the case was put on a list from its page
REASON_MAX_LENGTH = ListEntry._meta.get_field("reason").max_length
VALUE_MAX_LENGTH = ListEntry._meta.get_field("value").max_length


class _Lists(Refreshed):
    """Allow/block entries held in memory, reloaded every few seconds: no query per request."""

    ttl = 5.0

    def __init__(self) -> None:
        super().__init__(seconds=lambda: self.ttl)
        self._entries: dict[tuple[str, str], ListEntry] = {}

    def entries(self) -> dict[tuple[str, str], ListEntry]:
        self.look()
        return self._entries

    def _refresh(self) -> None:
        self._entries = {(e.entity, e.value): e for e in ListEntry.objects.in_force()}

    def reset(self) -> None:
        self.expire()


lists = _Lists()


def apply_lists(items: list[TransactionIn], scored: list[Scored]) -> list[Scored]:
    """Force `block` or `approve` for listed cards and merchants; the list entry becomes the first reason."""
    entries = lists.entries()
    if not entries:
        return scored
    out = []
    for item, s in zip(items, scored, strict=True):
        entry = entries.get(("card", item.card_id)) or entries.get(("merchant", item.merchant_id))
        if entry is None:
            out.append(s)
            continue
        decision = Decision.BLOCK if entry.kind == ListKind.BLOCK else Decision.APPROVE
        reason = {"feature": f"{entry.kind}_list_{entry.entity}", "contribution": 0.0}
        out.append(replace(s, decision=decision, reasons=[reason, *s.reasons[:2]]))  # rules' hits kept
    return out


def in_force_for(*, entity: str, value: str) -> ListEntry | None:
    """The entry that decides for this card or merchant now, if any."""
    return ListEntry.objects.in_force().select_related("created_by").filter(entity=entity, value=value).first()


# --- changes -----------------------------------------------------------------------------------------


class ListConflict(Exception):
    """The card or merchant has an entry in force already, which only a lead may replace."""


def check_entry(*, user: AbstractBaseUser, kind: str, expires_at: datetime | None) -> None:
    """Refuse what `user` may not put on a list: allow entries are leads' only, and an analyst's block runs out
    within ANALYST_MAX_DAYS (a lead's may be open-ended). The admin's form asks this too, to answer in the form."""
    if not can_review(user):
        raise PermissionDenied("Only analysts and leads change the lists. Ask a lead for access.")
    if kind not in ListKind.values:
        raise ValueError(f"{kind!r} is not a list: choose block or allow")
    lead = is_lead(user)
    if kind == ListKind.ALLOW and not lead:
        raise PermissionDenied("Only a lead may add allow entries: they approve a card or merchant whatever its score.")
    now = timezone.now()
    if expires_at is not None and expires_at <= now:
        raise ValueError("the expiry must be in the future")
    if not lead and (expires_at is None or expires_at > now + timedelta(days=ANALYST_MAX_DAYS)):
        raise ValueError(f"an analyst's block must run out within {ANALYST_MAX_DAYS} days: choose an expiry")


def add_entry(
    *,
    user: AbstractBaseUser,
    kind: str,
    entity: str,
    value: str,
    reason: str,
    expires_at: datetime | None,
    case_id: int | None = None,
) -> ListEntry:
    """Put a card or merchant on the allow or block list, or replace its entry (leads only, while it is in force).
    From a case page (`case_id`), the case's record says so too."""
    check_entry(user=user, kind=kind, expires_at=expires_at)
    if entity not in ListEntity.values:
        raise ValueError(f"{entity!r} cannot be listed: a card or a merchant can")
    value = _text(value, what="the card or merchant id", limit=VALUE_MAX_LENGTH)
    reason = _text(reason, what="a reason", limit=REASON_MAX_LENGTH)
    with transaction.atomic():
        case = _case_listing(case_id, entity=entity, value=value) if case_id is not None else None
        entry = ListEntry.objects.select_for_update().filter(entity=entity, value=value).first()
        replacing = entry is not None and entry.is_in_force
        if entry is not None and replacing and not is_lead(user):
            raise ListConflict(f"{entity} {value} is on the {entry_in_words(entry)}: only a lead may change that entry")
        entry = entry or ListEntry(entity=entity, value=value)
        entry.kind, entry.reason, entry.expires_at = kind, reason, expires_at
        entry.created_by, entry.created_at = user, timezone.now()
        try:
            with transaction.atomic():  # a savepoint: a refused insert leaves the outer transaction usable
                entry.save()
        except IntegrityError:  # someone listed it between our look and our insert
            raise ListConflict(f"{entity} {value} was put on a list a moment ago: look again") from None
        _record(entry, action=ListAction.CHANGED if replacing else ListAction.ADDED, user=user, case=case)
    return entry


def end_entry(entry_id: int, *, user: AbstractBaseUser) -> ListEntry:
    """A lead ends an entry now: its expiry becomes this moment, and the entry stays on the record."""
    require_lead(user, doing="end a list entry")
    with transaction.atomic():
        entry = ListEntry.objects.select_for_update().get(pk=entry_id)
        if entry.is_in_force:
            entry.expires_at = timezone.now()
            entry.save(update_fields=["expires_at"])
            _record(entry, action=ListAction.ENDED, user=user)
    return entry


def remove_entry(entry_id: int, *, user: AbstractBaseUser) -> None:
    """A lead removes an entry; its record keeps what it said."""
    require_lead(user, doing="remove a list entry")
    with transaction.atomic():
        entry = ListEntry.objects.select_for_update().filter(pk=entry_id).first()
        if entry is None:
            return
        _record(entry, action=ListAction.REMOVED, user=user)
        entry.delete()


def entry_in_words(entry: ListEntry | ListEntryEvent) -> str:
    """What an entry says, for records and refusals: 'block list until 2031-01-01 12:00 UTC (stolen card)'."""
    until = f" until {entry.expires_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if entry.expires_at else " with no expiry"
    reason = f" ({entry.reason})" if entry.reason else ""
    return f"{entry.kind} list{until}{reason}"


def _record(entry: ListEntry, *, action: str, user: AbstractBaseUser, case: Case | None = None) -> None:
    ListEntryEvent.objects.create(
        action=action,
        kind=entry.kind,
        entity=entry.entity,
        value=entry.value,
        reason=entry.reason,
        expires_at=entry.expires_at,
        actor=user,
        case=case,
    )
    if case is not None:
        note = f"{entry.entity} {entry.value} on the {entry_in_words(entry)}"
        CaseEvent.objects.create(case=case, actor=user, action=LISTED, note=note)
        broadcaster().case_changed_on_commit(case_event(case))
    # After the commit: a reload before it would hold the old entries for a whole TTL.
    transaction.on_commit(lists.reset)
    said = f"{entry.entity} {entry.value} {action} on the {entry_in_words(entry)} by {user.get_username()}"
    fields = {"list_action": action, "list": entry.kind, "entity": entry.entity, "value": entry.value}
    fields |= {"actor": user.get_username(), "case_id": case.id if case is not None else None}
    transaction.on_commit(lambda: log.info("list entry: %s", said, extra=fields))


def _case_listing(case_id: int, *, entity: str, value: str) -> Case:
    """The case a listing is made from: its card, or a merchant of one of its alerts, is what may be listed."""
    case = Case.objects.select_related("assignee", "resolved_by").get(pk=case_id)
    ours = case.card_id == value if entity == ListEntity.CARD else case.alerts.filter(merchant_id=value).exists()
    if not ours:
        raise ValueError(f"{entity} {value} is not part of case {case_id}")
    return case


def _text(value: str, *, what: str, limit: int) -> str:
    value = (value or "").strip()
    if not value:
        raise ValueError(f"{what} is required")
    if len(value) > limit:
        raise ValueError(f"{what} is longer than {limit} characters")
    return value
