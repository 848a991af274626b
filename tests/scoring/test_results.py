"""Wording: what analysts read about a transaction's reasons and values."""

from __future__ import annotations

import math

import pytest

from scoring.results import describe, reason_summary, shown


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (354.02, "354.02"),
        (13.0, "13"),
        (3.1855669, "3.1856"),
        (1e9, "1000000000"),
        (0.00001, "0"),
        (None, "—"),
        (math.nan, "—"),
    ],
)
def test_a_value_is_shown_without_trailing_zeros_and_missing_as_a_dash(value, text):
    assert shown(value) == text


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("merchant_count_7d", 1.0, "1 transaction at this merchant in the last 7d"),
        ("merchant_count_7d", 3.0, "3 transactions at this merchant in the last 7d"),
        ("card_count_1h", 1.0, "1 transaction on this card in the last 1h"),
        ("card_count_1h", 0.0, "0 transactions on this card in the last 1h"),
        ("merchant_fraud_count_30d", 1.0, "merchant had 1 confirmed fraud in the 30d before the label delay"),
        ("merchant_fraud_count_30d", 2.0, "merchant had 2 confirmed frauds in the 30d before the label delay"),
    ],
)
def test_a_reason_names_a_count_in_the_right_number(name, value, text):
    assert describe(name, value) == text


@pytest.mark.parametrize(
    ("value", "ratio"), [(0.0213, "0.021"), (0.5, "0.5"), (0.999, "1"), (1.0, "1.0"), (12.34, "12.3"), (250.0, "250.0")]
)
def test_an_amount_far_below_the_cards_average_keeps_its_digits(value, ratio):
    assert describe("amount_vs_card_avg_30d", value) == f"amount is {ratio}× this card's 30-day average"


def test_the_feed_summary_names_the_two_strongest_pushes_towards_fraud_and_any_list():
    reasons = [
        {"feature": "card_count_1h", "contribution": 1.2},
        {"feature": "amount", "contribution": -0.4},
        {"feature": "block_list_card", "contribution": 0.0},
        {"feature": "card_sum_1d", "contribution": 0.3},
    ]
    assert reason_summary(reasons) == "card count 1h · card on block list"


def test_the_feed_summary_names_every_rule_that_hit_before_the_features():
    reasons = [{"feature": "card_count_1h", "contribution": 0.9}, {"feature": "amount", "contribution": 0.5}]
    one = [{"name": "night_atm", "action": "block"}]
    two = [*one, {"name": "many_merchants", "action": "review"}]

    assert reason_summary(reasons, rules=one) == "rule night_atm (block) · card count 1h"
    assert reason_summary(reasons, rules=two) == "rule night_atm (block) · rule many_merchants (review)"


def test_a_reason_of_a_name_without_a_window_is_worded_too():
    assert describe("amount", 12.5) == "amount is 12.50"


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("amount_vs_card_median_30d", 4.0, "amount is 4.0× this card's 30-day median"),
        ("amount_vs_card_max_30d", 0.5, "amount is 0.5× this card's largest amount in 30 days"),
        ("amount_zscore_card_30d", 3.25, "amount is +3.2 standard deviations from this card's 30-day average"),
        (
            "merchant_hours_since_last_fraud_30d",
            3.0,
            "3.0 h since this merchant's latest confirmed fraud (past the label delay)",
        ),
        (
            "merchant_hours_since_first_fraud_30d",
            math.nan,
            "no confirmed fraud at this merchant in 30 days before the label delay",
        ),
    ],
)
def test_every_feature_has_words_of_its_own(name, value, text):
    assert describe(name, value) == text


def test_no_feature_is_worded_as_a_bare_name_and_value():
    from scoring.features import FEATURES

    assert [name for name in FEATURES if describe(name, 1.5) == f"{name} = 1.5"] == []
