"""Ground truth after the fact: chargebacks and confirmations from the payment side."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from scoring.models import Transaction


def record(*, external_id: str, is_fraud: bool, reported_at: datetime | None = None) -> Transaction | None:
    """Label a stored transaction; the same label again changes nothing. None for an unknown id."""
    tx = Transaction.objects.filter(external_id=external_id).first()
    if tx is None:
        return None
    if tx.is_fraud != is_fraud or tx.labeled_at is None:
        tx.is_fraud = is_fraud
        tx.labeled_at = reported_at or timezone.now()
        tx.save(update_fields=["is_fraud", "labeled_at"])
    return tx
