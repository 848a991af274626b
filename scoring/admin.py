"""The Django admin: analysts work review cases here; staff also manage models, lists and API keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from scoring import cases, keys, lists
from scoring.classifier import active_model
from scoring.models import ApiKey, Case, CaseEvent, ListEntry, ModelVersion, ReasonCode, Transaction
from scoring.models.access import ListEntryEvent
from scoring.results import case_amount, reasons_in_words, shown
from scoring.roles import can_review
from scoring.webhook_admin import WebhookEndpointAdmin  # noqa: F401  (registers the webhook endpoints' admin)

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


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = [
        "version",
        "is_active",
        "activated_at",
        "auc",
        "average_precision",
        "review_threshold",
        "block_threshold",
        "created_at",
    ]
    list_filter = ["is_active"]
    readonly_fields = [
        "version",
        "created_at",
        "features",
        "params",
        "reliability_table",
        "metrics",
        "data_range",
        "is_active",
        "activated_at",
    ]
    exclude = ["artifact"]
    actions = ["activate"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.is_active:
            return False  # only replaced, by activating another version
        return super().has_delete_permission(request, obj)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple[Any, Any, Any, list[Any]]:
        """The bulk delete's confirmation refuses a selection that holds the active version."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        active = [f"{mv}: activate another version first" for mv in objs if mv.is_active]
        if active:  # said as what it is, not as a missing permission (has_delete_permission above)
            perms_needed.discard(ModelVersion._meta.verbose_name)
        return deleted, counts, perms_needed, [*protected, *active]

    @admin.display(description="reliability (holdout)")
    def reliability_table(self, mv: ModelVersion) -> str:
        """Per score band: rows, mean score and the share that was fraud; a calibrated model's last two agree,
        so a threshold means the same from one version to the next."""
        table = (mv.metrics or {}).get("reliability") or []
        if not table:
            return "— (trained without a holdout)"
        head = mark_safe("<tr><th>score</th><th>rows</th><th>mean score</th><th>fraud share</th></tr>")  # no values
        bands = ((b["band"], b["rows"], shown(b["mean_score"]), shown(b["fraud_share"])) for b in table)
        rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", bands)
        error = (mv.metrics or {}).get("calibration_error")
        return format_html("<table>{}{}</table><p>calibration error: {}</p>", head, rows, shown(error))

    @admin.display(description="AUC")
    def auc(self, mv: ModelVersion) -> str:
        return _metric(mv, "auc_roc")

    @admin.display(description="avg precision")
    def average_precision(self, mv: ModelVersion) -> str:
        return _metric(mv, "average_precision")

    @admin.action(
        description="Activate the selected version (every server switches within seconds)", permissions=["change"]
    )
    def activate(self, request: HttpRequest, queryset: QuerySet) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.ERROR)
            return
        mv = queryset.get()
        try:
            mv.activate()
        except ValueError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        active_model.reset()
        self.message_user(request, f"{mv.version} is now active.", messages.SUCCESS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # versions come from `manage.py train_model`


def _metric(mv: ModelVersion, key: str) -> str:
    value = mv.metrics.get(key)
    return f"{value:.3f}" if isinstance(value, int | float) else "–"


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


admin.site.site_header = "Fraud scoring"
admin.site.site_title = "Fraud scoring admin"
admin.site.index_title = "Review and configuration"
