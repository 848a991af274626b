"""A real browser on a real daphne process: the live feed and the case page name the rules that hit."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ALICE, CHROMIUM, WAIT_MS, Desk, wait_until_live

if not CHROMIUM.exists():
    pytest.skip(
        f"browser tests need Debian's chromium at {CHROMIUM} (`make test` installs it)", allow_module_level=True
    )

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def rules(transactional_db, model_version):
    """An active rule and a shadow rule on large amounts (made before `desk`: no ORM call once the browser runs);
    the model alone flags nothing."""
    from scoring.models import Rule, RuleStatus
    from scoring.rules import check

    model_version.review_threshold = model_version.block_threshold = 1.01
    model_version.save()
    for name, status in (("big_night_amount", RuleStatus.ACTIVE), ("watch_big_amounts", RuleStatus.SHADOW)):
        Rule.objects.create(name=name, condition=check("amount > 5000.0").source, action="block", status=status)


def test_the_live_feed_and_the_case_page_name_the_rules_that_hit(rules, desk: Desk, screenshot_dir: Path):
    for width in (1440, 390):
        alice = desk.login(desk.context(width=width), ALICE)
        wait_until_live(alice)
        flagged = desk.post(external_id=f"rule-{width}", card_id=f"card-r{width}", amount="7000.00")
        quiet = desk.post(external_id=f"no-rule-{width}", card_id=f"card-q{width}", amount="20.00")

        row = alice.locator(f"#tx-{flagged['id']}")
        expect(row).to_have_attribute("data-decision", "block", timeout=WAIT_MS)
        if width == 1440:
            expect(row.locator("[data-field=reasons]")).to_contain_text("rule big_night_amount (block)")
            expect(row.locator("[data-field=rule_names]")).to_be_hidden()
        else:  # the phone layout leaves the reasons column out and names the rules under the decision
            expect(row.locator("[data-field=reasons]")).to_be_hidden()
            expect(row.locator("[data-field=rule_names]")).to_have_text("big_night_amount")
            expect(row.locator("[data-field=rule_names]")).to_be_visible()
            expect(alice.locator(f"#tx-{quiet['id']} [data-field=rule_names]")).to_be_hidden()
        expect(alice.locator(f"#tx-{quiet['id']}")).to_have_attribute("data-decision", "approve", timeout=WAIT_MS)
        alice.screenshot(path=str(screenshot_dir / f"live-rules-{width}.png"), full_page=True)

        alice.goto(f"/cases/{flagged['case_id']}/")
        hits = alice.locator("#rules-hit")
        expect(hits.locator("[data-rule=big_night_amount]")).to_contain_text("Block")
        expect(hits.locator("[data-rule=watch_big_amounts]")).to_contain_text("changed nothing")
        path = screenshot_dir / f"case-rules-{width}.png"
        alice.screenshot(path=str(path), full_page=True)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
