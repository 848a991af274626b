"""What analysts do to review cases: claim, release, resolve. Each change is audited and pushed live."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from scoring import labels
from scoring.announce import broadcaster
from scoring.models import Case, CaseEvent, CaseStatus
from scoring.results import case_event
from scoring.roles import is_lead


class CaseConflict(Exception):
    """The change is not possible in the case's current state (someone else has it, or it is closed)."""


def _locked(case_id: int) -> Case:
    # select_for_update: two analysts clicking at once are serialised, the second sees the first's change.
    return Case.objects.select_for_update(of=("self",)).select_related("transaction", "assignee").get(pk=case_id)


def _changed(case: Case, *, actor: AbstractBaseUser, action: str, note: str = "") -> Case:
    CaseEvent.objects.create(case=case, actor=actor, action=action, note=note)
    broadcaster().case_changed_on_commit(case_event(case))
    return case


def claim(case_id: int, *, user: AbstractBaseUser) -> Case:
    """Take an open case; refused if another analyst holds it."""
    with transaction.atomic():
        case = _locked(case_id)
        if not case.is_open:
            raise CaseConflict(f"case {case_id} is already resolved")
        if case.assignee_id not in (None, user.pk):
            raise CaseConflict(f"case {case_id} is claimed by {case.assignee.get_username()}")
        case.assignee = user
        case.save(update_fields=["assignee"])
        return _changed(case, actor=user, action="claimed")


def release(case_id: int, *, user: AbstractBaseUser) -> Case:
    """Give a claimed case back to the queue (its holder, or a lead)."""
    with transaction.atomic():
        case = _locked(case_id)
        if case.assignee_id is None:
            return case
        if case.assignee_id != user.pk and not is_lead(user):
            raise CaseConflict(f"case {case_id} is claimed by {case.assignee.get_username()}")
        case.assignee = None
        case.save(update_fields=["assignee"])
        return _changed(case, actor=user, action="released")


def resolve(case_id: int, *, user: AbstractBaseUser, is_fraud: bool, note: str = "") -> Case:
    """Close a case as confirmed fraud or legitimate; its transaction gets the label."""
    with transaction.atomic():
        case = _locked(case_id)
        if not case.is_open:
            raise CaseConflict(f"case {case_id} is already resolved")
        if case.assignee_id not in (None, user.pk) and not is_lead(user):
            raise CaseConflict(f"case {case_id} is claimed by {case.assignee.get_username()}")
        now = timezone.now()
        case.status = CaseStatus.FRAUD if is_fraud else CaseStatus.LEGITIMATE
        case.assignee = case.assignee or user
        case.resolved_by, case.resolved_at, case.note = user, now, note
        case.save(update_fields=["status", "assignee", "resolved_by", "resolved_at", "note"])
        labels.apply_label(case.transaction, is_fraud=is_fraud, at=now)
        return _changed(case, actor=user, action=case.status, note=note)
