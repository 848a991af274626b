"""A real browser on a real daphne process, with the real worker beside it: a lead starts a retrain from the jobs
page and watches its progress reach 100 %, then uploads a history file at phone width and sees it imported."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import CHROMIUM, LEAD, ROOT, WAIT_MS, Desk, outside_the_browser_loop
from tests.e2e.test_worker import process_env
from tests.scoring.jobs_helpers import history_csv

if not CHROMIUM.exists():
    pytest.skip(
        f"browser tests need Debian's chromium at {CHROMIUM} (`make test` installs it)", allow_module_level=True
    )

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

JOB_MS = 120_000  # a retrain on a few weeks of history, on two shared cores


@pytest.fixture
def labeled_history(transactional_db, tmp_path: Path) -> int:
    """Three weeks of simulated labeled history stored as an import would store it: enough for a retrain on
    stored rows (no simulation in the job), small enough to train in seconds. Asked for before `desk`."""
    from django.utils import timezone

    from scoring.history import import_csv, write_csv
    from scoring.simulation import Simulator

    end = timezone.now().replace(microsecond=0) - timedelta(hours=1)
    records = Simulator(seed=5, cards=300, merchants=75, fraud_scale=3.0).history(
        start=end - timedelta(days=21), end=end
    )
    path = tmp_path / "history.csv"
    with open(path, "w", newline="") as f:
        count = write_csv(records, f)
    import_csv(path, source="seed")
    return count


@pytest.fixture
def worker(transactional_db, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`manage.py worker` on the test database, as the Procfile starts it."""
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 (closed below, after the process)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "worker"],
        cwd=ROOT,
        env=process_env(WORKER_TICK_SECONDS="0.5"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()


def test_a_lead_starts_a_retrain_and_watches_its_progress_reach_100_percent(
    labeled_history: int, worker: subprocess.Popen[bytes], desk: Desk, screenshot_dir: Path
) -> None:
    lead = desk.login(desk.context(width=1440), LEAD)
    lead.click("#nav-jobs")
    lead.wait_for_url(f"{desk.base}/jobs/", timeout=WAIT_MS)
    expect(lead.locator("#job-list")).to_contain_text("No jobs yet")

    lead.click("#start-retrain")

    job = lead.locator(".job").first
    expect(lead.locator(".messages")).to_contain_text("queued: its progress shows below")
    # Whatever state the page first shows (a small retrain may go from queued to done between two polls), the
    # list polls from then on until the job ends (tests/dashboards/test_job_pages.py pins when it polls).
    expect(job.locator(".job-state")).to_have_text(re.compile("Queued|Running|Done"))
    lead.screenshot(path=str(screenshot_dir / "jobs-retrain-started-1440.png"), full_page=True)
    expect(job.locator(".job-percent")).to_have_text("100 %", timeout=JOB_MS)
    expect(job.locator(".job-state")).to_have_text("Done")
    expect(job.locator(".job-outcome")).to_contain_text(f"trained on {labeled_history:,} stored transactions")
    expect(job.locator("progress")).to_have_attribute("value", "100")
    expect(lead.locator("#job-list")).not_to_have_attribute("hx-trigger", "every 1s")  # polling stopped
    lead.screenshot(path=str(screenshot_dir / "jobs-retrain-done-1440.png"), full_page=True)

    from scoring.models import ModelVersion

    stored = outside_the_browser_loop(lambda: ModelVersion.objects.filter(data_range__source="stored").count())
    assert stored == 1


def test_a_lead_uploads_history_at_phone_width_and_sees_it_imported(
    worker: subprocess.Popen[bytes], desk: Desk, screenshot_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "march.csv"
    path.write_bytes(history_csv(40))
    lead = desk.login(desk.context(width=390), LEAD)
    lead.goto("/jobs/")

    lead.set_input_files("#import-file", str(path))
    lead.fill("#import-source", "bank-march")
    lead.click("#start-import")

    job = lead.locator(".job").first
    expect(job.locator(".job-percent")).to_have_text("100 %", timeout=JOB_MS)
    expect(job.locator(".job-outcome")).to_have_text(
        "40 rows read: 40 stored, 0 already present (source imported:bank-march)."
    )
    expect(job).to_contain_text("march.csv")
    lead.screenshot(path=str(screenshot_dir / "jobs-import-done-390.png"), full_page=True)
