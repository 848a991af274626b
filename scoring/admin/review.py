"""The review admin: cases (read here, changed only through scoring/cases.py's actions) and transactions (a
record, read-only)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from scoring import cases
from scoring.models import Case, CaseEvent, Transaction
from scoring.results import case_amount, reasons_in_words, shown
from scoring.roles import can_review

SCORE_BANDS = {
    "lt50": ("below 0.5", 0.0, 0.5),
    "50-90": ("0.5 – 0.9", 0.5, 0.9),
    "ge90": ("0.9 and above", 0.9, 1.01),
}


class ScoreBandFilter(admin.SimpleListFilter):
    title = "score band"
    parameter_name = "score_band"
    field = "score"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _, _) in SCORE_BANDS.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() not in SCORE_BANDS:
            return queryset
        _, low, high = SCORE_BANDS[self.value()]
        return queryset.filter(**{f"{self.field}__gte": low, f"{self.field}__lt": high})


class CaseScoreBandFilter(ScoreBandFilter):
    field = "top_score"


class SourceFilter(admin.SimpleListFilter):
    """Scored traffic or imported history (score 0 and 'approve' without having been scored)."""

    title = "source"
    parameter_name = "source"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("scored", "Scored here"), ("imported", "Imported history")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "scored":
            return queryset.scored()
        if self.value() == "imported":
            return queryset.imported()
        return queryset


def desk_link(url_name: str, entity_id: str) -> str:
    """A card or merchant id as a link to its page on the desk, where its whole story is."""
    return format_html('<a href="{}">{}</a>', reverse(url_name, args=[entity_id]), entity_id)


def decision_badge(decision: str) -> str:
    colors = {"approve": "#1a7f37", "review": "#b35900", "block": "#c62828"}
    return format_html('<b style="color:{}">{}</b>', colors.get(decision, "#333"), decision)


class CaseEventInline(admin.TabularInline):
    model = CaseEvent
    extra = 0
    can_delete = False
    fields = readonly_fields = ["at", "actor", "via", "action", "note"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AlertInline(admin.TabularInline):
    """The case's transactions, read-only: what it is about."""

    model = Transaction
    fk_name = "case"
    extra = 0
    can_delete = False
    fields = readonly_fields = [
        "link",
        "timestamp",
        "merchant_id",
        "amount",
        "currency",
        "score",
        "decision",
        "is_fraud",
    ]
    ordering = ["-score", "id"]
    verbose_name, verbose_name_plural = "alert", "alerts (the card's flagged transactions)"

    @admin.display(description="transaction")
    def link(self, tx: Transaction) -> str:
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:scoring_transaction_change", args=[tx.id]), tx.external_id
        )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Case)
class CaseAdmin(admin.ModelAdmin):
    """Cases are read here and changed only through the actions below, which call scoring/cases.py: the same
    rules, audit events and pushes as the dashboard. Notes and reopening are on the case's desk page."""

    list_display = [
        "id",
        "status",
        "overturned",
        "score",
        "decision_shown",
        "alert_count",
        "amount",
        "card",
        "assignee",
        "opened_at",
        "due_at",
    ]
    list_filter = ["status", "overturned", "decision", CaseScoreBandFilter, "opened_at"]
    search_fields = ["card_id", "alerts__merchant_id", "alerts__external_id"]
    list_select_related = ["assignee"]
    ordering = ["-top_score"]
    fields = readonly_fields = [
        "on_the_desk",
        "card",
        "decision",
        "alert_count",
        "top_score",
        "amount",
        "reasons_in_words",
        "status",
        "reason",
        "overturned",
        "assignee",
        "note",
        "opened_at",
        "last_alert_at",
        "due_at",
        "resolved_by",
        "resolved_via",
        "resolved_at",
    ]
    inlines = [AlertInline, CaseEventInline]
    actions = ["claim", "release", "confirm_fraud", "mark_legitimate"]

    @admin.display(description="card", ordering="card_id")
    def card(self, case: Case) -> str:
        return desk_link("dashboards:card", case.card_id)

    @admin.display(ordering="top_score")
    def score(self, case: Case) -> str:
        return f"{case.top_score:.3f}"

    @admin.display(ordering="decision", description="decision")
    def decision_shown(self, case: Case) -> str:
        return decision_badge(case.decision)

    @admin.display(ordering="total_amount")
    def amount(self, case: Case) -> str:
        return case_amount(case)

    @admin.display(description="reasons (its riskiest alert)")
    def reasons_in_words(self, case: Case) -> str:
        top = case.alerts.order_by("-score", "id").first()
        return "; ".join(w["text"] for w in reasons_in_words(top)) if top else ""

    @admin.display(description="notes, reopening")
    def on_the_desk(self, case: Case) -> str:
        return format_html(
            '<a href="{}">Open case #{} on the desk</a>', reverse("dashboards:case", args=[case.id]), case.id
        )

    @admin.action(description="Claim the selected cases", permissions=["review"])
    def claim(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, done="claimed", change=lambda case_id: cases.claim(case_id, user=request.user))

    @admin.action(description="Release the selected cases", permissions=["review"])
    def release(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, done="released", change=lambda case_id: cases.release(case_id, user=request.user))

    @admin.action(description="Confirm fraud (resolve selected cases)", permissions=["review"])
    def confirm_fraud(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._resolve(request, queryset, is_fraud=True)

    @admin.action(description="Mark legitimate (resolve selected cases)", permissions=["review"])
    def mark_legitimate(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._resolve(request, queryset, is_fraud=False)

    def _resolve(self, request: HttpRequest, queryset: QuerySet, *, is_fraud: bool) -> None:
        def change(case_id: int) -> Case:
            return cases.resolve(case_id, user=request.user, is_fraud=is_fraud, note="resolved in the admin")

        self._each(request, queryset, done="resolved", change=change)

    def _each(self, request: HttpRequest, queryset: QuerySet, *, done: str, change: Callable[[int], Case]) -> None:
        """Apply one case function to each selected case; say what was done and what was refused, and why."""
        count, refused = 0, []
        for case_id in queryset.values_list("id", flat=True):
            try:
                change(case_id)
                count += 1
            except (cases.CaseConflict, PermissionDenied) as exc:
                refused.append(str(exc))
        if count:
            self.message_user(request, f"{count} case(s) {done}.", messages.SUCCESS)
        for reason in refused:
            self.message_user(request, reason, messages.WARNING)

    def has_review_permission(self, request: HttpRequest) -> bool:
        return can_review(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # cases are opened by scoring, never by hand

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # No edit form: a saved form writes every field back, undoing concurrent claims without an audit event.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser


@admin.register(Transaction)
class TransactionAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "external_id",
        "timestamp",
        "card",
        "merchant",
        "amount",
        "currency",
        "score",
        "decision_colored",
        "is_fraud",
    ]
    list_filter = [SourceFilter, "decision", ScoreBandFilter, "is_fraud", "channel", "currency"]
    search_fields = ["external_id", "card_id", "merchant_id"]
    date_hierarchy = "timestamp"
    show_full_result_count = False  # COUNT(*) over millions of rows on every page is slow
    exclude = ["features"]  # a bare list of numbers; shown by name below
    readonly_fields = ["values_the_model_saw"]

    @admin.display(description="values the model saw")
    def values_the_model_saw(self, tx: Transaction) -> str:
        values = tx.feature_values()
        if not values:
            return "—"
        rows = format_html_join(
            "", "<tr><th>{}</th><td>{}</td></tr>", ((name, shown(value)) for name, value in values.items())
        )
        return format_html("<table>{}</table>", rows)

    @admin.display(description="card", ordering="card_id")
    def card(self, tx: Transaction) -> str:
        return desk_link("dashboards:card", tx.card_id)

    @admin.display(description="merchant", ordering="merchant_id")
    def merchant(self, tx: Transaction) -> str:
        return desk_link("dashboards:merchant", tx.merchant_id)

    @admin.display(description="decision", ordering="decision")
    def decision_colored(self, tx: Transaction) -> str:
        if tx.is_imported:
            return format_html('<span style="color:#666" title="{}">history</span>', tx.model_version)
        return decision_badge(tx.decision)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # what was scored and answered is a record, not an editable row

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
