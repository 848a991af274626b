"""Background jobs a lead starts (retrain, history import) or the schedule starts: what each is doing now, for the
jobs page, and how it ended. The job framework (django-tasks) runs them; these rows are what people see."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class JobKind(models.TextChoices):
    RETRAIN = "retrain", "Retrain"
    IMPORT = "import", "History import"


class JobState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATES = (JobState.QUEUED, JobState.RUNNING)


class JobQuerySet(models.QuerySet):
    def active(self) -> JobQuerySet:
        """Queued or running: at most one of each kind (a unique index says so)."""
        return self.filter(state__in=ACTIVE_STATES)

    def silent_since(self, cutoff: datetime) -> JobQuerySet:
        """Running jobs whose worker has written nothing since `cutoff`: it died under them."""
        return self.filter(state=JobState.RUNNING, heartbeat_at__lt=cutoff)


class Job(models.Model):
    """One run of a retrain or an import: who asked, its progress as the worker writes it, and its outcome."""

    kind = models.CharField(max_length=16, choices=JobKind.choices)
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.QUEUED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Started by the schedule (RETRAIN_EVERY_DAYS), not a person; the key is the due moment it was queued for,
    # unique per kind, so workers that find the same retrain due at once queue it once.
    scheduled = models.BooleanField(default=False)
    schedule_key = models.CharField(max_length=40, null=True, blank=True)
    options = models.JSONField(default=dict, blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    fraction = models.FloatField(default=0.0)
    rows_done = models.BigIntegerField(default=0)
    rows_total = models.BigIntegerField(null=True, blank=True)
    step = models.CharField(max_length=200, blank=True)
    cancel_requested = models.BooleanField(default=False)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    outcome = models.TextField(blank=True)
    model_version = models.ForeignKey(
        "scoring.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind"], condition=models.Q(state__in=ACTIVE_STATES), name="one_active_job_per_kind"
            ),
            models.UniqueConstraint(fields=["kind", "schedule_key"], name="one_job_per_schedule_key"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.get_state_display().lower()})"

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def percent(self) -> int:
        """Whole percent done; 100 only once it succeeded, however close the last chunk came."""
        if self.state == JobState.SUCCEEDED:
            return 100
        return min(99, int(self.fraction * 100))

    def elapsed(self, *, now: datetime | None = None) -> timedelta | None:
        """Running time so far, or in all once finished; None before it started."""
        if self.started_at is None:
            return None
        return (self.finished_at or now or timezone.now()) - self.started_at


class JobFile(models.Model):
    """An uploaded CSV, kept in the database so a worker on another host can read it; deleted when its import ends."""

    job = models.OneToOneField(Job, on_delete=models.CASCADE, related_name="file")
    name = models.CharField(max_length=200)
    size = models.BigIntegerField()
    content = models.BinaryField()

    def __str__(self) -> str:
        return self.name
