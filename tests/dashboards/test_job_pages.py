"""The jobs page: leads start a retrain or upload an import, follow the jobs' progress (polled while one runs) and
cancel them; analysts are refused."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from dashboards.job_pages import elapsed_words
from scoring import jobs
from scoring.models import Job, JobFile, JobKind, JobState
from tests.dashboards.conftest import HTMX
from tests.scoring.jobs_helpers import history_csv

pytestmark = pytest.mark.django_db

POLLS = 'hx-trigger="every 1s"'


@pytest.fixture
def lead_client(lead: User) -> Client:
    client = Client()
    client.force_login(lead)
    return client


def upload(content: bytes, *, name: str = "history.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="text/csv")


def test_the_page_offers_both_jobs_and_polls_only_while_a_job_is_under_way(lead_client: Client, lead: User) -> None:
    idle = lead_client.get("/jobs/")
    assert idle.status_code == 200
    page = idle.content.decode()
    assert 'id="start-retrain"' in page and 'id="start-import"' in page and "No jobs yet" in page
    assert POLLS not in page

    job = jobs.start_retrain(user=lead, activate=False)
    running = lead_client.get("/jobs/").content.decode()
    assert POLLS in running and f'id="job-{job.pk}"' in running and "waiting for the worker" in running

    Job.objects.filter(pk=job.pk).update(state=JobState.SUCCEEDED, outcome="Model version v1 (not active).")
    assert POLLS not in lead_client.get("/jobs/list").content.decode()


def test_a_running_job_shows_its_percentage_rows_elapsed_time_and_step(lead_client: Client, lead: User) -> None:
    job = jobs.start_import(user=lead, name="march.csv", content=history_csv(3), source="bank", skip_invalid=False)
    started = timezone.now() - timedelta(minutes=2, seconds=5)
    Job.objects.filter(pk=job.pk).update(
        state=JobState.RUNNING, started_at=started, fraction=0.42, rows_done=4000, rows_total=9500, step="stored 4,000"
    )

    listed = lead_client.get("/jobs/list", **HTMX).content.decode()

    assert '<progress max="100" value="42"' in listed and "42 %" in listed
    assert "4,000 of 9,500 rows" in listed and "2 min 0" in listed and "stored 4,000" in listed
    assert "march.csv" in listed and "by lead" in listed and "Cancel" in listed


def test_analysts_are_refused_the_page_and_every_action(analyst: User) -> None:
    client = Client()
    client.force_login(analyst)

    refused = client.get("/jobs/")

    assert refused.status_code == 403 and "Jobs are for leads" in refused.content.decode()
    assert client.get("/jobs/list").status_code == 403
    assert client.post("/jobs/retrain").status_code == 403
    assert client.post("/jobs/import", {"file": upload(history_csv(1)), "source": "x"}).status_code == 403
    assert not Job.objects.exists()


def test_a_lead_starts_a_retrain_and_a_second_is_refused_with_the_reason(lead_client: Client) -> None:
    started = lead_client.post("/jobs/retrain", {"then": "activate"})

    assert started.status_code == 302 and started["Location"] == "/jobs/"
    job = Job.objects.get()
    assert job.kind == JobKind.RETRAIN and job.options == {"activate": True, "challenger": False}
    assert f"Retrain #{job.pk} queued" in lead_client.get("/jobs/").content.decode()

    second = lead_client.post("/jobs/retrain")

    assert second.status_code == 409
    assert f"Retrain #{job.pk} (started by lead) is waiting for the worker" in second.content.decode()
    assert Job.objects.count() == 1


@pytest.mark.parametrize(
    ("then", "options"),
    [
        ({}, {"activate": False, "challenger": False}),
        ({"then": "keep"}, {"activate": False, "challenger": False}),
        ({"then": "challenger"}, {"activate": False, "challenger": True}),
    ],
)
def test_a_retrain_keeps_its_version_inactive_or_makes_it_the_challenger_as_chosen(
    lead_client: Client, then: dict[str, str], options: dict[str, bool]
) -> None:
    page = lead_client.get("/jobs/").content.decode()
    assert 'id="retrain-keep" checked' in page and 'id="retrain-challenger"' in page and 'id="retrain-activate"' in page

    assert lead_client.post("/jobs/retrain", then).status_code == 302

    assert Job.objects.get().options == options


def test_a_retrain_with_an_unknown_choice_is_refused_on_the_page(lead_client: Client) -> None:
    refused = lead_client.post("/jobs/retrain", {"then": "both"})

    assert refused.status_code == 400 and "Choose what to do with the new version." in refused.content.decode()
    assert not Job.objects.exists()


def test_a_lead_uploads_a_csv_and_the_import_is_queued_with_its_file(lead_client: Client) -> None:
    content = history_csv(4)

    answer = lead_client.post("/jobs/import", {"file": upload(content), "source": "bank-b", "skip_invalid": "on"})

    assert answer.status_code == 302
    job = Job.objects.get()
    assert job.kind == JobKind.IMPORT
    assert job.options == {"source": "bank-b", "skip_invalid": True, "file": "history.csv"}
    assert bytes(JobFile.objects.get(job=job).content) == content


def test_an_upload_over_the_limit_or_missing_is_refused_on_the_page(lead_client: Client, settings: Any) -> None:
    settings.IMPORT_MAX_BYTES = 50

    too_big = lead_client.post("/jobs/import", {"file": upload(history_csv(2)), "source": "bank"})
    missing = lead_client.post("/jobs/import", {"source": "bank"})

    assert too_big.status_code == 400 and "the limit is 50" in too_big.content.decode()
    assert missing.status_code == 400 and "This field is required" in missing.content.decode()
    assert not Job.objects.exists()


def test_cancelling_from_the_list_answers_with_the_list_and_says_what_happened(lead_client: Client, lead: User) -> None:
    queued = jobs.start_retrain(user=lead, activate=False)

    answer = lead_client.post("/jobs/cancel", {"job": queued.pk}, **HTMX)

    listed = answer.content.decode()
    assert answer.status_code == 200 and listed.lstrip().startswith('<section class="card jobs-card" id="job-list"')
    assert f"Retrain #{queued.pk} cancelled." in listed and "Cancelled before it started." in listed
    assert Job.objects.get().state == JobState.CANCELLED
    again = lead_client.post("/jobs/cancel", {"job": queued.pk}, **HTMX).content.decode()
    assert "has already ended (cancelled)" in again
    assert lead_client.post("/jobs/cancel", {"job": 999999}).status_code == 404


def test_cancelling_a_running_job_asks_it_to_stop(lead_client: Client, lead: User) -> None:
    job = jobs.start_retrain(user=lead, activate=False)
    Job.objects.filter(pk=job.pk).update(state=JobState.RUNNING, started_at=timezone.now(), heartbeat_at=timezone.now())

    listed = lead_client.post("/jobs/cancel", {"job": job.pk}, **HTMX).content.decode()

    assert "asked to stop: it stops at its next chunk" in listed and "Stopping…" in listed
    job.refresh_from_db()
    assert job.state == JobState.RUNNING and job.cancel_requested and job.cancelled_by == lead


@pytest.mark.parametrize(
    ("span", "words"),
    [
        (None, ""),
        (timedelta(seconds=12.7), "12 s"),
        (timedelta(minutes=3, seconds=5), "3 min 05 s"),
        (timedelta(hours=1, minutes=2, seconds=59), "1 h 02 min"),
    ],
)
def test_elapsed_time_reads_in_words(span: timedelta | None, words: str) -> None:
    assert elapsed_words(span) == words
