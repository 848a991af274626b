"""The webhook endpoints' admin (registered by scoring/admin/__init__.py): every add and change goes through
scoring/webhooks.py, the secret is shown once on the page that answers the addition, and never in a form or list."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from scoring import webhooks
from scoring.models import EventType, WebhookEndpoint


class WebhookEndpointForm(forms.ModelForm):
    """Refuses in the form what scoring/webhooks.py would refuse on saving, so the admin says why."""

    url = forms.URLField(label="URL", max_length=500, assume_scheme="https")
    events = forms.MultipleChoiceField(choices=EventType.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = WebhookEndpoint
        fields = ["url", "description", "events", "is_enabled"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        try:
            if "url" in data:
                webhooks.checked_url(data["url"])
            webhooks.checked_events(data.get("events") or [])
        except ValueError as refusal:
            raise forms.ValidationError(str(refusal)) from None
        return data


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """Leads register, change, enable and disable endpoints; endpoints are disabled, never deleted, so their delivery
    log stays. The delivery log and replay are on the desk's page for the endpoint."""

    form = WebhookEndpointForm
    list_display = ["url", "description", "event_list", "is_enabled", "health", "created_by", "created_at"]
    list_filter = ["is_enabled"]
    search_fields = ["url", "description"]
    readonly_fields = ["created_by", "created_at", "delivery_log"]
    actions = ["enable", "disable"]

    @admin.display(description="events")
    def event_list(self, endpoint: WebhookEndpoint) -> str:
        return ", ".join(endpoint.events)

    @admin.display(description="health")
    def health(self, endpoint: WebhookEndpoint) -> str:
        figures = webhooks.endpoint_health(ids=[endpoint.id]).get(endpoint.id, {})
        if figures.get("failed"):
            return format_html('<b style="color:#c62828">failing: {} failed in the last day</b>', figures["failed"])
        if figures.get("retrying"):
            return format_html('<b style="color:#b35900">retrying {}</b>', figures["retrying"])
        return "ok"

    @admin.display(description="delivery log")
    def delivery_log(self, endpoint: WebhookEndpoint) -> str:
        if endpoint.pk is None:
            return "—"
        return format_html(
            '<a href="{}">every attempt, and replay</a>', reverse("dashboards:webhook", args=[endpoint.pk])
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("created_by")

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if not change:
            created = webhooks.register_endpoint(
                data["url"],
                events=data["events"],
                description=data["description"],
                enabled=data["is_enabled"],
                user=request.user,
            )
            obj.pk, obj.secret, obj.created_by, obj.created_at = (
                created.pk,
                created.secret,
                created.created_by,
                created.created_at,
            )
            return
        webhooks.update_endpoint(
            obj.pk, user=request.user, url=data["url"], events=data["events"], description=data["description"]
        )
        webhooks.set_enabled(obj.pk, enabled=data["is_enabled"], user=request.user)

    def response_add(
        self, request: HttpRequest, obj: WebhookEndpoint, post_url_continue: str | None = None
    ) -> HttpResponse:
        """The secret, on this page only: not in a message, which would keep it in the session or a cookie."""
        context = {
            **self.admin_site.each_context(request),
            "endpoint": obj,
            "opts": self.opts,
            "title": "Endpoint registered",
        }
        return TemplateResponse(request, "admin/scoring/webhookendpoint/secret.html", context, status=201)

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> None:
        pass  # scoring/webhooks.py wrote the history entry, whichever way the change came

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> None:
        pass

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Enable the selected endpoints", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_enabled(request, queryset, enabled=True)

    @admin.action(description="Disable the selected endpoints (they get nothing new)", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_enabled(request, queryset, enabled=False)

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet, *, enabled: bool) -> None:
        try:
            for endpoint_id in queryset.values_list("id", flat=True):
                webhooks.set_enabled(endpoint_id, enabled=enabled, user=request.user)
        except PermissionDenied as refusal:
            self.message_user(request, str(refusal), messages.ERROR)
            return
        self.message_user(request, f"{queryset.count()} endpoint(s) {'enabled' if enabled else 'disabled'}.")
