"""Rules from the shell, for automation: `rule add NAME --when EXPR --action ACTION [--status S] [--priority N]
[--description TEXT]`, `edit NAME ...`, `publish NAME [--shadow]`, `disable NAME`, `list [--json]` and
`backtest NAME [--days N] [--json]`. Every change goes through scoring/rule_book.py, as the pages' do; it is
recorded as made by "command", or with `--as USERNAME` by that user (who must be a lead)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring import rule_book
from scoring.backtest import DEFAULT_DAYS, Backtest, backtest
from scoring.models import Decision, Rule, RuleStatus
from scoring.results import money
from scoring.rule_book import RuleRefused
from scoring.rules import RuleError


class Command(BaseCommand):
    help = "Add, edit, publish, disable, list and backtest rules."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        add = actions.add_parser("add", help="a new rule: a draft, or published at once with --status")
        add.add_argument("name")
        add.add_argument("--when", required=True, help="the condition, e.g. 'amount > 500.0 && country != \"PL\"'")
        add.add_argument("--action", required=True, dest="rule_action", choices=Decision.values)
        add.add_argument("--status", default=RuleStatus.DRAFT, choices=[RuleStatus.DRAFT, *rule_book.PUBLISHED])
        edit = actions.add_parser("edit", help="change a rule's fields (its status stays)")
        edit.add_argument("name")
        edit.add_argument("--rename", help="a new name")
        edit.add_argument("--when", help="a new condition")
        edit.add_argument("--action", dest="rule_action", choices=Decision.values)
        for changer in (add, edit):
            changer.add_argument("--priority", help="lower runs first (100 by default)")
            changer.add_argument("--description")
        publish = actions.add_parser("publish", help="make a rule active (or shadow), with its backtest kept")
        publish.add_argument("name")
        publish.add_argument("--shadow", action="store_true", help="record its hits, change nothing")
        actions.add_parser("disable", help="take a rule off live traffic").add_argument("name")
        for changer in (add, edit, publish, actions.choices["disable"]):
            changer.add_argument("--as", dest="username", help="the lead making the change (default: command)")
        for tester in (add, publish):
            tester.add_argument("--days", type=int, default=DEFAULT_DAYS, help="the backtest kept on publishing")
        listing = actions.add_parser("list", help="every rule, live ones first")
        listing.add_argument("--json", action="store_true")
        test = actions.add_parser("backtest", help="what a rule would have hit in the last days' stored traffic")
        test.add_argument("name")
        test.add_argument("--days", type=int, default=DEFAULT_DAYS)
        test.add_argument("--json", action="store_true")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            getattr(self, f"do_{action}")(**options)
        except RuleRefused as refused:
            raise CommandError(_refusal(refused, source=options.get("when"))) from None
        except RuleError as refused:
            raise CommandError(f"the condition: {refused}") from None
        except Rule.DoesNotExist:
            raise CommandError(f"no rule is named {options['name']!r}: `rule list` shows them") from None
        except (PermissionDenied, ValueError) as refused:
            raise CommandError(str(refused)) from None

    def do_add(self, *, name: str, when: str, rule_action: str, status: str, username: str | None, **o: Any) -> None:
        user = _user(username)
        fields = {k: o[k] for k in ("priority", "description") if o[k] is not None}
        rule = rule_book.create_rule(user=user, name=name, condition=when, action=rule_action, **fields)
        if status != RuleStatus.DRAFT:
            rule = rule_book.publish_rule(rule.id, user=user, status=status, days=o["days"])
        self.stdout.write(f"{rule.name}: v{rule.version}, {rule.status}")

    def do_edit(self, *, name: str, rename: str | None, when: str | None, rule_action: str | None, **o: Any) -> None:
        rule = rule_book.edit_rule(
            rule_book.rule_named(name).id,
            user=_user(o["username"]),
            name=rename,
            condition=when,
            action=rule_action,
            description=o["description"],
            priority=o["priority"],
        )
        self.stdout.write(f"{rule.name}: v{rule.version}, {rule.status}")

    def do_publish(self, *, name: str, shadow: bool, days: int, username: str | None, **_: Any) -> None:
        status = RuleStatus.SHADOW if shadow else RuleStatus.ACTIVE
        rule = rule_book.publish_rule(rule_book.rule_named(name).id, user=_user(username), status=status, days=days)
        tested = rule.versions.first().backtest
        self.stdout.write(
            f"{rule.name}: v{rule.version}, {rule.status} (backtest: {tested['hits']} hits in {days} days)"
        )

    def do_disable(self, *, name: str, username: str | None, **_: Any) -> None:
        rule = rule_book.disable_rule(rule_book.rule_named(name).id, user=_user(username))
        self.stdout.write(f"{rule.name}: v{rule.version}, {rule.status}")

    def do_list(self, *, json: bool, **_: Any) -> None:
        rules = sorted(Rule.objects.select_related("author"), key=_listing_order)
        if json:
            self.stdout.write(_json([_rule_dict(rule) for rule in rules]))
            return
        for rule in rules:
            row = f"{rule.name}\t{rule.status}\t{rule.action}\t{rule.priority}\tv{rule.version}\t{rule.condition}"
            self.stdout.write(row)

    def do_backtest(self, *, name: str, days: int, json: bool, **_: Any) -> None:
        rule = rule_book.rule_named(name)
        result = backtest(rule.condition, days=days, rule_name=rule.name)
        self.stdout.write(_json(result.as_dict()) if json else "\n".join(backtest_table(result)))


def backtest_table(result: Backtest) -> list[str]:
    """The backtest in words: a line per day, the totals, then what the hits overlap with."""
    lines = [f"{'day':<12}{'hits':>8}{'fraud':>8}{'legit':>8}{'unknown':>9}"]
    for d in result.per_day:
        lines.append(f"{d.day.isoformat():<12}{d.hits:>8}{d.fraud:>8}{d.legit:>8}{d.unknown:>9}")
    lines.append(f"{'total':<12}{result.hits:>8}{result.fraud:>8}{result.legit:>8}{result.unknown:>9}")
    caught = ", ".join(f"{money(Decimal(str(a)), c)} {c}" for c, a in result.fraud_amount.items()) or "none"
    lines += [
        f"transactions examined: {result.transactions} ({result.imported} imported history, read without score "
        "or features)",
        f"fraud caught: {caught}",
        f"extra cases: {result.extra_cases} (cards hit none of whose transactions was flagged)",
        f"flagged already: {result.overlap_model} of the hits (review or block as decided then)",
    ]
    lines += [f"also hit by active rule {n}: {count}" for n, count in result.overlap_rules.items()]
    return lines


def _refusal(refused: RuleRefused, *, source: str | None) -> str:
    """Every field's refusal, and for the condition the line it is on with a caret under the position."""
    lines = [f"{field}: {message}" for field, message in refused.errors.items()]
    if refused.position and source:
        line, column = refused.position
        shown = source.strip().splitlines()[line - 1] if line <= len(source.strip().splitlines()) else ""
        lines += [f"    {shown}", f"    {' ' * (column - 1)}^"]
    return "\n".join(lines)


def _user(username: str | None) -> Any:
    if username is None:
        return None
    try:
        return get_user_model().objects.get(username=username)
    except get_user_model().DoesNotExist:
        raise CommandError(f"no user is named {username!r}") from None


def _listing_order(rule: Rule) -> tuple[int, int, str]:
    live = {RuleStatus.ACTIVE: 0, RuleStatus.SHADOW: 1, RuleStatus.DRAFT: 2}
    return live.get(rule.status, 3), rule.priority, rule.name


def _rule_dict(rule: Rule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "status": rule.status,
        "action": rule.action,
        "priority": rule.priority,
        "condition": rule.condition,
        "description": rule.description,
        "version": rule.version,
        "author": rule_book.actor_name(rule.author),
        "updated_at": rule.updated_at.isoformat(),
    }


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)
