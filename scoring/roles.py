"""The two roles: analysts review cases; leads (and superusers) also manage models, lists and API keys."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

ANALYSTS = "Analysts"
LEADS = "Leads"
ANALYST_PERMISSIONS = ["view_transaction", "view_case", "change_case", "view_caseevent"]


def ensure_roles(**_: Any) -> None:
    """Create or update the role groups (run after every migrate)."""
    scoring_perms = Permission.objects.filter(content_type__app_label="scoring")
    analysts, _ = Group.objects.get_or_create(name=ANALYSTS)
    analysts.permissions.set(scoring_perms.filter(codename__in=ANALYST_PERMISSIONS))
    leads, _ = Group.objects.get_or_create(name=LEADS)
    leads.permissions.set(scoring_perms)


LEAD_PERMISSION = "scoring.change_modelversion"


def is_lead(user: Any) -> bool:
    """Leads (and superusers) may manage models, lists and keys, and take over another analyst's case."""
    return bool(user.is_authenticated and user.has_perm(LEAD_PERMISSION))


def make_analyst(user: Any) -> None:
    """Give a user the analyst role: the dashboard, and the case and transaction admins."""
    user.is_staff = True  # Django's "may log in to the admin"; what they may do there is the group's
    user.save(update_fields=["is_staff"])
    user.groups.add(Group.objects.get(name=ANALYSTS))


def ensure_user(username: str, *, password: str, lead: bool = False) -> None:
    """Create the user with `password` unless one of that name exists: an analyst, or with `lead` a superuser."""
    users = get_user_model().objects
    if users.filter(username=username).exists():
        return
    if lead:
        users.create_superuser(username, password=password)
    else:
        make_analyst(users.create_user(username, password=password))
