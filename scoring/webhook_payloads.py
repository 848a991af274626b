"""What each webhook event says, in one place: the versioned envelope and each type's `data` (docs/api.md,
"Webhooks", documents them field by field)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from scoring.results import iso, money

if TYPE_CHECKING:
    from scoring.models import Case, ModelVersion, Transaction

VERSION = 1  # a change that could break a receiver gets a new version; adding a field does not


def envelope(*, event_id: str, event_type: str, created_at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    """The body every delivery of an event sends."""
    return {"type": event_type, "version": VERSION, "id": event_id, "created_at": iso(created_at), "data": data}


def flagged(tx: Transaction) -> dict[str, Any]:
    """A transaction the model, a rule or a list flagged (review or block): the API's answer for it (with the
    active rules that hit, `rules`) and what was sent."""
    return {
        **tx.result(case_id=tx.case_id),
        "card_id": tx.card_id,
        "merchant_id": tx.merchant_id,
        "amount": money(tx.amount, tx.currency),
        "currency": tx.currency,
        "timestamp": iso(tx.timestamp),
    }


def resolved(case: Case) -> dict[str, Any]:
    """A verdict: by an analyst, or by the chargeback feed (then `resolved_by` is null and `resolved_via` says so)."""
    return {
        "case_id": case.id,
        "card_id": case.card_id,
        "verdict": case.status,
        "reason_code": case.reason.code if case.reason else None,
        "reason": case.reason.label if case.reason else None,
        "resolved_by": case.resolved_by.get_username() if case.resolved_by else None,
        "resolved_via": case.resolved_via or None,
        "resolved_at": iso(case.resolved_at) if case.resolved_at else None,
        "note": case.note,
        "transactions": _labels(case),
    }


def overturned(case: Case, *, external_id: str) -> dict[str, Any]:
    """A fraud label arrived for a case resolved as legitimate: the verdict stays, marked overturned."""
    return {
        "case_id": case.id,
        "card_id": case.card_id,
        "verdict": case.status,
        "resolved_by": case.resolved_by.get_username() if case.resolved_by else None,
        "resolved_at": iso(case.resolved_at) if case.resolved_at else None,
        "external_id": external_id,  # the transaction whose fraud label overturned it
        "overturned_at": iso(timezone.now()),
    }


def label(tx: Transaction) -> dict[str, Any]:
    """A label from the payment side (POST /api/v1/labels) that changed what the transaction is labeled."""
    return {
        "transaction_id": tx.id,
        "external_id": tx.external_id,
        "is_fraud": tx.is_fraud,
        "label_source": tx.label_source,
        "labeled_at": iso(tx.labeled_at),
        "case_id": tx.case_id,
    }


def activated(mv: ModelVersion, *, previous: str | None) -> dict[str, Any]:
    """A model version became the one every server scores with."""
    return {
        "version": mv.version,
        "previous_version": previous,
        "activated_at": iso(mv.activated_at),
        "review_threshold": mv.review_threshold,
        "block_threshold": mv.block_threshold,
        "metrics": {key: mv.metrics.get(key) for key in ("auc_roc", "average_precision") if key in (mv.metrics or {})},
    }


def _labels(case: Case) -> list[dict[str, Any]]:
    """The case's alerts with the labels they carry now (a verdict labels them all, bar those labeled otherwise)."""
    rows = case.alerts.order_by("id").values_list("id", "external_id", "is_fraud")
    return [{"id": pk, "external_id": external_id, "is_fraud": is_fraud} for pk, external_id, is_fraud in rows]
