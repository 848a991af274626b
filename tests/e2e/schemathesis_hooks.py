"""Schemathesis hooks for tests/e2e/test_fuzz.py (loaded through SCHEMATHESIS_HOOKS).

Two rules of the contract cannot be stated in a JSON Schema, and the document says them in words:
- time: an event or report time may not be more than 5 minutes in the future, nor before 1970-01-01 in UTC (a
  time on that day with a positive offset): generated times beyond those bounds are moved inside them;
- state: an external_id stored before with other content makes a batch a 422 naming the item (a single POST's
  409 is a status schemathesis expects): each batch item's id gets a suffix no other case has; and a label's
  report time may not be before its transaction's timestamp: a generated report time becomes now.
So the "valid data is accepted" check tests everything else. Every other generated value is sent as generated.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from itertools import count
from typing import Any

import schemathesis

from scoring.schemas import RFC3339

TIME_FIELDS = ("timestamp", "reported_at")
INSIDE = "2026-01-02T10:15:00Z"
_cases = count()


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    """Every phase's cases pass here (map_body is not applied to every phase's)."""
    case.body = _inside_bounds(case.body, labels=case.path.endswith("/labels"))
    return case


def _inside_bounds(body: Any, *, labels: bool) -> Any:
    if isinstance(body, dict) and labels and _documented_time(body.get("reported_at")):
        body["reported_at"] = datetime.now(UTC).isoformat()
    elif isinstance(body, dict):
        _move_inside(body)
        items = body.get("transactions")
        for index, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, dict):
                _move_inside(item)
                _own_id(item, case=next(_cases), index=index)
    return body


def _own_id(item: dict[str, Any], *, case: int, index: int) -> None:
    """A suffix that keeps a valid id valid (and an invalid one invalid), unique to this case and item."""
    external_id = item.get("external_id")
    suffix = f"~{case}.{index}"
    if isinstance(external_id, str) and 0 < len(external_id) <= 64 - len(suffix):
        item["external_id"] = external_id + suffix


def _move_inside(fields: dict[str, Any]) -> None:
    for name in TIME_FIELDS:
        value = fields.get(name)
        if isinstance(value, str) and _outside(value):
            fields[name] = INSIDE


def _documented_time(value: Any) -> bool:
    """A time the document admits (anything else is a negative case, sent as generated)."""
    return isinstance(value, str) and re.fullmatch(RFC3339, value) is not None


def _outside(value: str) -> bool:
    if not _documented_time(value):
        return False
    at = datetime.fromisoformat(value.upper())
    return at > datetime.now(UTC) or at.astimezone(UTC).year < 1970
