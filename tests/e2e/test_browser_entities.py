"""A real browser on a real daphne process: from a case to its card's page and on to a merchant's, and the top bar's
search box to a merchant; screenshots of the card, merchant and search pages at desktop and phone widths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ALICE, CHROMIUM, FLAGGED_AMOUNT, WAIT_MS, Desk, outside_the_browser_loop, post

if not CHROMIUM.exists():
    pytest.skip(
        f"browser tests need Debian's chromium at {CHROMIUM} (`make test` installs it)", allow_module_level=True
    )

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def a_card_with_history(desk: Desk, card_id: str) -> int:
    """A few payments of one card at two merchants over the last hours, the last one flagged; its case id."""
    start = datetime.now(UTC) - timedelta(hours=6)
    for n, (amount, merchant) in enumerate([("18.40", "shop/berlin"), ("42.00", "cafe-7"), ("23.10", "shop/berlin")]):
        at = (start + timedelta(hours=n)).isoformat()
        desk.post(external_id=f"{card_id}-{n}", card_id=card_id, merchant_id=merchant, amount=amount, timestamp=at)
    flagged = desk.post(external_id=f"{card_id}-big", card_id=card_id, merchant_id="cafe-7", amount=FLAGGED_AMOUNT)
    return flagged["case_id"]


def test_from_the_case_page_to_the_card_page_and_on_to_a_merchant(desk: Desk):
    case_id = a_card_with_history(desk, "card/e2e 1")
    page = desk.login(desk.context(), ALICE)
    page.goto(f"/cases/{case_id}/")

    page.locator("#transaction").get_by_role("link", name="card/e2e 1").click()

    expect(page.locator("#entity-id")).to_have_text("card/e2e 1", timeout=WAIT_MS)
    expect(page.locator("#entity-transactions tbody tr")).to_have_count(4)
    expect(page.locator("#entity-chart .point-block")).to_have_count(1)
    expect(page.locator("#entity-cases")).to_contain_text(f"Case #{case_id}")
    expect(page.locator("#entity-figures")).to_contain_text("4")

    page.locator("#entity-linked").get_by_role("link", name="shop/berlin").click()

    expect(page.locator("h1")).to_contain_text("Merchant", timeout=WAIT_MS)
    expect(page.locator("#entity-id")).to_have_text("shop/berlin")
    expect(page.locator("#entity-transactions tbody tr")).to_have_count(2)


def test_the_search_box_goes_to_a_merchant_and_lists_partial_matches(desk: Desk):
    a_card_with_history(desk, "card-e2e-2")
    page = desk.login(desk.context(), ALICE)

    page.fill("#nav-search-q", "cafe-7")
    page.press("#nav-search-q", "Enter")

    expect(page.locator("#entity-id")).to_have_text("cafe-7", timeout=WAIT_MS)
    expect(page).to_have_url(f"{desk.base}/merchants/cafe-7/")

    page.fill("#nav-search-q", "card-e2e")
    page.press("#nav-search-q", "Enter")

    expect(page.locator("#search-cards")).to_contain_text("card-e2e-2", timeout=WAIT_MS)
    expect(page.locator("#search-transactions li")).to_have_count(4)
    page.locator("#search-transactions").get_by_role("link", name="card-e2e-2-1").click()
    expect(page.locator("#entity-transactions tr[aria-current='true']")).to_contain_text("card-e2e-2-1")


def test_screenshots_of_the_card_merchant_and_search_pages_are_saved(desk: Desk, screenshot_dir: Path):
    a_card_with_history(desk, "4000-0012-3456-7890")
    status, _ = post(
        desk.base, "/api/v1/labels", {"external_id": "4000-0012-3456-7890-1", "is_fraud": True}, desk.api_key
    )
    assert status == 200

    def block_the_card() -> None:
        from scoring.models import ListEntry

        ListEntry.objects.create(
            kind="block", entity="card", value="4000-0012-3456-7890", reason="stolen, cardholder called"
        )

    outside_the_browser_loop(block_the_card)

    for width in (1440, 390):
        page = desk.login(desk.context(width=width), ALICE)
        for name, path in (
            ("card", "/cards/4000-0012-3456-7890/"),
            ("merchant", "/merchants/cafe-7/"),
            ("search", "/search?q=4000"),
        ):
            page.goto(path)
            expect(page.locator("#main")).to_be_visible()
            shot = screenshot_dir / f"entities-{name}-{width}.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
