"""Who and what may do what: API keys, the allow/block lists (through scoring/lists.py) and the reason codes."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from scoring import keys, lists
from scoring.models import ApiKey, ListEntry, ReasonCode
from scoring.models.access import ListEntryEvent


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "created_at", "revoked_at", "is_active"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix"]
    fields = ["name", "prefix", "created_at", "revoked_at"]
    readonly_fields = ["prefix", "created_at"]
    actions = ["revoke"]

    @admin.display(boolean=True, description="active")
    def is_active(self, key: ApiKey) -> bool:
        return key.is_active

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        key, raw = ApiKey.issue(name=obj.name)
        obj.pk, obj.key_hash, obj.prefix, obj.created_at = key.pk, key.key_hash, key.prefix, key.created_at
        self.message_user(request, f"New API key for {key.name} (shown once, store it now): {raw}", messages.WARNING)

    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        keys.reset()  # this process at once; the others within keys.KEY_CACHE_SECONDS
        self.message_user(request, f"{count} key(s) revoked.", messages.SUCCESS)


class ListEntryForm(forms.ModelForm):
    """Refuses in the form what scoring/lists.py would refuse on saving (an analyst's allow entry, an expiry out
    of bounds), so the admin says why instead of failing."""

    user: Any = None  # set per request by ListEntryAdmin.get_form

    class Meta:
        model = ListEntry
        fields = ["kind", "entity", "value", "reason", "expires_at"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("kind"):
            try:
                lists.check_entry(user=self.user, kind=data["kind"], expires_at=data.get("expires_at"))
            except (PermissionDenied, ValueError) as refusal:
                raise forms.ValidationError(str(refusal)) from None
        return data


@admin.register(ListEntry)
class ListEntryAdmin(admin.ModelAdmin):
    """Every add, change, end and removal goes through scoring/lists.py: the desk's rules and audit record."""

    form = ListEntryForm
    list_display = ["kind", "entity", "value", "reason", "created_by", "created_at", "expires_at", "in_force"]
    list_filter = ["kind", "entity"]
    search_fields = ["value", "reason"]
    readonly_fields = ["created_by", "created_at", "history"]
    actions = ["end_now"]

    @admin.display(boolean=True, description="in force")
    def in_force(self, entry: ListEntry) -> bool:
        return entry.is_in_force

    @admin.display(description="record")
    def history(self, entry: ListEntry) -> str:
        events = ListEntryEvent.objects.filter(entity=entry.entity, value=entry.value).select_related("actor")
        rows = format_html_join(
            "",
            "<li>{} · {} {} · {}</li>",
            ((f"{e.at:%Y-%m-%d %H:%M}", e.actor or "—", e.action, lists.entry_in_words(e)) for e in events),
        )
        return format_html("<ul>{}</ul>", rows) if events else "—"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # An entry is for one card or merchant: listing another is a new entry, not an edit of this one.
        return [*self.readonly_fields, "entity", "value"] if obj else list(self.readonly_fields)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        form.user = request.user
        return form

    def save_model(self, request: HttpRequest, obj: ListEntry, form: Any, change: bool) -> None:
        entry = lists.add_entry(
            user=request.user,
            kind=obj.kind,
            entity=obj.entity,
            value=obj.value,
            reason=obj.reason,
            expires_at=obj.expires_at,
        )
        obj.pk, obj.created_by, obj.created_at = entry.pk, entry.created_by, entry.created_at

    def delete_model(self, request: HttpRequest, obj: ListEntry) -> None:
        lists.remove_entry(obj.pk, user=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for entry_id in queryset.values_list("id", flat=True):
            lists.remove_entry(entry_id, user=request.user)

    @admin.action(description="End the selected entries now (audited)", permissions=["change"])
    def end_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        ended = [lists.end_entry(entry_id, user=request.user) for entry_id in queryset.values_list("id", flat=True)]
        self.message_user(request, f"{len(ended)} entr{'y' if len(ended) == 1 else 'ies'} ended.", messages.SUCCESS)


@admin.register(ReasonCode)
class ReasonCodeAdmin(admin.ModelAdmin):
    """The reasons an analyst picks from when resolving a case; leads keep the list (retire, never delete, one
    that cases use: they keep pointing at it)."""

    list_display = ["label", "code", "verdict", "is_active", "position"]
    list_editable = ["is_active", "position"]
    list_filter = ["verdict", "is_active"]
