"""Stored transactions read as columns, a chunk at a time: what a rule's backtest reads from a month of history.

Only the columns asked for are read, and of the feature values only those asked for, picked out in SQL (by each
row's model version's position of the name): building a million rows' whole feature lists in Python would cost
more than the rest of the backtest. PostgreSQL's statement (`real[]` subscripts, a server-side cursor) and
SQLite's (`json_extract`) differ only in those expressions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from django.db import connection

from scoring.models import IMPORTED, ModelVersion

# What each plain column is read as; `epoch` is the transaction's own time in seconds since 1970 (UTC).
PLAIN = {
    "amount": "amount_float",
    "currency": "currency",
    "country": "country",
    "channel": "channel",
    "mcc": "mcc",
    "card_id": "card_id",
    "merchant_id": "merchant_id",
    "score": "score",
    "decision": "decision",
    "is_fraud": "is_fraud",
}
CHUNK = 100_000


def read_columns(
    start: datetime, end: datetime, *, columns: Sequence[str], features: Sequence[str], chunk: int = CHUNK
) -> Iterator[dict[str, tuple[Any, ...]]]:
    """The transactions whose own time is in [start, end), a chunk of rows at a time: for each name in `columns`
    (PLAIN's, `epoch` and `imported`) and in `features` a tuple of values, one per row. A feature the row's model
    did not see (or no model: imported history) reads None."""
    names = [*columns, *features]
    selects, params = [], []
    for name in columns:
        selects.append(_column(name))
    positions = _positions(features)
    for name in features:
        expression, more = _feature(positions[name])
        selects.append(expression)
        params += more
    sql = f'SELECT {", ".join(selects)} FROM scoring_transaction WHERE "timestamp" >= %s AND "timestamp" < %s'
    params += [connection.ops.adapt_datetimefield_value(start), connection.ops.adapt_datetimefield_value(end)]
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(chunk):
            yield dict(zip(names, zip(*rows, strict=True), strict=True))


def _column(name: str) -> str:
    postgres = connection.vendor == "postgresql"
    if name == "epoch":
        return 'EXTRACT(EPOCH FROM "timestamp")::float8' if postgres else "CAST(strftime('%%s', \"timestamp\") AS REAL)"
    if name == "imported":
        return f"(model_version LIKE '{IMPORTED}%%')"
    return PLAIN[name]


def _positions(features: Sequence[str]) -> dict[str, dict[str, int]]:
    """For each feature name, its position in each stored model version's feature list that has it."""
    versions = dict(ModelVersion.objects.values_list("version", "features")) if features else {}
    return {
        name: {version: names.index(name) for version, names in versions.items() if name in (names or [])}
        for name in features
    }


def _feature(positions: dict[str, int]) -> tuple[str, list[Any]]:
    """The expression reading one feature's value of each row, by its model version's position for it."""
    if not positions:
        return "NULL", []
    postgres = connection.vendor == "postgresql"
    whens, params = [], []
    for version, index in positions.items():
        whens.append("WHEN %s THEN " + ("features[%s]" if postgres else "json_extract(features, %s)"))
        params += [version, index + 1 if postgres else f"$[{index}]"]  # PostgreSQL's arrays count from 1
    return f"CASE model_version {' '.join(whens)} END", params
