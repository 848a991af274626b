"""Every change to a review case: claim, release, resolve, reopen, notes, idle claims lapsing, and what the payment
side's labels do.

The dashboard, the admin and the labels API all come here, so the same rules hold whichever way a change
arrives: each function checks the role, writes the audit event and schedules the push to every dashboard
for after the commit.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from scoring import labels, webhooks
from scoring import webhook_payloads as payloads
from scoring.announce import broadcaster
from scoring.models import Case, CaseEvent, CaseStatus, EventType, LabelSource, ReasonCode
from scoring.results import case_event
from scoring.roles import can_review, is_lead, require_lead

log = logging.getLogger(__name__)

# Audit actions besides "opened" (scoring) and the verdicts, which are named by the case's status.
CLAIMED = "claimed"
RELEASED = "released"
TAKEOVER = "takeover"  # a lead took a case that someone else held
REOPENED = "reopened"
NOTE = "note"
OVERTURNED = "overturned"
LABEL = "label"  # the payment side labeled one alert of a case with several, without settling it
CHARGEBACK_FEED = "chargeback feed"  # who settles a case when the payment side's label arrives first
LAPSED = "lapsed"  # a claim returned to the queue: its holder did nothing on the case for CLAIM_TIMEOUT_MINUTES
CLAIM_TIMEOUT = "claim timeout"  # who returns an idle claim's case to the queue
NOTE_MAX_LENGTH = 2000


class CaseConflict(Exception):
    """The change is not possible in the case's current state (someone else has it, or it is closed)."""


def claim(case_id: int, *, user: AbstractBaseUser) -> Case:
    """Take an open case; one that another analyst holds only a lead may take over (audited as such)."""
    _require_reviewer(user)
    with transaction.atomic():
        case = _open_case(case_id)
        if case.assignee_id == user.pk:
            return case
        _take_over(case, user=user)
        case.assignee, case.assignee_active_at = user, timezone.now()
        case.save(update_fields=["assignee", "assignee_active_at"])
        return _changed(case, actor=user, action=CLAIMED)


def release(case_id: int, *, user: AbstractBaseUser) -> Case:
    """Give a claimed case back to the queue (its holder, or a lead taking it over)."""
    _require_reviewer(user)
    with transaction.atomic():
        case = _open_case(case_id)
        if case.assignee_id is None:
            return case
        _take_over(case, user=user)
        case.assignee = None
        case.save(update_fields=["assignee"])
        return _changed(case, actor=user, action=RELEASED)


def resolve(
    case_id: int,
    *,
    user: AbstractBaseUser,
    is_fraud: bool,
    note: str = "",
    reason: str | None = None,
    labels_by_id: dict[int, bool] | None = None,
) -> Case:
    """Close a case as confirmed fraud or legitimate, for `reason` (a reason code's code); every alert gets the
    verdict as its label, except those the analyst labeled otherwise in `labels_by_id` ({transaction id: fraud?})."""
    _require_reviewer(user)
    with transaction.atomic():
        case = _open_case(case_id)
        case.reason = _reason(reason, is_fraud=is_fraud)
        exceptions = labels_by_id or {}
        alerts = list(case.alerts.order_by("id"))
        if unknown := set(exceptions) - {tx.id for tx in alerts}:
            raise ValueError(f"transaction(s) {sorted(unknown)} are not alerts of case {case_id}")
        _take_over(case, user=user)
        _settle(case, is_fraud=is_fraud, by=user, note=note)
        for tx in alerts:
            label = exceptions.get(tx.id, is_fraud)
            labels.apply_label(tx, is_fraud=label, at=case.resolved_at, source=LabelSource.ANALYST)
        webhooks.record(EventType.CASE_RESOLVED, lambda: payloads.resolved(case))
        return _changed(case, actor=user, action=case.status, note=_verdict_note(case, note, exceptions, alerts))


def reopen(case_id: int, *, user: AbstractBaseUser, reason: str) -> Case:
    """A lead opens a resolved case again, with a reason; it goes back to the queue, unclaimed. The verdict
    stays on the audit trail and the transaction keeps its label until the case is resolved again."""
    require_lead(user, doing="reopen a case")
    reason = _text(reason, what="a reason")
    with transaction.atomic():
        case = _locked(case_id)
        if case.is_open:
            raise CaseConflict(f"case {case_id} is open")
        if Case.objects.open().filter(card_id=case.card_id).exists():
            raise CaseConflict(f"card {case.card_id} has an open case already: work on that one")
        case.status, case.assignee, case.note, case.overturned = CaseStatus.OPEN, None, "", False
        case.resolved_by, case.resolved_at, case.resolved_via, case.reason = None, None, "", None
        case.save(update_fields=[*_VERDICT_FIELDS, "overturned"])
        return _changed(case, actor=user, action=REOPENED, note=reason)


def add_note(case_id: int, *, user: AbstractBaseUser, text: str) -> Case:
    """Append a note to the case's record, open or resolved; notes are never edited or removed."""
    _require_reviewer(user)
    text = _text(text, what="a note")
    with transaction.atomic():
        case = _locked(case_id)
        if case.is_open and case.assignee_id == user.pk:  # the holder is working on it: the claim stays
            case.assignee_active_at = timezone.now()
            case.save(update_fields=["assignee_active_at"])
        return _changed(case, actor=user, action=NOTE, note=text)


def follow_label(case_id: int, *, is_fraud: bool, external_id: str) -> Case:
    """The payment side's label of one of its alerts reached the case: an open case is settled as the label says
    (by the chargeback feed) when it is fraud or the case's only alert (a legitimate payment among several
    alerts leaves the others to the analyst, noted on the record), and fraud on a case resolved as legitimate
    overturns that verdict without erasing it."""
    with transaction.atomic():
        case = _locked(case_id)
        if case.is_open and not is_fraud and case.alert_count > 1:
            return _changed(case, actor=None, action=LABEL, note=f"{external_id} is legitimate", via=CHARGEBACK_FEED)
        if case.is_open:
            _settle(case, is_fraud=is_fraud, by=None, via=CHARGEBACK_FEED)
            webhooks.record(EventType.CASE_RESOLVED, lambda: payloads.resolved(case))
            return _changed(case, actor=None, action=case.status, via=CHARGEBACK_FEED)
        if is_fraud and case.status == CaseStatus.LEGITIMATE and not case.overturned:
            case.overturned = True
            case.save(update_fields=["overturned"])
            webhooks.record(EventType.CASE_OVERTURNED, lambda: payloads.overturned(case, external_id=external_id))
            return _changed(case, actor=None, action=OVERTURNED, via=CHARGEBACK_FEED)
        return case


def lapse_idle_claims(*, now: datetime | None = None) -> list[int]:
    """Return to the queue every open case whose holder has neither claimed it nor added a note for the last
    CLAIM_TIMEOUT_MINUTES (the desk worker calls this), audited and pushed; the ids of the cases that went back."""
    cutoff = (now or timezone.now()) - claim_timeout()
    lapsed = []
    for case_id in list(_idle_claims(cutoff).values_list("id", flat=True)):
        # One transaction a case: a lock held only for its own change, and its push right after its own commit.
        with transaction.atomic():
            case = _locked(case_id)
            # Looked at again under the lock: the holder may have added a note, or someone claimed, released or
            # resolved it since the query; then the claim is no longer idle and stays.
            if not _idle(case, cutoff=cutoff):
                continue
            note = f"{case.assignee.get_username()} had not acted on it for {settings.CLAIM_TIMEOUT_MINUTES:g} minutes"
            case.assignee = None
            case.save(update_fields=["assignee"])
            _changed(case, actor=None, action=LAPSED, note=note, via=CLAIM_TIMEOUT)
        lapsed.append(case_id)
    return lapsed


def claim_timeout() -> timedelta:
    """How long a claim lasts without its holder acting on the case (settings.CLAIM_TIMEOUT_MINUTES)."""
    return timedelta(minutes=settings.CLAIM_TIMEOUT_MINUTES)


def claim_lapses_at(case: Case) -> datetime | None:
    """When the case's claim returns it to the queue unless its holder adds a note (or resolves it); None for an
    unclaimed or resolved case."""
    if not case.is_open or case.assignee_id is None:
        return None
    return _active_since(case) + claim_timeout()


# --- the rules every change shares -----------------------------------------------------------------

_VERDICT_FIELDS = ["status", "assignee", "resolved_by", "resolved_at", "resolved_via", "note", "reason"]


def _require_reviewer(user: AbstractBaseUser) -> None:
    if not can_review(user):
        raise PermissionDenied("Only analysts and leads work on cases. Ask a lead for access.")


def _text(value: str, *, what: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError(f"{what} is required")
    return value[:NOTE_MAX_LENGTH]


def _reason(code: str | None, *, is_fraud: bool) -> ReasonCode | None:
    """The active reason code `code`, which must go with the verdict; None for none."""
    if not code:
        return None
    reason = ReasonCode.objects.filter(code=code, is_active=True).first()
    if reason is None:
        raise ValueError(f"{code!r} is not a reason code in use")
    if reason.verdict and reason.verdict != (CaseStatus.FRAUD if is_fraud else CaseStatus.LEGITIMATE):
        raise ValueError(f"{reason.label!r} is a reason for a {reason.verdict} verdict")
    return reason


def _verdict_note(case: Case, note: str, exceptions: dict[int, bool], alerts: list) -> str:
    """The verdict's record in words: its reason (a reopened case loses it, the record keeps it), the analyst's note,
    and which alerts got a label other than the verdict."""
    names = {tx.id: tx.external_id for tx in alerts}
    told = [
        f"{names[tx_id]} labeled {'fraud' if fraud else 'legitimate'}" for tx_id, fraud in sorted(exceptions.items())
    ]
    reason = [f"reason: {case.reason.label}"] if case.reason else []
    return "; ".join([*reason, *([note] if note else []), *told])


def _locked(case_id: int) -> Case:
    # select_for_update: two analysts clicking at once are serialised, the second sees the first's change.
    return (
        Case.objects.select_for_update(of=("self",)).select_related("assignee", "resolved_by", "reason").get(pk=case_id)
    )


def _open_case(case_id: int) -> Case:
    case = _locked(case_id)
    if not case.is_open:
        raise CaseConflict(f"case {case_id} is already resolved")
    return case


def _take_over(case: Case, *, user: AbstractBaseUser) -> None:
    """Refuse a case that someone else holds, unless a lead takes it over: that goes on the record first."""
    holder = case.assignee
    if holder is None or holder.pk == user.pk:
        return
    if not is_lead(user):
        raise CaseConflict(f"case {case.id} is claimed by {holder.get_username()}")
    CaseEvent.objects.create(case=case, actor=user, action=TAKEOVER, note=f"from {holder.get_username()}")


def _settle(case: Case, *, is_fraud: bool, by: AbstractBaseUser | None, note: str = "", via: str = "") -> None:
    case.status = CaseStatus.FRAUD if is_fraud else CaseStatus.LEGITIMATE
    case.assignee = by or case.assignee
    case.resolved_by, case.resolved_at, case.resolved_via, case.note = by, timezone.now(), via, note
    case.save(update_fields=_VERDICT_FIELDS)


def _active_since(case: Case) -> datetime:
    # A claim made before the desk recorded its holder's activity counts from the case's opening.
    return case.assignee_active_at or case.opened_at


def _idle(case: Case, *, cutoff: datetime) -> bool:
    return case.is_open and case.assignee_id is not None and _active_since(case) < cutoff


def _idle_claims(cutoff: datetime) -> QuerySet[Case]:
    claimed = Case.objects.open().filter(assignee__isnull=False)
    return claimed.alias(active=Coalesce("assignee_active_at", "opened_at")).filter(active__lt=cutoff).order_by("id")


def _changed(case: Case, *, actor: AbstractBaseUser | None, action: str, note: str = "", via: str = "") -> Case:
    CaseEvent.objects.create(case=case, actor=actor, action=action, note=note, via=via)
    broadcaster().case_changed_on_commit(case_event(case))
    who = actor.get_username() if actor is not None else via
    fields = {"case_id": case.id, "action": action, "actor": who, "case_status": case.status}
    transaction.on_commit(lambda: log.info("case %d: %s by %s", case.id, action, who, extra=fields))
    return case
