"""Stored transactions read as columns, a day at a time: what a rule's backtest reads from a month of history.

Only the columns asked for are read, and of the feature values only those asked for, picked out in SQL (by each
row's model version's position of the name): building a million rows' whole feature lists in Python would cost
more than the rest of the backtest. PostgreSQL sends each day as CSV through COPY, parsed by pandas in C: row
tuples of Python objects, transposed into columns, cost several times as much. SQLite's rows come through its
cursor.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from django.db import connection

from scoring.models import IMPORTED, ModelVersion

# What each plain column is read as. `epoch`: the transaction's own time in seconds since 1970 (UTC);
# `is_fraud`: 1.0 fraud, 0.0 legitimate, NaN unknown; `imported`: 1 for imported history.
PLAIN = {
    "amount": "amount_float",
    "score": "score",
    "is_fraud": "CASE WHEN is_fraud THEN 1.0 WHEN NOT is_fraud THEN 0.0 END",
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
    sql = f'SELECT {", ".join(selects)} FROM scoring_transaction WHERE "timestamp" >= %s AND "timestamp" < %s'
    read = _copied if connection.vendor == "postgresql" else _fetched
    day = start
    while day < end:
        until = min(day + timedelta(days=1), end)
        bounds = [connection.ops.adapt_datetimefield_value(day), connection.ops.adapt_datetimefield_value(until)]
        yield read(sql, [*params, *bounds], names=names)
        day = until


def _copied(sql: str, params: list[Any], *, names: list[str]) -> dict[str, np.ndarray]:
    """PostgreSQL: the rows as CSV through COPY, parsed by pandas (NULL is an empty field, NaN reads NaN)."""
    statement = f"COPY ({connection.ops.compose_sql(sql, params)}) TO STDOUT (FORMAT csv)"
    data = io.BytesIO()
    with connection.cursor() as cursor, connection.wrap_database_errors, cursor.cursor.copy(statement) as copy:
        for block in copy:
            data.write(block)
    data.seek(0)
    frame = pd.read_csv(
        data,
        header=None,
        names=names,
        dtype={n: object if n in TEXT else np.float64 for n in names},
        keep_default_na=False,
        na_values={n: [""] for n in names if n not in TEXT},
    )
    return {n: frame[n].to_numpy() for n in names}


def _fetched(sql: str, params: list[Any], *, names: list[str]) -> dict[str, np.ndarray]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    values = zip(*rows, strict=True) if rows else ([] for _ in names)
    return {n: np.array(v, dtype=object if n in TEXT else np.float64) for n, v in zip(names, values, strict=True)}


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
