"""A real browser on a real daphne process: analysts log in, watch payments arrive and work the queue together."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from playwright.sync_api import ConsoleMessage, Error, expect

from tests.e2e.conftest import (
    ALICE,
    CHROMIUM,
    FLAGGED_AMOUNT,
    LEAD,
    WAIT_MS,
    Desk,
    outside_the_browser_loop,
    wait_until_live,
)

if not CHROMIUM.exists():
    pytest.skip(
        f"browser tests need Debian's chromium at {CHROMIUM} (`make test` installs it)", allow_module_level=True
    )

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_analyst_logs_in_and_sees_a_posted_transaction_appear_live(desk: Desk):
    page = desk.login(desk.context(), ALICE)
    expect(page.locator("#nav-user")).to_contain_text("alice")
    wait_until_live(page)

    small = desk.post(external_id="live-small", amount="12.00")
    flagged = desk.post(external_id="live-big", amount=FLAGGED_AMOUNT, card_id="card-2")

    row = page.locator(f"#tx-{small['id']}")
    expect(row).to_be_visible(timeout=WAIT_MS)
    expect(row.locator("[data-field=external_id]")).to_have_text("live-small")
    expect(row).to_have_attribute("data-decision", "approve")
    expect(row.locator("[data-field=decision]")).to_have_text("Approve")
    expect(row.locator("[data-field=case]")).to_be_hidden()

    big = page.locator(f"#tx-{flagged['id']}")
    expect(big).to_be_visible(timeout=WAIT_MS)
    assert flagged["decision"] in ("review", "block")
    expect(big.locator("[data-field=external_id]")).to_have_text("live-big")
    expect(big).to_have_attribute("data-decision", flagged["decision"])
    expect(big.locator("[data-field=case]")).to_have_text(f"#{flagged['case_id']}")
    expect(big.locator("[data-field=case_state]")).to_have_text("unclaimed")
    # Newest first: the flagged payment was stored last, so it heads the feed.
    expect(page.locator("#feed tr").first).to_have_id(f"tx-{flagged['id']}")


def test_the_page_acknowledges_each_frame_it_handles(desk: Desk):
    # The server's flow control rests on these acks: without them a frozen tab would be fed without bound.
    page = desk.context().new_page()
    sent: list[str] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda frame: sent.append(frame)))
    received: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda frame: received.append(frame)))
    page.goto("/accounts/login/")
    page.fill("input[name=username]", ALICE[0])
    page.fill("input[name=password]", ALICE[1])
    page.click("button[type=submit]")
    wait_until_live(page)

    posted = desk.post(external_id="acked")
    expect(page.locator(f"#tx-{posted['id']}")).to_be_visible(timeout=WAIT_MS)
    page.wait_for_timeout(300)

    acks = [orjson.loads(frame)["seq"] for frame in sent if '"ack"' in frame]
    pushed = [orjson.loads(frame)["seq"] for frame in received]
    assert acks and set(acks) <= set(pushed)
    assert max(acks) >= max(pushed) - 1  # keeping up: at most the frame in hand unanswered


def test_claim_and_resolve_reach_a_second_analyst_live(desk: Desk):
    alice = desk.login(desk.context(), ALICE)
    lead = desk.login(desk.context(), LEAD)
    for page in (alice, lead):
        page.goto("/cases/")
        wait_until_live(page)

    flagged = desk.post(external_id="queue-1", amount=FLAGGED_AMOUNT)
    case_id = flagged["case_id"]
    assert case_id is not None
    # The queue listens for new flagged payments: the case appears on both pages without a reload.
    alice_row, lead_row = (page.locator(f"#case-{case_id}") for page in (alice, lead))
    for row in (alice_row, lead_row):
        expect(row).to_have_attribute("data-status", "open", timeout=WAIT_MS)
        expect(row).to_have_attribute("data-assignee", "")
        expect(row).to_contain_text("unclaimed")
    expect(lead.locator(f"#case-{case_id}-claim")).to_be_visible()

    alice.click(f"#case-{case_id}-claim")
    expect(alice_row).to_have_attribute("data-assignee", "alice", timeout=WAIT_MS)
    expect(alice_row).to_contain_text("claimed by alice (you)")
    expect(alice.locator(f"#case-{case_id}-release")).to_be_visible()

    expect(lead_row).to_have_attribute("data-assignee", "alice", timeout=WAIT_MS)
    expect(lead_row).to_contain_text("claimed by alice")
    expect(lead_row).not_to_contain_text("(you)")
    expect(lead.locator(f"#case-{case_id}-claim")).to_have_count(0)

    alice.fill(f"#case-{case_id}-note", "card reported stolen")
    alice.click(f"#case-{case_id}-fraud")
    expect(alice_row).to_have_attribute("data-status", "fraud", timeout=WAIT_MS)

    expect(lead_row).to_have_attribute("data-status", "fraud", timeout=WAIT_MS)
    expect(lead_row).to_have_class(re.compile(r"\bis-resolved\b"))
    expect(lead_row).to_contain_text("Confirmed fraud")
    expect(lead_row).to_contain_text("by alice")
    expect(lead_row).to_contain_text("card reported stolen")
    expect(lead.locator(f"#case-{case_id}-fraud")).to_have_count(0)
    expect(lead.locator(f"#case-{case_id}-release")).to_have_count(0)

    def stored() -> tuple[str, str, str, bool]:
        from scoring.models import Case

        case = Case.objects.select_related("resolved_by").get(pk=case_id)
        return case.status, case.resolved_by.get_username(), case.note, case.alerts.get().is_fraud

    assert outside_the_browser_loop(stored) == ("fraud", "alice", "card reported stolen", True)


def test_live_figures_and_charts_render(desk: Desk):
    page = desk.login(desk.context(), ALICE)
    wait_until_live(page)

    amounts = ["15.00", "30.00", "45.00", FLAGGED_AMOUNT, "12000.00"]
    results = [desk.post(external_id=f"fig-{i}", card_id=f"card-{i}", amount=a) for i, a in enumerate(amounts)]
    flagged = [r for r in results if r["decision"] != "approve"]
    assert len(flagged) == 2

    def stat_at_least(selector: str, floor: float) -> None:
        page.wait_for_function(
            "([selector, floor]) => Number(document.querySelector(selector).dataset.number) >= floor",
            arg=[selector, floor],
            timeout=WAIT_MS,
        )

    stat_at_least("#stat-count", len(amounts))
    stat_at_least("#stat-open-cases", len(flagged))
    stat_at_least("#stat-flagged", 0.01)
    expect(page.locator("#stat-count")).to_have_text(re.compile(r"^\d[\d,.\s]*$"))
    expect(page.locator("#stat-flagged")).to_have_text(re.compile(r"%"))

    # Bars with a height: at least the approve bin and one flagged bin, and at least one minute of volume.
    page.wait_for_function(
        """() => {
          const tall = (selector) => Array.from(document.querySelectorAll(selector))
            .filter((bar) => Number(bar.getAttribute("height")) > 0).length;
          return tall("#chart-histogram svg rect.bar") >= 2
            && tall("#chart-volume svg rect.bar-volume") >= 1
            && tall("#chart-volume svg rect.bar-flagged") >= 1;
        }""",
        timeout=WAIT_MS,
    )
    expect(page.locator("#chart-histogram svg")).to_have_attribute(
        "aria-label", re.compile(r"Score histogram of \d+ transactions")
    )
    assert page.locator("#chart-histogram svg rect, #chart-histogram svg path, #chart-histogram svg line").count() > 0
    assert page.locator("#chart-volume svg rect, #chart-volume svg path, #chart-volume svg line").count() > 0
    expect(page.locator("#open-cases li[id^=open-case-]")).to_have_count(len(flagged), timeout=WAIT_MS)


def test_the_open_case_figure_agrees_with_the_panel_whenever_the_panel_changes(desk: Desk):
    page = desk.login(desk.context(), ALICE)
    wait_until_live(page)
    # On every swap of the panel, the panel's count and the figure's, as the page shows them once the
    # swap's task is over (a MutationObserver's callback runs right after it).
    page.evaluate(
        """() => {
          window.openSeen = [];
          new MutationObserver(() => {
            const panel = document.getElementById("open-cases");
            const figure = document.getElementById("stat-open-cases");
            const shown = parseInt(panel.querySelector("header a").textContent.replace(/[^0-9]/g, ""), 10);
            window.openSeen.push([shown, Number(figure.dataset.number)]);
          }).observe(document.getElementById("open-cases").parentNode, { childList: true });
        }"""
    )

    for i in range(2):
        desk.post(external_id=f"open-{i}", card_id=f"card-open-{i}", amount=FLAGGED_AMOUNT)
        expect(page.locator("#open-cases li[id^=open-case-]")).to_have_count(i + 1, timeout=WAIT_MS)
    seen = page.evaluate("window.openSeen")

    assert seen and seen[-1][0] == 2
    assert all(panel == figure for panel, figure in seen), seen


def test_browser_console_has_no_errors(desk: Desk):
    context = desk.context()
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(f"console: {message.text} ({message.location.get('url')})")

    def on_page_error(error: Error) -> None:
        errors.append(f"page error: {error.message}")

    context.on("console", on_console)
    page = desk.login(context, ALICE)
    page.on("pageerror", on_page_error)
    wait_until_live(page)

    desk.post(external_id="console-small", amount="20.00")
    flagged = desk.post(external_id="console-big", amount=FLAGGED_AMOUNT)
    case_id = flagged["case_id"]
    expect(page.locator(f"#tx-{flagged['id']}")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator(f"#open-case-{case_id}")).to_be_visible(timeout=WAIT_MS)
    page.fill("#filter-min-score", "0.5")
    expect(page.locator(f"#tx-{flagged['id']}")).to_be_visible()
    page.uncheck("#filter-review")
    page.uncheck("#filter-block")
    expect(page.locator(f"#tx-{flagged['id']}")).to_be_hidden()

    page.goto("/cases/")
    wait_until_live(page)
    page.click(f"#case-{case_id}-claim")
    expect(page.locator(f"#case-{case_id}")).to_have_attribute("data-assignee", "alice", timeout=WAIT_MS)

    page.goto(f"/cases/{case_id}/")
    wait_until_live(page)
    expect(page.locator("#reasons .reason")).not_to_have_count(0)
    expect(page.locator("#transaction")).to_contain_text("console-big")
    page.click(f"#case-{case_id}-legitimate")
    # The case page re-reads its audit trail when the push for its own case arrives.
    expect(page.locator("#audit")).to_contain_text("resolved it as legitimate", timeout=WAIT_MS)

    assert errors == []


def test_screenshots_of_the_live_page_queue_and_a_case_are_saved(desk: Desk, screenshot_dir: Path):
    page = desk.login(desk.context(), ALICE)
    wait_until_live(page)
    amounts = ["8.90", "64.00", "230.00", "19.99", "1500.00", FLAGGED_AMOUNT, "25000.00"]
    results = [
        desk.post(external_id=f"shot-{i}", card_id=f"card-{i % 3}", merchant_id=f"merch-{i % 2}", amount=a)
        for i, a in enumerate(amounts)
    ]
    case_id = next(r["case_id"] for r in reversed(results) if r["case_id"])
    for r in results:
        expect(page.locator(f"#tx-{r['id']}")).to_be_visible(timeout=WAIT_MS)
    page.wait_for_function(
        "n => Number(document.querySelector('#stat-count').dataset.number) >= n", arg=len(amounts), timeout=WAIT_MS
    )
    expect(page.locator("#open-cases li[id^=open-case-]")).not_to_have_count(0, timeout=WAIT_MS)

    shots = {"live": page}
    queue = page.context.new_page()
    queue.goto("/cases/")
    wait_until_live(queue)
    expect(queue.locator(f"#case-{case_id}")).to_be_visible()
    shots["queue"] = queue
    case = page.context.new_page()
    case.goto(f"/cases/{case_id}/")
    wait_until_live(case)
    expect(case.locator("#reasons")).to_be_visible()
    shots["case"] = case

    for name, shot in shots.items():
        path = screenshot_dir / f"{name}.png"
        shot.screenshot(path=str(path), full_page=True)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 10_000
