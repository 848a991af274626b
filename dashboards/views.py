"""The analysts' pages: the live feed, the review queue and one case, plus the htmx case actions.

Every view is for analysts and leads only (`role_required`); a logged-in account with neither role gets a page
that says so, and nothing else. What a role may do to a case is decided in scoring/cases.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render, resolve_url
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from django_htmx.middleware import HtmxDetails

from dashboards.forms import ListEntryForm, NoteForm, ReopenForm, ResolveForm
from dashboards.queue_page import queue_context, queue_form
from dashboards.stats import LiveStats, open_cases, recent_stats
from scoring import cases, lists
from scoring.models import Case, ModelVersion, Transaction
from scoring.results import reasons_in_words, shown, transaction_event
from scoring.roles import can_review, is_lead

FEED_ROWS = 50
PANEL_CASES = 10
QUEUE_PAGE = 50  # cases a queue page shows
CARD_HISTORY = 20
CASE_ALERTS = 200
FEED_MAX_ROWS = 200  # live.js drops the oldest rows past this
DEFAULT_THRESHOLDS = {"review_threshold": 0.5, "block_threshold": 0.9}
CASE_ROW = "dashboards/queue.html#case-row"
CASE_AUDIT = "dashboards/case.html#case-audit"


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


View = Callable[..., HttpResponse]


def role_required(view: View) -> View:
    """Analysts and leads. Other logged-in users get the no-access page; anonymous pages go to the login
    page, anonymous htmx calls and POSTs get 403."""

    @wraps(view)
    def wrapper(request: HtmxHttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if can_review(request.user):
            return view(request, *args, **kwargs)
        if request.user.is_authenticated:
            return render(request, "dashboards/no_access.html", status=403)
        if not request.htmx and request.method == "GET":
            return redirect_to_login(request.get_full_path())
        response = render(request, "403.html", {"exception": "Your session has ended."}, status=403)
        if request.htmx:
            # htmx follows HX-Redirect even on a 403: the analyst lands on the login page, not a broken row.
            back = request.htmx.current_url_abs_path or "/"
            response["HX-Redirect"] = redirect_to_login(back).url
        return response

    return wrapper


def lead_required(refusal: str) -> Callable[[View], View]:
    """Leads only: an analyst gets the page `refusal` (a template, rendered with `refused`) and a 403; anyone else
    what role_required gives them."""

    def decorate(view: View) -> View:
        @role_required
        @wraps(view)
        def wrapper(request: HtmxHttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not is_lead(request.user):
                return render(request, refusal, {"refused": True}, status=403)
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


# --- pages -------------------------------------------------------------------------------------


@require_GET
@role_required
def live(request: HtmxHttpRequest) -> HttpResponse:
    """The newest transactions and the figures; live.js keeps both current over the socket."""
    rows = Transaction.objects.select_related("case__assignee").newest(FEED_ROWS)
    stats = LiveStats()
    stats.seed(recent_stats())
    counted_at = time.time()
    figures = stats.snapshot() | {"open_cases": open_cases(), "open_cases_at": counted_at}
    context = {
        "items": [feed_item(tx) for tx in rows],
        "figures": figures,
        "feed_config": feed_config(),
        "panel_cases": Case.objects.queue()[:PANEL_CASES],
        "open_count": figures["open_cases"],
        "counted_at": counted_at,
    }
    return render(request, "dashboards/live.html", context)


@require_GET
@role_required
def open_cases_panel(request: HtmxHttpRequest) -> HttpResponse:
    """The live page's top open cases, re-fetched by live.js when a case changes."""
    counted_at = time.time()
    context = {"panel_cases": Case.objects.queue()[:PANEL_CASES], "open_count": open_cases(), "counted_at": counted_at}
    return render(request, "dashboards/live.html#open-cases", context)


@require_GET
@role_required
def queue(request: HtmxHttpRequest) -> HttpResponse:
    """The cases the filter bar selects, a page at a time: by default the open queue, riskiest first; with
    `?overturned=1` the legitimate verdicts that a fraud label overturned. A bad value gets the bar back with
    what is wrong, and no cases."""
    form = queue_form(request)
    if not form.is_valid():
        context = queue_context(request, form=form, config=queue_config())
        return render(request, "dashboards/queue.html", context, status=400)
    chosen = form.queue_filter()
    selected = chosen.cases(user=request.user, now=timezone.now())
    page = Paginator(selected, QUEUE_PAGE).get_page(form.cleaned_data["page"])
    context = queue_context(request, form=form, config=queue_config(), chosen=chosen, page=page)
    return render(request, "dashboards/queue.html", context)


@require_GET
@role_required
def case_detail(request: HtmxHttpRequest, case_id: int) -> HttpResponse:
    """One case: the transaction, why it was flagged, the card's and merchant's history, the audit trail."""
    case = _case_or_404(case_id)
    tx = case.top_alert()
    if tx is None:  # its transactions were deleted (cases outlive them only in the admin's hands)
        raise Http404("This case has no transactions left")
    history = (
        Transaction.objects.filter(card_id=case.card_id)
        .select_related("case__assignee")
        .order_by("-timestamp", "-id")[:CARD_HISTORY]
    )
    alerts = case.alerts.select_related("case__assignee").order_by("-timestamp", "-id")[:CASE_ALERTS]
    features = tx.feature_values()
    context = audit_context(case) | {
        "tx": tx,
        "alerts": [alert_item(row) for row in alerts],
        "reasons": reasons_in_words(tx),
        "features": features,
        "feature_table": [(name, shown(value)) for name, value in features.items()],
        "history": [feed_item(row) for row in history],
        "merchant": Transaction.objects.merchant_figures(tx.merchant_id, now=timezone.now()),
        "current_id": tx.id,
        "queue_config": queue_config(),
    }
    return render(request, "dashboards/case.html", context)


@require_GET
@role_required
def case_row(request: HtmxHttpRequest, case_id: int) -> HttpResponse:
    """One case's row as the current analyst sees it (queue.js swaps it in when the case changes)."""
    return render(request, CASE_ROW, {"case": _case_or_404(case_id)})


# --- case actions ------------------------------------------------------------------------------


@require_POST
@role_required
def claim(request: HtmxHttpRequest, case_id: int) -> HttpResponse:
    return _act(request, case_id=case_id, action=lambda: cases.claim(case_id, user=request.user))


@require_POST
@role_required
def release(request: HtmxHttpRequest, case_id: int) -> HttpResponse:
    return _act(request, case_id=case_id, action=lambda: cases.release(case_id, user=request.user))


@require_POST
@role_required
def resolve(request: HtmxHttpRequest, case_id: int) -> HttpResponse:
    form = ResolveForm(request.POST)
    if not form.is_valid():
        return _answer(request, case_id=case_id, error=_form_error(form), status=422)
    data = form.cleaned_data
    reason = data["reason"].code if data["reason"] else None

    def action() -> Case:
        return cases.resolve(
            case_id,
            user=request.user,
            is_fraud=data["verdict"] == "fraud",
            note=data["note"],
            reason=reason,
            labels_by_id=data["labels_by_id"],
        )

    try:
        return _act(request, case_id=case_id, action=action)
    except ValueError as refusal:  # a reason for the other verdict, a label for a transaction not in the case
        return _answer(request, case_id=case_id, error=f"Not resolved: {refusal}.", status=422)


@require_POST
@role_required
def reopen(request: HtmxHttpRequest, case_id: int) -> HttpResponse:
    """A lead reopens a resolved case, with a reason (a plain form post: the whole case page changes)."""
    form = ReopenForm(request.POST)
    if not form.is_valid():
        return _answer(request, case_id=case_id, error=_form_error(form), status=422)
    reason = form.cleaned_data["reason"]
    return _act(request, case_id=case_id, action=lambda: cases.reopen(case_id, user=request.user, reason=reason))


@require_POST
@role_required
def add_note(request: HtmxHttpRequest, case_id: int) -> HttpResponse:
    """Append a note to a case's audit trail; htmx gets the trail and an empty form back."""
    form = NoteForm(request.POST)
    case = _case_or_404(case_id)
    if form.is_valid():
        cases.add_note(case_id, user=request.user, text=form.cleaned_data["text"])
        form = NoteForm()
    if not request.htmx:
        if form.errors:
            messages.error(request, _form_error(form))
        return HttpResponseRedirect(_back(request))
    return render(request, CASE_AUDIT, audit_context(case) | {"note_form": form}, status=422 if form.errors else 200)


def _form_error(form: forms.Form) -> str:
    return "; ".join(error for errors in form.errors.values() for error in errors)


def _act(request: HtmxHttpRequest, *, case_id: int, action: Callable[[], Case]) -> HttpResponse:
    try:
        action()
    except Case.DoesNotExist:
        raise Http404("No such case") from None
    except cases.CaseConflict as conflict:
        return _answer(request, case_id=case_id, error=str(conflict), status=409)
    return _answer(request, case_id=case_id)


def _answer(request: HtmxHttpRequest, *, case_id: int, error: str = "", status: int = 200) -> HttpResponse:
    """htmx gets the re-rendered row (with the refusal in it); a plain form post goes back where it came from."""
    if not request.htmx:
        if error:
            messages.error(request, error)
        return HttpResponseRedirect(_back(request))
    return render(request, CASE_ROW, {"case": _case_or_404(case_id), "error": error}, status=status)


def _case_or_404(case_id: int) -> Case:
    return get_object_or_404(Case.objects.select_related("assignee", "resolved_by", "reason"), pk=case_id)


def _back(request: HttpRequest) -> str:
    referer = request.headers.get("referer", "")
    safe = url_has_allowed_host_and_scheme(
        referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return referer if safe and referer else resolve_url("dashboards:queue")


# --- what the pages show -----------------------------------------------------------------------


def audit_context(case: Case) -> dict[str, Any]:
    """The case page's audit trail and note form (the page, and the answer to a note)."""
    return {"case": case, "events": case.events.select_related("actor"), "note_form": NoteForm()}


def feed_item(tx: Transaction) -> dict[str, Any]:
    """A transaction as the feed shows it: the pushed event (so server and live rows match)."""
    return transaction_event(tx, case=getattr(tx, "case", None)) | {
        "imported": tx.is_imported,  # history, not scored here: no score to show
    }


def feed_config() -> dict[str, Any]:
    """What live.js needs besides the socket: thresholds, the case URL pattern."""
    # Only the two numbers: the active row's artifact (the whole model) stays in the database.
    active = ModelVersion.objects.filter(is_active=True).values("review_threshold", "block_threshold")
    thresholds = active.first() or DEFAULT_THRESHOLDS
    return {
        "review_threshold": thresholds["review_threshold"],
        "block_threshold": thresholds["block_threshold"],
        "case_url": reverse("dashboards:case", args=[0]),
        "case_row_url": reverse("dashboards:case_row", args=[0]),
        "open_cases_url": reverse("dashboards:open_cases"),
        "max_rows": FEED_MAX_ROWS,
    }


def queue_config() -> dict[str, Any]:
    """What queue.js needs on every page: where to fetch one case's row, and how many rows a queue page shows."""
    return {"case_row_url": reverse("dashboards:case_row", args=[0]), "limit": QUEUE_PAGE}


# --- working a case: labels of single alerts, blocking its card or merchant -------------------------------

LIST_ACTIONS = "dashboards/lists.html#list-actions"


def alert_item(tx: Transaction) -> dict[str, Any]:
    """One of a case's transactions on its page: as the feed shows it, with its label and where that came from."""
    return feed_item(tx) | {"is_fraud": tx.is_fraud, "label_origin": tx.label_origin}


@require_POST
@role_required
def add_list_entry(request: HtmxHttpRequest) -> HttpResponse:
    """Put a card or merchant on the block list (leads: either list) from a case or entity page; htmx gets the
    page's list controls back, showing the entry or why it was refused."""
    form = ListEntryForm(request.POST)
    if not form.is_valid():
        return _listed(request, form=form, error=_form_error(form), status=422)
    data = form.cleaned_data
    try:
        entry = lists.add_entry(
            user=request.user,
            kind=data["kind"],
            entity=data["entity"],
            value=data["value"],
            reason=data["reason"],
            expires_at=data["expires_at"],
            case_id=data["case"],
        )
    except Case.DoesNotExist:
        raise Http404("No such case") from None
    except PermissionDenied as refusal:
        return _listed(request, form=form, error=str(refusal), status=403)
    except lists.ListConflict as conflict:
        return _listed(request, form=form, error=str(conflict), status=409)
    except ValueError as refusal:
        return _listed(request, form=form, error=f"Not listed: {refusal}.", status=422)
    done = f"{entry.get_entity_display()} {entry.value} is on the {lists.entry_in_words(entry)}."
    return _listed(request, form=form, done=done)


def _listed(
    request: HtmxHttpRequest, *, form: ListEntryForm, error: str = "", done: str = "", status: int = 200
) -> HttpResponse:
    """htmx gets the card's or merchant's list controls back; a plain form post goes back where it came from."""
    if not request.htmx:
        if error:
            messages.error(request, error)
        elif done:
            messages.success(request, done)
        return HttpResponseRedirect(_back(request))
    case_id = form.cleaned_data.get("case")
    context = {
        "entity": request.POST.get("entity", ""),
        "value": request.POST.get("value", ""),
        "case": Case.objects.filter(pk=case_id).first() if case_id else None,
        "list_form": form if error else None,  # what was typed, to correct
        "list_error": error,
        "list_done": done,
    }
    return render(request, LIST_ACTIONS, context, status=status)
