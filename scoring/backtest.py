"""A rule's backtest: what its condition would have hit among the stored transactions of the last days.

Computed from what was stored (fields, score, decision, label and the feature values the model saw), never by
scoring again; the lists as they stand now. docs/rules.md defines every figure.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

DEFAULT_DAYS = 30


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
    without_features: int  # of them, those with no stored feature values (imported history): features read NaN
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
    raise NotImplementedError("being written")
