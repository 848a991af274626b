"""The leads' jobs page at /jobs/: start a retrain, upload a history import, follow and cancel the jobs.

The views parse and call scoring/jobs.py, which checks the role and records who did what. While a job is queued
or running the page's list asks for itself again every second (htmx), and stops asking once none is: the worker
is another process, and polling reaches the page whether or not Redis carries the dashboards' pushes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from dashboards import views
from dashboards.views import HtmxHttpRequest
from scoring import jobs
from scoring.models import Job, ModelVersion

PAGE = "dashboards/jobs.html"
LIST = "dashboards/jobs.html#job-list"
SHOWN_JOBS = 20


class RetrainForm(forms.Form):
    # What becomes of the new version once stored: kept for a lead to activate later, scored in the shadow of the
    # active one as the challenger, or made the active one.
    then = forms.ChoiceField(
        choices=[
            ("keep", "Keep it inactive"),
            ("challenger", "Make it the challenger"),
            ("activate", "Make it the active version"),
        ],
        required=False,
        initial="keep",
    )


class ImportForm(forms.Form):
    file = forms.FileField()
    source = forms.CharField(max_length=jobs.SOURCE_MAX_LENGTH, initial="upload")
    skip_invalid = forms.BooleanField(required=False)

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > settings.IMPORT_MAX_BYTES:
            raise forms.ValidationError(
                f"{upload.name} is {upload.size:,} bytes; the limit is {settings.IMPORT_MAX_BYTES:,} "
                "(larger files: python manage.py import_transactions)"
            )
        return upload


lead_required = views.lead_required(PAGE)  # analysts see the jobs page saying it is the leads'


@require_GET
@lead_required
def jobs_page(request: HtmxHttpRequest) -> HttpResponse:
    """The two ways to start a job, and the jobs with their progress."""
    return page(request)


@require_GET
@lead_required
def job_list(request: HtmxHttpRequest) -> HttpResponse:
    """The list of jobs alone: what the page polls while a job is under way."""
    return render(request, LIST, list_context())


@require_POST
@lead_required
def start_retrain(request: HtmxHttpRequest) -> HttpResponse:
    form = RetrainForm(request.POST)
    if not form.is_valid():
        return page(request, retrain_form=form, retrain_error="Choose what to do with the new version.", status=400)
    then = form.cleaned_data["then"] or "keep"
    try:
        job = jobs.start_retrain(user=request.user, activate=then == "activate", challenger=then == "challenger")
    except jobs.JobRefused as refused:
        return page(request, retrain_form=form, retrain_error=str(refused), status=409)
    messages.success(request, f"Retrain #{job.pk} queued: its progress shows below.")
    return redirect("dashboards:jobs")


@require_POST
@lead_required
def start_import(request: HtmxHttpRequest) -> HttpResponse:
    form = ImportForm(request.POST, request.FILES)
    if not form.is_valid():
        return page(request, import_form=form, status=400)
    upload = form.cleaned_data["file"]
    try:
        job = jobs.start_import(
            user=request.user,
            name=upload.name,
            content=upload.read(),
            source=form.cleaned_data["source"],
            skip_invalid=form.cleaned_data["skip_invalid"],
        )
    except jobs.JobRefused as refused:
        return page(request, import_form=form, import_error=str(refused), status=409)
    messages.success(request, f"History import #{job.pk} of {upload.name} queued: its progress shows below.")
    return redirect("dashboards:jobs")


@require_POST
@lead_required
def cancel_job(request: HtmxHttpRequest) -> HttpResponse:
    """Cancel the job named in the form: at once when queued, at its next chunk when running."""
    try:
        job = jobs.cancel(int(request.POST.get("job", "")), user=request.user)
    except ValueError:
        return HttpResponse("Which job? (the form names none)", status=400)
    except Job.DoesNotExist:
        raise Http404("no such job") from None
    except jobs.JobRefused as refused:
        notice, level = str(refused), messages.ERROR
    else:
        said = "cancelled" if not job.is_active else "asked to stop: it stops at its next chunk"
        notice, level = f"{job.get_kind_display()} #{job.pk} {said}.", messages.SUCCESS
    if request.htmx:  # the list alone, with the notice in it (a message would show again on the next page)
        return render(request, LIST, list_context() | {"notice": notice, "notice_error": level == messages.ERROR})
    messages.add_message(request, level, notice)
    return redirect("dashboards:jobs")


def page(request: HtmxHttpRequest, *, status: int = 200, **forms_and_errors: Any) -> HttpResponse:
    context = {
        "retrain_form": RetrainForm(),
        "import_form": ImportForm(),
        "active_model": ModelVersion.objects.active(),
        "schedule": schedule_words(),
        "max_megabytes": settings.IMPORT_MAX_BYTES / 1_000_000,
        **forms_and_errors,
        **list_context(),
    }
    return render(request, PAGE, context, status=status)


def list_context() -> dict[str, Any]:
    now = timezone.now()
    shown = list(Job.objects.select_related("requested_by", "model_version")[:SHOWN_JOBS])
    rows = [{"job": job, "elapsed": elapsed_words(job.elapsed(now=now))} for job in shown]
    return {"jobs": rows, "polling": any(job.is_active for job in shown)}


def schedule_words() -> str:
    days = settings.RETRAIN_EVERY_DAYS
    if days <= 0:
        return "No scheduled retrain (RETRAIN_EVERY_DAYS=0)."
    every = "every week" if days == 7 else f"every {days:g} days"
    return (
        f"A retrain is also queued {every} after the newest model version; it keeps its version inactive "
        "for a lead to activate in the admin."
    )


def elapsed_words(span: timedelta | None) -> str:
    """1 h 02 min, 3 min 05 s, 12 s; empty before the job started."""
    if span is None:
        return ""
    seconds = max(int(span.total_seconds()), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"
