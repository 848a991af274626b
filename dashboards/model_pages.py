"""The model versions at /models/ and each version's thresholds by consequence at /models/<version>/thresholds/.

Analysts and leads read both (the figures are the team's to see); only leads set thresholds, through
scoring.thresholds.set_thresholds, after the page has shown them what the new ones would have done.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from dashboards import threshold_charts
from dashboards.views import HtmxHttpRequest, lead_required, role_required
from scoring import thresholds
from scoring.models import ModelVersion

MODELS = "dashboards/models.html"
PAGE = "dashboards/thresholds.html"
PREVIEW = "dashboards/thresholds.html#preview"
METRICS = (  # the holdout figures the list shows, from ModelVersion.metrics
    ("auc_roc", "AUC"),
    ("average_precision", "Avg precision"),
    ("card_precision_at_100", "Card precision@100"),
    ("calibration_error", "Calibration error"),
)


class ThresholdsForm(forms.Form):
    review = forms.FloatField(min_value=0, max_value=1, label="Review threshold")
    block = forms.FloatField(min_value=0, max_value=1, label="Block threshold")
    note = forms.CharField(max_length=500, required=False, label="Why")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("review") is not None and data.get("block") is not None:
            try:
                thresholds.check_thresholds(review=data["review"], block=data["block"])
            except ValueError as refusal:
                raise forms.ValidationError(_sentence(refusal)) from None
        return data


@require_GET
@role_required
def models_page(request: HtmxHttpRequest) -> HttpResponse:
    """Every stored model version, newest first, with its holdout figures and thresholds."""
    versions = ModelVersion.objects.defer("artifact").order_by("-created_at", "-id")
    rows = [{"version": mv, "metrics": _metrics(mv)} for mv in versions]
    return render(request, MODELS, {"rows": rows, "metric_names": [label for _, label in METRICS]})


@require_GET
@role_required
def thresholds_page(request: HtmxHttpRequest, version: str) -> HttpResponse:
    """The figures at every threshold over the last days, the current thresholds marked; leads get the form."""
    mv = _version(version)
    form = ThresholdsForm(initial={"review": mv.review_threshold, "block": mv.block_threshold})
    return render(request, PAGE, _page_context(mv, days=_days(request), form=form))


@require_GET
@lead_required(PAGE)
def thresholds_preview(request: HtmxHttpRequest, version: str) -> HttpResponse:
    """What the proposed thresholds (the form's, as typed) would have done beside the current ones, unsaved."""
    mv = _version(version)
    form = ThresholdsForm(request.GET or {"review": mv.review_threshold, "block": mv.block_threshold})
    if not form.is_valid():
        return render(request, PREVIEW, {"version": mv, "form": form, "days": _days(request)}, status=422)
    figures = thresholds.cached_figures(mv, days=_days(request))
    context = {"version": mv, "form": form, "days": figures.days, "comparison": _comparison(mv, figures, form)}
    return render(request, PREVIEW, context)


@require_POST
@lead_required(PAGE)
def thresholds_set(request: HtmxHttpRequest, version: str) -> HttpResponse:
    """Save the lead's thresholds (audited); back to the page, which lists the change."""
    mv = _version(version)
    days = _days(request)
    form = ThresholdsForm(request.POST)
    if form.is_valid():
        try:
            thresholds.set_thresholds(
                mv.pk,
                user=request.user,
                review=form.cleaned_data["review"],
                block=form.cleaned_data["block"],
                note=form.cleaned_data["note"],
            )
        except (ValueError, PermissionDenied) as refusal:
            form.add_error(None, _sentence(refusal))
        else:
            messages.success(request, _saved(mv, review=form.cleaned_data["review"], block=form.cleaned_data["block"]))
            url = reverse("dashboards:thresholds", args=[mv.version])
            return HttpResponseRedirect(f"{url}?days={days}#threshold-history")
    return render(request, PAGE, _page_context(mv, days=days, form=form), status=422)


# --- the pieces ----------------------------------------------------------------------------------------------


def _version(version: str) -> ModelVersion:
    return get_object_or_404(ModelVersion.objects.defer("artifact"), version=version)


def _days(request: HtmxHttpRequest) -> int:
    asked = request.GET.get("days") or request.POST.get("days")
    return int(asked) if asked in {str(d) for d in thresholds.DAY_CHOICES} else thresholds.DEFAULT_DAYS


def _page_context(mv: ModelVersion, *, days: int, form: ThresholdsForm) -> dict[str, Any]:
    figures = thresholds.cached_figures(mv, days=days)  # the artifact, deferred, is read only if not cached
    review, block = mv.review_threshold, mv.block_threshold
    return {
        "version": mv,
        "figures": figures,
        "days": days,
        "day_choices": thresholds.DAY_CHOICES,
        "form": form,
        "current_review": threshold_charts.threshold(review),  # not "block": Django's templates use that name
        "current_block": threshold_charts.threshold(block),
        "chart": threshold_charts.chart(figures, review=review, block=block),
        "table": threshold_charts.table(figures, review=review, block=block),
        "comparison": _comparison(mv, figures, form) if form.is_bound and form.is_valid() else None,
        "history": thresholds.history(mv),
        "refresh_seconds": settings.MODEL_REFRESH_SECONDS,
    }


def _comparison(mv: ModelVersion, figures: thresholds.ThresholdFigures, form: ThresholdsForm) -> list[dict]:
    proposed = (form.cleaned_data["review"], form.cleaned_data["block"])
    return threshold_charts.comparison(figures, current=(mv.review_threshold, mv.block_threshold), proposed=proposed)


def _saved(mv: ModelVersion, *, review: float, block: float) -> str:
    said = f"{mv.version} now sends for review from {review:g} and blocks from {block:g}"
    if mv.is_active:
        return f"{said}; every server uses them within {settings.MODEL_REFRESH_SECONDS:g} seconds."
    return f"{said} once it is activated."


def _metrics(mv: ModelVersion) -> list[tuple[str, str]]:
    """(name, value) of each holdout figure the list shows; "—" where the version was trained without it."""
    values = [(label, (mv.metrics or {}).get(key)) for key, label in METRICS]
    return [(label, f"{v:.3f}" if isinstance(v, int | float) else "—") for label, v in values]


def _sentence(refusal: Exception) -> str:
    text = str(refusal)
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
