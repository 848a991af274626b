"""What an imported history row stores, as both databases' writers write it.

Imported rows are history, not traffic: score 0, approved, no reasons, features or case. Those columns are
the same for every row of an import, so they are adapted once; the rest vary per row (VARYING, in that
order, is the tuple `row_values()` gives).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.utils import timezone

from scoring.models import IMPORTED, Decision, Transaction

if TYPE_CHECKING:
    from scoring.schemas import TransactionIn

RowValues = Callable[["TransactionIn", bool | None], tuple[Any, ...]]

VARYING = ("external_id", "card_id", "merchant_id", "amount", "currency", "timestamp", "country", "channel", "mcc")
VARYING += ("is_fraud",)
EXTERNAL_ID, MERCHANT_ID, TIMESTAMP, IS_FRAUD = 0, 2, 5, 9  # positions in VARYING
CONSTANT = ("score", "decision", "reasons", "features", "model_version")
# received_at is the event time: history is past traffic, received when it happened, not now. The live
# dashboards leave imported rows out altogether (TransactionQuerySet.scored()), recent history included.
NAMES = (*VARYING, "labeled_at", *CONSTANT, "received_at")
ON_CONFLICT = 'ON CONFLICT ("external_id") DO NOTHING'


def row_values() -> RowValues:
    """A function giving the database values of the VARYING columns for a transaction and its label."""
    ops = connection.ops
    decimal, moment = ops.adapt_decimalfield_value, ops.adapt_datetimefield_value

    def values(item: TransactionIn, label: bool | None) -> tuple[Any, ...]:
        return (
            item.external_id,
            item.card_id,
            item.merchant_id,
            decimal(item.amount, 14, 4),
            item.currency,
            moment(item.timestamp),
            item.country or "",
            item.channel or "",
            item.mcc or "",
            label,
        )

    return values


def constants(source: str) -> tuple[Any, ...]:
    """The CONSTANT columns' database values for rows imported from `source`."""
    values = {
        "score": 0.0,
        "decision": Decision.APPROVE.value,
        "reasons": [],
        "features": [],
        "model_version": f"{IMPORTED}{source}",
    }
    return tuple(prep(name, value) for name, value in values.items())


def labeled_now() -> Any:
    """labeled_at's database value for the labeled rows of an import: when the label came, now."""
    return prep("labeled_at", timezone.now())


def prep(name: str, value: Any) -> Any:
    return Transaction._meta.get_field(name).get_db_prep_save(value, connection)


def table() -> str:
    return connection.ops.quote_name(Transaction._meta.db_table)


def columns(names: tuple[str, ...]) -> str:
    return ", ".join(connection.ops.quote_name(Transaction._meta.get_field(name).column) for name in names)
