"""The Handbook's simulator as the book describes it, its card precision, and its protocol through the product."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import numpy as np
import pandas as pd
import pytest

from scoring.handbook import DAY_SECONDS, RADIUS, START, simulate
from scoring.handbook_evaluation import Protocol, card_precision_at_k, run_seed
from scoring.models import ModelVersion, Transaction


@pytest.fixture(scope="module")
def small():
    return simulate(seed=3, customers=300, terminals=600, days=60)


def test_the_simulator_is_the_same_for_a_seed_and_differs_between_seeds(small):
    again = simulate(seed=3, customers=300, terminals=600, days=60)
    other = simulate(seed=4, customers=300, terminals=600, days=60)
    pd.testing.assert_frame_equal(small.transactions, again.transactions)
    assert not small.transactions["amount"].equals(other.transactions["amount"])


def test_customers_pay_within_the_day_and_only_at_terminals_near_home(small):
    tx, people, places = small.transactions, small.customers, small.terminals
    assert ((tx["seconds"] % DAY_SECONDS) > 0).all() and (tx["seconds"].diff().dropna() >= 0).all()
    home = people.loc[tx["customer"], ["x", "y"]].to_numpy()
    spot = places.loc[tx["terminal"], ["x", "y"]].to_numpy()
    assert (((home - spot) ** 2).sum(axis=1) < RADIUS**2).all()


def test_the_three_fraud_scenarios_are_as_the_book_describes_them(small):
    tx = small.transactions
    assert tx.loc[tx["amount"] > 220, "fraud"].all()  # every big amount (scenario 1, or 3's multiplied ones)
    assert tx.loc[tx["scenario"] == 1, "amount"].gt(220).all()
    spans = tx[tx["scenario"] == 2].groupby("terminal")["day"].agg(["min", "max"])
    once = spans[spans["max"] - spans["min"] < 28]  # compromised once: every payment there in between is fraud
    assert len(once) > 10
    for terminal, (first, last) in once.iterrows():
        assert tx[(tx["terminal"] == terminal) & tx["day"].between(first, last)]["fraud"].all()
    stolen = tx[tx["scenario"] == 3]
    share = len(stolen) / len(tx[tx["customer"].isin(stolen["customer"])])
    assert 0 < share < 1 / 3 + 0.05
    assert tx["fraud"].mean() > 0.004


def test_card_precision_leaves_out_cards_found_on_earlier_days_and_counts_out_of_k():
    frame = pd.DataFrame(
        {
            "day": ["d1", "d1", "d1", "d2", "d2", "d2"],
            "card": ["a", "b", "c", "a", "b", "c"],
            "y": [1, 0, 1, 1, 0, 0],
            "score": [0.9, 0.8, 0.1, 0.99, 0.5, 0.4],
        }
    )
    # Day 1: top 2 are a (fraud) and b: 1 of 2. Day 2: a was found on day 1, so b and c: 0 of 2.
    assert card_precision_at_k(frame, k=2) == pytest.approx((0.5 + 0.0) / 2)


@pytest.mark.django_db(transaction=True)
def test_one_seed_runs_through_import_training_the_batch_api_and_the_label_feed():
    protocol = Protocol(train_days=14, test_days=2)
    out = StringIO()

    result = run_seed(seed=1, protocol=protocol, train_options=["--trees=10"], out=out, progress=out.write, scale=0.05)

    assert result.rows["test"] == Transaction.objects.scored().count() > 1000
    assert set(result.metrics) == {"auc_roc", "average_precision", "card_precision_at_100"}
    assert all(0.0 <= v <= 1.0 for v in result.metrics.values())
    mv = ModelVersion.objects.get(is_active=True)
    assert mv.data_range["end"] < protocol.delay_start.isoformat()  # no label of the delay days was trained on
    delayed = Transaction.objects.filter(timestamp__gte=protocol.delay_start, timestamp__lt=protocol.test_start)
    fed = delayed.filter(is_fraud=True)
    assert fed.count() == result.rows["labels_fed"] > 0
    assert all(tx.labeled_at - tx.timestamp == timedelta(days=protocol.delay_days) for tx in fed)
    assert not delayed.filter(is_fraud=False).exists()  # only chargebacks come, and only as they arrive
    assert protocol.history_start == START + timedelta(days=int(np.ceil((protocol.history_start - START).days)))
