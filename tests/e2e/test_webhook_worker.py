"""Webhooks through the Procfile's worker as a real process: a worker killed (SIGKILL) while a slow receiver is
answering leaves the delivery to the next worker, which delivers it; the receiver handles it once, by its id."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from scoring import cases, webhooks
from scoring.models import DeliveryStatus, EventType, WebhookDelivery
from tests.dashboards.conftest import make_case
from tests.e2e.conftest import ROOT
from tests.e2e.test_worker import process_env, procfile_command
from tests.scoring.webhook_receiver import Receiver, receiving

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
TIMEOUT = "2"  # WEBHOOK_TIMEOUT_SECONDS: the receiver's slow answer fits in it; a claim lasts three timeouts and 5 s


@pytest.fixture(autouse=True)
def _fresh_subscriptions():
    webhooks.subscriptions.reset()
    yield
    webhooks.subscriptions.reset()  # this process's cache names this test's endpoint: not for the next test


def start_worker(log: Path) -> subprocess.Popen[bytes]:
    env = process_env(WORKER_TICK_SECONDS="0.2", WEBHOOK_TIMEOUT_SECONDS=TIMEOUT, WEBHOOK_RETRY_BASE_SECONDS="0.1")
    with open(log, "ab") as out:
        return subprocess.Popen(procfile_command("worker"), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait(condition: Callable[[], bool], *, seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s; the worker said:\n{log.read_text()}"
        time.sleep(0.05)


def test_a_worker_killed_mid_delivery_leaves_it_to_the_next_which_delivers_it_once(lead: User, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    with receiving(Receiver(slow_seconds=1.5)) as receiver:
        endpoint = webhooks.register_endpoint(receiver.url, events=[EventType.CASE_RESOLVED], user=None)
        receiver.secret = endpoint.secret
        cases.resolve(make_case().id, user=lead, is_fraud=True)

        first = start_worker(log)
        try:
            wait(receiver.arrived.is_set, seconds=30, log=log)  # the request is in, its answer is 1.5 s away
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        finally:
            if first.poll() is None:
                first.kill()
        delivery = WebhookDelivery.objects.get()
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 0)  # nothing recorded, still owed

        second = start_worker(log)
        try:
            wait(lambda: WebhookDelivery.objects.get().status == DeliveryStatus.SUCCEEDED, seconds=40, log=log)
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=20) == 0
        finally:
            if second.poll() is None:
                second.kill()

    delivery.refresh_from_db()
    assert delivery.attempts == 1  # the killed worker's request was never recorded; the second one's was
    assert list(receiver.handled) == [delivery.event_id]  # handled once
    assert receiver.repeats == [delivery.event_id]  # it did arrive twice: at least once, never lost
    assert receiver.unverified == []
