"""What the service says about a transaction and a case, in one place: the API's answer, the live feed's event
and every reason or state in words. Pages, pushes and the admin all take their wording from here, so the
browser never re-words anything."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from scoring.features import CHANNEL_CODES, DAY, FEATURES, HOUR
from scoring.schemas import CURRENCY_DECIMALS

if TYPE_CHECKING:
    from scoring.models import Case, Transaction

REASONS_IN_SUMMARY = 2  # the feed's one-line summary names the strongest pushes towards fraud


class Sent(Protocol):
    """What the caller sent about a transaction (a TransactionIn, or a stored Transaction)."""

    external_id: str
    card_id: str
    merchant_id: str
    amount: Any
    currency: str
    timestamp: datetime


class Said(Protocol):
    """What the model, rules and lists said about it (a Scored, or a stored Transaction)."""

    score: float
    decision: str
    reasons: list
    rules: list


def answer(sent: Sent, said: Said, *, id: int, model_version: str, case_id: int | None) -> dict[str, Any]:
    """The API's answer for one transaction (201/200 bodies and GET): stored rows and new ones alike."""
    return {
        "id": id,
        "external_id": sent.external_id,
        "score": said.score,
        "decision": said.decision,
        "reasons": said.reasons,
        "rules": said.rules,
        "model_version": model_version,
        "case_id": case_id,
    }


def feed_event(sent: Sent, said: Said, *, id: int, case_id: int | None, state: str | None = None) -> dict[str, Any]:
    """The dashboard's view of one transaction, as pushed over the socket: stored rows and new ones alike.
    `state`: its case's state in words (a new case is unclaimed)."""
    return {
        "id": id,
        "external_id": sent.external_id,
        "card_id": sent.card_id,
        "merchant_id": sent.merchant_id,
        "amount": money(sent.amount, sent.currency),
        "currency": sent.currency,
        "timestamp": iso(sent.timestamp),
        "score": said.score,
        "decision": said.decision,
        "reasons": said.reasons,
        "rules": said.rules,
        "reason_text": reason_summary(said.reasons, rules=said.rules),
        "case_id": case_id,
        "case_state": state if state is not None else ("unclaimed" if case_id else ""),
    }


def transaction_event(tx: Transaction, *, case: Case | None) -> dict[str, Any]:
    """A stored transaction as the feed shows it, with its case (if it has one)."""
    return feed_event(tx, tx, id=tx.id, case_id=case.id if case else None, state=case_state(case))


def feed_events(rows: list[Transaction]) -> list[dict[str, Any]]:
    """Stored transactions as pushed over the socket, with their review cases' ids (a dashboard's catch-up)."""
    from scoring.models import Case

    case_ids = {tx.case_id for tx in rows if tx.case_id is not None}
    cases = (
        {case.id: case for case in Case.objects.filter(pk__in=case_ids).select_related("assignee")} if case_ids else {}
    )
    return [transaction_event(tx, case=cases.get(tx.case_id)) for tx in rows]


CASE_EVENT_ALERTS = 50  # the newest alert ids a case message names: what the live feed can be showing


def case_event(case: Case) -> dict[str, Any]:
    """The dashboard's view of a case, as pushed in `case` messages: its state and figures, and its newest alerts'
    ids (the feed rows whose case state it changes)."""
    alert_ids = list(case.alerts.order_by("-id").values_list("id", flat=True)[:CASE_EVENT_ALERTS])
    return {
        "id": case.id,
        "status": case.status,
        "state": case_state(case),
        "overturned": case.overturned,
        "assignee": case.assignee.get_username() if case.assignee else None,
        "note": case.note,
        "resolved_by": case.resolved_by.get_username() if case.resolved_by else None,
        "resolved_at": iso(case.resolved_at) if case.resolved_at else None,
        "card_id": case.card_id,
        "decision": case.decision,
        "score": case.top_score,
        "alert_count": case.alert_count,
        "amount": case_amount(case),
        "due_at": iso(case.due_at),
        "alert_ids": alert_ids,
    }


def case_amount(case: Case) -> str:
    """The case's alerts' total with its currency, or "several currencies" (they are never added together)."""
    if case.total_amount is None or not case.currency:
        return "several currencies"
    return f"{money(case.total_amount, case.currency)} {case.currency}"


def case_state(case: Case | None) -> str:
    """A case in a few words for the feed: unclaimed, claimed by …, confirmed fraud, legitimate (overturned)."""
    if case is None:
        return ""
    if not case.is_open:
        return case.get_status_display().lower() + (", overturned" if case.overturned else "")
    return f"claimed by {case.assignee.get_username()}" if case.assignee else "unclaimed"


_STEPS = {places: Decimal(1).scaleb(-places) for places in range(5)}


def money(amount: Decimal, currency: str) -> str:
    """An amount with as many decimals as its currency has ("12.50", "1200", "3.250"): stored amounts keep
    four, whatever the currency."""
    return str(amount.quantize(_STEPS[CURRENCY_DECIMALS.get(currency, 2)]))


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


# --- reasons in words ----------------------------------------------------------------------------


def reason_labels() -> dict[str, str]:
    """Short names of the model's features and the lists, for one-line summaries."""
    labels = {name: name.replace("_", " ").replace(" avg ", " average ") for name in FEATURES}
    for kind in ("allow", "block"):
        for entity in ("card", "merchant"):
            labels[f"{kind}_list_{entity}"] = f"{entity} on {kind} list"
    return labels


_LABELS = reason_labels()


def reason_summary(reasons: list[dict[str, Any]], *, rules: Sequence[dict[str, str]] = ()) -> str:
    """The active rules that hit, then the strongest reasons towards fraud (and any list that decided), named in
    one line: every rule, and features up to REASONS_IN_SUMMARY names in all."""
    named = [rule_label(rule) for rule in rules]
    pushing = [r["feature"] for r in reasons if "_list_" in r["feature"] or (r.get("contribution") or 0) > 0]
    named += [_LABELS.get(name, name.replace("_", " ")) for name in pushing[: max(REASONS_IN_SUMMARY - len(named), 0)]]
    return " · ".join(named)


def rule_label(rule: dict[str, str]) -> str:
    """An active rule that hit, in a few words: "rule big_night_atm (block)"."""
    return f"rule {rule['name']} ({rule['action']})"


def reasons_in_words(tx: Transaction) -> list[dict[str, Any]]:
    """The reasons in the model's order as sentences with the values the model saw, each with a bar width
    relative to the strongest one."""
    words, values = [], tx.feature_values()
    for reason in tx.reasons:
        name = reason.get("feature", "")
        kind, is_list, entity = name.partition("_list_")
        if is_list:
            text = f"{entity} is on the {kind} list"
        elif name in values:
            value = values[name]
            text = describe(name, math.nan if value is None else float(value))
        else:
            text = name.replace("_", " ")
        contribution = float(reason.get("contribution") or 0.0)
        words.append({"feature": name, "text": text, "contribution": contribution, "is_list": bool(is_list)})
    biggest = max((abs(w["contribution"]) for w in words), default=0.0) or 1.0
    for w in words:
        w["width"] = round(100 * abs(w["contribution"]) / biggest)
    return words


_NO_HISTORY = {
    "amount_vs_card_avg_30d": "first transaction of this card in 30 days",
    "amount_vs_card_median_30d": "first transaction of this card in 30 days",
    "amount_vs_card_max_30d": "first transaction of this card in 30 days",
    "amount_zscore_card_30d": "too few earlier transactions of this card to tell its usual amounts",
    "seconds_since_card_prev": "no earlier transaction of this card in 30 days",
    "merchant_hours_since_first_fraud_30d": "no confirmed fraud at this merchant in 30 days before the label delay",
    "merchant_hours_since_last_fraud_30d": "no confirmed fraud at this merchant in 30 days before the label delay",
}
_AGAINST_THE_CARD = {
    "amount_vs_card_avg_30d": "30-day average",
    "amount_vs_card_median_30d": "30-day median",
    "amount_vs_card_max_30d": "largest amount in 30 days",
}


def describe(name: str, value: float) -> str:
    """A reason in words, with its value, for analysts."""
    if value != value:  # NaN: no history
        return _NO_HISTORY.get(name, f"{name.replace('_', ' ')}: no history")
    window = name.rsplit("_", 1)[-1]
    if name == "amount":
        return f"amount is {value:,.2f}"
    if name in _AGAINST_THE_CARD:  # two significant digits below 1: a €1 test charge is 0.02, not 0.0
        ratio = f"{value:.1f}" if value >= 1 else f"{value:.2g}"
        return f"amount is {ratio}× this card's {_AGAINST_THE_CARD[name]}"
    if name == "amount_zscore_card_30d":
        return f"amount is {value:+.1f} standard deviations from this card's 30-day average"
    if name.startswith("merchant_hours_since_"):
        which = "first" if "_first_" in name else "latest"
        return f"{_duration(value * HOUR)} since this merchant's {which} confirmed fraud (past the label delay)"
    if name == "seconds_since_card_prev":
        return f"{_duration(value)} since this card's previous transaction"
    if name == "card_distinct_merchants_1d":
        return f"card used at {value:.0f} merchant{'s' if value != 1 else ''} in the last day"
    if name.startswith("card_count_"):
        return f"{_count(value, 'transaction')} on this card in the last {window}"
    if name.startswith("card_sum_"):
        return f"{value:,.2f} spent on this card in the last {window}"
    if name.startswith("card_avg_"):
        return f"card's average amount over {window} is {value:,.2f}"
    if name.startswith("merchant_count_"):
        return f"{_count(value, 'transaction')} at this merchant in the last {window}"
    if name.startswith("merchant_fraud_count_"):
        return f"merchant had {_count(value, 'confirmed fraud')} in the {window} before the label delay"
    if name.startswith("merchant_fraud_share_"):
        return f"{value:.0%} of this merchant's labeled transactions ({window}) were fraud"
    return _describe_moment(name, value)


def _describe_moment(name: str, value: float) -> str:
    if name == "hour_of_day":
        return f"made at {value:02.0f}:00 UTC"
    if name == "is_night":
        return "made at night" if value else "made during the day"
    if name == "is_weekend":
        return "made on a weekend" if value else "made on a weekday"
    if name == "channel":
        labels = {v: k for k, v in CHANNEL_CODES.items()}
        return f"channel {labels.get(int(value)) or 'not given'}"
    return f"{name} = {value:g}"


def shown(value: float | None) -> str:
    """A feature value for a table of values: whole numbers without decimals, others to at most 4, "—" for
    missing. (Django's floatformat keeps trailing zeros: 354.02 showed as "354.0200".)"""
    if value is None or value != value:
        return "—"
    if value == int(value):
        return f"{value:.0f}"
    return f"{value:.4f}".rstrip("0").rstrip(".")


def _count(value: float, noun: str) -> str:
    """A count with its noun in the right number: 1 transaction, 3 transactions."""
    return f"{value:.0f} {noun}{'' if value == 1 else 's'}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * HOUR:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * DAY:
        return f"{seconds / HOUR:.1f} h"
    return f"{seconds / DAY:.1f} days"
