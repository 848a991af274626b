"""Stored transactions read as columns, a day at a time: what a rule's backtest reads from a month of history.

Only the columns asked for are read, and of the feature values only those asked for, picked out in SQL (by each
row's model version's position of the name): building a million rows' whole feature lists in Python would cost
more than the rest of the backtest. PostgreSQL sends each day as one row of arrays, a column each, in binary:
a million row tuples of Python objects, transposed into columns, cost several times as much (and a COPY's rows
come one Python call each). SQLite's rows come through its cursor.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.db import connection

from scoring.models import IMPORTED, ModelVersion
from scoring.storage.binary import binary_cursor

# What each plain column is read as. `epoch`: the transaction's own time in seconds since 1970 (UTC);
# `is_fraud`: 1.0 fraud, 0.0 legitimate, NaN unknown; `imported`: 1 for imported history.
PLAIN = {
    "amount": "amount_float",
    "score": "score",
    "is_fraud": "CAST(CASE WHEN is_fraud THEN 1 WHEN NOT is_fraud THEN 0 END AS DOUBLE PRECISION)",
    "imported": f"CASE WHEN model_version LIKE '{IMPORTED}%%' THEN 1 ELSE 0 END",
    "currency": "currency",
    "country": "country",
    "channel": "channel",
    "mcc": "mcc",
    "card_id": "card_id",
    "merchant_id": "merchant_id",
    "decision": "decision",
}
TEXT = {"currency", "country", "channel", "mcc", "card_id", "merchant_id", "decision"}
EPOCH = {
    "postgresql": 'EXTRACT(EPOCH FROM "timestamp")::float8',
    "sqlite": "CAST(strftime('%%s', \"timestamp\") AS REAL)",
}


def read_columns(
    start: datetime, end: datetime, *, columns: Sequence[str], features: Sequence[str]
) -> Iterator[dict[str, np.ndarray]]:
    """The transactions whose own time is in [start, end), a day at a time: for each name in `columns` (PLAIN's
    and `epoch`) and in `features` an array with a value per row (text as objects, the rest as floats). A feature
    the row's model did not see (or no model: imported history) reads NaN."""
    names = [*columns, *features]
    selects, params = [EPOCH[connection.vendor] if n == "epoch" else PLAIN[n] for n in columns], []
    positions = _positions(features)
    for name in features:
        expression, more = _feature(positions[name])
        selects.append(expression)
        params += more
    postgres = connection.vendor == "postgresql"
    if postgres:
        selects = [f"array_agg({expression})" for expression in selects]
    sql = f'SELECT {", ".join(selects)} FROM scoring_transaction WHERE "timestamp" >= %s AND "timestamp" < %s'
    days, day = [], start
    while day < end:
        until = min(day + timedelta(days=1), end)
        bounds = [connection.ops.adapt_datetimefield_value(day), connection.ops.adapt_datetimefield_value(until)]
        days.append([*params, *bounds])
        day = until
    if postgres:
        yield from _aggregated(sql, days, names=names)
    else:
        for day_params in days:
            yield _fetched(sql, day_params, names=names)


def _aggregated(sql: str, days: list[list[Any]], *, names: list[str]) -> Iterator[dict[str, np.ndarray]]:
    """PostgreSQL: each day one row of arrays, decoded from binary by psycopg in C (a day without rows: NULLs).
    The next day's statement is sent before this day's row is handed on (psycopg's pipeline mode): the server
    reads it while this process runs the rules over this one."""
    connection.ensure_connection()
    with connection.wrap_database_errors, connection.connection.pipeline():
        pending: deque[Any] = deque()
        for day_params in days:
            cursor = binary_cursor()
            cursor.execute(sql, day_params)
            pending.append(cursor)
            if len(pending) > 1:
                yield _row_of_arrays(pending.popleft(), names=names)
        while pending:
            yield _row_of_arrays(pending.popleft(), names=names)


def _row_of_arrays(cursor: Any, *, names: list[str]) -> dict[str, np.ndarray]:
    row = cursor.fetchone()
    cursor.close()
    return {n: _array(values or [], text=n in TEXT) for n, values in zip(names, row, strict=True)}


def _fetched(sql: str, params: list[Any], *, names: list[str]) -> dict[str, np.ndarray]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    values = zip(*rows, strict=True) if rows else ([] for _ in names)
    return {n: _array(v, text=n in TEXT) for n, v in zip(names, values, strict=True)}


def _array(values: Sequence[Any], *, text: bool) -> np.ndarray:
    """Text as objects; numbers as floats, NULL as NaN."""
    return np.array(values, dtype=object if text else np.float64)


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
        return "CAST(NULL AS DOUBLE PRECISION)", []
    postgres = connection.vendor == "postgresql"
    whens, params = [], []
    for version, index in positions.items():
        whens.append("WHEN %s THEN " + ("features[%s]" if postgres else "json_extract(features, %s)"))
        params += [version, index + 1 if postgres else f"$[{index}]"]  # PostgreSQL's arrays count from 1
    return f"CASE model_version {' '.join(whens)} END", params
