"""The review queue's filters and sort orders, from the query string to the cases (and their alerts) they select.

One form reads the query string (`/cases/?status=open&assignee=mine&score_min=0.8&sort=amount`), so a page, its
page links and its CSV exports all select with the same words and the same rules; `q` narrows them to the cards
whose id begins with it, or the case it numbers, read as the search page reads ids. Amount bounds compare each
case's total in its own currency (or in the one currency chosen); a case whose alerts are in several currencies
has no total, so it never matches an amount bound and sorts after every case that has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import F, Q, QuerySet
from django.db.models.expressions import OrderBy
from django.http import QueryDict

from dashboards.search import CASE_NUMBER, CONTROL, MAX_QUERY, upper_bound
from scoring.models import Case, CaseStatus, Transaction
from scoring.results import money
from scoring.roles import ANALYSTS, LEADS

MINE, UNCLAIMED = "mine", "unclaimed"
ANY = "any"
STATUSES = [(CaseStatus.OPEN, "Open"), (CaseStatus.FRAUD, "Fraud"), (CaseStatus.LEGITIMATE, "Legitimate"), (ANY, "Any")]
DECISIONS = [("", "Any decision"), ("review", "Review"), ("block", "Block")]
SORTS = [
    ("risk", "Risk (score)"),
    ("amount", "Amount (largest)"),
    ("age", "Age (oldest)"),
    ("due", "Due (soonest)"),
    ("resolved", "Verdict (latest)"),
]
# Each order in the words the page head uses ("12 cases: open; riskiest first.").
SORT_WORDS = {
    "risk": "riskiest first",
    "amount": "largest amount first",
    "age": "oldest first",
    "due": "soonest due first",
    "resolved": "latest verdict first",
}
MAX_HOURS = 24 * 366
OFF = frozenset({"", "0", "false", "off", "no"})


class FlagInput(forms.CheckboxInput):
    """A checkbox read from a query string: absent, empty, 0, false, off or no is off (Django's own reads "0" as
    on, which would turn `?overdue=0` into the opposite of what it says)."""

    def value_from_datadict(self, data: Any, files: Any, name: str) -> bool:
        return str(data.get(name, "")).lower() not in OFF


def _order(sort: str, prefix: str, *, verdicts_only: bool) -> list[str | OrderBy]:
    """The ORDER BY of a sort, on the case's columns (`prefix` "case__" from its alerts); ties by case id.

    Verdicts latest first: among verdicts alone (no open case, so no verdict time missing) as the indexes on
    (status, -resolved_at, -id) and the overturned ones have it; with open cases among them, those last.
    """
    by_id = f"{prefix}id"
    latest = f"-{prefix}resolved_at" if verdicts_only else F(f"{prefix}resolved_at").desc(nulls_last=True)
    return {
        "risk": [f"-{prefix}top_score", by_id],
        "amount": [F(f"{prefix}total_amount").desc(nulls_last=True), by_id],
        "age": [f"{prefix}opened_at", by_id],
        "due": [f"{prefix}due_at", by_id],
        "resolved": [latest, f"-{prefix}id"],
    }[sort]


def _one_of(choices: list[tuple[str, str]]) -> dict[str, str]:
    return {"invalid_choice": "choose one of " + ", ".join(value for value, _ in choices if value)}


def _number(label: str, *, placeholder: str = "", step: float | str = "any") -> forms.NumberInput:
    return forms.NumberInput(attrs={"aria-label": label, "placeholder": placeholder, "step": step})


class QueueFilterForm(forms.Form):
    """What the queue's filter bar sends; every field optional, so `/cases/` alone is the open queue by risk."""

    q = forms.CharField(
        required=False,
        max_length=MAX_QUERY + 1,  # a case number's "#"
        strip=True,
        label="Card or case",
        widget=forms.TextInput(
            attrs={"placeholder": "card id or #case", "autocomplete": "off", "spellcheck": "false", "type": "search"}
        ),
    )
    status = forms.ChoiceField(choices=STATUSES, required=False, error_messages=_one_of(STATUSES))
    decision = forms.ChoiceField(choices=DECISIONS, required=False, error_messages=_one_of(DECISIONS))
    assignee = forms.CharField(required=False, max_length=150, strip=True)
    score_min = forms.FloatField(
        required=False,
        min_value=0,
        max_value=1,
        label="Score from",
        widget=_number("Lowest score", placeholder="0"),
    )
    score_max = forms.FloatField(
        required=False,
        min_value=0,
        max_value=1,
        label="Score to",
        widget=_number("Highest score", placeholder="1"),
    )
    amount_min = forms.DecimalField(
        required=False,
        min_value=0,
        max_digits=18,
        decimal_places=4,
        label="Amount from",
        widget=_number("Smallest amount"),
    )
    amount_max = forms.DecimalField(
        required=False,
        min_value=0,
        max_digits=18,
        decimal_places=4,
        label="Amount to",
        widget=_number("Largest amount"),
    )
    currency = forms.RegexField(
        regex=r"^[A-Za-z]{3}$",
        required=False,
        label="Currency",
        error_messages={"invalid": "a currency is three letters, like EUR"},
        widget=forms.TextInput(
            attrs={"aria-label": "Currency", "placeholder": "EUR", "maxlength": 3, "size": 4, "autocomplete": "off"}
        ),
    )
    min_age = forms.FloatField(
        required=False,
        min_value=0,
        max_value=MAX_HOURS,
        label="Opened more than (hours)",
        widget=_number("Opened more than this many hours ago", placeholder="from", step=1),
    )
    max_age = forms.FloatField(
        required=False,
        min_value=0,
        max_value=MAX_HOURS,
        label="Opened less than (hours)",
        widget=_number("Opened less than this many hours ago", placeholder="to", step=1),
    )
    overdue = forms.BooleanField(required=False, widget=FlagInput(attrs={"value": "1"}))
    overturned = forms.BooleanField(required=False, widget=FlagInput(attrs={"value": "1"}))
    sort = forms.ChoiceField(choices=SORTS, required=False, error_messages=_one_of(SORTS))
    page = forms.IntegerField(required=False, min_value=1)

    @classmethod
    def from_query(cls, query: QueryDict, **kwargs: Any) -> QueueFilterForm:
        """The form bound to the query string, with the defaults it leaves out written in, so the bar shows what
        is applied: the open queue by risk, or with `overturned=1` every status by latest verdict."""
        data = query.copy()
        overturned = FlagInput().value_from_datadict(data, None, "overturned")
        for name, default in (
            ("status", ANY if overturned else "open"),
            ("sort", "resolved" if overturned else "risk"),
        ):
            if not data.get(name):
                data[name] = default
        return cls(data, **kwargs)

    def clean_q(self) -> str:
        if CONTROL.search(self.cleaned_data["q"]):
            raise forms.ValidationError("ids hold no control characters")
        return self.cleaned_data["q"]

    def clean_currency(self) -> str:
        return self.cleaned_data["currency"].upper()

    def clean_assignee(self) -> str:
        name = self.cleaned_data["assignee"]
        if name.lower() in ("", ANY, "anyone"):
            return ""
        if name.lower() in (MINE, UNCLAIMED):
            return name.lower()
        if not get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: name}).exists():
            raise forms.ValidationError(f"no account is named “{name}”")
        return name

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        for low, high, what in (
            ("score_min", "score_max", "score"),
            ("amount_min", "amount_max", "amount"),
            ("min_age", "max_age", "age"),
        ):
            if data.get(low) is not None and data.get(high) is not None and data[low] > data[high]:
                self.add_error(high, f"the {what} range ends below where it starts")
        return data

    def queue_filter(self) -> QueueFilter:
        """The validated filter (call after is_valid())."""
        data = self.cleaned_data
        fields = {name: data.get(name) for name in QueueFilter.__dataclass_fields__}
        return QueueFilter(**fields | {"status": data["status"] or "open", "sort": data["sort"] or "risk"})


@dataclass(frozen=True)
class QueueFilter:
    """A validated queue filter: which cases, in what order."""

    q: str = ""  # a card id's beginning, or a case number
    status: str = "open"
    decision: str = ""
    assignee: str = ""  # "", "mine", "unclaimed" or a username
    score_min: float | None = None
    score_max: float | None = None
    amount_min: Decimal | None = None
    amount_max: Decimal | None = None
    currency: str = ""
    min_age: float | None = None  # hours
    max_age: float | None = None
    overdue: bool = False
    overturned: bool = False
    sort: str = "risk"

    def condition(self, *, user: AbstractBaseUser, now: datetime, prefix: str = "") -> Q:
        """The WHERE of the filter on a case's columns (`prefix` "case__" to select a case's alerts)."""
        terms: dict[str, Any] = {}
        if self.status != ANY:
            terms["status"] = self.status
        if self.decision:
            terms["decision"] = self.decision
        if self.assignee == MINE:
            terms["assignee"] = user
        elif self.assignee == UNCLAIMED:
            terms["assignee__isnull"] = True
        elif self.assignee:
            terms[f"assignee__{get_user_model().USERNAME_FIELD}"] = self.assignee
        terms |= _bounds("top_score", self.score_min, self.score_max)
        terms |= _bounds("total_amount", self.amount_min, self.amount_max)
        if self.currency:
            terms["currency"] = self.currency
        if self.min_age is not None:
            terms["opened_at__lte"] = now - timedelta(hours=self.min_age)
        if self.max_age is not None:
            terms["opened_at__gt"] = now - timedelta(hours=self.max_age)
        if self.overdue:  # only an open case can be late
            terms |= {"status": CaseStatus.OPEN, "due_at__lt": now} if self.status in (ANY, "open") else {"pk__in": []}
        if self.overturned:
            terms["overturned"] = True
        selected = Q(**{prefix + name: value for name, value in terms.items()})
        return selected & self._card_or_number(prefix) if self.q else selected

    def _card_or_number(self, prefix: str) -> Q:
        """Cards whose id begins with `q` (a range of the case_card index, as dashboards/search.py reads ids), or
        the case numbered `q` ("#123" or "123")."""
        above = upper_bound(self.q)
        card = Q(**{f"{prefix}card_id__gte": self.q}) & (Q(**{f"{prefix}card_id__lt": above}) if above else Q())
        number = CASE_NUMBER.fullmatch(self.q)
        return card | Q(**{f"{prefix}pk": int(number[1])}) if number else card

    def cases(self, *, user: AbstractBaseUser, now: datetime) -> QuerySet[Case]:
        """The cases it selects, in its order, with what a queue row shows."""
        selected = Case.objects.filter(self.condition(user=user, now=now))
        order = _order(self.sort, "", verdicts_only=self.verdicts_only)
        return selected.select_related("assignee", "resolved_by", "reason").order_by(*order)

    def alerts(self, *, user: AbstractBaseUser, now: datetime) -> QuerySet[Transaction]:
        """The transactions of those cases, case by case in the cases' order, each case's in time order."""
        selected = Transaction.objects.filter(self.condition(user=user, now=now, prefix="case__"))
        order = [*_order(self.sort, "case__", verdicts_only=self.verdicts_only), "timestamp", "id"]
        return selected.select_related("case").order_by(*order)

    @property
    def verdicts_only(self) -> bool:
        """Whether it selects resolved cases alone (a verdict status, or overturned verdicts)."""
        return self.status in (CaseStatus.FRAUD, CaseStatus.LEGITIMATE) or self.overturned

    @property
    def browser_checkable(self) -> bool:
        """Whether queue.js can tell from a pushed case alone that it belongs on this page: the open queue by
        risk, narrowed only by what a push carries (decision, score, who holds it)."""
        amount_or_age = (self.amount_min, self.amount_max, self.min_age, self.max_age)
        return (
            self.status == "open"
            and self.sort == "risk"
            and not self.q
            and not self.currency
            and not self.overdue
            and not self.overturned
            and all(value is None for value in amount_or_age)
        )

    def described(self, *, user: AbstractBaseUser) -> list[str]:
        """The filter in words, one phrase a condition (the page head says what it shows)."""
        words = [dict(STATUSES)[self.status].lower() if self.status != ANY else "any status"]
        if self.q:
            words.append(f"card or case “{self.q}”")
        if self.decision:
            words.append(f"{self.decision} decisions")
        if self.assignee == MINE:
            words.append("claimed by you")
        elif self.assignee == UNCLAIMED:
            words.append("unclaimed")
        elif self.assignee:
            words.append(f"{'claimed' if self.status == 'open' else 'held'} by {self.assignee}")
        words += _range_words("score", self.score_min, self.score_max, str)
        currency = self.currency
        words += _range_words("amount", self.amount_min, self.amount_max, lambda v: _amount(v, currency))
        if self.min_age is not None:
            words.append(f"opened more than {self.min_age:g} h ago")
        if self.max_age is not None:
            words.append(f"opened less than {self.max_age:g} h ago")
        if self.currency and self.amount_min is None and self.amount_max is None:
            words.append(f"in {self.currency}")
        if self.overdue:
            words.append("overdue")
        if self.overturned:
            words.append("overturned")
        return words


def _bounds(column: str, low: Any, high: Any) -> dict[str, Any]:
    terms = {}
    if low is not None:
        terms[f"{column}__gte"] = low
    if high is not None:
        terms[f"{column}__lte"] = high
    return terms


def _range_words(what: str, low: Any, high: Any, shown: Any) -> list[str]:
    if low is not None and high is not None:
        return [f"{what} {shown(low)} to {shown(high)}"]
    if low is not None:
        return [f"{what} at least {shown(low)}"]
    if high is not None:
        return [f"{what} at most {shown(high)}"]
    return []


def _amount(value: Decimal, currency: str) -> str:
    return f"{money(value, currency)} {currency}" if currency else f"{value.normalize():f}"


def assignee_choices(current: str) -> list[tuple[str, str]]:
    """The assignee select: anyone, unclaimed, you, then every analyst and lead by name (and `current`, if it
    names someone else, so a bookmarked filter still shows who it is for)."""
    User = get_user_model()
    name_field = User.USERNAME_FIELD
    reviewers = User.objects.filter(Q(groups__name__in=[ANALYSTS, LEADS]) | Q(is_superuser=True), is_active=True)
    names = list(reviewers.order_by(name_field).values_list(name_field, flat=True).distinct())
    if current and current not in (MINE, UNCLAIMED) and current not in names:
        names.append(current)
    return [("", "Anyone"), (UNCLAIMED, "Unclaimed"), (MINE, "Mine"), *((name, name) for name in names)]
