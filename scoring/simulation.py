"""Simulated card traffic with labeled fraud: deterministic for a seed, for history or live load.

Legitimate traffic: every card has a home country, a typical amount (log-normal), active hours (in its
home's local time; a few payments at any hour) and favourite merchants; a few of its payments go to
merchants it never used. Fraud comes in three labeled patterns: card testing (a burst of tiny, mostly
online payments on one card within minutes), a stolen card's spree (big amounts at new, often foreign
merchants, often at night in Europe) and a compromised merchant (for one to three weeks, many cards see
fraud there). Fraud is a few percent of all transactions, and a bigger share at night (UTC).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.utils import timezone

from scoring.history import write_csv

DAY = 86400.0
HOUR = 3600.0
CURRENCIES = {"DE": "EUR", "FR": "EUR", "ES": "EUR", "IT": "EUR", "NL": "EUR", "GB": "GBP", "PL": "PLN"}
CURRENCIES |= {"SE": "SEK", "US": "USD"}
HOME_WEIGHTS = np.array([0.2, 0.14, 0.1, 0.1, 0.08, 0.14, 0.08, 0.04, 0.12])
FOREIGN = ["BR", "MX", "TH", "VN", "ZA", "NG", "ID", "PH"]
FAVOURITES = 8
FAVOURITE_WEIGHTS = 1 / np.arange(1, FAVOURITES + 1) ** 1.2
FAVOURITE_WEIGHTS /= FAVOURITE_WEIGHTS.sum()
WEEKDAY_RATE = [0.95, 0.95, 1.0, 1.0, 1.1, 1.15, 0.85]
# Cardholders keep their home's hours: its offset from UTC (standard time; the US as its East Coast), +1 where
# not listed. With every card on UTC hours, no payments at odd hours and most stolen cards' sprees at night,
# fraud was a large share of the night's traffic in UTC, and a demo started then flagged much of what it showed.
UTC_OFFSETS = {"GB": 0, "US": -5}
ANY_HOUR = 0.06  # a card's payments at any hour of the day: online shopping, subscriptions, night shifts
NIGHT_SPREES = 0.2  # stolen cards' sprees that start at 00:00-05:00 UTC; the others at any hour
CARD_RATE = 1.4 / DAY  # a simulated card's transactions per second, on average
MAX_LIVE_CARDS = 250_000  # more would hold too much memory: at higher rates simulated time runs faster instead


@dataclass(frozen=True)
class Kind:
    """A kind of merchant: what it sells, how it is paid, and how much relative to a card's usual."""

    mcc: str
    channel: str
    factor: float
    share: float


KINDS = {
    "grocery": Kind("5411", "pos", 0.8, 0.22),
    "restaurant": Kind("5812", "pos", 0.9, 0.17),
    "fuel": Kind("5541", "pos", 1.3, 0.08),
    "pharmacy": Kind("5912", "pos", 0.6, 0.06),
    "clothing": Kind("5651", "pos", 1.8, 0.08),
    "transit": Kind("4111", "pos", 0.12, 0.03),
    "hotel": Kind("7011", "pos", 4.0, 0.03),
    "atm": Kind("6011", "atm", 2.5, 0.06),
    "marketplace": Kind("5399", "ecom", 1.2, 0.10),
    "electronics": Kind("5732", "ecom", 3.5, 0.05),
    "digital": Kind("5816", "ecom", 0.3, 0.07),
    "travel": Kind("4511", "ecom", 6.0, 0.03),
    "charity": Kind("8398", "ecom", 0.5, 0.02),
}
KIND_NAMES = list(KINDS)
TESTING_KINDS = {"digital", "charity"}
SPREE_KINDS = {"electronics", "travel", "marketplace", "atm", "clothing", "hotel"}

PATTERNS = ("card_testing", "stolen_card", "compromised_merchant")
# (t, seq, card, merchant, amount, fraud pattern or ""): seq keeps ties in a fixed order.
Event = tuple[float, int, int, int, float, str]


class Simulator:
    """Cards, merchants and a timeline of their transactions; the same seed gives the same traffic."""

    def __init__(
        self,
        *,
        seed: int = 0,
        cards: int = 2000,
        merchants: int = 400,
        fraud_scale: float = 1.0,
        prefix: str = "",
        patterns: bool = False,
    ) -> None:
        """`prefix` namespaces the ids; `patterns` adds each record's fraud pattern (or "") as `pattern`."""
        self.seed = seed
        self.patterns = patterns
        self.fraud_scale = fraud_scale
        self.prefix = prefix
        self.rng = np.random.default_rng(seed)
        self._make_merchants(merchants)
        self._make_cards(cards)
        self._seq = 0
        self._compromised: list[tuple[int, float, float]] = []  # (merchant, from, until)
        self._next_compromise: float | None = None

    @classmethod
    def for_cards(cls, *, cards: int, seed: int) -> Simulator:
        """A simulator with a merchant for every five cards, as the commands run it."""
        return cls(seed=seed, cards=cards, merchants=max(5, cards // 5))

    # --- the population ----------------------------------------------------------------------------

    def _make_merchants(self, n: int) -> None:
        rng = self.rng
        shares = np.array([k.share for k in KINDS.values()])
        self.m_kind = rng.choice(len(KINDS), size=n, p=shares / shares.sum())
        homes = list(CURRENCIES)
        abroad = rng.random(n) < 0.12
        self.m_country = [
            FOREIGN[rng.integers(len(FOREIGN))] if far else homes[rng.choice(len(homes), p=HOME_WEIGHTS)]
            for far in abroad
        ]
        self.m_id = [f"{self.prefix}m{i:05d}" for i in range(n)]
        self.m_pop = rng.pareto(1.2, size=n) + 1.0
        self.m_channel = [KINDS[KIND_NAMES[k]].channel for k in self.m_kind]
        self.m_mcc = [KINDS[KIND_NAMES[k]].mcc for k in self.m_kind]
        self.m_logfactor = np.log([KINDS[KIND_NAMES[k]].factor for k in self.m_kind])
        self.m_atm = np.array([c == "atm" for c in self.m_channel])
        self._pools = {country: self._pool(country) for country in homes}
        self._by_kind = {name: np.flatnonzero(self.m_kind == i) for i, name in enumerate(KIND_NAMES)}
        self._kind_pools: dict[frozenset[str], tuple[np.ndarray, np.ndarray]] = {}
        self._shops_abroad = [i for i, c in enumerate(self.m_country) if c in FOREIGN and self.m_channel[i] != "ecom"]

    def _pool(self, country: str) -> tuple[np.ndarray, np.ndarray]:
        """Merchants a card from `country` may use: local shops, and online shops anywhere."""
        idx = np.array(
            [
                i
                for i, (c, ch) in enumerate(zip(self.m_country, self.m_channel, strict=True))
                if c == country or ch == "ecom"
            ]
        )
        weights = self.m_pop[idx] * np.where(np.array(self.m_channel)[idx] == "ecom", 0.2, 1.0)
        return idx, np.cumsum(weights) / weights.sum()

    def _make_cards(self, n: int) -> None:
        rng = self.rng
        homes = list(CURRENCIES)
        self.c_country = [homes[i] for i in rng.choice(len(homes), size=n, p=HOME_WEIGHTS)]
        self.c_id = [f"{self.prefix}c{i:06d}" for i in range(n)]
        self.c_mu = np.log(40.0) + rng.normal(0.0, 0.6, size=n)
        self.c_sigma = rng.uniform(0.35, 0.8, size=n)
        self.c_rate = np.clip(rng.lognormal(np.log(1.1), 0.7, size=n), 0.1, 10.0)
        offsets = np.array([UTC_OFFSETS.get(country, 1) for country in self.c_country])
        self.c_peak = rng.normal(14.0, 2.5, size=n) - offsets  # in UTC
        self.c_spread = rng.uniform(2.0, 4.0, size=n)
        self.c_explore = rng.uniform(0.03, 0.2, size=n)
        self.c_fav = np.empty((n, FAVOURITES), dtype=np.int32)
        countries = np.array(self.c_country)
        for country in homes:
            mine = np.flatnonzero(countries == country)
            self.c_fav[mine] = self._draw(country, mine.size * FAVOURITES).reshape(mine.size, FAVOURITES)

    def _draw(self, country: str, size: int) -> np.ndarray:
        idx, cum = self._pools[country]
        return idx[np.minimum(np.searchsorted(cum, self.rng.random(size)), len(idx) - 1)]

    # --- the timeline ------------------------------------------------------------------------------

    def history(self, *, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
        """Labeled transactions with event times in [start, end), in time order."""
        t0, t1 = start.timestamp(), end.timestamp()
        for n, event in enumerate(self._timeline(t0)):
            if event[0] >= t1:
                return
            if event[0] >= t0:
                yield self.record(event, number=n, at=datetime.fromtimestamp(event[0], UTC))

    def live(self, *, now: datetime | None = None) -> Iterator[dict[str, Any]]:
        """Endless labeled transactions from `now` (default: the current time) on, each stamped with the
        current time as it is taken.

        The simulated clock advances as fast as they are taken: with about `cards` * CARD_RATE
        transactions a second it keeps pace with the real one, and hours of day and velocities look real.
        The same cards as history() gives for the seed, but the events are drawn afresh from the start
        time: each day's timeline starts from the generator's state, so without this the live traffic of a
        day that weighs like yesterday replayed yesterday's imported history, amount for amount.
        """
        now = now or datetime.now(UTC)
        self.rng = np.random.default_rng([self.seed, int(now.timestamp())])
        token = f"live{now:%Y%m%d%H%M%S}-"
        for n, event in enumerate(self._timeline(now.timestamp())):
            if event[0] >= now.timestamp():
                yield self.record(event, number=n, at=datetime.now(UTC), token=token)

    def record(self, event: Event, *, number: int, at: datetime, token: str = "") -> dict[str, Any]:
        """One transaction in the API's shape, plus its label."""
        _, _, card, merchant, amount, pattern = event
        return {
            "external_id": f"{self.prefix}sim{self.seed}-{token}{number:09d}",
            "card_id": self.c_id[card],
            "merchant_id": self.m_id[merchant],
            "amount": f"{amount:.2f}",
            "currency": CURRENCIES[self.c_country[card]],
            "timestamp": at.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "country": self.m_country[merchant],
            "channel": self.m_channel[merchant],
            "mcc": self.m_mcc[merchant],
            "is_fraud": bool(pattern),
        } | ({"pattern": pattern} if self.patterns else {})

    def _timeline(self, t0: float) -> Iterator[Event]:
        """Events from t0 on, day by day; an episode may run past midnight, so a heap orders them."""
        heap: list[Event] = []
        day_start = math.floor(t0 / DAY) * DAY  # days from midnight UTC: hours of day are real hours
        while True:
            day_end = day_start + DAY
            for event in self._day(day_start):
                heapq.heappush(heap, event)
            while heap and heap[0][0] < day_end:
                yield heapq.heappop(heap)
            day_start = day_end

    def _event(self, t: float, card: int, merchant: int, amount: float, pattern: str = "") -> Event:
        self._seq += 1
        return (float(round(t)), self._seq, card, merchant, round(min(max(amount, 0.01), 999_999.0), 2), pattern)

    def _day(self, start: float) -> list[Event]:
        events = self._legit(start)
        scale = self.fraud_scale
        cards = len(self.c_id)
        for _ in range(self.rng.poisson(cards * 0.0008 * scale)):
            events += self._card_testing(start + self.rng.uniform(0, DAY))
        for _ in range(self.rng.poisson(cards * 0.003 * scale)):
            events += self._spree(start)
        events += self._merchant_compromise(start)
        return events

    # --- legitimate traffic -------------------------------------------------------------------------

    def _legit(self, start: float) -> list[Event]:
        rng = self.rng
        weekday = datetime.fromtimestamp(start, UTC).weekday()
        counts = rng.poisson(self.c_rate * WEEKDAY_RATE[weekday])
        card = np.repeat(np.arange(len(counts)), counts)
        hours = (self.c_peak[card] + self.c_spread[card] * rng.standard_normal(card.size)) % 24
        anytime = rng.random(card.size) < ANY_HOUR
        hours[anytime] = rng.uniform(0.0, 24.0, size=int(anytime.sum()))
        t = start + hours * HOUR
        merchant = self.c_fav[card, rng.choice(FAVOURITES, size=card.size, p=FAVOURITE_WEIGHTS)]
        for i in np.flatnonzero(rng.random(card.size) < self.c_explore[card]):
            merchant[i] = self._draw(self.c_country[card[i]], 1)[0]
        noise = self.c_sigma[card] * rng.standard_normal(card.size)
        amount = np.exp(self.c_mu[card] + self.m_logfactor[merchant] + noise)
        atm = self.m_atm[merchant]
        amount[atm] = np.maximum(20.0, np.round(amount[atm] / 20.0) * 20.0)
        return [self._event(t[i], int(card[i]), int(merchant[i]), float(amount[i])) for i in range(card.size)]

    # --- fraud patterns ------------------------------------------------------------------------------

    def _card_testing(self, t: float) -> list[Event]:
        """Many tiny payments on one card within minutes, at one mostly online merchant."""
        rng = self.rng
        card = int(rng.integers(len(self.c_id)))
        kinds = TESTING_KINDS if rng.random() < 0.85 else {"marketplace", "grocery"}
        merchant = self._pick_kind(kinds)
        events = []
        for _ in range(int(rng.integers(4, 25))):
            amount = 1.0 if rng.random() < 0.3 else rng.uniform(0.5, 4.0)
            events.append(self._event(t, card, merchant, amount, "card_testing"))
            t += rng.uniform(4, 90)
        if rng.random() < 0.3:  # the card works: cash it out an hour or so later
            events += self._spree_from(t + rng.uniform(1800, 3 * HOUR), card)
        return events

    def _spree(self, day_start: float) -> list[Event]:
        """A stolen card: often at night in Europe, big amounts at merchants it never used, often abroad."""
        rng = self.rng
        night = rng.random() < NIGHT_SPREES
        t = day_start + (rng.uniform(0, 5) if night else rng.uniform(0, 24)) * HOUR
        return self._spree_from(t, int(rng.integers(len(self.c_id))))

    def _spree_from(self, t: float, card: int) -> list[Event]:
        rng = self.rng
        foreign = rng.random() < 0.6
        events = []
        for _ in range(2 + rng.poisson(4)):
            merchant = self._pick_foreign() if foreign and rng.random() < 0.8 else self._pick_kind(SPREE_KINDS)
            amount = math.exp(self.c_mu[card]) * rng.uniform(2.5, 12.0)
            if self.m_atm[merchant]:
                amount = max(200.0, round(amount / 50.0) * 50.0)
            events.append(self._event(t, card, merchant, amount, "stolen_card"))
            t += rng.exponential(40 * 60)
        return events

    def _merchant_compromise(self, day_start: float) -> list[Event]:
        """Shops whose terminal is compromised: for one to three weeks, many cards see fraud there.

        The first starts within a week of the timeline's start, the next ones every two weeks or so.
        """
        rng = self.rng
        day_end = day_start + DAY
        if self._next_compromise is None:
            self._next_compromise = day_start + rng.uniform(0, 7) * DAY
        while self._next_compromise < day_end:
            merchant = self._pick_kind({"grocery", "restaurant", "fuel", "clothing"})
            begin = self._next_compromise
            self._compromised.append((merchant, begin, begin + rng.uniform(7, 21) * DAY))
            self._next_compromise += rng.exponential(14 / self.fraud_scale) * DAY
        self._compromised = [c for c in self._compromised if c[2] > day_start]
        events = []
        for merchant, begin, until in self._compromised:
            for _ in range(rng.poisson(9 * self.fraud_scale)):
                card = int(rng.integers(len(self.c_id)))
                t = day_start + rng.uniform(7, 22) * HOUR
                if begin <= t < until:
                    amount = math.exp(self.c_mu[card]) * rng.uniform(1.5, 5.0)
                    events.append(self._event(t, card, merchant, amount, "compromised_merchant"))
        return events

    def _pick_kind(self, kinds: set[str]) -> int:
        key = frozenset(kinds)
        if key not in self._kind_pools:
            idx = np.concatenate([self._by_kind[k] for k in sorted(kinds)])
            if idx.size == 0:  # a small world (a test's few merchants) may have no shop of these kinds: any shop
                idx = np.arange(len(self.m_id))
            weights = self.m_pop[idx]
            self._kind_pools[key] = (idx, np.cumsum(weights) / weights.sum())
        idx, cum = self._kind_pools[key]
        return int(idx[min(int(np.searchsorted(cum, self.rng.random())), idx.size - 1)])

    def _pick_foreign(self) -> int:
        shops = self._shops_abroad
        return shops[self.rng.integers(len(shops))] if shops else self._pick_kind(SPREE_KINDS)


def live_cards(rate: float) -> int:
    """How many simulated cards make `rate` transactions a second at a card's natural pace (capped)."""
    return min(MAX_LIVE_CARDS, max(100, round(rate / CARD_RATE)))


def speed(*, rate: float, cards: int) -> float:
    """How many times faster than real time simulated time runs when `cards` make `rate` transactions a second."""
    return rate / (cards * CARD_RATE)


def write_history(path: Path, *, cards: int, seed: int, days: int) -> int:
    """Write the labeled history of the `days` up to now as an importable CSV; how many transactions."""
    sim = Simulator.for_cards(cards=cards, seed=seed)
    end = timezone.now().replace(microsecond=0)
    with open(path, "w", newline="") as f:
        return write_csv(sim.history(start=end - timedelta(days=days), end=end), f)
