"""A rule's backtest against a small history counted by hand."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from decimal import Decimal

import numpy as np
import pytest

from scoring.backtest import backtest
from scoring.features import FEATURES
from scoring.lists import lists
from scoring.models import ListEntry, ModelVersion, Rule, Transaction
from scoring.rules import RuleError

NOW = datetime(2026, 11, 10, 15, 0, tzinfo=UTC)
CONDITION = "amount > 100.0 && card_count_1h >= 2.0"
REVERSED = list(reversed(FEATURES))  # a model version that saw its features in another order


def features(version: str, **values: float) -> list[float]:
    names = FEATURES if version == "v-a" else REVERSED
    return [values.get(name, math.nan) for name in names]


def tx(n: int, at: str, *, amount: str, count: float = math.nan, **fields) -> Transaction:
    version = fields.pop("version", "v-a")
    return Transaction.objects.create(
        external_id=f"t{n}",
        card_id=fields.pop("card", "c1"),
        merchant_id="m1",
        amount=Decimal(amount),
        currency=fields.pop("currency", "EUR"),
        timestamp=datetime.fromisoformat(at).replace(tzinfo=UTC),
        score=fields.pop("score", 0.2),
        decision=fields.pop("decision", "approve"),
        model_version=version,
        features=[]
        if version.startswith("imported:")
        else features(version, amount=float(amount), card_count_1h=float(count)),
        **fields,
    )


@pytest.fixture
def history(db) -> None:
    """Hits (amount > 100 and at least 2 of the card's transactions in the hour) marked *; the window of 3 days
    before NOW is 2026-11-08 00:00 up to NOW."""
    ModelVersion.objects.create(version="v-a", artifact=b"", features=FEATURES)
    ModelVersion.objects.create(version="v-b", artifact=b"", features=REVERSED)
    tx(1, "2026-11-10 10:00", amount="200", count=3, is_fraud=True)  # *
    tx(2, "2026-11-10 11:00", amount="150.50", count=2, version="v-b", card="c2", currency="PLN", decision="review")
    tx(3, "2026-11-09 09:00", amount="300", count=1, is_fraud=False)
    tx(
        4,
        "2026-11-09 23:59",
        amount="120.25",
        count=5,
        version="v-b",
        card="c3",
        currency="USD",
        decision="block",
        is_fraud=True,
    )  # *
    tx(5, "2026-11-08 00:30", amount="500", count=4, is_fraud=False)  # *
    tx(6, "2026-11-07 23:00", amount="500", count=4, card="c5", decision="review")  # before the window
    tx(7, "2026-11-08 12:00", amount="999", version="imported:csv", card="c6", is_fraud=True, score=0.0)
    tx(8, "2026-11-10 14:00", amount="50", count=2, card="c4", decision="review")
    tx(9, "2026-11-10 16:00", amount="500", count=4, card="c7")  # after NOW
    tx(10, "2026-11-09 12:00", amount="130", count=2, card="c5")  # *


def test_backtest_counts_hits_per_day_by_label(history):
    result = backtest(CONDITION, days=3, now=NOW)

    assert [(d.day, d.hits, d.fraud, d.legit, d.unknown) for d in result.per_day] == [
        (date(2026, 11, 8), 1, 0, 1, 0),
        (date(2026, 11, 9), 2, 1, 0, 1),
        (date(2026, 11, 10), 2, 1, 0, 1),
    ]
    assert (result.hits, result.fraud, result.legit, result.unknown) == (5, 2, 1, 2)
    assert (result.transactions, result.imported) == (8, 1)


def test_backtest_sums_fraud_caught_per_currency(history):
    assert backtest(CONDITION, days=3, now=NOW).fraud_amount == {"EUR": 200.0, "USD": 120.25}


def test_backtest_counts_cards_without_a_flag_as_extra_cases(history):
    # Hit cards c1, c2, c3, c5; flagged in the window c2, c3 and c4 (c5's flag is before it).
    result = backtest(CONDITION, days=3, now=NOW)

    assert result.extra_cases == 2
    assert result.overlap_model == 2


def test_backtest_overlaps_with_the_other_active_rules_only(history):
    Rule.objects.create(name="big", condition="amount > 180.0", action="block", status="active")
    Rule.objects.create(name="itself", condition="amount > 0.0", action="review", status="active")
    Rule.objects.create(name="shadowy", condition="amount > 0.0", action="review", status="shadow")

    result = backtest(CONDITION, days=3, now=NOW, rule_name="itself")

    assert result.overlap_rules == {"big": 2}


def test_backtest_reads_lists_as_now_hour_and_no_score_for_imported_rows(history):
    ListEntry.objects.create(kind="block", entity="card", value="c1", reason="stolen")
    lists.reset()

    assert backtest("card_blocked && hour == 10", days=3, now=NOW).hits == 1
    assert backtest("merchant_blocked || merchant_allowed", days=3, now=NOW).hits == 0
    assert backtest("score < 0.5", days=3, now=NOW).hits == 7  # the imported row's stored 0 is no score


def test_backtest_as_dict_is_json(history):
    import json

    out = json.loads(json.dumps(backtest(CONDITION, days=3, now=NOW, rule_name="x").as_dict()))

    assert out["hits"] == 5 and out["per_day"][0] == {
        "day": "2026-11-08",
        "hits": 1,
        "fraud": 0,
        "legit": 1,
        "unknown": 0,
    }
    assert out["condition"] == CONDITION and out["rule_name"] == "x"


def test_backtest_refuses_a_condition_that_does_not_check(db):
    with pytest.raises(RuleError):
        backtest("amount > ", now=NOW)
    with pytest.raises(ValueError):
        backtest("amount > 1.0", days=0, now=NOW)


@pytest.mark.parametrize(
    "condition",
    [
        'amount > 500.0 && card_count_1h >= 3.0 && country != "PL"',
        'score > 0.7 || channel == "atm"',
        "!(card_count_1h < 2.0) && (hour < 6 || hour > 22)",
        "card_count_1h / amount > 0.01 && 24 / hour > 2",  # NaN and an integer divided by zero on some rows
        'card_blocked && country in ["PL", "DE"]',
    ],
)
def test_backtest_hits_are_what_the_rules_give_row_by_row(condition):
    from scoring.backtest import _Inputs, _Plan
    from scoring.rules import RuleSet, check

    rng = np.random.default_rng(3)
    rows = 3000
    chunk = {
        "epoch": rng.integers(1_790_000_000, 1_790_500_000, rows).astype(float),
        "amount": rng.integers(0, 4000, rows) / 4,
        "card_count_1h": np.where(rng.random(rows) < 0.1, np.nan, rng.integers(0, 6, rows).astype(float)),
        "score": rng.random(rows).round(2),
        "imported": (rng.random(rows) < 0.05).astype(float),
        "country": rng.choice(np.array(["PL", "DE", "NL", ""], dtype=object), rows),
        "channel": rng.choice(np.array(["pos", "ecom", "atm"], dtype=object), rows),
        "card_id": rng.choice(np.array([f"c{i}" for i in range(50)], dtype=object), rows),
    }
    inputs = _Inputs(chunk, flags={"card_blocked": {"c1", "c7"}})
    tested = check(condition)

    hits = _Plan(tested).hits(inputs, rows=np.arange(rows))

    columns = {name: inputs[name].tolist() for name in tested.names}
    one_by_one = [i for i, (hit,) in enumerate(RuleSet([tested]).run(columns, rows)) if hit]
    assert hits.tolist() == one_by_one and 0 < len(one_by_one) < rows
