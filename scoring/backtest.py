"""A rule's backtest: what its condition would have hit among the stored transactions of the last days.

Computed from what was stored (fields, score, decision, label and the feature values the model saw), never by
scoring again; the lists as they stand now. docs/rules.md defines every figure.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import pandas as pd
from django.utils import timezone

from scoring.features import FEATURES
from scoring.lists import lists
from scoring.models import Decision, ListKind, Rule, RuleStatus
from scoring.rules import FIELDS, LIST_NAMES, Condition, RuleError, check, conjuncts
from scoring.storage.columns import read_columns

DEFAULT_DAYS = 30
MAX_DAYS = 366
DAY = 86_400
# Read for every backtest besides the names the conditions read: the day, the label, what was decided then, and
# what the hits' figures need.
ALWAYS = ("epoch", "is_fraud", "decision", "card_id", "currency", "amount", "imported")


@dataclass(frozen=True)
class BacktestDay:
    """One UTC day (by the transactions' own time): the hits, and of them labeled fraud, legitimate, unknown."""

    day: date
    hits: int = 0
    fraud: int = 0
    legit: int = 0
    unknown: int = 0


@dataclass(frozen=True)
class Backtest:
    """What a condition would have hit from `start` to `end` (the last `days` UTC days, today so far included)."""

    condition: str
    rule_name: str | None
    days: int
    start: datetime
    end: datetime
    transactions: int  # stored transactions in the window
    imported: int  # of them, imported history: never scored here, so their features and score read NaN
    per_day: list[BacktestDay]
    fraud_amount: dict[str, float] = field(default_factory=dict)  # per currency: never summed across them
    extra_cases: int = 0  # distinct cards hit none of whose transactions in the window was flagged
    overlap_model: int = 0  # hits whose stored decision was review or block (model, rules and lists as then)
    overlap_rules: dict[str, int] = field(default_factory=dict)  # per other active rule: hits both made

    @property
    def hits(self) -> int:
        return sum(d.hits for d in self.per_day)

    @property
    def fraud(self) -> int:
        return sum(d.fraud for d in self.per_day)

    @property
    def legit(self) -> int:
        return sum(d.legit for d in self.per_day)

    @property
    def unknown(self) -> int:
        return sum(d.unknown for d in self.per_day)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: dates and times as ISO text, the totals beside the days."""
        out = asdict(self)
        out["start"], out["end"] = self.start.isoformat(), self.end.isoformat()
        out["per_day"] = [d | {"day": d["day"].isoformat()} for d in out["per_day"]]
        return out | {"hits": self.hits, "fraud": self.fraud, "legit": self.legit, "unknown": self.unknown}


def backtest(
    condition: str, *, days: int = DEFAULT_DAYS, now: datetime | None = None, rule_name: str | None = None
) -> Backtest:
    """The condition run over the stored transactions whose own time is in the last `days` UTC days (RuleError
    when it does not check). `rule_name`: the rule being tested, left out of the overlaps with active rules."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"a backtest covers 1 to {MAX_DAYS} days, not {days}")
    tested = check(condition)
    others = _active_rules(besides=rule_name)
    end = now or timezone.now()
    start = datetime.combine(end.astimezone(UTC).date() - timedelta(days=days - 1), time.min, tzinfo=UTC)
    tally = _Tally(days=days, start=start.timestamp(), others=list(others))
    names = {n for c in [tested, *others.values()] for n in c.names}
    features = sorted(n for n in names if n in FEATURES and n not in FIELDS)
    columns = set(ALWAYS) | {n for n in names if n in FIELDS and n != "hour"} | ({"score"} & names)
    if names & {"merchant_blocked", "merchant_allowed"}:
        columns.add("merchant_id")
    flags = _list_flags() if names & LIST_NAMES.keys() else {}
    plan, plans = _Plan(tested), {name: _Plan(c) for name, c in others.items()}
    for chunk in read_columns(start, end, columns=sorted(columns), features=features):
        inputs = _Inputs(chunk, flags=flags)
        hits = plan.hits(inputs, rows=np.arange(inputs.rows))
        tally.add(inputs, hits=hits, overlaps={name: p.hits(inputs, rows=hits).size for name, p in plans.items()})
    return tally.result(condition=tested.source, rule_name=rule_name, days=days, start=start, end=end)


class _Plan:
    """How a condition runs over many rows, and what it gave for each combination of values seen so far.

    A chain of `&&` runs clause after clause, each on the rows the last kept. And each clause runs once per
    distinct combination of the values it reads, not once per row: a count, a country or a channel takes a
    handful of values over a million rows, and handing a value to the library costs more than the comparison.
    """

    def __init__(self, condition: Condition) -> None:
        self.clauses = sorted(conjuncts(condition), key=lambda c: len(c.names))
        self.seen: list[dict[tuple[Any, ...], bool]] = [{} for _ in self.clauses]

    def hits(self, inputs: _Inputs, *, rows: np.ndarray) -> np.ndarray:
        """Those of `rows` (indices into the day's columns) on which the condition holds."""
        for clause, seen in zip(self.clauses, self.seen, strict=True):
            if not rows.size:
                break
            rows = rows[_holds(clause, [inputs[name][rows] for name in clause.names], seen=seen, rows=rows.size)]
        return rows


def _holds(
    condition: Condition, columns: list[np.ndarray], *, seen: dict[tuple[Any, ...], bool], rows: int
) -> np.ndarray:
    """Whether the condition holds on each row of `columns` (its names' values, in its names' order); `seen`
    keeps what it gave for each combination."""
    key = np.zeros(rows, dtype=np.int64)
    for column in columns:
        codes, uniques = pd.factorize(column, use_na_sentinel=False)  # NaN is one value, as missing is
        key = pd.factorize(key * len(uniques) + codes)[0]  # renumbered: never more combinations than rows
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    combinations = list(zip(*(column[first].tolist() for column in columns), strict=True)) or [()]
    held = np.empty(len(combinations), dtype=bool)
    for i, values in enumerate(combinations):
        holds = seen.get(values)
        if holds is None:
            holds = seen[values] = condition.holds(dict(zip(condition.names, values, strict=True)))
        held[i] = holds
    return held[inverse] if columns else np.full(rows, held[0])


class _Inputs:
    """A day's values of the names conditions read, built on first use from its stored columns: numbers as floats
    (NaN where missing; the features as the float32 the model saw, as live), the hour from the transaction's own
    time, the list flags from its card and merchant, no score for imported history."""

    def __init__(self, chunk: dict[str, np.ndarray], *, flags: dict[str, set[str]]) -> None:
        self.chunk, self.flags, self.built = chunk, flags, {}
        self.rows = len(chunk["epoch"])

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.built:
            self.built[name] = self._build(name)
        return self.built[name]

    def _build(self, name: str) -> np.ndarray:
        chunk = self.chunk
        if name == "hour":
            return (chunk["epoch"] // 3600 % 24).astype(np.int64)
        if name == "score":  # imported rows were never scored: their stored 0 is no score
            return np.where(chunk["imported"] == 1, np.nan, chunk["score"])
        if name in LIST_NAMES:
            members, ids = self.flags[name], chunk["card_id" if name.startswith("card") else "merchant_id"]
            return np.fromiter((v in members for v in ids), dtype=bool, count=self.rows)
        if name in FEATURES and name not in FIELDS:
            return chunk[name].astype(np.float32).astype(np.float64)
        return chunk[name]


def _active_rules(*, besides: str | None) -> dict[str, Condition]:
    """The active rules' conditions by name (a stored one that no longer checks, e.g. naming a feature since
    dropped, is left out: it cannot run live either)."""
    out = {}
    for name, source in (
        Rule.objects.filter(status=RuleStatus.ACTIVE).exclude(name=besides).values_list("name", "condition")
    ):
        try:
            out[name] = check(source)
        except RuleError:
            continue
    return out


def _list_flags() -> dict[str, set[str]]:
    """The list names' members as the lists stand now: {"card_blocked": {card ids}, ...}."""
    flags: dict[str, set[str]] = {name: set() for name in LIST_NAMES}
    for (entity, value), entry in lists.entries().items():
        flags[f"{entity}_{'blocked' if entry.kind == ListKind.BLOCK else 'allowed'}"].add(value)
    return flags


class _Tally:
    """The figures, added up chunk by chunk."""

    def __init__(self, *, days: int, start: float, others: list[str]) -> None:
        self.start, self.others = start, others
        self.counts = np.zeros((days, 4), dtype=np.int64)  # per day: hits, fraud, legit, unknown
        self.transactions = self.imported = self.overlap_model = 0
        self.amounts: dict[str, list[float]] = defaultdict(list)
        self.overlaps: Counter[str] = Counter()
        self.hit_cards: set[str] = set()
        self.flagged_cards: set[str] = set()

    def add(self, inputs: _Inputs, *, hits: np.ndarray, overlaps: dict[str, int]) -> None:
        flagged = inputs["decision"] != Decision.APPROVE
        self.transactions += flagged.size
        self.imported += int((inputs["imported"] == 1).sum())
        self.flagged_cards.update(inputs["card_id"][flagged].tolist())
        self.overlap_model += int(flagged[hits].sum())
        self.overlaps.update(overlaps)
        label = inputs["is_fraud"][hits]
        fraud, legit = label == 1, label == 0  # NaN, unknown, is neither
        day = ((inputs["epoch"][hits] - self.start) // DAY).astype(np.int64)
        np.add.at(self.counts, (day, 0), 1)
        np.add.at(self.counts, (day, np.where(fraud, 1, np.where(legit, 2, 3))), 1)
        for currency, amount in zip(inputs["currency"][hits][fraud], inputs["amount"][hits][fraud], strict=True):
            self.amounts[currency].append(float(amount))
        self.hit_cards.update(inputs["card_id"][hits].tolist())

    def result(self, *, condition: str, rule_name: str | None, days: int, start: datetime, end: datetime) -> Backtest:
        first = start.date()
        per_day = [BacktestDay(first + timedelta(days=d), *(int(n) for n in row)) for d, row in enumerate(self.counts)]
        return Backtest(
            condition=condition,
            rule_name=rule_name,
            days=days,
            start=start,
            end=end,
            transactions=self.transactions,
            imported=self.imported,
            per_day=per_day,
            fraud_amount={c: round(math.fsum(a), 4) for c, a in sorted(self.amounts.items())},
            extra_cases=len(self.hit_cards - self.flagged_cards),
            overlap_model=self.overlap_model,
            overlap_rules={name: self.overlaps[name] for name in self.others},
        )
