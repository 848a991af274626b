"""The two roles: analysts review cases; leads (and superusers) also manage models, lists and API keys.

A logged-in account in neither group may reach nothing but a page that says so: the desk, its socket and the
admin all ask `can_review` (or `is_lead`) before anything else.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied

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


def _groups(user: Any) -> frozenset[str]:
    # Kept on the user object: a page asks several times (view, templates, admin), the database once.
    names = getattr(user, "_role_groups", None)
    if names is None:
        names = frozenset(user.groups.values_list("name", flat=True))
        user._role_groups = names
    return names


def is_lead(user: Any) -> bool:
    """Leads (and superusers) manage models, lists and keys, reopen cases and take over others' cases."""
    if not (user.is_authenticated and user.is_active):
        return False
    return user.is_superuser or LEADS in _groups(user)


def require_lead(user: Any, *, doing: str) -> None:
    """PermissionDenied unless `user` is a lead, saying who may `doing`. None is a management command's change: its
    operator holds the shell, which is more than a lead."""
    if user is not None and not is_lead(user):
        raise PermissionDenied(f"Only a lead may {doing}: ask a lead.")


def can_review(user: Any) -> bool:
    """Analysts and leads: the dashboards, the socket and every case action."""
    return is_lead(user) or (user.is_authenticated and user.is_active and ANALYSTS in _groups(user))


def make_analyst(user: Any) -> None:
    """Give a user the analyst role: the dashboard, and the case and transaction admins."""
    user.is_staff = True  # Django's "may log in to the admin"; what they may do there is the group's
    user.save(update_fields=["is_staff"])
    user.groups.add(Group.objects.get(name=ANALYSTS))
    user.__dict__.pop("_role_groups", None)


def make_lead(user: Any) -> None:
    """Give a user the lead role: everything an analyst does, and models, thresholds, lists and API keys."""
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    user.groups.add(Group.objects.get(name=LEADS))
    user.__dict__.pop("_role_groups", None)


def ensure_user(username: str, *, password: str, lead: bool = False) -> None:
    """Create the user with `password` unless one of that name exists: an analyst, or with `lead` a superuser."""
    users = get_user_model().objects
    if users.filter(username=username).exists():
        return
    if lead:
        users.create_superuser(username, password=password)
    else:
        make_analyst(users.create_user(username, password=password))
