"""What the dashboards' page tests share: transactions and cases made directly, and logged-in analysts."""

from __future__ import annotations

import asyncio
import itertools
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import orjson
import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from fraudsite.asgi import application
from scoring.models import Case, Transaction, due_after
from scoring.roles import ensure_roles, make_analyst, make_lead

HTMX = {"HTTP_HX_REQUEST": "true"}
ORIGIN = (b"origin", b"http://127.0.0.1")
_numbers = itertools.count(1)


def make_tx(**fields: Any) -> Transaction:
    n = next(_numbers)
    values: dict[str, Any] = {
        "external_id": f"ext-{n}",
        "card_id": "card-1",
        "merchant_id": "shop-1",
        "amount": Decimal("25.00"),
        "currency": "EUR",
        "timestamp": timezone.now(),
        "score": 0.1,
        "decision": "approve",
        "reasons": [{"feature": "amount", "contribution": 0.2}],
        "features": [],
        "model_version": "test",
    }
    values.update(fields)
    tx = Transaction(**values)
    tx.save()
    return tx


def make_case(**fields: Any) -> Case:
    """An open case with one flagged transaction, of a card of its own unless `card_id` is given."""
    tx = make_tx(**{"score": 0.95, "decision": "block", "card_id": f"card-c{next(_numbers)}", **fields})
    case = Case.objects.create(
        card_id=tx.card_id,
        decision=tx.decision,
        top_score=tx.score,
        total_amount=tx.amount,
        currency=tx.currency,
        due_at=timezone.now() + due_after(tx.decision),
    )
    tx.case = case
    tx.save(update_fields=["case"])
    return case


def analyst_named(django_user_model: type[User], username: str) -> User:
    ensure_roles()
    user = django_user_model.objects.create_user(username=username)
    make_analyst(user)
    return user


@pytest.fixture
def alice(django_user_model: type[User]) -> User:
    return analyst_named(django_user_model, "alice")


@pytest.fixture
def bob(django_user_model: type[User]) -> User:
    return analyst_named(django_user_model, "bob")


def logged_in(user: User) -> Client:
    """A test client with `user`'s session."""
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def lena(django_user_model: type[User]) -> User:
    """A lead by group (not a superuser)."""
    ensure_roles()
    user = django_user_model.objects.create_user("lena")
    make_lead(user)
    return user


@pytest.fixture
def alice_client(alice: User) -> Client:
    client = Client()
    client.force_login(alice)
    return client


# --- the dashboard socket ---------------------------------------------------------------------


@asynccontextmanager
async def socket(user=None, *, origin: tuple[bytes, bytes] = ORIGIN):
    """A dashboard socket through the full ASGI stack (origin check, auth), logged in as `user`."""
    communicator = WebsocketCommunicator(application, "/ws/dashboard/", headers=[origin, (b"host", b"127.0.0.1")])
    if user is not None:
        communicator.scope["user"] = user  # what the session middleware would find
    try:
        yield communicator
    finally:
        await communicator.disconnect()


async def next_of_type(communicator: WebsocketCommunicator, kind: str, timeout: float = 3.0) -> dict:
    """The next message of a type, skipping the others (stats arrive every second)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        message = orjson.loads(await communicator.receive_from(timeout=max(remaining, 0.01)))
        if message["type"] == kind:
            return message


async def drain(communicator: WebsocketCommunicator, seconds: float) -> list[dict]:
    """Every message that arrives within `seconds` (a receive timeout would cancel the consumer)."""
    messages = []
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if await communicator.receive_nothing(timeout=0.05):
            continue
        messages.append(orjson.loads(await communicator.receive_from()))
    return messages


@pytest.fixture
def analyst_user(db):
    ensure_roles()
    user = get_user_model().objects.create_user("watcher", password="pw-watcher-1")
    make_analyst(user)
    return user


def store_plain_rows(n: int, *, model_version: str = "t") -> None:
    from django.utils import timezone

    Transaction.objects.bulk_create(
        Transaction(
            external_id=f"p-{i}",
            card_id="c",
            merchant_id="m",
            amount="1.00",
            currency="EUR",
            timestamp=timezone.now(),
            score=0.1,
            decision="approve",
            model_version=model_version,
        )
        for i in range(n)
    )
