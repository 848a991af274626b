"""The key check of the hot path: answers cached for a few seconds, and one lookup however many ask."""

from __future__ import annotations

import asyncio

import pytest
from django.db import OperationalError

from scoring import keys
from scoring.models import ApiKey

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def lookups(monkeypatch):
    """The raw keys the database was asked about."""
    asked: list[str] = []
    real = ApiKey.objects.check_key

    def counting(raw_key: str):
        asked.append(raw_key)
        return real(raw_key)

    monkeypatch.setattr(ApiKey.objects, "check_key", counting)
    return asked


async def test_concurrent_checks_of_an_unchecked_key_ask_the_database_once(api_key, lookups):
    answers = await asyncio.gather(*[keys.is_valid(api_key) for _ in range(20)])

    assert answers == [True] * 20
    assert lookups == [api_key]


async def test_a_cached_answer_costs_no_lookup_and_a_forgotten_one_costs_one(api_key, lookups):
    assert await keys.is_valid(api_key)
    assert await keys.is_valid(api_key)
    keys.reset()  # as when the answer expires

    answers = await asyncio.gather(*[keys.is_valid(api_key) for _ in range(10)])

    assert answers == [True] * 10
    assert lookups == [api_key] * 2


async def test_unknown_keys_are_refused_and_cached_too(lookups):
    answers = await asyncio.gather(*[keys.is_valid("not-a-key") for _ in range(5)])

    assert answers == [False] * 5
    assert await keys.is_valid("not-a-key") is False
    assert lookups == ["not-a-key"]


async def test_a_failed_lookup_fails_every_waiter_and_the_next_check_asks_again(api_key, monkeypatch):
    def down(raw_key: str):
        raise OperationalError("the database is down")

    monkeypatch.setattr(ApiKey.objects, "check_key", down)
    results = await asyncio.gather(*[keys.is_valid(api_key) for _ in range(3)], return_exceptions=True)
    assert all(isinstance(r, OperationalError) for r in results)

    monkeypatch.undo()
    assert await keys.is_valid(api_key)
