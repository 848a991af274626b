"""The worker as a real process: the Procfile's `worker` line returns idle claims to the queue and stops cleanly on
SIGTERM, and `make demo` runs it beside the server and the simulator and stops it with them."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone

from scoring import jobs
from scoring.models import Case, Job, JobState, ModelVersion
from tests.dashboards.conftest import make_case, make_tx
from tests.e2e.conftest import ROOT
from tests.e2e.conftest import test_database_url as shared_database_url
from tests.scoring.jobs_helpers import SMALL_RETRAIN

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def procfile_command(name: str) -> list[str]:
    (line,) = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith(f"{name}:")]
    program, *args = shlex.split(line.removeprefix(f"{name}:"))
    assert program == "python"
    return [sys.executable, *args]  # this checkout's Python, as the platform's would be its own


def process_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": shared_database_url(), "SECRET_KEY": settings.SECRET_KEY, **extra}
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
        env["CHANNEL_PREFIX"] = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    return env


def wait_for(condition: Any, *, seconds: float, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the worker ended early:\n{proc.stdout.read() if proc.stdout else ''}")
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s")
        time.sleep(0.1)


def test_the_procfiles_worker_returns_an_idle_claim_and_stops_cleanly_on_sigterm(analyst: User) -> None:
    idle, active = make_case(), make_case()
    Case.objects.filter(pk=idle.pk).update(assignee=analyst, assignee_active_at=timezone.now() - timedelta(minutes=31))
    Case.objects.filter(pk=active.pk).update(assignee=analyst, assignee_active_at=timezone.now())

    proc = subprocess.Popen(
        procfile_command("worker"),
        cwd=ROOT,
        env=process_env(WORKER_TICK_SECONDS="0.2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: Case.objects.get(pk=idle.pk).assignee_id is None, seconds=30, proc=proc)
        time.sleep(0.5)  # a few more rounds: the active claim stays through them
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert proc.returncode == 0, output
    assert f"lapse_idle_claims: {idle.id}\n" in output
    assert output.rstrip().endswith("worker: stopped")
    assert Case.objects.get(pk=active.pk).assignee_id == analyst.pk
    assert Case.objects.get(pk=idle.pk).events.filter(action="lapsed", via="claim timeout").count() == 1


def start_worker(**env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        procfile_command("worker"),
        cwd=ROOT,
        env=process_env(WORKER_TICK_SECONDS="0.2", **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop_worker(proc: subprocess.Popen[str]) -> str:
    try:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return output


def test_the_worker_runs_a_leads_retrain_and_stops_cleanly_on_sigterm(lead: User) -> None:
    job = jobs.start_retrain(user=lead, activate=True, **SMALL_RETRAIN)

    proc = start_worker()
    try:
        wait_for(lambda: not Job.objects.get(pk=job.pk).is_active, seconds=90, proc=proc)
    finally:
        output = stop_worker(proc)

    assert proc.returncode == 0, output
    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED, job.outcome
    assert ModelVersion.objects.get().is_active and job.model_version_id == ModelVersion.objects.get().pk
    assert output.rstrip().endswith("worker: stopped")


def test_sigterm_stops_a_running_job_at_its_next_step_and_the_worker_then_exits(lead: User) -> None:
    job = jobs.start_retrain(user=lead, activate=True, simulate_days=35, cards=600)

    proc = start_worker()
    try:
        wait_for(lambda: Job.objects.get(pk=job.pk).state == JobState.RUNNING, seconds=30, proc=proc)
    finally:
        output = stop_worker(proc)

    assert proc.returncode == 0, output
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED and job.outcome.startswith("Stopped with the worker"), job.outcome
    assert not ModelVersion.objects.exists()
    assert "stopping after the job under way" in output and output.rstrip().endswith("worker: stopped")


def test_the_demo_runs_the_worker_while_it_serves_and_stops_it_with_the_rest(
    model_version: Any, tmp_path: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scoring.management.commands import demo

    make_tx()  # some history: the demo imports none
    settings.VAR_DIR = tmp_path  # its API key file goes here, not into this checkout's var/
    monkeypatch.setenv("DATABASE_URL", shared_database_url())  # the worker it starts uses the test database
    started: list[subprocess.Popen[bytes]] = []
    popen = subprocess.Popen

    def recorded(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        started.append(popen(*args, **kwargs))
        return started[-1]

    running_while_serving = []

    def serve(**kwargs: Any) -> None:
        running_while_serving.extend(proc.poll() is None for proc in started)

    monkeypatch.setattr(demo.subprocess, "Popen", recorded)
    monkeypatch.setattr(demo, "serve_with_traffic", serve)

    call_command("demo", "--port", "1", stdout=StringIO())

    (worker,) = started
    assert worker.args[1:] == [str(ROOT / "manage.py"), "worker"]
    assert running_while_serving == [True]
    assert worker.poll() is not None  # stopped (and waited for) once serving ended
    from scoring.models import Rule

    # Example rules for the rules pages, one in each state, each change a version by the command.
    assert sorted(Rule.objects.values_list("status", "version")) == [("active", 2), ("draft", 1), ("shadow", 2)]
