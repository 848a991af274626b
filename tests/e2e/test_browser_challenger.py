"""A real browser on a real daphne process: transactions posted to the API are scored by the challenger in the
shadow, the comparison page shows both models, and a lead promotes the challenger with one click and a confirm."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ALICE, CHROMIUM, FLAGGED_AMOUNT, LEAD, WAIT_MS, Desk, outside_the_browser_loop

if not CHROMIUM.exists():
    pytest.skip(
        f"browser tests need Debian's chromium at {CHROMIUM} (`make test` installs it)", allow_module_level=True
    )

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def marked(transactional_db, model_version, inverse_artifact: bytes, lead) -> str:
    """A challenger that says the opposite of the active model, marked by the lead (ask before `desk`)."""
    from scoring import challenger
    from scoring.features import FEATURES
    from scoring.models import ModelVersion

    mv = ModelVersion.objects.create(
        version="challenger-e2e",
        artifact=inverse_artifact,
        features=FEATURES,
        review_threshold=0.5,
        block_threshold=0.9,
    )
    challenger.mark_challenger(mv.pk, user=lead)
    return mv.version


def test_shadow_scores_show_on_the_comparison_page_and_a_lead_promotes_the_challenger(
    marked: str, desk: Desk, screenshot_dir: Path
) -> None:
    # The active model flags the large amount, the challenger the small ones: each row is a disagreement.
    sent = [
        desk.post(external_id="e2e-big", card_id="card-big", amount=FLAGGED_AMOUNT),
        desk.post(external_id="e2e-small-1", card_id="card-small-1", amount="5.00"),
        desk.post(external_id="e2e-small-2", card_id="card-small-2", amount="6.00"),
    ]
    assert [body["decision"] for body in sent] == ["block", "approve", "approve"]  # the challenger decided nothing
    stored = outside_the_browser_loop(_shadow_scores)
    assert set(stored) == {"e2e-big", "e2e-small-1", "e2e-small-2"} and stored["e2e-small-1"] > 0.9

    for width in (1440, 390):
        alice = desk.login(desk.context(width=width), ALICE)
        alice.click("#nav-models")
        alice.click("#challenger-link")
        alice.wait_for_url(f"{desk.base}/models/challenger/", timeout=WAIT_MS)
        expect(alice.locator("#compared-rows")).to_have_text("3")
        expect(alice.locator("#disagreement-rows tbody tr")).to_have_count(3)
        expect(alice.locator("#confirm-promote")).to_have_count(0)
        big = alice.locator("#disagreement-rows a", has_text="e2e-big")
        expect(big).to_have_attribute("href", f"/cases/{sent[0]['case_id']}/")
        alice.screenshot(path=str(screenshot_dir / f"challenger-{width}.png"), full_page=True)

    for width in (390, 1440):
        lead = desk.login(desk.context(width=width), LEAD)
        lead.goto("/models/challenger/")
        expect(lead.locator("#challenger-figures")).to_be_visible()
        lead.screenshot(path=str(screenshot_dir / f"challenger-lead-{width}.png"), full_page=True)

    lead.locator("#promote summary").click()
    expect(lead.locator("#confirm-promote")).to_be_visible()
    lead.screenshot(path=str(screenshot_dir / "challenger-promote-confirm-1440.png"), full_page=True)
    lead.click("#confirm-promote")

    expect(lead.locator(".messages")).to_contain_text(f"{marked} is now the active model")
    expect(lead.locator("#no-challenger")).to_contain_text("train_model --challenger")
    lead.screenshot(path=str(screenshot_dir / "challenger-promoted-1440.png"), full_page=True)
    narrow = desk.login(desk.context(width=390), LEAD)
    narrow.goto("/models/challenger/")
    expect(narrow.locator("#no-challenger")).to_contain_text("No challenger now")
    narrow.screenshot(path=str(screenshot_dir / "challenger-promoted-390.png"), full_page=True)
    assert outside_the_browser_loop(_active_version) == marked

    # The version that was active is offered as the next challenger on the models list.
    for width in (1440, 390):
        page = desk.login(desk.context(width=width), LEAD)
        page.goto("/models/")
        expect(page.locator("[id^=make-challenger-]")).to_have_count(1)
        page.screenshot(path=str(screenshot_dir / f"challenger-models-list-{width}.png"), full_page=True)
    page.locator("[id^=make-challenger-]").click()
    page.wait_for_url(f"{desk.base}/models/", timeout=WAIT_MS)
    expect(page.locator(".messages")).to_contain_text("is the challenger")
    expect(page.locator("[data-badge=challenger]")).to_have_count(1)
    page.screenshot(path=str(screenshot_dir / "challenger-models-list-marked-390.png"), full_page=True)

    after = desk.post(external_id="e2e-after", card_id="card-after", amount="5.00")
    assert after["model_version"] == marked and after["decision"] != "approve"  # the promoted model decides now
    assert outside_the_browser_loop(_shadow_scores).keys() == {"e2e-big", "e2e-small-1", "e2e-small-2"}


def _shadow_scores() -> dict[str, float]:
    from scoring.models import Transaction

    rows = Transaction.objects.filter(challenger_version="challenger-e2e")
    return dict(rows.values_list("external_id", "challenger_score"))


def _active_version() -> str:
    from scoring.models import ModelVersion

    return ModelVersion.objects.active().version
