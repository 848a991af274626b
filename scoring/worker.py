"""The worker process (`manage.py worker`, the Procfile's `worker`): django-tasks' database worker runs the queued
jobs, and every WORKER_TICK_SECONDS each function named in WORKER_DUTIES is called once.

The jobs run on a thread of their own, so a long retrain never delays the duties (a claim lapsing, a webhook
falling due); the duties run on the main thread, which also takes the signals.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.utils.crypto import get_random_string
from django.utils.module_loading import import_string
from django_tasks_db.management.commands.db_worker import Worker as TaskWorker

log = logging.getLogger(__name__)

Say = Callable[[str], None]

# How often the jobs thread looks for a queued job when it has none: a lead's job starts within this.
TASK_POLL_SECONDS = 1.0

# Set once the worker is asked to stop: a job under way sees it between chunks and ends cleanly.
stopping = threading.Event()


@dataclass(frozen=True)
class Duty:
    name: str
    call: Callable[[], Any]


def duties(paths: Iterable[str]) -> list[Duty]:
    """The functions named in WORKER_DUTIES; a name that imports nothing stops start-up, naming it."""
    found = []
    for path in paths:
        try:
            found.append(Duty(name=path.rsplit(".", 1)[-1], call=import_string(path)))
        except ImportError as exc:
            raise ImproperlyConfigured(f"WORKER_DUTIES: {path!r} cannot be imported ({exc})") from None
    return found


def run_duties(duties: list[Duty], *, say: Say) -> None:
    """One round: each duty once, on its own, so that one failing never keeps the others from running."""
    for duty in duties:
        try:
            news = duty.call()
        except Exception:  # a database outage, a bug in one duty: the next round tries again
            log.exception("worker: %s failed; it runs again in %g s", duty.name, settings.WORKER_TICK_SECONDS)
            continue
        if news:
            say(f"{duty.name}: {describe(news)}")


def describe(news: Any) -> str:
    """What a duty returned, for the log: a list as its items, anything else as it prints."""
    if isinstance(news, list | tuple | set):
        return ", ".join(map(str, news))
    return str(news)


def task_worker(*, batch: bool) -> TaskWorker:
    """django-tasks-db's own worker, every queue; `batch`: it returns once no job is waiting."""
    return TaskWorker(
        queue_names=["*"],
        interval=TASK_POLL_SECONDS,
        batch=batch,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id=get_random_string(32),
        excluded_queue_names=[],
    )


def run_once(*, say: Say) -> None:
    """One round of duties, then every job waiting now, then return (cron, tests)."""
    run_duties(duties(settings.WORKER_DUTIES), say=say)
    task_worker(batch=True).run()


def run(*, say: Say) -> None:
    """Duties every WORKER_TICK_SECONDS and jobs as they come, until SIGTERM or SIGINT.

    The first signal stops the rounds and tells a job under way to end at its next chunk (it is marked as
    stopped by the worker); the worker then waits for it. A second signal exits at once.
    """
    every = duties(settings.WORKER_DUTIES)
    stop = threading.Event()
    jobs = task_worker(batch=False)

    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise SystemExit(1)
        say(f"worker: {signal.strsignal(signum)}; stopping after the job under way, if any")
        stop.set()
        stopping.set()
        jobs.running = False

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    stopping.clear()
    say(
        f"worker: {len(every)} duties every {settings.WORKER_TICK_SECONDS:g} s "
        f"({', '.join(duty.name for duty in every) or 'none'}); jobs as they are queued"
    )
    if not settings.REDIS_URL:  # the in-memory channel layer reaches no other process
        say("worker: without REDIS_URL open pages see its changes only when they load again")
    # A daemon: a second signal ends the process even while a job runs.
    thread = threading.Thread(target=_run_jobs, args=(jobs, stop), name="jobs", daemon=True)
    thread.start()
    while not stop.is_set():
        run_duties(every, say=say)
        # Between rounds the worker holds no connection, so a restarted database costs it nothing.
        connections.close_all()
        stop.wait(settings.WORKER_TICK_SECONDS)
    thread.join()
    say("worker: stopped")


def _run_jobs(jobs: TaskWorker, stop: threading.Event) -> None:
    """django-tasks-db's loop, started again after an error (a database outage) until the worker stops."""
    while not stop.is_set():
        try:
            jobs.run()
        except Exception:
            log.exception("worker: the jobs loop failed; starting it again in %g s", settings.WORKER_TICK_SECONDS)
            connections.close_all()
            stop.wait(settings.WORKER_TICK_SECONDS)
    connections.close_all()
