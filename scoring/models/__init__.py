"""What the service stores, by responsibility: traffic (transactions, merchant hours), review (cases and
their audit trail), model versions, and access (API keys, allow/block lists). Imported here, as Django and the
migrations expect them."""

from scoring.models.access import ApiKey, ApiKeyQuerySet, ListEntity, ListEntry, ListEntryQuerySet, ListKind, hash_key
from scoring.models.review import Case, CaseEvent, CaseQuerySet, CaseStatus
from scoring.models.traffic import (
    FEED_LOOKBACK,
    IMPORTED,
    Channel,
    Decision,
    MerchantHour,
    Transaction,
    TransactionQuerySet,
)
from scoring.models.versions import ActiveModelDeletion, ModelVersion, ModelVersionQuerySet
from scoring.storage.fields import FeatureValuesField  # migration 0007 names it here

__all__ = [
    "FEED_LOOKBACK",
    "IMPORTED",
    "ActiveModelDeletion",
    "ApiKey",
    "ApiKeyQuerySet",
    "Case",
    "CaseEvent",
    "CaseQuerySet",
    "CaseStatus",
    "Channel",
    "Decision",
    "FeatureValuesField",
    "ListEntity",
    "ListEntry",
    "ListEntryQuerySet",
    "ListKind",
    "MerchantHour",
    "ModelVersion",
    "ModelVersionQuerySet",
    "Transaction",
    "TransactionQuerySet",
    "hash_key",
]
