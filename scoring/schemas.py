"""The API's typed request and response bodies: they validate input and generate the OpenAPI document."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

MAX_FUTURE = timedelta(minutes=5)
MAX_FUTURE_SECONDS = MAX_FUTURE.total_seconds()
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
MAX_BATCH = 1000

# Checked by pydantic's own (Rust) regex, which is cheaper than a Python validator; its error gets words of its
# own (error_message()). PostgreSQL cannot store a NUL in text at all: refused here, not failed on storing.
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]*$"
CONTROL_CHARACTERS = "must not contain control characters (NUL, tab, newline, ...)"


# pydantic documents a Decimal's string form as any string at all; this says which strings are amounts.
AMOUNT_SCHEMA = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0, "maximum": 1_000_000_000},
        {
            "type": "string",
            "pattern": r"^(?!0*(\.0*)?$)([0-9]{1,9}(\.[0-9]{1,2})?|1000000000(\.00?)?)$",
            "examples": ["12.50"],
        },
    ]
}


def _plausible_instant(value: datetime) -> datetime:
    """An event or report time from the Unix epoch to 5 minutes from now, as the same instant in UTC.

    The lower bound keeps the arithmetic of features and storage in range: a fuzzer's year-1 timestamp
    ("0001-01-01T00:00:00+03:04") was a 500, its 30-day history window starting before datetime's year 1.
    Both bounds are checked before the conversion: a year-1 time with a positive offset, or a year-9999 one
    with a negative offset, has no UTC form in datetime's range (an OverflowError, a 500).

    In UTC (Python's own tzinfo, not pydantic's fixed offset): PostgreSQL refuses the text of an offset
    beyond ±15:59 (ISO 8601 allows ±23:59), which the ORM sends for a label's report time: a fuzzer's
    "+18:19" was a 500. The dashboards show a new transaction's time as they show a stored one's, in UTC.
    And features read each timestamp several times: `.timestamp()` is about three times cheaper with UTC
    than with pydantic's tzinfo. One validator, against the clock's seconds, where there were two, each
    reading `datetime.now()`.
    """
    if value < EARLIEST:
        raise ValueError("is before 1970-01-01")
    if value.timestamp() > time.time() + MAX_FUTURE_SECONDS:
        raise ValueError("is more than 5 minutes in the future")
    return value.astimezone(UTC)


Instant = Annotated[AwareDatetime, AfterValidator(_plausible_instant)]

Id64 = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_CONTROL_CHARACTERS)]


class TransactionIn(BaseModel):
    """One transaction as a payment system sends it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    external_id: Id64 = Field(description="The caller's id; the idempotency key")
    card_id: Id64 = Field(description="The paying card or customer")
    merchant_id: Id64 = Field(description="Merchant or terminal")
    amount: Annotated[
        Decimal, Field(gt=0, le=1_000_000_000, decimal_places=2, allow_inf_nan=False), WithJsonSchema(AMOUNT_SCHEMA)
    ] = Field(description="> 0, at most 2 decimals, at most 1,000,000,000 (number or decimal string)")
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = Field(description="ISO 4217, e.g. EUR")
    timestamp: Instant = Field(description="Event time, ISO 8601 with a timezone, from 1970-01-01 to 5 minutes ahead")
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = None
    channel: Literal["pos", "ecom", "atm"] | None = None
    mcc: Annotated[str, StringConstraints(pattern=r"^[0-9]{4}$")] | None = None


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    transactions: list[TransactionIn] = Field(min_length=1, max_length=MAX_BATCH)


class Reason(BaseModel):
    feature: str
    contribution: float


class TransactionResult(BaseModel):
    """The answer for one transaction (201, 200 and GET bodies)."""

    id: int
    external_id: str
    score: float = Field(ge=0, le=1)
    decision: Literal["approve", "review", "block"]
    reasons: list[Reason]
    model_version: str
    case_id: int | None


class BatchResult(BaseModel):
    results: list[TransactionResult]


class LabelIn(BaseModel):
    """A chargeback or a confirmation from the payment side."""

    model_config = ConfigDict(extra="forbid")

    external_id: Id64
    is_fraud: bool
    reported_at: Instant | None = Field(
        None, description="ISO 8601 with a timezone, from 1970-01-01 to 5 minutes ahead"
    )


class LabelResult(BaseModel):
    external_id: str
    is_fraud: bool
    labeled_at: datetime


class Error(BaseModel):
    error: str
    fields: dict[str, list[str]] | None = None
    items: dict[str, dict[str, list[str]]] | None = None


# Refusals as API.md words them, shared by the ninja operations (scoring/api.py) and the plain ASGI
# ingest endpoint (scoring/endpoint.py), which answer the same contract.
NOT_JSON = "body is not valid JSON; send a JSON object"
UNAUTHORIZED = "missing, unknown or revoked API key: send Authorization: Bearer <key>"
TOO_LARGE = "body is larger than the limit; send at most 1,000 transactions a batch"
DATABASE_DOWN = "the database is unavailable; nothing was stored, retry later"


def refusal(errors: list[dict]) -> tuple[int, dict]:
    """API.md's refusal for pydantic errors (locations relative to the body): 400 for a body that is not
    JSON, else 422 naming every bad field, or every bad item of a batch by its index."""
    if any(err.get("type") == "json_invalid" for err in errors):
        return 400, {"error": NOT_JSON}
    fields: dict[str, list[str]] = {}
    items: dict[str, dict[str, list[str]]] = {}
    for err in errors:
        loc = [str(part) for part in err["loc"]]
        message = error_message(err)
        if len(loc) >= 2 and loc[0] == "transactions" and loc[1].isdigit():
            items.setdefault(loc[1], {}).setdefault(".".join(loc[2:]) or "__all__", []).append(message)
        else:
            fields.setdefault(".".join(loc) or "__all__", []).append(message)
    if items:
        bad = ", ".join(sorted(items, key=int)[:10])
        body: dict = {"error": f"invalid transactions at index {bad}; nothing was stored", "items": items}
        if fields:
            body["fields"] = fields
        return 422, body
    return 422, {"error": f"invalid fields: {', '.join(fields)}; nothing was stored", "fields": fields}


def error_message(err: Any) -> str:
    """A pydantic error in the words API.md and the import use."""
    if err.get("type") == "missing":
        return "is required"
    if err.get("type") == "extra_forbidden":
        return "is not a known field"
    if err.get("type") == "model_type":
        return "must be a JSON object"
    if err.get("type") == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == NO_CONTROL_CHARACTERS:
        return CONTROL_CHARACTERS
    return str(err.get("msg", "is invalid")).removeprefix("Value error, ")
