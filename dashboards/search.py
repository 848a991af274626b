"""Search by id: a card, merchant, external id or case number that exists, or the ids that begin with what was typed.

Every look-up is an index range: ids beginning with `q` are exactly those from `q` up to (not including) `q` with
its last character's successor, in code point order, which is how SQLite compares text and how PostgreSQL
compares it under the C and C.UTF-8 collations. Transaction's (card_id, timestamp), (merchant_id, timestamp) and
unique external_id indexes serve them, so no index is added to the table every ingest writes. (A LIKE 'q%' would
need one: PostgreSQL's btree serves LIKE only under the C collation or with varchar_pattern_ops.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import reduce
from operator import or_

from django.db.models import Q

from dashboards.entities import is_known
from scoring.models import Case, Transaction

MATCHES = 10  # per group
MAX_QUERY = 64  # the longest id the API accepts
CASE_NUMBER = re.compile(r"#?([1-9][0-9]{0,17})")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # ids never hold them (scoring/schemas.py), and PostgreSQL refuses a NUL
SURROGATES = range(0xD800, 0xE000)  # not characters: no id holds one, and UTF-8 cannot encode them


@dataclass
class Target:
    """Something that exists under exactly the id searched for."""

    kind: str  # card, merchant, transaction or case
    value: str
    transaction: Transaction | None = None
    case: Case | None = None


@dataclass
class Found:
    exact: list[Target] = field(default_factory=list)
    cards: list[str] = field(default_factory=list)
    merchants: list[str] = field(default_factory=list)
    transactions: list[Transaction] = field(default_factory=list)
    cases: list[Case] = field(default_factory=list)
    more: set[str] = field(default_factory=set)  # the groups cut at MATCHES

    @property
    def count(self) -> int:
        return len(self.cards) + len(self.merchants) + len(self.transactions) + len(self.cases)


def searchable(q: str) -> bool:
    return 0 < len(q) <= MAX_QUERY + 1 and not CONTROL.search(q)  # +1: a case number's "#"


def find(q: str) -> Found:
    """What exists under `q` exactly, and the ids that begin with it (up to MATCHES a group, in id order)."""
    found = Found()
    if not searchable(q):
        return found
    found.exact = exact(q)
    found.cards = _distinct_prefixed("card_id", q)
    found.merchants = _distinct_prefixed("merchant_id", q)
    txs = Transaction.objects.filter(_prefixed("external_id", q)).select_related("case").order_by("external_id")
    found.transactions = list(txs[: MATCHES + 1])
    found.cases = _cases_numbered(q)
    for group in ("cards", "merchants", "transactions", "cases"):
        if len(getattr(found, group)) > MATCHES:
            found.more.add(group)
            setattr(found, group, getattr(found, group)[:MATCHES])
    return found


def exact(q: str) -> list[Target]:
    """Everything that exists under exactly `q`: each an equality on a unique or leading index column."""
    targets = []
    number = CASE_NUMBER.fullmatch(q)
    case = Case.objects.filter(pk=int(number[1])).first() if number else None
    if case:
        targets.append(Target(kind="case", value=str(case.pk), case=case))
    for kind in ("card", "merchant"):
        if is_known(kind, q):
            targets.append(Target(kind=kind, value=q))
    tx = Transaction.objects.filter(external_id=q).first()
    if tx:
        targets.append(Target(kind="transaction", value=q, transaction=tx))
    return targets


def upper_bound(prefix: str) -> str | None:
    """The least string above every string that begins with `prefix`, in code point order (None: no bound)."""
    while prefix:
        following = ord(prefix[-1]) + 1
        if following in SURROGATES:
            following = SURROGATES.stop
        if following <= 0x10FFFF:
            return prefix[:-1] + chr(following)
        prefix = prefix[:-1]
    return None


def _prefixed(column: str, prefix: str) -> Q:
    above = upper_bound(prefix)
    starting = Q(**{f"{column}__gte": prefix})
    return starting & Q(**{f"{column}__lt": above}) if above is not None else starting


def _distinct_prefixed(column: str, prefix: str) -> list[str]:
    """The distinct values of `column` beginning with `prefix`, up to MATCHES + 1, in order.

    One index probe per value ("the next one above the last"), so a card with thousands of transactions costs
    what a card with one does: a DISTINCT over the range would read every row of every matching card.
    """
    rows = Transaction.objects.filter(_prefixed(column, prefix)).order_by(column).values_list(column, flat=True)
    values: list[str] = []
    while len(values) <= MATCHES:
        following = rows.filter(**{f"{column}__gt": values[-1]}) if values else rows
        value = following.first()
        if value is None:
            break
        values.append(value)
    return values


def _cases_numbered(q: str) -> list[Case]:
    """Cases whose number begins with the digits of `q` ("#12" or "12": 12, 120 to 129, 1200 to 1299, ...), as ranges of
    ids up to the highest case number."""
    number = CASE_NUMBER.fullmatch(q)
    highest = Case.objects.order_by("-id").values_list("id", flat=True).first() if number else None
    if not number or highest is None:
        return []
    start, ranges = int(number[1]), []
    low, high = start, start + 1
    while low <= highest:
        ranges.append(Q(id__gte=low, id__lt=high))
        low, high = low * 10, high * 10
    if not ranges:
        return []
    return list(Case.objects.filter(reduce(or_, ranges)).order_by("id")[: MATCHES + 1])
