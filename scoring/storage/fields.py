"""The schema's per-vendor pieces: the column type of a model's feature values, and the `any_of` lookup.

With the rest of scoring/storage, the only code that knows which database it is on (migrations aside).
"""

from __future__ import annotations

import json
import math
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import models
from django.db.models.lookups import In


@models.Field.register_lookup
class AnyOf(In):
    """`field__any_of=values`: `IN (…)`, but on PostgreSQL `= ANY(%s)` with the values as one array.

    With one parameter the statement's text is the same for any number of values, so psycopg keeps its
    parsed form (it caches statements of few parameters), where an `IN` of a batch's hundreds of
    placeholders is parsed and quoted every time. Ingest uses it to look up a batch's stored rows.
    """

    lookup_name = "any_of"

    def as_postgresql(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        if not self.rhs_is_direct_value():
            return self.as_sql(compiler, connection)
        lhs, lhs_params = self.process_lhs(compiler, connection)
        values = list(dict.fromkeys(v for v in self.rhs if v is not None))
        if not values:
            raise EmptyResultSet
        _, params = self.batch_process_rhs(compiler, connection, values)
        return f"{lhs} = ANY(%s)", (*lhs_params, list(params))


class FeatureValuesField(models.Field):
    """The feature values a model saw, in that model's feature order (`ModelVersion.features`).

    PostgreSQL: `real[]`, 4 bytes a value (the float32 the model reads), which ingest writes as binary arrays. As JSON
    keyed by name they were most of a transaction's row, and parsing them most of PostgreSQL's work on an insert.
    Elsewhere: a JSON list, missing values as null. In Python a list of floats, NaN where a value is missing.
    """

    description = "Feature values in the model's feature order"

    def db_type(self, connection: Any) -> str:
        return "real[]" if connection.vendor == "postgresql" else "text"

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> list[float] | None:
        if value is None or connection.vendor == "postgresql":
            return value
        return _float_list(json.loads(value))

    def to_python(self, value: Any) -> list[float] | None:
        return _float_list(json.loads(value)) if isinstance(value, str) else value

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if value is None:
            return value
        if not isinstance(value, list | tuple):  # a dict would store its keys on SQLite without a word
            raise TypeError(f"features are a list of values in the model's feature order, not {type(value).__name__}")
        if connection.vendor == "postgresql":
            return value
        return json.dumps([None if v != v else v for v in value])


def _float_list(values: list[float | None]) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]
