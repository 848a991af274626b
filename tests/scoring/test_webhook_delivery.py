"""Webhook delivery against a real receiver on 127.0.0.1: signed, retried through failures and a hang, at least once
and handled once by id; an endpoint that hangs never holds up another's deliveries."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from scoring import cases, ingest, labels, webhooks
from scoring.models import DeliveryStatus, EventType, Transaction, WebhookAttempt, WebhookDelivery, WebhookEvent
from scoring.webhook_senders import senders
from tests.scoring.conftest import item
from tests.scoring.webhook_receiver import HANG, Receiver, receiving

pytestmark = pytest.mark.django_db(transaction=True)  # the senders' threads read what the test committed


@pytest.fixture(autouse=True)
def _fast_retries(settings, transactional_db):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 0.05
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    settings.WEBHOOK_CONCURRENCY = 4
    webhooks.subscriptions.reset()
    yield
    senders.join()  # before the database is emptied under them
    webhooks.subscriptions.reset()


def register(receiver: Receiver, *events: str) -> None:
    endpoint = webhooks.register_endpoint(receiver.url, events=list(events) or EventType.values, user=None)
    receiver.secret = endpoint.secret


def until(done: Callable[[], bool], *, seconds: float, sweep: bool = True) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, f"not within {seconds} s"
        if sweep:
            webhooks.sweep(wait=True)
        time.sleep(0.05)


def all_delivered() -> bool:
    return not WebhookDelivery.objects.exclude(status=DeliveryStatus.SUCCEEDED).exists()


def test_every_event_arrives_signed_through_failures_and_a_hang_and_is_handled_once(lead, model_version):
    script: list[int | str] = [500, 503, HANG, 429, 502]
    with receiving(Receiver(script=list(script), hang_seconds=1.5)) as receiver:
        register(receiver)
        ingest.store([item(external_id=f"big-{n}", amount="9000.00", card_id=f"card-{n}") for n in range(3)])
        ingest.store([item(external_id="small", amount="5.00")])
        case_id = Transaction.objects.get(external_id="big-0").case_id
        cases.resolve(case_id, user=lead, is_fraud=True)
        labels.record(external_id="big-1", is_fraud=True)

        until(
            lambda: WebhookEvent.objects.filter(fanned_out_at__isnull=True).count() == 0 and all_delivered(), seconds=30
        )

    events = dict(WebhookEvent.objects.values_list("id", "type"))
    assert sorted(events.values()) == sorted(["transaction.flagged"] * 3 + ["case.resolved"] * 2 + ["label.received"])
    assert receiver.handled.keys() == events.keys()  # every event, each handled once by its id
    assert receiver.unverified == []
    assert {receiver.handled[i]["type"] for i in events} == set(events.values())
    assert len(receiver.requests) == len(events) + len(script)  # the failures were tried again, nothing more
    statuses = list(WebhookAttempt.objects.values_list("status_code", flat=True))
    assert sorted(s for s in statuses if s and s >= 400) == [429, 500, 502, 503]
    assert WebhookAttempt.objects.get(status_code=None).error == "timed out"


def test_a_rolled_back_change_sends_nothing(lead):
    from django.db import transaction

    from tests.dashboards.conftest import make_case

    case = make_case()
    with receiving(Receiver()) as receiver:
        register(receiver, EventType.CASE_RESOLVED)
        with pytest.raises(RuntimeError), transaction.atomic():
            cases.resolve(case.id, user=lead, is_fraud=True)
            raise RuntimeError("something after the verdict failed")

        webhooks.sweep(wait=True)

    assert receiver.requests == []
    assert WebhookEvent.objects.count() == 0


def test_an_endpoint_that_hangs_never_holds_up_another_endpoints_deliveries(model_version, settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 3
    with receiving(Receiver(script=[HANG] * 10, hang_seconds=4)) as stuck, receiving(Receiver()) as fine:
        register(stuck, EventType.TRANSACTION_FLAGGED)
        register(fine, EventType.TRANSACTION_FLAGGED)
        ingest.store([item(external_id=f"big-{n}", amount="9000.00", card_id=f"card-{n}") for n in range(4)])
        started = time.monotonic()

        webhooks.sweep()  # the senders run on: nothing waits for them here
        until(lambda: len(fine.handled) == 4, seconds=2.5, sweep=False)

        took = time.monotonic() - started
        assert took < settings.WEBHOOK_TIMEOUT_SECONDS  # before the stuck endpoint's first request even timed out
        assert len(stuck.requests) == 2  # two at a time to one endpoint; the rest wait their turn
