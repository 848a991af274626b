"""What a job does on the worker: a retrain (scoring/training.py, as `train_model`) or a history import
(scoring/history.py, as `import_transactions`, in committed chunks), writing its progress to its row as it goes
and stopping cleanly, between chunks, when a lead cancels it or the worker is asked to stop.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import DatabaseError, connections
from django.utils import timezone

from scoring import storage, worker
from scoring.history import ImportReport, header_problems, parse_row, store_history
from scoring.models.jobs import Job, JobFile, JobKind, JobState
from scoring.training import TrainingError, save_model_version, train, training_frame

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10  # see scoring/jobs.py, SILENT_SECONDS
IMPORT_CHUNK_ROWS = 2000  # rows an import commits at a time: what a cancel keeps is whole chunks
CHECKED_SHARE, STORED_UP_TO = 0.3, 0.98  # an import's progress bar: checking every row, storing, the statistics
SHOWN_ERRORS = 5


class JobStopped(Exception):
    """A lead cancelled the job, or the worker is stopping: the job ends between chunks, saying what it kept."""


class JobFailed(Exception):
    """The job cannot do its work (invalid rows, a file that is not CSV); the message is the outcome, in words."""


def run(job_id: int) -> str:
    """Run a queued job to its end, recording the outcome on its row; returns the state it ended in."""
    now = timezone.now()
    started = {"state": JobState.RUNNING, "started_at": now, "heartbeat_at": now, "step": "starting"}
    if not Job.objects.filter(pk=job_id, state=JobState.QUEUED).update(**started):
        return "not queued: cancelled before it started"  # the lead's cancel won the race
    job = Job.objects.select_related("cancelled_by").get(pk=job_id)
    progress = Progress(job_id)
    log.info("job %s: %s started", job_id, job.kind)
    try:
        with _heartbeat(job_id):
            outcome = RUNNERS[job.kind](job, progress)
    except JobStopped as stop:
        return _finish(job_id, state=JobState.CANCELLED, outcome=str(stop))
    except (JobFailed, TrainingError) as exc:
        return _finish(job_id, state=JobState.FAILED, outcome=str(exc))
    except Exception as exc:
        _finish(job_id, state=JobState.FAILED, outcome=f"Failed: {exc}. The worker's log has the details.")
        raise  # django-tasks records the traceback with the task
    finally:
        JobFile.objects.filter(job_id=job_id).delete()  # an upload is kept only until its import ends
    return _finish(job_id, state=JobState.SUCCEEDED, outcome=outcome, fraction=1.0)


class Progress:
    """Writes a job's progress to its row, and is where the job learns that it must stop (JobStopped)."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id

    def __call__(self, step: str, **fields: Any) -> None:
        """Record `step` (words) and any of fraction, rows_done, rows_total; raise JobStopped if asked to stop."""
        self.check()
        Job.objects.filter(pk=self.job_id).update(step=step[:200], heartbeat_at=timezone.now(), **fields)

    def check(self) -> None:
        if worker.stopping.is_set():
            raise JobStopped("Stopped with the worker (it was asked to shut down); start it again.")
        cancelled = Job.objects.filter(pk=self.job_id, cancel_requested=True).values("cancelled_by__username").first()
        if cancelled is not None:
            raise JobStopped(f"Cancelled by {cancelled['cancelled_by__username'] or 'a lead'}.")


# --- retrain -------------------------------------------------------------------------------------------------


def retrain(job: Job, progress: Progress) -> str:
    """train_model's work: the frame it would train on, the model, its holdout metrics, a new version."""
    options = job.options
    say = TrainingProgress(progress)
    progress("reading the labeled history", fraction=0.01)
    frame, source = training_frame(
        simulate_days=options.get("simulate_days"),
        cards=options.get("cards", 2000),
        # Each job simulates its own history (when there are too few labels): the same seed again would train the
        # very model the last retrain made, and a challenger identical to the active model compares nothing.
        seed=options.get("seed", job.pk),
        simulate_if_short=options.get("simulate_if_short", True),
        progress=say,
    )
    trees = {"n_estimators": options["trees"]} if "trees" in options else {}
    result = train(frame, progress=say, **trees)
    result = dataclasses.replace(result, data_range=result.data_range | {"source": source})
    progress("storing the model version", fraction=0.97)
    mv = save_model_version(
        result,
        activate=bool(options.get("activate")),
        challenger=bool(options.get("challenger")),
        actor=job.requested_by,  # a lead's retrain marks the challenger as their change
    )
    Job.objects.filter(pk=job.pk).update(model_version=mv)
    metrics = result.metrics
    measured = (
        f"; on the holdout AUC {metrics['auc_roc']:.3f}, average precision {metrics['average_precision']:.3f}"
        if metrics.get("auc_roc") is not None
        else ""
    )
    state = (
        "active"
        if mv.is_active
        else "the challenger: compare it at /models/challenger/"
        if mv.is_challenger
        else "not active: activate it in the admin"
    )
    return f"Model version {mv.version} ({state}), trained on {len(frame):,} {source} transactions{measured}."


class TrainingProgress:
    """train()'s progress messages as the job's progress: the phase they name and how far through it they are.

    The phases' shares of the bar are rough (features, then a fit to measure, then the fit that is stored);
    what the bar promises is only that it moves and reaches 100 % when the version is stored.
    """

    PHASES = {  # the message's start: (the bar at the phase's start, its share of the bar)
        "computing features": (0.10, 0.35),
        "fitting on the rows before the holdout": (0.45, 0.25),
        "fitting on every labeled row": (0.70, 0.25),
    }
    OF = re.compile(r"([\d,]+) of ([\d,]+)")

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.start, self.share = 0.02, 0.08
        self.rows = 0

    def __call__(self, message: str) -> None:
        for prefix, (start, share) in self.PHASES.items():
            if message.startswith(prefix):
                self.start, self.share = start, share
        fields: dict[str, Any] = {}
        if (counted := self.OF.search(message)) is not None:
            done, total = (int(n.replace(",", "")) for n in counted.groups())
            fields["fraction"] = self.start + self.share * done / max(total, 1)
            if message.startswith("features"):
                fields |= {"rows_done": done, "rows_total": total}
        elif message.startswith(("features done", "trained in")):
            fields["fraction"] = self.start + self.share
        else:
            fields["fraction"] = self.start
        if (rows := re.match(r"computing features for ([\d,]+) rows", message)) is not None:
            self.rows = int(rows.group(1).replace(",", ""))
            fields |= {"rows_done": 0, "rows_total": self.rows}
        if message.startswith("features done"):
            fields["rows_done"] = self.rows
        self.progress(message, **fields)


# --- history import ------------------------------------------------------------------------------------------


def import_history(job: Job, progress: Progress) -> str:
    """import_transactions' work on the uploaded file, in two passes: every row is checked first (one invalid row
    and nothing is stored, unless the lead chose to skip invalid rows), then the valid rows are stored
    IMPORT_CHUNK_ROWS at a time, each chunk committed with its merchant-hour counts. A cancel between chunks keeps
    the chunks committed before it; importing the file again stores the rest (rows already present are skipped)."""
    text = _text(bytes(job.file.content), name=job.file.name)
    source, skip_invalid = job.options["source"], job.options["skip_invalid"]
    checked = _check(text, progress=progress)
    if checked.invalid and not skip_invalid:
        raise JobFailed(_refusal(checked))
    valid = checked.read - checked.invalid
    stored = ImportReport()
    try:
        for chunk in _valid_chunks(text):
            part = store_history(chunk, source=source, batch_size=IMPORT_CHUNK_ROWS)
            stored.read, stored.stored = stored.read + part.read, stored.stored + part.stored
            stored.already_present += part.already_present
            fraction = CHECKED_SHARE + (STORED_UP_TO - CHECKED_SHARE) * stored.read / max(valid, 1)
            progress(f"stored {stored.read:,} of {valid:,} rows", fraction=fraction, rows_done=stored.read)
    except JobStopped as stop:
        raise JobStopped(
            f"{stop} {stored.read:,} of {valid:,} valid rows were stored before it stopped ({stored.stored:,} new); "
            "importing the file again stores the rest."
        ) from None
    progress("updating the database's statistics", fraction=0.99)
    storage.settle()
    skipped = f", {checked.invalid:,} invalid skipped" if checked.invalid else ""
    return (
        f"{checked.read:,} rows read: {stored.stored:,} stored, {stored.already_present:,} already present{skipped} "
        f"(source imported:{source})."
    )


def _text(content: bytes, *, name: str) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JobFailed(f"{name} is not UTF-8 text ({exc.reason}); nothing was stored. Save it as UTF-8.") from None


def _rows(text: str) -> csv.DictReader[str]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if problems := header_problems(reader.fieldnames):
        raise JobFailed(f"The header has {problems}; nothing was stored.")
    return reader


def _check(text: str, *, progress: Progress) -> ImportReport:
    """Every row validated as the API validates it; the invalid ones counted, the first kept with their lines."""
    about = max(text.count("\n") - 1, 1)  # rows, before the file is read (a quoted field may hold a newline)
    report = ImportReport()
    progress(f"checking about {about:,} rows", fraction=0.0, rows_done=0, rows_total=about)
    try:
        reader = _rows(text)
        for row in reader:
            report.read += 1
            if isinstance(reason := parse_row(row), str):
                report.reject(reader.line_num, reason)
            if report.read % IMPORT_CHUNK_ROWS == 0:
                fraction = CHECKED_SHARE * min(report.read / about, 1)
                progress(f"checked {report.read:,} of about {about:,} rows", fraction=fraction, rows_done=report.read)
    except csv.Error as exc:
        raise JobFailed(f"Not a readable CSV file ({exc}); nothing was stored.") from None
    progress(f"checked {report.read:,} rows", fraction=CHECKED_SHARE, rows_done=0, rows_total=report.read)
    return report


def _valid_chunks(text: str) -> Iterator[list[Any]]:
    chunk = []
    for row in _rows(text):
        if not isinstance(parsed := parse_row(row), str):
            chunk.append(parsed)
        if len(chunk) == IMPORT_CHUNK_ROWS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _refusal(report: ImportReport) -> str:
    lines = "; ".join(f"line {line}: {reason}" for line, reason in report.errors[:SHOWN_ERRORS])
    more = f"; and {report.invalid - SHOWN_ERRORS:,} more" if report.invalid > SHOWN_ERRORS else ""
    return (
        f"{report.invalid:,} invalid row(s) of {report.read:,}; nothing was stored ({lines}{more}). "
        "Fix them, or import again with 'skip invalid rows'."
    )


RUNNERS: dict[str, Callable[[Job, Progress], str]] = {JobKind.RETRAIN: retrain, JobKind.IMPORT: import_history}


# --- the row's ending and the heartbeat ------------------------------------------------------------------------


def _finish(job_id: int, *, state: str, outcome: str, **fields: Any) -> str:
    Job.objects.filter(pk=job_id).update(state=state, outcome=outcome, finished_at=timezone.now(), step="", **fields)
    log.info("job %s: %s: %s", job_id, state, outcome)
    return state


@contextmanager
def _heartbeat(job_id: int) -> Iterator[None]:
    """Tell the page and the other workers every HEARTBEAT_SECONDS that this job's worker is alive, also through
    steps that report nothing for a while (reading a large history, one long fit)."""
    done = threading.Event()

    def beat() -> None:
        try:
            while not done.wait(HEARTBEAT_SECONDS):
                try:
                    Job.objects.filter(pk=job_id, state=JobState.RUNNING).update(heartbeat_at=timezone.now())
                except DatabaseError:  # the database went away for a moment: the next beat tries again
                    log.warning("job %s: heartbeat not written", job_id, exc_info=True)
        finally:
            connections.close_all()  # this thread's own

    thread = threading.Thread(target=beat, name=f"job-{job_id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
