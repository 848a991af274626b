"""History import as a job: the uploaded CSV is checked whole, then stored in committed chunks on the worker;
invalid rows stop it before anything is stored; a cancel keeps the chunks committed before it."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from scoring import job_runs, jobs
from scoring.models import Job, JobFile, JobState, MerchantHour, Transaction
from tests.scoring.jobs_helpers import history_csv, progress_log

pytestmark = pytest.mark.django_db(transaction=True)


def import_job(lead: User, content: bytes, *, skip_invalid: bool = False) -> Job:
    return jobs.start_import(user=lead, name="history.csv", content=content, source="bank-a", skip_invalid=skip_invalid)


def run_worker_once() -> None:
    call_command("worker", "--once", stdout=StringIO())


def test_an_import_job_stores_the_uploaded_csv_as_labeled_history(lead: User) -> None:
    job = import_job(lead, history_csv(5))
    assert JobFile.objects.get(job=job).size == len(history_csv(5))

    run_worker_once()

    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED, job.outcome
    assert job.outcome == "5 rows read: 5 stored, 0 already present (source imported:bank-a)."
    assert job.rows_done == job.rows_total == 5 and job.percent == 100
    rows = Transaction.objects.order_by("external_id")
    assert [tx.external_id for tx in rows] == ["t1", "t2", "t3", "t4", "t5"]
    assert {tx.model_version for tx in rows} == {"imported:bank-a"}
    assert [tx.is_fraud for tx in rows] == [True, False, True, False, True]
    assert sum(MerchantHour.objects.values_list("count", flat=True)) == 5
    assert not JobFile.objects.exists()  # the upload is kept only until its import ends


def test_an_import_with_an_invalid_row_stores_nothing_and_names_the_line(lead: User) -> None:
    job = import_job(lead, history_csv(6, bad={4}))

    run_worker_once()

    job.refresh_from_db()
    assert job.state == JobState.FAILED
    assert job.outcome.startswith("1 invalid row(s) of 6; nothing was stored (line 5: amount:")
    assert not Transaction.objects.exists()


def test_an_import_skips_invalid_rows_when_the_lead_asks(lead: User) -> None:
    job = import_job(lead, history_csv(6, bad={2, 4}), skip_invalid=True)

    run_worker_once()

    job.refresh_from_db()
    assert job.outcome == "6 rows read: 4 stored, 0 already present, 2 invalid skipped (source imported:bank-a)."
    assert Transaction.objects.count() == 4


def test_a_file_that_is_not_a_history_csv_fails_with_the_reason(lead: User) -> None:
    not_utf8 = import_job(lead, "external_id,merchant\nt1,Café\n".encode("latin-1"))
    run_worker_once()
    wrong_header = import_job(lead, b"id,amount\nt1,5\n")
    run_worker_once()

    not_utf8.refresh_from_db()
    wrong_header.refresh_from_db()
    assert not_utf8.outcome.startswith("history.csv is not UTF-8 text")
    assert wrong_header.outcome.startswith("The header has unknown column(s) id; missing column(s) external_id")


def test_a_cancelled_import_keeps_its_committed_chunks_and_a_second_import_stores_the_rest(
    lead: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job_runs, "IMPORT_CHUNK_ROWS", 2)
    first = import_job(lead, history_csv(7))

    def cancel_after_two_chunks(step: str) -> None:
        if step.startswith("stored 4 ") and Job.objects.get(pk=first.pk).is_active:
            jobs.cancel(first.pk, user=lead)

    progress_log(monkeypatch, on_step=cancel_after_two_chunks)

    run_worker_once()

    first.refresh_from_db()
    assert first.state == JobState.CANCELLED
    assert first.outcome == (
        "Cancelled by lead. 4 of 7 valid rows were stored before it stopped (4 new); importing the file again "
        "stores the rest."
    )
    assert Transaction.objects.count() == 4
    assert sum(MerchantHour.objects.values_list("count", flat=True)) == 4  # each chunk with its hour counts

    again = import_job(lead, history_csv(7))
    run_worker_once()

    again.refresh_from_db()
    assert again.outcome == "7 rows read: 3 stored, 4 already present (source imported:bank-a)."
    assert sum(MerchantHour.objects.values_list("count", flat=True)) == 7


def test_an_import_writes_its_progress_chunk_by_chunk(lead: User, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job_runs, "IMPORT_CHUNK_ROWS", 3)
    written = progress_log(monkeypatch)
    import_job(lead, history_csv(7))

    run_worker_once()

    stored = [(step, fields) for step, fields in written if step.startswith("stored")]
    assert [step for step, _ in stored] == ["stored 3 of 7 rows", "stored 6 of 7 rows", "stored 7 of 7 rows"]
    assert [fields["rows_done"] for _, fields in stored] == [3, 6, 7]
    fractions = [fields["fraction"] for _, fields in written if "fraction" in fields]
    assert fractions == sorted(fractions)


def test_an_upload_over_the_limit_or_empty_is_refused(lead: User, settings: Any) -> None:
    settings.IMPORT_MAX_BYTES = 100

    with pytest.raises(jobs.JobRefused, match=r"history\.csv is 1\d\d bytes; the limit is 100"):
        import_job(lead, history_csv(1))
    with pytest.raises(jobs.JobRefused, match=r"history\.csv is empty"):
        import_job(lead, b"\n")
    assert not Job.objects.exists()
