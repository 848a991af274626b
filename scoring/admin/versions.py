"""The model versions' admin: leads read each version's figures, activate one, and mark, end or promote the
challenger (through scoring/challenger.py, as the dashboard does); a change of thresholds goes through
scoring.thresholds.set_thresholds, as on the thresholds page (audited, picked up by every process)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from scoring import challenger
from scoring.classifier import active_model
from scoring.models import ModelVersion
from scoring.results import shown
from scoring.thresholds import check_thresholds, set_thresholds

THRESHOLDS = ("review_threshold", "block_threshold")


class ModelVersionForm(forms.ModelForm):
    def clean(self) -> dict[str, Any]:
        """Refuse in the form what set_thresholds would refuse on saving."""
        data = super().clean()
        review, block = (data.get(name) for name in THRESHOLDS)
        if set(THRESHOLDS) & set(self.changed_data) and review is not None and block is not None:
            try:
                check_thresholds(review=review, block=block)
            except ValueError as refusal:
                raise forms.ValidationError(str(refusal)) from None
        return data


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    form = ModelVersionForm
    list_display = [
        "version",
        "is_active",
        "is_challenger",
        "activated_at",
        "auc",
        "average_precision",
        "review_threshold",
        "block_threshold",
        "created_at",
    ]
    list_filter = ["is_active", "is_challenger"]
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
        "updated_at",
        "is_challenger",  # changed by the actions below, each audited
    ]
    exclude = ["artifact"]
    actions = ["activate", "make_challenger", "end_challenger", "promote_challenger"]

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
            if mv.is_challenger:  # the challenger's activation is its promotion, audited as such
                challenger.promote_challenger(user=request.user)
            else:
                mv.activate()
        except ValueError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        active_model.reset()
        self.message_user(request, f"{mv.version} is now active.", messages.SUCCESS)

    def save_model(self, request: HttpRequest, obj: ModelVersion, form: forms.ModelForm, change: bool) -> None:
        """New thresholds through set_thresholds (audited, the serving processes told); any other field as usual."""
        if set(THRESHOLDS) & set(form.changed_data):
            saved = set_thresholds(
                obj.pk,
                user=request.user,
                review=obj.review_threshold,
                block=obj.block_threshold,
                note="set in the admin",
            )
            obj.updated_at = saved.updated_at
        others = [name for name in form.changed_data if name not in THRESHOLDS]
        if others:
            obj.save(update_fields=others)

    @admin.action(
        description="Make the selected version the challenger (scored beside the active one, deciding nothing)",
        permissions=["change"],
    )
    def make_challenger(self, request: HttpRequest, queryset: QuerySet) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to make the challenger.", messages.ERROR)
            return
        self._change(
            request, lambda: challenger.mark_challenger(queryset.get().pk, user=request.user), "is the challenger"
        )

    @admin.action(description="End the selected challenger", permissions=["change"])
    def end_challenger(self, request: HttpRequest, queryset: QuerySet) -> None:
        if self._is_the_challenger(request, queryset):
            self._change(request, lambda: challenger.end_challenger(user=request.user), "is no longer the challenger")

    @admin.action(description="Promote the selected challenger to active", permissions=["change"])
    def promote_challenger(self, request: HttpRequest, queryset: QuerySet) -> None:
        if self._is_the_challenger(request, queryset):
            self._change(request, lambda: challenger.promote_challenger(user=request.user), "is now active")

    def _is_the_challenger(self, request: HttpRequest, queryset: QuerySet) -> bool:
        if queryset.count() == 1 and queryset.get().is_challenger:
            return True
        self.message_user(request, "Select the challenger alone (filter by “is challenger”).", messages.ERROR)
        return False

    def _change(self, request: HttpRequest, change: Any, said: str) -> None:
        """Run one of the challenger's changes, saying what became of which version, or why nothing did."""
        try:
            mv = change()
        except (ValueError, PermissionDenied) as refused:
            self.message_user(request, str(refused), messages.ERROR)
            return
        self.message_user(request, f"{mv.version} {said}.", messages.SUCCESS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # versions come from `manage.py train_model`


def _metric(mv: ModelVersion, key: str) -> str:
    value = mv.metrics.get(key)
    return f"{value:.3f}" if isinstance(value, int | float) else "–"
