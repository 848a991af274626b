"""The Fraud Detection Handbook's simulated card data, written from the book's description (chapter 3).

*Reproducible Machine Learning for Credit Card Fraud Detection — Practical Handbook* (Le Borgne, Siblini,
Lebichot, Bontempi) describes a generator that everyone can rerun, and measures its models on it; this is
that generator, so the product can be measured on data nobody here designed:

- customers and terminals sit at random on a 100 x 100 grid; a customer pays only at terminals within a
  radius of 5 of home;
- each customer has a spending profile: a mean amount drawn from [5, 100] (its standard deviation half of
  it) and a mean number of payments a day drawn from [0, 4]; each day it makes a Poisson number of
  payments, at a normally distributed time around noon (payments falling outside the day are dropped),
  of a normally distributed amount (a negative one drawn again, uniformly up to twice the mean);
- three fraud scenarios: every amount over 220 is fraud; each day two terminals are compromised for the
  next 28 days (every payment there is fraud); each day three customers are compromised for the next 14
  days, and a third of their payments then are fraud, their amounts multiplied by 5.

Draws follow the description, not the book's code, so figures match the book's in distribution, not to the
digit. One difference the API forces: an amount that rounds to 0.00 is stored as 0.01 (the API wants > 0).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

START = datetime(2018, 4, 1, tzinfo=UTC)
DAYS = 183
CUSTOMERS = 5000
TERMINALS = 10_000
GRID = 100.0
RADIUS = 5.0
DAY_SECONDS = 86_400
FRAUD_AMOUNT = 220.0
TERMINAL_COMPROMISE_DAYS, TERMINALS_A_DAY = 28, 2
CUSTOMER_COMPROMISE_DAYS, CUSTOMERS_A_DAY = 14, 3
COLUMNS = ["seconds", "day", "customer", "terminal", "amount", "fraud", "scenario"]


@dataclass(frozen=True)
class HandbookData:
    """The book's three tables: customers, terminals, and the transactions (sorted by time)."""

    customers: pd.DataFrame  # x, y, mean_amount, std_amount, mean_per_day
    terminals: pd.DataFrame  # x, y
    transactions: pd.DataFrame  # COLUMNS: seconds since START, day, customer, terminal, amount, fraud, scenario

    def records(self, *, prefix: str, since: datetime, until: datetime) -> Iterator[dict[str, Any]]:
        """Transactions from `since` up to `until` in the API's shape, with their `is_fraud` label."""
        tx = self.transactions
        lo, hi = np.searchsorted(tx["seconds"].to_numpy(), [_offset(since), _offset(until)])
        rows = tx.iloc[lo:hi]
        for index, seconds, customer, terminal, amount, fraud in zip(
            rows.index, rows["seconds"], rows["customer"], rows["terminal"], rows["amount"], rows["fraud"], strict=True
        ):
            yield {
                "external_id": f"{prefix}{index}",
                "card_id": f"{prefix}C{customer}",
                "merchant_id": f"{prefix}T{terminal}",
                "amount": f"{max(amount, 0.01):.2f}",
                "currency": "EUR",
                "timestamp": (START + timedelta(seconds=int(seconds))).isoformat(),
                "is_fraud": bool(fraud),
            }


def simulate(*, seed: int, customers: int = CUSTOMERS, terminals: int = TERMINALS, days: int = DAYS) -> HandbookData:
    """The book's data for one seed (deterministic)."""
    rng = np.random.default_rng(seed)
    people = _customers(rng, customers)
    places = pd.DataFrame({"x": rng.uniform(0, GRID, terminals), "y": rng.uniform(0, GRID, terminals)})
    reachable = _reachable_terminals(people, places)
    tx = _payments(rng, people, reachable=reachable, days=days)
    _add_frauds(rng, tx, customers=customers, terminals=terminals, days=days)
    return HandbookData(customers=people, terminals=places, transactions=tx)


def _customers(rng: np.random.Generator, n: int) -> pd.DataFrame:
    mean_amount = rng.uniform(5, 100, n)
    return pd.DataFrame(
        {
            "x": rng.uniform(0, GRID, n),
            "y": rng.uniform(0, GRID, n),
            "mean_amount": mean_amount,
            "std_amount": mean_amount / 2,
            "mean_per_day": rng.uniform(0, 4, n),
        }
    )


def _reachable_terminals(people: pd.DataFrame, places: pd.DataFrame, chunk: int = 500) -> list[np.ndarray]:
    """For each customer, the terminals within RADIUS of home (distances computed a chunk of customers at a time)."""
    home = people[["x", "y"]].to_numpy()
    spots = places[["x", "y"]].to_numpy()
    reachable = []
    for start in range(0, len(home), chunk):
        d2 = ((home[start : start + chunk, None, :] - spots[None, :, :]) ** 2).sum(axis=2)
        reachable += [np.flatnonzero(row < RADIUS**2) for row in d2]
    return reachable


def _payments(
    rng: np.random.Generator, people: pd.DataFrame, *, reachable: list[np.ndarray], days: int
) -> pd.DataFrame:
    """Every customer's payments of every day, before fraud: (time, customer, terminal, amount)."""
    counts = rng.poisson(people["mean_per_day"].to_numpy()[None, :], size=(days, len(people)))
    day, customer = np.nonzero(counts)
    repeat = counts[day, customer]
    day, customer = np.repeat(day, repeat), np.repeat(customer, repeat)
    time_of_day = rng.normal(DAY_SECONDS / 2, 20_000, len(day)).astype(np.int64)
    mean, std = people["mean_amount"].to_numpy()[customer], people["std_amount"].to_numpy()[customer]
    amount = rng.normal(mean, std)
    negative = amount < 0
    amount[negative] = rng.uniform(0, 2 * mean[negative])
    sizes = np.array([len(r) for r in reachable])
    keep = (time_of_day > 0) & (time_of_day < DAY_SECONDS) & (sizes[customer] > 0)
    day, customer, time_of_day, amount = day[keep], customer[keep], time_of_day[keep], amount[keep]
    pick = (rng.random(len(customer)) * sizes[customer]).astype(np.int64)
    terminal = np.array([reachable[c][i] for c, i in zip(customer.tolist(), pick.tolist(), strict=True)])
    tx = pd.DataFrame(
        {
            "seconds": day * DAY_SECONDS + time_of_day,
            "day": day,
            "customer": customer,
            "terminal": terminal,
            "amount": np.round(amount, 2),
            "fraud": False,
            "scenario": 0,
        }
    )
    return tx.sort_values(["seconds", "customer"], kind="stable", ignore_index=True)[COLUMNS]


def _add_frauds(rng: np.random.Generator, tx: pd.DataFrame, *, customers: int, terminals: int, days: int) -> None:
    """The three scenarios, in the book's order (a compromised customer's multiplied amount is fraud by the third
    scenario, not the first)."""
    big = tx["amount"].to_numpy() > FRAUD_AMOUNT
    tx.loc[big, ["fraud", "scenario"]] = [True, 1]
    day = tx["day"].to_numpy()
    first = np.searchsorted(day, np.arange(days + 1))  # sorted by time, so by day: day d is rows first[d]:first[d+1]
    for d in range(days):
        rows = slice(first[d], first[min(d + TERMINAL_COMPROMISE_DAYS, days)])
        hit = np.isin(tx["terminal"].to_numpy()[rows], rng.choice(terminals, TERMINALS_A_DAY, replace=False))
        index = tx.index[rows][hit]
        tx.loc[index, ["fraud", "scenario"]] = [True, 2]
    for d in range(days):
        rows = slice(first[d], first[min(d + CUSTOMER_COMPROMISE_DAYS, days)])
        hit = np.isin(tx["customer"].to_numpy()[rows], rng.choice(customers, CUSTOMERS_A_DAY, replace=False))
        index = tx.index[rows][hit]
        stolen = rng.choice(index, len(index) // 3, replace=False)
        tx.loc[stolen, "amount"] = np.round(tx.loc[stolen, "amount"] * 5, 2)
        tx.loc[stolen, ["fraud", "scenario"]] = [True, 3]


def _offset(moment: datetime) -> int:
    return int((moment - START).total_seconds())
