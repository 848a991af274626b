"""A rule's backtest: what its condition would have hit among the stored transactions of the last days.

Computed from what was stored (fields, score, decision, label and the feature values the model saw), never by
scoring again; the lists as they stand now. docs/rules.md defines every figure.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
from django.utils import timezone

from scoring.features import FEATURES
from scoring.lists import lists
from scoring.models import Decision, ListKind, Rule, RuleStatus
from scoring.rules import FIELDS, LIST_NAMES, Condition, RuleError, RuleSet, check
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
    columns = sorted(set(ALWAYS) | {n for n in names if n in FIELDS and n != "hour"} | ({"score"} & names))
    flags = _list_flags() if names & LIST_NAMES.keys() else {}
    own, rest = RuleSet([tested]), RuleSet(list(others.values()))
    for chunk in read_columns(start, end, columns=columns, features=features):
        values = _values(chunk, names=names, flags=flags)
        hits = [i for i, (hit,) in enumerate(own.run(values, len(chunk["epoch"]))) if hit]
        picked = {name: [values[name][i] for i in hits] for name in rest.names}
        tally.add(chunk, hits=hits, overlaps=rest.run(picked, len(hits)))
    return tally.result(condition=tested.source, rule_name=rule_name, days=days, start=start, end=end)


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


def _values(chunk: dict[str, Sequence[Any]], *, names: set[str], flags: dict[str, set[str]]) -> dict[str, Any]:
    """The conditions' inputs from a chunk of stored columns: numbers as floats (NaN where missing), the
    hour from the transaction's own time, the list flags from its card and merchant."""
    values: dict[str, Any] = {}
    for name in names:
        if name == "hour":
            values[name] = ((np.asarray(chunk["epoch"], dtype=float) // 3600) % 24).astype(int).tolist()
        elif name == "score":  # imported rows were never scored: their stored 0 is no score
            score = np.asarray(chunk["score"], dtype=float)
            values[name] = np.where(np.asarray(chunk["imported"], dtype=bool), np.nan, score).tolist()
        elif name in LIST_NAMES:
            members = flags[name]
            values[name] = [v in members for v in chunk["card_id" if name.startswith("card") else "merchant_id"]]
        elif FIELDS.get(name, "a number") == "a number":  # `amount` and every feature
            values[name] = np.asarray(chunk[name], dtype=float).tolist()
        else:
            values[name] = chunk[name]
    return values


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

    def add(self, chunk: dict[str, Sequence[Any]], *, hits: list[int], overlaps: list[list[bool]]) -> None:
        decision, cards = chunk["decision"], chunk["card_id"]
        self.transactions += len(decision)
        self.imported += sum(1 for i in chunk["imported"] if i)
        self.flagged_cards.update(c for c, d in zip(cards, decision, strict=True) if d != Decision.APPROVE)
        epoch = np.asarray(chunk["epoch"], dtype=float)
        for i, also in zip(hits, overlaps, strict=True):
            day = int((epoch[i] - self.start) // DAY)
            label = chunk["is_fraud"][i]
            self.counts[day, 0] += 1
            self.counts[day, 1 if label else 3 if label is None else 2] += 1
            if label:
                self.amounts[chunk["currency"][i]].append(chunk["amount"][i])
            if decision[i] != Decision.APPROVE:
                self.overlap_model += 1
            self.hit_cards.add(cards[i])
            self.overlaps.update(name for name, hit in zip(self.others, also, strict=True) if hit)

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
