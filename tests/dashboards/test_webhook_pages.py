"""The leads' webhook pages and the endpoints' admin: registering shows the secret once, failing endpoints stand out,
the delivery log shows every attempt, a lead replays and disables; analysts are refused."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client
from django.utils import timezone

from scoring import webhooks
from scoring.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from scoring.roles import ensure_roles, make_lead
from scoring.webhook_sending import Answer

pytestmark = pytest.mark.django_db
URL = "https://hooks.example.com/fraud"


@pytest.fixture
def lead_client(django_user_model) -> Client:
    ensure_roles()
    user = django_user_model.objects.create_user("lena")
    make_lead(user)
    client = Client()
    client.force_login(user)
    return client


def delivered(endpoint: WebhookEndpoint, *answers: Answer) -> WebhookDelivery:
    event = WebhookEvent.objects.create(type="case.resolved", payload={"type": "case.resolved"})
    delivery = WebhookDelivery.objects.create(
        event=event, endpoint=endpoint, retry_until=webhooks.retry_until(timezone.now())
    )
    for answer in answers:
        webhooks.settle(delivery.pk, answer=answer, at=timezone.now())
    return delivery


def test_registering_shows_the_secret_once_and_never_again(lead_client):
    answer = lead_client.post("/webhooks/", {"url": URL, "events": ["case.resolved", "label.received"]})

    endpoint = WebhookEndpoint.objects.get()
    assert answer.status_code == 201
    assert endpoint.secret in answer.content.decode()
    assert endpoint.events == ["case.resolved", "label.received"] and endpoint.created_by.username == "lena"
    for page in ("/webhooks/", f"/webhooks/{endpoint.id}/", f"/admin/scoring/webhookendpoint/{endpoint.id}/change/"):
        assert endpoint.secret not in lead_client.get(page).content.decode(), page
    assert LogEntry.objects.get(object_id=str(endpoint.id)).change_message.startswith("registered for")


def test_a_registration_without_events_or_with_a_bad_url_is_refused_with_the_reason(lead_client):
    answer = lead_client.post("/webhooks/", {"url": "ftp://files.example.com/", "events": []})

    assert answer.status_code == 422
    page = answer.content.decode()
    assert "is not an http:// or https:// URL" in page and "This field is required." in page
    assert not WebhookEndpoint.objects.exists()


def test_an_analyst_is_refused_the_pages_and_registers_nothing(alice_client):
    assert alice_client.get("/webhooks/").status_code == 403
    refused = alice_client.post("/webhooks/", {"url": URL, "events": ["case.resolved"]})

    assert refused.status_code == 403 and b"managed by leads" in refused.content
    assert not WebhookEndpoint.objects.exists()


def test_a_failing_endpoint_is_marked_on_the_list_and_a_healthy_one_is_not(lead_client):
    failing = webhooks.register_endpoint("https://down.example.com/", events=["case.resolved"], user=None)
    healthy = webhooks.register_endpoint("https://up.example.com/", events=["case.resolved"], user=None)
    delivered(failing, Answer(status=404, duration_ms=5, body_start="no such hook"))
    delivered(healthy, Answer(status=204, duration_ms=5))

    page = lead_client.get("/webhooks/").content.decode()

    failing_row = page.split(f'id="endpoint-{failing.id}"')[1].split("</tr>")[0]
    healthy_row = page.split(f'id="endpoint-{healthy.id}"')[1].split("</tr>")[0]
    assert 'data-health="failing"' in failing_row and "1 failed in the last day" in failing_row
    assert 'data-health="healthy"' in healthy_row
    assert "1 failing" in page


def test_the_delivery_log_shows_every_attempt_with_status_time_and_first_bytes(lead_client):
    endpoint = webhooks.register_endpoint(URL, events=["case.resolved"], user=None)
    delivery = delivered(
        endpoint,
        Answer(status=None, duration_ms=10_000, error="timed out"),
        Answer(status=503, duration_ms=42, body_start='{"error": "maintenance"}'),
    )

    page = lead_client.get(f"/webhooks/{endpoint.id}/").content.decode()

    item = page.split(f'id="delivery-{delivery.id}"')[1].split("</li>")[0]
    assert delivery.event_id in item and "retrying" in item
    assert "timed out" in item and "10000 ms" in item
    assert "HTTP 503" in item and "42 ms" in item and "{&quot;error&quot;: &quot;maintenance&quot;}" in item


def test_the_log_shows_failed_deliveries_alone_when_asked(lead_client):
    endpoint = webhooks.register_endpoint(URL, events=["case.resolved"], user=None)
    failed = delivered(endpoint, Answer(status=410, duration_ms=3))
    fine = delivered(endpoint, Answer(status=200, duration_ms=3))

    page = lead_client.get(f"/webhooks/{endpoint.id}/?show=failed").content.decode()

    assert f'id="delivery-{failed.id}"' in page and f'id="delivery-{fine.id}"' not in page


def test_a_lead_replays_a_delivery_from_its_log(lead_client):
    endpoint = webhooks.register_endpoint(URL, events=["case.resolved"], user=None)
    delivery = delivered(endpoint, Answer(status=400, duration_ms=3))

    answer = lead_client.post(f"/webhooks/deliveries/{delivery.id}/replay")

    assert answer.status_code == 302 and answer["Location"] == f"/webhooks/{endpoint.id}/#delivery-{delivery.id}"
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING and delivery.next_attempt_at <= timezone.now()
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 1  # the log keeps the failed attempt


def test_a_lead_disables_and_enables_an_endpoint(lead_client):
    endpoint = webhooks.register_endpoint(URL, events=["case.resolved"], user=None)

    lead_client.post(f"/webhooks/{endpoint.id}/disable")
    endpoint.refresh_from_db()
    assert endpoint.is_enabled is False
    assert 'data-health="off"' in lead_client.get("/webhooks/").content.decode()

    lead_client.post(f"/webhooks/{endpoint.id}/enable")
    endpoint.refresh_from_db()
    assert endpoint.is_enabled is True


def test_adding_an_endpoint_in_the_admin_shows_its_secret_once_and_writes_one_history_entry(lead_client):
    form = {"url": URL, "description": "ledger", "events": ["label.received"], "is_enabled": "on"}

    answer = lead_client.post("/admin/scoring/webhookendpoint/add/", form)

    endpoint = WebhookEndpoint.objects.get()
    assert answer.status_code == 201 and endpoint.secret in answer.content.decode()
    assert endpoint.events == ["label.received"] and endpoint.created_by.username == "lena"
    assert LogEntry.objects.filter(object_id=str(endpoint.id)).count() == 1
    assert endpoint.secret not in lead_client.get("/admin/scoring/webhookendpoint/").content.decode()


def test_changing_an_endpoint_in_the_admin_keeps_its_secret_and_writes_one_history_entry(lead_client):
    endpoint = webhooks.register_endpoint(URL, events=["case.resolved"], user=None)
    form = {"url": URL + "/v2", "description": "", "events": ["case.resolved", "model.activated"]}  # unticked: off

    answer = lead_client.post(f"/admin/scoring/webhookendpoint/{endpoint.id}/change/", form)

    changed = WebhookEndpoint.objects.get()
    assert answer.status_code == 302
    assert (changed.url, changed.events, changed.is_enabled) == (
        URL + "/v2",
        ["case.resolved", "model.activated"],
        False,
    )
    assert changed.secret == endpoint.secret
    messages = list(
        LogEntry.objects.filter(object_id=str(endpoint.id)).order_by("id").values_list("change_message", flat=True)
    )
    assert messages == [f"now {URL}/v2 for case.resolved, model.activated", "disabled"]
