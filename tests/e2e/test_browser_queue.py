"""A real browser on a real daphne process: the review queue filtered, sorted and paged by the server, its CSV
exports carrying the filters, pushed cases placed or counted by the filter, and screenshots at two widths."""

from __future__ import annotations

import csv
import io
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import ALICE, CHROMIUM, FLAGGED_AMOUNT, WAIT_MS, Desk, wait_until_live

if not CHROMIUM.exists():
    pytest.skip(
        f"browser tests need Debian's chromium at {CHROMIUM} (`make test` installs it)", allow_module_level=True
    )

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MATCHING = 60  # alice's cases scored 0.6 to 0.9: more than a page
SHOTS = Path("/tmp/shots/queue")
FILTERED = {"assignee": ["mine"], "score_min": ["0.6"], "score_max": ["0.9"], "sort": ["amount"]}


@pytest.fixture
def queue_cases(analyst: Any, lead: Any) -> dict[str, list[int]]:
    """Alice's cases in and out of the score range, unclaimed ones, and the lead's: the ids of each."""
    from scoring.models import Case
    from tests.dashboards.conftest import make_case

    def made(n: int, *, score: float, step: float = 0.0, assignee: Any = None, amount: float = 100) -> list[int]:
        ids = []
        for i in range(n):
            decision = "block" if score + i * step >= 0.9 else "review"
            case = make_case(score=score + i * step, decision=decision, amount=Decimal(str(amount + 7.25 * i)))
            ids.append(case.id)
        Case.objects.filter(pk__in=ids).update(assignee=assignee)
        return ids

    return {
        "matching": made(MATCHING, score=0.6, step=0.005, assignee=analyst, amount=40),
        "too_risky": made(5, score=0.95, assignee=analyst, amount=5000),
        "unclaimed": made(5, score=0.7, amount=9000),
        "leads": made(3, score=0.75, assignee=lead, amount=8000),
    }


def amounts(page: Page) -> list[float]:
    return [float(text.split()[0]) for text in page.locator("#queue .case-row .amount").all_inner_texts()]


def downloaded(page: Page, link: str) -> list[dict[str, str]]:
    """Click a download link and read the CSV it saves."""
    with page.expect_download() as download:
        page.click(link)
    return list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))


def test_mine_and_a_score_range_by_amount_page_two_keeps_the_filters_and_the_export_has_the_rows(
    queue_cases: dict[str, list[int]], desk: Desk, tmp_path: Path
):
    page = desk.login(desk.context(), ALICE)
    page.goto("/cases/")
    page.select_option("#filter-assignee", "mine")
    page.click("#filter-more summary")
    page.fill("#filter-score_min", "0.6")
    page.fill("#filter-score_max", "0.9")
    page.select_option("#filter-sort", "amount")
    page.click("#filter-apply")

    page.wait_for_url("**/cases/?*sort=amount*")
    assert parse_qs(urlparse(page.url).query) == FILTERED | {"status": ["open"]}  # empty fields are not sent
    rows = page.locator("#queue .case-row")
    expect(rows).to_have_count(50)
    expect(page.locator("#queue-count")).to_have_text(str(MATCHING))
    for assignee in page.locator("#queue .case-row").evaluate_all("rows => rows.map(r => r.dataset.assignee)"):
        assert assignee == "alice"
    first_page = amounts(page)
    assert first_page == sorted(first_page, reverse=True)

    page.click("#page-next")
    page.wait_for_url("**page=2*")
    assert parse_qs(urlparse(page.url).query) == FILTERED | {"status": ["open"], "page": ["2"]}
    expect(rows).to_have_count(MATCHING - 50)
    assert max(amounts(page)) < min(first_page)
    expect(page.locator("#filter-assignee")).to_have_value("mine")
    expect(page.locator("#filter-score_min")).to_have_value("0.6")
    expect(page.locator("#filter-sort")).to_have_value("amount")

    exported = downloaded(page, "#export-cases")
    largest_first = list(reversed(queue_cases["matching"]))  # made with rising amounts
    assert [int(row["case_id"]) for row in exported] == largest_first  # every matching case, on both pages
    assert {row["assignee"] for row in exported} == {"alice"}
    alerts = downloaded(page, "#export-transactions")
    assert sorted(int(row["case_id"]) for row in alerts) == sorted(queue_cases["matching"])


def test_a_pushed_case_joins_a_page_it_matches_and_is_counted_where_the_page_cannot_place_it(desk: Desk):
    pages = {}
    for name, query in (("unclaimed", "assignee=unclaimed"), ("low", "score_max=0.5"), ("by_age", "sort=age")):
        pages[name] = desk.login(desk.context(), ALICE)
        pages[name].goto(f"/cases/?{query}")
        wait_until_live(pages[name])

    case_id = desk.post(external_id="pushed-1", amount=FLAGGED_AMOUNT)["case_id"]

    expect(pages["unclaimed"].locator(f"#case-{case_id}")).to_be_visible(timeout=WAIT_MS)
    expect(pages["by_age"].locator("#queue-news")).to_be_visible(timeout=WAIT_MS)
    expect(pages["by_age"].locator("#queue-news")).to_contain_text("1 new or changed case may match these filters")
    expect(pages["by_age"].locator(f"#case-{case_id}")).to_have_count(0)
    pages["low"].wait_for_timeout(500)  # it had the same push: it must not show the case
    expect(pages["low"].locator(f"#case-{case_id}")).to_have_count(0)
    expect(pages["low"].locator("#queue-news")).to_be_hidden()

    pages["by_age"].click("#queue-refresh")
    expect(pages["by_age"].locator(f"#case-{case_id}")).to_be_visible(timeout=WAIT_MS)


def test_screenshots_of_the_filtered_queue_and_a_refused_filter_are_saved(
    queue_cases: dict[str, list[int]], desk: Desk, screenshot_dir: Path
):
    SHOTS.mkdir(parents=True, exist_ok=True)
    query = "assignee=mine&score_min=0.6&score_max=0.9&sort=amount&page=2"
    for width in (1440, 390):
        page = desk.login(desk.context(width=width), ALICE)
        shots = {}
        page.goto(f"/cases/?{query}")
        expect(page.locator("#filter-more")).to_have_attribute("open", "")
        expect(page.locator("#pager")).to_be_visible()
        shots["queue-filtered"] = page
        refused = page.context.new_page()
        refused.goto("/cases/?score_min=high&status=closed")
        expect(refused.locator("#filter-errors")).to_be_visible()
        shots["queue-refused"] = refused
        plain = page.context.new_page()
        plain.goto("/cases/")
        wait_until_live(plain)
        shots["queue-default"] = plain
        for name, shot in shots.items():
            path = screenshot_dir / f"{name}-{width}.png"
            shot.screenshot(path=str(path), full_page=True)
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            shutil.copy(path, SHOTS / path.name)
