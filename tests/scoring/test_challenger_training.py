"""A new model version made the challenger as it is stored: by `train_model --challenger` and by a lead's retrain."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from scoring import jobs
from scoring.models import Job, JobState, ModelChange, ModelChangeKind, ModelVersion
from tests.scoring.jobs_helpers import SMALL_RETRAIN
from tests.scoring.test_jobs import run_worker_once

SMALL = ["--simulate-days", "21", "--cards", "200", "--trees", "10"]


@pytest.mark.django_db
def test_train_model_challenger_stores_the_challenger_without_activating_it(model_version: ModelVersion) -> None:
    out = StringIO()

    call_command("train_model", *SMALL, "--challenger", stdout=out)

    new = ModelVersion.objects.exclude(pk=model_version.pk).get()
    assert new.is_challenger and not new.is_active
    assert ModelVersion.objects.active() == model_version
    change = ModelChange.objects.get()
    assert (change.model_version, change.kind, change.actor) == (new, ModelChangeKind.CHALLENGER, None)
    assert f"stored model version {new.version} (the challenger" in out.getvalue()


@pytest.mark.django_db
def test_train_model_refuses_activate_and_challenger_together() -> None:
    with pytest.raises(CommandError, match="not allowed with argument"):
        call_command("train_model", *SMALL, "--activate", "--challenger", stdout=StringIO(), stderr=StringIO())
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db(transaction=True)  # the worker runs jobs as it would: outside a test transaction
def test_a_lead_s_retrain_makes_its_version_the_challenger_audited_as_theirs(
    model_version: ModelVersion, lead: User
) -> None:
    job = jobs.start_retrain(user=lead, activate=False, challenger=True, **SMALL_RETRAIN)

    run_worker_once()

    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED, job.outcome
    assert job.model_version.is_challenger and not job.model_version.is_active
    assert "(the challenger: compare it at /models/challenger/)" in job.outcome
    assert ModelChange.objects.get().actor == lead


@pytest.mark.django_db
def test_a_retrain_cannot_both_activate_and_make_the_challenger(lead: User) -> None:
    with pytest.raises(jobs.JobRefused, match="Choose one"):
        jobs.start_retrain(user=lead, activate=True, challenger=True)
    assert not Job.objects.exists()
