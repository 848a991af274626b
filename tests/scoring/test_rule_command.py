"""`manage.py rule`: the rule book's functions from the shell."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from scoring.models import Rule

CONDITION = 'amount > 500.0 && country != "PL"'


def rule(*args: str) -> str:
    out = StringIO()
    call_command("rule", *args, stdout=out)
    return out.getvalue()


def test_rule_add_saves_a_draft_made_by_the_command(db):
    assert rule("add", "big-abroad", "--when", CONDITION, "--action", "review", "--priority", "20").strip() == (
        "big-abroad: v1, draft"
    )

    saved = Rule.objects.get()
    assert (saved.condition, saved.action, saved.priority, saved.author) == (CONDITION, "review", 20, None)


def test_rule_add_with_a_status_publishes_with_its_backtest(db):
    rule("add", "big", "--when", "amount > 1.0", "--action", "block", "--status", "shadow")

    saved = Rule.objects.get()
    assert (saved.status, saved.version) == ("shadow", 2)
    assert saved.versions.first().backtest["hits"] == 0


def test_rule_add_refuses_a_condition_showing_where(db):
    with pytest.raises(CommandError) as refused:
        rule("add", "typo", "--when", "amount > 1.0 && amout > 2.0", "--action", "review")

    said = str(refused.value)
    assert "unknown name 'amout'" in said and "line 1, column 17" in said
    assert said.splitlines()[-1] == " " * 4 + " " * 16 + "^"
    assert not Rule.objects.exists()


def test_rule_as_a_user_who_is_no_lead_is_refused(analyst):
    with pytest.raises(CommandError, match="Only a lead"):
        rule("add", "big", "--when", "amount > 1.0", "--action", "block", "--as", "alice")


def test_rule_as_a_lead_records_the_lead(lead):
    rule("add", "big", "--when", "amount > 1.0", "--action", "block", "--as", "lead")

    assert Rule.objects.get().versions.get().actor == lead


def test_rule_edit_publish_disable_and_list(db):
    rule("add", "big", "--when", "amount > 1.0", "--action", "block")
    rule("edit", "big", "--when", "amount > 2.0", "--rename", "bigger")
    assert "bigger: v3, active" in rule("publish", "bigger")
    assert rule("disable", "bigger").strip() == "bigger: v4, disabled"

    (listed,) = json.loads(rule("list", "--json"))
    assert (listed["name"], listed["status"], listed["condition"], listed["author"]) == (
        "bigger",
        "disabled",
        "amount > 2.0",
        "command",
    )
    assert rule("list").startswith("bigger\tdisabled\tblock\t100\tv4\t")


def test_rule_backtest_prints_a_table_or_json(db):
    rule("add", "big", "--when", "amount > 1.0", "--action", "block")

    table = rule("backtest", "big", "--days", "2").splitlines()
    assert table[0].split() == ["day", "hits", "fraud", "legit", "unknown"]
    assert table[3].split() == ["total", "0", "0", "0", "0"]
    assert json.loads(rule("backtest", "big", "--json"))["days"] == 30


def test_rule_names_a_missing_rule(db):
    with pytest.raises(CommandError, match="no rule is named 'nope'"):
        rule("publish", "nope")
