"""Analysts' rules: every change to one goes through these functions, from the rules pages, the `rule` command
and the admin alike.

Each checks the role (leads only; `user=None` is the `rule` command run by whoever has the server's shell, shown
as "command"), refuses what cannot be saved with a message per field (RuleRefused), writes the rule and a
RuleVersion copying its fields in one transaction, logs one line, and after the commit makes the pipeline use
the rules as they now stand (`rules_changed`).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from scoring.backtest import DEFAULT_DAYS, backtest
from scoring.live_rules import live_rules
from scoring.models import Decision
from scoring.models.rules import Rule, RuleStatus, RuleVersion
from scoring.roles import require_lead
from scoring.rules import RuleError, check

log = logging.getLogger(__name__)
COMMAND = "command"  # the actor's name for a change made by the `rule` command without --as
# Not digits alone: pages name a rule by its name or its id, and "12" would be both.
NAME = re.compile(r"(?![0-9]+$)[A-Za-z0-9_-]{1,80}")
PUBLISHED = {RuleStatus.ACTIVE: "published", RuleStatus.SHADOW: "shadowed"}  # the version's change word
PRIORITY_LIMIT = 1_000_000  # well inside the column's integer range
EDITABLE = ("name", "condition", "action", "description", "priority")


class RuleRefused(ValueError):
    """A rule that cannot be saved as asked: `errors` says, per field, what is wrong (and `position` where in
    the condition, as (line, column), when the condition is what is wrong)."""

    def __init__(self, errors: dict[str, str], *, position: tuple[int, int] | None = None) -> None:
        self.errors, self.position = errors, position
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))


def rules_changed() -> None:
    """Make this process use the rules as committed now (the others reload within RULES_REFRESH_SECONDS)."""
    live_rules.reset()


def create_rule(
    *,
    user: AbstractBaseUser | None,
    name: str,
    condition: str,
    action: str,
    description: str = "",
    priority: int | str = 100,
) -> Rule:
    """A new rule, as a draft: it runs only in backtests until it is published."""
    require_lead(user, doing="create a rule")
    fields = _checked(name=name, condition=condition, action=action, description=description, priority=priority)
    now = timezone.now()
    rule = Rule(**fields, status=RuleStatus.DRAFT, author=_actor(user), version=1, created_at=now, updated_at=now)
    with transaction.atomic():
        _save(rule, fields=["name"])
        _record(rule, change="created", user=user, changed=list(fields))
    return rule


def edit_rule(
    rule_id: int,
    *,
    user: AbstractBaseUser | None,
    name: str | None = None,
    condition: str | None = None,
    action: str | None = None,
    description: str | None = None,
    priority: int | str | None = None,
) -> Rule:
    """Change a rule's fields (None: unchanged), keeping its status: an edited live rule runs as edited. Where a
    live rule's condition changes, the new version keeps the backtest of the new condition."""
    require_lead(user, doing="edit a rule")
    asked = {"name": name, "condition": condition, "action": action, "description": description, "priority": priority}
    asked = {field: value for field, value in asked.items() if value is not None}
    seen = Rule.objects.get(pk=rule_id)
    fields = _checked(**({field: getattr(seen, field) for field in EDITABLE} | asked), rule_id=seen.id)
    changed = [field for field in EDITABLE if fields[field] != getattr(seen, field)]
    if not changed:
        return seen
    tested = None
    if "condition" in changed and seen.status in PUBLISHED:  # outside the transaction, as publish_rule's
        tested = backtest(fields["condition"], rule_name=fields["name"]).as_dict()
    with transaction.atomic():
        rule = Rule.objects.select_for_update().get(pk=rule_id)
        if rule.version != seen.version:
            raise RuleRefused({"rule": "someone changed this rule a moment ago: look at it again, then edit"})
        for field in changed:
            setattr(rule, field, fields[field])
        rule.version += 1
        rule.updated_at = timezone.now()
        _save(rule, fields=[*changed, "version", "updated_at"])
        _record(rule, change="edited", user=user, changed=changed, backtest=tested)
    return rule


def publish_rule(
    rule_id: int, *, user: AbstractBaseUser | None, status: str = RuleStatus.ACTIVE, days: int = DEFAULT_DAYS
) -> Rule:
    """Put a rule on live traffic, `active` (its action counts) or `shadow` (its hits are recorded, nothing
    changes). Its backtest over the last `days` days is run now and kept on the new version: what it was
    published with."""
    require_lead(user, doing="publish a rule")
    if status not in PUBLISHED:
        raise RuleRefused({"status": f"{status!r} cannot be published: choose active or shadow"})
    seen = Rule.objects.get(pk=rule_id)
    # Outside the transaction: the backtest reads for seconds, and holding the rule's row meanwhile would stop
    # every other change to it.
    try:
        tested = backtest(seen.condition, days=days, rule_name=seen.name).as_dict()
    except RuleError as exc:  # saved when it checked, e.g. before a feature it reads was dropped
        raise RuleRefused({"condition": str(exc)}, position=_position(exc)) from None
    except ValueError as exc:  # the number of days
        raise RuleRefused({"days": str(exc)}) from None
    with transaction.atomic():
        rule = Rule.objects.select_for_update().get(pk=rule_id)
        if rule.version != seen.version:
            raise RuleRefused({"rule": "the rule was changed while its backtest ran: look at it again, then publish"})
        return _set_status(rule, status=status, change=PUBLISHED[status], user=user, backtest=tested)


def disable_rule(rule_id: int, *, user: AbstractBaseUser | None) -> Rule:
    """Take a rule off live traffic; it stays, with its versions, and may be published again."""
    require_lead(user, doing="disable a rule")
    with transaction.atomic():
        rule = Rule.objects.select_for_update().get(pk=rule_id)
        if rule.status == RuleStatus.DISABLED:
            return rule
        return _set_status(rule, status=RuleStatus.DISABLED, change="disabled", user=user)


def rule_named(name: str) -> Rule:
    """The rule of that name (Rule.DoesNotExist otherwise): the command names rules, the pages use ids."""
    return Rule.objects.get(name=name)


def actor_name(user: AbstractBaseUser | None) -> str:
    """Who made a change, in words: the user's name, or "command" for the `rule` command without --as."""
    return user.get_username() if user is not None else COMMAND


# --- the pieces --------------------------------------------------------------------------------------------------


def _set_status(
    rule: Rule, *, status: str, change: str, user: AbstractBaseUser | None, backtest: dict[str, Any] | None = None
) -> Rule:
    rule.status, rule.version, rule.updated_at = status, rule.version + 1, timezone.now()
    rule.save(update_fields=["status", "version", "updated_at"])
    _record(rule, change=change, user=user, changed=["status"], backtest=backtest)
    return rule


def _checked(
    *, name: str, condition: str, action: str, description: str, priority: int | str, rule_id: int | None = None
) -> dict[str, Any]:
    """The fields as they will be saved, or RuleRefused naming every field that is wrong."""
    errors: dict[str, str] = {}
    position = None
    name = (name or "").strip()
    if not NAME.fullmatch(name):
        errors["name"] = "use 1 to 80 letters, digits, '_' or '-', not digits alone (no spaces): callers are told it"
    elif taken := Rule.objects.filter(name__iexact=name).exclude(pk=rule_id).values_list("name", flat=True).first():
        # Case-blind: two names a reader cannot tell apart on a case page would also count each other's hits.
        errors["name"] = f"a rule named {taken} exists already: choose another name"
    if action not in Decision.values:
        errors["action"] = f"{action!r} is not an action: choose block, review or approve"
    try:
        priority = int(str(priority).strip())
    except ValueError:
        errors["priority"] = f"{priority!r} is not a whole number: lower numbers run first (100 by default)"
    else:
        if not -PRIORITY_LIMIT <= priority <= PRIORITY_LIMIT:
            errors["priority"] = f"choose a priority between -{PRIORITY_LIMIT:,} and {PRIORITY_LIMIT:,}"
    try:
        condition = check(condition or "").source
    except RuleError as exc:
        errors["condition"], position = str(exc), _position(exc)
    if errors:
        raise RuleRefused(errors, position=position)
    return {
        "name": name,
        "condition": condition,
        "action": action,
        "description": (description or "").strip(),
        "priority": priority,
    }


def _position(error: RuleError) -> tuple[int, int] | None:
    return (error.line, error.column) if error.line is not None and error.column is not None else None


def _save(rule: Rule, *, fields: list[str]) -> None:
    try:
        with transaction.atomic():  # a savepoint: a refused write leaves the outer transaction usable
            if rule.pk is None:
                rule.save()
            else:
                rule.save(update_fields=fields)
    except IntegrityError:  # another rule took the name between our look and our write
        raise RuleRefused({"name": f"a rule named {rule.name} was saved a moment ago: choose another name"}) from None


def _record(
    rule: Rule,
    *,
    change: str,
    user: AbstractBaseUser | None,
    changed: list[str],
    backtest: dict[str, Any] | None = None,
) -> RuleVersion:
    version = RuleVersion.objects.create(
        rule=rule,
        version=rule.version,
        change=change,
        name=rule.name,
        description=rule.description,
        condition=rule.condition,
        action=rule.action,
        priority=rule.priority,
        status=rule.status,
        actor=_actor(user),
        at=rule.updated_at,
        backtest=backtest,
    )
    # After the commit: a reload before it would read the rules as they were.
    transaction.on_commit(rules_changed)
    who = actor_name(user)
    fields = {"rule": rule.name, "rule_id": rule.id, "rule_version": rule.version, "change": change}
    fields |= {"changed": changed, "rule_status": rule.status, "actor": who}
    if backtest is not None:
        fields["backtest_hits"] = backtest["hits"]
    said = f"{rule.name} v{rule.version} {change} ({', '.join(changed)}) by {who}"
    transaction.on_commit(lambda: log.info("rule: %s", said, extra=fields))
    return version


def _actor(user: AbstractBaseUser | None) -> AbstractBaseUser | None:
    return user if user is not None and user.is_authenticated else None
