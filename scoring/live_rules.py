"""The live rules in the ingest pipeline: held compiled in each process, run once per batch after the model.

Each process looks at the live rules (active and shadow) every RULES_REFRESH_SECONDS and compiles them again only
when one of them changed, so a rule published anywhere is used by every process within that time, and the rule
book's change resets this process's copy at its commit. With no rule live a batch costs one comparison: nothing
is done per row.

An active rule that hits puts its action in place of the model's decision, the strongest action of those that hit
winning (block, then review, then approve), as the lists do; the lists, applied after, keep the last word. A shadow
rule's hits are recorded and change nothing. The API's `reasons` stay the model's SHAP features (its contract: the
top three by contribution); the rules that hit are told in `rules`, and the desk names them before the features.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC
from typing import Any

import numpy as np
from django.conf import settings

from scoring.classifier import Scored
from scoring.features import FEATURE_INDEX
from scoring.lists import lists
from scoring.metrics import count_rule_hits
from scoring.models import Decision, ListKind, Rule, RuleStatus
from scoring.refreshed import Refreshed
from scoring.rules import FIELDS, LIST_NAMES, RuleError, RuleSet, check
from scoring.schemas import TransactionIn

log = logging.getLogger(__name__)
STRENGTH = {Decision.APPROVE: 0, Decision.REVIEW: 1, Decision.BLOCK: 2}
LOADED = ("id", "version", "status", "name", "condition", "action", "priority")


@dataclass(frozen=True)
class LiveRule:
    """What the pipeline needs of a live rule: what it is called, what it does, whether it only watches."""

    id: int
    name: str
    action: str
    shadow: bool

    @property
    def hit(self) -> dict[str, str]:
        return {"name": self.name, "action": self.action}


class Book:
    """The live rules compiled into one RuleSet, in priority order."""

    def __init__(self, rules: Sequence[LiveRule], ruleset: RuleSet) -> None:
        self.rules = list(rules)
        self.ruleset = ruleset
        self.active = [j for j, r in enumerate(self.rules) if not r.shadow]
        self.shadow = [j for j, r in enumerate(self.rules) if r.shadow]
        # The features the rules read, and where they are in the model's matrix: taken out in one call a batch.
        self.features = [n for n in ruleset.names if n not in FIELDS and n != "score" and n not in LIST_NAMES]
        self.feature_index = np.array([FEATURE_INDEX[name] for name in self.features], dtype=np.intp)


class _LiveRules(Refreshed):
    """The process-wide cache of the compiled live rules, looked up at most every RULES_REFRESH_SECONDS."""

    def __init__(self) -> None:
        super().__init__(seconds=lambda: settings.RULES_REFRESH_SECONDS)
        self._book: Book | None = None
        self._key: tuple = ()
        self._failure_logged: dict[int, float] = {}

    def get(self) -> Book | None:
        """The live rules, None when there are none."""
        self.look()
        return self._book

    def _refresh(self) -> None:
        rows = list(Rule.objects.live().values_list(*LOADED))
        key = tuple(rows)
        if key == self._key:
            return
        self._book = _compile(rows) if rows else None
        self._key = key
        self._failure_logged = {}
        log.info("live rules: %s", ", ".join(f"{name} v{v} ({status})" for _, v, status, name, *_ in rows) or "none")

    @property
    def has_rules(self) -> bool:
        """Whether rules were live at the last look (no look at the database)."""
        return self._book is not None

    def reset(self) -> None:
        """Look at the database again on the next batch (the rule book calls this when a change commits)."""
        self.expire()

    def log_failures(self, book: Book, failures: dict[int, str]) -> None:
        """Say that a rule failed at run time: once per rule and refresh period, however many rows it failed on."""
        now = time.monotonic()
        for index, said in failures.items():
            rule = book.rules[index]
            if now - self._failure_logged.get(rule.id, -float("inf")) >= settings.RULES_REFRESH_SECONDS:
                self._failure_logged[rule.id] = now
                log.warning("rule %s failed on a transaction and did not hit: %s", rule.name, said)


def _compile(rows: list[tuple]) -> Book | None:
    """The rules whose conditions still check, compiled together; a rule that no longer checks (a name the code
    no longer has) is left out and said so, rather than stopping every transaction."""
    rules, conditions = [], []
    for pk, _, status, name, condition, action, _ in rows:
        try:
            conditions.append(check(condition))
        except RuleError as exc:
            log.error("rule %s is live but its condition is refused, so it does not run: %s", name, exc)
            continue
        rules.append(LiveRule(id=pk, name=name, action=action, shadow=status == RuleStatus.SHADOW))
    return Book(rules, RuleSet(conditions)) if rules else None


live_rules = _LiveRules()


# --- in the pipeline -----------------------------------------------------------------------------------------


def apply_rules(items: Sequence[TransactionIn], scored: list[Scored], *, features: Any) -> list[Scored]:
    """The live rules run on a scored batch: each row's active hits (in priority order) and shadow hits, and the
    strongest active action as its decision. `features`: the batch's feature matrix, as the model read it."""
    book = live_rules.get()
    if book is None:
        return scored
    columns = _columns(book, items=items, features=features, scored=scored)
    failures: dict[int, str] = {}
    results = book.ruleset.run(columns, len(items), failures=failures)
    if failures:
        live_rules.log_failures(book, failures)
    out = []
    for s, hits in zip(scored, results, strict=True):
        if not any(hits):
            out.append(s)
            continue
        active = [book.rules[j] for j in book.active if hits[j]]
        shadow = [book.rules[j].name for j in book.shadow if hits[j]]
        decision = max((r.action for r in active), key=STRENGTH.__getitem__) if active else s.decision
        out.append(replace(s, decision=decision, rules=[r.hit for r in active], shadow_rules=shadow))
    return out


def count_hits(scored: Sequence[Scored]) -> None:
    """Count each rule's hits in a stored batch, by rule and status (nothing to do when no rule is live)."""
    if not live_rules.has_rules:
        return
    hits: dict[tuple[str, str], int] = {}
    for s in scored:
        for hit in s.rules:
            hits[(hit["name"], RuleStatus.ACTIVE)] = hits.get((hit["name"], RuleStatus.ACTIVE), 0) + 1
        for name in s.shadow_rules:
            hits[(name, RuleStatus.SHADOW)] = hits.get((name, RuleStatus.SHADOW), 0) + 1
    if hits:
        count_rule_hits(hits)


def _columns(
    book: Book, *, items: Sequence[TransactionIn], features: Any, scored: list[Scored]
) -> dict[str, list[Any]]:
    """Each name's values for the batch, as a condition reads them (rules.py: floats, NaN for missing; the hour an
    int; text "" when absent; flags bools). The features the rules read come out of the matrix in one call: one
    call a name cost more than the rules themselves on a single transaction."""
    columns: dict[str, list[Any]] = {}
    if book.features:
        picked = np.asarray(features).take(book.feature_index, axis=1)
        columns.update(zip(book.features, picked.T.tolist(), strict=True))  # float32 to Python floats, NaN kept
    entries = None
    for name in book.ruleset.names:
        if name in FIELDS:
            columns[name] = _FIELD_COLUMNS[name](items)
        elif name == "score":
            columns[name] = [s.score for s in scored]
        elif name in LIST_NAMES:
            entries = lists.entries() if entries is None else entries
            columns[name] = _listed(name, items, entries)
    return columns


def _text(field: str) -> Callable[[Sequence[TransactionIn]], list[str]]:
    return lambda items: [getattr(item, field) or "" for item in items]


_FIELD_COLUMNS: dict[str, Callable[[Sequence[TransactionIn]], list[Any]]] = {
    "amount": lambda items: [float(item.amount) for item in items],
    "hour": lambda items: [item.timestamp.astimezone(UTC).hour for item in items],
    **{field: _text(field) for field in ("currency", "country", "channel", "mcc", "card_id", "merchant_id")},
}


def _listed(name: str, items: Sequence[TransactionIn], entries: dict[tuple[str, str], Any]) -> list[bool]:
    """Whether each item's card or merchant has an entry in force (`entries`: the lists') on the block or allow
    list."""
    entity, _, kind = name.partition("_")
    wanted = ListKind.BLOCK if kind == "blocked" else ListKind.ALLOW
    found = (entries.get((entity, getattr(item, f"{entity}_id"))) for item in items)
    return [entry is not None and entry.kind == wanted for entry in found]
