"""Helpers for the scoring tests: a transaction at a fixed instant, stored history rows, features by name."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from scoring import aggregates, storage
from scoring.features import FEATURE_INDEX, feature_rows
from scoring.models import Transaction
from scoring.schemas import TransactionIn
from tests.conftest import tx_body

T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)  # a Monday, midday


def item(**overrides) -> TransactionIn:
    """A validated transaction at T0, fields overridden as in tx_body()."""
    return TransactionIn(**tx_body(**{"timestamp": T0.isoformat(), **overrides}))


def stored(
    external_id: str,
    *,
    at: datetime,
    amount: str = "10.00",
    card: str = "card-1",
    merchant: str = "merch-1",
    is_fraud: bool | None = None,
) -> Transaction:
    """A stored history row, counted into its merchant's hour as ingest counts it."""
    tx = Transaction.objects.create(
        external_id=external_id,
        card_id=card,
        merchant_id=merchant,
        amount=Decimal(amount),
        currency="EUR",
        timestamp=at,
        score=0.1,
        decision="approve",
        model_version="history",
        is_fraud=is_fraud,
    )
    storage.add_to_hours(aggregates.hour_counts([(merchant, at, is_fraud)]))
    return tx


def features_of(tx: TransactionIn) -> dict[str, float]:
    """The features ingest computes for `tx` from what is stored, by name."""
    (row,) = feature_rows([tx])
    return {name: row[i] for name, i in FEATURE_INDEX.items()}
