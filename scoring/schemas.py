"""The API's typed request and response bodies: they validate input and generate the OpenAPI document."""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

import pycountry
from iso4217 import Currency
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

MAX_FUTURE = timedelta(minutes=5)
MAX_FUTURE_SECONDS = MAX_FUTURE.total_seconds()
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
MAX_BATCH = 1000

# Checked by pydantic's own (Rust) regex, which is cheaper than a Python validator; its error gets words of its
# own (error_message()). PostgreSQL cannot store a NUL in text at all: refused here, not failed on storing.
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]*$"
CONTROL_CHARACTERS = "must not contain control characters (NUL, tab, newline, ...)"


MAX_AMOUNT = Decimal(1_000_000_000)
# Active currencies and how many decimals each has (ISO 4217 minor units: JPY 0, EUR 2, BHD 3), from the
# iso4217 package; codes without minor units (gold, SDRs, the test code) are not money a card pays with.
CURRENCY_DECIMALS = {c.code: c.exponent for c in Currency if c.exponent is not None}
COUNTRIES = sorted(country.alpha_2 for country in pycountry.countries)  # ISO 3166-1 alpha-2
CurrencyCode = Literal[tuple(sorted(CURRENCY_DECIMALS))]  # type: ignore[valid-type]
CountryCode = Literal[tuple(COUNTRIES)]  # type: ignore[valid-type]


def _decimal_text(places: int | None) -> str:
    """The pattern of an amount as a string: ASCII digits with at most one point (no sign, exponent,
    underscore or padding), more than 0 and at most 1,000,000,000, with at most `places` decimals."""
    point = r"\.[0-9]+" if places is None else rf"\.[0-9]{{1,{places}}}"
    zeros = r"\.0+" if places is None else rf"\.0{{1,{places}}}"
    if places == 0:
        return r"^(?=.*[1-9])([0-9]{1,9}|1000000000)$"
    return rf"^(?=.*[1-9])([0-9]{{1,9}}({point})?|1000000000({zeros})?)$"


PLAIN_DECIMAL = re.compile(_decimal_text(None))
AMOUNT_WORDS = 'must be a JSON number or a plain decimal string such as "12.50" (ASCII digits, one optional point)'
# RFC 3339 with an offset. The document's pattern names real calendar dates from 1970 to 2099 and valid times and
# offsets, so that every string it admits parses; the instant's own bounds (from 1970-01-01 UTC to 5 minutes
# ahead) are checked on the parsed value and described in words. The validator's pattern admits any digits in the
# date and lets the parser refuse impossible dates, in words of their own.
_YEAR = r"(19[7-9][0-9]|20[0-9]{2})"
_LEAP_YEAR = r"(19(7[26]|8[048]|9[26])|20([02468][048]|[13579][26]))"
_DATE = (
    rf"({_YEAR}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|{_YEAR}-(0[13-9]|1[0-2])-(29|30)"
    rf"|{_YEAR}-(0[13578]|1[02])-31|{_LEAP_YEAR}-02-29)"
)
_TIME = r"[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
RFC3339 = rf"^{_DATE}{_TIME}$"
_RFC3339 = re.compile(rf"[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}{_TIME}")


def decimals(amount: Decimal) -> int:
    """How many decimals an amount has: as written for a string ("12.50": 2), its value's for a number."""
    exponent = amount.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _amount(value: Any) -> Decimal:
    """A JSON number or a plain decimal string as an exact Decimal, > 0 and at most MAX_AMOUNT."""
    if isinstance(value, str):
        if not PLAIN_DECIMAL.fullmatch(value):
            raise ValueError(AMOUNT_WORDS)
        amount = Decimal(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        amount = Decimal(value)
    elif isinstance(value, Decimal) and value.is_finite():  # from Python (the import, tests), never from JSON
        amount = value
    elif isinstance(value, float) and math.isfinite(value):
        amount = Decimal(repr(value))  # the shortest decimal that is this float: 0.1, not 0.1000000000000000055
    else:
        raise ValueError(AMOUNT_WORDS)
    if not 0 < amount <= MAX_AMOUNT:
        raise ValueError("must be more than 0 and at most 1,000,000,000")
    if isinstance(value, float):  # a number's decimals are its value's: 100.0 has none
        amount = amount.quantize(Decimal(1)) if amount == amount.to_integral_value() else amount.normalize()
    return amount


def _amount_schema(places: int | None = None) -> dict[str, Any]:
    """An amount in JSON Schema; with `places`, one of a currency with that many decimals."""
    number: dict[str, Any] = {"type": "number", "exclusiveMinimum": 0, "maximum": 1_000_000_000}
    text = {"type": "string", "pattern": _decimal_text(places), "examples": ["12.50"]}
    if places is not None:
        number["multipleOf"] = 10.0**-places if places else 1
    return {"anyOf": [number, text]}


def _decimals_by_currency() -> list[dict[str, Any]]:
    """JSON Schema rules tying an amount's decimals to its currency's (ISO 4217 minor units)."""
    rules = []
    for places in sorted(set(CURRENCY_DECIMALS.values())):
        codes = sorted(code for code, p in CURRENCY_DECIMALS.items() if p == places)
        rules.append(
            {
                "if": {"properties": {"currency": {"enum": codes}}, "required": ["currency"]},
                "then": {"properties": {"amount": _amount_schema(places)}},
            }
        )
    return rules


def _instant(value: Any) -> datetime:
    """An RFC 3339 timestamp with an offset, from the Unix epoch to 5 minutes from now, as that instant in UTC.

    The lower bound keeps the arithmetic of features and storage in range: a fuzzer's year-1 timestamp was a
    500, its 30-day history window starting before datetime's year 1. Both bounds are checked before the
    conversion: a year-1 time with a positive offset, or a year-9999 one with a negative offset, has no UTC
    form in datetime's range.

    In UTC (Python's own tzinfo): PostgreSQL refuses the text of an offset beyond ±15:59, which the ORM sends
    for a label's report time; the dashboards show a new transaction's time as they show a stored one's, in
    UTC; and features read each timestamp several times, which is cheaper with Python's UTC.
    """
    if isinstance(value, datetime) and value.tzinfo is not None:  # from Python, never from JSON
        at = value
    elif isinstance(value, str) and _RFC3339.fullmatch(value):
        try:
            at = datetime.fromisoformat(value.upper())
        except ValueError as exc:
            raise ValueError(f"is not a valid date and time ({exc})") from None
    else:
        raise ValueError("must be an RFC 3339 timestamp with an offset, such as 2026-01-02T10:15:00Z")
    if at < EARLIEST:
        raise ValueError("is before 1970-01-01")
    if at.timestamp() > time.time() + MAX_FUTURE_SECONDS:
        raise ValueError("is more than 5 minutes in the future")
    return at.astimezone(UTC)


INSTANT_SCHEMA = {"type": "string", "format": "date-time", "pattern": RFC3339, "examples": ["2026-01-02T10:15:00Z"]}
Instant = Annotated[datetime, PlainValidator(_instant), WithJsonSchema(INSTANT_SCHEMA)]
Amount = Annotated[Decimal, PlainValidator(_amount), WithJsonSchema(_amount_schema())]

Id64 = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_CONTROL_CHARACTERS)]


class TransactionIn(BaseModel):
    """One transaction as a payment system sends it."""

    # The currency comes before the amount so that the amount's check can see it.
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=False, json_schema_extra={"allOf": _decimals_by_currency()}
    )

    external_id: Id64 = Field(description="The caller's id; the idempotency key")
    card_id: Id64 = Field(description="The paying card or customer")
    merchant_id: Id64 = Field(description="Merchant or terminal")
    currency: CurrencyCode = Field(description="An active ISO 4217 code, e.g. EUR")
    amount: Amount = Field(
        description="> 0, at most 1,000,000,000, no more decimals than the currency has (JPY 0, EUR 2, BHD 3): "
        "a JSON number or a plain decimal string"
    )
    timestamp: Instant = Field(description="Event time: RFC 3339 with an offset, from 1970-01-01 to 5 minutes ahead")
    country: CountryCode | None = Field(None, description="ISO 3166-1 alpha-2, e.g. NL")
    channel: Literal["pos", "ecom", "atm"] | None = None
    mcc: Annotated[str, StringConstraints(pattern=r"^[0-9]{4}$")] | None = None

    @field_validator("amount")
    @classmethod
    def _within_the_currencys_decimals(cls, amount: Decimal, info: ValidationInfo) -> Decimal:
        places = CURRENCY_DECIMALS.get(info.data.get("currency", ""))
        if places is not None and decimals(amount) > places:
            code = info.data["currency"]
            raise ValueError(f"has more decimals than {code} has ({places})")
        return amount


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    transactions: list[TransactionIn] = Field(min_length=1, max_length=MAX_BATCH)


class Reason(BaseModel):
    feature: str
    contribution: float


class RuleHit(BaseModel):
    """An active rule that hit the transaction, and the action it takes."""

    name: str
    action: Literal["approve", "review", "block"]


class TransactionResult(BaseModel):
    """The answer for one transaction (201, 200 and GET bodies)."""

    id: int
    external_id: str
    score: float = Field(ge=0, le=1)
    decision: Literal["approve", "review", "block"]
    reasons: list[Reason] = Field(description="The top 3 features by SHAP contribution, positive push first")
    rules: list[RuleHit] = Field(
        description="The active rules that hit, in priority order (empty when none); the strongest action of "
        "theirs decided, unless a list did"
    )
    model_version: str
    case_id: int | None


class BatchResult(BaseModel):
    results: list[TransactionResult]


class LabelIn(BaseModel):
    """A chargeback or a confirmation from the payment side."""

    model_config = ConfigDict(extra="forbid")

    external_id: Id64
    is_fraud: StrictBool = Field(description="A JSON boolean")
    reported_at: Instant | None = Field(
        None, description="RFC 3339 with an offset; not before the transaction's timestamp nor in the future"
    )


class LabelResult(BaseModel):
    external_id: str
    is_fraud: bool
    labeled_at: datetime


class Conflict(BaseModel):
    """A reused external_id with other content (409)."""

    error: str
    fields: list[str]


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
