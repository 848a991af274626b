"""A real browser on a real daphne process: a lead opens a model version's thresholds, proposes new ones, sees what
they would have done, saves them and finds the change in the history; an analyst reads the page without the form."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ALICE, CHROMIUM, LEAD, WAIT_MS, Desk, outside_the_browser_loop

if not CHROMIUM.exists():
    pytest.skip(
        f"browser tests need Debian's chromium at {CHROMIUM} (`make test` installs it)", allow_module_level=True
    )

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def scored_history(transactional_db, model_version) -> None:
    """Three weeks of transactions scored by the active (tiny) model, most labeled: large amounts fraud (ask before
    `desk`: no ORM call once the browser runs)."""
    import numpy as np
    from django.utils import timezone

    from scoring.features import FEATURE_INDEX, FEATURES
    from scoring.models import Transaction

    rng = np.random.default_rng(26)
    now = timezone.now()
    rows = []
    for n in range(400):
        features = rng.normal(size=len(FEATURES)).astype(np.float32)
        amount = float(round(rng.lognormal(4.0, 2.0), 2))
        features[FEATURE_INDEX["amount"]] = amount
        fraud = bool(amount > 1000) if rng.random() > 0.08 else bool(amount <= 1000)
        rows.append(
            Transaction(
                external_id=f"thr-{n}",
                card_id=f"card-{n % 90}",
                merchant_id="shop-1",
                amount=Decimal(str(amount)),
                currency="EUR" if n % 4 else "USD",
                timestamp=now - timedelta(hours=float(rng.uniform(1, 21 * 24))),
                score=0.1,
                decision="approve",
                features=[float(v) for v in features],
                model_version=model_version.version,
                is_fraud=None if n % 5 == 0 else fraud,
            )
        )
    Transaction.objects.bulk_create(rows)


def test_a_lead_proposes_thresholds_sees_the_preview_and_saves_them(scored_history, desk: Desk, screenshot_dir: Path):
    for width, review in ((1440, "0.3"), (390, "0.4")):
        lead = desk.login(desk.context(width=width), LEAD)
        lead.click("#nav-models")
        lead.wait_for_url(f"{desk.base}/models/", timeout=WAIT_MS)
        expect(lead.locator("#model-versions [data-badge=active]")).to_have_count(1)
        lead.screenshot(path=str(screenshot_dir / f"models-{width}.png"), full_page=True)

        lead.locator("#model-versions .model-version").first.click()
        expect(lead.locator("#threshold-chart .thr-line")).to_have_count(3)
        expect(lead.locator("#threshold-chart .thr-marker")).to_have_count(2)
        expect(lead.locator("#threshold-row-review")).to_be_visible()
        lead.fill("#threshold-review", review)
        expect(lead.locator("#threshold-compare-review caption")).to_contain_text(
            f"→ {float(review):.2f}", timeout=WAIT_MS
        )
        expect(lead.locator("#threshold-compare-review tr.is-changed").first).to_be_visible()
        lead.fill("#threshold-note", f"tried at {width} px")
        lead.locator("#threshold-form-card").screenshot(path=str(screenshot_dir / f"thresholds-preview-{width}.png"))
        lead.screenshot(path=str(screenshot_dir / f"thresholds-{width}.png"), full_page=True)

        lead.click("#threshold-save")

        expect(lead.locator(".message-success")).to_contain_text(f"sends for review from {review}", timeout=WAIT_MS)
        expect(lead.locator("#threshold-history tbody tr").first).to_contain_text(f"tried at {width} px")
        expect(lead.locator("#threshold-history tbody tr").first).to_contain_text(f"→ {review}")
        expect(lead.locator("#threshold-row-review")).to_contain_text(f"{float(review):.2f}")
        lead.screenshot(path=str(screenshot_dir / f"thresholds-saved-{width}.png"), full_page=True)

    def changes() -> list[tuple[float, str]]:
        from scoring.models import ModelChange

        return [(c.after["review_threshold"], c.actor.username) for c in ModelChange.objects.order_by("at")]

    assert outside_the_browser_loop(changes) == [(0.3, "lead"), (0.4, "lead")]


def test_an_analyst_reads_the_thresholds_without_the_form(scored_history, desk: Desk, screenshot_dir: Path):
    alice = desk.login(desk.context(width=390), ALICE)
    alice.click("#nav-models")
    alice.wait_for_url(f"{desk.base}/models/", timeout=WAIT_MS)

    alice.locator("#model-versions .model-version").first.click()

    expect(alice.locator("#threshold-chart .thr-line")).to_have_count(3)
    expect(alice.locator("#threshold-form")).to_have_count(0)
    expect(alice.locator("#threshold-current-review")).to_have_text("0.50")
    alice.screenshot(path=str(screenshot_dir / "thresholds-analyst-390.png"), full_page=True)
