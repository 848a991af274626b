"""A real browser on a real daphne process, with the Procfile's worker: a lead sees a failing endpoint marked on the
webhooks page, registers a receiver and copies its secret, a flagged payment reaches the receiver signed (after a
503), and the delivery log shows both attempts; a replay sends it again. An analyst is refused the page."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import ALICE, CHROMIUM, FLAGGED_AMOUNT, LEAD, ROOT, WAIT_MS, Desk, free_port
from tests.e2e.test_worker import process_env, procfile_command
from tests.scoring.webhook_receiver import Receiver, receiving

if not CHROMIUM.exists():
    pytest.skip(
        f"browser tests need Debian's chromium at {CHROMIUM} (`make test` installs it)", allow_module_level=True
    )

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
DELIVERY_MS = 30_000  # the worker's round, a 503, a retry


@pytest.fixture
def down_endpoint(transactional_db) -> str:
    """An endpoint whose only delivery failed (its receiver refused it for good): ask before `desk`."""
    from django.utils import timezone

    from scoring import webhooks
    from scoring.models import WebhookDelivery, WebhookEvent
    from scoring.webhook_sending import Answer

    url = f"http://127.0.0.1:{free_port()}/gone"
    endpoint = webhooks.register_endpoint(url, events=["case.resolved"], description="old ledger", user=None)
    event = WebhookEvent.objects.create(type="case.resolved", payload={"type": "case.resolved"})
    delivery = WebhookDelivery.objects.create(event=event, endpoint=endpoint, retry_until=timezone.now())
    webhooks.settle(delivery.pk, answer=Answer(status=410, duration_ms=12, body_start="gone"), at=timezone.now())
    return url


@pytest.fixture
def worker(transactional_db, tmp_path: Path) -> Iterator[None]:
    env = process_env(WORKER_TICK_SECONDS="0.3", WEBHOOK_RETRY_BASE_SECONDS="0.2", WEBHOOK_TIMEOUT_SECONDS="3")
    with open(tmp_path / "worker.log", "wb") as log:
        proc = subprocess.Popen(procfile_command("worker"), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def until(condition: Callable[[], bool], *, page: Page) -> None:
    """Wait for what the worker does, on the page's clock (no ORM here: the browser's loop is running)."""
    waited = 0
    while not condition():
        assert waited < DELIVERY_MS, "the worker did not deliver in time"
        page.wait_for_timeout(250)
        waited += 250


def shoot(page: Page, name: str, screenshot_dir: Path, width: int) -> None:
    path = screenshot_dir / f"{name}-{width}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_lead_registers_a_receiver_that_gets_a_flagged_payment_and_reads_the_delivery_log(
    down_endpoint: str, worker: None, desk: Desk, screenshot_dir: Path
) -> None:
    with receiving(Receiver(script=[503])) as receiver:
        lead = desk.login(desk.context(), LEAD)
        lead.click("#nav-webhooks")
        expect(lead.locator("#webhook-alarm")).to_contain_text("1 failing")
        down_row = lead.locator(".webhook-row", has_text=down_endpoint)
        expect(down_row.locator("[data-health]")).to_have_text("Failing")
        expect(down_row).to_contain_text("1 failed in the last day")

        lead.fill("#webhook-url", receiver.url)
        lead.fill("#webhook-description", "Acquirer EU: holds flagged payments")
        lead.check("input[name=events][value='transaction.flagged']")
        lead.click("#webhook-submit")
        expect(lead.locator("#webhook-created")).to_be_visible()
        receiver.secret = lead.locator("#webhook-secret").inner_text().strip()
        assert receiver.secret.startswith("whsec_")
        for width in (1440, 390):
            lead.set_viewport_size({"width": width, "height": 900})
            shoot(lead, "webhooks-registered", screenshot_dir, width)
        lead.set_viewport_size({"width": 1440, "height": 900})

        flagged = desk.post(external_id="hook-1", amount=FLAGGED_AMOUNT)
        assert flagged["decision"] in ("review", "block")
        until(lambda: bool(receiver.handled), page=lead)  # the worker's round, the 503, its retry
        (payload,) = receiver.handled.values()
        assert payload["type"] == "transaction.flagged" and payload["data"]["external_id"] == "hook-1"
        assert payload["data"]["case_id"] == flagged["case_id"]

        lead.goto("/webhooks/")
        lead.locator(".webhook-row", has_text=receiver.url).get_by_role("link", name="Delivery log →").click()
        log_url = lead.url
        delivery = lead.locator(".webhook-delivery").first
        expect(delivery).to_have_attribute("data-status", "succeeded", timeout=WAIT_MS)
        expect(delivery.locator(".webhook-attempt")).to_have_count(2)
        expect(delivery.locator(".webhook-attempt").nth(0)).to_contain_text("HTTP 204")
        expect(delivery.locator(".webhook-attempt").nth(1)).to_contain_text("HTTP 503")
        expect(delivery.locator(".webhook-attempt").nth(1)).to_contain_text('{"received": false}')
        for width in (1440, 390):
            lead.set_viewport_size({"width": width, "height": 900})
            shoot(lead, "webhook-log", screenshot_dir, width)
        lead.goto("/webhooks/")
        shoot(lead, "webhooks", screenshot_dir, 390)

        lead.goto(log_url)
        lead.locator(".webhook-delivery").first.get_by_role("button", name="Replay").click()
        expect(lead.locator(".message-success")).to_contain_text("will be sent again")
        until(lambda: bool(receiver.repeats), page=lead)
        assert receiver.repeats == [payload["id"]]  # the same event id again: the receiver drops it
        assert receiver.unverified == []


def test_an_analyst_is_told_the_webhooks_are_the_leads(desk: Desk) -> None:
    page = desk.login(desk.context(), ALICE)
    response = page.goto("/webhooks/")

    assert response is not None and response.status == 403
    expect(page.locator("#leads-only-title")).to_have_text("Webhooks are managed by leads")
    expect(page.locator("#nav-webhooks")).to_have_count(0)
