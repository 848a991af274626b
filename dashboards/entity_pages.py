"""The card and merchant pages and the search page: thin views over dashboards/entities.py and search.py."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from dashboards import entities, search
from dashboards.entities import Kind
from dashboards.views import HtmxHttpRequest, role_required
from scoring.models import Transaction


@require_GET
@role_required
def card(request: HtmxHttpRequest, card_id: str) -> HttpResponse:
    """A card: its transactions, chart, figures as the model computes them, list entries, cases and merchants."""
    context = _entity_context(request, kind="card", entity_id=card_id) | {
        "figures": entities.card_figures(card_id, now=timezone.now()),
        "linked": entities.merchants_of_card(card_id),
    }
    return render(request, "dashboards/card.html", context)


@require_GET
@role_required
def merchant(request: HtmxHttpRequest, merchant_id: str) -> HttpResponse:
    """A merchant: its transactions, chart, figures, list entries, cases and the cards with confirmed fraud there."""
    context = _entity_context(request, kind="merchant", entity_id=merchant_id) | {
        "figures": entities.merchant_figures(merchant_id, now=timezone.now()),
        "linked": entities.fraud_cards_of_merchant(merchant_id),
    }
    return render(request, "dashboards/merchant.html", context)


@require_GET
@role_required
def search_page(request: HtmxHttpRequest) -> HttpResponse:
    """`?q=`: straight to the one thing that exists under exactly that id, else the ids that begin with it."""
    q = request.GET.get("q", "").strip()
    found = search.find(q)
    if len(found.exact) == 1:
        return HttpResponseRedirect(target_url(found.exact[0]))
    context = {"q": q, "found": found, "searched": bool(q), "targets": [(t, target_url(t)) for t in found.exact]}
    return render(request, "dashboards/search.html", context)


def target_url(target: search.Target) -> str:
    """A search hit's page; a transaction's is its card's page, at the page that lists it."""
    if target.kind == "case":
        return reverse("dashboards:case", args=[target.value])
    if target.kind == "transaction":
        tx = target.transaction
        assert tx is not None
        return transaction_url(tx)
    return reverse(f"dashboards:{target.kind}", args=[target.value])


def transaction_url(tx: Transaction) -> str:
    return reverse("dashboards:card", args=[tx.card_id]) + f"?tx={tx.id}#tx-{tx.id}"


def _entity_context(request: HtmxHttpRequest, *, kind: Kind, entity_id: str) -> dict[str, Any]:
    if not entities.is_known(kind, entity_id):
        raise Http404(f"No {kind} {entity_id!r} is stored")
    number = request.GET.get("page")
    current = _shown_transaction(kind, entity_id, request.GET.get("tx", ""))
    if current is not None:
        number = entities.page_holding(kind, current)
    page = entities.transaction_page(kind, entity_id, number=number)
    charts, left_out = entities.amount_charts(kind, entity_id)
    cases, case_count = entities.cases_of(kind, entity_id)
    return {
        "kind": kind,
        "entity_id": entity_id,
        "now": timezone.now(),
        "page": page,
        "rows": entities.rows(page),
        "current_id": current.id if current else None,
        "charts": charts,
        "left_out": left_out,
        "chart_points": entities.CHART_POINTS,
        "list_entries": entities.list_entries(kind, entity_id),
        "cases": cases,
        "case_count": case_count,
    }


def _shown_transaction(kind: Kind, entity_id: str, tx_id: str) -> Transaction | None:
    """The transaction `?tx=` asks to show (search sends an external id's hits there), if it is this entity's."""
    if not tx_id.isdigit():
        return None
    return entities.transactions(kind, entity_id).filter(pk=int(tx_id)).first()
