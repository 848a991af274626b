"""A lead's figures about the team: open cases by age and holder, verdicts per analyst per day, time to resolve,
and how often the flags turned out to be fraud.

Every count is a database aggregate; Python only arranges the grouped rows (a handful per analyst and day). A
median is found by ranking the durations in the database (a window function) and fetching the one or two middle
rows, so it is exact, the same on PostgreSQL and SQLite, and never pulls every resolved case.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.contrib.auth import get_user_model
from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, QuerySet, Window
from django.db.models.functions import RowNumber, TruncDate
from django.utils import timezone

from scoring.models import Case, CaseStatus
from scoring.roles import ANALYSTS, LEADS

# How old an open case is: (label, from hours, up to hours); a case exactly on an edge counts in the older bucket.
AGE_BUCKETS: tuple[tuple[str, float, float | None], ...] = (
    ("<1 h", 0, 1),
    ("1–4 h", 1, 4),
    ("4–24 h", 4, 24),
    (">24 h", 24, None),
)
PRECISION_DAYS = 7
DAY_CHOICES = (7, 14)


@dataclass(frozen=True)
class Load:
    """The open cases one analyst holds (or nobody, `username` ""), counted per age bucket."""

    username: str
    by_age: tuple[int, ...]
    oldest: datetime | None = None  # when the oldest of them opened
    overdue: int = 0  # past their due time (settings.CASE_DUE_HOURS by decision)

    @property
    def total(self) -> int:
        return sum(self.by_age)


@dataclass(frozen=True)
class Analyst:
    """One analyst's verdicts in the period: per day (oldest first) and the median time from open to verdict."""

    username: str
    per_day: tuple[int, ...]
    median: timedelta | None

    @property
    def total(self) -> int:
        return sum(self.per_day)


@dataclass(frozen=True)
class Precision:
    """Resolved cases on a day (or in the whole period, `day` None) and how many of them were fraud."""

    day: date | None
    resolved: int
    fraud: int

    @property
    def share(self) -> float | None:
        return self.fraud / self.resolved if self.resolved else None


@dataclass(frozen=True)
class TeamOverview:
    """The team page's figures: open cases as of `now`, verdicts over `days`, precision over `precision_days`."""

    now: datetime
    days: tuple[date, ...]  # the period of the verdict figures, oldest first
    loads: tuple[Load, ...]  # the unclaimed first, then by most held
    analysts: tuple[Analyst, ...]
    median: timedelta | None  # every analyst's verdicts together
    precision_days: tuple[Precision, ...]
    precision: Precision

    @property
    def by_age(self) -> tuple[int, ...]:
        return tuple(sum(load.by_age[i] for load in self.loads) for i in range(len(AGE_BUCKETS)))

    @property
    def open_count(self) -> int:
        return sum(load.total for load in self.loads)

    @property
    def unclaimed(self) -> int:
        return sum(load.total for load in self.loads if not load.username)

    @property
    def overdue(self) -> int:
        return sum(load.overdue for load in self.loads)

    @property
    def oldest_open(self) -> datetime | None:
        return min((load.oldest for load in self.loads if load.oldest), default=None)

    @property
    def resolved(self) -> int:
        return sum(analyst.total for analyst in self.analysts)

    @property
    def resolved_per_day(self) -> tuple[int, ...]:
        return tuple(sum(a.per_day[i] for a in self.analysts) for i in range(len(self.days)))


def overview(*, now: datetime, days: int = 14) -> TeamOverview:
    """Everything the team page shows, as of `now`, with verdicts over the last `days` calendar days."""
    period = calendar_days(now=now, count=days)
    precision_period = calendar_days(now=now, count=PRECISION_DAYS)
    per_day = precision_per_day(days=precision_period)
    return TeamOverview(
        now=now,
        days=period,
        loads=open_loads(now=now),
        analysts=analysts(days=period),
        median=median_time_to_resolve(days=period),
        precision_days=per_day,
        precision=Precision(day=None, resolved=sum(p.resolved for p in per_day), fraud=sum(p.fraud for p in per_day)),
    )


def calendar_days(*, now: datetime, count: int) -> tuple[date, ...]:
    """The last `count` days in the site's time zone, today included, oldest first."""
    today = timezone.localtime(now).date()
    return tuple(today - timedelta(days=back) for back in range(count - 1, -1, -1))


def start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, datetime.min.time()))


def resolved_on(days: tuple[date, ...]) -> QuerySet[Case]:
    """Cases whose verdict was given on one of `days` (consecutive, oldest first), by anyone."""
    since, until = start_of(days[0]), start_of(days[-1] + timedelta(days=1))
    return Case.objects.exclude(status=CaseStatus.OPEN).filter(resolved_at__gte=since, resolved_at__lt=until)


# --- open cases --------------------------------------------------------------------------------------


def open_loads(*, now: datetime) -> tuple[Load, ...]:
    """Open cases per holder and age bucket, in one grouped query; the unclaimed first, then most held."""
    buckets = {f"age{i}": Count("id", filter=_age(now, i)) for i in range(len(AGE_BUCKETS))}
    figures = {"oldest": Min("opened_at"), "overdue": Count("id", filter=Q(due_at__lt=now)), **buckets}
    rows = Case.objects.open().values("assignee__username").annotate(**figures)
    loads = [
        Load(
            username=row["assignee__username"] or "",
            by_age=_row_buckets(row),
            oldest=row["oldest"],
            overdue=row["overdue"],
        )
        for row in rows.order_by()
    ]
    return tuple(sorted(loads, key=lambda load: (bool(load.username), -load.total, load.username)))


def _age(now: datetime, index: int) -> Q:
    _, older_than, younger_than = AGE_BUCKETS[index]
    q = Q(opened_at__lte=now - timedelta(hours=older_than)) if older_than else Q()
    if younger_than is not None:
        q &= Q(opened_at__gt=now - timedelta(hours=younger_than))
    return q


def _row_buckets(row: dict) -> tuple[int, ...]:
    return tuple(row[f"age{i}"] for i in range(len(AGE_BUCKETS)))


# --- verdicts ----------------------------------------------------------------------------------------


def resolved_by_people(days: tuple[date, ...]) -> QuerySet[Case]:
    """Cases an analyst or lead resolved on `days` (the chargeback feed's settlements are not the team's)."""
    return resolved_on(days).filter(resolved_by__isnull=False)


def analysts(*, days: tuple[date, ...]) -> tuple[Analyst, ...]:
    """Each team member's verdicts per day over `days` and their median time to resolve, by username."""
    counts: dict[str, dict[date, int]] = defaultdict(dict)
    per_day = (
        resolved_by_people(days)
        .annotate(day=TruncDate("resolved_at", tzinfo=timezone.get_current_timezone()))
        .values("resolved_by__username", "day")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in per_day:
        counts[row["resolved_by__username"]][row["day"]] = row["n"]
    medians = median_per_analyst(days=days)
    names = sorted(set(counts) | set(medians) | set(team_usernames()))
    return tuple(
        Analyst(username=name, per_day=tuple(counts[name].get(day, 0) for day in days), median=medians.get(name))
        for name in names
    )


def team_usernames() -> list[str]:
    """Active analysts and leads, so that someone with no verdicts yet still shows, with zeros."""
    role = Q(groups__name__in=[ANALYSTS, LEADS]) | Q(is_superuser=True)
    return list(get_user_model().objects.filter(role, is_active=True).values_list("username", flat=True).distinct())


def median_time_to_resolve(*, days: tuple[date, ...]) -> timedelta | None:
    """The median time from a case's opening to its verdict, over every verdict the team gave on `days`."""
    return _medians(resolved_by_people(days), by=None).get(None)


def median_per_analyst(*, days: tuple[date, ...]) -> dict[str, timedelta]:
    """The same median, per analyst (by username)."""
    return _medians(resolved_by_people(days), by="resolved_by__username")


def _medians(cases: QuerySet[Case], *, by: str | None) -> dict[str | None, timedelta]:
    """The median duration per group: the database ranks each group's durations and returns only the one
    (odd count) or two (even count) middle rows; their mean is the median."""
    partition = [F(by)] if by else None
    took = ExpressionWrapper(F("resolved_at") - F("opened_at"), output_field=DurationField())
    middle = (
        cases.annotate(took=took)
        .annotate(
            rank=Window(RowNumber(), partition_by=partition, order_by=[F("took").asc(), F("id").asc()]),
            of=Window(Count("id"), partition_by=partition),
        )
        # The 1-based middle ranks of n rows: (n+1)/2 when n is odd, n/2 and n/2+1 when even: n <= 2*rank <= n+2.
        .annotate(twice=F("rank") * 2)
        .filter(twice__gte=F("of"), twice__lte=F("of") + 2)
        .values_list(by or "id", "took")
    )
    found: dict[str | None, list[timedelta]] = defaultdict(list)
    for key, duration in middle:
        found[key if by else None].append(duration)
    return {key: sum(values, timedelta()) / len(values) for key, values in found.items()}


# --- precision ---------------------------------------------------------------------------------------


def precision_per_day(*, days: tuple[date, ...]) -> tuple[Precision, ...]:
    """Per day (oldest first), the cases resolved that day, by anyone, and how many were fraud.

    Fraud is a fraud verdict or a legitimate verdict that the payment side's fraud label overturned: either
    way the flag was right.
    """
    was_fraud = Q(status=CaseStatus.FRAUD) | Q(overturned=True)
    rows = (
        resolved_on(days)
        .annotate(day=TruncDate("resolved_at", tzinfo=timezone.get_current_timezone()))
        .values("day")
        .annotate(resolved=Count("id"), fraud=Count("id", filter=was_fraud))
        .order_by()
    )
    found = {row["day"]: row for row in rows}
    return tuple(
        Precision(day=day, resolved=found[day]["resolved"], fraud=found[day]["fraud"])
        if day in found
        else Precision(day=day, resolved=0, fraud=0)
        for day in days
    )
