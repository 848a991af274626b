"""Ground truth after the fact: chargebacks, confirmations from the payment side, analysts' verdicts."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from scoring import cases, storage, webhooks  # cases labels through apply_label below; both use the module
from scoring import webhook_payloads as payloads
from scoring.features import epoch_hour
from scoring.models import EventType, LabelSource, Transaction


class ReportedBeforeTransaction(ValueError):
    """A label cannot be reported before the payment it is about happened."""


def record(*, external_id: str, is_fraud: bool, reported_at: datetime | None = None) -> Transaction | None:
    """Label a stored transaction and let its case follow (scoring/cases.py); the same label again changes
    nothing. None for an unknown id."""
    with transaction.atomic():
        tx = Transaction.objects.select_related("case").filter(external_id=external_id).first()
        if tx is None:
            return None
        if reported_at is not None and reported_at < tx.timestamp:
            raise ReportedBeforeTransaction("is before the transaction's timestamp")
        if tx.is_fraud != is_fraud or tx.labeled_at is None:
            apply_label(tx, is_fraud=is_fraud, at=reported_at or timezone.now(), source=LabelSource.CHARGEBACK)
            webhooks.record(EventType.LABEL_RECEIVED, lambda: payloads.label(tx))  # a repeated label sends nothing
        if tx.case_id is not None:
            cases.follow_label(tx.case_id, is_fraud=is_fraud, external_id=tx.external_id)
        return tx


def apply_label(tx: Transaction, *, is_fraud: bool, at: datetime, source: str) -> None:
    """Store a label (from `source`: an analyst or the chargeback feed) and move it into the merchant's hourly
    fraud count, in one database transaction."""
    with transaction.atomic():
        was = Transaction.objects.select_for_update().values_list("is_fraud", flat=True).get(pk=tx.pk)
        tx.is_fraud, tx.labeled_at, tx.label_source = is_fraud, at, source
        tx.save(update_fields=["is_fraud", "labeled_at", "label_source"])
        delta = int(is_fraud) - int(was is True)  # the label moves in or out of its hour's fraud count
        if delta:
            storage.add_to_hours({(tx.merchant_id, epoch_hour(tx.timestamp)): (0, delta)})
