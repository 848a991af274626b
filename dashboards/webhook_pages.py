"""The leads' webhook pages: /webhooks/ lists the endpoints with their health and registers new ones (the secret shown
once, in the answer to the registration); /webhooks/<id>/ is an endpoint's delivery log, every attempt with its
status, time and first bytes, with replay. Every change goes through scoring/webhooks.py."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from dashboards.views import HtmxHttpRequest, lead_required
from scoring import webhooks
from scoring.models import DeliveryStatus, EventType, WebhookAttempt, WebhookDelivery, WebhookEndpoint

LIST = "dashboards/webhooks.html"
LOG = "dashboards/webhook.html"
LOG_PAGE = 25  # deliveries a page of the log shows
ATTEMPTS_SHOWN = 20  # a delivery's latest attempts listed under it
SHOWN = {"all": None, "failed": DeliveryStatus.FAILED, "pending": DeliveryStatus.PENDING}


class EndpointForm(forms.Form):
    url = forms.URLField(label="URL", max_length=500, assume_scheme="https")
    description = forms.CharField(max_length=200, required=False)
    events = forms.MultipleChoiceField(choices=EventType.choices, widget=forms.CheckboxSelectMultiple)

    def clean_url(self) -> str:
        try:
            return webhooks.checked_url(self.cleaned_data["url"])
        except ValueError as refusal:
            raise forms.ValidationError(str(refusal)) from None


leads_only = lead_required(LIST)  # analysts see the endpoints page saying these are the leads'


@require_http_methods(["GET", "POST"])
@leads_only
def endpoints(request: HtmxHttpRequest) -> HttpResponse:
    """Every endpoint with its health at a glance; POST registers one and shows its secret, this once."""
    form = EndpointForm(request.POST or None)
    if request.method == "GET":
        return render(request, LIST, _list_context(form))
    if not form.is_valid():
        return render(request, LIST, _list_context(form), status=422)
    try:
        created = webhooks.register_endpoint(
            form.cleaned_data["url"],
            events=form.cleaned_data["events"],
            description=form.cleaned_data["description"],
            user=request.user,
        )
    except ValueError as refusal:
        form.add_error(None, str(refusal))
        return render(request, LIST, _list_context(form), status=422)
    # Answered here, not redirected: the secret is in this answer and nowhere else, never stored in a session.
    return render(request, LIST, _list_context(EndpointForm(), created=created), status=201)


@require_GET
@leads_only
def delivery_log(request: HtmxHttpRequest, endpoint_id: int) -> HttpResponse:
    """One endpoint's deliveries, newest first (all, failed or pending), each with its latest attempts."""
    endpoint = get_object_or_404(WebhookEndpoint, pk=endpoint_id)
    shown = request.GET.get("show") if request.GET.get("show") in SHOWN else "all"
    deliveries = endpoint.deliveries.select_related("event").order_by("-created_at", "-id")
    if SHOWN[shown]:
        deliveries = deliveries.filter(status=SHOWN[shown])
    page = Paginator(deliveries, LOG_PAGE).get_page(request.GET.get("page"))
    attempts = WebhookAttempt.objects.order_by("-at", "-id")
    rows = list(page.object_list.prefetch_related(Prefetch("attempt_log", queryset=attempts)))
    context = {
        "endpoint": endpoint,
        "health": _health(endpoint, webhooks.endpoint_health(ids=[endpoint.id]).get(endpoint.id, {})),
        "page": page,
        "rows": [(d, d.attempt_log.all()[:ATTEMPTS_SHOWN]) for d in rows],
        "shown": shown,
        "show_choices": list(SHOWN),
    }
    return render(request, LOG, context)


@require_POST
@leads_only
def enable(request: HtmxHttpRequest, endpoint_id: int) -> HttpResponse:
    return _set_enabled(request, endpoint_id, enabled=True)


@require_POST
@leads_only
def disable(request: HtmxHttpRequest, endpoint_id: int) -> HttpResponse:
    return _set_enabled(request, endpoint_id, enabled=False)


@require_POST
@leads_only
def replay(request: HtmxHttpRequest, delivery_id: int) -> HttpResponse:
    """Send a delivery again (same event id and body) within the worker's next round."""
    delivery = get_object_or_404(WebhookDelivery, pk=delivery_id)
    try:
        webhooks.replay(delivery.pk, user=request.user)
    except PermissionDenied as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(request, f"{delivery.event_id} will be sent again within seconds.")
    return HttpResponseRedirect(reverse("dashboards:webhook", args=[delivery.endpoint_id]) + f"#delivery-{delivery.pk}")


def _set_enabled(request: HtmxHttpRequest, endpoint_id: int, *, enabled: bool) -> HttpResponse:
    endpoint = webhooks.set_enabled(
        get_object_or_404(WebhookEndpoint, pk=endpoint_id).pk, enabled=enabled, user=request.user
    )
    messages.success(request, f"{endpoint.url} is {'enabled' if enabled else 'disabled'}.")
    return HttpResponseRedirect(reverse("dashboards:webhook", args=[endpoint.pk]))


def _list_context(form: EndpointForm, *, created: WebhookEndpoint | None = None) -> dict[str, Any]:
    health = webhooks.endpoint_health()
    rows = [(e, _health(e, health.get(e.id, {}))) for e in WebhookEndpoint.objects.select_related("created_by")]
    return {
        "rows": rows,
        "failing": sum(1 for _, h in rows if h["tone"] == "failing"),
        "form": form,
        "created": created,
        "event_types": EventType.choices,
    }


def _health(endpoint: WebhookEndpoint, figures: dict[str, int]) -> dict[str, Any]:
    """The endpoint's state in a word and a tone for its badge, and the figures behind it."""
    failed, retrying, pending = figures.get("failed", 0), figures.get("retrying", 0), figures.get("pending", 0)
    if not endpoint.is_enabled:
        word, tone = "Disabled", "off"
    elif failed:
        word, tone = "Failing", "failing"
    elif retrying:
        word, tone = "Retrying", "retrying"
    else:
        word, tone = "Healthy", "healthy"
    return {"word": word, "tone": tone, "failed": failed, "retrying": retrying, "pending": pending}
