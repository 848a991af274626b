"""The webhook outbox: which changes record which events, in their own transaction, and only while an endpoint
wants them; endpoints as leads register them; the retry schedule; the signature."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone
from standardwebhooks import Webhook

from scoring import cases, ingest, labels, webhook_sending, webhooks
from scoring.models import (
    DeliveryStatus,
    EventType,
    ModelVersion,
    Rule,
    RuleStatus,
    Transaction,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from scoring.rules import check
from tests.dashboards.conftest import make_case
from tests.scoring.conftest import item

pytestmark = pytest.mark.django_db
URL = "https://hooks.example.com/fraud"


@pytest.fixture(autouse=True)
def _fresh_subscriptions():
    webhooks.subscriptions.reset()
    yield
    webhooks.subscriptions.reset()


def endpoint(*events: str, enabled: bool = True) -> WebhookEndpoint:
    registered = webhooks.register_endpoint(URL, events=list(events) or EventType.values, user=None, enabled=enabled)
    webhooks.subscriptions.reset()  # as the commit does (a test's transaction never commits)
    return registered


def flagged_and_approved() -> None:
    ingest.store([item(external_id="big", amount="9000.00"), item(external_id="small", amount="5.00", card_id="c2")])


def test_ingest_without_endpoints_writes_no_event_rows(model_version):
    flagged_and_approved()

    assert Transaction.objects.filter(decision__in=["review", "block"]).count() == 1
    assert WebhookEvent.objects.count() == 0


def test_ingest_records_no_event_for_a_disabled_endpoint_or_one_that_wants_other_events(model_version):
    endpoint(EventType.TRANSACTION_FLAGGED, enabled=False)
    endpoint(EventType.CASE_RESOLVED)

    flagged_and_approved()

    assert WebhookEvent.objects.count() == 0


def test_ingest_records_one_flagged_event_per_flagged_row_in_its_own_write(model_version):
    endpoint(EventType.TRANSACTION_FLAGGED)

    flagged_and_approved()

    (event,) = WebhookEvent.objects.all()
    flagged = Transaction.objects.get(external_id="big")
    assert (event.type, event.transaction_id, event.fanned_out_at) == ("transaction.flagged", flagged.id, None)
    assert event.id.startswith("msg_") and len(event.id) == 36
    assert event.created_at == flagged.received_at


def test_a_flagged_events_body_is_rendered_from_the_stored_row_at_fan_out(model_version):
    endpoint(EventType.TRANSACTION_FLAGGED)
    flagged_and_approved()

    assert webhooks.fan_out() == 1

    event, tx = WebhookEvent.objects.get(), Transaction.objects.get(external_id="big")
    assert event.fanned_out_at is not None
    assert event.payload["type"] == "transaction.flagged" and event.payload["version"] == 1
    assert event.payload["id"] == event.id
    data = event.payload["data"]
    assert data["id"] == tx.id and data["external_id"] == "big" and data["case_id"] == tx.case_id
    assert (data["decision"], data["score"], data["rules"]) == (tx.decision, tx.score, [])
    assert (data["amount"], data["currency"]) == ("9000.00", "EUR")
    assert [r["feature"] for r in data["reasons"]] == [r["feature"] for r in tx.reasons]
    assert WebhookDelivery.objects.get().status == DeliveryStatus.PENDING


def test_a_transaction_a_rule_flagged_is_sent_with_the_rules_that_hit(model_version):
    model_version.review_threshold = model_version.block_threshold = 1.01  # the model flags nothing
    model_version.save()
    Rule.objects.create(
        name="huge", condition=check("amount > 5000.0").source, action="review", status=RuleStatus.ACTIVE
    )
    Rule.objects.create(
        name="watching", condition=check("amount > 5000.0").source, action="block", status=RuleStatus.SHADOW
    )
    endpoint(EventType.TRANSACTION_FLAGGED)
    flagged_and_approved()

    assert webhooks.fan_out() == 1

    data = WebhookEvent.objects.get().payload["data"]
    assert (data["external_id"], data["decision"]) == ("big", "review")
    assert data["rules"] == [{"name": "huge", "action": "review"}]  # shadow rules are not told


def test_fan_out_makes_one_delivery_per_enabled_endpoint_that_wants_the_type(model_version):
    wants, other, off = endpoint(), endpoint(EventType.MODEL_ACTIVATED), endpoint()
    flagged_and_approved()
    off.is_enabled = False
    off.save()

    webhooks.fan_out()
    webhooks.fan_out()  # nothing new: nothing doubled

    assert list(WebhookDelivery.objects.values_list("endpoint_id", flat=True)) == [wants.id]
    assert other.deliveries.count() == 0


def test_resolving_a_case_records_case_resolved_with_verdict_reason_who_and_when(lead):
    endpoint(EventType.CASE_RESOLVED)
    case = make_case()

    cases.resolve(case.id, user=lead, is_fraud=True, note="stolen card")

    event = WebhookEvent.objects.get()
    data = event.payload["data"]
    assert event.type == "case.resolved"
    assert (data["case_id"], data["verdict"], data["resolved_by"], data["note"]) == (
        case.id,
        "fraud",
        "lead",
        "stolen card",
    )
    assert data["resolved_at"].endswith("Z") and data["reason_code"] is None
    assert data["transactions"][0]["is_fraud"] is True


def test_a_rolled_back_change_records_nothing(lead):
    endpoint()
    case = make_case()

    with pytest.raises(RuntimeError), transaction.atomic():
        cases.resolve(case.id, user=lead, is_fraud=True)
        assert WebhookEvent.objects.count() == 1
        raise RuntimeError("the change fails after the event was recorded")

    assert WebhookEvent.objects.count() == 0


def test_a_chargeback_records_label_received_and_resolves_the_case_and_a_repeat_records_nothing(model_version):
    endpoint(EventType.LABEL_RECEIVED, EventType.CASE_RESOLVED)
    flagged_and_approved()

    labels.record(external_id="big", is_fraud=True)
    labels.record(external_id="big", is_fraud=True)

    types = sorted(WebhookEvent.objects.values_list("type", flat=True))
    assert types == ["case.resolved", "label.received"]
    label = WebhookEvent.objects.get(type="label.received").payload["data"]
    assert (label["external_id"], label["is_fraud"], label["label_source"]) == ("big", True, "chargeback")
    resolved = WebhookEvent.objects.get(type="case.resolved").payload["data"]
    assert (resolved["resolved_by"], resolved["resolved_via"]) == (None, "chargeback feed")


def test_fraud_on_a_legitimate_verdict_records_case_overturned(lead, model_version):
    endpoint(EventType.CASE_OVERTURNED)
    flagged_and_approved()
    case_id = Transaction.objects.get(external_id="big").case_id
    cases.resolve(case_id, user=lead, is_fraud=False)

    labels.record(external_id="big", is_fraud=True)

    data = WebhookEvent.objects.get().payload["data"]
    assert (data["case_id"], data["verdict"], data["external_id"]) == (case_id, "legitimate", "big")


def test_activating_a_model_records_model_activated_with_the_version_it_replaced(model_version, tiny_artifact):
    endpoint(EventType.MODEL_ACTIVATED)
    fields = {f: getattr(model_version, f) for f in ("artifact", "features", "review_threshold", "block_threshold")}
    newer = ModelVersion.objects.create(version="newer", **fields)

    newer.activate()

    data = WebhookEvent.objects.get().payload["data"]
    assert (data["version"], data["previous_version"]) == ("newer", model_version.version)


def test_only_leads_register_endpoints_and_the_secret_is_a_standard_webhooks_secret(analyst, lead):
    with pytest.raises(PermissionDenied):
        webhooks.register_endpoint(URL, events=["case.resolved"], user=analyst)

    registered = webhooks.register_endpoint(URL, events=["case.resolved"], user=lead)

    assert registered.secret.startswith("whsec_") and registered.created_by == lead
    Webhook(registered.secret)  # the library reads it


@pytest.mark.parametrize(
    ("url", "events"),
    [("ftp://hooks.example.com/", ["case.resolved"]), (URL, []), (URL, ["case.deleted"]), ("not a url", ["x"])],
)
def test_an_endpoint_needs_an_http_url_and_known_events(url, events):
    with pytest.raises(ValueError):
        webhooks.register_endpoint(url, events=events, user=None)


def test_the_webhook_command_adds_an_endpoint_and_prints_its_secret_on_the_last_line():
    out = StringIO()

    call_command("webhook", "add", URL, "--events", "case.resolved,label.received", stdout=out)

    registered = WebhookEndpoint.objects.get()
    assert out.getvalue().splitlines()[-1] == registered.secret
    assert registered.events == ["case.resolved", "label.received"]


def test_the_signature_verifies_with_the_standard_webhooks_library():
    secret, body, now = WebhookEndpoint().secret, b'{"id": "msg_1"}', timezone.now()

    headers = webhook_sending.headers(secret, event_id="msg_1", body=body, at=now)

    assert Webhook(secret).verify(body, headers) == {"id": "msg_1"}
    assert headers["webhook-id"] == "msg_1" and headers["webhook-timestamp"] == str(int(now.timestamp()))


def test_backoff_doubles_with_jitter_up_to_an_hour(settings):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 10

    waits = [webhook_sending.backoff(n) for n in (1, 2, 3, 20)]

    assert 5 <= waits[0] <= 10 and 10 <= waits[1] <= 20 and 20 <= waits[2] <= 40
    assert 1800 <= waits[3] <= 3600


def test_retry_after_in_seconds_or_as_a_date():
    now = timezone.now().replace(microsecond=0)
    later = (now + timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT")

    assert webhook_sending.retry_after_seconds("120", now=now) == 120
    assert webhook_sending.retry_after_seconds(later, now=now) == 90
    assert webhook_sending.retry_after_seconds("soon", now=now) is None


def pending_delivery() -> WebhookDelivery:
    event = WebhookEvent.objects.create(type="case.resolved", payload={"id": "x"})
    return WebhookDelivery.objects.create(
        event=event, endpoint=endpoint(), retry_until=webhooks.retry_until(timezone.now())
    )


def answer(status: int | None, **fields) -> webhook_sending.Answer:
    return webhook_sending.Answer(status=status, duration_ms=3, **fields)


def test_a_429_waits_at_least_its_retry_after(settings):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 1
    delivery = pending_delivery()

    settled = webhooks.settle(delivery.id, answer=answer(429, retry_after="600"), at=timezone.now())

    assert settled.status == "pending" and settled.attempts == 1
    assert settled.next_attempt_at >= timezone.now() + timedelta(seconds=590)


@pytest.mark.parametrize("status", [400, 404, 410, 301])
def test_an_answer_that_would_be_the_same_again_fails_the_delivery_at_once(status):
    settled = webhooks.settle(pending_delivery().id, answer=answer(status), at=timezone.now())

    assert (settled.status, settled.last_status) == ("failed", status)


def test_retries_stop_when_the_next_would_be_past_the_retry_window():
    delivery = pending_delivery()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(retry_until=timezone.now() + timedelta(seconds=1))

    settled = webhooks.settle(delivery.id, answer=answer(None, error="timed out"), at=timezone.now())

    assert (settled.status, settled.last_error) == ("failed", "timed out")
    assert settled.attempt_log.get().error == "timed out"


def test_a_lead_replays_a_failed_delivery_with_a_fresh_retry_window(lead, analyst):
    delivery = pending_delivery()
    webhooks.settle(delivery.id, answer=answer(404), at=timezone.now())
    with pytest.raises(PermissionDenied):
        webhooks.replay(delivery.id, user=analyst)

    replayed = webhooks.replay(delivery.id, user=lead)

    assert replayed.status == "pending" and replayed.next_attempt_at <= timezone.now()
    assert replayed.retry_until > timezone.now() + timedelta(hours=23)
