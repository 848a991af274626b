"""The rules' admin: read a rule and its versions; publish or disable through scoring/rule_book.py (leads).

Nothing here writes a rule's fields: an edit that skipped the rule book would skip its checks, its version and
the reload of the live rules. Rules are written on the rules pages or with `manage.py rule`.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest

from scoring import rule_book
from scoring.models import Rule, RuleStatus, RuleVersion

FIELDS = ["name", "status", "action", "priority", "condition", "description", "author", "version", "updated_at"]


class RuleVersionInline(admin.TabularInline):
    model = RuleVersion
    fields = ["version", "change", "at", "actor", "status", "action", "priority", "condition", "backtest_hits"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    @admin.display(description="backtest hits")
    def backtest_hits(self, version: RuleVersion) -> str:
        return "—" if version.backtest is None else f"{version.backtest['hits']} in {version.backtest['days']} days"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "action", "priority", "version", "author", "updated_at"]
    list_filter = ["status", "action"]
    search_fields = ["name", "condition", "description"]
    fields = FIELDS
    readonly_fields = FIELDS
    inlines = [RuleVersionInline]
    actions = ["publish", "publish_shadow", "disable"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # rules are written on the rules pages or with `manage.py rule add`

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # disabled, never deleted: their versions are the audit trail

    def save_model(self, request: HttpRequest, obj: Rule, form: Any, change: bool) -> None:
        """Nothing on the form is editable; saving it writes nothing (no version would say who changed what)."""

    @admin.action(description="Publish the selected rules (active, with a 30-day backtest)", permissions=["change"])
    def publish(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, lambda rule_id: rule_book.publish_rule(rule_id, user=request.user))

    @admin.action(
        description="Publish the selected rules as shadow (hits recorded, nothing changed)", permissions=["change"]
    )
    def publish_shadow(self, request: HttpRequest, queryset: QuerySet) -> None:
        shadow = RuleStatus.SHADOW
        self._each(request, queryset, lambda rule_id: rule_book.publish_rule(rule_id, user=request.user, status=shadow))

    @admin.action(description="Disable the selected rules", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, lambda rule_id: rule_book.disable_rule(rule_id, user=request.user))

    def _each(self, request: HttpRequest, queryset: QuerySet, change: Any) -> None:
        done = []
        for rule_id in queryset.values_list("id", flat=True):
            try:
                done.append(change(rule_id))
            except (PermissionDenied, rule_book.RuleRefused) as refused:
                self.message_user(request, str(refused), messages.ERROR)
                return
        said = ", ".join(f"{rule.name} (v{rule.version}, {rule.status})" for rule in done)
        self.message_user(request, f"Done: {said}.", messages.SUCCESS)
