"""Live rules in the ingest pipeline: what they read, how their actions stand against the model and the lists,
shadow rules, failures at run time, and each process picking up a change."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from scoring import ingest, live_rules
from scoring.models import ListEntry, Rule, RuleStatus, Transaction
from scoring.rules import RuleSet, check
from tests.scoring.conftest import T0, item, stored

pytestmark = pytest.mark.django_db


def rule(
    name: str, condition: str, *, action: str = "block", status: str = RuleStatus.ACTIVE, priority: int = 100
) -> Rule:
    return Rule.objects.create(
        name=name, condition=check(condition).source, action=action, status=status, priority=priority
    )


@pytest.fixture
def approving_model(model_version):
    """The active model approves everything: whatever is flagged, a rule or a list flagged."""
    model_version.review_threshold = model_version.block_threshold = 1.01
    model_version.save()
    return model_version


@pytest.fixture
def blocking_model(model_version):
    """The active model blocks everything."""
    model_version.review_threshold = model_version.block_threshold = 0.0
    model_version.save()
    return model_version


def scored(*items):
    outcomes, _ = ingest.store(list(items))
    return [o.result for o in outcomes]


def test_an_active_rule_that_hits_replaces_the_models_decision_and_opens_a_case(approving_model):
    rule("big_ecom", 'amount > 500.0 && channel == "ecom"', action="review")

    big, small = scored(item(external_id="big", amount="900.00"), item(external_id="small", amount="20.00"))

    assert (big["decision"], big["rules"]) == ("review", [{"name": "big_ecom", "action": "review"}])
    assert big["case_id"] is not None
    assert (small["decision"], small["rules"]) == ("approve", [])


def test_the_answer_keeps_the_models_shap_reasons_when_a_rule_decides(approving_model):
    rule("big", "amount > 500.0")

    (with_rule,) = scored(item(external_id="a", card_id="c-a", amount="900.00"))
    Rule.objects.all().delete()
    live_rules.live_rules.reset()
    (without,) = scored(item(external_id="b", card_id="c-b", amount="900.00"))

    assert with_rule["reasons"] == without["reasons"]
    assert len(with_rule["reasons"]) == 3 and all(not r["feature"].startswith("rule") for r in with_rule["reasons"])
    assert with_rule["score"] == without["score"]  # a rule decides; the model's score is its own


def test_an_approve_rule_overrides_a_model_that_would_block(blocking_model):
    rule("trusted_merchant", 'merchant_id == "merch-trusted"', action="approve")

    trusted, other = scored(item(external_id="t", merchant_id="merch-trusted"), item(external_id="o"))

    assert (trusted["decision"], trusted["case_id"]) == ("approve", None)
    assert other["decision"] == "block"


def test_the_strongest_action_of_the_rules_that_hit_wins_and_all_are_named_in_priority_order(approving_model):
    rule("b_blocks", "amount > 1.0", action="block", priority=20)
    rule("a_reviews", "amount > 1.0", action="review", priority=10)
    rule("c_approves", "amount > 1.0", action="approve", priority=5)
    rule("d_misses", "amount > 1e9", action="block", priority=1)

    (result,) = scored(item(amount="50.00"))

    assert result["decision"] == "block"
    assert [r["name"] for r in result["rules"]] == ["c_approves", "a_reviews", "b_blocks"]


def test_a_shadow_rule_records_its_hit_and_changes_nothing(approving_model):
    rule("watch_big", "amount > 500.0", status=RuleStatus.SHADOW)
    rule("draft_rule", "amount > 500.0", status=RuleStatus.DRAFT)
    rule("disabled_rule", "amount > 500.0", status=RuleStatus.DISABLED)

    (result,) = scored(item(amount="900.00"))

    assert (result["decision"], result["rules"], result["case_id"]) == ("approve", [], None)
    tx = Transaction.objects.get(pk=result["id"])
    assert (tx.rules, tx.shadow_rules) == ([], ["watch_big"])


def test_a_block_list_has_the_last_word_over_an_approve_rule(blocking_model):
    rule("approve_all", "amount > 0.0", action="approve")
    ListEntry.objects.create(kind="block", entity="card", value="card-bad", reason="stolen")

    listed, other = scored(item(external_id="l", card_id="card-bad"), item(external_id="o"))

    assert listed["decision"] == "block"
    assert listed["reasons"][0]["feature"] == "block_list_card"
    assert listed["rules"] == [{"name": "approve_all", "action": "approve"}]  # it hit; the list decided
    assert other["decision"] == "approve"


def test_an_allow_list_has_the_last_word_over_a_block_rule(approving_model):
    rule("block_all", "amount > 0.0", action="block")
    ListEntry.objects.create(kind="allow", entity="merchant", value="merch-vip", reason="known good")

    (result,) = scored(item(merchant_id="merch-vip"))

    assert (result["decision"], result["case_id"]) == ("approve", None)
    assert result["rules"] == [{"name": "block_all", "action": "block"}]


@pytest.mark.parametrize(
    ("condition", "hits"),
    [
        ("amount == 42.5", True),  # the field, not the float32 feature
        ('currency == "EUR" && country == "NL" && mcc == "5411"', True),
        ('channel == "ecom"', True),  # the field as text, not the feature's code
        ('channel == "pos"', False),
        ('card_id == "card-1" && merchant_id == "merch-1"', True),
        ("hour == 12", True),  # T0 is 12:00 UTC
        ("card_count_1h == 1.0 && card_count_1d == 2.0", True),  # one stored 30 min before, one 5 h before
        ("seconds_since_card_prev == 1800.0", True),
        ("amount_zscore_card_30d > 0.0 || amount_zscore_card_30d <= 0.0", True),  # a number (two stored)
        ("merchant_hours_since_last_fraud_30d >= 0.0", False),  # missing (no fraud): NaN, which no comparison holds for
        ("score >= 0.0 && score <= 1.0", True),
        ("card_blocked", True),
        ("card_allowed || merchant_blocked || merchant_allowed", False),
    ],
)
def test_a_condition_reads_the_transactions_fields_features_score_and_lists(model_version, condition, hits):
    stored("earlier-1", at=T0 - timedelta(minutes=30), amount="30.00")
    stored("earlier-2", at=T0 - timedelta(hours=5), amount="20.00")
    ListEntry.objects.create(kind="block", entity="card", value="card-1", reason="for the test")
    rule("under_test", condition, status=RuleStatus.SHADOW)

    (result,) = scored(item(amount="42.50"))

    assert Transaction.objects.get(pk=result["id"]).shadow_rules == (["under_test"] if hits else [])


def test_a_rule_that_fails_on_a_row_does_not_hit_and_is_logged_once_per_refresh(approving_model, caplog, settings):
    settings.RULES_REFRESH_SECONDS = 3600
    rule("divides_by_zero", "hour / (hour - 12) > 0", action="block", priority=1)
    rule("still_runs", "amount > 1.0", action="review", priority=2)

    with caplog.at_level(logging.WARNING, logger="scoring.live_rules"):
        first = scored(*(item(external_id=f"x-{i}") for i in range(3)))
        second = scored(item(external_id="y-1"))

    assert {r["decision"] for r in first + second} == {"review"}
    assert all(r["rules"] == [{"name": "still_runs", "action": "review"}] for r in first + second)
    failures = [r for r in caplog.records if "divides_by_zero" in r.getMessage()]
    assert len(failures) == 1


def test_a_missing_feature_value_is_no_failure_to_log(approving_model, caplog):
    rule("needs_fraud_history", "merchant_hours_since_last_fraud_30d < 24.0")
    rule("still_runs", "amount > 1.0", action="review")

    with caplog.at_level(logging.WARNING, logger="scoring.live_rules"):
        (result,) = scored(item())

    assert result["rules"] == [{"name": "still_runs", "action": "review"}]
    assert not [r for r in caplog.records if "needs_fraud_history" in r.getMessage()]


def test_a_rule_reading_a_missing_value_holds_only_where_the_rest_of_it_decides():
    nan = float("nan")
    rules = RuleSet(
        [
            check("amount_vs_card_avg_30d > 3.0"),
            check("amount > 500.0 || amount_vs_card_avg_30d > 3.0"),
            check("amount > 500.0 && amount_vs_card_avg_30d > 3.0"),
            check("amount > 500.0"),
        ]
    )
    columns = {"amount": [900.0, 900.0, 10.0], "amount_vs_card_avg_30d": [nan, 5.0, nan]}
    failures: dict[int, str] = {}

    results = rules.run(columns, 3, failures=failures)

    assert results == [[False, True, False, True], [True, True, True, True], [False, False, False, False]]
    assert failures == {}


def test_a_failure_is_logged_again_in_the_next_refresh_period(approving_model, caplog, settings):
    settings.RULES_REFRESH_SECONDS = 0
    rule("divides_by_zero", "hour / (hour - 12) > 0")

    with caplog.at_level(logging.WARNING, logger="scoring.live_rules"):
        scored(item(external_id="x-1"))
        scored(item(external_id="x-2"))

    assert len([r for r in caplog.records if "divides_by_zero" in r.getMessage()]) == 2


def test_a_live_rule_whose_condition_no_longer_checks_is_left_out_and_the_others_run(approving_model, caplog):
    Rule.objects.create(name="stale", condition="no_such_feature > 1.0", action="block", status=RuleStatus.ACTIVE)
    rule("fine", "amount > 1.0", action="review")

    with caplog.at_level(logging.ERROR, logger="scoring.live_rules"):
        (result,) = scored(item())

    assert (result["decision"], result["rules"]) == ("review", [{"name": "fine", "action": "review"}])
    assert any("stale" in r.getMessage() for r in caplog.records)


def test_with_no_live_rule_a_batch_runs_no_rule_at_all(model_version, monkeypatch):
    rule("a_draft", "amount > 1.0", status=RuleStatus.DRAFT)

    def refuse(*args, **kwargs):
        raise AssertionError("rules ran with none live")

    monkeypatch.setattr(RuleSet, "run", refuse)

    (result,) = scored(item())

    assert result["rules"] == []


def test_a_published_rule_is_used_after_the_refresh_period_without_a_restart(approving_model, settings):
    settings.RULES_REFRESH_SECONDS = 3600
    (before,) = scored(item(external_id="before"))
    published = rule("late", "amount > 1.0", action="review")
    (cached,) = scored(item(external_id="cached"))  # within the period: the process has not looked yet
    settings.RULES_REFRESH_SECONDS = 0
    (after,) = scored(item(external_id="after"))
    published.condition, published.version = "amount > 1e9", 2
    published.save()
    (edited,) = scored(item(external_id="edited"))

    assert [r["decision"] for r in (before, cached, after, edited)] == ["approve", "approve", "review", "approve"]


def test_reset_makes_this_process_use_a_change_at_once(approving_model, settings):
    settings.RULES_REFRESH_SECONDS = 3600
    scored(item(external_id="warm"))
    rule("now", "amount > 1.0", action="review")
    live_rules.live_rules.reset()

    (result,) = scored(item(external_id="at-once"))

    assert result["decision"] == "review"


def test_the_rules_are_compiled_again_only_when_one_of_them_changes(approving_model, settings, monkeypatch):
    settings.RULES_REFRESH_SECONDS = 0
    compiled = []
    real = live_rules._compile
    monkeypatch.setattr(live_rules, "_compile", lambda rows: compiled.append(len(rows)) or real(rows))
    r = rule("one", "amount > 1.0")

    scored(item(external_id="a"))
    scored(item(external_id="b"))
    r.status, r.version = RuleStatus.SHADOW, 2
    r.save()
    scored(item(external_id="c"))

    assert compiled == [1, 1]


def test_rule_hits_are_counted_by_rule_and_status(approving_model):
    rule("counted_active", "amount > 1.0", action="review")
    rule("counted_shadow", "amount > 100.0", status=RuleStatus.SHADOW)

    def count(name: str, status: str) -> float:
        return REGISTRY.get_sample_value("fraud_rule_hits_total", {"rule": name, "status": status}) or 0.0

    before = (count("counted_active", "active"), count("counted_shadow", "shadow"))
    scored(item(external_id="a", amount="50.00"), item(external_id="b", amount="500.00"))
    scored(item(external_id="a", amount="50.00"))  # a retry: stored already, not counted again

    assert count("counted_active", "active") - before[0] == 2
    assert count("counted_shadow", "shadow") - before[1] == 1
