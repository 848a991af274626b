"""Allow and block lists: the entries in force, held in memory, and how they override the model's decision."""

from __future__ import annotations

import threading
import time

from scoring.classifier import Scored
from scoring.models import Decision, ListEntry, ListKind
from scoring.schemas import TransactionIn


class _Lists:
    """Allow/block entries held in memory, reloaded every few seconds: no query per request."""

    ttl = 5.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], ListEntry] = {}
        self._loaded = 0.0

    def entries(self) -> dict[tuple[str, str], ListEntry]:
        if time.monotonic() - self._loaded >= self.ttl:
            with self._lock:
                self._entries = {(e.entity, e.value): e for e in ListEntry.objects.in_force()}
                self._loaded = time.monotonic()
        return self._entries

    def reset(self) -> None:
        self._loaded = 0.0


lists = _Lists()


def apply_lists(items: list[TransactionIn], scored: list[Scored]) -> list[Scored]:
    """Force `block` or `approve` for listed cards and merchants; the list entry becomes the first reason."""
    entries = lists.entries()
    if not entries:
        return scored
    out = []
    for item, s in zip(items, scored, strict=True):
        entry = entries.get(("card", item.card_id)) or entries.get(("merchant", item.merchant_id))
        if entry is None:
            out.append(s)
            continue
        decision = Decision.BLOCK if entry.kind == ListKind.BLOCK else Decision.APPROVE
        reason = {"feature": f"{entry.kind}_list_{entry.entity}", "contribution": 0.0}
        out.append(Scored(score=s.score, decision=decision, reasons=[reason, *s.reasons[:2]]))
    return out
