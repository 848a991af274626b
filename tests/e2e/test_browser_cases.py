"""A real browser on a real daphne process: working a case (notes, reopening, overturned verdicts) and the page
an account without a role gets."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import (
    ALICE,
    CHROMIUM,
    FLAGGED_AMOUNT,
    LEAD,
    NOBODY,
    WAIT_MS,
    Desk,
    outside_the_browser_loop,
    post,
    wait_until_live,
)

if not CHROMIUM.exists():
    pytest.skip(
        f"browser tests need Debian's chromium at {CHROMIUM} (`make test` installs it)", allow_module_level=True
    )

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_notes_and_a_reopened_case_reach_a_second_desk_live(desk: Desk):
    alice = desk.login(desk.context(), ALICE)
    lead = desk.login(desk.context(), LEAD)
    case_id = desk.post(external_id="notes-1", amount=FLAGGED_AMOUNT)["case_id"]
    for page in (alice, lead):
        page.goto(f"/cases/{case_id}/")
        wait_until_live(page)

    alice.fill("#note-text", "called the cardholder: no answer")
    alice.click("#note-submit")
    expect(alice.locator("#audit")).to_contain_text("called the cardholder: no answer", timeout=WAIT_MS)
    expect(alice.locator("#note-text")).to_have_value("")
    expect(lead.locator("#audit")).to_contain_text("called the cardholder: no answer", timeout=WAIT_MS)

    alice.click(f"#case-{case_id}-legitimate")
    expect(lead.locator(f"#case-{case_id}")).to_have_attribute("data-status", "legitimate", timeout=WAIT_MS)
    expect(lead.locator("#reopen-form")).to_be_visible(timeout=WAIT_MS)
    expect(alice.locator("#reopen-form")).to_have_count(0)

    lead.fill("#reopen-reason", "the cardholder called back: not theirs")
    lead.click("#reopen-submit")
    expect(lead.locator(f"#case-{case_id}")).to_have_attribute("data-status", "open", timeout=WAIT_MS)
    expect(lead.locator("#audit")).to_contain_text("reopened the case")
    expect(lead.locator("#reopen-form")).to_have_count(0)
    expect(alice.locator(f"#case-{case_id}")).to_have_attribute("data-status", "open", timeout=WAIT_MS)
    expect(alice.locator("#audit")).to_contain_text("the cardholder called back: not theirs", timeout=WAIT_MS)
    expect(alice.locator(f"#case-{case_id}-claim")).to_be_visible()


def test_an_account_without_a_role_sees_only_how_to_get_access(nobody, desk: Desk):
    page = desk.login(desk.context(), NOBODY)

    expect(page.locator("#no-access")).to_contain_text("ask a lead")
    expect(page.locator(".nav-links")).to_have_count(0)
    expect(page.locator("#feed")).to_have_count(0)
    expect(page.locator("#conn-status")).to_be_hidden()  # no socket was opened
    for path in ("/cases/", "/cases/?overturned=1"):
        page.goto(path)
        expect(page.locator("#no-access")).to_be_visible()
        expect(page.locator("#queue")).to_have_count(0)


def test_screenshots_of_notes_an_overturned_verdict_and_the_no_access_page_are_saved(
    nobody, desk: Desk, screenshot_dir: Path
):
    from scoring import cases

    flagged = desk.post(external_id="overturned-1", amount=FLAGGED_AMOUNT, card_id="card-ot")
    case_id = flagged["case_id"]

    def resolve_as_legitimate() -> None:
        from django.contrib.auth import get_user_model

        alice = get_user_model().objects.get(username=ALICE[0])
        cases.add_note(case_id, user=alice, text="known customer, buys in bulk every quarter")
        cases.resolve(case_id, user=alice, is_fraud=False, note="regular customer")

    outside_the_browser_loop(resolve_as_legitimate)
    status, _ = post(desk.base, "/api/v1/labels", {"external_id": "overturned-1", "is_fraud": True}, desk.api_key)
    assert status == 200

    for width in (1440, 390):
        lead = desk.login(desk.context(width=width), LEAD)
        lead.goto(f"/cases/{case_id}/")
        expect(lead.locator(".overturned-banner")).to_contain_text("reported this transaction as fraud")
        expect(lead.locator("#audit")).to_contain_text("Chargeback feed")
        expect(lead.locator("#reopen-form")).to_be_visible()
        queue = lead.context.new_page()
        queue.goto("/cases/?overturned=1")
        expect(queue.locator(f"#case-{case_id}")).to_contain_text("Overturned")
        no_access = desk.login(desk.context(width=width), NOBODY)
        for name, shot in (("case-overturned", lead), ("queue-overturned", queue), ("no-access", no_access)):
            path = screenshot_dir / f"{name}-{width}.png"
            shot.screenshot(path=str(path), full_page=True)
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_cards_second_flagged_payment_joins_its_open_case_live_and_the_verdict_labels_both(desk: Desk):
    from scoring.models import ListEntry, Transaction

    # The card is on the block list, so both payments are flagged whatever the tiny test model thinks of them.
    outside_the_browser_loop(
        lambda: ListEntry.objects.create(kind="block", entity="card", value="card-join", reason="test")
    )
    alice = desk.login(desk.context(), ALICE)
    alice.goto("/cases/")
    wait_until_live(alice)

    first = desk.post(external_id="join-1", card_id="card-join", amount="120.00")
    row = alice.locator(f"#case-{first['case_id']}")
    expect(row.locator(".alert-count")).to_have_text("1", timeout=WAIT_MS)
    case_page = alice.context.new_page()
    case_page.goto(f"/cases/{first['case_id']}/")
    wait_until_live(case_page)
    expect(case_page.locator("#case-alerts tbody tr")).to_have_count(1)
    second = desk.post(external_id="join-2", card_id="card-join", amount="80.00")

    assert second["case_id"] == first["case_id"]
    expect(row.locator(".alert-count")).to_have_text("2", timeout=WAIT_MS)
    expect(case_page.locator("#case-alerts tbody tr")).to_have_count(2, timeout=WAIT_MS)
    expect(case_page.locator(f"#case-{first['case_id']} .alert-count")).to_have_text("2", timeout=WAIT_MS)
    expect(row.locator(".amount")).to_have_text("200.00 EUR")
    expect(alice.locator(".case-row")).to_have_count(1)

    alice.goto(f"/cases/{first['case_id']}/")
    expect(alice.locator("#case-alerts tbody tr")).to_have_count(2)
    alice.click(f"#case-{first['case_id']}-fraud")
    expect(alice.locator(f"#case-{first['case_id']}")).to_have_attribute("data-status", "fraud", timeout=WAIT_MS)
    labels = outside_the_browser_loop(
        lambda: dict(Transaction.objects.filter(card_id="card-join").values_list("external_id", "is_fraud"))
    )
    assert labels == {"join-1": True, "join-2": True}
