"""The live page in a real browser: blocked amounts per currency, ids cut in the middle but whole when copied,
flagged score bars visible at any traffic, and filters that ask the server for older matching rows."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, WebSocketRoute, expect

from dashboards.stats import SEED_CACHE_SECONDS
from tests.dashboards.conftest import make_tx
from tests.e2e.conftest import ALICE, CHROMIUM, WAIT_MS, Desk, wait_until_live

if not CHROMIUM.exists():
    pytest.skip(
        f"browser tests need Debian's chromium at {CHROMIUM} (`make test` installs it)", allow_module_level=True
    )

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BLOCKED_CARD = "card-on-the-block-list"
LONG_ID = "tx_8f3a5e7d2b9c4a1f0e6d3c8b7a6f91c2"


@pytest.fixture
def blocked_card(transactional_db) -> str:
    """A card on the block list: its payments are blocked whatever the model says (made before the browser)."""
    from scoring.models import ListEntry

    ListEntry.objects.create(kind="block", entity="card", value=BLOCKED_CARD, reason="stolen")
    return BLOCKED_CARD


def blocked_figures(page: Page) -> list[list[str]]:
    """(currency, amount) of every blocked-amount entry, shown or behind "more", in the page's order."""
    return page.eval_on_selector_all(
        "#stat-blocked-amounts li[data-currency]",
        "items => items.map((li) => [li.dataset.currency, li.querySelector('[data-money]').dataset.money])",
    )


def test_blocked_amounts_are_shown_per_currency_live_and_after_a_reload(blocked_card: str, desk: Desk):
    page = desk.login(desk.context(), ALICE)
    wait_until_live(page)
    sent = [("100.00", "EUR"), ("250.00", "USD"), ("20.00", "EUR"), ("5.00", "USD"), ("40.00", "GBP")]
    sent += [("75.00", "PLN"), ("300.00", "SEK")]
    for i, (amount, currency) in enumerate(sent):
        body = desk.post(external_id=f"blocked-{i}", card_id=blocked_card, amount=amount, currency=currency)
        assert body["decision"] == "block"
    expected = [["EUR", "120.00"], ["USD", "255.00"], ["GBP", "40.00"], ["PLN", "75.00"], ["SEK", "300.00"]]

    for reload in (False, True):  # kept live by the pushed stream, then rendered by the server from stored rows
        shown = reloaded(page) if reload else page
        expect(shown.locator("#stat-blocked")).to_have_text("7", timeout=WAIT_MS)
        shown.wait_for_function("() => document.querySelectorAll('#blocked-top li').length === 3", timeout=WAIT_MS)
        assert blocked_figures(shown) == expected
        top = shown.locator("#blocked-top")
        expect(top.locator("li[data-currency=EUR]")).to_contain_text("120.00")
        expect(top.locator("li[data-currency=USD]")).to_contain_text("255.00")
        expect(shown.locator("#stat-blocked-amounts")).not_to_contain_text("790")  # the cross-currency sum
        expect(shown.locator("#blocked-rest")).to_be_hidden()
        shown.click("#blocked-more summary")
        expect(shown.locator("#blocked-more summary")).to_have_text("+2 more")
        expect(shown.locator("#blocked-rest li[data-currency=PLN]")).to_be_visible()
        expect(shown.locator("#blocked-rest li[data-currency=SEK]")).to_contain_text("300.00")


def reloaded(page: Page) -> Page:
    """The same page loaded afresh: its figures rendered by the server from the stored minutes (which it shares
    with pages that load within SEED_CACHE_SECONDS: waited out, so they are read after the posts)."""
    page.wait_for_timeout(SEED_CACHE_SECONDS * 1000 + 100)
    page.reload()
    wait_until_live(page)
    return page


def test_feed_ids_are_cut_in_the_middle_keep_their_ends_and_copy_whole(desk: Desk):
    context = desk.context()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=desk.base)
    page = desk.login(context, ALICE)
    wait_until_live(page)
    card_id, merchant_id = "card-4f1c9e2a7b3d8f60a5c1e9d27b31", "merchant/blue lagoon coffee 0042"
    posted = desk.post(external_id=LONG_ID, card_id=card_id, merchant_id=merchant_id)

    pushed = page.locator(f"#tx-{posted['id']}")
    expect(pushed).to_be_visible(timeout=WAIT_MS)
    for reload in (False, True):  # pushed, then rendered by the server
        row = reloaded(page).locator(f"#tx-{posted['id']}") if reload else pushed
        tx_id = row.locator("[data-field=external_id]")
        expect(tx_id).to_have_text(LONG_ID)
        expect(tx_id).to_have_attribute("title", LONG_ID)
        expect(tx_id.locator(".mid-tail")).to_have_text(LONG_ID[-6:])
        cut = tx_id.evaluate(
            """(el) => {
              const head = el.querySelector(".mid-head"), tail = el.querySelector(".mid-tail");
              const box = el.getBoundingClientRect(), end = tail.getBoundingClientRect();
              const tailShown = end.width > 0 && end.right <= box.right + 0.5;
              return { cut: head.scrollWidth > head.clientWidth, tailShown };
            }"""
        )
        assert cut == {"cut": True, "tailShown": True}  # the head gives way, the distinguishing end shows
        card_link = row.locator("[data-field=card_id]")
        expect(card_link).to_have_attribute("href", f"/cards/{card_id}/")
        expect(card_link).to_have_attribute("title", f"Card {card_id}")
        expect(row.locator("[data-field=merchant_id]")).to_have_attribute(
            "href", "/merchants/merchant/blue%20lagoon%20coffee%200042/"
        )

    tx_id = page.locator(f"#tx-{posted['id']} [data-field=external_id]")
    tx_id.evaluate("(el) => window.getSelection().selectAllChildren(el)")
    assert page.evaluate("() => window.getSelection().toString()") == LONG_ID
    page.keyboard.press("Control+C")
    assert page.evaluate("() => navigator.clipboard.readText()") == LONG_ID


# Fifteen minutes at 1,000 payments a second, 95 % approved: what the histogram must still tell apart.
BUSY_HISTOGRAM = [700_000, 95_000, 35_000, 15_000, 10_000, 18_000, 12_000, 7_000, 4_500, 3_500]
ONE_BLOCK_IN_900K = [899_998, 0, 0, 0, 0, 0, 0, 0, 0, 1]


def score_bars(page: Page) -> dict[str, list[float]]:
    """Drawn heights (CSS pixels) of the histogram's bars, by kind."""
    return page.eval_on_selector_all(
        "#chart-histogram rect.bar",
        """bars => {
          const out = { approve: [], review: [], block: [] };
          for (const bar of bars) out[bar.classList[1].replace("bar-", "")].push(bar.getBoundingClientRect().height);
          return out;
        }""",
    )


@pytest.mark.parametrize("width", [1440, 390])
def test_flagged_score_bars_stay_visible_beside_a_thousand_approvals_a_second(desk: Desk, width: int):
    context = desk.context(width=width)
    sockets: list[WebSocketRoute] = []
    context.route_web_socket(re.compile(r"/ws/dashboard/$"), lambda ws: sockets.append(ws))  # the test plays the server
    page = desk.login(context, ALICE)
    wait_until_live(page)

    def push_histogram(histogram: list[int]) -> None:
        sockets[-1].send(json.dumps({"type": "stats", "seq": 1, "histogram": histogram, "count_15m": sum(histogram)}))
        expect(page.locator("#chart-histogram svg")).to_have_attribute(
            "aria-label", re.compile(rf"of {sum(histogram)} transactions"), timeout=WAIT_MS
        )

    push_histogram(BUSY_HISTOGRAM)
    bars = score_bars(page)
    assert len(bars["review"]) == 4 and len(bars["block"]) == 1
    tallest = max(bars["approve"])
    for height in bars["review"] + bars["block"]:
        assert height >= 0.4 * tallest and height >= 20, bars  # on a linear scale: under one pixel

    push_histogram(ONE_BLOCK_IN_900K)
    bars = score_bars(page)
    assert bars["block"][0] >= 3, bars  # a single blocked payment still shows
    assert bars["review"] == [0, 0, 0, 0]


@pytest.fixture
def one_old_review_then_sixty_approvals(transactional_db) -> Any:
    """A review older than the 50 rows the live page starts with (made before the browser)."""
    early = make_tx(external_id="early-review", decision="review", score=0.72)
    for i in range(60):
        make_tx(external_id=f"later-{i}", decision="approve", score=0.05)
    return early


def test_a_filter_asks_the_server_and_shows_an_older_matching_row_the_page_did_not_hold(
    one_old_review_then_sixty_approvals: Any, blocked_card: str, desk: Desk
):
    early = one_old_review_then_sixty_approvals
    page = desk.login(desk.context(), ALICE)
    wait_until_live(page)
    expect(page.locator("#feed tr.tx")).to_have_count(50)
    expect(page.locator(f"#tx-{early.id}")).to_have_count(0)

    page.uncheck("#filter-approve")

    expect(page.locator(f"#tx-{early.id}")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator(f"#tx-{early.id} [data-field=external_id]")).to_have_text("early-review")
    expect(page.locator("tr.tx")).to_have_count(1)
    expect(page.locator("#feed-count")).to_have_text("1 shown")
    expect(page.locator("#feed-older-status")).to_have_text("No older matching transactions.")

    page.fill("#filter-min-score", "0.8")
    expect(page.locator("tr.tx")).to_have_count(0, timeout=WAIT_MS)
    expect(page.locator("#feed-empty [data-empty=filtered]")).to_be_visible()

    page.fill("#filter-min-score", "0")
    expect(page.locator(f"#tx-{early.id}")).to_be_visible(timeout=WAIT_MS)

    # Pushed rows are filtered in the browser: the blocked one shows, the approval pushed before it does not.
    approval = desk.post(external_id="pushed-approval", amount="12.00")
    blocked = desk.post(external_id="pushed-block", card_id=blocked_card)
    assert (approval["decision"], blocked["decision"]) == ("approve", "block")
    expect(page.locator(f"#tx-{blocked['id']}")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator(f"#tx-{approval['id']}")).to_have_count(0)
    expect(page.locator("tr.tx")).to_have_count(2)


@pytest.fixture
def sixty_reviews(transactional_db) -> list[int]:
    return [make_tx(external_id=f"review-{i}", decision="review", score=0.6 + i / 1000).id for i in range(60)]


def test_load_older_fetches_the_next_page_of_matching_rows_until_none_are_left(sixty_reviews: list[int], desk: Desk):
    page = desk.login(desk.context(), ALICE)
    wait_until_live(page)
    page.uncheck("#filter-approve")
    page.uncheck("#filter-block")
    expect(page.locator(f"#tx-{sixty_reviews[10]}")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("tr.tx")).to_have_count(50)
    expect(page.locator(f"#tx-{sixty_reviews[9]}")).to_have_count(0)

    page.click("#feed-load-older")

    expect(page.locator("#feed-older tr.tx")).to_have_count(10, timeout=WAIT_MS)
    shown = page.eval_on_selector_all("tr.tx", "rows => rows.map((row) => Number(row.dataset.id))")
    assert shown == sorted(sixty_reviews, reverse=True)  # every review once, newest first, no gap
    expect(page.locator("#feed-load-older")).to_be_hidden()
    expect(page.locator("#feed-older-status")).to_have_text("No older matching transactions.")


def test_screenshots_of_the_live_page_with_traffic(blocked_card: str, desk: Desk, screenshot_dir: Path):
    pages = {width: desk.login(desk.context(width=width), ALICE) for width in (1440, 390)}
    for page in pages.values():
        wait_until_live(page)
    currencies = ["EUR", "EUR", "USD", "GBP", "PLN", "SEK", "EUR", "USD"]
    posted = []
    for i in range(40):
        currency = currencies[i % len(currencies)]
        amount = ("8.90", "64.00", "230.00", "19.99", "1500.00", "9000.00", "42.50")[i % 7]
        card = blocked_card if i % 9 == 4 else f"card-{i % 11:04d}-{'7f3a' * 4}"
        external_id = f"sim0-live20261207-{i:09d}"
        posted.append(
            desk.post(external_id=external_id, card_id=card, merchant_id=f"m-{i % 5}", amount=amount, currency=currency)
        )
    for width, page in pages.items():
        expect(page.locator(f"#tx-{posted[-1]['id']}")).to_be_visible(timeout=WAIT_MS)
        page.wait_for_function(
            "n => Number(document.querySelector('#stat-count').dataset.number) >= n", arg=len(posted), timeout=WAIT_MS
        )
        page.wait_for_function("() => document.querySelectorAll('#blocked-top li').length > 0", timeout=WAIT_MS)
        path = screenshot_dir / f"live-{width}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000
