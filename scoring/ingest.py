"""The ingest pipeline: validated transactions → features → score → one database transaction → broadcast.

`ingest()` is the one entry point for the API (single and batch alike). Concurrent requests are scored and
stored together (scoring/batcher.py); a batch's database work is a read and an all-or-nothing write
(scoring/storage). The batcher calls the broadcast only after the commit, and a channel layer that is down
never costs the caller its stored row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from django.db import IntegrityError

from scoring import storage
from scoring.announce import broadcaster
from scoring.batcher import batcher_for_loop
from scoring.challenger import score_challenger
from scoring.classifier import Scorer, active_model
from scoring.features import feature_rows
from scoring.lists import apply_lists
from scoring.live_rules import apply_rules, count_hits
from scoring.results import answer, feed_event
from scoring.schemas import TransactionIn
from scoring.storage import History, NewRow

if TYPE_CHECKING:
    from scoring.models import Transaction

log = logging.getLogger(__name__)
JOINED = "joined the card's open case"  # a new alert's case state in the feed, when its card had one
MAX_ATTEMPTS = 4  # each after the first follows an insert that met an id stored meanwhile


@dataclass(frozen=True)
class Outcome:
    """One item's answer: the stored result and whether this request created it."""

    result: dict[str, Any]
    created: bool


async def ingest(items: list[TransactionIn]) -> list[Outcome]:
    """Score and store `items` (one request) with whatever else is queued; answers after the commit, and
    hands the batcher the broadcast of the new transactions to run once they are committed."""
    return await batcher_for_loop(store, after_commit=broadcaster().transactions).submit(items)


def store(items: list[TransactionIn]) -> tuple[list[Outcome], list[dict[str, Any]]]:
    """Score and store the items that are new; answer the others with what is stored.

    Stored external_ids are looked for first, with the batch's feature reads (storage.read_history): a retry
    that is not looked for fails the insert and costs the whole batch its scoring twice. A concurrent request
    can still store one of the ids between the look and the insert: the insert then fails (IntegrityError)
    and the batch is tried again. An id stored, or repeated here, with other content stores nothing
    (ContentConflict).
    """
    scorer = active_model.get()
    for _ in range(MAX_ATTEMPTS):
        history = storage.read_history(items)
        stored = storage.stored_transactions(history.stored_ids)
        _refuse_conflicts(items, stored=stored)
        new = list({i.external_id: i for i in reversed(items) if i.external_id not in stored}.values())[::-1]
        if not new:
            return [_stored_outcome(stored[i.external_id]) for i in items], []
        try:
            created = {row.item.external_id: row for row in _score_and_save(new, scorer=scorer, history=history)}
            break
        except IntegrityError:
            # A concurrent request stored some of these external_ids after the look: answer with theirs.
            log.info("external_id already stored while storing a batch; retrying with the stored rows")
    else:
        raise IntegrityError("could not store the batch after repeated external_id conflicts")
    return _answers(items, created=created, stored=stored, version=scorer.version)


def _answers(
    items: list[TransactionIn], *, created: dict[str, NewRow], stored: dict[str, Transaction], version: str
) -> tuple[list[Outcome], list[dict[str, Any]]]:
    """Each item's answer, and the feed events of the rows this batch created (one each, in id order)."""
    outcomes, events = [], []
    for item in items:
        row = created.get(item.external_id)
        if row is None:
            outcomes.append(_stored_outcome(stored[item.external_id]))
        elif row.answered:  # the same external_id again in one request: one row, one broadcast
            outcomes.append(Outcome(row.answered, created=False))
        else:
            row.answered = answer(row.item, row.scored, id=row.id, model_version=version, case_id=row.case_id)
            outcomes.append(Outcome(row.answered, created=True))
            state = JOINED if row.joined else None
            events.append(feed_event(row.item, row.scored, id=row.id, case_id=row.case_id, state=state))
    events.sort(key=lambda e: e["id"])
    return outcomes, events


def _stored_outcome(tx: Transaction) -> Outcome:
    return Outcome(tx.result(case_id=tx.case_id), created=False)


# --- the same external_id with other content ------------------------------------------------------------

CONTENT = ("card_id", "merchant_id", "amount", "currency", "timestamp", "country", "channel", "mcc")


class ContentConflict(Exception):
    """External ids stored before, or repeated in the batch, with other content: nothing was stored.

    `items`: {index in the batch: (what it conflicts with, the fields that differ)}.
    """

    def __init__(self, items: dict[int, tuple[str, list[str]]]) -> None:
        self.items = items
        super().__init__(f"{len(items)} item(s) reuse an external_id with other content")


def differences(item: TransactionIn, other: TransactionIn | Transaction) -> list[str]:
    """The fields whose values differ, compared as parsed values (12.5 and "12.50", one instant in two offsets
    are the same), an absent optional field as empty."""
    return [name for name in CONTENT if (getattr(item, name) or "") != (getattr(other, name) or "")]


def _refuse_conflicts(items: list[TransactionIn], *, stored: dict[str, Transaction]) -> None:
    """Raise ContentConflict for every item whose external_id was stored, or came earlier in `items`, with
    other content."""
    conflicts: dict[int, tuple[str, list[str]]] = {}
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        earlier = first.setdefault(item.external_id, index)
        if earlier != index and (fields := differences(item, items[earlier])):
            conflicts[index] = (f"item {earlier}", fields)
        elif (tx := stored.get(item.external_id)) is not None and (fields := differences(item, tx)):
            conflicts[index] = ("the stored transaction", fields)
    if conflicts:
        raise ContentConflict(conflicts)


def _score_and_save(items: list[TransactionIn], *, scorer: Scorer, history: History) -> list[NewRow]:
    """Score the new items and store them with their features; each comes back with its id and case id."""
    x = np.asarray(feature_rows(items, history=history), dtype=np.float32)  # what the model reads and is stored
    # The model, then the rules (the strongest action of those that hit), then the lists, which have the last word.
    scored = apply_lists(items, apply_rules(items, scorer.score(x), features=x))
    rows = [NewRow(item, s) for item, s in zip(items, scored, strict=True)]
    score_challenger(rows, features=x)  # beside the active model's score; decides nothing
    storage.save(rows, features=x, version=scorer.version)
    count_hits(scored)  # once stored: a batch tried again after a conflict is counted once
    return rows
