"""The rules pages: /rules/ lists every rule with its hits of the last day; /rules/<id>/ is one rule with its
backtest and version history; leads write rules at /rules/new and /rules/<name or id>/edit, backtest a condition
as typed, publish and disable. Analysts read everything; every change goes through scoring/rule_book.py, which
checks the role again and keeps the audited versions."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from dashboards import rule_charts, rule_figures
from dashboards.views import HtmxHttpRequest, lead_required, role_required
from scoring import rule_book
from scoring.backtest import backtest
from scoring.models import Decision, Rule, RuleStatus
from scoring.rules import FIELDS, LIST_NAMES, NAMES, RuleError

LIST = "dashboards/rules.html"
DETAIL = "dashboards/rule.html"
FORM = "dashboards/rule_form.html"
BACKTEST_PANEL = "dashboards/rule.html#backtest-panel"
REFUSED = "dashboards/rules_leads_only.html"
TRIED_REFUSED = "dashboards/rule_form.html#tried-refused"
DAY_CHOICES = (7, 30, 90)
DEFAULT_DAYS = 30
PUBLISH_AS = {"active": RuleStatus.ACTIVE, "shadow": RuleStatus.SHADOW}

# The reference beside the form: the transaction's own fields first, then the score, the lists and the features.
NAME_GROUPS = (
    ("The transaction", tuple(FIELDS.items())),
    ("The model", (("score", NAMES["score"]),)),
    ("Lists", tuple(LIST_NAMES.items())),
    ("Features", tuple((n, kind) for n, kind in NAMES.items() if n not in {*FIELDS, *LIST_NAMES, "score"})),
)

leads_only = lead_required(REFUSED)  # analysts read the rules; a lead's form or button answers them with this


class RuleForm(forms.Form):
    """The fields a lead types; what makes them valid (name format, the condition) is scoring/rule_book.py's."""

    name = forms.CharField(max_length=80)
    description = forms.CharField(required=False, widget=forms.Textarea)
    condition = forms.CharField(widget=forms.Textarea, strip=False)
    action = forms.ChoiceField(choices=Decision.choices)
    priority = forms.IntegerField(initial=100, min_value=-1_000_000, max_value=1_000_000)


@require_GET
@role_required
def rules_page(request: HtmxHttpRequest) -> HttpResponse:
    """Every rule (or those of one status) with its live hits of the last 24 hours."""
    status = request.GET.get("status") if request.GET.get("status") in RuleStatus.values else ""
    rules = list(Rule.objects.select_related("author").filter(**({"status": status} if status else {})))
    hits = rule_figures.live_hits(rules, now=timezone.now())
    counts = rule_figures.status_counts()
    context = {
        "rows": [(rule, hits[rule.pk]) for rule in rules],
        "status": status,
        "statuses": [(value, label, counts[value]) for value, label in RuleStatus.choices],
    }
    return render(request, LIST, context)


@require_GET
@role_required
def rule_page(request: HtmxHttpRequest, ref: str) -> HttpResponse:
    """One rule (named by its name or its id): its fields, its backtest (loaded by htmx, for the days asked) and
    its version history."""
    rule = _rule_by_name_or_id(ref)
    context = {
        "rule": rule,
        "days": _days(request),
        "day_choices": DAY_CHOICES,
        "changes": [(change, rule_charts.summary(change.version.backtest)) for change in rule_figures.history(rule)],
    }
    return render(request, DETAIL, context)


@require_GET
@role_required
def rule_backtest(request: HtmxHttpRequest, rule_id: int) -> HttpResponse:
    """The rule's backtest over the last `days` days: the panel the rule page swaps in."""
    rule = get_object_or_404(Rule, pk=rule_id)
    days = _days(request)
    try:
        result = backtest(rule.condition, days=days, rule_name=rule.name).as_dict()
    except RuleError as refused:  # saved when it checked, e.g. before a feature it reads was retired
        return _tried_refused(request, refused, condition=rule.condition)
    return render(request, BACKTEST_PANEL, {"rule": rule, "days": days, **_panel(result)})


@require_http_methods(["GET", "POST"])
@leads_only
def rule_new(request: HtmxHttpRequest) -> HttpResponse:
    """The form for a new rule; POST saves it as a draft and goes to its page."""
    form = RuleForm(request.POST or None, initial={"action": Decision.REVIEW})
    if request.method == "GET" or not form.is_valid():
        return _form_page(request, form=form, rule=None, status=200 if request.method == "GET" else 422)
    try:
        rule = rule_book.create_rule(user=request.user, **form.cleaned_data)
    except rule_book.RuleRefused as refusal:
        return _refused(request, form=form, rule=None, refusal=refusal)
    messages.success(request, f"{rule.name} is saved as a draft: backtest it below, then publish it.")
    return HttpResponseRedirect(reverse("dashboards:rule", args=[rule.pk]))


@require_http_methods(["GET", "POST"])
@leads_only
def rule_edit(request: HtmxHttpRequest, ref: str) -> HttpResponse:
    """The form for an existing rule (named by its name or its id); POST saves a new version of it."""
    rule = _rule_by_name_or_id(ref)
    initial = {field: getattr(rule, field) for field in rule_book.EDITABLE}
    form = RuleForm(request.POST or None, initial=initial)
    if request.method == "GET" or not form.is_valid():
        return _form_page(request, form=form, rule=rule, status=200 if request.method == "GET" else 422)
    try:
        saved = rule_book.edit_rule(rule.pk, user=request.user, **form.cleaned_data)
    except rule_book.RuleRefused as refusal:
        return _refused(request, form=form, rule=rule, refusal=refusal)
    said = "nothing changed" if saved.version == rule.version else f"version {saved.version} is saved"
    messages.success(request, f"{saved.name}: {said}.")
    return HttpResponseRedirect(reverse("dashboards:rule", args=[saved.pk]))


@require_POST
@leads_only
def rule_try(request: HtmxHttpRequest) -> HttpResponse:
    """The form's Backtest button: the condition as typed, over the days asked, without saving anything."""
    condition, days = request.POST.get("condition", ""), _days(request, source=request.POST)
    try:
        result = backtest(condition, days=days, rule_name=request.POST.get("name") or None).as_dict()
    except RuleError as refused:
        return _tried_refused(request, refused, condition=condition)
    return render(request, "dashboards/rule_form.html#tried", {"rule": None, "days": days, **_panel(result)})


@require_POST
@leads_only
def rule_publish(request: HtmxHttpRequest, rule_id: int) -> HttpResponse:
    """Publish as active or in shadow: the backtest is run now and kept with the new version."""
    rule = get_object_or_404(Rule, pk=rule_id)
    status = PUBLISH_AS.get(request.POST.get("status", ""))
    if status is None:
        return HttpResponse("Say how to publish: status=active or status=shadow.", status=400)
    days = _days(request, source=request.POST)  # the days the lead was looking at: published with what was seen
    try:
        published = rule_book.publish_rule(rule.pk, user=request.user, status=status, days=days)
    except rule_book.RuleRefused as refusal:
        messages.error(request, f"{rule.name} is not published: {'; '.join(refusal.errors.values())}")
    except RuleError as refused:  # its condition no longer checks: the backtest it is published with cannot run
        messages.error(request, f"{rule.name} is not published: {refused}. Edit its condition first.")
    else:
        runs = "its action counts" if status == RuleStatus.ACTIVE else "its hits are recorded, it changes nothing"
        messages.success(request, f"{published.name} is {status} (version {published.version}): {runs}.")
    return HttpResponseRedirect(f"{reverse('dashboards:rule', args=[rule.pk])}?days={days}")


@require_POST
@leads_only
def rule_disable(request: HtmxHttpRequest, rule_id: int) -> HttpResponse:
    rule = rule_book.disable_rule(get_object_or_404(Rule, pk=rule_id).pk, user=request.user)
    messages.success(request, f"{rule.name} is disabled: it no longer runs on live traffic.")
    return HttpResponseRedirect(reverse("dashboards:rule", args=[rule.pk]))


# --- the pieces ---------------------------------------------------------------------------------------------------


def _form_page(
    request: HtmxHttpRequest, *, form: RuleForm, rule: Rule | None, status: int, **extra: Any
) -> HttpResponse:
    context = {
        "form": form,
        "rule": rule,
        "name_groups": NAME_GROUPS,
        "day_choices": DAY_CHOICES,
        "days": DEFAULT_DAYS,
        **extra,
    }
    return render(request, FORM, context, status=status)


def _refused(request: HtmxHttpRequest, *, form: RuleForm, rule: Rule | None, refusal: Any) -> HttpResponse:
    """The form again with each refused field's message, and the condition's line with a caret under the mistake."""
    condition = form.cleaned_data.get("condition", "")  # before add_error drops the refused fields from it
    for field, message in refusal.errors.items():
        form.add_error(field if field in form.fields else None, message)
    line, column = refusal.position or (None, None)
    where = rule_figures.pointer(condition, line=line, column=column)
    return _form_page(request, form=form, rule=rule, status=422, pointer=where)


def _panel(result: dict[str, Any]) -> dict[str, Any]:
    """The backtest panel's context, each overlapping rule with its id for the link to its page."""
    context = rule_charts.panel(result)
    ids = dict(Rule.objects.filter(name__in=[name for name, _ in context["overlaps"]]).values_list("name", "pk"))
    context["overlaps"] = [(name, ids.get(name), n) for name, n in context["overlaps"]]
    return context


def _tried_refused(request: HtmxHttpRequest, refused: RuleError, *, condition: str) -> HttpResponse:
    """A condition the backtest cannot run: the message and a caret under the mistake, in the panel's place."""
    where = rule_figures.pointer(condition, line=refused.line, column=refused.column)
    return render(request, TRIED_REFUSED, {"error": str(refused), "pointer": where}, status=422)


def _days(request: HtmxHttpRequest, *, source: Any = None) -> int:
    asked = (source if source is not None else request.GET).get("days")
    return int(asked) if asked in {str(d) for d in DAY_CHOICES} else DEFAULT_DAYS


def _rule_by_name_or_id(ref: str) -> Rule:
    """Rules are named in URLs by name (what leads type) or id (what links carry); a name made of digits only is
    taken as an id first."""
    rules = Rule.objects.select_related("author")
    found = rules.filter(pk=int(ref)).first() if ref.isdigit() else None
    found = found or rules.filter(name=ref).first()
    if found is None:
        raise Http404(f"No rule is named {ref}")
    return found
