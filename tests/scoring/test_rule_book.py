"""Every change to a rule: leads only, refused per field, a version each, the live rules told after the commit."""

from __future__ import annotations

import logging

import pytest
from django.core.exceptions import PermissionDenied

from scoring import rule_book
from scoring.models import Rule, RuleVersion
from scoring.rule_book import RuleRefused, create_rule, disable_rule, edit_rule, publish_rule

CONDITION = 'amount > 500.0 && country != "PL"'


def draft(user, name: str = "big-abroad", **fields) -> Rule:
    return create_rule(user=user, name=name, condition=fields.pop("condition", CONDITION), action="review", **fields)


def test_create_rule_saves_a_draft_and_its_first_version(lead):
    rule = draft(lead, description=" Large payments abroad ", priority="50")

    assert (rule.status, rule.version, rule.priority, rule.description, rule.author) == (
        "draft",
        1,
        50,
        "Large payments abroad",
        lead,
    )
    (version,) = rule.versions.all()
    assert (version.version, version.change, version.condition, version.actor, version.backtest) == (
        1,
        "created",
        CONDITION,
        lead,
        None,
    )


def test_analysts_may_not_change_rules(analyst, lead):
    rule = draft(lead)

    with pytest.raises(PermissionDenied):
        draft(analyst, name="other")
    for change in (
        lambda: edit_rule(rule.id, user=analyst, priority=1),
        lambda: publish_rule(rule.id, user=analyst),
        lambda: disable_rule(rule.id, user=analyst),
    ):
        with pytest.raises(PermissionDenied):
            change()
    assert Rule.objects.get().version == 1


def test_the_command_without_a_user_may_change_rules_and_is_named_so(db):
    rule = draft(None)

    assert rule.author is None and rule_book.actor_name(None) == "command"


def test_create_rule_refuses_each_wrong_field_at_once(lead):
    with pytest.raises(RuleRefused) as refused:
        create_rule(user=lead, name="has space", condition="amount > ", action="flag", priority="soon")

    assert set(refused.value.errors) == {"name", "condition", "action", "priority"}
    assert refused.value.position == (1, 9)  # where the condition ends, a value expected
    assert not Rule.objects.exists()


def test_create_rule_refuses_an_unknown_name_with_its_position(lead):
    with pytest.raises(RuleRefused) as refused:
        draft(lead, condition="amount > 1.0 &&\n  amout > 2.0")

    assert "unknown name 'amout'" in refused.value.errors["condition"]
    assert refused.value.position == (2, 3)


def test_rule_names_are_unique(lead):
    draft(lead)

    with pytest.raises(RuleRefused) as refused:
        draft(lead)
    assert "exists already" in refused.value.errors["name"]


def test_edit_rule_writes_a_version_with_only_what_changed(lead):
    rule = draft(lead)

    edited = edit_rule(rule.id, user=lead, priority=10, description=None, name="big-abroad")

    assert (edited.version, edited.priority) == (2, 10)
    latest = edited.versions.first()
    assert (latest.version, latest.change, latest.priority) == (2, "edited", 10)
    assert edit_rule(rule.id, user=lead, priority=10).version == 2  # nothing changed: no version


def test_publish_rule_keeps_the_backtest_it_was_published_with(lead):
    rule = draft(lead)

    published = publish_rule(rule.id, user=lead, status="shadow", days=7)

    assert (published.status, published.version) == ("shadow", 2)
    version = published.versions.first()
    assert version.change == "shadowed"
    assert version.backtest["days"] == 7 and version.backtest["condition"] == CONDITION
    assert publish_rule(rule.id, user=lead).versions.first().change == "published"


def test_publish_rule_refuses_a_status_that_is_not_live(lead):
    rule = draft(lead)

    with pytest.raises(RuleRefused) as refused:
        publish_rule(rule.id, user=lead, status="draft")
    assert "status" in refused.value.errors


def test_editing_a_live_rules_condition_keeps_the_new_conditions_backtest(lead):
    rule = publish_rule(draft(lead).id, user=lead)

    edited = edit_rule(rule.id, user=lead, condition="amount > 900.0")

    assert edited.status == "active"
    assert edited.versions.first().backtest["condition"] == "amount > 900.0"


def test_disable_rule_keeps_the_rule_and_its_versions(lead):
    rule = publish_rule(draft(lead).id, user=lead)

    disabled = disable_rule(rule.id, user=lead)

    assert disabled.status == "disabled"
    assert [v.change for v in RuleVersion.objects.filter(rule=rule)] == ["disabled", "published", "created"]
    assert disable_rule(rule.id, user=lead).version == 3  # already disabled: no version


def test_every_change_tells_the_live_rules_after_the_commit(lead, monkeypatch, django_capture_on_commit_callbacks):
    told = []
    monkeypatch.setattr(rule_book.live_rules, "reset", lambda: told.append(1))

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        rule = draft(lead)
        publish_rule(rule.id, user=lead)
        disable_rule(rule.id, user=lead)
    assert told == []
    for callback in callbacks:
        callback()
    assert len(told) == 3


def test_every_change_logs_one_line_with_its_fields(lead, caplog, django_capture_on_commit_callbacks):
    with caplog.at_level(logging.INFO, logger="scoring.rule_book"), django_capture_on_commit_callbacks(execute=True):
        draft(lead)

    (record,) = [r for r in caplog.records if r.name == "scoring.rule_book"]
    assert (record.rule, record.change, record.actor, record.rule_version) == ("big-abroad", "created", "lead", 1)


def test_create_rule_refuses_a_priority_out_of_range(lead):
    with pytest.raises(RuleRefused) as refused:
        draft(lead, priority=10**12)
    assert "between" in refused.value.errors["priority"]


def test_publish_rule_refuses_a_stored_condition_that_no_longer_checks(lead):
    rule = draft(lead)
    Rule.objects.filter(pk=rule.pk).update(condition="amount > 1.0 && gone_feature > 2.0")

    with pytest.raises(RuleRefused) as refused:
        publish_rule(rule.id, user=lead)
    assert "unknown name 'gone_feature'" in refused.value.errors["condition"]
    assert refused.value.position == (1, 17)
    with pytest.raises(RuleRefused) as refused:
        publish_rule(draft(lead, name="other").id, user=lead, days=0)
    assert "days" in refused.value.errors
    assert set(Rule.objects.values_list("status", flat=True)) == {"draft"}


def test_a_name_that_differs_from_another_only_in_case_is_refused(lead):
    draft(lead, name="big-abroad")
    with pytest.raises(RuleRefused) as refused:
        draft(lead, name="Big-Abroad")
    assert refused.value.errors["name"] == "a rule named big-abroad exists already: choose another name"
    assert Rule.objects.count() == 1


def test_a_name_of_digits_alone_is_refused_as_it_would_read_as_an_id(lead):
    with pytest.raises(RuleRefused) as refused:
        draft(lead, name="12")
    assert "not digits alone" in refused.value.errors["name"]
    assert draft(lead, name="rule-12").name == "rule-12"
