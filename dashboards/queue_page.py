"""What the review queue's page and its exports read from a request: the filter bar, the page of cases, the links
that keep the filters, and what queue.js needs to keep the page current."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, QueryDict

from dashboards.queue_filters import SORT_WORDS, FlagInput, QueueFilter, QueueFilterForm, assignee_choices

FOLDED = ("score_min", "score_max", "amount_min", "amount_max", "currency", "min_age", "max_age")
FLAGS = ("overdue", "overturned")


def queue_form(request: HttpRequest) -> QueueFilterForm:
    """The filter bar bound to the query string, its assignee select listing the team."""
    form = QueueFilterForm.from_query(request.GET, auto_id="filter-%s")
    form.fields["assignee"].widget = forms.Select(choices=assignee_choices(form.data.get("assignee", "")))
    return form


def queue_context(
    request: HttpRequest,
    *,
    form: QueueFilterForm,
    config: dict[str, Any],
    chosen: QueueFilter | None = None,
    page: Page | None = None,
) -> dict[str, Any]:
    """queue.html's context: the bar, the page of cases and its links (each keeping the filters), and queue.js's
    `config` with what it may do with pushed cases. Without `chosen` the bar had a bad value: no cases."""
    query = filter_query(request.GET)
    overturned = chosen.overturned if chosen else FlagInput().value_from_datadict(form.data, None, "overturned")
    return {
        "form": form,
        "page": page,
        "cases": page.object_list if page is not None else [],
        "count": page.paginator.count if page is not None else 0,
        "described": chosen.described(user=request.user) if chosen else [],
        "sort_words": SORT_WORDS[chosen.sort] if chosen else "",
        "filter_query": query,
        "filtered": bool(query),
        "folded_set": _folded_set(form),
        "page_range": _page_range(page),
        "ellipsis": Paginator.ELLIPSIS,
        "overturned": overturned,
        "queue_config": config | {"filter": live_filter(chosen, page=page)},
    }


def filter_query(query: QueryDict) -> QueryDict:
    """The query string's filters, without the page number and the fields left empty: what page links and
    exports carry."""
    kept = QueryDict(mutable=True)
    for name in QueueFilterForm.base_fields:
        values = [value for value in query.getlist(name) if value.strip()]
        if values and name != "page":
            kept.setlist(name, values)
    return kept


def live_filter(chosen: QueueFilter | None, *, page: Page | None) -> dict[str, Any] | None:
    """For queue.js: the part of the filter a pushed case can be checked against, and whether a case that passes
    goes straight onto this page (the open queue by risk, first page) or only counts towards "refresh"."""
    if chosen is None or page is None:
        return None
    return {
        "insert": chosen.browser_checkable and page.number == 1,
        "status": chosen.status,
        "decision": chosen.decision,
        "assignee": chosen.assignee,
        "score_min": chosen.score_min,
        "score_max": chosen.score_max,
        "overturned": chosen.overturned,
        "q": chosen.q,
        "unfiltered": chosen == QueueFilter(),
    }


def _page_range(page: Page | None) -> list[int | str]:
    """The pager's page numbers: the first and last, two either side of this one, gaps as Paginator.ELLIPSIS."""
    if page is None:
        return []
    return list(page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1))


def _folded_set(form: QueueFilterForm) -> int:
    """How many of the folded filters (score, amount, age, overdue, overturned) are set: any opens the fold."""
    values = sum(1 for name in FOLDED if str(form.data.get(name, "")).strip())
    return values + sum(1 for name in FLAGS if FlagInput().value_from_datadict(form.data, None, name))
