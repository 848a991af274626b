"""What the service stores, by responsibility: traffic (transactions, merchant hours), review (cases and
their audit trail), model versions, and access (API keys, allow/block lists). Imported here, as Django and the
migrations expect them."""

from scoring.models.access import ApiKey, ApiKeyQuerySet, ListEntity, ListEntry, ListEntryQuerySet, ListKind, hash_key
from scoring.models.jobs import Job, JobFile, JobKind, JobQuerySet, JobState
from scoring.models.review import ALERT, OPENED, Case, CaseEvent, CaseQuerySet, CaseStatus, ReasonCode, due_after
from scoring.models.rules import ModelChange, ModelChangeKind, Rule, RuleQuerySet, RuleStatus, RuleVersion
from scoring.models.traffic import (
    FEED_LOOKBACK,
    IMPORTED,
    Channel,
    Decision,
    LabelSource,
    MerchantHour,
    Transaction,
    TransactionQuerySet,
)
from scoring.models.versions import ActiveModelDeletion, ModelVersion, ModelVersionQuerySet
from scoring.models.webhooks import (
    DeliveryStatus,
    EventType,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from scoring.storage.fields import FeatureValuesField  # migration 0007 names it here

__all__ = [
    "ALERT",
    "FEED_LOOKBACK",
    "IMPORTED",
    "OPENED",
    "ActiveModelDeletion",
    "ApiKey",
    "ApiKeyQuerySet",
    "Case",
    "CaseEvent",
    "CaseQuerySet",
    "CaseStatus",
    "Channel",
    "Decision",
    "DeliveryStatus",
    "EventType",
    "FeatureValuesField",
    "Job",
    "JobFile",
    "JobKind",
    "JobQuerySet",
    "JobState",
    "LabelSource",
    "ListEntity",
    "ListEntry",
    "ListEntryQuerySet",
    "ListKind",
    "MerchantHour",
    "ModelChange",
    "ModelChangeKind",
    "ModelVersion",
    "ModelVersionQuerySet",
    "ReasonCode",
    "Rule",
    "RuleQuerySet",
    "RuleStatus",
    "RuleVersion",
    "Transaction",
    "TransactionQuerySet",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "due_after",
    "hash_key",
]
