"""A real browser on a real daphne process: working a case with a reason code and a label for one of its
transactions, and blocking its card from the case page."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

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


@pytest.fixture
def stolen_card(transactional_db) -> None:
    """The seeded reason this test picks (an earlier transactional test's flush takes the migration's rows)."""
    from scoring.models import ReasonCode

    ReasonCode.objects.get_or_create(code="stolen-card", defaults={"label": "Stolen card", "verdict": "fraud"})


def shoot(page: Page, directory: Path, name: str) -> None:
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_analyst_resolves_with_a_reason_and_labels_one_transaction_otherwise(
    stolen_card: None, desk: Desk, screenshot_dir: Path
):
    from scoring.models import Case, Transaction

    first = desk.post(external_id="work-1", card_id="card-work", amount=FLAGGED_AMOUNT)
    second = desk.post(external_id="work-2", card_id="card-work", amount=FLAGGED_AMOUNT)
    case_id = first["case_id"]
    assert second["case_id"] == case_id
    for width in (1440, 390):
        look = desk.login(desk.context(width=width), ALICE)
        look.goto(f"/cases/{case_id}/")
        look.select_option(f"#case-{case_id}-reason", "stolen-card")
        look.select_option(f"#label-{second['id']}", "legitimate")
        shoot(look, screenshot_dir, f"work-resolve-{width}")
        look.context.close()

    alice = desk.login(desk.context(), ALICE)
    alice.goto(f"/cases/{case_id}/")
    wait_until_live(alice)
    alice.select_option(f"#case-{case_id}-reason", "stolen-card")
    # A fraud reason: the "legitimate" button steps back.
    expect(alice.locator(f"#case-{case_id}-legitimate")).to_have_css("pointer-events", "none")
    alice.select_option(f"#label-{second['id']}", "legitimate")
    alice.click(f"#case-{case_id}-fraud")

    expect(alice.locator(f"#case-{case_id}")).to_have_attribute("data-status", "fraud", timeout=WAIT_MS)
    expect(alice.locator(f"#case-{case_id}-reason-given")).to_have_text("Stolen card")
    expect(alice.locator(f"#alert-{second['id']}-label")).to_contain_text("Legitimate", timeout=WAIT_MS)
    expect(alice.locator(f"#alert-{first['id']}-label")).to_contain_text("Fraud")
    expect(alice.locator("#audit")).to_contain_text("work-2 labeled legitimate")
    expect(alice.locator("select[name^=label-]")).to_have_count(0)
    labels = outside_the_browser_loop(
        lambda: dict(Transaction.objects.filter(card_id="card-work").values_list("external_id", "is_fraud"))
    )
    reason = outside_the_browser_loop(lambda: Case.objects.get(pk=case_id).reason.code)
    assert (labels, reason) == ({"work-1": True, "work-2": False}, "stolen-card")
    shoot(alice, screenshot_dir, "work-resolved-1440")


def test_an_analyst_blocks_the_card_from_the_case_page_and_sees_the_entry_there(desk: Desk, screenshot_dir: Path):
    case_id = desk.post(external_id="block-1", card_id="card-blocked", amount=FLAGGED_AMOUNT)["case_id"]
    alice = desk.login(desk.context(), ALICE)
    lead = desk.login(desk.context(), LEAD)
    for page in (alice, lead):
        page.goto(f"/cases/{case_id}/")
        wait_until_live(page)

    alice.click("#list-card-open")
    expect(alice.locator("#list-card-kind")).to_have_count(0)  # analysts block; allow entries are leads'
    expect(alice.locator("#list-card-expires")).to_have_value("30")
    alice.fill("#list-card-reason", "issuer confirmed the card stolen")
    shoot(alice, screenshot_dir, "work-block-form-1440")
    alice.click("#list-card-submit")

    expect(alice.locator("#list-card-entry")).to_contain_text("Blocked", timeout=WAIT_MS)
    expect(alice.locator("#list-card-entry")).to_contain_text("issuer confirmed the card stolen")
    expect(alice.locator("#list-card-open")).to_have_count(0)
    expect(lead.locator("#audit")).to_contain_text("added to the allow/block list", timeout=WAIT_MS)
    expect(lead.locator("#audit")).to_contain_text("card card-blocked on the block list until")
    # This server's process uses the entry at once: the card's next payment, however small, is blocked.
    assert desk.post(external_id="block-2", card_id="card-blocked", amount="3.00")["decision"] == "block"
    shoot(alice, screenshot_dir, "work-blocked-1440")
    narrow = desk.login(desk.context(width=390), ALICE)
    narrow.goto(f"/cases/{case_id}/")
    narrow.click("#list-merchant-open")
    shoot(narrow, screenshot_dir, "work-blocked-390")

    # The card and merchant pages carry the same controls.
    for page, width in ((alice, 1440), (narrow, 390)):
        page.goto("/cards/card-blocked/")
        expect(page.locator("#entity-actions #list-card-entry")).to_contain_text("issuer confirmed the card stolen")
        shoot(page, screenshot_dir, f"work-card-page-{width}")
        page.goto("/merchants/merch-1/")
        page.click("#entity-actions #list-merchant-open")
        expect(page.locator("#list-merchant-reason")).to_be_visible()
        shoot(page, screenshot_dir, f"work-merchant-page-{width}")
