"""The challenger's page at /models/challenger/: analysts and leads read how the challenger compares with the active
model; leads promote it, end it, or mark a version as the challenger. Every change goes through scoring/challenger.py.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render, resolve_url
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from dashboards import comparison, comparison_charts
from dashboards.views import HtmxHttpRequest, lead_required, role_required
from scoring import challenger
from scoring.features import FEATURES
from scoring.models import ModelVersion

PAGE = "dashboards/challenger.html"
CANDIDATES = 5  # the newest inactive versions offered as challengers when there is none

leads_only = lead_required(PAGE)  # an analyst's POST gets the page saying these changes are the leads'


@require_GET
@role_required
def challenger_page(request: HtmxHttpRequest) -> HttpResponse:
    """The comparison over the chosen period, or how to make a challenger when there is none."""
    period = request.GET.get("period")
    period = period if period in comparison.PERIODS else comparison.DEFAULT_PERIOD
    context: dict[str, Any] = {
        "period": period,
        "periods": comparison.PERIODS,
        "period_label": comparison.PERIODS[period][0],
    }
    marked = challenger.current()
    if marked is None:
        # Only versions this code can score: mark_challenger refuses the others.
        context["candidates"] = [
            mv for mv in ModelVersion.objects.filter(is_active=False).defer("artifact") if mv.features == FEATURES
        ][:CANDIDATES]
    else:
        compared = comparison.compare(marked, now=timezone.now(), period=period)
        sides = [(compared.champion, "champion"), (compared.shadow, "challenger")]
        context |= {"comparison": compared, "sides": sides, **comparison_charts.charts(compared)}
    context["active_model"] = ModelVersion.objects.active()
    return render(request, PAGE, context)


@require_POST
@leads_only
def promote(request: HtmxHttpRequest) -> HttpResponse:
    """Make the challenger the active version (checked first, as every activation is)."""
    try:
        mv = challenger.promote_challenger(user=request.user)
    except ValueError as refused:
        messages.error(request, f"Not promoted: {refused}.")
    else:
        messages.success(request, f"{mv.version} is now the active model. There is no challenger until you mark one.")
    return HttpResponseRedirect(resolve_url("dashboards:challenger"))


@require_POST
@leads_only
def end(request: HtmxHttpRequest) -> HttpResponse:
    """Stop scoring the challenger; the scores it gave stay stored."""
    try:
        mv = challenger.end_challenger(user=request.user)
    except ValueError as refused:
        messages.error(request, f"Nothing ended: {refused}.")
    else:
        messages.success(request, f"{mv.version} is no longer the challenger; its stored scores are kept.")
    return HttpResponseRedirect(resolve_url("dashboards:challenger"))


@require_POST
@leads_only
def mark(request: HtmxHttpRequest, version: str) -> HttpResponse:
    """Make a version the challenger (in place of any other), then back to the page the form was on."""
    mv = get_object_or_404(ModelVersion, version=version)
    try:
        challenger.mark_challenger(mv.pk, user=request.user)
    except ValueError as refused:
        messages.error(request, f"Not made the challenger: {refused}.")
    else:
        messages.success(request, f"{mv.version} is the challenger: every process scores it within seconds.")
    return HttpResponseRedirect(_next(request))


def _next(request: HtmxHttpRequest) -> str:
    """The form's `next` when it is a page of this site, else the challenger's page."""
    wanted = request.POST.get("next", "")
    safe = url_has_allowed_host_and_scheme(
        wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return wanted if wanted and safe else resolve_url("dashboards:challenger")
