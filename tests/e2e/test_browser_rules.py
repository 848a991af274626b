"""A real browser on a real daphne process: a lead writes a rule with a mistake, is shown where it is, fixes it,
backtests it on the stored history, saves it and publishes it; an analyst reads it and its backtest, with no
button to change it."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import ALICE, CHROMIUM, LEAD, WAIT_MS, Desk

if not CHROMIUM.exists():
    pytest.skip(
        f"browser tests need Debian's chromium at {CHROMIUM} (`make test` installs it)", allow_module_level=True
    )

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
WIDTHS = (1440, 390)


@pytest.fixture
def stored_history(transactional_db) -> None:
    """Two weeks of payments, a big one and a small one a day; every third big one labeled fraud, every third
    labeled legitimate (ask before `desk`)."""
    from django.utils import timezone

    from tests.dashboards.conftest import make_tx

    now = timezone.now()
    for day in range(14):
        at = now - timedelta(days=day, minutes=5)
        label = (True, False, None)[day % 3]
        for n in range(1 + day % 4):
            make_tx(amount=Decimal("800.00"), timestamp=at, is_fraud=label, card_id=f"rules-e2e-{day}-{n}")
        make_tx(amount=Decimal("12.00"), timestamp=at, card_id=f"rules-e2e-small-{day}")


def shoot(page: Page, name: str, screenshot_dir: Path) -> None:
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        path = screenshot_dir / f"{name}-{width}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page.set_viewport_size({"width": WIDTHS[0], "height": 900})


def test_a_lead_writes_fixes_backtests_saves_and_publishes_a_rule_an_analyst_then_reads(
    stored_history: None, desk: Desk, screenshot_dir: Path
) -> None:
    lead = desk.login(desk.context(), LEAD)
    lead.click("#nav-rules")
    expect(lead.locator("#rules-none")).to_be_visible()
    lead.click("#rule-new")

    lead.fill("#rule-name-input", "big_payments")
    lead.fill("#rule-description-input", "Large payments go to review while the model learns them")
    lead.fill("#rule-condition-input", "amount > 500 &&\n  amont < 10000")
    lead.select_option("#rule-action-input", "review")
    lead.click("#rule-save")
    expect(lead.locator("#rule-condition-error")).to_contain_text("line 2, column 3: unknown name 'amont'")
    expect(lead.locator("#condition-pointer")).to_contain_text("  amont < 10000\n  ^")
    expect(lead.locator("#rule-condition-input")).to_have_attribute("aria-invalid", "true")
    shoot(lead, "rule-refused", screenshot_dir)

    lead.fill("#rule-condition-input", "amount > 500 &&\n  amount < 10000")
    lead.click("#rule-try")
    expect(lead.locator("#tried #backtest-hits")).to_have_text(
        "33", timeout=WAIT_MS
    )  # 1, 2, 3, 4, 1, ... a day, 14 days
    expect(lead.locator("#tried #backtest-chart .rule-col")).to_have_count(30)
    expect(lead.locator("#rule-condition-error")).to_have_count(0)  # the fixed condition's refusal is gone
    expect(lead.locator("#rule-condition-input")).not_to_have_attribute("aria-invalid", "true")
    shoot(lead, "rule-form-backtest", screenshot_dir)
    lead.click("#rule-save")

    expect(lead.locator(".message-success")).to_contain_text("big_payments is saved as a draft")
    expect(lead.locator("#rule-name")).to_have_text("big_payments")
    expect(lead.locator("#backtest-panel")).to_have_attribute("data-hits", "33", timeout=WAIT_MS)
    lead.click("#backtest-days-7")
    expect(lead.locator("#backtest-panel")).to_have_attribute("data-days", "7", timeout=WAIT_MS)
    expect(lead.locator("#backtest-chart .rule-col")).to_have_count(7)
    week = lead.locator("#backtest-panel").get_attribute("data-hits")
    lead.click("#rule-publish")
    expect(lead.locator(".message-success")).to_contain_text("big_payments is active (version 2)")
    # Published with the backtest the lead was looking at: the last 7 days, not the default 30.
    expect(lead.locator("#version-2")).to_contain_text(f"Published with: {week} hits in 7 days")
    expect(lead.locator("#backtest-panel")).to_be_visible(timeout=WAIT_MS)
    shoot(lead, "rule-published", screenshot_dir)

    analyst = desk.login(desk.context(), ALICE)
    analyst.click("#nav-rules")
    row = analyst.locator(".rule-row", has_text="big_payments")
    expect(row.locator("[data-status]")).to_have_text("Active")
    expect(analyst.locator("#rule-new")).to_have_count(0)
    shoot(analyst, "rules", screenshot_dir)
    row.locator("a.rule-name").click()
    expect(analyst.locator("#backtest-panel")).to_have_attribute("data-hits", "33", timeout=WAIT_MS)
    expect(analyst.locator("#rule-actions")).to_have_count(0)
    expect(analyst.locator("#backtest-fraud")).to_have_text("11")  # days 0, 3, 6, 9 and 12: 1 + 4 + 3 + 2 + 1
    shoot(analyst, "rule-analyst", screenshot_dir)
