"""A real browser on a real daphne process: a lead's view of the team, and the refusal an analyst gets."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ALICE, CHROMIUM, LEAD, WAIT_MS, Desk

if not CHROMIUM.exists():
    pytest.skip(
        f"browser tests need Debian's chromium at {CHROMIUM} (`make test` installs it)", allow_module_level=True
    )

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def team_cases(transactional_db, analyst) -> None:
    """Two open cases (one unclaimed, one alice's) and two verdicts of alice's today (ask before `desk`)."""
    from django.utils import timezone

    from scoring.models import Case, CaseStatus
    from tests.dashboards.conftest import make_case

    now = timezone.now()

    def case(*, opened_hours_ago: float, **fields) -> None:
        made = make_case(card_id=f"team-e2e-{Case.objects.count()}")
        Case.objects.filter(pk=made.pk).update(opened_at=now - timedelta(hours=opened_hours_ago), **fields)

    case(opened_hours_ago=0.5)
    case(opened_hours_ago=30, assignee=analyst)
    verdict = {"resolved_by": analyst, "assignee": analyst, "resolved_at": now}
    case(opened_hours_ago=1, status=CaseStatus.FRAUD, **verdict)
    case(opened_hours_ago=3, status=CaseStatus.LEGITIMATE, **verdict)


def test_a_lead_reaches_the_team_page_from_the_nav_and_sees_its_charts(team_cases, desk: Desk, screenshot_dir: Path):
    for width in (1440, 390):
        lead = desk.login(desk.context(width=width), LEAD)
        lead.click("#nav-team")
        lead.wait_for_url(f"{desk.base}/team/", timeout=WAIT_MS)

        expect(lead.locator("#team-open")).to_have_text("2")
        expect(lead.locator("#team-median")).to_have_text("2 h 00 min")  # 1 h and 3 h: the mean of the two
        expect(lead.locator("#team-precision")).to_have_text("50 %")
        expect(lead.locator("#team-age svg.team-chart .team-col")).to_have_count(4)
        expect(lead.locator("#team-precision-per-day svg.team-chart .team-col")).to_have_count(7)
        expect(lead.locator("#team-heat tbody th a", has_text="alice")).to_have_attribute(
            "href", "/cases/?assignee=alice"
        )
        path = screenshot_dir / f"team-{width}.png"
        lead.screenshot(path=str(path), full_page=True)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        lead.locator("#team-load a", has_text="alice").click()
        lead.wait_for_url(f"{desk.base}/cases/?assignee=alice", timeout=WAIT_MS)


def test_an_analyst_has_no_team_link_and_is_refused_the_page(team_cases, desk: Desk, screenshot_dir: Path):
    for width in (1440, 390):
        alice = desk.login(desk.context(width=width), ALICE)
        expect(alice.locator("#nav-team")).to_have_count(0)

        response = alice.goto("/team/")

        assert response is not None and response.status == 403
        expect(alice.locator("#leads-only")).to_contain_text("for leads")
        expect(alice.locator("#team-figures")).to_have_count(0)
        alice.screenshot(path=str(screenshot_dir / f"team-leads-only-{width}.png"), full_page=True)
