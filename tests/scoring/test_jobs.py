"""Background jobs: a retrain or an import a lead starts runs on the worker, writes its progress as it goes, stops
cleanly when cancelled, runs one at a time per kind; the schedule queues a retrain once when it is due."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.utils import timezone

from scoring import job_runs, jobs, worker
from scoring.models import Job, JobFile, JobKind, JobState, ModelVersion
from tests.scoring.jobs_helpers import SMALL_RETRAIN, history_csv, progress_log

pytestmark = pytest.mark.django_db(transaction=True)  # the worker runs jobs as it would: outside a test transaction


def run_worker_once() -> str:
    out = StringIO()
    call_command("worker", "--once", stdout=out)
    return out.getvalue()


# --- retrain ---------------------------------------------------------------------------------------------------


def test_a_retrain_runs_on_the_worker_and_stores_a_model_version(lead: User) -> None:
    job = jobs.start_retrain(user=lead, activate=True, **SMALL_RETRAIN)
    assert job.state == JobState.QUEUED and job.task_id

    run_worker_once()

    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED, job.outcome
    assert job.percent == 100 and job.finished_at is not None and job.elapsed() is not None
    mv = ModelVersion.objects.get()
    assert job.model_version == mv and mv.is_active
    assert mv.params["n_estimators"] == SMALL_RETRAIN["trees"]
    assert mv.version in job.outcome and "simulated" in job.outcome


def test_a_retrain_writes_its_progress_as_it_goes(lead: User, monkeypatch: pytest.MonkeyPatch) -> None:
    written = progress_log(monkeypatch)
    job = jobs.start_retrain(user=lead, activate=False, **SMALL_RETRAIN)

    run_worker_once()

    fractions = [fields["fraction"] for _, fields in written if "fraction" in fields]
    assert len(fractions) >= 8 and fractions == sorted(fractions) and fractions[-1] < 1
    steps = [step for step, _ in written]
    assert any(step.startswith("trees:") for step in steps) and "storing the model version" in steps
    assert any(fields.get("rows_total") for _, fields in written)  # the rows whose features it computes
    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED and job.percent == 100 and job.step == ""
    assert job.rows_done == job.rows_total > 0
    assert not ModelVersion.objects.get().is_active  # "keep inactive"


def test_a_lead_cancels_a_running_retrain_and_it_stops_at_its_next_step(
    lead: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = jobs.start_retrain(user=lead, activate=True, **SMALL_RETRAIN)
    progress_log(monkeypatch, on_step=lambda step: step.startswith("trees") and jobs.cancel(job.pk, user=lead))

    run_worker_once()

    job.refresh_from_db()
    assert job.state == JobState.CANCELLED and job.outcome == "Cancelled by lead."
    assert job.cancelled_by == lead and job.finished_at is not None
    assert not ModelVersion.objects.exists()


def test_a_retrain_that_cannot_train_fails_and_says_why(lead: User) -> None:
    job = jobs.start_retrain(user=lead, activate=True, simulate_if_short=False)

    run_worker_once()

    job.refresh_from_db()
    assert job.state == JobState.FAILED
    assert job.outcome.startswith("only 0 labeled stored transactions")


# --- one at a time, cancel, the worker going away ---------------------------------------------------------------


def test_a_second_job_of_a_kind_is_refused_while_one_is_queued_but_another_kind_is_not(lead: User) -> None:
    first = jobs.start_retrain(user=lead, activate=False)

    with pytest.raises(jobs.JobRefused) as refused:
        jobs.start_retrain(user=lead, activate=True)

    assert str(refused.value) == (
        f"Retrain #{first.pk} (started by lead) is waiting for the worker: one retrain at a time. "
        "Wait for it to end, or cancel it."
    )
    assert jobs.start_import(user=lead, name="h.csv", content=history_csv(2), source="bank", skip_invalid=False)
    assert Job.objects.filter(kind=JobKind.RETRAIN).count() == 1


def test_a_new_retrain_may_start_once_the_last_one_ended(lead: User) -> None:
    first = jobs.start_retrain(user=lead, activate=False)
    jobs.cancel(first.pk, user=lead)

    second = jobs.start_retrain(user=lead, activate=False)

    assert second.pk != first.pk and second.state == JobState.QUEUED


def test_cancelling_a_queued_job_ends_it_at_once_and_the_worker_skips_it(lead: User) -> None:
    job = jobs.start_import(user=lead, name="h.csv", content=history_csv(3), source="bank", skip_invalid=False)

    cancelled = jobs.cancel(job.pk, user=lead)
    run_worker_once()

    assert cancelled.state == JobState.CANCELLED and cancelled.outcome == "Cancelled before it started."
    assert Job.objects.get(pk=job.pk).started_at is None
    assert not JobFile.objects.exists()  # the upload goes with it
    with pytest.raises(jobs.JobRefused, match="has already ended"):
        jobs.cancel(job.pk, user=lead)


def test_analysts_may_neither_start_nor_cancel_jobs(lead: User, analyst: User) -> None:
    job = jobs.start_retrain(user=lead, activate=False)

    with pytest.raises(PermissionDenied):
        jobs.start_retrain(user=analyst, activate=False)
    with pytest.raises(PermissionDenied):
        jobs.start_import(user=analyst, name="h.csv", content=history_csv(1), source="x", skip_invalid=False)
    with pytest.raises(PermissionDenied):
        jobs.cancel(job.pk, user=analyst)
    assert Job.objects.get().state == JobState.QUEUED


def test_a_job_whose_worker_went_silent_is_failed_and_no_longer_blocks_its_kind(lead: User) -> None:
    job = jobs.start_retrain(user=lead, activate=False)
    long_ago = timezone.now() - timedelta(seconds=jobs.SILENT_SECONDS + 1)
    Job.objects.filter(pk=job.pk).update(state=JobState.RUNNING, started_at=long_ago, heartbeat_at=long_ago)

    assert jobs.expire_silent() == [job.pk]

    job.refresh_from_db()
    assert job.state == JobState.FAILED and "stopped answering" in job.outcome
    assert jobs.expire_silent() == []
    assert jobs.start_retrain(user=lead, activate=False).state == JobState.QUEUED


def test_the_worker_stopping_ends_a_running_job_between_steps(lead: User, monkeypatch: pytest.MonkeyPatch) -> None:
    job = jobs.start_retrain(user=lead, activate=True, **SMALL_RETRAIN)
    progress_log(monkeypatch, on_step=lambda step: step.startswith("computing features") and worker.stopping.set())
    try:
        run_worker_once()
    finally:
        worker.stopping.clear()

    job.refresh_from_db()
    assert job.state == JobState.CANCELLED and job.outcome.startswith("Stopped with the worker")
    assert not ModelVersion.objects.exists()


# --- the schedule ---------------------------------------------------------------------------------------------


def model_made(*, days_ago: float, tiny_artifact: bytes) -> ModelVersion:
    from scoring.features import FEATURES

    at = timezone.now() - timedelta(days=days_ago)
    return ModelVersion.objects.create(
        version=f"v-{days_ago}", artifact=tiny_artifact, features=FEATURES, created_at=at
    )


def test_the_schedule_queues_a_retrain_once_when_the_newest_model_is_a_week_old(tiny_artifact: bytes) -> None:
    model_made(days_ago=7.1, tiny_artifact=tiny_artifact)

    said = jobs.schedule_retrain()
    again = jobs.schedule_retrain()

    job = Job.objects.get()
    assert said is not None and said.startswith(f"retrain #{job.pk} queued, due since ")
    assert again is None
    assert job.scheduled and job.requested_by is None
    assert job.options == {"activate": False, "simulate_if_short": False}
    Job.objects.filter(pk=job.pk).update(state=JobState.SUCCEEDED)
    assert jobs.schedule_retrain() is None  # the retrain it queued moved the next one a week on


def test_two_workers_finding_the_same_retrain_due_queue_it_once(tiny_artifact: bytes) -> None:
    model_made(days_ago=8, tiny_artifact=tiny_artifact)
    assert jobs.schedule_retrain() is not None
    job = Job.objects.get()
    Job.objects.filter(pk=job.pk).update(state=JobState.SUCCEEDED)  # finished before the second worker looks

    # The second worker read the newest model and retrain before the first one's commit: the same due moment.
    with pytest.raises(jobs.JobRefused):
        jobs._queue(kind=JobKind.RETRAIN, user=None, options={}, schedule_key=job.schedule_key)

    assert Job.objects.count() == 1


def test_the_schedule_waits_for_a_young_model_and_is_off_at_zero_days(tiny_artifact: bytes, settings: Any) -> None:
    assert jobs.schedule_retrain() is None  # no model yet: the first one is trained by hand
    model_made(days_ago=6.9, tiny_artifact=tiny_artifact)
    assert jobs.schedule_retrain() is None
    assert jobs.schedule_retrain(now=timezone.now() + timedelta(days=0.2)) is not None
    Job.objects.all().delete()

    settings.RETRAIN_EVERY_DAYS = 0

    assert jobs.schedule_retrain(now=timezone.now() + timedelta(days=365)) is None


def test_the_worker_runs_the_schedule_as_one_of_its_duties(
    tiny_artifact: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_made(days_ago=10, tiny_artifact=tiny_artifact)
    monkeypatch.setattr(job_runs, "RUNNERS", {JobKind.RETRAIN: lambda job, progress: "trained (stand-in)"})

    said = run_worker_once()

    job = Job.objects.get()
    assert f"schedule_retrain: retrain #{job.pk} queued" in said
    assert job.state == JobState.SUCCEEDED and job.outcome == "trained (stand-in)"


def test_each_retrain_on_simulated_history_simulates_its_own_so_a_challenger_can_differ(lead: User) -> None:
    for _ in range(2):
        jobs.start_retrain(user=lead, activate=False, **SMALL_RETRAIN)
        run_worker_once()

    first, second = ModelVersion.objects.order_by("id")
    assert bytes(first.artifact) != bytes(second.artifact)
