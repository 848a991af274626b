"""Background jobs: a lead starts a retrain or a history import, the worker runs it, the jobs page shows how far
it has come; the schedule starts a retrain when one is due.

Every change a person makes to a job goes through here (start, cancel): the role is checked, the job's row
records who did what and when (it is the job's audit trail), and the task is queued in the same database
transaction as the row, so there is never a job without its task or a task without its job. Nothing is pushed
over the dashboard socket: the jobs page polls the rows while a job is under way (dashboards/job_pages.py), since
the worker is another process and only polling reaches the page without Redis too.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from django_tasks import task

from scoring import job_runs
from scoring.models import ModelVersion
from scoring.models.jobs import Job, JobFile, JobKind, JobState
from scoring.roles import require_lead

log = logging.getLogger(__name__)

# A running job writes a heartbeat this often (scoring/job_runs.py); one silent for SILENT_SECONDS has lost its
# worker (killed, its machine gone) and is marked failed, so that it no longer blocks the next job of its kind.
SILENT_SECONDS = 120
SOURCE_MAX_LENGTH = 40  # recorded as model_version "imported:SOURCE" (80 characters)


class JobRefused(Exception):
    """The job cannot be started or cancelled now; the message says why, in words for the page."""


@task()
def run_job(job_id: int) -> str:
    """The task the worker runs for every job: the job's kind decides what it does (scoring/job_runs.py)."""
    return job_runs.run(job_id)


def start_retrain(*, user: AbstractBaseUser, activate: bool, challenger: bool = False, **training: Any) -> Job:
    """Queue a retrain as `train_model` does it (stored labeled history, or simulated history when too little is
    labeled); `activate` makes the new version the active one, `challenger` the challenger (one or the other).
    `training`: simulate_days, cards, trees (tests)."""
    require_lead(user, doing="start a retrain")
    if activate and challenger:
        raise JobRefused("Choose one: activate the new version or make it the challenger.")
    options = {"activate": activate, "challenger": challenger, **training}
    return _queue(kind=JobKind.RETRAIN, user=user, options=options)


def start_import(*, user: AbstractBaseUser, name: str, content: bytes, source: str, skip_invalid: bool) -> Job:
    """Queue the import of an uploaded CSV of labeled history, kept in the database until the import ends."""
    require_lead(user, doing="import history")
    if len(content) > settings.IMPORT_MAX_BYTES:
        raise JobRefused(
            f"{name} is {len(content):,} bytes; the limit is {settings.IMPORT_MAX_BYTES:,} "
            "(larger files: python manage.py import_transactions)"
        )
    if not content.strip():
        raise JobRefused(f"{name} is empty")
    source = source.strip()
    if not source or len(source) > SOURCE_MAX_LENGTH:
        raise JobRefused(f"the source is a name of 1 to {SOURCE_MAX_LENGTH} characters")
    with transaction.atomic():
        options = {"source": source, "skip_invalid": skip_invalid, "file": name[:200]}
        job = _queue(kind=JobKind.IMPORT, user=user, options=options)
        JobFile.objects.create(job=job, name=name[:200], size=len(content), content=content)
    return job


def cancel(job_id: int, *, user: AbstractBaseUser) -> Job:
    """Cancel a job: a queued one at once; a running one stops at its next chunk (the job says what it kept).
    Raises Job.DoesNotExist, or JobRefused for a job that has already ended."""
    require_lead(user, doing="cancel a job")
    now = timezone.now()
    ended = {"state": JobState.CANCELLED, "finished_at": now, "cancel_requested": True, "cancelled_by": user}
    queued = Job.objects.filter(pk=job_id, state=JobState.QUEUED)
    silent = Job.objects.silent_since(now - timedelta(seconds=SILENT_SECONDS)).filter(pk=job_id)
    if queued.update(**ended, outcome="Cancelled before it started.") or silent.update(
        **ended, outcome="Cancelled; its worker had stopped answering."
    ):
        JobFile.objects.filter(job_id=job_id).delete()
    elif not Job.objects.filter(pk=job_id, state=JobState.RUNNING).update(cancel_requested=True, cancelled_by=user):
        job = Job.objects.get(pk=job_id)
        raise JobRefused(f"{job.get_kind_display()} #{job.pk} has already ended ({job.get_state_display().lower()})")
    log.info("job %s: cancel asked by %s", job_id, user.get_username())
    return Job.objects.get(pk=job_id)


def schedule_retrain(*, now: datetime | None = None) -> str | None:
    """The worker's duty: queue a retrain once the newest model version, and the newest retrain, are
    RETRAIN_EVERY_DAYS old. Queued once however many workers find it due: the due moment is the job's schedule
    key, unique per kind. With no model version at all nothing is scheduled: the first is trained by hand."""
    days = settings.RETRAIN_EVERY_DAYS
    if days <= 0:
        return None
    newest = [
        ModelVersion.objects.aggregate(at=Max("created_at"))["at"],
        Job.objects.filter(kind=JobKind.RETRAIN).aggregate(at=Max("created_at"))["at"],
    ]
    if newest[0] is None:
        return None
    due = max(at for at in newest if at is not None) + timedelta(days=days)
    if (now or timezone.now()) < due:
        return None
    # A scheduled retrain keeps its version inactive (a lead activates it in the admin), and trains on stored
    # history only: simulated history is for a first look, never for a model that replaces a real one.
    options = {"activate": False, "simulate_if_short": False}
    try:
        job = _queue(kind=JobKind.RETRAIN, user=None, options=options, schedule_key=due.isoformat())
    except JobRefused:  # a retrain is under way, or another worker queued this one a moment ago
        return None
    return f"retrain #{job.pk} queued, due since {due:%Y-%m-%d %H:%M} UTC"


def expire_silent(*, now: datetime | None = None) -> list[int]:
    """The worker's duty: fail the running jobs whose worker stopped answering (killed mid-job), so that the next
    job of their kind may start; returns their ids."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=SILENT_SECONDS)
    outcome = "Failed: its worker stopped answering (killed or its machine lost); start it again."
    expired = []
    for job_id in Job.objects.silent_since(cutoff).values_list("pk", flat=True):
        if (
            Job.objects.silent_since(cutoff)
            .filter(pk=job_id)
            .update(state=JobState.FAILED, finished_at=now, outcome=outcome)
        ):
            JobFile.objects.filter(job_id=job_id).delete()
            expired.append(job_id)
    return expired


def busy_with(kind: str) -> Job | None:
    """The queued or running job of this kind, if any."""
    return Job.objects.active().filter(kind=kind).select_related("requested_by").first()


def _queue(
    *, kind: str, user: AbstractBaseUser | None, options: dict[str, Any], schedule_key: str | None = None
) -> Job:
    """The job's row and its task, in one transaction; JobRefused while another of its kind is queued or running
    (the unique index on active jobs decides, so two leads clicking at once get one job)."""
    try:
        with transaction.atomic():
            job = Job.objects.create(
                kind=kind,
                requested_by=user,
                options=options,
                scheduled=schedule_key is not None,
                schedule_key=schedule_key,
            )
            job.task_id = str(run_job.enqueue(job.pk).id)
            job.save(update_fields=["task_id"])
    except IntegrityError:
        raise JobRefused(_busy_message(kind)) from None
    who = user.get_username() if user is not None else "the schedule"
    log.info("job %s: %s queued by %s", job.pk, kind, who)
    return job


def _busy_message(kind: str) -> str:
    label = JobKind(kind).label
    running = busy_with(kind)
    if running is None:  # it ended between the refusal and this look
        return f"A {label.lower()} was queued at the same moment; try again."
    by = running.requested_by.get_username() if running.requested_by else "the schedule"
    doing = f"{running.percent} % done" if running.state == JobState.RUNNING else "waiting for the worker"
    return (
        f"{label} #{running.pk} (started by {by}) is {doing}: one {label.lower()} at a time. "
        "Wait for it to end, or cancel it."
    )
