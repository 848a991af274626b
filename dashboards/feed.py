"""The live feed's rows from the server: the scored transactions matching the page's filters, a page at a time.

The page asks here when its filters change and for "load older"; what is pushed live it filters itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django import forms
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.views.decorators.http import require_GET

from dashboards.views import HtmxHttpRequest, feed_item, role_required
from scoring.models import Decision, Transaction

FEED_PAGE = 50
# Rows of one decision looked through per request, at most: a filter that matches little (a high minimum score
# on approvals, say) must not read the whole table. What lies beyond is for the next "load older".
FEED_SCAN = 5_000


@dataclass(frozen=True)
class FeedPage:
    rows: list[Transaction]
    next_before: int | None  # where the next page starts (ids below it); None when nothing older is left


def matching_page(
    *,
    decisions: Iterable[str],
    min_score: float = 0.0,
    before: int | None = None,
    limit: int = FEED_PAGE,
    scan: int = FEED_SCAN,
) -> FeedPage:
    """The newest scored transactions with one of `decisions`, a score of at least `min_score` and an id below
    `before`, newest first.

    Each decision is read along the (decision, -id) index, at most `scan` rows of it: the page holds only rows
    above the highest of the decisions' horizons (the id where a decision's scan stopped), where every decision
    has been read in full, so the next page can start there without skipping any row.
    """
    below = Transaction.objects.filter(id__lt=before) if before is not None else Transaction.objects.all()
    found: list[Transaction] = []
    horizon = 0
    for decision in sorted(set(decisions)):
        same = below.filter(decision=decision)
        stop = same.order_by("-id").values_list("id", flat=True)[scan - 1 : scan].first() or 0
        horizon = max(horizon, stop)
        matching = same.scored().filter(id__gte=stop, score__gte=min_score).order_by("-id")
        found += matching.select_related("case__assignee")[:limit]
    rows = sorted((tx for tx in found if tx.id >= horizon), key=lambda tx: tx.id, reverse=True)[:limit]
    if len(rows) == limit:
        return FeedPage(rows=rows, next_before=rows[-1].id)
    return FeedPage(rows=rows, next_before=horizon or None)


class FeedFilter(forms.Form):
    """The feed's filters as the page sends them; no `decision` at all means every decision."""

    decision = forms.MultipleChoiceField(choices=Decision.choices, required=False)
    min_score = forms.FloatField(min_value=0, max_value=1, required=False)
    before = forms.IntegerField(min_value=1, required=False)


@require_GET
@role_required
def feed_rows(request: HtmxHttpRequest) -> HttpResponse:
    """A page of feed rows matching `?decision=…&min_score=…&before=<id>`, as the feed's table rows."""
    form = FeedFilter(request.GET)
    if not form.is_valid():
        return HttpResponseBadRequest("; ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items()))
    data = form.cleaned_data
    page = matching_page(
        decisions=data["decision"] or Decision.values,
        min_score=data["min_score"] or 0.0,
        before=data["before"],
    )
    context = {"items": [feed_item(tx) for tx in page.rows], "next_before": page.next_before}
    return render(request, "dashboards/live.html#feed-page", context)
