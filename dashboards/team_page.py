"""The lead's view of the team at /team/: a page over dashboards/team.py's figures, for leads only."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from dashboards import team, team_charts
from dashboards.views import HtmxHttpRequest, lead_required


@require_GET
@lead_required("dashboards/leads_only.html")
def team_page(request: HtmxHttpRequest) -> HttpResponse:
    """Open cases by age and holder, verdicts per analyst per day, time to resolve and the flags' precision."""
    days = int(request.GET["days"]) if request.GET.get("days") in {str(d) for d in team.DAY_CHOICES} else 14
    overview = team.overview(now=timezone.now(), days=days)
    context = {"team": overview, "day_choices": team.DAY_CHOICES, **team_charts.charts(overview)}
    return render(request, "dashboards/team.html", context)
