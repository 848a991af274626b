"""A real browser on a real daphne process: a claim lapsing while the queue and the case page are open, overdue
cases marked in words and colour, and screenshots of a case page with its due time."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import (
    ALICE,
    CHROMIUM,
    FLAGGED_AMOUNT,
    WAIT_MS,
    Desk,
    free_port,
    outside_the_browser_loop,
    server_process,
    wait_until_live,
)

if not CHROMIUM.exists():
    pytest.skip(
        f"browser tests need Debian's chromium at {CHROMIUM} (`make test` installs it)", allow_module_level=True
    )

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
BLOCK_RED = "rgb(196, 36, 43)"  # app.css's --block in the light theme


@pytest.fixture
def shared_layer(settings: Any) -> Iterator[bool]:
    """One channel layer for this test process and the server, as the desk worker and the web processes share
    Redis in production: the lapses this test runs reach the server's sockets. Without REDIS_URL, a Redis of the
    test's own; False when there is none to start."""
    if settings.REDIS_URL:
        yield True
        return
    if not os.access(REDIS_SERVER, os.X_OK):
        yield False
        return
    from tests.e2e.test_server import start_redis

    port = free_port()
    redis = start_redis(port)
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [settings.REDIS_URL], "prefix": "deadlines"},
        }
    }
    try:
        yield True
    finally:
        redis.terminate()
        redis.wait(timeout=10)


@pytest.fixture
def daphne_server(shared_layer: bool, transactional_db: Any, model_version: Any, tmp_path: Path) -> Iterator[str]:
    with server_process(port=free_port(), log_path=tmp_path / "server.log") as base:
        yield base


def lapse_later(minutes: float) -> list[int]:
    """The desk worker's round as if `minutes` had passed."""
    from django.utils import timezone

    from scoring import cases

    return outside_the_browser_loop(lambda: cases.lapse_idle_claims(now=timezone.now() + timedelta(minutes=minutes)))


def due_ago(case_id: int, *, hours: float) -> None:
    from django.utils import timezone

    from scoring.models import Case

    when = timezone.now() - timedelta(hours=hours)
    outside_the_browser_loop(lambda: Case.objects.filter(pk=case_id).update(due_at=when))


def test_a_lapsed_claim_shows_unclaimed_on_the_open_queue_and_case_page_without_a_reload(
    shared_layer: bool, desk: Desk
):
    if not shared_layer:
        pytest.skip(
            "a lapse run by this test reaches the server's pages only through Redis (REDIS_URL or redis-server)"
        )
    case_id = desk.post(external_id="lapse-1", amount=FLAGGED_AMOUNT)["case_id"]
    queue = desk.login(desk.context(), ALICE)
    queue.goto("/cases/")
    wait_until_live(queue)
    queue.click(f"#case-{case_id}-claim")
    row = queue.locator(f"#case-{case_id}")
    expect(row).to_have_attribute("data-assignee", "alice", timeout=WAIT_MS)
    case_page = queue.context.new_page()
    case_page.goto(f"/cases/{case_id}/")
    wait_until_live(case_page)
    expect(case_page.locator("#claim-lapse")).to_contain_text("Your claim lapses at")
    for page in (queue, case_page):
        page.evaluate("window.notReloaded = true")

    assert lapse_later(31) == [case_id]

    expect(row).to_have_attribute("data-assignee", "", timeout=WAIT_MS)
    expect(row.locator(".claim")).to_have_text("unclaimed")
    expect(queue.locator(f"#case-{case_id}-claim")).to_be_visible()
    expect(case_page.locator("#audit")).to_contain_text("returned the case to the queue", timeout=WAIT_MS)
    expect(case_page.locator("#audit")).to_contain_text("alice had not acted on it for 30 minutes")
    expect(case_page.locator("#claim-lapse")).to_have_count(0)
    expect(case_page.locator(f"#case-{case_id} .claim")).to_have_text("unclaimed")
    assert queue.evaluate("window.notReloaded") is True
    assert case_page.evaluate("window.notReloaded") is True


def test_an_overdue_case_is_marked_overdue_in_words_and_colour_in_the_queue_and_on_its_page(desk: Desk):
    overdue = desk.post(external_id="overdue-1", amount=FLAGGED_AMOUNT, card_id="card-late")["case_id"]
    on_time = desk.post(external_id="on-time-1", amount=FLAGGED_AMOUNT, card_id="card-fresh")["case_id"]
    due_ago(overdue, hours=1.5)
    page = desk.login(desk.context(), ALICE)

    page.goto("/cases/")
    mark = page.locator(f"#case-{overdue} .overdue-mark")
    expect(mark).to_have_text("Overdue")
    expect(page.locator(f"#case-{overdue} .case-due")).to_contain_text("by 1 h 30 min")
    assert mark.evaluate("el => getComputedStyle(el).backgroundColor") == BLOCK_RED
    expect(page.locator(f"#case-{on_time} .case-due")).to_contain_text(" h 59 min")
    expect(page.locator(f"#case-{on_time} .overdue-mark")).to_have_count(0)

    page.goto(f"/cases/{overdue}/")
    expect(page.locator("#case-deadlines .overdue-mark")).to_have_text("Overdue")
    expect(page.locator("#case-deadlines")).to_contain_text("by 1 h 30 min")


def test_screenshots_of_a_case_page_with_its_due_time_and_an_overdue_queue_are_saved(desk: Desk, screenshot_dir: Path):
    claimed = desk.post(external_id="due-1", amount=FLAGGED_AMOUNT, card_id="card-due")["case_id"]
    overdue = desk.post(external_id="due-2", amount="1200.00", card_id="card-late")["case_id"]
    due_ago(overdue, hours=2.25)

    for width in (1440, 390):
        page = desk.login(desk.context(width=width), ALICE)
        page.goto("/cases/")
        if width == 1440:
            page.click(f"#case-{claimed}-claim")
            expect(page.locator(f"#case-{claimed}")).to_have_attribute("data-assignee", "alice", timeout=WAIT_MS)
        expect(page.locator(f"#case-{overdue} .overdue-mark")).to_be_visible()
        page.screenshot(path=str(screenshot_dir / f"queue-deadlines-{width}.png"), full_page=True)
        for name, case_id in (("case-due", claimed), ("case-overdue", overdue)):
            page.goto(f"/cases/{case_id}/")
            expect(page.locator("#case-deadlines")).to_be_visible()
            path = screenshot_dir / f"{name}-{width}.png"
            page.screenshot(path=str(path), full_page=True)
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        expect(page.locator("#case-deadlines")).to_contain_text("Overdue")
        page.goto(f"/cases/{claimed}/")
        expect(page.locator("#claim-lapse")).to_contain_text("Your claim lapses at")
